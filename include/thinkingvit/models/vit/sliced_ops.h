#pragma once
// The forward pass of one stage written as functions of its gathered weights, so that the
// maths reads like the paper and can be checked against a standalone ViT.

#include <ATen/core/Tensor.h>

#include "thinkingvit/models/vit/thinking_vit.h"

namespace thinkingvit::models {

// B x C x H x W -> B x N x k: patch conv, CLS first, position embedding added.
at::Tensor embed_tokens(const StageWeights& w, const at::Tensor& images, int64_t patch_size);

// B x N x k -> B x N x k: x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x))).
at::Tensor block_forward(const at::Tensor& x, const BlockWeights& w, int64_t heads, double eps,
                         AttentionBackend backend, double drop_path, bool training);

}  // namespace thinkingvit::models
