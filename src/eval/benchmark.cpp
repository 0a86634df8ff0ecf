#include "thinkingvit/eval/benchmark.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "thinkingvit/models/entropy.h"
#include "thinkingvit/train/recipe.h"
#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/compat.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::eval {

Precision parse_precision(const std::string& text, const std::string& what) {
  if (text == "fp32") return Precision::kFp32;
  if (text == "bf16") return Precision::kBf16;
  fail(what, ": expected fp32 or bf16, found '", text, "'");
}

std::string to_string(Precision precision) {
  return precision == Precision::kFp32 ? "fp32" : "bf16";
}

namespace {

Timing summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  const double median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  return {median, ms.front(), ms.back()};
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

namespace {

// Training steps on `images` with random labels; the model's weights are put back afterwards.
Timing time_training_steps(models::ElasticModel& model, const at::Tensor& images,
                           const BenchOptions& options) {
  std::vector<at::Tensor> saved;
  for (const auto& p : model.parameters()) saved.push_back(p.detach().clone());
  torch::AutoGradMode grad(true);
  model.train();
  const auto& o = model.model_options();
  // The optimizer training uses.
  train::FusedAdamW optimizer({torch::optim::OptimizerParamGroup(model.parameters())},
                              torch::optim::AdamWOptions(1e-4).weight_decay(0.05));
  const auto labels =
      torch::randint(o.num_classes(), {images.size(0)}, images.options().dtype(at::kLong));
  const auto timing = time_calls(
      [&] {
        at::Tensor tokens, loss;
        for (int64_t s = 0; s < o.num_stages(); ++s) {
          auto out = model.forward_stage(s, images, tokens);
          tokens = out.tokens;
          auto ce = torch::nn::functional::cross_entropy(out.logits.to(at::kFloat), labels) /
                    static_cast<double>(o.num_stages());
          loss = loss.defined() ? loss + ce : ce;
        }
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
      },
      options.warmup, options.reps, options.device);
  model.eval();
  torch::NoGradGuard no_grad;
  const auto params = model.parameters();
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
  return timing;
}

}  // namespace

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

std::vector<BenchRow> run_benchmark(models::ElasticModel& model, const BenchOptions& options,
                                    const std::function<void(const std::string&)>& progress) {
  model.eval();
  model.to(options.device);
  torch::NoGradGuard no_grad;
  const auto& o = model.model_options();
  std::vector<BenchRow> rows;
  auto report = [&](const BenchRow& row) {
    rows.push_back(row);
    if (!progress) return;
    std::ostringstream line;
    line << row.mode << (row.mode == "stage" ? " " + std::to_string(row.stage) : "")
         << (row.mode == "elastic" ? " tau " + std::to_string(row.tau) : "") << ", batch "
         << row.batch << ", " << to_string(row.precision) << ": " << row.images_per_s << " img/s";
    progress(line.str());
  };
  for (const auto precision : options.precisions) {
    compat::AutocastGuard autocast(options.device.type(), at::kBFloat16,
                                   precision == Precision::kBf16);
    for (const int64_t batch : options.batch_sizes) {
      TVIT_CHECK(batch > 0, "benchmark: batch sizes must be > 0, found ", batch);
      torch::manual_seed(options.seed);
      auto images = torch::randn({batch, o.in_channels(), o.image_size(), o.image_size()},
                                 torch::TensorOptions().device(options.device));
      // Every stage alone (fed its predecessor's tokens, computed outside the timed region) and
      // every threshold, timed against each other in interleaved rounds.
      std::vector<BenchRow> timed;
      std::vector<std::function<void()>> fns;
      std::vector<at::Tensor> inputs(o.num_stages());
      for (int64_t s = 0; s < o.num_stages(); ++s) {
        BenchRow row;
        row.mode = "stage";
        row.stage = s;
        row.reach.assign(o.num_stages(), 0.0);
        row.reach[s] = 1.0;
        timed.push_back(row);
        fns.push_back([&, s] { model.forward_stage(s, images, inputs[s]); });
        if (s + 1 < o.num_stages())
          inputs[s + 1] = model.forward_stage(s, images, inputs[s]).tokens;
      }
      auto taus = options.taus;
      if (!options.stop_shares.empty()) {
        const auto entropy =
            models::entropy(model.forward_stage(0, images, {}).logits, options.rule);
        for (const double share : options.stop_shares)
          taus.push_back(tau_for_share(entropy, share));
      }
      std::vector<models::ElasticOutput> last(taus.size());
      for (size_t t = 0; t < taus.size(); ++t) {
        BenchRow row;
        row.mode = "elastic";
        row.tau = taus[t];
        timed.push_back(row);
        fns.push_back([&, t] { last[t] = model.forward_elastic(images, taus[t], options.rule); });
      }
      const auto timings = time_interleaved(fns, options.warmup, options.reps, options.device);
      for (size_t k = 0; k < timed.size(); ++k) {
        auto& row = timed[k];
        row.batch = batch;
        row.precision = precision;
        row.timing = timings[k];
        row.images_per_s = 1000.0 * batch / row.timing.median_ms;
        if (row.mode == "elastic") {
          for (const auto n : last[k - o.num_stages()].samples_per_stage)
            row.reach.push_back(static_cast<double>(n) / batch);
        }
        report(row);
      }
      if (options.train) {
        BenchRow row;
        row.mode = "train";
        row.batch = batch;
        row.precision = precision;
        row.timing = time_training_steps(model, images, options);
        row.images_per_s = 1000.0 * batch / row.timing.median_ms;
        row.reach.assign(o.num_stages(), 1.0);
        report(row);
      }
    }
  }
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
    info.device = "cpu: " + cpu_name() + " (" +
                  std::to_string(std::thread::hardware_concurrency()) + " cores)";
  }
  info.build = util::build_summary();
  return info;
}

Table bench_table(const std::vector<BenchRow>& rows, const RunInfo& info) {
  Table table({"mode", "stage", "tau", "reach", "batch", "precision", "img_per_s", "median_ms",
               "min_ms", "max_ms", "device", "threads", "build"});
  for (const auto& r : rows) {
    std::string reach;
    for (size_t i = 0; i < r.reach.size(); ++i) {
      std::ostringstream s;
      s << std::fixed << std::setprecision(3) << r.reach[i];
      reach += (i ? "/" : "") + s.str();
    }
    table.add_row({r.mode, r.mode == "stage" ? Table::Cell(r.stage) : Table::Cell(std::string("-")),
                   r.mode == "elastic" ? Table::Cell(r.tau) : Table::Cell(std::string("-")), reach,
                   r.batch, to_string(r.precision), r.images_per_s, r.timing.median_ms,
                   r.timing.min_ms, r.timing.max_ms, info.device,
                   static_cast<int64_t>(info.threads), info.build});
  }
  table.set_precision(3);
  return table;
}

}  // namespace thinkingvit::eval
