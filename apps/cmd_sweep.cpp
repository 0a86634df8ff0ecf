// thinkingvit sweep: one evaluation pass, then the exact accuracy / GMACs table for every
// threshold, with measured elastic throughput (real batched early exit) beside the released
// formula's prediction, CSV / JSON / markdown outputs and a PNG figure.

#include <unistd.h>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "common.h"
#include "eval_setup.h"
#include "thinkingvit/eval/benchmark.h"
#include "thinkingvit/eval/sweep.h"
#include "thinkingvit/eval/table.h"
#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/util/device.h"
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
  int64_t timing_batches = 4, timing_stream = 16;
  int reps = 5;
  double budget_gmacs = 0, budget_throughput = 0;
  bool no_plot = false;
  std::string plot_script;  // default: found beside the binary
};

// plot_sweep.sh relative to this executable: installed (PREFIX/bin -> PREFIX/share/thinkingvit)
// or in a build folder of the repository (build/ -> scripts/). Empty when neither exists.
std::string find_plot_script() {
  std::error_code error;
  const auto exe = fs::read_symlink("/proc/self/exe", error);
  if (error) return "";
  for (const auto& candidate :
       {exe.parent_path() / ".." / "share" / "thinkingvit" / "plot_sweep.sh",
        exe.parent_path() / ".." / "scripts" / "plot_sweep.sh"}) {
    if (fs::exists(candidate, error)) return fs::weakly_canonical(candidate, error).string();
  }
  return "";
}

// Throughput on a stream of `stream` batches cycled from the timing batches: every stage alone
// and every threshold (early exit regrouped across the stream's batches), timed against each
// other in interleaved rounds (eval::StageTauCalls), so that no row gains from being timed when
// the machine happens to be faster; the rows pair each threshold's exact accuracy and GMACs
// (from the pass) with its measured and predicted throughput.
struct Throughput {
  std::vector<double> stage_ips;
  std::vector<eval::MeasuredSweepRow> rows;
};

Throughput measure_throughput(const EvalSetup& setup, const eval::StageRecords& records,
                              const std::vector<at::Tensor>& timing, int64_t stream,
                              const std::vector<double>& taus, models::EntropyRule rule, int reps) {
  torch::NoGradGuard no_grad;
  const auto& mo = setup.config.model.options;
  TVIT_CHECK(!timing.empty(), "sweep: no validation batch was kept for timing");
  std::vector<at::Tensor> batches;
  for (int64_t i = 0; i < std::max<int64_t>(stream, 1); ++i)
    batches.push_back(timing[i % timing.size()]);
  const eval::StageTauCalls calls(*setup.model, std::move(batches), taus, rule);
  const auto images = static_cast<double>(calls.images());
  util::Progress progress("throughput (" + std::to_string(mo.num_stages()) + " stages, " +
                              std::to_string(taus.size()) + " thresholds, " +
                              std::to_string(calls.images()) + " images)",
                          reps, "round");
  const auto timings = eval::time_interleaved(calls.calls(), 1, reps, setup.device,
                                              [&](int done) { progress.update(done); });
  progress.finish();
  if (setup.device.is_cpu()) spdlog::info("cpu kernels: {}", models::cpu::describe());
  Throughput out;
  for (int64_t s = 0; s < mo.num_stages(); ++s)
    out.stage_ips.push_back(1000.0 * images / timings[s].median_ms);
  for (size_t i = 0; i < taus.size(); ++i) {
    const auto& t = timings[mo.num_stages() + i];
    eval::MeasuredSweepRow row;
    row.sweep = eval::sweep_at(records, mo, taus[i]);
    row.img_per_s = 1000.0 * images / t.median_ms;
    row.img_per_s_spread = 1000.0 * images / t.min_ms - 1000.0 * images / t.max_ms;
    row.img_per_s_formula = eval::predicted_throughput(calls.reach(i), out.stage_ips);
    // The stages' timings come first in `timings`, as bench passes them.
    row.measured_over_formula = eval::measured_over_formula(calls.reach(i), timings, t);
    row.timed_reach = calls.reach(i);
    out.rows.push_back(std::move(row));
  }
  return out;
}

// The tables on stdout and in `out_dir`: sweep.{csv,json,md}, stages.csv, entropy_hist.csv.
void write_tables(const SweepArgs& args, const EvalSetup& setup, const eval::StageRecords& records,
                  const Throughput& measured, models::EntropyRule rule,
                  const std::string& out_dir) {
  const auto& mo = setup.config.model.options;
  const auto info = eval::describe_run(setup.device);
  const auto table =
      eval::sweep_table(measured.rows, setup.config.data.eval_batch_size, info.device,
                        util::to_string(setup.config.precision.eval_dtype), info.threads);
  std::cout << "sweep of " << records.num_samples << " images, entropy " << args.entropy_rule
            << ", " << setup.preprocessing << "\n";
  eval::Table stages({"stage", "heads", "top1", "gmacs", "img_per_s"});
  for (int64_t s = 0; s < mo.num_stages(); ++s) {
    const double gmacs = mo.stage_macs(s).total(models::MacConvention::kReleased) / 1e9;
    std::cout << "stage " << s << " alone: top-1 " << records.top1[s] << "%, " << gmacs
              << " GMACs, " << measured.stage_ips[s] << " img/s\n";
    stages.add_row({s, heads_cell(mo, s), records.top1[s], gmacs, measured.stage_ips[s]});
  }
  table.write(std::cout, eval::TableFormat::kMarkdown);
  const fs::path dir(out_dir);
  table.save((dir / "sweep.csv").string(), eval::TableFormat::kCsv);
  table.save((dir / "sweep.json").string(), eval::TableFormat::kJson);
  table.save((dir / "sweep.md").string(), eval::TableFormat::kMarkdown);
  stages.save((dir / "stages.csv").string(), eval::TableFormat::kCsv);
  eval::entropy_histogram_table(eval::entropy_histogram(records, rule, mo.num_classes()))
      .save((dir / "entropy_hist.csv").string(), eval::TableFormat::kCsv);
}

// Budget mode: tau chosen on one half of the images, reported on the other.
void report_budget(const SweepArgs& args, const EvalSetup& setup, const eval::StageRecords& records,
                   const Throughput& measured) {
  if (args.budget_gmacs <= 0 && args.budget_throughput <= 0) return;
  const auto choice = eval::choose_within_budget(
      eval::half_of(records, 0), eval::half_of(records, 1), setup.config.model.options,
      measured.rows, args.budget_gmacs, args.budget_throughput);
  if (!choice.found) {
    std::cout << "budget: no threshold meets the budget\n";
  } else {
    std::cout << "budget: tau " << choice.tau << " (chosen on half the images: top-1 "
              << choice.chosen_top1 << "%), held-out half: top-1 " << choice.reported.top1 << "%, "
              << choice.reported.gmacs << " GMACs\n";
  }
}

// sweep.png from the tables, through plot_sweep.sh (gnuplot); a warning where it cannot.
void draw_figure(const SweepArgs& args, const std::string& out_dir) {
  if (args.no_plot) return;
  const auto script = args.plot_script.empty() ? find_plot_script() : args.plot_script;
  const fs::path dir(out_dir);
  const auto png = (dir / "sweep.png").string();
  if (script.empty()) {
    spdlog::warn(
        "plot_sweep.sh not found beside the binary; pass --plot-script (the tables are "
        "written)");
    return;
  }
  const std::string cmd = "bash '" + script + "' '" + (dir / "sweep.csv").string() + "' '" +
                          (dir / "stages.csv").string() + "' '" + png + "' '" +
                          (dir / "entropy_hist.csv").string() + "'";
  if (std::system(cmd.c_str()) == 0) {
    spdlog::info("figure: {}", png);
  } else {
    spdlog::warn("could not draw {} (is gnuplot installed?); the tables are written", png);
  }
}

void run_sweep(const SweepArgs& args) {
  TVIT_CHECK(args.plot_script.empty() || args.no_plot || fs::is_regular_file(args.plot_script),
             "--plot-script '", args.plot_script, "': no such file");
  const auto taus = eval::parse_thresholds(args.taus, "--taus");
  const auto rule = models::parse_entropy_rule(args.entropy_rule, "--entropy");
  auto setup = make_eval_setup(args.source);
  // precision.eval_dtype for the pass and every timing alike.
  compat::AutocastGuard autocast(setup.device.type(), at::kBFloat16,
                                 util::is_bf16(setup.config.precision.eval_dtype));
  const std::string out_dir =
      args.output_dir.empty()
          ? (args.source.run.empty() ? "sweep" : (fs::path(args.source.run) / "sweep").string())
          : args.output_dir;
  // The folder is made only when the tables are written, so a sweep killed during its pass
  // leaves none; that it can be made is checked now, before the pass.
  if (setup.is_main()) {
    auto existing = fs::absolute(out_dir);
    while (!fs::exists(existing) && existing.has_parent_path() && existing != existing.root_path())
      existing = existing.parent_path();
    TVIT_CHECK(fs::is_directory(existing) && ::access(existing.c_str(), W_OK) == 0,
               "--output-dir '", out_dir, "': cannot create it: '", existing.string(),
               "' is not a writable folder");
  }

  // One pass: what every sample needs at every stage; timing batches kept in memory.
  std::vector<at::Tensor> timing;
  eval::StageRecords records;
  {
    util::Progress progress("sweep pass", setup.loader_batches(), "batch");
    // Autocast is already on (above) when precision.eval_dtype is bf16.
    records = setup.evaluate(
        rule, /*bf16=*/false, [&](int64_t done, int64_t) { progress.update(done); },
        [&](const at::Tensor& x) {
          if (static_cast<int64_t>(timing.size()) < args.timing_batches) timing.push_back(x);
        });
    progress.finish();
  }
  // Accuracy is the whole set's on every rank; throughput is one process's measurement, taken
  // by rank 0 alone so that no other process shares its cores or its GPU's time.
  if (!setup.is_main()) return;
  if (setup.dist->enabled()) {
    spdlog::info("sweep: accuracy over all {} processes' images; throughput timed by rank 0 alone",
                 setup.dist->world_size());
  }
  const auto measured =
      measure_throughput(setup, records, timing, args.timing_stream, taus, rule, args.reps);
  fs::create_directories(out_dir);
  write_tables(args, setup, records, measured, rule, out_dir);
  report_budget(args, setup, records, measured);
  draw_figure(args, out_dir);
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
  cmd->add_option("--timing-batches", args->timing_batches, "validation batches kept for timing")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--timing-stream", args->timing_stream,
                  "batches in each timed call, cycled from the timing batches: early exit "
                  "regroups their undecided images, so later stages run full batches")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--reps", args->reps,
                  "interleaved timing rounds of every stage and threshold (median and spread "
                  "reported)")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--budget-gmacs", args->budget_gmacs,
                  "pick the best tau within this many GMACs (with --budget-throughput: both hold)")
      ->check(positive());
  cmd->add_option("--budget-throughput", args->budget_throughput,
                  "pick the best tau reaching this img/s")
      ->check(positive());
  cmd->add_flag("--no-plot", args->no_plot, "skip the PNG figure");
  cmd->add_option("--plot-script", args->plot_script,
                  "gnuplot wrapper that draws the figure (default: plot_sweep.sh found from the "
                  "binary: ../share/thinkingvit/ when installed, ../scripts/ in a build folder)");
  cmd->callback([args] { run_sweep(*args); });
}

}  // namespace thinkingvit::apps
