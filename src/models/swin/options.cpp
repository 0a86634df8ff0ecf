#include "thinkingvit/models/swin/options.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/limits.h"

namespace thinkingvit::models {

namespace {

// The released code's share of a level's heads a round keeps, in double precision.
double keep_ratio(int64_t heads, int64_t max_heads) {
  return std::min(
      1.0, static_cast<double>(std::max<int64_t>(1, heads)) / static_cast<double>(max_heads));
}

std::string rounds_str(const std::vector<std::vector<int64_t>>& rounds) {
  std::string out = "[";
  for (size_t r = 0; r < rounds.size(); ++r) out += (r ? ", " : "") + shape_str(rounds[r]);
  return out + "]";
}

}  // namespace

int64_t ThinkingSwinOptions::window(int64_t level) const {
  return std::min(resolution(level), window_size_);
}

int64_t ThinkingSwinOptions::shift(int64_t level, int64_t block) const {
  return block % 2 == 1 && resolution(level) > window(level) ? window_size_ / 2 : 0;
}

int64_t ThinkingSwinOptions::round_hidden(int64_t stage, int64_t level) const {
  const auto hidden = static_cast<int64_t>(static_cast<double>(level_dim(level)) * mlp_ratio_);
  const double p = keep_ratio(round_heads(stage, level), num_heads_.at(level));
  return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(hidden) * p));
}

void ThinkingSwinOptions::validate() const {
  const auto option = [](const char* name) { return std::string("model option '") + name + "'"; };
  const auto bound = [&](const char* name, double value, double max) {
    TVIT_CHECK(value <= max, option(name), ": ", value, " is beyond the supported ", max);
  };
  bound("image_size", static_cast<double>(image_size_), util::kMaxImageSize);
  bound("in_channels", static_cast<double>(in_channels_), kMaxChannels);
  bound("num_classes", static_cast<double>(num_classes_), kMaxClasses);
  bound("embed_dim", static_cast<double>(embed_dim_), 8192);
  bound("window_size", static_cast<double>(window_size_), 256);
  bound("mlp_ratio", mlp_ratio_, kMaxMlpRatio);
  for (auto d : depths_) bound("depths", static_cast<double>(d), kMaxDepth);
  for (auto h : num_heads_) bound("num_heads", static_cast<double>(h), 1024);
  TVIT_CHECK(patch_size_ > 0 && image_size_ > 0, option("image_size"), "/'patch_size': expected ",
             "positive values, found ", image_size_, "/", patch_size_);
  TVIT_CHECK(image_size_ % patch_size_ == 0, option("image_size"), ": ", image_size_,
             " is not divisible by 'patch_size' ", patch_size_);
  TVIT_CHECK(in_channels_ > 0, option("in_channels"), ": expected > 0, found ", in_channels_);
  TVIT_CHECK(num_classes_ > 0, option("num_classes"), ": expected > 0, found ", num_classes_);
  TVIT_CHECK(embed_dim_ > 0, option("embed_dim"), ": expected > 0, found ", embed_dim_);
  TVIT_CHECK(!depths_.empty() && depths_.size() <= 8, option("depths"),
             ": expected 1 to 8 levels, found ", shape_str(depths_));
  for (auto d : depths_) {
    TVIT_CHECK(d > 0, option("depths"), ": expected positive block counts, found ",
               shape_str(depths_));
  }
  TVIT_CHECK(num_heads_.size() == depths_.size(), option("num_heads"), ": expected ",
             depths_.size(), " head counts (one per level of 'depths'), found ",
             shape_str(num_heads_));
  for (int64_t i = 0; i < num_levels(); ++i) {
    TVIT_CHECK(num_heads_[i] > 0 && level_dim(i) % num_heads_[i] == 0, option("num_heads"), ": ",
               num_heads_[i], " heads at level ", i, " do not divide its width ", level_dim(i));
  }
  const int64_t merges = int64_t{1} << (num_levels() - 1);
  TVIT_CHECK(grid_size() % merges == 0, option("image_size"), ": the patch grid ", grid_size(),
             " must halve evenly ", num_levels() - 1, " times for 'depths' ", shape_str(depths_));
  TVIT_CHECK(window_size_ > 0, option("window_size"), ": expected > 0, found ", window_size_);
  TVIT_CHECK(mlp_ratio_ > 0, option("mlp_ratio"), ": expected > 0, found ", mlp_ratio_);
  TVIT_CHECK(norm_eps_ > 0, option("norm_eps"), ": expected > 0, found ", norm_eps_);
  // Its windows are short sequences, but the small-sequence CPU kernel is the ViT's only.
  TVIT_CHECK(attention_ != AttentionBackend::kSmall, option("attention"),
             ": 'small' is a ViT kernel; a Swin model runs 'fused' or 'explicit'");
  TVIT_CHECK(drop_path_rate_ >= 0 && drop_path_rate_ < 1, option("drop_path_rate"),
             ": expected a value in [0, 1), found ", drop_path_rate_);
  TVIT_CHECK(!head_rounds_.empty(), option("head_rounds"), ": expected at least one round");
  for (int64_t r = 0; r < num_stages(); ++r) {
    const auto& round = head_rounds_[r];
    TVIT_CHECK(static_cast<int64_t>(round.size()) == num_levels(), option("head_rounds"),
               ": round ", r, " lists ", round.size(), " head counts, expected one per level (",
               num_levels(), "), found ", rounds_str(head_rounds_));
    for (int64_t i = 0; i < num_levels(); ++i) {
      TVIT_CHECK(round[i] >= 1 && round[i] <= num_heads_[i], option("head_rounds"), ": round ", r,
                 " level ", i, " uses ", round[i], " heads, expected 1..", num_heads_[i]);
      TVIT_CHECK(r == 0 || round[i] >= head_rounds_[r - 1][i], option("head_rounds"),
                 ": each round must use at least the heads of the one before, found ",
                 rounds_str(head_rounds_));
      // The released code sizes a round's channels three ways (rounded, truncated, heads x
      // head_dim); they must agree or its residual additions fail.
      const double exact = static_cast<double>(level_dim(i)) * keep_ratio(round[i], num_heads_[i]);
      TVIT_CHECK(static_cast<int64_t>(std::nearbyint(exact)) == round_width(r, i) &&
                     static_cast<int64_t>(exact) == round_width(r, i),
                 option("head_rounds"), ": ", round[i], " of ", num_heads_[i], " heads at level ",
                 i, " give no whole channel count in the released code");
    }
  }
  // Sizes that follow from several options, in floating point so that nothing overflows: the
  // shift mask built at construction, and the MACs of an image (the counters use int64).
  double macs = 0, mask = 0;
  for (int64_t i = 0; i < num_levels(); ++i) {
    const double ws = static_cast<double>(window(i));
    const double padded = std::ceil(static_cast<double>(resolution(i)) / ws) * ws;
    const double k = static_cast<double>(level_dim(i));
    const double hidden = k * mlp_ratio_;
    macs += static_cast<double>(depths_[i]) * padded * padded *
            (4 * k * k + 2 * k * hidden + 2 * ws * ws * k);
    mask = std::max(mask, padded * padded * ws * ws);
  }
  TVIT_CHECK(mask <= 1 << 28, option("image_size"), "/'window_size': the shift mask would hold ",
             mask, " values, beyond the supported 2^28");
  TVIT_CHECK(macs <= 1e17, "model options: an image would cost ", macs,
             " MACs, beyond the supported 1e17 (", describe(), ")");
}

std::string ThinkingSwinOptions::describe() const {
  std::ostringstream out;
  out << "swin head_rounds=" << rounds_str(head_rounds_) << " image_size=" << image_size_
      << " patch_size=" << patch_size_ << " in_channels=" << in_channels_
      << " num_classes=" << num_classes_ << " embed_dim=" << embed_dim_
      << " depths=" << shape_str(depths_) << " num_heads=" << shape_str(num_heads_)
      << " window_size=" << window_size_ << " mlp_ratio=" << mlp_ratio_
      << " qkv_bias=" << (qkv_bias_ ? "true" : "false") << " norm_eps=" << norm_eps_
      << " drop_path_rate=" << drop_path_rate_ << (recycling_ ? "" : " recycling=false");
  return out.str();
}

// ---- cost ----

MacBreakdown swin_stage_macs(const ThinkingSwinOptions& o, int64_t stage) {
  const int64_t levels = o.num_levels(), grid = o.grid_size();
  int64_t patch = o.level_dim(0) * grid * grid * o.in_channels() * o.patch_size() * o.patch_size();
  int64_t qkv = 0, attention = 0, proj = 0, mlp = 0, merging = 0, norm = 0, projector = 0;
  norm += 5 * grid * grid * o.level_dim(0);  // the patch-embed norm runs at full width
  for (int64_t i = 0; i < levels; ++i) {
    const int64_t res = o.resolution(i), ws = o.window(i);
    const int64_t padded = (res + ws - 1) / ws * ws;
    const int64_t k = o.round_width(stage, i), heads = o.round_heads(stage, i);
    const int64_t hidden = o.round_hidden(stage, i);
    if (i > 0) {
      const int64_t k_in = o.round_width(stage, i - 1);
      merging += res * res * 4 * k_in * k;
      norm += 5 * res * res * 4 * k_in;
    }
    const int64_t d = o.depths()[i];
    qkv += d * padded * padded * k * 3 * k;
    proj += d * padded * padded * k * k;
    attention += d * 2 * padded * padded * ws * ws * heads * o.head_dim(i);
    mlp += d * res * res * 2 * k * hidden;
    norm += d * 5 * 2 * res * res * k;
  }
  const int64_t last = o.round_width(stage, levels - 1);
  norm += 5 * o.resolution(levels - 1) * o.resolution(levels - 1) * last;
  if (stage > 0) {  // counted with the round it feeds, as released; in no total without recycling
    const int64_t c_in = o.round_width(stage - 1, levels - 1), c_out = o.round_width(stage, 0);
    const int64_t src = o.resolution(levels - 1), s = o.upsample_factor();
    projector = c_in * src * src * s * s + c_out * grid * grid * c_in;
  }
  return {{{"patch embed", patch, MacCounted::kBoth},
           {"qkv", qkv, MacCounted::kBoth},
           {"attention matmuls (q·kᵀ, attn·v)", attention, MacCounted::kBoth},
           {"attention proj", proj, MacCounted::kBoth},
           {"MLP", mlp, MacCounted::kBoth},
           {"patch merging", merging, MacCounted::kBoth},
           {"head", last * o.num_classes(), MacCounted::kBoth},
           {"token projector", projector, o.recycling() ? MacCounted::kBoth : MacCounted::kNeither},
           {"LayerNorm", norm, MacCounted::kFvcoreOnly}}};
}

namespace {

int64_t projector_parameters(const ThinkingSwinOptions& o, int64_t transition) {
  const int64_t c_in = o.round_width(transition, o.num_levels() - 1);
  const int64_t c_out = o.round_width(transition + 1, 0);
  const int64_t s = o.upsample_factor();
  return 1 + c_in * s * s + c_out * c_in + c_out;  // alpha, depthwise transposed conv, 1x1 conv
}

// Parameters of the backbone at the widths of `stage`, or at full width when stage < 0.
int64_t backbone_parameters(const ThinkingSwinOptions& o, int64_t stage) {
  const auto width = [&](int64_t i) {
    return stage < 0 ? o.level_dim(i) : o.round_width(stage, i);
  };
  const auto heads = [&](int64_t i) {
    return stage < 0 ? o.num_heads()[i] : o.round_heads(stage, i);
  };
  const auto hidden = [&](int64_t i) {
    return stage < 0 ? static_cast<int64_t>(static_cast<double>(o.level_dim(i)) * o.mlp_ratio())
                     : o.round_hidden(stage, i);
  };
  const int64_t d0 = o.level_dim(0);
  int64_t n = d0 * o.in_channels() * o.patch_size() * o.patch_size() + d0 + 2 * d0;
  for (int64_t i = 0; i < o.num_levels(); ++i) {
    const int64_t k = width(i), h = hidden(i), ws = o.window(i);
    if (i > 0) n += 2 * 4 * width(i - 1) + 4 * width(i - 1) * k;
    const int64_t block = 2 * k + (2 * ws - 1) * (2 * ws - 1) * heads(i) + 3 * k * k +
                          (o.qkv_bias() ? 3 * k : 0) + k * k + k + 2 * k + h * k + h + k * h + k;
    n += o.depths()[i] * block;
  }
  const int64_t last = width(o.num_levels() - 1);
  return n + 2 * last + o.num_classes() * last + o.num_classes();
}

}  // namespace

int64_t swin_stage_parameter_count(const ThinkingSwinOptions& o, int64_t stage) {
  return backbone_parameters(o, stage) + (stage > 0 ? projector_parameters(o, stage - 1) : 0);
}

int64_t swin_parameter_count(const ThinkingSwinOptions& o) {
  int64_t n = backbone_parameters(o, -1);
  for (int64_t t = 0; t + 1 < o.num_stages(); ++t) n += projector_parameters(o, t);
  return n;
}

// ---- presets ----

namespace {

ThinkingSwinOptions imagenet(int64_t embed, std::vector<int64_t> depths, std::vector<int64_t> heads,
                             std::vector<std::vector<int64_t>> rounds) {
  return ThinkingSwinOptions()
      .embed_dim(embed)
      .depths(std::move(depths))
      .num_heads(std::move(heads))
      .head_rounds(std::move(rounds));
}

// Small Swins for 28-32 px inputs: patch 2, head_dim 16, the first level at half heads in round 1.
ThinkingSwinOptions small(int64_t image, int64_t channels, int64_t window,
                          std::vector<int64_t> depths, std::vector<int64_t> heads) {
  std::vector<int64_t> half;
  for (auto h : heads) half.push_back(std::max<int64_t>(1, h / 2));
  return ThinkingSwinOptions()
      .image_size(image)
      .patch_size(2)
      .in_channels(channels)
      .num_classes(10)
      .embed_dim(16 * heads.front())
      .depths(depths)
      .num_heads(heads)
      .window_size(window)
      .head_rounds({half, heads});
}

const std::map<std::string, ThinkingSwinOptions>& presets() {
  static const std::map<std::string, ThinkingSwinOptions> table = {
      // The released rounds: level 0 whole, the later levels at half their heads in round 1.
      {"thinkingvit_swin_t",
       imagenet(96, {2, 2, 6, 2}, {3, 6, 12, 24}, {{3, 3, 6, 12}, {3, 6, 12, 24}})},
      {"thinkingvit_swin_s",
       imagenet(96, {2, 2, 18, 2}, {3, 6, 12, 24}, {{3, 3, 6, 12}, {3, 6, 12, 24}})},
      {"thinkingvit_swin_b",
       imagenet(128, {2, 2, 18, 2}, {4, 8, 16, 32}, {{4, 4, 8, 16}, {4, 8, 16, 32}})},
      {"swin_tiny_patch4_window7_224",
       imagenet(96, {2, 2, 6, 2}, {3, 6, 12, 24}, {{3, 6, 12, 24}})},
      {"swin_small_patch4_window7_224",
       imagenet(96, {2, 2, 18, 2}, {3, 6, 12, 24}, {{3, 6, 12, 24}})},
      {"swin_base_patch4_window7_224",
       imagenet(128, {2, 2, 18, 2}, {4, 8, 16, 32}, {{4, 8, 16, 32}})},
      {"thinkingvit_swin_mnist", small(28, 1, 7, {2, 2}, {2, 4})},
      {"thinkingvit_swin_cifar", small(32, 3, 4, {2, 2, 2}, {2, 4, 8})},
  };
  return table;
}

}  // namespace

const std::vector<std::string>& swin_preset_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& [name, unused] : presets()) out.push_back(name);
    return out;
  }();
  return names;
}

bool is_swin_preset(const std::string& name) { return presets().count(name) > 0; }

ThinkingSwinOptions swin_preset(const std::string& name) {
  auto it = presets().find(name);
  TVIT_CHECK(it != presets().end(), "unknown Swin preset '", name, "'");
  return it->second;
}

}  // namespace thinkingvit::models
