#include "thinkingvit/models/layers.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "thinkingvit/models/cpu_kernels.h"

namespace thinkingvit::models {

std::optional<AttentionBackend> attention_backend_from(const std::string& name) {
  if (name == "fused") return AttentionBackend::kFused;
  if (name == "explicit") return AttentionBackend::kExplicit;
  if (name == "small") return AttentionBackend::kSmall;
  return std::nullopt;
}

const char* attention_backend_name(AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::kFused:
      return "fused";
    case AttentionBackend::kExplicit:
      return "explicit";
    case AttentionBackend::kSmall:
      return "small";
  }
  return "fused";
}

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return at::scaled_dot_product_attention(q, k, v);
}

at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto attn = at::matmul(q, k.transpose(-2, -1)) * scale;  // B x H x N x N
  return at::matmul(attn.softmax(/*dim=*/-1), v);          // B x H x N x Dh
}

at::Tensor qkv_leading_rows(const at::Tensor& qkv, int64_t dim, int64_t width) {
  if (width == dim) return qkv;
  auto blocks = qkv.view({3, dim, -1}).slice(/*dim=*/1, 0, width);  // 3 x k x in
  return qkv.dim() == 1 ? blocks.reshape({3 * width}) : blocks.reshape({3 * width, qkv.size(1)});
}

at::Tensor drop_path(const at::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  const double keep = 1.0 - p;
  std::vector<int64_t> mask_shape(x.dim(), 1);
  mask_shape[0] = x.size(0);  // B x 1 x 1
  auto mask = at::empty(mask_shape, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

at::Tensor mlp_forward(const at::Tensor& x, const BlockWeights& w) {
  return cpu::dense(cpu::dense(x, w.fc1_w, w.fc1_b, /*gelu=*/true), w.fc2_w, w.fc2_b);
}

}  // namespace thinkingvit::models
