#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../test_util.h"
#include "thinkingvit/models/entropy.h"

namespace thinkingvit::testing {

using models::EntropyRule;

TEST(Entropy, UniformLogitsGiveLogOfTheSupport) {
  auto logits = torch::zeros({2, 1000});
  auto top10 = models::entropy(logits, EntropyRule::kTop10);
  auto full = models::entropy(logits, EntropyRule::kFull);
  EXPECT_NEAR(top10[0].item<float>(), std::log(10.0), 1e-6);
  EXPECT_NEAR(full[1].item<float>(), std::log(1000.0), 1e-5);
}

TEST(Entropy, TopTenIsRenormalisedAndClamped) {
  // Logits (L, 0 x 9, -inf-ish x 10): top-10 keeps the first ten, renormalised.
  const double L = 3.0;
  auto logits = torch::full({1, 20}, -50.0);
  logits.slice(1, 0, 10).fill_(0.0);
  logits[0][0] = L;
  const double big = std::exp(L) / (std::exp(L) + 9.0), small = 1.0 / (std::exp(L) + 9.0);
  const double expected = -(big * std::log(big) + 9.0 * small * std::log(small));
  EXPECT_NEAR(models::entropy(logits).item<float>(), expected, 1e-6);
  // The full rule also sees the ten tiny classes, so it is (slightly) larger.
  EXPECT_GT(models::entropy(logits, EntropyRule::kFull).item<float>(), expected);

  // A certain prediction: p = 1 is clamped to 1 - eps, so H = -ln(1 - eps) > 0, not 0.
  auto certain = torch::zeros({1, 10});
  certain[0][3] = 1000.0;
  const float h = models::entropy(certain).item<float>();
  EXPECT_GT(h, 0.0f);
  EXPECT_NEAR(h, 1.1920929e-7, 2e-8);
}

TEST(Entropy, FullRuleMatchesTheDefinition) {
  torch::manual_seed(3);
  auto logits = torch::randn({4, 7}, torch::kDouble) * 2;
  auto p = logits.softmax(1);
  auto expected = -(p * p.log()).sum(1);
  auto h = models::entropy(logits.to(torch::kFloat), EntropyRule::kFull);
  EXPECT_TRUE(torch::allclose(h.to(torch::kDouble), expected, 1e-5, 1e-6));
}

TEST(Entropy, ComputedInFloat32ForHalfPrecisionLogits) {
  auto logits = torch::randn({3, 12}).to(torch::kBFloat16);
  auto h = models::entropy(logits);
  EXPECT_EQ(h.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(h, models::entropy(logits.to(torch::kFloat))));
}

TEST(Entropy, ParsesRuleNames) {
  EXPECT_EQ(models::parse_entropy_rule("top10"), EntropyRule::kTop10);
  EXPECT_EQ(models::parse_entropy_rule("full"), EntropyRule::kFull);
  expect_error([] { models::parse_entropy_rule("top5", "--entropy"); }, {"--entropy", "'top5'"});
}

}  // namespace thinkingvit::testing
