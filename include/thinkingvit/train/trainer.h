#pragma once
// Joint multi-stage training with the DeiT recipe: one epoch loop readable top to bottom,
// per-stage losses and accuracies, EMA, atomic checkpoints and exact resume.

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "thinkingvit/data/dataset.h"
#include "thinkingvit/train/config.h"
#include "thinkingvit/train/hooks.h"

namespace thinkingvit::train {

struct Datasets {
  std::shared_ptr<const data::Dataset> train, val;
};

// Opens the configured train and validation sets and checks them against the model
// (channels, classes); errors name the config key.
Datasets open_datasets(const TrainConfig& config);
// The validation set alone (eval, sweep): the training split is never opened.
std::shared_ptr<const data::Dataset> open_val_dataset(const TrainConfig& config);

struct EpochSummary {
  int64_t epoch = 0;
  double lr = 0;
  double loss = 0;
  std::vector<double> stage_loss;    // mean over the steps that ran each stage
  std::vector<int64_t> stage_steps;  // steps that ran each stage, per process
  double images_per_s = 0;
  double data_wait_share = 0;  // share of the epoch spent waiting for batches
  std::vector<double> val_top1, val_top5, ema_top1;
};

struct TrainOptions {
  bool resume = false;             // continue from the run folder's last checkpoint
  // Resume when the run folder holds a checkpoint, else start fresh (an earlier attempt's logs
  // without a checkpoint are replaced): the one command line that a torchrun restart or a Slurm
  // requeue can run again and again.
  bool auto_resume = false;
  bool overwrite = false;  // start again in a folder that holds a run (else an Error)
  TrainHooks hooks;        // fault points for tests (none by default)
};

// Thrown by train() when SIGTERM or SIGUSR1 stopped the run: the step finished and a checkpoint
// was written (its folder is in the message); train() with resume continues exactly. `train`
// exits with kExitStopped then.
class Stopped : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
constexpr int kExitStopped = 75;  // EX_TEMPFAIL: nothing failed, run again to continue

// Runs the whole schedule; returns one summary per epoch run in this call. Writes into
// config.run.output_dir: config.yaml, train.log, metrics.jsonl, checkpoints/, best/.
std::vector<EpochSummary> train(const TrainConfig& config, const TrainOptions& options = {});

}  // namespace thinkingvit::train
