#include <gtest/gtest.h>
#include <torch/torch.h>

#include <numeric>

#include "../test_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/data/loader.h"
#include "thinkingvit/eval/evaluate.h"
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

// A loader over `set` (8x8 RGB) with the eval transform at the images' own size, in this thread.
data::DataLoader eval_loader(const std::shared_ptr<const data::Dataset>& set, int64_t batch_size) {
  data::EvalTransformOptions eval;
  eval.size = 8;
  eval.crop_pct = 1.0;
  data::LoaderOptions o;
  o.batch_size = batch_size;
  o.num_workers = 0;
  return data::DataLoader(set, data::make_eval_transform(eval, 3), o);
}

}  // namespace

TEST(Evaluate, RecordsEveryBatchInOrderAsOneForwardOverAllImages) {
  // evaluate() reads a batch's logits back only after queuing the next batch (on a GPU the host
  // stays a batch ahead): records, progress and on_batch must still cover every batch in order,
  // the short last one included.
  auto model = tiny_model({1, 2});
  auto loader = eval_loader(data::make_synthetic(12, 8, 8, 3, 12, 5), 5);
  std::vector<int64_t> all(12);
  std::iota(all.begin(), all.end(), 0);
  loader.start_epoch(0, all);
  std::vector<at::Tensor> images, labels;
  while (auto b = loader.next()) {
    images.push_back(b->images);
    labels.push_back(b->labels);
  }
  std::vector<at::Tensor> expected_logits;
  {
    torch::NoGradGuard no_grad;
    for (const auto& out : model->forward_all(at::cat(images)))
      expected_logits.push_back(out.logits);
  }
  const auto expected =
      eval::records_from_logits(expected_logits, at::cat(labels), models::EntropyRule::kTop10);

  loader.start_epoch(0, all);
  std::vector<std::pair<int64_t, int64_t>> progress;
  std::vector<int64_t> batch_sizes;
  const auto got = eval::evaluate(
      *model, loader, models::EntropyRule::kTop10, c10::Device(c10::kCPU), false,
      [&](int64_t done, int64_t total) { progress.emplace_back(done, total); },
      [&](const at::Tensor& x) { batch_sizes.push_back(x.size(0)); });
  EXPECT_EQ(got.num_samples, 12);
  EXPECT_TRUE(torch::equal(got.labels, expected.labels));
  EXPECT_TRUE(torch::equal(got.correct1, expected.correct1));
  EXPECT_TRUE(torch::equal(got.correct5, expected.correct5));
  EXPECT_TRUE(close_scaled(got.entropy, expected.entropy, 1e-5));
  EXPECT_EQ(batch_sizes, (std::vector<int64_t>{5, 5, 2}));
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{1, 3}, {2, 3}, {3, 3}}));
}

TEST(Evaluate, LeavesTheModelAsItFoundIt) {
  // Training mode back, and no inference weight cache left behind unless one was there (the
  // trainer's validation would otherwise keep copies of the weights through the next epoch).
  auto model = tiny_model({1, 2});
  auto loader = eval_loader(data::make_synthetic(6, 8, 8, 3, 12, 5), 4);
  const std::vector<int64_t> all{0, 1, 2, 3, 4, 5};
  auto run = [&](bool bf16) {
    loader.start_epoch(0, all);
    eval::evaluate(*model, loader, models::EntropyRule::kTop10, c10::Device(c10::kCPU), bf16);
  };
  model->train();
  run(false);
  run(true);
  EXPECT_TRUE(model->is_training());
  EXPECT_EQ(model->weight_cache_bytes(), 0);

  model->eval();
  {
    torch::NoGradGuard no_grad;
    model->forward_all(tiny_images(1));
  }
  const int64_t held = model->weight_cache_bytes();
  ASSERT_GT(held, 0);
  run(false);
  EXPECT_FALSE(model->is_training());
  EXPECT_EQ(model->weight_cache_bytes(), held);

  // An evaluation that fails after its first batch (its cache built) restores the model too.
  model->train();
  model->release_weight_cache();
  loader.start_epoch(0, all);
  EXPECT_THROW(
      eval::evaluate(*model, loader, models::EntropyRule::kTop10, c10::Device(c10::kCPU), true, {},
                     [&](const at::Tensor&) {
                       EXPECT_GT(model->weight_cache_bytes(), 0);
                       throw Error("stop");
                     }),
      Error);
  EXPECT_TRUE(model->is_training());
  EXPECT_EQ(model->weight_cache_bytes(), 0);
}

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
  expect_error([] { eval::parse_thresholds("0,nan", "--taus"); }, {"--taus", "'0,nan'"});
  EXPECT_EQ(eval::parse_thresholds("0:0.9999:0.0001", "--taus").size(), 10000u);
  expect_error([] { eval::parse_thresholds("0:1e9:1e-9", "--taus"); },
               {"--taus", "more than the 10000"});
  // Released: 1 / (1/10047.6 + r/4603.6) with r the share sent to stage 2.
  EXPECT_NEAR(eval::predicted_throughput({1.0, 0.5}, {10047.6, 4603.6}),
              1.0 / (1.0 / 10047.6 + 0.5 / 4603.6), 1e-9);
}

TEST(Sweep, HalvesTakeEveryOtherSample) {
  const auto g = generated(7);
  const auto records = eval::records_from_logits(g.logits, g.labels, models::EntropyRule::kTop10);
  const auto even = eval::half_of(records, 0), odd = eval::half_of(records, 1);
  EXPECT_EQ(even.num_samples, 4);
  EXPECT_EQ(odd.num_samples, 3);
  for (int64_t i = 0; i < 7; ++i) {
    const auto& h = i % 2 ? odd : even;
    EXPECT_EQ(h.labels[i / 2].item<int64_t>(), records.labels[i].item<int64_t>());
    EXPECT_EQ(h.entropy[1][i / 2].item<float>(), records.entropy[1][i].item<float>());
    EXPECT_EQ(h.correct1[2][i / 2].item<bool>(), records.correct1[2][i].item<bool>());
  }
  const double right = even.correct1[0].sum().item<double>();
  EXPECT_NEAR(even.top1[0], 100.0 * right / 4, 1e-9);
  EXPECT_THROW(eval::half_of(records, 2), Error);
}

TEST(Sweep, EntropyHistogramCountsRightAndWrongPerBin) {
  // Hand-made records: stage 0 entropies and correctness, 10 bins over [0, ln 10].
  eval::StageRecords r;
  const double h_max = std::log(10.0), width = h_max / 10;
  r.entropy =
      torch::tensor({0.01, 0.5 * width, 1.5 * width, 9.5 * width, h_max, h_max}, torch::kFloat)
          .view({1, -1});
  r.correct1 = torch::tensor({true, false, true, true, false, false}).view({1, -1});
  const auto bins = eval::entropy_histogram(r, models::EntropyRule::kTop10, /*num_classes=*/12,
                                            /*bins=*/10);
  ASSERT_EQ(bins.size(), 10u);
  EXPECT_NEAR(bins[0].lo, 0.0, 1e-12);
  EXPECT_NEAR(bins[9].hi, h_max, 1e-12);
  EXPECT_EQ(bins[0].right, 1);
  EXPECT_EQ(bins[0].wrong, 1);
  EXPECT_EQ(bins[1].right, 1);
  EXPECT_EQ(bins[9].right, 1);
  EXPECT_EQ(bins[9].wrong, 2);  // H = H_max falls into the last bin
  int64_t total = 0;
  for (const auto& b : bins) total += b.right + b.wrong;
  EXPECT_EQ(total, 6);
  // The full rule spans ln K.
  const auto full = eval::entropy_histogram(r, models::EntropyRule::kFull, 12, 4);
  EXPECT_NEAR(full.back().hi, std::log(12.0), 1e-12);
  const auto table = eval::entropy_histogram_table(bins);
  EXPECT_EQ(table.columns(),
            (std::vector<std::string>{"entropy_lo", "entropy_hi", "right", "wrong"}));
  EXPECT_EQ(table.rows().size(), 10u);
}

TEST(Sweep, BudgetPicksTheBestThresholdThatFitsAndReportsTheOtherHalf) {
  const auto g = generated(400);
  const auto options = tiny_options({1, 2, 3});
  const auto records = eval::records_from_logits(g.logits, g.labels, models::EntropyRule::kTop10);
  const auto choose = eval::half_of(records, 0), report = eval::half_of(records, 1);
  std::vector<eval::MeasuredSweepRow> rows;
  const auto taus = eval::parse_thresholds("0:2.4:0.2", "taus");
  for (size_t i = 0; i < taus.size(); ++i) {
    eval::MeasuredSweepRow row;
    row.sweep = eval::sweep_at(records, options, taus[i]);
    row.img_per_s = 100.0 * static_cast<double>(i + 1);  // later thresholds: faster
    rows.push_back(row);
  }
  // Brute force over the same rule.
  auto expect = [&](double max_gmacs, double min_ips) {
    bool found = false;
    double best_tau = 0, best = -1;
    for (const auto& row : rows) {
      const auto r = eval::sweep_at(choose, options, row.sweep.tau);
      if ((max_gmacs <= 0 || r.gmacs <= max_gmacs) && (min_ips <= 0 || row.img_per_s >= min_ips) &&
          r.top1 > best) {
        found = true;
        best = r.top1;
        best_tau = row.sweep.tau;
      }
    }
    const auto c = eval::choose_within_budget(choose, report, options, rows, max_gmacs, min_ips);
    ASSERT_EQ(c.found, found);
    if (!found) return;
    EXPECT_EQ(c.tau, best_tau);
    EXPECT_NEAR(c.chosen_top1, best, 1e-9);
    EXPECT_NEAR(c.reported.top1, eval::sweep_at(report, options, best_tau).top1, 1e-9);
  };
  const double all_gmacs = rows.front().sweep.gmacs, first_gmacs = rows.back().sweep.gmacs;
  expect(0.5 * (all_gmacs + first_gmacs), 0);
  expect(0, 700.0);
  expect(all_gmacs * 2, 0);  // everything fits: the most accurate threshold
  const auto none = eval::choose_within_budget(choose, report, options, rows, first_gmacs * 0.5, 0);
  EXPECT_FALSE(none.found);
}

TEST(Sweep, TableHasOneRowPerThresholdAndTheRunOnEveryRow) {
  eval::MeasuredSweepRow row;
  row.sweep.tau = 0.5;
  row.sweep.top1 = 80;
  row.sweep.stop_share = {0.25, 0.75};
  row.sweep.stage_top1 = {90, 70};
  row.img_per_s = 1234.5;
  row.timed_reach = {1.0, 0.75};
  auto timed = row;
  timed.img_per_s_formula = 1000;
  timed.measured_over_formula = 1.2345;
  const auto table = eval::sweep_table({timed, row}, 64, "cpu: test", "fp32", 2);
  ASSERT_EQ(table.rows().size(), 2u);
  EXPECT_EQ(table.columns().front(), "tau");
  EXPECT_EQ(table.columns()[9], "measured_over_formula");
  EXPECT_EQ(std::get<std::string>(table.rows()[0][4]), "0.250/0.750");
  EXPECT_EQ(std::get<std::string>(table.rows()[0][10]), "1.000/0.750");
  EXPECT_EQ(std::get<double>(table.rows()[0][6]), 1234.5);
  EXPECT_EQ(std::get<double>(table.rows()[0][8]), 1000.0);
  EXPECT_DOUBLE_EQ(std::get<double>(table.rows()[0][9]), 1.2345);
  EXPECT_EQ(std::get<std::string>(table.rows()[1][9]), "-") << "no formula, no ratio";
  EXPECT_EQ(std::get<int64_t>(table.rows()[1][11]), 64);
  EXPECT_EQ(std::get<std::string>(table.rows()[1][12]), "cpu: test");
}

}  // namespace thinkingvit::testing
