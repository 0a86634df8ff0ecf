#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>
#include "../test_util.h"

#include "thinkingvit/eval/benchmark.h"
#include "thinkingvit/eval/sweep.h"
#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/train/step_bench.h"
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

// Measured over formula, paired per round: each round's formula time over that round's time.
TEST(Benchmark, MeasuredOverFormulaPairsTheRounds) {
  const auto timing = [](std::vector<double> ms) {
    eval::Timing t;
    t.round_ms = std::move(ms);
    return t;
  };
  // Round 2 is a slow round for everything: paired, it gives the same ratio as the others.
  const std::vector<eval::Timing> stages = {timing({10, 10, 20}), timing({40, 40, 80})};
  // Rounds: formula 10 + 0.5 * 40 = 30 ms against 32 and 33 ms, then 60 against 60.
  const auto elastic = timing({32, 33, 60});
  EXPECT_DOUBLE_EQ(eval::measured_over_formula({1.0, 0.5}, stages, elastic), 30.0 / 32);
  EXPECT_DOUBLE_EQ(eval::measured_over_formula({1.0, 0.0}, stages, timing({5, 20, 20})), 1.0);
}

// round_ms[r] is every function's call in round r: in round 1 each call sleeps 30 ms, in the
// others none, whatever the rotated order within the round.
TEST(Benchmark, RoundTimesKeepTheirRound) {
  int round = -1;  // the warm-up round is -1
  std::vector<std::function<void()>> fns;
  for (int i = 0; i < 3; ++i) {
    fns.push_back([&round] {
      if (round == 1) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    });
  }
  const auto timings = eval::time_interleaved(fns, /*warmup=*/1, /*reps=*/3, c10::Device(c10::kCPU),
                                              [&](int done) { round = done; });
  // The callback runs after each round: before the first timed round `round` is still -1.
  for (const auto& t : timings) {
    ASSERT_EQ(t.round_ms.size(), 3u);
    EXPECT_LT(t.round_ms[0], 30.0);
    EXPECT_GE(t.round_ms[1], 30.0);
    EXPECT_LT(t.round_ms[2], 30.0);
  }
  eval::Timing empty;
  expect_error([&] { eval::measured_over_formula({1.0}, {timings[0]}, empty); },
               {"at least one round"});
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
  options.warmup = 0;
  options.reps = 2;
  const train::TrainConfig recipe;
  const auto rows =
      eval::run_benchmark(*model, options, {}, train::training_step_rows(*model, recipe));
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

namespace thinkingvit::testing {

// Each row's work is the MAC count of what it ran: every stage reached (with its recycling
// projection), three times over for a training step; TFLOP/s follows from the images/s.
TEST(Benchmark, RowsCarryTheirMacsAndThroughput) {
  auto model = tiny_model();
  const auto& o = model->model_options();
  eval::BenchOptions options;
  options.batch_sizes = {3};
  options.taus = {0.0};
  options.peak = true;
  options.warmup = 0;
  options.reps = 1;
  const train::TrainConfig recipe;
  const auto rows =
      eval::run_benchmark(*model, options, {}, train::training_step_rows(*model, recipe));
  ASSERT_EQ(rows.size(), 3u + 1 + 1);
  std::vector<double> stage(3);
  for (int64_t s = 0; s < 3; ++s) {
    const auto m = o.stage_macs(s);
    stage[s] = static_cast<double>(m.total(models::MacConvention::kReleased) + m.uncounted()) / 1e9;
    EXPECT_DOUBLE_EQ(rows[s].gmacs, stage[s]) << s;
  }
  EXPECT_GT(stage[1], stage[0]);
  EXPECT_NEAR(rows[3].gmacs, stage[0] + stage[1] + stage[2], 1e-12);        // tau = 0: all stages
  EXPECT_NEAR(rows[4].gmacs, 3 * (stage[0] + stage[1] + stage[2]), 1e-12);  // training step
  for (const auto& r : rows) {
    EXPECT_NEAR(r.tflops, 2 * r.gmacs * r.images_per_s / 1000, 1e-9 * r.tflops) << r.label();
    EXPECT_GT(r.peak_tflops, 0.0);
    EXPECT_TRUE(r.profile.ops.empty());
  }
  EXPECT_EQ(rows[0].label(), "stage0_b3_fp32");
  EXPECT_EQ(rows[3].label(), "elastic_tau0_b3_fp32");
  EXPECT_EQ(rows[4].label(), "train_b3_fp32");
  const auto table = eval::bench_table(rows, eval::describe_run(c10::Device(c10::kCPU)));
  const auto& columns = table.columns();
  const auto pct = std::find(columns.begin(), columns.end(), "peak_pct") - columns.begin();
  ASSERT_LT(pct, static_cast<long>(columns.size()));
  EXPECT_NEAR(std::get<double>(table.rows()[0][pct]), 100 * rows[0].tflops / rows[0].peak_tflops,
              1e-9);
}

// Elastic rows run a stream of batches, regrouped (and, with per_batch, batch by batch as well):
// the same decisions either way, the formula from the stage rows of the same case.
TEST(Benchmark, ElasticRowsRegroupAStreamAndCarryTheFormula) {
  auto model = tiny_model();
  eval::BenchOptions options;
  options.batch_sizes = {4};
  options.stop_shares = {0.5};
  options.stream = 6;
  options.per_batch = true;
  options.warmup = 0;
  options.reps = 1;
  const auto rows = eval::run_benchmark(*model, options);
  ASSERT_EQ(rows.size(), 3u + 2);
  const auto& regrouped = rows[3];
  const auto& per_batch = rows[4];
  EXPECT_EQ(regrouped.mode, "elastic");
  EXPECT_EQ(per_batch.mode, "elastic_per_batch");
  EXPECT_EQ(per_batch.label().rfind("elastic_per_batch_tau", 0), 0u) << per_batch.label();
  EXPECT_EQ(regrouped.tau, per_batch.tau);
  EXPECT_EQ(regrouped.reach, per_batch.reach);
  // Six batches cycled from four: batches 0 and 1 twice, so the stream's share is 0.5 only if
  // those two stop half their images; the reach is what ran, counted over 24 images.
  EXPECT_EQ(regrouped.reach[0], 1.0);
  EXPECT_NEAR(regrouped.reach[1] * 24, std::round(regrouped.reach[1] * 24), 1e-9);
  std::vector<double> stage_ips;
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(rows[s].formula_images_per_s, 0.0);
    // A stage row's call runs the whole stream: 24 images.
    EXPECT_NEAR(rows[s].images_per_s, 24 * 1000 / rows[s].timing.median_ms,
                1e-9 * rows[s].images_per_s);
    stage_ips.push_back(rows[s].images_per_s);
  }
  for (const auto* r : {&regrouped, &per_batch}) {
    EXPECT_DOUBLE_EQ(r->formula_images_per_s, eval::predicted_throughput(r->reach, stage_ips));
  }
  const auto table = eval::bench_table(rows, eval::describe_run(c10::Device(c10::kCPU)));
  const auto& columns = table.columns();
  const auto ratio =
      std::find(columns.begin(), columns.end(), "measured_over_formula") - columns.begin();
  ASSERT_LT(ratio, static_cast<long>(columns.size()));
  EXPECT_DOUBLE_EQ(std::get<double>(table.rows()[3][ratio]), regrouped.measured_over_formula);
  // One round (reps 1): the paired ratio is the quotient of the two rates.
  EXPECT_NEAR(regrouped.measured_over_formula,
              regrouped.images_per_s / regrouped.formula_images_per_s,
              1e-9 * regrouped.measured_over_formula);
  EXPECT_EQ(std::get<std::string>(table.rows()[0][ratio]), "-");
  // Regrouped, stages 1 and 2 run full batches of four: fewer forwards (linears) per call than
  // batch by batch, where each batch's few undecided images run alone.
  options.profile_calls = 1;
  const auto profiled = [&] {
    KernelPolicyScope aten(models::cpu::KernelPolicy::kAten);  // at::linear, counted below
    return eval::run_benchmark(*model, options);
  }();
  const auto linears = [](const eval::BenchRow& row) {
    for (const auto& op : row.profile.ops)
      if (op.name == "aten::linear") return op.calls;
    return -1.0;
  };
  EXPECT_LT(linears(profiled[3]), linears(profiled[4]));
  options.profile_calls = 0;
  options.stream = 0;
  expect_error([&] { eval::run_benchmark(*model, options); }, {"stream", "> 0", "found 0"});
}

// The GEMM peak is 2 n³ over a matmul's time: a positive, finite rate in either precision.
TEST(Benchmark, TheGemmPeakIsARate) {
  for (const auto precision : {eval::Precision::kFp32, eval::Precision::kBf16}) {
    const double peak = eval::measure_gemm_peak(c10::Device(c10::kCPU), precision, 1);
    EXPECT_TRUE(std::isfinite(peak) && peak > 0) << peak;
  }
}

// Self time is an operator's duration less that of the operators it called: at::linear calls
// addmm, so linear's total includes addmm's and its self time does not.
TEST(Profile, SelfTimeExcludesNestedOperators) {
  const auto x = torch::randn({64, 128}), w = torch::randn({256, 128}), b = torch::randn({256});
  const auto profile = eval::profile_calls([&] { at::linear(x, w, b); }, 3, c10::Device(c10::kCPU));
  auto find = [&](const std::string& name) -> const eval::OpStat* {
    for (const auto& op : profile.ops)
      if (op.name == name) return &op;
    return nullptr;
  };
  const auto* linear = find("aten::linear");
  const auto* addmm = find("aten::addmm");
  ASSERT_TRUE(linear && addmm);
  EXPECT_DOUBLE_EQ(linear->calls, 1.0);  // per profiled call
  EXPECT_DOUBLE_EQ(addmm->calls, 1.0);
  EXPECT_GE(linear->total_ms, addmm->total_ms);
  EXPECT_LE(linear->self_ms, linear->total_ms - addmm->total_ms + 1e-9);
  // Every operator ran inside the one top-level linear: the self times add up to its total.
  double self = 0;
  for (const auto& op : profile.ops) {
    EXPECT_EQ(op.where, "cpu");
    self += op.self_ms;
  }
  EXPECT_NEAR(self, linear->total_ms, 1e-6 * linear->total_ms);
  EXPECT_LE(self, profile.wall_ms * 1.05 + 1e-3);
  expect_error([] { eval::profile_calls([] {}, 0, c10::Device(c10::kCPU)); }, {"calls", "0"});
}

// A profiled benchmark: per row, the model's operators with their call counts per call (a
// tiny ViT of depth 2 runs four linears per block and the head), a Chrome trace per row, and a
// table of the top operators.
TEST(Profile, BenchmarkRowsCarryTheirOperators) {
  TempDir dir;
  auto model = tiny_model();
  eval::BenchOptions options;
  options.batch_sizes = {2};
  options.warmup = 0;
  options.reps = 1;
  options.profile_calls = 2;
  options.trace_dir = dir.path().string();
  const auto rows = [&] {
    KernelPolicyScope aten(models::cpu::KernelPolicy::kAten);  // at::linear, counted below
    return eval::run_benchmark(*model, options);
  }();
  ASSERT_EQ(rows.size(), 3u);
  for (const auto& row : rows) {
    double linears = -1;
    for (const auto& op : row.profile.ops)
      if (op.name == "aten::linear") linears = op.calls;
    // Stage 0: 2 blocks x 4 + head; later stages add the recycling projection; once per batch
    // of the row's stream.
    EXPECT_DOUBLE_EQ(linears, (row.stage == 0 ? 9.0 : 10.0) * options.stream) << row.label();
    EXPECT_GT(row.profile.wall_ms, 0.0);
    const auto trace = dir.file(row.label() + ".trace.json");
    ASSERT_TRUE(std::filesystem::exists(trace)) << trace;
    EXPECT_NE(slurp(trace).find("aten::linear"), std::string::npos);
  }
  std::vector<std::pair<std::string, eval::Profile>> profiles;
  for (const auto& row : rows) profiles.emplace_back(row.label(), row.profile);
  const auto top = eval::profile_table(profiles, 2);
  EXPECT_EQ(top.rows().size(), 3u * 2);
  EXPECT_EQ(std::get<std::string>(top.rows()[0][0]), "stage0_b2_fp32");
  const auto all = eval::profile_table(profiles, 0);
  EXPECT_EQ(all.rows().size(),
            rows[0].profile.ops.size() + rows[1].profile.ops.size() + rows[2].profile.ops.size());
  double pct = 0;
  for (const auto& r : all.rows())
    if (std::get<std::string>(r[0]) == "stage1_b2_fp32") pct += std::get<double>(r[6]);
  EXPECT_NEAR(pct, 100.0, 1e-6);
}

}  // namespace thinkingvit::testing
