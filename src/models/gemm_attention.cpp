#include "thinkingvit/models/gemm_attention.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TVIT_HAVE_X86_SOFTMAX 1
#else
#define TVIT_HAVE_X86_SOFTMAX 0
#endif

#include "thinkingvit/util/error.h"

namespace thinkingvit::models {
namespace {

// Each softmax copy exponentiates one row of scores in place, shifted by its maximum, and
// returns 1 / (their sum): the caller scales O's row instead of P's.
using SoftmaxRow = float (*)(float* s, int64_t n);

float softmax_row_plain(float* s, int64_t n) {
  const float top = *std::max_element(s, s + n);
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += (s[j] = std::exp(s[j] - top));
  return 1.0f / sum;
}

#if TVIT_HAVE_X86_SOFTMAX
// exp(x) as Cephes' expf: x = n ln 2 + r with |r| <= ln 2 / 2 (ln 2 split in two for accuracy),
// exp(r) by a degree-6 polynomial, times 2^n; x is clamped at -87.3 (exp underflows there
// anyway), so n stays within the float exponent. About 1 ulp.
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpLow = -87.3365f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

__attribute__((target("avx512f"))) inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(kExpLow));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, fx);  // p · 2^fx
}

__attribute__((target("avx512f"))) float softmax_row_avx512(float* s, int64_t n) {
  const int64_t full = n / 16 * 16;
  const auto tail = static_cast<__mmask16>((1u << (n - full)) - 1);
  const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 top = lowest;
  for (int64_t j = 0; j < full; j += 16) top = _mm512_max_ps(top, _mm512_loadu_ps(s + j));
  top = _mm512_max_ps(top, _mm512_mask_loadu_ps(lowest, tail, s + full));
  const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(top));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < full; j += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), shift));
    _mm512_storeu_ps(s + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (tail) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + full), shift));
    _mm512_mask_storeu_ps(s + full, tail, e);
    sum = _mm512_mask_add_ps(sum, tail, sum, e);
  }
  return 1.0f / _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(kExpLow));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^fx through the exponent bits (fx >= -126 after the clamp).
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

__attribute__((target("avx2,fma"))) float softmax_row_avx2(float* s, int64_t n) {
  const int64_t full = n / 8 * 8;
  float top = -std::numeric_limits<float>::infinity();
  if (full > 0) {
    __m256 t = _mm256_loadu_ps(s);
    for (int64_t j = 8; j < full; j += 8) t = _mm256_max_ps(t, _mm256_loadu_ps(s + j));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, t);
    top = *std::max_element(lanes, lanes + 8);
  }
  for (int64_t j = full; j < n; ++j) top = std::max(top, s[j]);
  const __m256 shift = _mm256_set1_ps(top);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t j = 0; j < full; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), shift));
    _mm256_storeu_ps(s + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float sum = 0;
  for (const float l : lanes) sum += l;
  for (int64_t j = full; j < n; ++j) sum += (s[j] = std::exp(s[j] - top));
  return 1.0f / sum;
}
#endif

// LibTorch's capability ("AVX512", "AVX2", "DEFAULT"; ATEN_CPU_CAPABILITY lowers it), capped by
// what this build has a copy for.
SoftmaxRow pick_softmax(const char** name) {
#if TVIT_HAVE_X86_SOFTMAX
  const auto capability = at::get_cpu_capability();
  if (capability == "AVX512" && __builtin_cpu_supports("avx512f")) {
    *name = "avx512";
    return softmax_row_avx512;
  }
  if ((capability == "AVX512" || capability == "AVX2") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    *name = "avx2";
    return softmax_row_avx2;
  }
#endif
  *name = "plain";
  return softmax_row_plain;
}

struct Softmax {
  const char* name = "plain";
  SoftmaxRow row = nullptr;
  Softmax() { row = pick_softmax(&name); }
};

const Softmax& softmax() {
  static const Softmax s;
  return s;
}

// C (m x n, ldc) = A (m x k, lda) · B (k x n, ldb), row-major float32, through oneDNN's brgemm.
void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
          float* c, int64_t ldc) {
  at::native::cpublas::brgemm(m, n, k, lda, ldb, ldc, /*add_C=*/false, a, b, c,
                              /*is_vnni=*/false);
}

// The geometry of one call: qkv rows are 3k apart, output rows k apart.
struct Shape {
  int64_t batch, tokens, heads, head_dim;
  int64_t width() const { return heads * head_dim; }
};

// Per-thread scratch: the scores, Kᵀ, and (bfloat16 input only) q, v and O in float32.
struct Scratch {
  std::vector<float> scores, kt, inv, q, v, o;
  Scratch(const Shape& s, bool convert)
      : scores(s.tokens * s.tokens), kt(s.head_dim * s.tokens), inv(s.tokens) {
    if (!convert) return;
    q.resize(s.tokens * s.head_dim);
    v.resize(s.tokens * s.head_dim);
    o.resize(s.tokens * s.head_dim);
  }
};

// One (image, head) of float32 qkv: q, k, v rows 3k apart; out rows k apart.
void head_float(const Shape& s, const float* q, float* out, Scratch& w, SoftmaxRow row) {
  const int64_t n = s.tokens, dh = s.head_dim, stride = 3 * s.width();
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const float* k = q + s.width();
  const float* v = q + 2 * s.width();
  for (int64_t j = 0; j < n; ++j)  // Kᵀ · scale: N x Dh (rows 3k apart) -> Dh x N
    for (int64_t d = 0; d < dh; ++d) w.kt[d * n + j] = k[j * stride + d] * scale;
  gemm(n, n, dh, q, stride, w.kt.data(), n, w.scores.data(), n);  // S: N x N
  for (int64_t i = 0; i < n; ++i) w.inv[i] = row(w.scores.data() + i * n, n);
  gemm(n, dh, n, w.scores.data(), n, v, stride, out, s.width());  // exp(S) v: N x Dh
  for (int64_t i = 0; i < n; ++i) {
    float* o = out + i * s.width();
    for (int64_t d = 0; d < dh; ++d) o[d] *= w.inv[i];
  }
}

// One (image, head) of bfloat16 qkv, in float32 inside.
void head_bf16(const Shape& s, const at::BFloat16* q, at::BFloat16* out, Scratch& w,
               SoftmaxRow row) {
  const int64_t n = s.tokens, dh = s.head_dim, stride = 3 * s.width();
  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const at::BFloat16* k = q + s.width();
  const at::BFloat16* v = q + 2 * s.width();
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t d = 0; d < dh; ++d) {
      w.q[j * dh + d] = static_cast<float>(q[j * stride + d]);
      w.kt[d * n + j] = static_cast<float>(k[j * stride + d]) * scale;
      w.v[j * dh + d] = static_cast<float>(v[j * stride + d]);
    }
  }
  gemm(n, n, dh, w.q.data(), dh, w.kt.data(), n, w.scores.data(), n);
  for (int64_t i = 0; i < n; ++i) w.inv[i] = row(w.scores.data() + i * n, n);
  gemm(n, dh, n, w.scores.data(), n, w.v.data(), dh, w.o.data(), dh);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dh; ++d)
      out[i * s.width() + d] = static_cast<at::BFloat16>(w.o[i * dh + d] * w.inv[i]);
  }
}

bool probe_brgemm() {
  // 3 x 5 = (3 x 4)(4 x 5) against a plain loop; any failure (a CPU or build without the
  // micro-kernel, an ISA cap it cannot meet) means "not available".
  try {
    float a[12], b[20], c[15], want[15] = {};
    for (int i = 0; i < 12; ++i) a[i] = 0.25f * static_cast<float>(i % 5) - 0.5f;
    for (int i = 0; i < 20; ++i) b[i] = 0.125f * static_cast<float>(i % 7) - 0.375f;
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 5; ++j)
        for (int l = 0; l < 4; ++l) want[i * 5 + j] += a[i * 4 + l] * b[l * 5 + j];
    gemm(3, 5, 4, a, 4, b, 5, c, 5);
    for (int i = 0; i < 15; ++i)
      if (std::abs(c[i] - want[i]) > 1e-5f) return false;
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

bool gemm_attention_available() {
  // THINKINGVIT_GEMM_ATTENTION=0 turns the kernel off (to time the model without it).
  static const bool available = [] {
    const char* env = std::getenv("THINKINGVIT_GEMM_ATTENTION");
    return !(env && std::string(env) == "0") && probe_brgemm();
  }();
  return available;
}

const char* gemm_attention_isa() { return softmax().name; }

bool gemm_attention_supported(const at::Tensor& qkv, int64_t heads) {
  return !(at::GradMode::is_enabled() && qkv.requires_grad()) && qkv.device().is_cpu() &&
         qkv.layout() == at::kStrided &&
         (qkv.scalar_type() == at::kFloat || qkv.scalar_type() == at::kBFloat16) &&
         qkv.dim() == 3 && heads > 0 && qkv.size(2) > 0 && qkv.size(2) % (3 * heads) == 0 &&
         qkv.size(1) > 0 && qkv.size(1) <= kGemmAttentionMaxTokens && gemm_attention_available();
}

at::Tensor gemm_attention(const at::Tensor& qkv, int64_t heads) {
  TVIT_CHECK(gemm_attention_supported(qkv, heads),
             "gemm_attention: expected a CPU float32/bfloat16 B x N x 3k tensor without gradient, "
             "0 < N <= ",
             kGemmAttentionMaxTokens, ", k divisible by ", heads,
             " heads, and oneDNN's brgemm on this CPU; found ", qkv.toString(), " ",
             shape_str(qkv.sizes().vec()));
  const auto in = qkv.contiguous();
  const Shape s{in.size(0), in.size(1), heads, in.size(2) / (3 * heads)};
  auto out = at::empty({s.batch, s.tokens, s.width()}, in.options());  // B x N x k
  const bool bf16 = in.scalar_type() == at::kBFloat16;
  const SoftmaxRow row = softmax().row;
  at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(s, bf16);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / s.heads, h = bh % s.heads;
      // Head h of image b: q at b·N·3k + h·Dh of qkv; its output at b·N·k + h·Dh.
      const int64_t at_qkv = b * s.tokens * 3 * s.width() + h * s.head_dim;
      const int64_t at_out = b * s.tokens * s.width() + h * s.head_dim;
      if (bf16) {
        head_bf16(s, in.data_ptr<at::BFloat16>() + at_qkv, out.data_ptr<at::BFloat16>() + at_out,
                  scratch, row);
      } else {
        head_float(s, in.data_ptr<float>() + at_qkv, out.data_ptr<float>() + at_out, scratch, row);
      }
    }
  });
  return out;
}

}  // namespace thinkingvit::models
