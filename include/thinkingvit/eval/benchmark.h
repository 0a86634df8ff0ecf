#pragma once
// Throughput of each stage alone and of elastic inference at given thresholds, on synthetic
// input: warm-up, repetitions, median and spread, with the run's settings in every row.

#include <c10/core/Device.h>

#include <functional>
#include <string>
#include <vector>

#include "thinkingvit/eval/table.h"
#include "thinkingvit/models/elastic_model.h"

namespace thinkingvit::eval {

enum class Precision { kFp32, kBf16 };
Precision parse_precision(const std::string& text, const std::string& what);
std::string to_string(Precision precision);

struct BenchOptions {
  std::vector<int64_t> batch_sizes = {64};
  std::vector<Precision> precisions = {Precision::kFp32};
  std::vector<double> taus;  // elastic rows; none: stages only
  // Elastic rows whose threshold lets this share of the batch stop at stage 0 (from the stage-0
  // entropies of the benchmark's own images; see tau_for_share).
  std::vector<double> stop_shares;
  models::EntropyRule rule = models::EntropyRule::kTop10;
  c10::Device device = c10::Device(c10::kCPU);
  int warmup = 2;
  int reps = 10;
  uint64_t seed = 0;
  // Also a training step: every stage (recycling), the mean cross-entropy, backward and AdamW
  // (the weights are restored afterwards).
  bool train = false;
};

// Milliseconds per call of one timed configuration.
struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
};

struct BenchRow {
  std::string mode;    // "stage" (one stage alone), "elastic" or "train"
  int64_t stage = -1;  // for "stage" rows
  double tau = 0;      // for "elastic" rows
  int64_t batch = 0;
  Precision precision = Precision::kFp32;
  Timing timing;
  double images_per_s = 0;
  std::vector<double> reach;  // share of images each stage ran on
};

// Calls fn `warmup` times, then times `reps` calls (synchronising `device` around each).
Timing time_calls(const std::function<void()>& fn, int warmup, int reps, const c10::Device& device);

// Times several configurations against each other: `warmup` untimed rounds, then `reps` rounds
// that each time every function once, the order rotated by one per round (round r starts with
// function r mod n). A drift in the machine's speed (clock, other load) then spreads over every
// configuration instead of favouring the ones timed last. One Timing per function;
// `round_done` (when given) hears of each finished round.
std::vector<Timing> time_interleaved(const std::vector<std::function<void()>>& fns, int warmup,
                                     int reps, const c10::Device& device,
                                     const std::function<void(int)>& round_done = {});

// The threshold at which round(share * n) of the n `entropy` values lie strictly below it
// (halfway between neighbours; below the smallest for none, above the largest for all).
double tau_for_share(const at::Tensor& entropy, double share);

// Stage and elastic rows are timed interleaved (time_interleaved); the training-step row after
// them. The model is used in eval mode under no-grad; `progress` receives one line per row.
std::vector<BenchRow> run_benchmark(models::ElasticModel& model, const BenchOptions& options,
                                    const std::function<void(const std::string&)>& progress = {});

// Where the numbers came from, printed in every row.
struct RunInfo {
  std::string device;  // e.g. "cpu: AMD EPYC (2 cores)"
  int threads = 1;
  std::string build;  // util::build_summary(): thinkingvit, LibTorch, CUDA or cpu, build type
};
RunInfo describe_run(const c10::Device& device);

Table bench_table(const std::vector<BenchRow>& rows, const RunInfo& info);

}  // namespace thinkingvit::eval
