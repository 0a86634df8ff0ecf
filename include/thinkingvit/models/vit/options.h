#pragma once
// Options of a nested (Matryoshka) ViT. One stage is a plain ViT/DeiT; two or more stages,
// with strictly increasing head counts, make a ThinkingViT whose stage i uses the leading
// head_dim * stages[i] channels of every layer.

#include <torch/arg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "thinkingvit/models/family.h"
#include "thinkingvit/models/layers.h"
#include "thinkingvit/models/macs.h"
#include "thinkingvit/util/limits.h"

namespace thinkingvit::models {

struct ThinkingViTOptions {
  // config.json's "architecture" for this family.
  static constexpr const char* kArchitecture = "thinkingvit";

  TORCH_ARG(int64_t, image_size) = 224;
  TORCH_ARG(int64_t, patch_size) = 16;
  TORCH_ARG(int64_t, in_channels) = 3;
  TORCH_ARG(int64_t, num_classes) = 1000;
  TORCH_ARG(int64_t, head_dim) = 64;
  TORCH_ARG(int64_t, depth) = 12;
  TORCH_ARG(double, mlp_ratio) = 4.0;
  TORCH_ARG(bool, qkv_bias) = true;
  TORCH_ARG(double, norm_eps) = 1e-6;
  TORCH_ARG(double, drop_path_rate) = 0.0;
  // Heads per stage, strictly increasing; the model is head_dim * stages.back() wide.
  TORCH_ARG(std::vector<int64_t>, stages) = std::vector<int64_t>{3, 6};
  TORCH_ARG(AttentionBackend, attention) = AttentionBackend::kFused;
  // Token Recycling between stages; off, every stage runs from the embeddings alone
  // (with stochastic stage sampling this trains the HydraViT baseline).
  TORCH_ARG(bool, recycling) = true;

 public:
  int64_t num_stages() const { return static_cast<int64_t>(stages_.size()); }
  int64_t embed_dim() const { return head_dim_ * stages_.back(); }
  int64_t num_heads() const { return stages_.back(); }
  int64_t stage_width(int64_t stage) const { return head_dim_ * stages_.at(stage); }
  int64_t hidden_width(int64_t width) const {
    return static_cast<int64_t>(static_cast<double>(width) * mlp_ratio_);
  }
  int64_t grid_size() const { return image_size_ / patch_size_; }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  int64_t num_tokens() const { return num_patches() + 1; }  // + CLS

  // Throws thinkingvit::Error naming the offending option.
  void validate() const;
  // "stages=[3, 6] image=224 patch=16 ..." for logs.
  std::string describe() const;
};

// MACs of one image through one stage, by layer type. Softmax and GELU are never counted.
struct StageMacs {
  int64_t patch_embed = 0;
  int64_t qkv = 0;
  int64_t attention = 0;  // q kᵀ and attn · v
  int64_t proj = 0;
  int64_t mlp = 0;
  int64_t head = 0;
  int64_t layer_norm = 0;  // 5 MACs per normalised element (fvcore)
  int64_t recycle = 0;     // Token Recycling projection; shown apart, not in either total

  int64_t total(MacConvention convention) const;
};

StageMacs stage_macs(const ThinkingViTOptions& options, int64_t stage);
// A ViT stage's StageMacs as a breakdown.
MacBreakdown breakdown(const StageMacs& macs);

// The family's face of these options (what ModelOptions holds; found by argument-dependent
// lookup, so a ThinkingViTOptions converts to a ModelOptions).
std::unique_ptr<FamilyOptions> make_family_options(ThinkingViTOptions options);

// Named architectures: timm's deit_{tiny,small,base}_patch16_224, the paper's ThinkingViT
// configurations at 224 (thinkingvit_3h_6h, ...) and small ones for 28-32 pixel inputs.
ThinkingViTOptions preset(const std::string& name);
std::vector<std::string> preset_names();

// "3,6" or "[3, 6]" -> {3, 6}; throws naming `what` on malformed input.
std::vector<int64_t> parse_stages(const std::string& text, const std::string& what);

}  // namespace thinkingvit::models
