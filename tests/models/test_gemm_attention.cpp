// The GEMM attention kernel for inference against the definition in double precision: sequence
// lengths around every vector width (1 to 257 tokens), head dims of 16 to 64, float32 and
// bfloat16, scores large enough to overflow a naive softmax, and the refusals. ctest also runs
// these under ATEN_CPU_CAPABILITY=avx2 / default with ONEDNN_MAX_CPU_ISA=avx2, so every softmax
// copy and the AVX2 GEMMs are checked on any x86 that has them.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "../test_util.h"
#include "thinkingvit/models/gemm_attention.h"

namespace thinkingvit::testing {

namespace {

// softmax(q kᵀ / sqrt(Dh)) v per head in double, from a B x N x 3k qkv -> B x N x k.
at::Tensor reference(const at::Tensor& qkv, int64_t heads) {
  const int64_t b = qkv.size(0), n = qkv.size(1), k = qkv.size(2) / 3, dh = k / heads;
  const auto t = qkv.to(at::kDouble).view({b, n, 3, heads, dh}).permute({2, 0, 3, 1, 4});
  const auto scores = at::matmul(t[0], t[1].transpose(-2, -1)) / std::sqrt(double(dh));
  return at::matmul(scores.softmax(-1), t[2]).transpose(1, 2).reshape({b, n, k});
}

struct Case {
  int64_t batch, tokens, heads, head_dim;
};

const Case kCases[] = {{1, 1, 1, 16},  {2, 7, 2, 16},   {1, 16, 1, 32},  {3, 17, 3, 16},
                       {2, 50, 2, 32}, {1, 100, 2, 24}, {2, 197, 3, 64}, {1, 257, 1, 64}};

}  // namespace

TEST(GemmAttention, MatchesTheDefinitionInFloat32) {
  if (!models::gemm_attention_available()) GTEST_SKIP() << "oneDNN's brgemm does not run here";
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  for (const auto& c : kCases) {
    const auto qkv = torch::randn({c.batch, c.tokens, 3 * c.heads * c.head_dim});
    const auto out = models::gemm_attention(qkv, c.heads);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{c.batch, c.tokens, c.heads * c.head_dim}));
    EXPECT_EQ(out.scalar_type(), at::kFloat);
    EXPECT_TRUE(close_scaled(out, reference(qkv, c.heads), 2e-6))
        << c.batch << "x" << c.tokens << " tokens, " << c.heads << " heads of " << c.head_dim
        << " (softmax " << models::gemm_attention_isa() << ")";
  }
}

// bfloat16 in and out, float32 inside: against the definition on the same (rounded) inputs, the
// error is the output's rounding.
TEST(GemmAttention, MatchesTheDefinitionInBfloat16) {
  if (!models::gemm_attention_available()) GTEST_SKIP() << "oneDNN's brgemm does not run here";
  torch::NoGradGuard no_grad;
  torch::manual_seed(4);
  for (const auto& c : kCases) {
    const auto qkv = torch::randn({c.batch, c.tokens, 3 * c.heads * c.head_dim}).to(at::kBFloat16);
    const auto out = models::gemm_attention(qkv, c.heads);
    EXPECT_EQ(out.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(close_scaled(out.to(at::kFloat), reference(qkv, c.heads), 8e-3))
        << c.tokens << " tokens, " << c.heads << " heads of " << c.head_dim;
  }
}

// Scores of several hundred (exp would overflow without the shift by the row's maximum) and a
// strided qkv (a slice of a wider tensor) give the definition's answer.
TEST(GemmAttention, LargeScoresAndStridedInput) {
  if (!models::gemm_attention_available()) GTEST_SKIP() << "oneDNN's brgemm does not run here";
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  const auto wide = torch::randn({2, 33, 2 * 3 * 64}) * 6;
  const auto qkv = wide.narrow(2, 0, 3 * 64);
  ASSERT_FALSE(qkv.is_contiguous());
  const auto out = models::gemm_attention(qkv, 2);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  // Scores of ~150 carry float32 rounding of ~150 · 6e-8 each, which exp turns into relative
  // errors of ~1e-5: the conditioning of the problem, whatever the kernel.
  EXPECT_TRUE(close_scaled(out, reference(qkv, 2), 1e-4));
  // A one-hot softmax: every query's largest score far above the rest picks that key's value.
  auto sharp = torch::zeros({1, 4, 3 * 16});
  for (int64_t i = 0; i < 4; ++i) {
    sharp[0][i][i] = 100;                         // q_i along axis i
    sharp[0][i][16 + i] = 100;                    // k_i along axis i: q_i·k_i = 10^4 / 4, others 0
    sharp[0][i][32] = static_cast<float>(i + 1);  // v_i = (i + 1, 0, ...)
  }
  const auto picked = models::gemm_attention(sharp, 1);
  for (int64_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(picked[0][i][0].item<float>(), i + 1.0f);
}

TEST(GemmAttention, RefusesWhatItDoesNotRun) {
  const auto qkv = torch::randn({1, 5, 12});
  EXPECT_FALSE(models::gemm_attention_supported(qkv.to(at::kDouble), 2));
  EXPECT_FALSE(models::gemm_attention_supported(qkv, 5));  // 12 not divisible by 15
  EXPECT_FALSE(models::gemm_attention_supported(qkv.view({5, 12}), 2));
  EXPECT_FALSE(models::gemm_attention_supported(
      torch::randn({1, models::kGemmAttentionMaxTokens + 1, 12}), 2));
  EXPECT_FALSE(models::gemm_attention_supported(torch::randn({1, 0, 12}), 2));
  const auto trained = qkv.clone().requires_grad_(true);
  EXPECT_FALSE(models::gemm_attention_supported(trained, 2)) << "not differentiable";
  {
    torch::NoGradGuard no_grad;
    EXPECT_EQ(models::gemm_attention_supported(trained, 2), models::gemm_attention_available());
  }
  expect_error([&] { models::gemm_attention(qkv.to(at::kDouble), 2); },
               {"gemm_attention: expected a CPU float32/bfloat16", "[1, 5, 12]"});
}

// The softmax copy follows LibTorch's capability, which ATEN_CPU_CAPABILITY lowers.
TEST(GemmAttention, TheSoftmaxCopyFollowsTheCpuCapability) {
  const char* env = std::getenv("ATEN_CPU_CAPABILITY");
  const std::string cap = env ? env : "";
  const std::string isa = models::gemm_attention_isa();
  if (cap == "default") EXPECT_EQ(isa, "plain");
  if (cap == "avx2" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    EXPECT_EQ(isa, "avx2");
  if (cap.empty() && __builtin_cpu_supports("avx512f")) EXPECT_EQ(isa, "avx512");
  EXPECT_TRUE(isa == "plain" || isa == "avx2" || isa == "avx512") << isa;
}

}  // namespace thinkingvit::testing
