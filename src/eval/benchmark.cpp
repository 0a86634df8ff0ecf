#include "thinkingvit/eval/benchmark.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "thinkingvit/eval/sweep.h"
#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/models/elastic_queue.h"
#include "thinkingvit/models/entropy.h"
#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::eval {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Timing summarize(std::vector<double> ms) {
  Timing t;
  t.median_ms = median(ms);
  t.min_ms = *std::min_element(ms.begin(), ms.end());
  t.max_ms = *std::max_element(ms.begin(), ms.end());
  t.round_ms = std::move(ms);
  return t;
}

double time_once(const std::function<void()>& fn, const c10::Device& device) {
  compat::synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  fn();
  compat::synchronize(device);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

std::vector<Timing> time_interleaved(const std::vector<std::function<void()>>& fns, int warmup,
                                     int reps, const c10::Device& device,
                                     const std::function<void(int)>& round_done) {
  TVIT_CHECK(reps > 0, "benchmark: repetitions must be > 0, found ", reps);
  const size_t n = fns.size();
  for (int r = 0; r < warmup; ++r)
    for (const auto& fn : fns) fn();
  std::vector<std::vector<double>> ms(n);
  for (int r = 0; r < reps; ++r) {
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (static_cast<size_t>(r) + k) % n;
      ms[i].push_back(time_once(fns[i], device));
    }
    if (round_done) round_done(r + 1);
  }
  std::vector<Timing> out;
  for (auto& m : ms) out.push_back(summarize(std::move(m)));
  return out;
}

Timing time_calls(const std::function<void()>& fn, int warmup, int reps,
                  const c10::Device& device) {
  return time_interleaved({fn}, warmup, reps, device).front();
}

double measured_over_formula(const std::vector<double>& reach, const std::vector<Timing>& timings,
                             const Timing& elastic) {
  TVIT_CHECK(reach.size() <= timings.size() && !elastic.round_ms.empty(),
             "measured over formula: needs a timing per stage (", reach.size(), ", found ",
             timings.size(), ") and at least one round");
  for (size_t s = 0; s < reach.size(); ++s) {
    TVIT_CHECK(timings[s].round_ms.size() == elastic.round_ms.size(),
               "measured over formula: stage ", s, " was timed in ", timings[s].round_ms.size(),
               " rounds, the elastic call in ", elastic.round_ms.size());
  }
  std::vector<double> ratios;
  for (size_t r = 0; r < elastic.round_ms.size(); ++r) {
    double formula_ms = 0;
    for (size_t s = 0; s < reach.size(); ++s) formula_ms += reach[s] * timings[s].round_ms[r];
    ratios.push_back(formula_ms / elastic.round_ms[r]);
  }
  return median(std::move(ratios));
}

std::string to_string(ElasticMode mode) {
  return mode == ElasticMode::kRegrouped ? "regrouped" : "per_batch";
}

StageTauCalls::StageTauCalls(models::ElasticModel& model, std::vector<at::Tensor> batches,
                             std::vector<double> taus, models::EntropyRule rule,
                             std::vector<ElasticMode> modes)
    : model_(model),
      batches_(std::move(batches)),
      taus_(std::move(taus)),
      rule_(rule),
      modes_(std::move(modes)),
      num_stages_(model.model_options().num_stages()) {
  TVIT_CHECK(!batches_.empty(), "benchmark: no batches to time");
  for (const auto& x : batches_) images_ += x.size(0);
  inputs_.assign(num_stages_, std::vector<at::Tensor>(batches_.size()));
  for (size_t b = 0; b < batches_.size(); ++b) {
    // A batch seen before in the stream shares its tokens.
    size_t first = 0;
    while (!batches_[first].is_same(batches_[b])) ++first;
    for (int64_t s = 0; s + 1 < num_stages_; ++s) {
      inputs_[s + 1][b] = first < b ? inputs_[s + 1][first]
                                    : model_.forward_stage(s, batches_[b], inputs_[s][b]).tokens;
    }
  }
  for (int64_t s = 0; s < num_stages_; ++s) {
    calls_.push_back([this, s] {
      for (size_t b = 0; b < batches_.size(); ++b) model_.run_stage(s, batches_[b], inputs_[s][b]);
    });
  }
  reach_.assign(modes_.size() * taus_.size(), std::vector<double>(num_stages_, 0.0));
  const int64_t queue_batch = batches_.front().size(0);
  for (size_t i = 0; i < reach_.size(); ++i) {
    calls_.push_back([this, i, queue_batch] {
      std::vector<double> reached(num_stages_, 0.0);
      const auto count = [&](const models::ElasticOutput& out) {
        for (int64_t s = 0; s < num_stages_; ++s)
          reached[s] += static_cast<double>(out.samples_per_stage[s]);
      };
      if (mode(i) == ElasticMode::kRegrouped) {
        count(models::forward_elastic_regrouped(model_, batches_, tau(i), queue_batch, rule_));
      } else {
        for (const auto& x : batches_) count(model_.forward_elastic(x, tau(i), rule_));
      }
      for (auto& r : reached) r /= static_cast<double>(images_);
      reach_[i] = std::move(reached);
    });
  }
}

double tau_for_share(const at::Tensor& entropy, double share) {
  TVIT_CHECK(share >= 0 && share <= 1, "benchmark: a stop share must lie in [0, 1], found ", share);
  const auto sorted = std::get<0>(entropy.to(at::kCPU, at::kDouble).sort());
  const int64_t n = sorted.size(0);
  const auto k = static_cast<int64_t>(std::llround(share * static_cast<double>(n)));
  const double* e = sorted.data_ptr<double>();
  if (k <= 0) return e[0];          // an image stops when its entropy is below tau: none
  if (k >= n) return e[n - 1] + 1;  // all
  return 0.5 * (e[k - 1] + e[k]);
}

std::string BenchRow::label() const {
  std::ostringstream out;
  out << mode;
  if (mode == "stage") out << stage;
  if (elastic()) out << "_tau" << tau;
  out << "_b" << batch << "_" << to_string(precision);
  return out.str();
}

double measure_gemm_peak(const c10::Device& device, Precision precision, int reps) {
  TVIT_CHECK(reps > 0, "benchmark: repetitions must be > 0, found ", reps);
  torch::NoGradGuard no_grad;
  compat::AutocastGuard no_autocast(device.type(), at::kBFloat16, /*enabled=*/false);
  const auto options = torch::TensorOptions().device(device).dtype(
      precision == Precision::kBf16 ? at::kBFloat16 : at::kFloat);
  const int64_t largest = device.is_cuda() ? 8192 : 4096;
  int64_t n = 256;
  at::Tensor a, b, out;
  const auto mm = [&] { torch::mm_out(out, a, b); };
  for (;;) {
    a = torch::randn({n, n}, options);
    b = torch::randn({n, n}, options);
    out = torch::empty({n, n}, options);
    if (time_calls(mm, 1, 1, device).median_ms >= 20 || n >= largest) break;
    n *= 2;
  }
  double ms = time_calls(mm, 1, reps, device).median_ms;
  if (device.is_cpu() && at::hasMKLDNN()) {
    // oneDNN's GEMM beats ATen's (MKL's) on some CPUs: the peak is the faster of the two.
    const auto w = b.t().contiguous();  // a linear computes a · wᵀ
    ms = std::min(
        ms, time_calls([&] { models::cpu::onednn_linear(a, w, {}); }, 1, reps, device).median_ms);
  }
  return 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) /
         (ms * 1e9);
}

namespace {

// "stage 1, batch 16, fp32: 812 img/s, 0.41 TFLOP/s (23 % of peak)".
std::string row_line(const BenchRow& row) {
  std::ostringstream line;
  line << row.mode << (row.mode == "stage" ? " " + std::to_string(row.stage) : "")
       << (row.elastic() ? " tau " + std::to_string(row.tau) : "") << ", batch " << row.batch
       << ", " << to_string(row.precision) << ": " << row.images_per_s << " img/s";
  if (row.formula_images_per_s > 0) {
    line << " (formula " << row.formula_images_per_s << ", measured / formula "
         << row.measured_over_formula << ")";
  }
  line << ", " << row.tflops << " TFLOP/s";
  if (row.peak_tflops > 0) line << " (" << row.peak_pct() << " % of peak)";
  return line.str();
}

// The figures every row derives from its timing, and the profile of the row's call.
void complete_row(BenchRow& row, const models::ModelOptions& o, const BenchOptions& options,
                  double peak, const std::function<void()>& fn, double macs_factor,
                  int64_t images) {
  row.images_per_s = 1000.0 * static_cast<double>(images) / row.timing.median_ms;
  row.gmacs = models::expected_macs(o, row.reach, models::MacConvention::kReleased,
                                    /*with_uncounted=*/true) /
              1e9 * macs_factor;
  row.tflops = 2.0 * row.gmacs * row.images_per_s / 1000.0;
  row.peak_tflops = peak;
  if (options.profile_calls > 0) {
    const auto trace = options.trace_dir.empty()
                           ? std::string()
                           : options.trace_dir + "/" + row.label() + ".trace.json";
    row.profile = profile_calls(fn, options.profile_calls, options.device, trace);
  }
}

// The thresholds of a case: the given ones, then those that stop each share of its images.
std::vector<double> case_taus(models::ElasticModel& model, const std::vector<at::Tensor>& stream,
                              const BenchOptions& options) {
  auto taus = options.taus;
  if (options.stop_shares.empty()) return taus;
  // The stage-0 entropies of the stream's images, each distinct batch computed once.
  std::vector<at::Tensor> distinct, entropies;
  for (size_t i = 0; i < stream.size(); ++i) {
    if (i > 0 && stream[i].is_same(stream[0])) break;  // the cycle starts again
    distinct.push_back(models::entropy(model.forward_stage(0, stream[i], {}).logits, options.rule));
  }
  for (size_t i = 0; i < stream.size(); ++i) entropies.push_back(distinct[i % distinct.size()]);
  const auto entropy = at::cat(entropies);
  for (const double share : options.stop_shares) taus.push_back(tau_for_share(entropy, share));
  return taus;
}

// The case's stream: options.stream batches of random images, cycled from min(4, stream)
// distinct ones (seeded by options.seed).
std::vector<at::Tensor> stream_batches(const models::ModelOptions& o, int64_t batch,
                                       const BenchOptions& options) {
  TVIT_CHECK(options.stream > 0, "benchmark: the stream must hold > 0 batches, found ",
             options.stream);
  torch::manual_seed(options.seed);
  std::vector<at::Tensor> distinct;
  for (int i = 0; i < std::min(4, options.stream); ++i) {
    distinct.push_back(torch::randn({batch, o.in_channels(), o.image_size(), o.image_size()},
                                    torch::TensorOptions().device(options.device)));
  }
  std::vector<at::Tensor> stream;
  for (int i = 0; i < options.stream; ++i) stream.push_back(distinct[i % distinct.size()]);
  return stream;
}

}  // namespace

std::vector<BenchRow> run_benchmark(models::ElasticModel& model, const BenchOptions& options,
                                    const std::function<void(const std::string&)>& progress,
                                    const ExtraCalls& extra) {
  TVIT_CHECK(options.profile_calls >= 0, "benchmark: profile calls must be >= 0, found ",
             options.profile_calls);
  TVIT_CHECK(!options.cuda_graphs || options.device.is_cuda(),
             "benchmark: CUDA graphs need a CUDA device, found ", options.device.str());
  model.eval();
  model.to(options.device);
  torch::NoGradGuard no_grad;
  const auto& o = model.model_options();
  std::vector<BenchRow> rows;
  const auto add = [&](BenchRow row, double peak, const std::function<void()>& fn,
                       double macs_factor, int64_t images) {
    complete_row(row, o, options, peak, fn, macs_factor, images);
    if (progress) progress(row_line(row));
    rows.push_back(std::move(row));
  };
  std::vector<ElasticMode> modes = {ElasticMode::kRegrouped};
  if (options.per_batch) modes.push_back(ElasticMode::kPerBatch);
  for (const auto precision : options.precisions) {
    const double peak = options.peak ? measure_gemm_peak(options.device, precision) : 0.0;
    if (peak > 0 && progress) {
      std::ostringstream line;
      line << "GEMM peak, " << to_string(precision) << ": " << peak << " TFLOP/s";
      progress(line.str());
    }
    compat::AutocastGuard autocast(options.device.type(), at::kBFloat16,
                                   precision == Precision::kBf16);
    for (const int64_t batch : options.batch_sizes) {
      TVIT_CHECK(batch > 0, "benchmark: batch sizes must be > 0, found ", batch);
      if (options.cuda_graphs) model.set_cuda_graph_sizes(models::default_cuda_graph_sizes(batch));
      const auto stream = stream_batches(o, batch, options);
      // Every stage alone and every threshold, timed against each other in interleaved rounds.
      const auto taus = case_taus(model, stream, options);
      const StageTauCalls calls(model, stream, taus, options.rule, modes);
      const auto& fns = calls.calls();
      const auto timings = time_interleaved(fns, options.warmup, options.reps, options.device);
      std::vector<double> stage_ips;
      for (size_t k = 0; k < fns.size(); ++k) {
        BenchRow row;
        row.batch = batch;
        row.precision = precision;
        row.timing = timings[k];
        if (static_cast<int64_t>(k) < o.num_stages()) {
          row.mode = "stage";
          row.stage = static_cast<int64_t>(k);
          row.reach.assign(o.num_stages(), 0.0);
          row.reach[k] = 1.0;
        } else {
          const size_t i = k - o.num_stages();
          row.mode = calls.mode(i) == ElasticMode::kRegrouped ? "elastic" : "elastic_per_batch";
          row.tau = calls.tau(i);
          row.reach = calls.reach(i);
          row.formula_images_per_s = predicted_throughput(row.reach, stage_ips);
          row.measured_over_formula = measured_over_formula(row.reach, timings, timings[k]);
        }
        add(std::move(row), peak, fns[k], 1.0, calls.images());
        if (static_cast<int64_t>(k) < o.num_stages()) stage_ips.push_back(rows.back().images_per_s);
      }
      if (!extra) continue;
      for (auto& call : extra(BenchCase{precision, batch, stream.front()})) {
        BenchRow row;
        row.mode = call.mode;
        row.batch = batch;
        row.precision = precision;
        row.timing = time_calls(call.call, options.warmup, options.reps, options.device);
        row.reach = call.reach;
        add(std::move(row), peak, call.call, call.macs_factor, batch);
      }
    }
  }
  model.set_cuda_graph_sizes({});
  return rows;
}

namespace {

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

}  // namespace

RunInfo describe_run(const c10::Device& device) {
  RunInfo info;
  info.threads = at::get_num_threads();
  if (device.is_cuda()) {
    info.device = "cuda:" + std::to_string(device.has_index() ? device.index() : 0) + " (" +
                  compat::gpu_name(device) + ")";
  } else {
    info.device =
        "cpu: " + cpu_name() + " (" + std::to_string(util::usable_cores()) + " usable cores)";
  }
  info.build = util::build_summary();
  return info;
}

Table bench_table(const std::vector<BenchRow>& rows, const RunInfo& info) {
  Table table({"mode", "stage", "tau", "reach", "batch", "precision", "img_per_s",
               "formula_img_per_s", "measured_over_formula", "median_ms", "min_ms", "max_ms",
               "gmacs", "tflops", "peak_pct", "device", "threads", "build"});
  for (const auto& r : rows) {
    std::string reach;
    for (size_t i = 0; i < r.reach.size(); ++i) {
      std::ostringstream s;
      s << std::fixed << std::setprecision(3) << r.reach[i];
      reach += (i ? "/" : "") + s.str();
    }
    const Table::Cell none(std::string("-"));
    const bool formula = r.formula_images_per_s > 0;
    table.add_row({r.mode, r.mode == "stage" ? Table::Cell(r.stage) : none,
                   r.elastic() ? Table::Cell(r.tau) : none, reach, r.batch, to_string(r.precision),
                   r.images_per_s, formula ? Table::Cell(r.formula_images_per_s) : none,
                   formula ? Table::Cell(r.measured_over_formula) : none, r.timing.median_ms,
                   r.timing.min_ms, r.timing.max_ms, r.gmacs, r.tflops,
                   r.peak_tflops > 0 ? Table::Cell(r.peak_pct()) : none, info.device,
                   static_cast<int64_t>(info.threads), info.build});
  }
  table.set_precision(3);
  return table;
}

}  // namespace thinkingvit::eval
