#include "thinkingvit/models/small_attention.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/error.h"

// The float kernels get an AVX2 + FMA copy (util/cpu.h); every inner loop is a dot or an axpy
// over contiguous memory, so the compiler vectorises them.

namespace thinkingvit::models {
namespace {

// kDh > 0: the head dim as a compile-time constant (full unrolling, accumulators in registers);
// kDh == 0: read from Shape at run time.
template <int kDh>
TVIT_INLINE int64_t head_dim_of(int64_t runtime) {
  return kDh > 0 ? kDh : runtime;
}

template <typename T>
TVIT_INLINE void axpy(T* __restrict y, T a, const T* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Eight partial sums, so the products vectorise without reassociating a single running sum.
template <typename T>
TVIT_INLINE T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  constexpr int64_t kLanes = 8;
  T part[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) part[l] += a[d + l] * b[d + l];
  T sum = 0;
  for (; d < n; ++d) sum += a[d] * b[d];
  for (int64_t l = 0; l < kLanes; ++l) sum += part[l];
  return sum;
}

// The geometry of one call: qkv rows are 3k apart, output rows k apart; head h of image b
// starts at b * N * 3k + h * Dh (q), + k (k), + 2k (v).
struct Shape {
  int64_t batch, tokens, heads, head_dim;
  int64_t width() const { return heads * head_dim; }
};

// One (image, head): P = softmax(q kᵀ · scale) (N x N, written to probs), out = P v.
// acc: Dh of scratch.
template <typename T, int kDh>
TVIT_INLINE void head_forward(const Shape& s, const T* q, T* out, T* probs, T* acc) {
  const int64_t n = s.tokens, dh = head_dim_of<kDh>(s.head_dim), stride = 3 * s.width();
  const T* k = q + s.width();
  const T* v = q + 2 * s.width();
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  for (int64_t i = 0; i < n; ++i) {
    T* p = probs + i * n;
    const T* qi = q + i * stride;
    for (int64_t j = 0; j < n; ++j) p[j] = dot(qi, k + j * stride, dh) * scale;
    const T top = *std::max_element(p, p + n);
    T sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - top));
    const T inv = T(1) / sum;
    for (int64_t j = 0; j < n; ++j) p[j] *= inv;
    std::fill(acc, acc + dh, T(0));
    for (int64_t j = 0; j < n; ++j) axpy(acc, p[j], v + j * stride, dh);
    std::copy(acc, acc + dh, out + i * s.width());
  }
}

// The backward of one (image, head), given P from the forward and dO:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - rowsum(P ∘ dP)) · scale,  dQ = dS K,  dK = dSᵀ Q.
// dq points into a zeroed B x N x 3k gradient laid out like qkv. ds: N, acc: Dh of scratch.
template <typename T, int kDh>
TVIT_INLINE void head_backward(const Shape& s, const T* q, const T* dout, const T* probs, T* dq,
                               T* ds, T* acc) {
  const int64_t n = s.tokens, dh = head_dim_of<kDh>(s.head_dim), stride = 3 * s.width();
  const T* k = q + s.width();
  const T* v = q + 2 * s.width();
  T* dk = dq + s.width();
  T* dv = dq + 2 * s.width();
  const T scale = T(1) / std::sqrt(static_cast<T>(dh));
  for (int64_t i = 0; i < n; ++i) {
    const T* p = probs + i * n;
    const T* doi = dout + i * s.width();
    T rowsum = 0;
    for (int64_t j = 0; j < n; ++j) {
      ds[j] = dot(doi, v + j * stride, dh);  // dP_ij
      rowsum += p[j] * ds[j];
    }
    for (int64_t j = 0; j < n; ++j) ds[j] = p[j] * (ds[j] - rowsum) * scale;
    const T* qi = q + i * stride;
    std::fill(acc, acc + dh, T(0));
    for (int64_t j = 0; j < n; ++j) {
      axpy(dv + j * stride, p[j], doi, dh);
      axpy(acc, ds[j], k + j * stride, dh);
      axpy(dk + j * stride, ds[j], qi, dh);
    }
    std::copy(acc, acc + dh, dq + i * stride);
  }
}

// Offsets of (image b, head h) in qkv / output / probs.
struct HeadOffsets {
  int64_t qkv, out, probs;
};
TVIT_INLINE HeadOffsets offsets(const Shape& s, int64_t bh) {
  const int64_t b = bh / s.heads, h = bh % s.heads, n = s.tokens;
  return {b * n * 3 * s.width() + h * s.head_dim, b * n * s.width() + h * s.head_dim, bh * n * n};
}

// probs == nullptr: inference, P goes to per-call scratch and is dropped.
template <typename T, int kDh>
TVIT_INLINE void forward_heads(const Shape& s, const T* qkv, T* out, T* probs, int64_t begin,
                               int64_t end) {
  const int64_t n = s.tokens;
  std::vector<T> scratch(static_cast<size_t>(s.head_dim + (probs ? 0 : n * n)));
  for (int64_t bh = begin; bh < end; ++bh) {
    const auto o = offsets(s, bh);
    T* p = probs ? probs + o.probs : scratch.data() + s.head_dim;
    head_forward<T, kDh>(s, qkv + o.qkv, out + o.out, p, scratch.data());
  }
}

template <typename T, int kDh>
TVIT_INLINE void backward_heads(const Shape& s, const T* qkv, const T* dout, const T* probs,
                                T* dqkv, int64_t begin, int64_t end) {
  std::vector<T> scratch(static_cast<size_t>(s.head_dim + s.tokens));
  for (int64_t bh = begin; bh < end; ++bh) {
    const auto o = offsets(s, bh);
    head_backward<T, kDh>(s, qkv + o.qkv, dout + o.out, probs + o.probs, dqkv + o.qkv,
                          scratch.data() + s.head_dim, scratch.data());
  }
}

// The common head dims (DeiT: 64; small models: 32, 16) get their own unrolled copy.
template <typename T>
TVIT_INLINE void forward_range(const Shape& s, const T* qkv, T* out, T* probs, int64_t begin,
                               int64_t end) {
  switch (s.head_dim) {
    case 16:
      return forward_heads<T, 16>(s, qkv, out, probs, begin, end);
    case 32:
      return forward_heads<T, 32>(s, qkv, out, probs, begin, end);
    case 64:
      return forward_heads<T, 64>(s, qkv, out, probs, begin, end);
    default:
      return forward_heads<T, 0>(s, qkv, out, probs, begin, end);
  }
}

template <typename T>
TVIT_INLINE void backward_range(const Shape& s, const T* qkv, const T* dout, const T* probs,
                                T* dqkv, int64_t begin, int64_t end) {
  switch (s.head_dim) {
    case 16:
      return backward_heads<T, 16>(s, qkv, dout, probs, dqkv, begin, end);
    case 32:
      return backward_heads<T, 32>(s, qkv, dout, probs, dqkv, begin, end);
    case 64:
      return backward_heads<T, 64>(s, qkv, dout, probs, dqkv, begin, end);
    default:
      return backward_heads<T, 0>(s, qkv, dout, probs, dqkv, begin, end);
  }
}

#if TVIT_HAVE_AVX2_COPY
TVIT_TARGET_AVX2 void forward_range_avx2(const Shape& s, const float* qkv, float* out, float* probs,
                                         int64_t begin, int64_t end) {
  forward_range(s, qkv, out, probs, begin, end);
}

TVIT_TARGET_AVX2 void backward_range_avx2(const Shape& s, const float* qkv, const float* dout,
                                          const float* probs, float* dqkv, int64_t begin,
                                          int64_t end) {
  backward_range(s, qkv, dout, probs, dqkv, begin, end);
}

#endif

void forward_range_any(const Shape& s, const float* qkv, float* out, float* probs, int64_t begin,
                       int64_t end) {
#if TVIT_HAVE_AVX2_COPY
  if (util::cpu_has_avx2_fma()) return forward_range_avx2(s, qkv, out, probs, begin, end);
#endif
  forward_range(s, qkv, out, probs, begin, end);
}
void forward_range_any(const Shape& s, const double* qkv, double* out, double* probs, int64_t begin,
                       int64_t end) {
  forward_range(s, qkv, out, probs, begin, end);
}
void backward_range_any(const Shape& s, const float* qkv, const float* dout, const float* probs,
                        float* dqkv, int64_t begin, int64_t end) {
#if TVIT_HAVE_AVX2_COPY
  if (util::cpu_has_avx2_fma()) return backward_range_avx2(s, qkv, dout, probs, dqkv, begin, end);
#endif
  backward_range(s, qkv, dout, probs, dqkv, begin, end);
}
void backward_range_any(const Shape& s, const double* qkv, const double* dout, const double* probs,
                        double* dqkv, int64_t begin, int64_t end) {
  backward_range(s, qkv, dout, probs, dqkv, begin, end);
}

Shape shape_of(const at::Tensor& qkv, int64_t heads) {
  return {qkv.size(0), qkv.size(1), heads, qkv.size(2) / (3 * heads)};
}

// About 64k multiply-adds per task keeps the thread pool's overhead small.
int64_t grain(const Shape& s) {
  return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, s.tokens * s.tokens * s.head_dim));
}

// qkv contiguous; probs undefined for inference. Returns B x N x k.
at::Tensor run_forward(const at::Tensor& qkv, int64_t heads, const at::Tensor& probs) {
  const auto s = shape_of(qkv, heads);
  auto out = at::empty({s.batch, s.tokens, s.width()}, qkv.options());
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "small_attention_forward", [&] {
    const auto* in = qkv.data_ptr<scalar_t>();
    auto* o = out.data_ptr<scalar_t>();
    auto* p = probs.defined() ? probs.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, s.batch * s.heads, grain(s), [&](int64_t begin, int64_t end) {
      forward_range_any(s, in, o, p, begin, end);
    });
  });
  return out;
}

at::Tensor run_backward(const at::Tensor& qkv, const at::Tensor& probs, const at::Tensor& dout,
                        int64_t heads) {
  const auto s = shape_of(qkv, heads);
  auto dqkv = at::zeros_like(qkv);
  AT_DISPATCH_FLOATING_TYPES(qkv.scalar_type(), "small_attention_backward", [&] {
    const auto* in = qkv.data_ptr<scalar_t>();
    const auto* d = dout.data_ptr<scalar_t>();
    const auto* p = probs.data_ptr<scalar_t>();
    auto* g = dqkv.data_ptr<scalar_t>();
    at::parallel_for(0, s.batch * s.heads, grain(s), [&](int64_t begin, int64_t end) {
      backward_range_any(s, in, d, p, g, begin, end);
    });
  });
  return dqkv;
}

class SmallAttentionFunction : public torch::autograd::Function<SmallAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv,
                            int64_t heads) {
    const auto s = shape_of(qkv, heads);
    auto probs = at::empty({s.batch, s.heads, s.tokens, s.tokens}, qkv.options());
    auto out = run_forward(qkv, heads, probs);
    ctx->save_for_backward({qkv, probs});
    ctx->saved_data["heads"] = heads;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto heads = ctx->saved_data["heads"].toInt();
    return {run_backward(saved[0], saved[1], grads[0].contiguous(), heads), at::Tensor()};
  }
};

}  // namespace

bool small_attention_supported(const at::Tensor& qkv, int64_t heads) {
  return qkv.device().is_cpu() && qkv.layout() == at::kStrided &&
         (qkv.scalar_type() == at::kFloat || qkv.scalar_type() == at::kDouble) && qkv.dim() == 3 &&
         heads > 0 && qkv.size(2) % (3 * heads) == 0 && qkv.size(1) > 0 &&
         qkv.size(1) <= kSmallAttentionMaxTokens;
}

at::Tensor small_attention(const at::Tensor& qkv, int64_t heads) {
  TVIT_CHECK(small_attention_supported(qkv, heads),
             "small_attention: expected a CPU float/double B x N x 3k tensor with N <= ",
             kSmallAttentionMaxTokens, " and k divisible by ", heads, " heads, found ",
             qkv.toString(), " ", shape_str(qkv.sizes().vec()));
  auto in = qkv.contiguous();
  if (at::GradMode::is_enabled() && in.requires_grad()) {
    return SmallAttentionFunction::apply(in, heads);
  }
  return run_forward(in, heads, at::Tensor());
}

}  // namespace thinkingvit::models
