#include <gtest/gtest.h>

#include <cmath>

#include "../test_util.h"
#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/models/gemm_attention.h"
#include "thinkingvit/util/device.h"

namespace thinkingvit::testing {

namespace cpu = models::cpu;

namespace {

// softmax(q kᵀ / sqrt(Dh) + mask) v in double precision.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& mask = {}) {
  const auto q64 = q.to(at::kDouble), k64 = k.to(at::kDouble), v64 = v.to(at::kDouble);
  auto scores = at::matmul(q64, k64.transpose(-2, -1)) / std::sqrt(double(q.size(-1)));
  if (mask.defined()) scores = scores + mask.to(at::kDouble);
  return at::matmul(scores.softmax(-1), v64);
}

}  // namespace

TEST(CpuKernels, PolicyNamesAndErrors) {
  EXPECT_EQ(cpu::parse_kernel_policy("auto", "x"), cpu::KernelPolicy::kAuto);
  EXPECT_EQ(cpu::parse_kernel_policy("aten", "x"), cpu::KernelPolicy::kAten);
  EXPECT_EQ(cpu::parse_kernel_policy("onednn", "x"), cpu::KernelPolicy::kOneDnn);
  expect_error([] { cpu::parse_kernel_policy("mkl", "THINKINGVIT_CPU_KERNELS"); },
               {"THINKINGVIT_CPU_KERNELS", "auto, aten or onednn", "'mkl'"});
}

// Only inference on the CPU in float32 / bfloat16 takes the tuned kernels.
TEST(CpuKernels, AppliesToNoGradFloatOnTheCpu) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  KernelPolicyScope scope(cpu::KernelPolicy::kOneDnn);
  const auto x = torch::randn({2, 3});
  EXPECT_FALSE(cpu::applies(x));           // gradients are being recorded: ATen's linears
  EXPECT_TRUE(cpu::attention_applies(x));  // the attention choice holds in training too
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(cpu::applies(x));
  EXPECT_TRUE(cpu::applies(x.to(at::kBFloat16)));
  EXPECT_FALSE(cpu::applies(x.to(at::kDouble)));
  {
    compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16);
    EXPECT_TRUE(cpu::applies(x.to(at::kDouble)));  // computed in bfloat16
  }
  cpu::set_policy(cpu::KernelPolicy::kAten);
  EXPECT_FALSE(cpu::applies(x));
  EXPECT_FALSE(cpu::attention_applies(x));
  EXPECT_EQ(cpu::describe(), "aten");
}

// oneDNN's linear (bias and GELU in its epilogue) against ATen's, with and without bias, on a
// 3-D input; in bfloat16 through autocast against autocast's own linear.
TEST(CpuKernels, OneDnnLinearMatchesATen) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  KernelPolicyScope scope(cpu::KernelPolicy::kOneDnn);
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  const auto x = torch::randn({2, 5, 24});
  const auto w = torch::randn({40, 24}) * 0.3;
  const auto b = torch::randn({40});
  for (const bool gelu : {false, true}) {
    for (const bool bias : {false, true}) {
      const auto expected = [&] {
        auto y = at::linear(x.to(at::kDouble), w.to(at::kDouble),
                            bias ? b.to(at::kDouble) : at::Tensor());
        return gelu ? at::gelu(y) : y;
      }();
      const auto y = cpu::linear(x, w, bias ? b : at::Tensor(), gelu);
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 5, 40}));
      EXPECT_EQ(y.scalar_type(), at::kFloat);
      EXPECT_TRUE(close_scaled(y, expected, 1e-5)) << gelu << bias;
      compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16);
      const auto y16 = cpu::linear(x, w, bias ? b : at::Tensor(), gelu);
      EXPECT_EQ(y16.scalar_type(), at::kBFloat16);
      EXPECT_TRUE(close_scaled(y16, expected, 2e-2)) << gelu << bias;
    }
  }
}

// Batched-matmul attention on q, k, v cut out of one qkv tensor (strided, as in the model).
TEST(CpuKernels, MatmulAttentionMatchesTheDefinition) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  KernelPolicyScope scope(cpu::KernelPolicy::kOneDnn);
  torch::NoGradGuard no_grad;
  torch::manual_seed(4);
  const auto qkv = torch::randn({2, 7, 3, 3, 8}).permute({2, 0, 3, 1, 4});  // 3 x B x H x N x Dh
  const auto q = qkv[0], k = qkv[1], v = qkv[2];
  const auto expected = reference_attention(q, k, v);
  EXPECT_TRUE(close_scaled(cpu::attention(q, k, v), expected, 1e-5));
  compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16);
  const auto out16 = cpu::attention(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16));
  EXPECT_EQ(out16.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(close_scaled(out16, expected, 3e-2));
}

// With an additive mask broadcast over the batch (Swin's bias and shift mask, -100 where
// windows do not meet): the output and the gradients of q, k and v are the definition's.
TEST(CpuKernels, MaskedMatmulAttentionMatchesTheDefinition) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  KernelPolicyScope scope(cpu::KernelPolicy::kOneDnn);
  torch::manual_seed(6);
  const auto q0 = torch::randn({2, 4, 9, 8}), k0 = torch::randn({2, 4, 9, 8});
  const auto v0 = torch::randn({2, 4, 9, 8}), r = torch::randn({2, 4, 9, 8});
  auto mask = torch::randn({1, 4, 9, 9});
  mask.slice(2, 0, 4).slice(3, 4, 9).fill_(-100.0);
  auto run = [&](bool tuned) {
    auto q = q0.clone().requires_grad_(), k = k0.clone().requires_grad_();
    auto v = v0.clone().requires_grad_();
    const auto out =
        tuned ? cpu::attention(q, k, v, mask) : reference_attention(q, k, v, mask).to(at::kFloat);
    (out * r).sum().backward();
    return std::vector<at::Tensor>{out.detach(), q.grad(), k.grad(), v.grad()};
  };
  const auto expected = run(false), got = run(true);
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_TRUE(close_scaled(got[i], expected[i], 1e-5)) << i;
  torch::NoGradGuard no_grad;
  compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16);
  const auto out16 = cpu::attention(q0.to(at::kBFloat16), k0.to(at::kBFloat16),
                                    v0.to(at::kBFloat16), mask.to(at::kBFloat16));
  EXPECT_EQ(out16.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(close_scaled(out16, expected[0], 3e-2));
}

// Auto: oneDNN linears; in bf16 the attention kernel measured once. Whichever wins, the results
// are the maths', describe() names each dtype once used, and measuring leaves the random stream
// alone.
TEST(CpuKernels, AutoMeasuresOncePerDtype) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  KernelPolicyScope scope(cpu::KernelPolicy::kAuto);
  EXPECT_EQ(cpu::describe(), "auto (nothing measured yet)");
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  const auto x = torch::randn({3, 16}), w = torch::randn({8, 16}), b = torch::randn({8});
  const auto qkv = torch::randn({2, 5, 3, 2, 8}).permute({2, 0, 3, 1, 4});
  EXPECT_TRUE(
      close_scaled(cpu::linear(x, w, b, /*gelu=*/true), at::gelu(at::linear(x, w, b)), 1e-5));
  // The float32 attention choice: flash, and for inference the GEMM kernel where measured faster.
  const auto fp32 = cpu::describe();
  EXPECT_TRUE(fp32 == "linear onednn, attention flash (float32)" ||
              fp32 == std::string("linear onednn, attention flash, inference attention gemm/") +
                          models::gemm_attention_isa() + " (float32)")
      << fp32;
  // The bf16 measurement happens inside this call; it draws no random numbers.
  torch::manual_seed(7);
  {
    compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16);
    const auto out = cpu::attention(qkv[0], qkv[1], qkv[2]);
    EXPECT_EQ(out.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(close_scaled(out, reference_attention(qkv[0], qkv[1], qkv[2]), 3e-2));
  }
  const auto drawn = torch::randn({4});
  torch::manual_seed(7);
  EXPECT_TRUE(torch::equal(drawn, torch::randn({4})));
  const auto text = cpu::describe();
  // (oneDNN's bfloat16 linear needs AVX-512: below it, ATen's is taken.)
  EXPECT_EQ(text.rfind(fp32 + "; linear ", 0), 0u) << text;
  EXPECT_NE(text.find("(bfloat16)"), std::string::npos) << text;
}

// The whole model: tuned kernels against ATen's, every stage and the elastic path, in float32
// and bfloat16 autocast; and the bfloat16 weight cache gives what autocast's casts give.
TEST(CpuKernels, TheModelGivesTheSameOutputsWithEitherKernels) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  auto model = tiny_model();
  const auto images = tiny_images(4);
  torch::NoGradGuard no_grad;
  auto run = [&](cpu::KernelPolicy policy, bool bf16, bool cache) {
    KernelPolicyScope scope(policy);
    model->set_weight_cache(cache);
    compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16, bf16);
    std::vector<at::Tensor> out;
    at::Tensor tokens;
    for (int64_t s = 0; s < 3; ++s) {
      auto o = model->forward_stage(s, images, tokens);
      out.push_back(o.logits.to(at::kFloat));
      tokens = o.tokens;
    }
    out.push_back(model->forward_elastic(images, 0.0).logits.to(at::kFloat));
    return out;
  };
  const auto reference = run(cpu::KernelPolicy::kAten, false, true);
  const auto tuned = run(cpu::KernelPolicy::kOneDnn, false, true);
  const auto reference16 = run(cpu::KernelPolicy::kAten, true, false);
  const auto cached16 = run(cpu::KernelPolicy::kAten, true, true);
  const auto tuned16 = run(cpu::KernelPolicy::kOneDnn, true, true);
  for (size_t i = 0; i < reference.size(); ++i) {
    EXPECT_TRUE(close_scaled(tuned[i], reference[i], 1e-5)) << i;
    EXPECT_TRUE(torch::equal(cached16[i], reference16[i])) << i;
    EXPECT_TRUE(close_scaled(tuned16[i], reference[i], 5e-2)) << i;
    EXPECT_TRUE(close_scaled(reference16[i], reference[i], 5e-2)) << i;
  }
  model->set_weight_cache(true);
}

// Swin's linears (qkv, projection, MLP with fused GELU, patch merging, the recycling projection)
// and its masked window attention through either kernels, in float32 and bfloat16 autocast.
TEST(CpuKernels, SwinGivesTheSameOutputsWithEitherKernels) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  torch::manual_seed(8);
  auto model = models::make_model(models::ModelOptions(tiny_swin_options()));
  model->eval();
  const auto images = tiny_images(3);
  torch::NoGradGuard no_grad;
  auto run = [&](cpu::KernelPolicy policy, bool bf16) {
    KernelPolicyScope scope(policy);
    compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16, bf16);
    std::vector<at::Tensor> out;
    for (const auto& o : model->forward_all(images)) out.push_back(o.logits.to(at::kFloat));
    return out;
  };
  const auto reference = run(cpu::KernelPolicy::kAten, false);
  const auto tuned = run(cpu::KernelPolicy::kOneDnn, false);
  const auto tuned16 = run(cpu::KernelPolicy::kOneDnn, true);
  ASSERT_EQ(tuned.size(), 2u);
  for (size_t i = 0; i < tuned.size(); ++i) {
    EXPECT_TRUE(close_scaled(tuned[i], reference[i], 1e-5)) << i;
    EXPECT_TRUE(close_scaled(tuned16[i], reference[i], 5e-2)) << i;
  }
}

// Float32 training: the differentiable oneDNN linear gives ATen's output and gradients, for a
// weight that is a strided leading slice of a larger parameter (as every stage's is), with and
// without bias and GELU; it applies only to float32 compute with gradients recorded.
TEST(CpuKernels, OneDnnLinearTrainsLikeATen) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  torch::manual_seed(5);
  const auto x0 = torch::randn({2, 5, 24});
  const auto w_full0 = torch::randn({40, 30}) * 0.2;
  const auto b_full0 = torch::randn({40});
  const auto r = torch::randn({2, 5, 16});
  struct Result {
    at::Tensor y, dx, dw, db;
  };
  auto run = [&](cpu::KernelPolicy policy, bool bias, bool gelu) {
    KernelPolicyScope scope(policy);
    auto x = x0.clone().requires_grad_();
    auto w_full = w_full0.clone().requires_grad_();
    auto b_full = b_full0.clone().requires_grad_();
    const auto w = w_full.slice(0, 0, 16).slice(1, 0, 24);  // strided
    const auto b = bias ? b_full.slice(0, 0, 16) : at::Tensor();
    EXPECT_EQ(cpu::training_applies(x, w), policy != cpu::KernelPolicy::kAten);
    const auto y = cpu::dense(x, w, b, gelu);
    (y * r).sum().backward();
    return Result{y.detach(), x.grad(), w_full.grad(), bias ? b_full.grad() : at::Tensor()};
  };
  for (const bool bias : {true, false}) {
    for (const bool gelu : {false, true}) {
      const auto ours = run(cpu::KernelPolicy::kOneDnn, bias, gelu);
      const auto aten = run(cpu::KernelPolicy::kAten, bias, gelu);
      EXPECT_TRUE(close_scaled(ours.y, aten.y, 1e-5)) << bias << gelu;
      EXPECT_TRUE(close_scaled(ours.dx, aten.dx, 1e-5)) << bias << gelu;
      EXPECT_TRUE(close_scaled(ours.dw, aten.dw, 1e-5)) << bias << gelu;
      EXPECT_EQ(ours.dw.slice(0, 16).abs().sum().item<double>(), 0.0);  // rows not sliced
      if (bias) {
        EXPECT_TRUE(close_scaled(ours.db, aten.db, 1e-5)) << gelu;
      }
    }
  }
  KernelPolicyScope scope(cpu::KernelPolicy::kOneDnn);
  const auto x = torch::randn({2, 3}), w = torch::randn({4, 3});
  EXPECT_FALSE(cpu::training_applies(x.to(at::kDouble), w.to(at::kDouble)));
  {
    compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16);
    EXPECT_FALSE(cpu::training_applies(x, w));  // bf16 compute: ATen's (oneDNN) matmul already
  }
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(cpu::training_applies(x, w));  // inference: the fused linear instead
}

// Training: matmul attention (kOneDnn) gives the flash kernel's (kAten) gradients, in float32
// and under bf16 autocast.
TEST(CpuKernels, MatmulAttentionTrainsLikeTheFlashKernel) {
  if (!at::hasMKLDNN()) GTEST_SKIP() << "LibTorch built without oneDNN";
  auto model = tiny_model();
  model->train();
  const auto images = tiny_images(4);
  auto grads = [&](cpu::KernelPolicy policy, bool bf16) {
    KernelPolicyScope scope(policy);
    model->zero_grad();
    {
      compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16, bf16);
      at::Tensor loss;
      for (const auto& out : model->forward_all(images)) {
        const auto term = out.logits.to(at::kFloat).square().mean();
        loss = loss.defined() ? loss + term : term;
      }
      loss.backward();
    }
    std::vector<at::Tensor> g;
    for (const auto& p : model->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  for (const bool bf16 : {false, true}) {
    const auto flash = grads(cpu::KernelPolicy::kAten, bf16);
    const auto matmul = grads(cpu::KernelPolicy::kOneDnn, bf16);
    const auto reference = grads(cpu::KernelPolicy::kAten, false);
    for (size_t i = 0; i < flash.size(); ++i) {
      if (!bf16) {
        EXPECT_TRUE(close_scaled(matmul[i], flash[i], 1e-4)) << i;
      }
      EXPECT_TRUE(close_scaled(matmul[i], reference[i], bf16 ? 0.1 : 1e-4)) << i << " " << bf16;
    }
  }
}

}  // namespace thinkingvit::testing
