// The DeiT-style ViT as a model family: ThinkingViT as released (stage i = the leading
// head_dim * stages[i] channels of every layer).

#include <nlohmann/json.hpp>

#include <algorithm>

#include "checkpoint_format.h"
#include "thinkingvit/models/vit/thinking_vit.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

namespace vit {

const ModelFamily& family();

namespace {

class Options final : public FamilyOptionsOf<ThinkingViTOptions> {
 public:
  using FamilyOptionsOf::FamilyOptionsOf;
  std::unique_ptr<FamilyOptions> clone() const override {
    return std::make_unique<Options>(options_);
  }
  const ModelFamily& family() const override { return vit::family(); }
  std::string stage_heads(int64_t stage) const override {
    return std::to_string(options_.stages()[stage]);
  }
  MacBreakdown stage_macs(int64_t stage) const override {
    return breakdown(models::stage_macs(options_, stage));
  }
  int64_t stage_parameter_count(int64_t stage) const override {
    return models::stage_parameter_count(options_, stage);
  }
  int64_t parameter_count() const override { return total_parameter_count(options_); }
  // Per block and image, (8 + 2·mlp_ratio)·N·D + 2·h·N² floats kept for backward for a stage of
  // width D and h heads over N tokens, summed over every block of every stage; inference: the
  // largest block's working set, (5 + mlp_ratio)·N·D + 2·h·N².
  double activation_floats(bool training) const override {
    const auto& o = options_;
    const double n = static_cast<double>(o.num_tokens()), r = o.mlp_ratio();
    double sum = 0, largest = 0;
    for (const auto heads : o.stages()) {
      const double d = static_cast<double>(heads * o.head_dim()), h = static_cast<double>(heads);
      sum += static_cast<double>(o.depth()) * ((8 + 2 * r) * n * d + 2 * h * n * n);
      largest = std::max(largest, (5 + r) * n * d + 2 * h * n * n);
    }
    return training ? sum : largest;
  }
  std::shared_ptr<ElasticModel> make_model() const override {
    return std::make_shared<ThinkingViTImpl>(options_);
  }
  std::string config_json() const override { return vit::config_json(options_).dump(); }
  std::map<std::string, std::string> weights_metadata() const override {
    return {{"thinking_stages", ::thinkingvit::shape_str(options_.stages())}};
  }
};

class Family final : public ModelFamily {
 public:
  std::string name() const override { return "vit"; }
  std::string architecture() const override { return ThinkingViTOptions::kArchitecture; }
  std::vector<std::string> preset_names() const override { return models::preset_names(); }
  std::unique_ptr<FamilyOptions> preset(const std::string& name) const override {
    return make_family_options(models::preset(name));
  }
  std::unique_ptr<FamilyOptions> defaults() const override {
    return make_family_options(ThinkingViTOptions());
  }
  const std::vector<OptionKey>& option_keys() const override {
    using O = ThinkingViTOptions;
    static const std::vector<OptionKey> keys = {
        THINKINGVIT_OPTION_KEY(O, int64_t, image_size, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, in_channels, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, num_classes, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, patch_size, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, head_dim, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, depth, "an integer"),
        THINKINGVIT_OPTION_KEY(O, double, mlp_ratio, "a number"),
        THINKINGVIT_OPTION_KEY(O, bool, qkv_bias, "true or false"),
        THINKINGVIT_OPTION_KEY(O, double, norm_eps, "a number"),
        THINKINGVIT_OPTION_KEY(O, double, drop_path_rate, "a number"),
        THINKINGVIT_OPTION_KEY(O, std::vector<int64_t>, stages, "a list of head counts"),
        attention_option_key<O>(),
        THINKINGVIT_OPTION_KEY(O, bool, recycling, "true or false"),
    };
    return keys;
  }
  std::string stages_key() const override { return "stages"; }

  bool claims_config(const std::string& json) const override {
    const auto config = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
    return config.is_object() && config.value("architecture", "") == architecture();
  }
  std::unique_ptr<FamilyOptions> options_from_config(const std::string& json,
                                                     const TensorMap& tensors,
                                                     const std::string& source,
                                                     const std::string& path) const override {
    return make_family_options(
        vit::options_from_config(nlohmann::json::parse(json), tensors, source, path));
  }
  bool claims_state(const TensorMap& tensors) const override {
    return tensors.count("cls_token") > 0 && tensors.count("pos_embed") > 0;
  }
  std::unique_ptr<FamilyOptions> options_from_state(const TensorMap& tensors,
                                                    const std::string& source,
                                                    int64_t head_dim) const override {
    return make_family_options(vit::options_from_state(tensors, source, head_dim));
  }
};

}  // namespace

const ModelFamily& family() {
  static const Family instance;
  return instance;
}

}  // namespace vit

std::unique_ptr<FamilyOptions> make_family_options(ThinkingViTOptions options) {
  return std::make_unique<vit::Options>(std::move(options));
}

}  // namespace thinkingvit::models
