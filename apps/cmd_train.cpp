// thinkingvit train: joint multi-stage training from a YAML configuration.

#include <spdlog/spdlog.h>

#include "common.h"
#include "thinkingvit/train/config.h"
#include "thinkingvit/train/distributed.h"
#include "thinkingvit/train/trainer.h"

namespace thinkingvit::apps {

namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string output_dir;
  bool resume = false;
  bool auto_resume = false;
  bool overwrite = false;
};

void run_train(const TrainArgs& args) {
  auto overrides = args.overrides;
  if (!args.output_dir.empty()) overrides.push_back("run.output_dir=" + args.output_dir);
  const auto config = train::load_training_config(args.config, overrides);
  set_threads(config.run.threads);
  train::TrainOptions options;
  options.resume = args.resume;
  options.auto_resume = args.auto_resume;
  options.overwrite = args.overwrite;
  options.hooks = train::hooks_from_environment();  // THINKINGVIT_KILL_AT, for the tests
  const auto history = train::train(config, options);
  if (!history.empty() && train::dist_env().rank == 0) {
    spdlog::info("done: {} epochs, run folder {}", history.size(), config.run.output_dir);
  }
}

}  // namespace

void add_train_command(CLI::App& root) {
  auto args = std::make_shared<TrainArgs>();
  auto* cmd = root.add_subcommand("train", "Train a ThinkingViT from a YAML configuration");
  cmd->add_option("--config", args->config, "YAML configuration (see configs/)")->required();
  cmd->add_option("--set", args->overrides,
                  "override a key, e.g. --set optimizer.lr=1e-3 (repeatable; wins over the YAML)");
  cmd->add_option("--output-dir", args->output_dir,
                  "run folder (same as --set run.output_dir=DIR)");
  auto* resume =
      cmd->add_flag("--resume", args->resume, "continue from the run folder's last checkpoint");
  auto* auto_resume = cmd->add_flag(
      "--auto-resume", args->auto_resume,
      "continue from the run folder's last checkpoint when it holds one, else start fresh: the "
      "command line for torchrun --max-restarts and Slurm requeues");
  auto_resume->excludes(resume);
  cmd->add_flag("--overwrite", args->overwrite,
                "start again in a run folder that already holds a run (its checkpoints, best/, "
                "logs and metrics are removed)")
      ->excludes(resume)
      ->excludes(auto_resume);
  cmd->callback([args] { run_train(*args); });
}

}  // namespace thinkingvit::apps
