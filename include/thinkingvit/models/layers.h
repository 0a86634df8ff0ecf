#pragma once
// What every model family builds its layers from: the attention backends and their maths, the
// sliced weights of one transformer block, leading-slice and stochastic-depth helpers, and the
// bounds of options read from files.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

namespace thinkingvit::models {

// Upper bounds of options read from files, far beyond any published model: a larger value is a
// broken file, refused before anything is allocated (the image side: util::kMaxImageSize).
constexpr double kMaxChannels = 64;
constexpr double kMaxClasses = 10000000;
constexpr double kMaxDepth = 1024;
constexpr double kMaxMlpRatio = 64;
// Parameters of the largest model accepted (100 billion).
constexpr double kMaxParameters = 1e11;

// kFused: LibTorch's scaled-dot-product kernel; kExplicit: softmax(q kᵀ) v written out;
// kSmall: this project's CPU kernel for short sequences (models/small_attention.h), the fused
// kernel where it does not apply. A family refuses a backend it cannot run.
enum class AttentionBackend { kFused, kExplicit, kSmall };

// "fused" | "explicit" | "small" <-> AttentionBackend; nullopt for anything else.
std::optional<AttentionBackend> attention_backend_from(const std::string& name);
const char* attention_backend_name(AttentionBackend backend);

// softmax(q kᵀ · Dh^-0.5) v through at::scaled_dot_product_attention (flash / memory-efficient
// kernels on CUDA). q, k, v: B x H x N x Dh -> B x H x N x Dh.
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The same maths written out: softmax(q kᵀ · Dh^-0.5) v.
at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The sliced weights one stage uses in one transformer block, in the shapes at::linear wants.
// bias_table: the relative position bias of windowed attention (undefined where a family has
// none).
struct BlockWeights {
  at::Tensor norm1_w, norm1_b, qkv_w, qkv_b, bias_table, proj_w, proj_b;
  at::Tensor norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
};

// Rows [0,k) of each of the q, k and v blocks of a 3D x in qkv weight (or 3D bias):
// 3D x in -> 3k x in.
at::Tensor qkv_leading_rows(const at::Tensor& qkv, int64_t dim, int64_t width);

// Per-sample stochastic depth: B x ... -> B x ..., kept samples scaled by 1/(1-p).
at::Tensor drop_path(const at::Tensor& x, double p, bool training);

// fc2(gelu(fc1(x))) with the block's MLP weights.
at::Tensor mlp_forward(const at::Tensor& x, const BlockWeights& w);

}  // namespace thinkingvit::models
