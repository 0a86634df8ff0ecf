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

// The model is used in eval mode under no-grad; `progress` receives one line per row.
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
