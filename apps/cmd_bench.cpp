// thinkingvit bench: standalone throughput of every stage and elastic throughput at given
// thresholds (regrouped across a stream of batches, and optionally per batch), beside the
// released formula's prediction, on synthetic input.

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "common.h"
#include "thinkingvit/eval/benchmark.h"
#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/train/distributed.h"
#include "thinkingvit/train/step_bench.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"

namespace thinkingvit::apps {

namespace {

struct BenchArgs {
  ModelChoice model;
  std::string weights;
  std::vector<int64_t> batch_sizes = {64};
  std::vector<std::string> precisions = {"fp32"};
  std::vector<double> taus, stop_shares;
  std::string entropy_rule = "top10";
  std::string device = "auto";
  int warmup = 2, reps = 10, threads = 0, stream = 16;
  bool per_batch = false;
  std::string format = "md", output;
  bool no_weight_cache = false;
  bool train = false;
  bool peak = false;
  bool cuda_graphs = false;
  std::string profile;
  int profile_calls = 3;
};

// The flags as benchmark options, each checked before any work.
eval::BenchOptions bench_options(const BenchArgs& args) {
  eval::BenchOptions options;
  options.batch_sizes = args.batch_sizes;
  options.precisions.clear();
  for (const auto& p : args.precisions)
    options.precisions.push_back(eval::parse_precision(p, "--precision"));
  options.taus = args.taus;
  options.stop_shares = args.stop_shares;
  options.rule = models::parse_entropy_rule(args.entropy_rule, "--entropy");
  options.warmup = args.warmup;
  options.reps = args.reps;
  options.stream = args.stream;
  options.per_batch = args.per_batch;
  options.device = use_device(args.device, "--device");
  options.peak = args.peak;
  options.cuda_graphs = args.cuda_graphs;
  TVIT_CHECK(!args.cuda_graphs || options.device.is_cuda(),
             "--cuda-graphs: needs a CUDA device, found '", options.device.str(), "'");
  if (!args.profile.empty()) {
    const auto parent = std::filesystem::absolute(args.profile).parent_path();
    TVIT_CHECK(std::filesystem::is_directory(parent), "--profile: the folder '", parent.string(),
               "' does not exist");
    options.profile_calls = args.profile_calls;
  }
  return options;
}

void run_bench(const BenchArgs& args) {
  // A benchmark times one process: launched by torchrun or srun, rank 0 alone runs it.
  const auto env = train::dist_env();
  if (env.world_size > 1) {
    if (env.rank != 0) return;
    spdlog::warn(
        "bench: launched as {} processes ({}); it times one process, so rank 0 runs "
        "it alone and the other ranks exit",
        env.world_size, env.source);
  }
  set_threads(args.threads);
  const auto format = eval::parse_table_format(args.format, "--format");
  check_output(args.output);
  auto options = bench_options(args);

  std::optional<io::WeightsSource> weights;
  if (!args.weights.empty()) weights = io::read_weights(args.weights);
  const auto model_options = resolve_model(args.model, weights ? &*weights : nullptr);
  models::check_fits_in_memory(
      model_options, args.train ? 4 : 1, "model",
      options.batch_sizes.empty()
          ? 0
          : *std::max_element(options.batch_sizes.begin(), options.batch_sizes.end()),
      /*training=*/args.train, options.device);
  const auto model = models::make_model(model_options);
  if (weights) {
    const auto report = io::load_state_dict(*model, weights->tensors, weights->path);
    spdlog::info("weights '{}': {}", weights->path, report.summary());
  }
  model->set_weight_cache(!args.no_weight_cache);
  spdlog::info("model: {}", model_options.describe());
  const auto log = [](const std::string& line) { spdlog::info("{}", line); };
  // --train: the training step `train` runs with the DeiT recipe's defaults (loss, parameter
  // groups, mixing, clipping), after each case's stage and elastic rows.
  const train::TrainConfig recipe;
  const auto extra = args.train ? train::training_step_rows(*model, recipe) : eval::ExtraCalls();
  std::vector<eval::BenchRow> rows;
  if (args.profile.empty()) {
    rows = eval::run_benchmark(*model, options, log, extra);
  } else {
    // The profile folder appears whole or not at all: its traces are written into a temp folder.
    util::write_folder_atomic(args.profile, [&](const std::filesystem::path& dir) {
      const util::RemoveOnSignal cleanup(dir);  // a kill mid-profile leaves no temp folder
      options.trace_dir = dir.string();
      rows = eval::run_benchmark(*model, options, log, extra);
      std::vector<std::pair<std::string, eval::Profile>> profiles;
      for (const auto& row : rows) profiles.emplace_back(row.label(), row.profile);
      eval::profile_table(profiles, 15)
          .save((dir / "ops.md").string(), eval::TableFormat::kMarkdown);
      eval::profile_table(profiles, 0).save((dir / "ops.csv").string(), eval::TableFormat::kCsv);
    });
    spdlog::info(
        "wrote {}/ (ops.md: the top operators per row; ops.csv: all; a Chrome trace per row)",
        args.profile);
  }
  if (options.device.is_cpu()) spdlog::info("cpu kernels: {}", models::cpu::describe());
  const auto table = eval::bench_table(rows, eval::describe_run(options.device));
  table.write(std::cout, format);
  if (!args.output.empty()) {
    save_table(table, args.output);
    spdlog::info("wrote {}", args.output);
  }
}

}  // namespace

void add_bench_command(CLI::App& root) {
  auto args = std::make_shared<BenchArgs>();
  auto* cmd = root.add_subcommand(
      "bench", "Throughput of every stage alone and of elastic inference, on synthetic input");
  args->model.add_flags(*cmd, /*with_head_dim=*/true);
  cmd->add_option("--weights", args->weights,
                  "weights to load (file or folder); random weights when absent");
  cmd->add_option("--batch-sizes", args->batch_sizes, "comma-separated batch sizes")
      ->delimiter(',')
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--precision", args->precisions, "comma-separated: fp32, bf16 (autocast)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--taus", args->taus, "comma-separated thresholds for elastic rows")
      ->delimiter(',')
      ->check(any_number());
  cmd->add_option("--stop-shares", args->stop_shares,
                  "elastic rows at the thresholds where these shares of the batch stop at stage 0 "
                  "(e.g. 0.5)")
      ->delimiter(',')
      ->check(in_range(0, 1));
  cmd->add_option("--stream", args->stream,
                  "batches in each row's call (cycled from four distinct ones): elastic rows push "
                  "them through one set of stage queues, so later stages run full batches")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_flag("--per-batch", args->per_batch,
                "also elastic rows without regrouping (elastic_per_batch: each batch's undecided "
                "images alone), timed in the same rounds");
  cmd->add_flag("--train", args->train,
                "add a training-step row: train's step on the DeiT recipe (Mixup / CutMix, every "
                "stage's loss, backward, clipping, AdamW over its two parameter groups)");
  cmd->add_flag("--peak", args->peak,
                "also measure the device's GEMM peak per precision; rows report the share reached");
  cmd->add_flag("--cuda-graphs", args->cuda_graphs,
                "stage and elastic rows replay CUDA graphs of the stage forwards (GPU only)");
  cmd->add_option("--profile", args->profile,
                  "folder to write per-operator profiles to (ops.md, ops.csv, Chrome traces), "
                  "one per row, taken after the timing");
  cmd->add_option("--profile-calls", args->profile_calls, "calls profiled per row")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--entropy", args->entropy_rule, "entropy rule: top10 or full")
      ->capture_default_str();
  add_device_flag(*cmd, args->device);
  cmd->add_option("--warmup", args->warmup, "untimed calls first")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--reps", args->reps, "timed calls; the median is reported")
      ->check(at_least(1))
      ->capture_default_str();
  add_threads_flag(*cmd, args->threads);
  cmd->add_option("--format", args->format, "stdout format: md, csv or json")
      ->capture_default_str();
  add_output_flag(*cmd, args->output);
  cmd->add_flag("--no-weight-cache", args->no_weight_cache,
                "re-gather the sliced weights on every forward (to measure the cache)");
  cmd->callback([args] { run_bench(*args); });
}

}  // namespace thinkingvit::apps
