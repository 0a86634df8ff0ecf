#pragma once
// Throughput of each stage alone and of elastic inference at given thresholds, on synthetic
// input: warm-up, repetitions, median and spread, with the run's settings in every row.

#include <c10/core/Device.h>

#include <functional>
#include <string>
#include <vector>

#include "thinkingvit/eval/profile.h"
#include "thinkingvit/eval/table.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/util/precision.h"

namespace thinkingvit::eval {

using util::parse_precision;
using util::Precision;
using util::to_string;

struct BenchOptions {
  std::vector<int64_t> batch_sizes = {64};
  std::vector<Precision> precisions = {Precision::kFp32};
  std::vector<double> taus;  // elastic rows; none: stages only
  // Elastic rows whose threshold lets this share of the batch stop at stage 0 (from the stage-0
  // entropies of the benchmark's own images; see tau_for_share).
  std::vector<double> stop_shares;
  // Batches in each row's call (`stream`, cycled from min(4, stream) distinct random batches):
  // elastic rows push them through one set of queues, so undecided images of one batch fill
  // the next stage's batches together with those of the others; stage rows run each alone.
  int stream = 16;
  // Also elastic rows without regrouping (mode "elastic_per_batch"), timed with the others.
  bool per_batch = false;
  models::EntropyRule rule = models::EntropyRule::kTop10;
  c10::Device device = c10::Device(c10::kCPU);
  int warmup = 2;
  int reps = 10;
  uint64_t seed = 0;
  // When > 0: after the timing, each row's call is run this many more times under the profiler
  // (BenchRow::profile); with `trace_dir` set, each row's Chrome trace is written there as
  // "<row label>.trace.json".
  int profile_calls = 0;
  std::string trace_dir;
  // Also measure the device's dense matrix-multiply peak at each precision (measure_gemm_peak),
  // so that every row reports the share of it that the model reaches.
  bool peak = false;
  // Stage and elastic rows replay CUDA graphs (ElasticModel::set_cuda_graph_sizes with
  // default_cuda_graph_sizes(batch)); CUDA devices only.
  bool cuda_graphs = false;
};

// Milliseconds per call of one timed configuration.
struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  std::vector<double> round_ms;  // every timed call, in round order
};

struct BenchRow {
  // "stage" (one stage alone), "elastic" (regrouped), "elastic_per_batch", or an ExtraCall's
  // ("train").
  std::string mode;
  int64_t stage = -1;  // for "stage" rows
  double tau = 0;      // for "elastic" rows
  int64_t batch = 0;
  Precision precision = Precision::kFp32;
  Timing timing;
  double images_per_s = 0;
  // Elastic rows: the released formula 1 / sum_i (reach_i / T_i) from the stage rows' rates T_i
  // of the same batch and precision, timed in the same rounds.
  double formula_images_per_s = 0;
  // Elastic rows: eval::measured_over_formula of the row and the stage rows (paired per round;
  // close to images_per_s / formula_images_per_s).
  double measured_over_formula = 0;
  std::vector<double> reach;  // share of images each stage ran on
  // Multiply-accumulates per image that the row does: every stage an image ran (its matmuls,
  // convolution and recycling projection; LayerNorm, softmax and GELU not counted), times the
  // ExtraCall's factor (3 for a training step: backward ≈ twice the forward).
  double gmacs = 0;
  double tflops = 0;       // achieved: 2 · gmacs · images_per_s / 1000
  double peak_tflops = 0;  // the device's GEMM peak at this precision, 0 when not measured
  Profile profile;         // filled when BenchOptions::profile_calls > 0

  // "stage0_b16_fp32", "elastic_tau0.5_b16_bf16", "elastic_per_batch_tau0.5_b16_fp32",
  // "train_b16_fp32".
  std::string label() const;
  // tflops as a percentage of peak_tflops; 0 when the peak was not measured.
  double peak_pct() const { return peak_tflops > 0 ? 100.0 * tflops / peak_tflops : 0.0; }
  bool elastic() const { return mode.rfind("elastic", 0) == 0; }
};

// The device's dense matrix-multiply throughput at `precision` in TFLOP/s: square matmuls of
// operands in that type (bf16 with float accumulation), sized so that one call takes tens of
// milliseconds (at most 8192 on a GPU, 4096 on a CPU), median of `reps` calls, with the current
// intra-op threads; on a CPU the faster of ATen's matmul and oneDNN's.
double measure_gemm_peak(const c10::Device& device, Precision precision, int reps = 5);

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

// Measured over predicted for an elastic call timed in the same rounds as every stage alone
// (time_interleaved; stage s's timing is stage_timings[s]): the median over the rounds of the
// formula's time, sum over s of reach[s] times stage s's time in the round, over the elastic
// call's time in that round. Paired within a round, so that a drift in the machine's speed
// between rounds cancels.
double measured_over_formula(const std::vector<double>& reach,
                             const std::vector<Timing>& stage_timings, const Timing& elastic);

// How elastic inference runs a stream of batches.
enum class ElasticMode {
  // ElasticQueues shared by the whole stream, of the first batch's size
  // (forward_elastic_regrouped):
  // every stage runs full batches but for its last.
  kRegrouped,
  // forward_elastic on each batch alone: later stages run on that batch's undecided images.
  kPerBatch,
};
// "regrouped" / "per_batch".
std::string to_string(ElasticMode mode);

// Every stage alone and elastic inference at every threshold, over the same stream of batches:
// the calls that bench and sweep time against each other (time_interleaved) and profile. A
// tensor may appear in the stream more than once (a short stream cycled). Stage s is fed its
// predecessor's tokens, computed here once per distinct batch, outside any timing. Use under
// no-grad; the calls refer to this object, which therefore stays where it was made.
class StageTauCalls {
 public:
  StageTauCalls(models::ElasticModel& model, std::vector<at::Tensor> batches,
                std::vector<double> taus, models::EntropyRule rule,
                std::vector<ElasticMode> modes = {ElasticMode::kRegrouped});
  StageTauCalls(const StageTauCalls&) = delete;
  StageTauCalls& operator=(const StageTauCalls&) = delete;

  // Stages 0 .. S-1, then for each mode one call per threshold; each runs over the stream.
  const std::vector<std::function<void()>>& calls() const { return calls_; }
  int64_t num_stages() const { return num_stages_; }
  // Images in the stream: what each call runs.
  int64_t images() const { return images_; }
  // Elastic call i (mode-major: mode i / thresholds, threshold i % thresholds): its mode and
  // threshold, and the share of the images that reached each stage in its last call.
  ElasticMode mode(size_t i) const { return modes_.at(i / taus_.size()); }
  double tau(size_t i) const { return taus_.at(i % taus_.size()); }
  const std::vector<double>& reach(size_t i) const { return reach_.at(i); }

 private:
  models::ElasticModel& model_;
  std::vector<at::Tensor> batches_;
  std::vector<double> taus_;
  models::EntropyRule rule_;
  std::vector<ElasticMode> modes_;
  int64_t num_stages_ = 0, images_ = 0;
  std::vector<std::vector<at::Tensor>> inputs_;  // per stage and batch: the recycled tokens
  std::vector<std::vector<double>> reach_;
  std::vector<std::function<void()>> calls_;
};

// The threshold at which round(share * n) of the n `entropy` values lie strictly below it
// (halfway between neighbours; below the smallest for none, above the largest for all).
double tau_for_share(const at::Tensor& entropy, double share);

// One configuration the benchmark times: its precision (autocast is on for bf16 while its rows
// run), batch size and one batch of its synthetic images (on the device).
struct BenchCase {
  Precision precision = Precision::kFp32;
  int64_t batch = 0;
  at::Tensor images;
};

// A row that a caller adds to every case, after its stage and elastic rows (bench --train adds
// train::training_step_rows). `call` is timed alone (time_calls) and profiled like the others;
// `reach` and `macs_factor` give the row's MACs. The calls of a case are dropped once its rows
// are done (what `call` holds goes with it).
struct ExtraCall {
  std::string mode;
  std::vector<double> reach;
  double macs_factor = 1;
  std::function<void()> call;
};
using ExtraCalls = std::function<std::vector<ExtraCall>(const BenchCase&)>;

// Stage and elastic rows are timed interleaved (time_interleaved); the rows of `extra` after
// them. The model is used in eval mode under no-grad; `progress` receives one line per row.
std::vector<BenchRow> run_benchmark(models::ElasticModel& model, const BenchOptions& options,
                                    const std::function<void(const std::string&)>& progress = {},
                                    const ExtraCalls& extra = {});

// Where the numbers came from, printed in every row.
struct RunInfo {
  std::string device;  // e.g. "cpu: AMD EPYC (2 cores)"
  int threads = 1;
  std::string build;  // util::build_summary(): thinkingvit, LibTorch, CUDA or cpu, build type
};
RunInfo describe_run(const c10::Device& device);

Table bench_table(const std::vector<BenchRow>& rows, const RunInfo& info);

}  // namespace thinkingvit::eval
