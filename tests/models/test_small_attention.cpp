#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../test_util.h"
#include "thinkingvit/models/layers.h"
#include "thinkingvit/models/small_attention.h"
#include "thinkingvit/models/vit/thinking_vit.h"
#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::testing {
namespace {

// The same attention through LibTorch ops: B x N x 3k -> B x N x k.
at::Tensor reference(const at::Tensor& qkv, int64_t heads) {
  const int64_t b = qkv.size(0), n = qkv.size(1), k = qkv.size(2) / 3;
  auto parts =
      qkv.reshape({b, n, 3, heads, k / heads}).permute({2, 0, 3, 1, 4});  // 3 x B x H x N x Dh
  return models::explicit_attention(parts[0], parts[1], parts[2])
      .transpose(1, 2)
      .reshape({b, n, k});
}

struct Case {
  int64_t batch, tokens, heads, head_dim;
};

const Case kCases[] = {{2, 1, 1, 4}, {2, 5, 3, 5}, {3, 17, 2, 8}, {1, 33, 4, 16}};

}  // namespace

TEST(SmallAttention, ForwardMatchesExplicitAttention) {
  for (const auto& c : kCases) {
    torch::manual_seed(c.tokens);
    auto qkv = torch::randn({c.batch, c.tokens, 3 * c.heads * c.head_dim}, torch::kDouble);
    auto expected = reference(qkv, c.heads);
    EXPECT_TRUE(torch::allclose(models::small_attention(qkv, c.heads), expected, 1e-12, 1e-12))
        << c.tokens;
    EXPECT_TRUE(torch::allclose(models::small_attention(qkv.to(torch::kFloat), c.heads),
                                expected.to(torch::kFloat), 1e-5, 1e-5))
        << c.tokens;
  }
}

TEST(SmallAttention, GradientsMatchExplicitAttention) {
  for (const auto& c : kCases) {
    for (auto dtype : {torch::kDouble, torch::kFloat}) {
      torch::manual_seed(100 + c.tokens);
      auto base = torch::randn({c.batch, c.tokens, 3 * c.heads * c.head_dim}, dtype);
      auto weight = torch::randn({c.batch, c.tokens, c.heads * c.head_dim}, dtype);
      auto mine = base.clone().requires_grad_(true), theirs = base.clone().requires_grad_(true);
      (models::small_attention(mine, c.heads) * weight).sum().backward();
      (reference(theirs, c.heads) * weight).sum().backward();
      const double tol = dtype == torch::kDouble ? 1e-11 : 1e-4;
      EXPECT_TRUE(torch::allclose(mine.grad(), theirs.grad(), tol, tol))
          << c.tokens << " tokens, " << (dtype == torch::kDouble ? "double" : "float") << ": "
          << (mine.grad() - theirs.grad()).abs().max().item<double>();
    }
  }
}

// The baseline copy (what a CPU without AVX2 runs) against the one this machine picks.
TEST(SmallAttention, BaselineCopyAgreesWithTheDispatchedOne) {
  torch::manual_seed(8);
  auto base = torch::randn({3, 17, 3 * 4 * 32});
  auto weight = torch::randn({3, 17, 4 * 32});
  auto run = [&] {
    auto qkv = base.clone().requires_grad_(true);
    auto out = models::small_attention(qkv, 4);
    (out * weight).sum().backward();
    return std::make_pair(out.detach(), qkv.grad());
  };
  const auto dispatched = run();
  util::simd_dispatch_enabled() = false;
  const auto baseline = run();
  util::simd_dispatch_enabled() = true;
  EXPECT_TRUE(close_scaled(dispatched.first, baseline.first, 1e-5));
  EXPECT_TRUE(close_scaled(dispatched.second, baseline.second, 1e-5));
  EXPECT_TRUE(close_scaled(baseline.first, reference(base, 4), 1e-5));
}

TEST(SmallAttention, ClosedForms) {
  // One token: softmax over one score is 1, so the output is v.
  auto one = torch::randn({2, 1, 3 * 8});
  EXPECT_TRUE(torch::allclose(models::small_attention(one, 2), one.slice(2, 16, 24)));
  // Equal keys: uniform weights, every query gets the mean of v.
  auto qkv = torch::randn({1, 6, 3 * 4});
  qkv.slice(2, 4, 8).copy_(torch::randn({1, 1, 4}).expand({1, 6, 4}));
  auto mean_v = qkv.slice(2, 8, 12).mean(/*dim=*/1, /*keepdim=*/true).expand({1, 6, 4});
  EXPECT_TRUE(torch::allclose(models::small_attention(qkv, 1), mean_v, 1e-6, 1e-6));
}

TEST(SmallAttention, ResultDoesNotDependOnTheThreadCount) {
  torch::manual_seed(3);
  auto base = torch::randn({8, 17, 3 * 4 * 8});
  const int threads = at::get_num_threads();
  auto run = [&](int n) {
    at::set_num_threads(n);
    auto qkv = base.clone().requires_grad_(true);
    auto out = models::small_attention(qkv, 4);
    out.pow(2).sum().backward();
    return std::make_pair(out.detach(), qkv.grad());
  };
  auto a = run(1), b = run(2);
  at::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(a.first, b.first));
  EXPECT_TRUE(torch::equal(a.second, b.second));
}

TEST(SmallAttention, NonContiguousInputAndNoGradAgree) {
  torch::manual_seed(4);
  auto wide = torch::randn({2, 9, 2 * 3 * 6});
  auto qkv = wide.slice(2, 0, 3 * 6);  // rows 36 apart, not contiguous
  ASSERT_FALSE(qkv.is_contiguous());
  auto expected = reference(qkv.contiguous(), 3);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(models::small_attention(qkv, 3), expected, 1e-5, 1e-6));
}

TEST(SmallAttention, RejectsWhatItCannotRun) {
  EXPECT_FALSE(models::small_attention_supported(torch::randn({2, 5, 12}), 5));  // 12 % 15
  EXPECT_FALSE(models::small_attention_supported(torch::ones({2, 5, 12}, torch::kInt), 2));
  EXPECT_FALSE(models::small_attention_supported(
      torch::randn({1, models::kSmallAttentionMaxTokens + 1, 6}), 1));
  EXPECT_TRUE(models::small_attention_supported(torch::randn({2, 5, 12}), 2));
  EXPECT_THROW(models::small_attention(torch::randn({2, 5, 12}), 5), Error);
}

TEST(SmallAttention, ModelWithSmallAttentionTrainsLikeTheFusedOne) {
  auto reference_model = tiny_model();
  auto options = tiny_options();
  options.attention(models::AttentionBackend::kSmall);
  models::ThinkingViT model(options);
  {
    torch::NoGradGuard no_grad;
    auto src = reference_model->named_parameters();
    for (auto& item : model->named_parameters()) item.value().copy_(src[item.key()]);
  }
  reference_model->train();
  model->train();
  auto images = tiny_images(3);
  auto a = reference_model->forward_all(images), b = model->forward_all(images);
  at::Tensor loss_a = torch::zeros({}), loss_b = torch::zeros({});
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_TRUE(close_scaled(a[s].logits, b[s].logits, 1e-5)) << "stage " << s;
    loss_a = loss_a + a[s].logits.pow(2).sum();
    loss_b = loss_b + b[s].logits.pow(2).sum();
  }
  loss_a.backward();
  loss_b.backward();
  auto grads = reference_model->named_parameters();
  for (auto& item : model->named_parameters()) {
    // Gradients reach ~18: float rounding differs by kernel (AVX2, AVX-512, AMX), so the bound
    // scales with each tensor's largest value.
    EXPECT_TRUE(close_scaled(item.value().grad(), grads[item.key()].grad(), 1e-5)) << item.key();
  }
}

}  // namespace thinkingvit::testing
