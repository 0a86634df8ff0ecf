#include <gtest/gtest.h>

#include "../test_util.h"
#include "thinkingvit/eval/benchmark.h"
#include "thinkingvit/util/build_info.h"

namespace thinkingvit::testing {

TEST(Benchmark, TimesWarmupAndRepetitions) {
  int calls = 0;
  auto timing =
      eval::time_calls([&] { ++calls; }, /*warmup=*/3, /*reps=*/5, c10::Device(c10::kCPU));
  EXPECT_EQ(calls, 8);
  EXPECT_LE(timing.min_ms, timing.median_ms);
  EXPECT_LE(timing.median_ms, timing.max_ms);
  expect_error([] { eval::time_calls([] {}, 0, 0, c10::Device(c10::kCPU)); }, {"repetitions"});
}

// Interleaved rounds: warm-up in order, then each round starts one function later.
TEST(Benchmark, InterleavedRoundsRotateTheOrder) {
  std::vector<int> calls;
  std::vector<std::function<void()>> fns;
  for (int i = 0; i < 3; ++i) fns.push_back([&calls, i] { calls.push_back(i); });
  std::vector<int> rounds;
  const auto timings = eval::time_interleaved(fns, /*warmup=*/1, /*reps=*/3, c10::Device(c10::kCPU),
                                              [&](int done) { rounds.push_back(done); });
  EXPECT_EQ(calls, (std::vector<int>{0, 1, 2, 0, 1, 2, 1, 2, 0, 2, 0, 1}));
  EXPECT_EQ(rounds, (std::vector<int>{1, 2, 3}));
  ASSERT_EQ(timings.size(), 3u);
  for (const auto& t : timings) {
    EXPECT_LE(t.min_ms, t.median_ms);
    EXPECT_LE(t.median_ms, t.max_ms);
  }
}

// The threshold for a stop share lets exactly that share of the entropies below it.
TEST(Benchmark, TauForAShareStopsThatShare) {
  const auto entropy = torch::tensor({0.5, 0.1, 0.9, 0.3}, torch::kDouble);
  EXPECT_DOUBLE_EQ(eval::tau_for_share(entropy, 0.5), 0.4);
  EXPECT_DOUBLE_EQ(eval::tau_for_share(entropy, 0.25), 0.2);
  EXPECT_DOUBLE_EQ(eval::tau_for_share(entropy, 0.0), 0.1);
  EXPECT_DOUBLE_EQ(eval::tau_for_share(entropy, 1.0), 1.9);
  for (const double share : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    const double tau = eval::tau_for_share(entropy, share);
    EXPECT_EQ(entropy.lt(tau).sum().item<int64_t>(), static_cast<int64_t>(share * 4)) << share;
  }
  expect_error([&] { eval::tau_for_share(entropy, 1.5); }, {"stop share", "[0, 1]", "1.5"});
  // In a benchmark: half of the batch stops at stage 0.
  auto model = tiny_model();
  eval::BenchOptions options;
  options.batch_sizes = {8};
  options.stop_shares = {0.5};
  options.warmup = 0;
  options.reps = 1;
  const auto rows = eval::run_benchmark(*model, options);
  ASSERT_EQ(rows.size(), 3u + 1);
  EXPECT_EQ(rows.back().mode, "elastic");
  EXPECT_EQ(rows.back().reach[0], 1.0);
  EXPECT_EQ(rows.back().reach[1], 0.5);
}

// The training-step row puts the weights back (AdamW moved them) and the model in eval mode.
TEST(Benchmark, ATrainingStepRowLeavesTheWeightsAsTheyWere) {
  auto model = tiny_model();
  std::vector<at::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  eval::BenchOptions options;
  options.batch_sizes = {4};
  options.train = true;
  options.warmup = 0;
  options.reps = 2;
  const auto rows = eval::run_benchmark(*model, options);
  ASSERT_EQ(rows.size(), 3u + 1);
  EXPECT_EQ(rows.back().mode, "train");
  EXPECT_EQ(rows.back().reach, (std::vector<double>{1, 1, 1}));
  EXPECT_GT(rows.back().images_per_s, 0.0);
  const auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i], before[i])) << i;
  EXPECT_FALSE(model->is_training());
}

TEST(Benchmark, RowsForEveryStageAndThreshold) {
  auto model = tiny_model();
  eval::BenchOptions options;
  options.batch_sizes = {2, 5};
  options.taus = {0.0, 5.0};
  options.warmup = 0;
  options.reps = 1;
  const auto rows = eval::run_benchmark(*model, options);
  ASSERT_EQ(rows.size(), 2u * (3 + 2));
  EXPECT_EQ(rows[0].mode, "stage");
  EXPECT_EQ(rows[2].stage, 2);
  EXPECT_EQ(rows[2].reach, (std::vector<double>{0, 0, 1}));
  // tau = 0: every image runs every stage; tau = 5 > ln 10: every image stops at stage 0.
  EXPECT_EQ(rows[3].reach, (std::vector<double>{1, 1, 1}));
  EXPECT_EQ(rows[4].reach, (std::vector<double>{1, 0, 0}));
  EXPECT_EQ(rows[9].batch, 5);
  for (const auto& r : rows) EXPECT_GT(r.images_per_s, 0.0);
  const auto table = eval::bench_table(rows, eval::describe_run(c10::Device(c10::kCPU)));
  EXPECT_EQ(table.rows().size(), rows.size());
  EXPECT_EQ(table.columns().back(), "build");
  // Every row names the LibTorch it ran on, CUDA or cpu, and the build type.
  const auto info = eval::describe_run(c10::Device(c10::kCPU));
  const std::string torch_version = std::to_string(TORCH_VERSION_MAJOR) + "." +
                                    std::to_string(TORCH_VERSION_MINOR) + "." +
                                    std::to_string(TORCH_VERSION_PATCH);
  EXPECT_NE(info.build.find("LibTorch " + torch_version), std::string::npos) << info.build;
  EXPECT_NE(info.build.find(util::kBuildType), std::string::npos) << info.build;
  EXPECT_TRUE(info.build.find("CUDA ") != std::string::npos ||
              info.build.find(", cpu,") != std::string::npos)
      << info.build;
  EXPECT_EQ(info.build, util::build_summary());
}

}  // namespace thinkingvit::testing
