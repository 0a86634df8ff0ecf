#pragma once
// ThinkingViT on Swin: one Swin Transformer run in head rounds (models/swin/options.h). Round 0
// runs from the image; round r > 0 adds alpha_{r-1} * proj(tokens of round r - 1) to its patch
// embedding, proj being a depthwise transposed convolution back to the patch grid followed by a
// 1x1 convolution. Parameter names are timm's Swin ("layers.{i}.blocks.{j}...", "head.fc") plus
// "alpha.{t}" and "proj_layer" ("proj_layer2", ...) as the released Hugging Face export writes
// them.

#include <torch/nn/modules/container/parameterlist.h>

#include <cstdint>
#include <vector>

#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/swin/ops.h"
#include "thinkingvit/models/swin/options.h"

namespace thinkingvit::models {

class ThinkingSwinImpl : public ElasticModel {
 public:
  explicit ThinkingSwinImpl(ThinkingSwinOptions options);
  void pretty_print(std::ostream& stream) const override;

  // Round `stage` on B x C x H x W images; `prev_tokens` (B x L x k, the previous round's tokens
  // after the final norm, L = the last level's grid) are required for stage > 0 when recycling.
  // Returns the logits and this round's B x L x k tokens.
  StageOutput forward_stage(int64_t stage, const at::Tensor& images,
                            const at::Tensor& prev_tokens = {}) override;

  const ThinkingSwinOptions& options() const { return options_; }
  const ModelOptions& model_options() const override { return model_options_; }
  // As timm's Swin: no weight decay on biases, norms, the relative position bias tables and alpha.
  bool decays(const std::string& name, const at::Tensor& param) const override;

  // The weights round `stage` uses in block `block` of `level` (leading slices; qkv takes the
  // first 3k rows of the fused weight, as released).
  BlockWeights block_weights(int64_t stage, int64_t level, int64_t block) const;

 private:
  struct Block {
    at::Tensor norm1_w, norm1_b, qkv_w, qkv_b, bias_table, proj_w, proj_b;
    at::Tensor norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  };
  struct Merge {
    at::Tensor norm_w, norm_b, reduction_w;
  };
  struct Projector {
    at::Tensor alpha, upsample_w, proj_w, proj_b;
  };
  // Attention geometry of a level: relative position index, and the shift mask when any block
  // of the level shifts; kept off the state dict (timm's non-persistent buffers) and copied to
  // the device the images are on.
  struct Geometry {
    at::Tensor index, mask;
  };
  const Geometry& geometry(int64_t level, const c10::Device& device);
  at::Tensor project(int64_t transition, const at::Tensor& tokens) const;

  ThinkingSwinOptions options_;
  ModelOptions model_options_;
  at::Tensor patch_w_, patch_b_, patch_norm_w_, patch_norm_b_, norm_w_, norm_b_, head_w_, head_b_;
  std::vector<std::vector<Block>> blocks_;  // [level][block]
  std::vector<Merge> merges_;               // [level], empty at level 0
  std::vector<Projector> projectors_;       // [transition]
  std::vector<Geometry> geometry_cpu_, geometry_device_;
  c10::Device geometry_on_ = c10::Device(c10::kCPU);
};
TORCH_MODULE(ThinkingSwin);

}  // namespace thinkingvit::models
