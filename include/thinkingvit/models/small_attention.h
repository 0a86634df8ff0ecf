#pragma once
// Multi-head attention for short token sequences on the CPU, forward and backward in one pass
// per (image, head). LibTorch's CPU bmm runs one GEMM per image and head (a select and a
// dispatch each); for the 17-197 tokens of small ViTs that overhead costs more than the maths.
// This kernel reads q, k and v straight from the qkv projection and writes the heads side by
// side, so no permute or transpose copy is made either.

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace thinkingvit::models {

// The longest sequence the kernel takes (the scores of one head live on the stack).
inline constexpr int64_t kSmallAttentionMaxTokens = 256;

// True where small_attention runs: a CPU float or double qkv of B x N x 3k, N within the limit.
bool small_attention_supported(const at::Tensor& qkv, int64_t heads);

// qkv: B x N x 3k laid out as [q | k | v], each k = H x Dh -> B x N x k:
// softmax(q kᵀ · Dh^-0.5) v per head, heads concatenated. Differentiable in qkv.
at::Tensor small_attention(const at::Tensor& qkv, int64_t heads);

}  // namespace thinkingvit::models
