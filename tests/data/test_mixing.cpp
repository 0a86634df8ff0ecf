#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../test_util.h"
#include "thinkingvit/data/mixing.h"

namespace thinkingvit::testing {

TEST(Mixing, SmoothedOneHot) {
  auto t = data::smooth_one_hot(torch::tensor({2, 0}), 10, 0.1);
  EXPECT_FLOAT_EQ(t[0][2].item<float>(), 0.91f);
  EXPECT_FLOAT_EQ(t[0][0].item<float>(), 0.01f);
  EXPECT_FLOAT_EQ(t[1][0].item<float>(), 0.91f);
  EXPECT_TRUE(torch::allclose(t.sum(1), torch::ones({2})));
}

TEST(Mixing, MixupBlendsWithTheReversedBatch) {
  torch::manual_seed(0);
  auto images = torch::randn({4, 3, 8, 8});
  const auto original = images.clone();
  auto labels = torch::tensor({0, 1, 2, 3});
  data::MixOptions o;
  o.cutmix_alpha = 0.0;
  data::Rng rng(5);
  auto r = data::mix_batch(images, labels, 5, o, rng);
  ASSERT_TRUE(r.mixed);
  EXPECT_FALSE(r.cutmix);
  EXPECT_TRUE(
      torch::allclose(images, original * r.lam + original.flip(0) * (1 - r.lam), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(r.targets.sum(1), torch::ones({4})));
  const double off = 0.1 / 5, on = 0.9 + off;
  EXPECT_NEAR(r.targets[0][0].item<float>(), r.lam * on + (1 - r.lam) * off, 1e-6);
  EXPECT_NEAR(r.targets[0][3].item<float>(), r.lam * off + (1 - r.lam) * on, 1e-6);
}

TEST(Mixing, CutMixLamIsTheKeptArea) {
  data::MixOptions o;
  o.mixup_alpha = 0.0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto images = torch::arange(2 * 1 * 10 * 12, torch::kFloat).view({2, 1, 10, 12});
    const auto original = images.clone();
    data::Rng rng(seed);
    auto r = data::mix_batch(images, torch::tensor({0, 1}), 3, o, rng);
    ASSERT_TRUE(r.cutmix);
    const int64_t changed = (images != original).sum().item<int64_t>() / 2;  // per image
    EXPECT_EQ(changed, r.box_height * r.box_width);
    EXPECT_NEAR(r.lam, 1.0 - static_cast<double>(changed) / 120.0, 1e-12);
    EXPECT_TRUE(torch::allclose(r.targets.sum(1), torch::ones({2})));
  }
}

TEST(Mixing, OffOrOddBatches) {
  auto images = torch::randn({3, 1, 4, 4});
  const auto original = images.clone();
  data::MixOptions off;
  off.prob = 0.0;
  data::Rng rng(1);
  auto r = data::mix_batch(images, torch::tensor({0, 1, 1}), 2, off, rng);
  EXPECT_FALSE(r.mixed);
  EXPECT_TRUE(torch::equal(images, original));
  EXPECT_TRUE(torch::allclose(r.targets, data::smooth_one_hot(torch::tensor({0, 1, 1}), 2, 0.1)));
  expect_error(
      [&] {
        data::mix_batch(images, torch::tensor({0, 1, 1}), 2, data::MixOptions{}, rng);
      },
      {"batch size must be even", "3"});
}

TEST(Mixing, BetaSamplesHaveTheRightMean) {
  data::Rng rng(2);
  double sum = 0;
  for (int i = 0; i < 4000; ++i) sum += data::sample_beta(0.8, rng);
  EXPECT_NEAR(sum / 4000, 0.5, 0.02);
}

}  // namespace thinkingvit::testing
