#pragma once
// Attention maths: softmax(q kᵀ · Dh^-0.5) v, fused or written out.
#include <ATen/core/Tensor.h>

namespace thinkingvit::models {

// softmax(q kᵀ · Dh^-0.5) v through at::scaled_dot_product_attention (flash / memory-efficient
// kernels on CUDA). q, k, v: B x H x N x Dh -> B x H x N x Dh.
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The same maths written out: softmax(q kᵀ · Dh^-0.5) v.
at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

}  // namespace thinkingvit::models
