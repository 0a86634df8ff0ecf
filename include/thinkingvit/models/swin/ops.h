#pragma once
// The geometry of shifted-window attention (Swin), as functions on NHWC token grids.

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "thinkingvit/models/layers.h"

namespace thinkingvit::models {

// B x H x W x C -> B x nW x ws*ws x C: windows in row-major order, tokens row-major inside a
// window. H and W must be multiples of ws.
at::Tensor window_partition(const at::Tensor& x, int64_t ws);
// The inverse: B x nW x ws*ws x C -> B x H x W x C.
at::Tensor window_reverse(const at::Tensor& windows, int64_t ws, int64_t height, int64_t width);

// ws*ws x ws*ws int64: index[i, j] = (yi - yj + ws - 1) * (2 ws - 1) + (xi - xj + ws - 1), the
// row of the relative position bias table that token j's bias to token i reads.
at::Tensor relative_position_index(int64_t ws);

// nW x N x N float32 (N = ws*ws) for a shifted block on an H x W grid padded up to multiples of
// ws: 0 where two tokens lie in the same region of the cyclically shifted grid, -100 elsewhere.
at::Tensor shift_attention_mask(int64_t height, int64_t width, int64_t ws, int64_t shift);

// One Swin block on B x H x W x k tokens with `heads` heads of width k / heads:
// x + drop_path(W-MSA(norm1(x))), then x + drop_path(mlp(norm2(x))). W-MSA rolls the grid by
// -shift, pads it to multiples of ws, attends within windows with the relative position bias
// (bias_table rows picked by `index`) and `mask` (nW x N x N, undefined when not shifted), then
// undoes the padding and the roll.
at::Tensor swin_block_forward(const at::Tensor& x, const BlockWeights& w, int64_t heads, int64_t ws,
                              int64_t shift, const at::Tensor& index, const at::Tensor& mask,
                              double eps, AttentionBackend backend, double drop_path,
                              bool training);

// Patch merging: each 2x2 cell's tokens (offsets (0,0), (1,0), (0,1), (1,1)) concatenated,
// normalised and reduced: B x H x W x C -> B x H/2 x W/2 x k_out.
at::Tensor patch_merging(const at::Tensor& x, const at::Tensor& norm_w, const at::Tensor& norm_b,
                         const at::Tensor& reduction_w, double eps);

}  // namespace thinkingvit::models
