// thinkingvit sweep: one evaluation pass, then the exact accuracy / GMACs table for every
// threshold, with measured elastic throughput (real batched early exit) beside the released
// formula's prediction, CSV / JSON / markdown outputs and a PNG figure.

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "app_paths.h"
#include "common.h"
#include "eval_setup.h"
#include "thinkingvit/data/sampler.h"
#include "thinkingvit/eval/benchmark.h"
#include "thinkingvit/eval/sweep.h"
#include "thinkingvit/eval/table.h"
#include "thinkingvit/util/compat.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/progress.h"

namespace thinkingvit::apps {

namespace fs = std::filesystem;

namespace {

struct SweepArgs {
  EvalSource source;
  std::string taus = "0:2.3:0.1";
  std::string entropy_rule = "top10";
  std::string output_dir;
  int64_t timing_batches = 4;
  int reps = 3;
  double budget_gmacs = 0, budget_throughput = 0;
  bool no_plot = false;
};

std::string shares(const std::vector<double>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.3f", v[i]);
    out += (i ? "/" : "") + std::string(buf);
  }
  return out;
}

// Records of every other sample (parity 0 or 1), for choosing tau on a held-out half.
eval::StageRecords half(const eval::StageRecords& r, int parity) {
  auto idx = torch::arange(parity, r.num_samples, 2, torch::kLong);
  eval::StageRecords h;
  h.num_samples = idx.size(0);
  h.correct1 = r.correct1.index_select(1, idx);
  h.correct5 = r.correct5.index_select(1, idx);
  h.entropy = r.entropy.index_select(1, idx);
  h.labels = r.labels.index_select(0, idx);
  return h;
}

// The distribution of first-stage entropies (the paper's Figure 5), split by whether stage 0's
// prediction is right: 46 bins over [0, H_max].
eval::Table entropy_histogram(const eval::StageRecords& r, models::EntropyRule rule,
                              int64_t num_classes) {
  const int64_t bins = 46;
  const double h_max = std::log(static_cast<double>(
      rule == models::EntropyRule::kTop10 ? std::min<int64_t>(10, num_classes) : num_classes));
  const double width = h_max / bins;
  auto bin = (r.entropy[0] / width).floor().clamp(0, bins - 1).to(at::kLong);
  const auto right = at::bincount(bin.masked_select(r.correct1[0]), {}, bins);
  const auto wrong = at::bincount(bin.masked_select(r.correct1[0].logical_not()), {}, bins);
  eval::Table table({"entropy_lo", "entropy_hi", "right", "wrong"});
  for (int64_t b = 0; b < bins; ++b) {
    table.add_row({b * width, (b + 1) * width, right[b].item<int64_t>(), wrong[b].item<int64_t>()});
  }
  return table;
}

void run_sweep(const SweepArgs& args) {
  auto setup = make_eval_setup(args.source);
  // precision.eval_dtype for the pass and every timing alike.
  const std::string& precision = setup.config.precision.eval_dtype;
  compat::AutocastGuard autocast(setup.device.type(), at::kBFloat16, precision == "bf16");
  const auto rule = models::parse_entropy_rule(args.entropy_rule, "--entropy");
  const auto taus = eval::parse_thresholds(args.taus, "--taus");
  const auto& mo = setup.config.model.options;
  const std::string out_dir =
      args.output_dir.empty()
          ? (args.source.run.empty() ? "sweep" : (fs::path(args.source.run) / "sweep").string())
          : args.output_dir;
  fs::create_directories(out_dir);

  // One pass: what every sample needs at every stage; timing batches kept in memory.
  setup.loader->start_epoch(0, data::epoch_indices(setup.val->size(), 0, {false}));
  std::vector<at::Tensor> timing;
  eval::StageRecords records;
  {
    util::Progress progress("sweep pass", setup.loader->num_batches(), "batch");
    std::vector<std::vector<at::Tensor>> logits(mo.num_stages());
    std::vector<at::Tensor> labels;
    torch::NoGradGuard no_grad;
    int64_t done = 0;
    while (auto batch = setup.loader->next()) {
      auto x = batch->images.to(setup.device, /*non_blocking=*/true);
      if (static_cast<int64_t>(timing.size()) < args.timing_batches) timing.push_back(x);
      auto outs = setup.model->forward_all(x);
      for (int64_t s = 0; s < mo.num_stages(); ++s)
        logits[s].push_back(outs[s].logits.to(at::kFloat).cpu());
      labels.push_back(batch->labels);
      progress.update(++done);
    }
    progress.finish();
    std::vector<at::Tensor> stacked;
    for (auto& l : logits) stacked.push_back(at::cat(l));
    records = eval::records_from_logits(stacked, at::cat(labels), rule);
  }

  // Standalone stage throughput on the timing batches (each stage fed its predecessor's tokens).
  torch::NoGradGuard no_grad;
  int64_t timed_images = 0;
  for (const auto& x : timing) timed_images += x.size(0);
  std::vector<double> stage_ips;
  {
    std::vector<at::Tensor> tokens(timing.size());
    for (int64_t s = 0; s < mo.num_stages(); ++s) {
      auto t = eval::time_calls(
          [&] {
            for (size_t b = 0; b < timing.size(); ++b)
              setup.model->forward_stage(s, timing[b], tokens[b]);
          },
          1, args.reps, setup.device);
      stage_ips.push_back(1000.0 * timed_images / t.median_ms);
      for (size_t b = 0; b < timing.size(); ++b)
        tokens[b] = setup.model->forward_stage(s, timing[b], tokens[b]).tokens;
    }
  }

  const auto info = eval::describe_run(setup.device);
  eval::Table table({"tau", "top1", "top5", "gmacs", "stop_share", "stage_top1", "img_per_s",
                     "img_per_s_spread", "img_per_s_formula", "timed_reach", "batch", "device",
                     "precision", "threads"});
  std::vector<eval::SweepRow> rows;
  util::Progress progress("throughput", static_cast<int64_t>(taus.size()), "tau");
  for (size_t i = 0; i < taus.size(); ++i) {
    const double tau = taus[i];
    const auto row = eval::sweep_at(records, mo, tau);
    rows.push_back(row);
    std::vector<double> reach(mo.num_stages(), 0.0);
    auto t = eval::time_calls(
        [&] {
          std::fill(reach.begin(), reach.end(), 0.0);
          for (const auto& x : timing) {
            auto out = setup.model->forward_elastic(x, tau, rule);
            for (int64_t s = 0; s < mo.num_stages(); ++s) reach[s] += out.samples_per_stage[s];
          }
        },
        1, args.reps, setup.device);
    for (auto& r : reach) r /= timed_images;
    const double ips = 1000.0 * timed_images / t.median_ms;
    const double spread = 1000.0 * timed_images / t.min_ms - 1000.0 * timed_images / t.max_ms;
    table.add_row({tau, row.top1, row.top5, row.gmacs, shares(row.stop_share),
                   shares(row.stage_top1), ips, spread,
                   eval::predicted_throughput(reach, stage_ips), shares(reach),
                   setup.config.data.eval_batch_size, info.device, precision,
                   static_cast<int64_t>(info.threads)});
    progress.update(static_cast<int64_t>(i + 1));
  }
  progress.finish();
  table.set_precision(4);

  std::cout << "sweep of " << records.num_samples << " images, entropy " << args.entropy_rule
            << ", " << setup.preprocessing << "\n";
  for (int64_t s = 0; s < mo.num_stages(); ++s) {
    std::cout << "stage " << s << " alone: top-1 " << records.top1[s] << "%, "
              << models::stage_macs(mo, s).total(models::MacConvention::kReleased) / 1e9
              << " GMACs, " << stage_ips[s] << " img/s\n";
  }
  table.write(std::cout, eval::TableFormat::kMarkdown);
  const auto csv = (fs::path(out_dir) / "sweep.csv").string();
  table.save(csv, eval::TableFormat::kCsv);
  table.save((fs::path(out_dir) / "sweep.json").string(), eval::TableFormat::kJson);
  table.save((fs::path(out_dir) / "sweep.md").string(), eval::TableFormat::kMarkdown);
  eval::Table stages({"stage", "heads", "top1", "gmacs", "img_per_s"});
  for (int64_t s = 0; s < mo.num_stages(); ++s) {
    stages.add_row({s, mo.stages()[s], records.top1[s],
                    models::stage_macs(mo, s).total(models::MacConvention::kReleased) / 1e9,
                    stage_ips[s]});
  }
  stages.save((fs::path(out_dir) / "stages.csv").string(), eval::TableFormat::kCsv);
  const auto hist_csv = (fs::path(out_dir) / "entropy_hist.csv").string();
  entropy_histogram(records, rule, mo.num_classes()).save(hist_csv, eval::TableFormat::kCsv);

  // Budget mode: choose tau on one half, report it on the other.
  if (args.budget_gmacs > 0 || args.budget_throughput > 0) {
    const auto choose = half(records, 0), report = half(records, 1);
    double best_tau = NAN, best_acc = -1;
    for (size_t i = 0; i < taus.size(); ++i) {
      const auto r = eval::sweep_at(choose, mo, taus[i]);
      const double ips = std::get<double>(table.rows()[i][6]);
      const bool fits = (args.budget_gmacs <= 0 || r.gmacs <= args.budget_gmacs) &&
                        (args.budget_throughput <= 0 || ips >= args.budget_throughput);
      if (fits && r.top1 > best_acc) {
        best_acc = r.top1;
        best_tau = taus[i];
      }
    }
    if (std::isnan(best_tau)) {
      std::cout << "budget: no threshold meets the budget\n";
    } else {
      const auto r = eval::sweep_at(report, mo, best_tau);
      std::cout << "budget: tau " << best_tau << " (chosen on half the images: top-1 " << best_acc
                << "%), held-out half: top-1 " << r.top1 << "%, " << r.gmacs << " GMACs\n";
    }
  }

  const auto script = fs::path(THINKINGVIT_SOURCE_DIR) / "scripts" / "plot_sweep.sh";
  if (!args.no_plot) {
    const auto png = (fs::path(out_dir) / "sweep.png").string();
    const std::string cmd = "bash '" + script.string() + "' '" + csv + "' '" +
                            (fs::path(out_dir) / "stages.csv").string() + "' '" + png + "' '" +
                            hist_csv + "'";
    if (std::system(cmd.c_str()) == 0) {
      spdlog::info("figure: {}", png);
    } else {
      spdlog::warn("could not draw {} (is gnuplot installed?); the tables are written", png);
    }
  }
  spdlog::info("tables: {}/sweep.{{md,csv,json}}, stages.csv, entropy_hist.csv", out_dir);
}

}  // namespace

void add_sweep_command(CLI::App& root) {
  auto args = std::make_shared<SweepArgs>();
  auto* cmd = root.add_subcommand(
      "sweep", "Accuracy / GMACs / measured throughput for a range of thresholds");
  args->source.add_flags(*cmd);
  cmd->add_option("--taus", args->taus, "thresholds: a list 0,0.5,1 or a range start:stop:step")
      ->capture_default_str();
  cmd->add_option("--entropy", args->entropy_rule, "entropy rule: top10 or full")
      ->capture_default_str();
  cmd->add_option("--output-dir", args->output_dir,
                  "where to write sweep.{md,csv,json,png} (default RUN/sweep)");
  cmd->add_option("--timing-batches", args->timing_batches,
                  "validation batches timed per threshold")
      ->capture_default_str();
  cmd->add_option("--reps", args->reps, "timed repetitions per threshold (median reported)")
      ->capture_default_str();
  cmd->add_option("--budget-gmacs", args->budget_gmacs, "pick the best tau within this many GMACs");
  cmd->add_option("--budget-throughput", args->budget_throughput,
                  "pick the best tau reaching this img/s");
  cmd->add_flag("--no-plot", args->no_plot, "skip the PNG figure");
  cmd->callback([args] { run_sweep(*args); });
}

}  // namespace thinkingvit::apps
