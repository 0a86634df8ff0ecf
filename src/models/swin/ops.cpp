#include "thinkingvit/models/swin/ops.h"

#include <torch/torch.h>

#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/models/layers.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

at::Tensor window_partition(const at::Tensor& x, int64_t ws) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  TVIT_CHECK(h % ws == 0 && w % ws == 0, "window_partition: grid ", h, " x ", w,
             " is not a multiple of the window ", ws);
  return x.reshape({b, h / ws, ws, w / ws, ws, c})
      .permute({0, 1, 3, 2, 4, 5})
      .reshape({b, (h / ws) * (w / ws), ws * ws, c});
}

at::Tensor window_reverse(const at::Tensor& windows, int64_t ws, int64_t height, int64_t width) {
  const int64_t b = windows.size(0), c = windows.size(3);
  return windows.reshape({b, height / ws, width / ws, ws, ws, c})
      .permute({0, 1, 3, 2, 4, 5})
      .reshape({b, height, width, c});
}

at::Tensor relative_position_index(int64_t ws) {
  auto coords = torch::arange(ws, torch::kLong);
  auto y = coords.view({ws, 1}).expand({ws, ws}).reshape({-1});  // row of each token
  auto x = coords.view({1, ws}).expand({ws, ws}).reshape({-1});  // column of each token
  auto dy = y.view({-1, 1}) - y.view({1, -1}) + (ws - 1);
  auto dx = x.view({-1, 1}) - x.view({1, -1}) + (ws - 1);
  return dy * (2 * ws - 1) + dx;
}

at::Tensor shift_attention_mask(int64_t height, int64_t width, int64_t ws, int64_t shift) {
  const int64_t hp = (height + ws - 1) / ws * ws, wp = (width + ws - 1) / ws * ws;
  // Region of a coordinate along one padded axis: [0, n-ws), [n-ws, n-shift), [n-shift, n).
  auto region = [&](int64_t n) {
    auto r = torch::zeros({n}, torch::kLong);
    r.slice(0, n - ws, n - shift).fill_(1);
    r.slice(0, n - shift, n).fill_(2);
    return r;
  };
  auto label = (region(hp).view({hp, 1}) * 3 + region(wp).view({1, wp})).view({1, hp, wp, 1});
  auto windows = window_partition(label, ws).view({-1, ws * ws});  // nW x N
  auto same = windows.unsqueeze(2) == windows.unsqueeze(1);        // nW x N x N
  return torch::where(same, torch::zeros({}), torch::full({}, -100.0f)).to(torch::kFloat);
}

at::Tensor swin_block_forward(const at::Tensor& x, const BlockWeights& w, int64_t heads, int64_t ws,
                              int64_t shift, const at::Tensor& index, const at::Tensor& mask,
                              double eps, AttentionBackend backend, double drop_path_rate,
                              bool training) {
  const int64_t b = x.size(0), height = x.size(1), width = x.size(2), k = x.size(3);
  const int64_t hd = k / heads, n = ws * ws;
  auto h = at::layer_norm(x, {k}, w.norm1_w, w.norm1_b, eps);
  if (shift > 0) h = at::roll(h, {-shift, -shift}, {1, 2});
  const int64_t hp = (height + ws - 1) / ws * ws, wp = (width + ws - 1) / ws * ws;
  if (hp != height || wp != width)
    h = at::constant_pad_nd(h, {0, 0, 0, wp - width, 0, hp - height});
  const int64_t windows = (hp / ws) * (wp / ws);
  // Windows and heads are both batch dimensions of the attention: B x (nW * heads) x N x hd.
  auto qkv = cpu::dense(window_partition(h, ws), w.qkv_w, w.qkv_b)
                 .view({b, windows, n, 3, heads, hd})
                 .permute({3, 0, 1, 4, 2, 5})
                 .reshape({3, b, windows * heads, n, hd});
  auto q = qkv[0], key = qkv[1], v = qkv[2];
  auto bias = w.bias_table.index_select(0, index.view({-1})).view({n, n, heads}).permute({2, 0, 1});
  auto attn_mask = (mask.defined() ? bias.unsqueeze(0) + mask.unsqueeze(1)
                                   : bias.unsqueeze(0).expand({windows, heads, n, n}))
                       .reshape({1, windows * heads, n, n})
                       .to(q.scalar_type());
  at::Tensor o;
  if (backend == AttentionBackend::kExplicit) {
    auto logits = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(hd))), key.transpose(-2, -1));
    o = at::matmul(at::softmax(logits + attn_mask, -1), v);
  } else if (cpu::attention_applies(q)) {  // batched matmuls where they are faster (bf16)
    o = cpu::attention(q, key, v, attn_mask);
  } else {
    o = at::scaled_dot_product_attention(q, key, v, attn_mask);
  }
  o = o.view({b, windows, heads, n, hd}).permute({0, 1, 3, 2, 4}).reshape({b, windows, n, k});
  o = window_reverse(cpu::dense(o, w.proj_w, w.proj_b), ws, hp, wp);
  if (hp != height || wp != width) o = o.slice(1, 0, height).slice(2, 0, width);
  if (shift > 0) o = at::roll(o, {shift, shift}, {1, 2});
  auto y = x + drop_path(o, drop_path_rate, training);
  auto m = at::layer_norm(y, {k}, w.norm2_w, w.norm2_b, eps);
  return y + drop_path(mlp_forward(m, w), drop_path_rate, training);
}

at::Tensor patch_merging(const at::Tensor& x, const at::Tensor& norm_w, const at::Tensor& norm_b,
                         const at::Tensor& reduction_w, double eps) {
  const int64_t b = x.size(0), h = x.size(1), w = x.size(2), c = x.size(3);
  TVIT_CHECK(h % 2 == 0 && w % 2 == 0, "patch merging: grid ", h, " x ", w, " is not even");
  // (row offset, column offset) with the column offset the slower: x0 (0,0), x1 (1,0), x2 (0,1),
  // x3 (1,1).
  auto merged = x.reshape({b, h / 2, 2, w / 2, 2, c})
                    .permute({0, 1, 3, 4, 2, 5})
                    .reshape({b, h / 2, w / 2, 4 * c});
  return cpu::dense(at::layer_norm(merged, {4 * c}, norm_w, norm_b, eps), reduction_w, {});
}

}  // namespace thinkingvit::models
