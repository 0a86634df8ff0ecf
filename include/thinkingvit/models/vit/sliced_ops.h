#pragma once
// The forward pass of one stage written as functions of its gathered weights, so that the
// maths reads like the paper and can be checked against a standalone ViT.

#include <ATen/core/Tensor.h>

#include "thinkingvit/models/thinking_vit.h"

namespace thinkingvit::models {

// Rows [0,k) of each of the q, k and v blocks of a 3D x in qkv weight (or 3D bias):
// 3D x in -> 3k x in.
at::Tensor qkv_leading_rows(const at::Tensor& qkv, int64_t dim, int64_t width);

// B x C x H x W -> B x N x k: patch conv, CLS first, position embedding added.
at::Tensor embed_tokens(const StageWeights& w, const at::Tensor& images, int64_t patch_size);

// B x N x k -> B x N x k: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x))).
at::Tensor block_forward(const at::Tensor& x, const BlockWeights& w, int64_t heads, double eps,
                         AttentionBackend backend, double drop_path, bool training);

// Per-sample stochastic depth: B x ... -> B x ..., kept samples scaled by 1/(1-p).
at::Tensor drop_path(const at::Tensor& x, double p, bool training);

}  // namespace thinkingvit::models
