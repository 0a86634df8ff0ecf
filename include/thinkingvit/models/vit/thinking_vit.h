#pragma once
// ThinkingViT: one ViT holding nested sub-networks (stage i = the leading
// head_dim * stages[i] channels of every layer), run progressively with Token Recycling.
// Parameter names are timm's plus `alpha.{i}` and `proj_layer`, `proj_layer2`, ... so that
// state dicts match the released checkpoints.

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/parameterlist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/vit/options.h"

namespace thinkingvit::models {

// The sliced weights one stage uses (its blocks': models/layers.h).
struct StageWeights {
  int64_t width = 0;
  int64_t heads = 0;
  at::Tensor patch_w, patch_b, cls_token, pos_embed;
  std::vector<BlockWeights> blocks;
  at::Tensor norm_w, norm_b, head_w, head_b;
  at::Tensor recycle_w, recycle_b, alpha;  // undefined for stage 0
};

class AttentionImpl : public torch::nn::Cloneable<AttentionImpl> {
 public:
  AttentionImpl(int64_t dim, bool qkv_bias);
  void reset() override;
  void reset_parameters();
  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t dim_;
  bool qkv_bias_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Cloneable<MlpImpl> {
 public:
  MlpImpl(int64_t dim, int64_t hidden);
  void reset() override;
  void reset_parameters();
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  int64_t dim_, hidden_;
};
TORCH_MODULE(Mlp);

class BlockImpl : public torch::nn::Cloneable<BlockImpl> {
 public:
  BlockImpl(int64_t dim, int64_t hidden, bool qkv_bias, double eps);
  void reset() override;
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};

 private:
  int64_t dim_, hidden_;
  bool qkv_bias_;
  double eps_;
};
TORCH_MODULE(Block);

class PatchEmbedImpl : public torch::nn::Cloneable<PatchEmbedImpl> {
 public:
  PatchEmbedImpl(int64_t in_channels, int64_t dim, int64_t patch_size);
  void reset() override;
  torch::nn::Conv2d proj{nullptr};

 private:
  int64_t in_channels_, dim_, patch_size_;
};
TORCH_MODULE(PatchEmbed);

class ThinkingViTImpl : public ElasticModel {
 public:
  explicit ThinkingViTImpl(ThinkingViTOptions options);
  void reset();
  // timm 0.3.2 init (what DeiT trained with): trunc-normal(0.02) for cls/pos/Linear weights,
  // zero biases, LayerNorm 1/0, default init for the patch conv and the recycling projections.
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;

  // Runs stage `stage` on B x C x H x W images; `prev_tokens` (B x N x k_{stage-1}) are the
  // previous stage's tokens and are required for stage > 0.
  StageOutput forward_stage(int64_t stage, const at::Tensor& images,
                            const at::Tensor& prev_tokens = {}) override;

  // Gathers the weights stage `stage` uses: views that carry gradients when grad mode is on;
  // in no-grad mode contiguous copies, cached and refreshed when any parameter changes
  // (in-place version or storage), so eval forwards do not re-gather qkv rows.
  StageWeights stage_weights(int64_t stage);
  // Switches the no-grad cache above off (re-gather on every forward), for measurements.
  void set_weight_cache(bool enabled) override { weight_cache_ = enabled; }
  int64_t weight_cache_bytes() const override;

  const ThinkingViTOptions& options() const { return options_; }
  const ModelOptions& model_options() const override { return model_options_; }
  // Channel widths nest in every tensor but the head's classes, the token count and the kernel.
  TensorLayout tensor_layout(const std::string& name, int64_t ndim) const override;
  // Not decayed, as DeiT: biases, LayerNorms, pos_embed, cls_token and the recycling gains.
  bool decays(const std::string& name, const at::Tensor& param) const override;

  PatchEmbed patch_embed{nullptr};
  at::Tensor cls_token, pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
  torch::nn::ParameterList alpha{nullptr};     // one scalar per stage transition
  std::vector<torch::nn::Linear> proj_layers;  // "proj_layer", "proj_layer2", ...

 protected:
  void drop_weight_cache() override;

 private:
  StageWeights gather_stage_weights(int64_t stage, bool contiguous) const;

  ThinkingViTOptions options_;
  ModelOptions model_options_;
  std::vector<Block> block_list_;
  std::vector<StageWeights> cached_weights_;  // per stage, for no-grad forwards
  // The same with the matmul and convolution weights in autocast's dtype (cast once, not on
  // every call as autocast does outside grad mode), per dtype: a CUDA graph captured under one
  // dtype keeps reading its tensors while another dtype runs.
  std::map<c10::ScalarType, std::vector<StageWeights>> cached_autocast_weights_;
  std::vector<int64_t> cache_signature_;
  bool weight_cache_ = true;
};
TORCH_MODULE(ThinkingViT);

// Number of parameters a stage uses (the leading slices plus its recycling projection).
int64_t stage_parameter_count(const ThinkingViTOptions& options, int64_t stage);
int64_t total_parameter_count(const ThinkingViTOptions& options);

}  // namespace thinkingvit::models
