// ThinkingViT on Swin as a model family: one Swin Transformer run in head rounds.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "checkpoint_format.h"
#include "thinkingvit/models/swin/thinking_swin.h"

namespace thinkingvit::models {
namespace swin {

const ModelFamily& family();

namespace {

class Options final : public FamilyOptionsOf<ThinkingSwinOptions> {
 public:
  using FamilyOptionsOf::FamilyOptionsOf;
  std::unique_ptr<FamilyOptions> clone() const override {
    return std::make_unique<Options>(options_);
  }
  const ModelFamily& family() const override { return swin::family(); }
  std::string stage_heads(int64_t stage) const override {
    std::string out;
    for (auto h : options_.head_rounds()[stage]) {
      out += (out.empty() ? "" : "-") + std::to_string(h);
    }
    return out;
  }
  MacBreakdown stage_macs(int64_t stage) const override { return swin_stage_macs(options_, stage); }
  int64_t stage_parameter_count(int64_t stage) const override {
    return swin_stage_parameter_count(options_, stage);
  }
  int64_t parameter_count() const override { return swin_parameter_count(options_); }
  // Per block and image, N·(8·C + 2·hidden) + 2·h·N_padded·window² floats kept for backward,
  // summed over every block of every round; inference: the largest block's working set,
  // N·(5·C + hidden) + 2·h·N_padded·window².
  double activation_floats(bool training) const override {
    const auto& o = options_;
    double sum = 0, largest = 0;
    for (int64_t stage = 0; stage < o.num_stages(); ++stage) {
      for (int64_t level = 0; level < o.num_levels(); ++level) {
        const double res = static_cast<double>(o.resolution(level));
        const double window = static_cast<double>(o.window(level));
        const double padded = std::pow(std::ceil(res / window) * window, 2.0);
        const double n = res * res, c = static_cast<double>(o.round_width(stage, level));
        const double hidden = static_cast<double>(o.round_hidden(stage, level));
        const double attention =
            2 * static_cast<double>(o.round_heads(stage, level)) * padded * window * window;
        sum += static_cast<double>(o.depths()[level]) * (n * (8 * c + 2 * hidden) + attention);
        largest = std::max(largest, n * (5 * c + hidden) + attention);
      }
    }
    return training ? sum : largest;
  }
  std::shared_ptr<ElasticModel> make_model() const override {
    return std::make_shared<ThinkingSwinImpl>(options_);
  }
  std::string config_json() const override { return swin::config_json(options_).dump(); }
};

class Family final : public ModelFamily {
 public:
  std::string name() const override { return "swin"; }
  std::string architecture() const override { return ThinkingSwinOptions::kArchitecture; }
  std::vector<std::string> preset_names() const override { return swin_preset_names(); }
  std::unique_ptr<FamilyOptions> preset(const std::string& name) const override {
    return make_family_options(swin_preset(name));
  }
  std::unique_ptr<FamilyOptions> defaults() const override {
    return make_family_options(ThinkingSwinOptions());
  }
  const std::vector<OptionKey>& option_keys() const override {
    using O = ThinkingSwinOptions;
    using Rounds = std::vector<std::vector<int64_t>>;
    static const std::vector<OptionKey> keys = {
        THINKINGVIT_OPTION_KEY(O, int64_t, image_size, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, in_channels, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, num_classes, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, patch_size, "an integer"),
        THINKINGVIT_OPTION_KEY(O, int64_t, embed_dim, "an integer"),
        THINKINGVIT_OPTION_KEY(O, std::vector<int64_t>, depths, "a list of block counts"),
        THINKINGVIT_OPTION_KEY(O, std::vector<int64_t>, num_heads, "a list of head counts"),
        THINKINGVIT_OPTION_KEY(O, int64_t, window_size, "an integer"),
        THINKINGVIT_OPTION_KEY(O, double, mlp_ratio, "a number"),
        THINKINGVIT_OPTION_KEY(O, bool, qkv_bias, "true or false"),
        THINKINGVIT_OPTION_KEY(O, double, norm_eps, "a number"),
        THINKINGVIT_OPTION_KEY(O, double, drop_path_rate, "a number"),
        THINKINGVIT_OPTION_KEY(O, Rounds, head_rounds, "a list of head-count lists"),
        attention_option_key<O>(),
        THINKINGVIT_OPTION_KEY(O, bool, recycling, "true or false"),
    };
    return keys;
  }
  std::string stages_key() const override { return "head_rounds"; }

  bool claims_config(const std::string& json) const override {
    return is_swin_config(nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false));
  }
  std::unique_ptr<FamilyOptions> options_from_config(const std::string& json, const TensorMap&,
                                                     const std::string&,
                                                     const std::string& path) const override {
    return make_family_options(swin::options_from_config(nlohmann::json::parse(json), path));
  }
  bool claims_state(const TensorMap& tensors) const override { return is_swin_state(tensors); }
  std::unique_ptr<FamilyOptions> options_from_state(const TensorMap& tensors,
                                                    const std::string& source,
                                                    int64_t) const override {
    return make_family_options(swin::options_from_state(tensors, source));
  }
  TensorMap adapt_checkpoint(const TensorMap& tensors) const override {
    return swin::adapt_checkpoint(tensors);
  }
};

}  // namespace

const ModelFamily& family() {
  static const Family instance;
  return instance;
}

}  // namespace swin

std::unique_ptr<FamilyOptions> make_family_options(ThinkingSwinOptions options) {
  return std::make_unique<swin::Options>(std::move(options));
}

}  // namespace thinkingvit::models
