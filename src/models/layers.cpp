#include "thinkingvit/models/attention.h"

#include <ATen/ATen.h>

#include <cmath>

namespace thinkingvit::models {

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return at::scaled_dot_product_attention(q, k, v);
}

at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto attn = at::matmul(q, k.transpose(-2, -1)) * scale;  // B x H x N x N
  return at::matmul(attn.softmax(/*dim=*/-1), v);          // B x H x N x Dh
}

}  // namespace thinkingvit::models
