#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../test_util.h"
#include "thinkingvit/eval/sweep.h"

namespace thinkingvit::testing {

namespace {

struct Generated {
  std::vector<at::Tensor> logits;
  at::Tensor labels;
};

// Three stages of logits over 12 classes for 200 samples, later stages sharper and more
// often right, so the sweep has something to trade.
Generated generated(int64_t n = 200) {
  torch::manual_seed(11);
  Generated g;
  g.labels = torch::randint(0, 12, {n}, torch::kLong);
  for (int s = 0; s < 3; ++s) {
    auto l = torch::randn({n, 12}) * (1.0 + s);
    auto boost = (torch::rand({n}) < 0.4 + 0.2 * s).to(torch::kFloat) * (2.0 + s);
    l.scatter_add_(1, g.labels.view({-1, 1}), boost.view({-1, 1}));
    g.logits.push_back(l);
  }
  return g;
}

}  // namespace

TEST(Sweep, EqualsBruteForceAtEveryThreshold) {
  const auto g = generated();
  const auto options = tiny_options({1, 2, 3});
  const auto records = eval::records_from_logits(g.logits, g.labels, models::EntropyRule::kTop10);
  std::vector<at::Tensor> h;
  for (const auto& l : g.logits) h.push_back(models::entropy(l));
  double prev_reach1 = 2.0;
  for (double tau : eval::parse_thresholds("0:2.4:0.2", "taus")) {
    const auto row = eval::sweep_at(records, options, tau);
    int64_t correct = 0;
    std::vector<int64_t> stopped(3, 0);
    for (int64_t i = 0; i < 200; ++i) {
      int64_t s = 0;
      while (s < 2 && !(h[s][i].item<float>() < tau)) ++s;
      ++stopped[s];
      correct += g.logits[s][i].argmax().item<int64_t>() == g.labels[i].item<int64_t>();
    }
    EXPECT_NEAR(row.top1, 100.0 * correct / 200, 1e-9) << tau;
    for (int s = 0; s < 3; ++s) EXPECT_NEAR(row.stop_share[s], stopped[s] / 200.0, 1e-12) << tau;
    const std::vector<double> reach = {1.0, (stopped[1] + stopped[2]) / 200.0, stopped[2] / 200.0};
    double macs = 0;
    for (int s = 0; s < 3; ++s)
      macs += reach[s] * models::stage_macs(options, s).total(models::MacConvention::kReleased);
    EXPECT_NEAR(row.gmacs, macs / 1e9, 1e-12) << tau;
    EXPECT_LE(row.reach[1], prev_reach1 + 1e-12) << "shares must be monotone in tau";
    prev_reach1 = row.reach[1];
  }
  const auto all_last = eval::sweep_at(records, options, 0.0);
  EXPECT_EQ(all_last.stop_share, (std::vector<double>{0.0, 0.0, 1.0}));
  EXPECT_NEAR(all_last.top1, records.top1[2], 1e-9);
  const auto all_first = eval::sweep_at(records, options, 2.31);  // > ln 10
  EXPECT_EQ(all_first.stop_share, (std::vector<double>{1.0, 0.0, 0.0}));
  EXPECT_NEAR(all_first.top1, records.top1[0], 1e-9);
}

TEST(Sweep, ThresholdListsAndTheReleasedFormula) {
  EXPECT_EQ(eval::parse_thresholds("0,0.5,1", "--taus"), (std::vector<double>{0, 0.5, 1}));
  EXPECT_EQ(eval::parse_thresholds("0:1:0.5", "--taus").size(), 3u);
  EXPECT_EQ(eval::parse_thresholds("0:2.3:0.1", "--taus").size(), 24u);
  expect_error([] { eval::parse_thresholds("0:1", "--taus"); }, {"--taus", "start:stop:step"});
  expect_error([] { eval::parse_thresholds("a,b", "--taus"); }, {"--taus", "'a,b'"});
  // Released: 1 / (1/10047.6 + r/4603.6) with r the share sent to stage 2.
  EXPECT_NEAR(eval::predicted_throughput({1.0, 0.5}, {10047.6, 4603.6}),
              1.0 / (1.0 / 10047.6 + 0.5 / 4603.6), 1e-9);
}

}  // namespace thinkingvit::testing
