#include "thinkingvit/models/vit/sliced_ops.h"

#include <ATen/ATen.h>

#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/models/gemm_attention.h"
#include "thinkingvit/models/layers.h"
#include "thinkingvit/models/small_attention.h"

namespace thinkingvit::models {

at::Tensor embed_tokens(const StageWeights& w, const at::Tensor& images, int64_t patch_size) {
  const int64_t batch = images.size(0);
  auto x = at::conv2d(images, w.patch_w, w.patch_b, /*stride=*/{patch_size, patch_size});
  x = x.flatten(/*start_dim=*/2).transpose(1, 2);     // B x k x h x w -> B x P x k
  auto cls = w.cls_token.expand({batch, -1, -1});     // B x 1 x k
  return at::cat({cls, x}, /*dim=*/1) + w.pos_embed;  // B x N x k
}

namespace {

at::Tensor attention(const at::Tensor& x, const BlockWeights& w, int64_t heads,
                     AttentionBackend backend) {
  const int64_t batch = x.size(0), tokens = x.size(1), width = x.size(2);
  auto qkv = cpu::dense(x, w.qkv_w, w.qkv_b);  // B x N x 3k
  if (backend == AttentionBackend::kSmall && small_attention_supported(qkv, heads)) {
    return cpu::dense(small_attention(qkv, heads), w.proj_w, w.proj_b);  // B x N x k
  }
  if (backend != AttentionBackend::kExplicit && cpu::gemm_attention_applies(qkv, heads)) {
    return cpu::dense(gemm_attention(qkv, heads), w.proj_w, w.proj_b);  // B x N x k
  }
  qkv = qkv.reshape({batch, tokens, 3, heads, width / heads}).permute({2, 0, 3, 1, 4});
  auto q = qkv[0], k = qkv[1], v = qkv[2];  // B x H x N x Dh
  // kSmall falls back to the fused kernel where it does not apply (GPU, long sequences); on the
  // CPU, cpu::attention picks between the fused kernel and batched matmuls (also in training).
  auto out = backend == AttentionBackend::kExplicit ? models::explicit_attention(q, k, v)
             : cpu::attention_applies(q)            ? cpu::attention(q, k, v)
                                                    : models::fused_attention(q, k, v);
  out = out.transpose(1, 2).reshape({batch, tokens, width});  // B x H x N x Dh -> B x N x k
  return cpu::dense(out, w.proj_w, w.proj_b);
}

}  // namespace

at::Tensor block_forward(const at::Tensor& x, const BlockWeights& w, int64_t heads, double eps,
                         AttentionBackend backend, double drop_prob, bool training) {
  const int64_t width = x.size(-1);
  auto h = at::layer_norm(x, {width}, w.norm1_w, w.norm1_b, eps);
  auto y = x + drop_path(attention(h, w, heads, backend), drop_prob, training);
  h = at::layer_norm(y, {width}, w.norm2_w, w.norm2_b, eps);
  return y + drop_path(mlp_forward(h, w), drop_prob, training);
}

}  // namespace thinkingvit::models
