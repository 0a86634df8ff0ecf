#include "thinkingvit/models/vit/options.h"

#include <map>
#include <sstream>

#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

void ThinkingViTOptions::validate() const {
  TVIT_CHECK(!stages_.empty(),
             "model option 'stages': expected at least one head count, found none");
  for (size_t i = 0; i < stages_.size(); ++i) {
    TVIT_CHECK(stages_[i] > 0, "model option 'stages': expected positive head counts, found ",
               shape_str(stages_));
    TVIT_CHECK(i == 0 || stages_[i] > stages_[i - 1],
               "model option 'stages': expected strictly increasing head counts, found ",
               shape_str(stages_));
  }
  TVIT_CHECK(patch_size_ > 0 && image_size_ > 0,
             "model options 'image_size'/'patch_size': expected positive values, found ",
             image_size_, "/", patch_size_);
  TVIT_CHECK(image_size_ % patch_size_ == 0, "model option 'image_size': ", image_size_,
             " is not divisible by 'patch_size' ", patch_size_);
  TVIT_CHECK(in_channels_ > 0, "model option 'in_channels': expected > 0, found ", in_channels_);
  TVIT_CHECK(num_classes_ > 0, "model option 'num_classes': expected > 0, found ", num_classes_);
  TVIT_CHECK(head_dim_ > 0, "model option 'head_dim': expected > 0, found ", head_dim_);
  TVIT_CHECK(depth_ > 0, "model option 'depth': expected > 0, found ", depth_);
  TVIT_CHECK(mlp_ratio_ > 0, "model option 'mlp_ratio': expected > 0, found ", mlp_ratio_);
  TVIT_CHECK(norm_eps_ > 0, "model option 'norm_eps': expected > 0, found ", norm_eps_);
  TVIT_CHECK(drop_path_rate_ >= 0 && drop_path_rate_ < 1,
             "model option 'drop_path_rate': expected a value in [0, 1), found ", drop_path_rate_);
  // Bounds far beyond any ViT, checked before anything is allocated.
  const auto bound = [](const char* name, double value, double max) {
    TVIT_CHECK(value <= max, "model option '", name, "': ", value, " is beyond the supported ",
               max);
  };
  bound("image_size", static_cast<double>(image_size_), util::kMaxImageSize);
  bound("in_channels", static_cast<double>(in_channels_), kMaxChannels);
  bound("num_classes", static_cast<double>(num_classes_), kMaxClasses);
  bound("head_dim", static_cast<double>(head_dim_), 4096);
  bound("depth", static_cast<double>(depth_), kMaxDepth);
  bound("mlp_ratio", mlp_ratio_, kMaxMlpRatio);
  bound("stages", static_cast<double>(stages_.back()), 1024);
  bound("image_size", static_cast<double>(num_patches()), 1 << 20);  // tokens per image
  // The MACs of an image, in floating point (the counters use int64).
  const double n = static_cast<double>(num_tokens()), k = static_cast<double>(embed_dim());
  const double macs = static_cast<double>(depth_) * n * k * (4 * k + 2 * k * mlp_ratio_ + 2 * n);
  TVIT_CHECK(macs <= 1e17, "model options: an image would cost ", macs,
             " MACs, beyond the supported 1e17 (", describe(), ")");
}

std::string ThinkingViTOptions::describe() const {
  std::ostringstream out;
  out << "stages=" << shape_str(stages_) << " image_size=" << image_size_
      << " patch_size=" << patch_size_ << " in_channels=" << in_channels_
      << " num_classes=" << num_classes_ << " head_dim=" << head_dim_ << " depth=" << depth_
      << " mlp_ratio=" << mlp_ratio_ << " qkv_bias=" << (qkv_bias_ ? "true" : "false")
      << " norm_eps=" << norm_eps_ << " drop_path_rate=" << drop_path_rate_
      << (recycling_ ? "" : " recycling=false");
  return out.str();
}

namespace {

ThinkingViTOptions imagenet(std::vector<int64_t> stages) {
  return ThinkingViTOptions().stages(std::move(stages));
}

// Small models for 28-32 pixel inputs (Fashion-MNIST, CIFAR): patch 4, head_dim 32, depth 6.
ThinkingViTOptions small(int64_t image_size, int64_t channels, std::vector<int64_t> stages) {
  return ThinkingViTOptions()
      .image_size(image_size)
      .patch_size(4)
      .in_channels(channels)
      .num_classes(10)
      .head_dim(32)
      .depth(6)
      .stages(std::move(stages));
}

const std::map<std::string, ThinkingViTOptions>& presets() {
  static const std::map<std::string, ThinkingViTOptions> table = {
      {"deit_tiny_patch16_224", imagenet({3})},
      {"deit_small_patch16_224", imagenet({6})},
      {"deit_base_patch16_224", imagenet({12})},
      {"thinkingvit_2h_3h", imagenet({2, 3})},
      {"thinkingvit_3h_6h", imagenet({3, 6})},
      {"thinkingvit_3h_9h", imagenet({3, 9})},
      {"thinkingvit_3h_12h", imagenet({3, 12})},
      {"thinkingvit_2h_3h_6h", imagenet({2, 3, 6})},
      {"thinkingvit_3h_6h_12h", imagenet({3, 6, 12})},
      {"thinkingvit_mnist_2h_4h", small(28, 1, {2, 4})},
      {"thinkingvit_cifar_2h_4h", small(32, 3, {2, 4})},
      {"vit_mnist_4h", small(28, 1, {4})},
  };
  return table;
}

}  // namespace

ThinkingViTOptions preset(const std::string& name) {
  const auto& table = presets();
  auto it = table.find(name);
  if (it == table.end()) {
    std::string known;
    for (const auto& [key, unused] : table) known += (known.empty() ? "" : ", ") + key;
    fail("unknown preset '", name, "'; expected one of: ", known);
  }
  return it->second;
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& [key, unused] : presets()) names.push_back(key);
  return names;
}

std::vector<int64_t> parse_stages(const std::string& text, const std::string& what) {
  std::vector<int64_t> stages;
  std::string token;
  auto flush = [&] {
    if (token.empty()) return;
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(token, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TVIT_CHECK(used == token.size(), what, ": expected a list of head counts such as 3,6; found '",
               text, "'");
    stages.push_back(value);
    token.clear();
  };
  for (char c : text) {
    if (c == ',' || c == ' ' || c == '[' || c == ']' || c == '-') {
      flush();
    } else {
      token += c;
    }
  }
  flush();
  TVIT_CHECK(!stages.empty(), what, ": expected a list of head counts such as 3,6; found '", text,
             "'");
  return stages;
}

int64_t StageMacs::total(MacConvention convention) const {
  const int64_t matmuls = patch_embed + qkv + attention + proj + mlp + head;
  return convention == MacConvention::kFvcore ? matmuls + layer_norm : matmuls;
}

StageMacs stage_macs(const ThinkingViTOptions& o, int64_t stage) {
  TVIT_CHECK(stage >= 0 && stage < o.num_stages(), "stage ", stage, " out of range: the model has ",
             o.num_stages(), " stage(s)");
  const int64_t k = o.stage_width(stage), hidden = o.hidden_width(k);
  const int64_t n = o.num_tokens(), depth = o.depth();
  StageMacs m;
  m.patch_embed = o.num_patches() * k * o.in_channels() * o.patch_size() * o.patch_size();
  m.qkv = depth * n * k * 3 * k;
  m.attention = depth * 2 * n * n * k;
  m.proj = depth * n * k * k;
  m.mlp = depth * 2 * n * k * hidden;
  m.head = k * o.num_classes();
  m.layer_norm = 5 * (2 * depth + 1) * n * k;
  if (stage > 0) m.recycle = n * o.stage_width(stage - 1) * k;
  return m;
}

MacBreakdown breakdown(const StageMacs& m) {
  return {{{"patch embed", m.patch_embed, MacCounted::kBoth},
           {"qkv", m.qkv, MacCounted::kBoth},
           {"attention matmuls (q·kᵀ, attn·v)", m.attention, MacCounted::kBoth},
           {"attention proj", m.proj, MacCounted::kBoth},
           {"MLP", m.mlp, MacCounted::kBoth},
           {"head", m.head, MacCounted::kBoth},
           {"LayerNorm", m.layer_norm, MacCounted::kFvcoreOnly},
           {"recycling projection", m.recycle, MacCounted::kNeither}}};
}

}  // namespace thinkingvit::models
