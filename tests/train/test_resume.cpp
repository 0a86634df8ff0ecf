// Runs that are killed, preempted or lose a rank: mid-epoch checkpoints, SIGKILL at random
// points and SIGTERM / SIGUSR1, resumed to the weights and metrics of an uninterrupted run, on
// one process and on two Gloo processes.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "../test_util.h"
#include "thinkingvit/io/safetensors.h"

namespace thinkingvit::testing {

namespace {

namespace fs = std::filesystem;

// 48 images in batches of 4: 12 batches an epoch, 24 in the run, a checkpoint every 3 steps.
// Every source of randomness is on: mixup / cutmix, drop path, stochastic stage sampling,
// augmentation with workers.
constexpr int64_t kBatches = 24, kEverySteps = 3;

void write_config(const TempDir& dir) {
  std::ofstream(dir.file("tiny.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 12\n  head_dim: 4\n"
         "  depth: 2\n  stages: [1, 2]\n  drop_path_rate: 0.1\n"
         "data:\n  dataset: synthetic\n  synthetic_size: 48\n  batch_size: 4\n"
         "  eval_batch_size: 16\n  num_workers: 2\n"
         "augment:\n  train:\n    size: 8\n  eval:\n    size: 8\n    crop_pct: 1.0\n"
         "  mix:\n    mixup_alpha: 0.8\n    cutmix_alpha: 1.0\n"
         "optimizer:\n  lr: 1.0e-3\n  lr_base_batch: 4\n"
         "schedule:\n  epochs: 2\n  warmup_epochs: 0.5\n  cooldown_epochs: 0\n  per_step: true\n"
         "sampling:\n  mode: stochastic\n"
         "ema:\n  decay: 0.9\n"
         "checkpoint:\n  every_steps: 3\n  keep_last: 2\n"
         "distributed:\n  timeout_s: 30\n"
         "run:\n  threads: 1\n  log_every_steps: 1\n";
}

// `thinkingvit train` on one process, or two through the launcher.
std::string train_cmd(const TempDir& dir, int processes, const std::string& run,
                      const std::string& env = "", const std::string& flags = "") {
  const std::string bin = std::string(THINKINGVIT_BIN) + " train --config " +
                          dir.file("tiny.yaml") + " --output-dir " + dir.file(run) + " " + flags;
  const std::string log = " >> " + dir.file(run + ".log") + " 2>&1";
  if (processes == 1) return env + " " + bin + log;
  return env + " bash " + launcher_script() + " " + std::to_string(processes) + " " + bin +
         " --set data.batch_size=2" + log;
}

// metrics.jsonl without its timings: every line's kind, position, step and losses.
std::vector<std::string> metrics_without_timings(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    for (const char* timing : {"images_per_s", "data_wait_share"}) j.erase(timing);
    out.push_back(j.dump());
  }
  return out;
}

void expect_same_weights(const std::string& a_dir, const std::string& b_dir) {
  for (const char* file : {"model.safetensors", "ema.safetensors"}) {
    const auto a = io::read_safetensors(a_dir + "/" + file).tensors;
    const auto b = io::read_safetensors(b_dir + "/" + file).tensors;
    ASSERT_EQ(a.size(), b.size()) << file;
    for (const auto& [name, t] : a) {
      EXPECT_TRUE(torch::equal(t, b.at(name))) << file << " " << name << " differs";
    }
  }
}

// Two ranks started by hand rather than by the launcher (which would stop the peer itself), with
// THINKINGVIT_KILL_AT=kill_at: each rank's exit status, its stderr in OUT.err0 / OUT.err1, and
// how long the pair took.
struct TwoRanks {
  int shell = -1;          // the shell's own status (0 when both were waited for)
  int code[2] = {-1, -1};  // each rank's
  double seconds = 0;
};

TwoRanks run_two_ranks(const TempDir& dir, const std::string& out, const std::string& kill_at,
                       const std::string& flags = "") {
  const std::string common = "WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                             std::to_string(free_port()) + " THINKINGVIT_KILL_AT=" + kill_at + " ";
  auto rank_cmd = [&](int r) {
    return "RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r) + " " + common +
           THINKINGVIT_BIN + " train --config " + dir.file("tiny.yaml") + " --output-dir " + out +
           " --set data.batch_size=2" + flags + " > /dev/null 2> " + out + ".err" +
           std::to_string(r);
  };
  TwoRanks result;
  const auto start = std::chrono::steady_clock::now();
  result.shell =
      run_shell("(" + rank_cmd(0) + " & a=$!; " + rank_cmd(1) +
                " & b=$!; wait $a; ra=$?; wait $b; rb=$?; echo $ra $rb > " + out + ".codes)")
          .code;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ifstream codes(out + ".codes");
  codes >> result.code[0] >> result.code[1];
  return result;
}

std::string last_checkpoint(const std::string& run) {
  std::ifstream in(run + "/checkpoints/LAST");
  std::string name;
  in >> name;
  return name;
}

// Five kill points in increasing global batches past the first checkpoint, one of them halfway
// through writing a checkpoint, the others mid-step or after a step.
std::vector<std::string> kill_points(uint64_t seed, int processes) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> writes;
  for (int64_t b = 2 * kEverySteps; b < kBatches; b += kEverySteps) writes.push_back(b);
  const int64_t write_at = writes[rng() % writes.size()];
  std::set<int64_t> others;
  while (others.size() < 4) {
    const int64_t b = kEverySteps + 1 + static_cast<int64_t>(rng() % (kBatches - kEverySteps - 1));
    if (b != write_at) others.insert(b);
  }
  std::vector<std::pair<int64_t, std::string>> points = {{write_at, "checkpoint"}};
  for (const auto b : others) points.emplace_back(b, rng() % 2 ? "forward" : "batch");
  std::sort(points.begin(), points.end());
  std::vector<std::string> specs;
  for (const auto& [b, point] : points) {
    // Rank 0 alone writes checkpoints; the other kills hit either rank.
    const auto rank = point == "checkpoint" ? 0 : rng() % processes;
    specs.push_back(point + ":" + std::to_string(b) +
                    (processes > 1 ? ":" + std::to_string(rank) : ""));
  }
  return specs;
}

void killed_five_times_equals_uninterrupted(int processes) {
  TempDir dir;
  write_config(dir);
  ASSERT_EQ(run_shell(train_cmd(dir, processes, "whole")).code, 0) << slurp(dir.file("whole.log"));
  const uint64_t seed = std::random_device{}();
  const auto specs = kill_points(seed, processes);
  std::string plan;
  for (const auto& s : specs) plan += s + " ";
  SCOPED_TRACE("seed " + std::to_string(seed) + ", kill points " + plan);
  for (size_t k = 0; k < specs.size(); ++k) {
    const auto e = run_shell(train_cmd(dir, processes, "parts", "THINKINGVIT_KILL_AT=" + specs[k],
                                       k == 0 ? "" : "--resume"));
    // One process dies by SIGKILL; its peer (two processes) exits with an error.
    if (processes == 1) {
      ASSERT_TRUE(e.killed_by(SIGKILL))
          << specs[k] << ": exit " << e.code << " signal " << e.signal << "\n"
          << slurp(dir.file("parts.log"));
    } else {
      ASSERT_NE(e.code, 0) << specs[k] << "\n" << slurp(dir.file("parts.log"));
    }
    ASSERT_TRUE(fs::exists(dir.file("parts/checkpoints/LAST"))) << specs[k];
  }
  ASSERT_EQ(run_shell(train_cmd(dir, processes, "parts", "", "--resume")).code, 0)
      << slurp(dir.file("parts.log"));
  const auto log = slurp(dir.file("parts.log"));
  EXPECT_NE(log.find("_batch_"), std::string::npos) << "no run resumed mid-epoch:\n" << log;
  // The same weights and EMA, bit for bit; every metrics line once, with the same losses.
  expect_same_weights(dir.file("whole/checkpoints/epoch_0001"),
                      dir.file("parts/checkpoints/epoch_0001"));
  const auto whole = metrics_without_timings(dir.file("whole/metrics.jsonl"));
  EXPECT_EQ(static_cast<int64_t>(whole.size()), kBatches + 2);
  EXPECT_EQ(metrics_without_timings(dir.file("parts/metrics.jsonl")), whole);
  // keep_last 2 counts mid-epoch folders too, and no temp folder is left.
  std::set<std::string> left;
  for (const auto& entry : fs::directory_iterator(dir.file("parts/checkpoints")))
    left.insert(entry.path().filename().string());
  EXPECT_EQ(left, (std::set<std::string>{"LAST", "epoch_0001", "epoch_0001_batch_000009"}));
}

}  // namespace

TEST(Resume, KilledFiveTimesAtRandomPointsEqualsUninterrupted) {
  killed_five_times_equals_uninterrupted(1);
}

TEST(Resume, TwoGlooProcessesKilledFiveTimesEqualUninterrupted) {
  killed_five_times_equals_uninterrupted(2);
}

// SIGTERM / SIGUSR1 (as SLURM sends them): the step ends, a checkpoint is written (mid-epoch,
// or the epoch's own on its last batch) and the run exits with 75; --resume continues exactly.
TEST(Resume, SigtermAndSigusr1WriteACheckpointAndExitWith75) {
  TempDir dir;
  write_config(dir);
  ASSERT_EQ(run_shell(train_cmd(dir, 1, "whole")).code, 0) << slurp(dir.file("whole.log"));
  const std::vector<std::pair<std::string, std::string>> stops = {
      {"sigterm:7", "epoch_0000_batch_000007"}, {"sigusr1:12", "epoch_0000"}};
  for (size_t k = 0; k < stops.size(); ++k) {
    const auto e = run_shell(train_cmd(dir, 1, "parts", "THINKINGVIT_KILL_AT=" + stops[k].first,
                                       k == 0 ? "" : "--resume"));
    ASSERT_EQ(e.code, 75) << stops[k].first << "\n" << slurp(dir.file("parts.log"));
    EXPECT_EQ(last_checkpoint(dir.file("parts")), stops[k].second);
    const auto log = slurp(dir.file("parts/train.log"));
    EXPECT_NE(log.find("stopped by a signal; checkpoint '" + dir.file("parts/checkpoints/") +
                       stops[k].second + "'"),
              std::string::npos)
        << log;
  }
  ASSERT_EQ(run_shell(train_cmd(dir, 1, "parts", "", "--resume")).code, 0)
      << slurp(dir.file("parts.log"));
  expect_same_weights(dir.file("whole/checkpoints/epoch_0001"),
                      dir.file("parts/checkpoints/epoch_0001"));
  EXPECT_EQ(metrics_without_timings(dir.file("parts/metrics.jsonl")),
            metrics_without_timings(dir.file("whole/metrics.jsonl")));
}

// The launcher passes SIGTERM on: both processes stop after the same step and write one
// checkpoint, and the job's status is 75.
TEST(Resume, ALaunchedJobStopsTogetherOnSigterm) {
  TempDir dir;
  write_config(dir);
  const std::string run = dir.file("run");
  const std::string cmd = "(" + train_cmd(dir, 2, "run", "", "--set schedule.epochs=200") +
                          " & pid=$!; for i in $(seq 1 1200); do grep -q '\"type\":\"step\"' " +
                          run + "/metrics.jsonl 2>/dev/null && break; sleep 0.05; done; " +
                          "kill -TERM $pid; wait $pid)";
  const auto e = run_shell(cmd);
  const auto log = slurp(dir.file("run.log"));
  ASSERT_EQ(e.code, 75) << log;
  EXPECT_EQ(log.find("failed"), std::string::npos) << log;
  const auto name = last_checkpoint(run);
  EXPECT_EQ(name.rfind("epoch_", 0), 0u) << name;
  EXPECT_TRUE(fs::exists(run + "/checkpoints/" + name + "/model.safetensors"));
  // Both ranks stopped on request (rank 1 prints its warnings prefixed).
  EXPECT_NE(log.find("[rank 1] "), std::string::npos) << log;
}

// SIGTERM on one rank of two: the signal rides on the step flags read back a step late, or on
// the epoch's sums, so both ranks stop after the same step with 75 and one checkpoint, and
// --resume ends where the uninterrupted run ends. After batch 8 the flags arrive while batch 9's
// regular checkpoint settles: the run stops there (not after another step and a second
// checkpoint). After batch 12, the epoch's last, the epoch's sums carry it: the epoch's own
// checkpoint and no step of the next epoch.
TEST(Resume, ASignalOnOneRankStopsBothAfterTheSameStep) {
  TempDir dir;
  write_config(dir);
  ASSERT_EQ(run_shell(train_cmd(dir, 2, "whole")).code, 0) << slurp(dir.file("whole.log"));
  const std::vector<std::pair<std::string, std::string>> stops = {
      {"sigterm:8:1", "epoch_0000_batch_000009"}, {"sigterm:12:1", "epoch_0000"}};
  for (size_t k = 0; k < stops.size(); ++k) {
    const auto e = run_shell(train_cmd(dir, 2, "parts", "THINKINGVIT_KILL_AT=" + stops[k].first,
                                       k == 0 ? "" : "--resume"));
    const auto log = slurp(dir.file("parts.log"));
    ASSERT_EQ(e.code, 75) << stops[k].first << "\n" << log;
    EXPECT_EQ(last_checkpoint(dir.file("parts")), stops[k].second) << log;
    EXPECT_EQ(log.find("failed"), std::string::npos) << log;
  }
  EXPECT_FALSE(fs::exists(dir.file("parts/checkpoints/epoch_0000_batch_000010")));
  EXPECT_FALSE(fs::exists(dir.file("parts/checkpoints/epoch_0001_batch_000003")));
  // Rank 1 stopped on request too (its warnings are prefixed).
  EXPECT_NE(slurp(dir.file("parts.log")).find("[rank 1] "), std::string::npos);
  ASSERT_EQ(run_shell(train_cmd(dir, 2, "parts", "", "--resume")).code, 0)
      << slurp(dir.file("parts.log"));
  expect_same_weights(dir.file("whole/checkpoints/epoch_0001"),
                      dir.file("parts/checkpoints/epoch_0001"));
}

// A NaN loss on one rank of two (its batch poisoned): the all-reduced step flags tell the other
// rank, so both stop with one error line at the same step, neither waits for its peer until the
// timeout, and the last checkpoint holds finite weights. With gradient accumulation the flags
// travel at optimizer steps and cover the micro-steps before.
TEST(Resume, ANonFiniteLossOnOneRankStopsBothRanksAtTheSameStep) {
  struct Case {
    std::string poison, flags, rank0, rank1, checkpoint;
  };
  const std::vector<Case> cases = {
      {"nan:5:1", "", "non-finite loss on 1 of 2 ranks by epoch 0 step 4;",
       "nan at epoch 0 step 4 stage ", "epoch_0000_batch_000003"},
      {"nan:7:1", " --set optimizer.accum_steps=2",
       "non-finite loss on 1 of 2 ranks by epoch 0 step 7;", "nan at epoch 0 step 6 stage ",
       "epoch_0000_batch_000006"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.poison + c.flags);
    TempDir dir;
    write_config(dir);
    const std::string out = dir.file("run");
    const auto ranks = run_two_ranks(dir, out, c.poison, c.flags);
    ASSERT_EQ(ranks.shell, 0);
    EXPECT_EQ(ranks.code[0], 1);
    EXPECT_EQ(ranks.code[1], 1);
    EXPECT_LT(ranks.seconds, 25.0);  // distributed.timeout_s is 30
    const std::string expected[2] = {c.rank0, c.rank1};
    for (int r = 0; r < 2; ++r) {
      const auto err = slurp(out + ".err" + std::to_string(r));
      const auto first = err.find("error: ");
      ASSERT_NE(first, std::string::npos) << err;
      EXPECT_NE(err.find(expected[r], first), std::string::npos) << "rank " << r << ": " << err;
      EXPECT_EQ(err.find("error:", first + 1), std::string::npos) << "more than one error: " << err;
      EXPECT_EQ(err.find("failed"), std::string::npos) << err;
    }
    const auto err1 = slurp(out + ".err1");  // "non-finite loss nan" or "-nan"
    EXPECT_NE(err1.find("error: non-finite loss "), std::string::npos) << err1;
    EXPECT_NE(err1.find(" on rank 1; stopping"), std::string::npos) << err1;
    ASSERT_EQ(last_checkpoint(out), c.checkpoint);
    const auto weights =
        io::read_safetensors(out + "/checkpoints/" + c.checkpoint + "/model.safetensors").tensors;
    for (const auto& [name, t] : weights) EXPECT_TRUE(t.isfinite().all().item<bool>()) << name;
  }
}

// A rank killed mid-step: its peer exits on its own with one error line, well within
// distributed.timeout_s (30 s), whichever rank dies.
TEST(Resume, ARankKilledMidStepEndsItsPeerWithOneLine) {
  TempDir dir;
  write_config(dir);
  for (const int victim : {1, 0}) {
    const int survivor = 1 - victim;
    const std::string out = dir.file("run" + std::to_string(victim));
    const auto ranks = run_two_ranks(dir, out, "forward:3:" + std::to_string(victim));
    ASSERT_EQ(ranks.shell, 0);
    EXPECT_EQ(ranks.code[victim], 128 + SIGKILL);
    EXPECT_EQ(ranks.code[survivor], 1);
    EXPECT_LT(ranks.seconds, 25.0);
    const auto err = slurp(out + ".err" + std::to_string(survivor));
    const auto first = err.find("error: distributed ");
    EXPECT_NE(first, std::string::npos) << err;
    EXPECT_NE(err.find("failed on rank " + std::to_string(survivor) + " of 2 (gloo)"),
              std::string::npos)
        << err;
    EXPECT_EQ(err.find("error:", first + 1), std::string::npos) << "more than one error: " << err;
    EXPECT_EQ(err.find("frame #"), std::string::npos) << "a backtrace: " << err;
  }
}

}  // namespace thinkingvit::testing
