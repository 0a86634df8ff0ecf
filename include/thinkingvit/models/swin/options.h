#pragma once
// Options of ThinkingViT on Swin: one Swin Transformer (patch embedding, levels of shifted-window
// blocks joined by patch merging, final norm, average pooling, head) run in head rounds. Round r
// uses, at level i, the leading head_rounds[r][i] heads and their channels of every layer;
// round r > 0 adds alpha * proj(tokens of round r - 1) to its patch embedding. The last round
// with every level at full heads is the whole Swin.
//
// "Level" is a Swin stage (a resolution); "stage" is an elastic stage, i.e. a head round, as
// everywhere else in this project.

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "thinkingvit/models/family.h"
#include "thinkingvit/models/layers.h"
#include "thinkingvit/models/macs.h"

namespace thinkingvit::models {

struct ThinkingSwinOptions {
  // The family name ModelOptions::architecture() reports.
  static constexpr const char* kArchitecture = "thinkingvit_swin";

  TORCH_ARG(int64_t, image_size) = 224;
  TORCH_ARG(int64_t, patch_size) = 4;
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 1000;
  TORCH_ARG(int64_t, embed_dim) = 96;  // level i is embed_dim * 2^i wide
  TORCH_ARG(std::vector<int64_t>, depths) = std::vector<int64_t>{2, 2, 18, 2};
  TORCH_ARG(std::vector<int64_t>, num_heads) = std::vector<int64_t>{3, 6, 12, 24};
  TORCH_ARG(int64_t, window_size) = 7;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, norm_eps) = 1e-5;
  TORCH_ARG(double, drop_path_rate) = 0.0;
  // Heads per level of each round; Swin-S as released: (3, 3, 6, 12) then (3, 6, 12, 24).
  TORCH_ARG(std::vector<std::vector<int64_t>>, head_rounds) = std::vector<std::vector<int64_t>>{
      {3, 3, 6, 12}, {3, 6, 12, 24}};
  TORCH_ARG(AttentionBackend, attention) = AttentionBackend::kFused;
  TORCH_ARG(bool, recycling) = true;

 public:
  int64_t num_stages() const { return static_cast<int64_t>(head_rounds_.size()); }
  int64_t num_levels() const { return static_cast<int64_t>(depths_.size()); }
  int64_t level_dim(int64_t level) const { return embed_dim_ << level; }
  int64_t head_dim(int64_t level) const { return level_dim(level) / num_heads_.at(level); }
  int64_t grid_size() const { return image_size_ / patch_size_; }
  int64_t resolution(int64_t level) const { return grid_size() >> level; }
  // The window of a level's blocks: window_size, or the resolution when that is smaller.
  int64_t window(int64_t level) const;
  // The cyclic shift of block `block` of a level: window_size / 2 on odd blocks, none when one
  // window covers the level.
  int64_t shift(int64_t level, int64_t block) const;
  // Heads and channels round `stage` uses at `level`, and its MLP hidden width.
  int64_t round_heads(int64_t stage, int64_t level) const {
    return head_rounds_.at(stage).at(level);
  }
  int64_t round_width(int64_t stage, int64_t level) const {
    return round_heads(stage, level) * head_dim(level);
  }
  int64_t round_hidden(int64_t stage, int64_t level) const;
  // Kernel and stride of the token projector's transposed convolution: the patch grid over the
  // last level's resolution (8 for Swin at 224).
  int64_t upsample_factor() const { return grid_size() / resolution(num_levels() - 1); }

  // Throws thinkingvit::Error naming the offending option.
  void validate() const;
  std::string describe() const;
};

// MACs of one image through round `stage`, in the released counter's convention (convolutions,
// Linear layers at their sliced widths and the two attention matmuls; padded tokens count; the
// token projector belongs to the round it feeds), with LayerNorm at 5 MACs per element for the
// fvcore convention.
MacBreakdown swin_stage_macs(const ThinkingSwinOptions& options, int64_t stage);
// Parameters round `stage` uses (leading slices, plus the projector and alpha feeding it), and
// all parameters of the model.
int64_t swin_stage_parameter_count(const ThinkingSwinOptions& options, int64_t stage);
int64_t swin_parameter_count(const ThinkingSwinOptions& options);

// The family's face of these options (what ModelOptions holds).
std::unique_ptr<FamilyOptions> make_family_options(ThinkingSwinOptions options);

// thinkingvit_swin_{t,s,b} (224 px, two rounds), the plain timm Swins swin_{tiny,small,base}_
// patch4_window7_224 (one round), and small ones for 28-32 px inputs.
const std::vector<std::string>& swin_preset_names();
bool is_swin_preset(const std::string& name);
ThinkingSwinOptions swin_preset(const std::string& name);

}  // namespace thinkingvit::models
