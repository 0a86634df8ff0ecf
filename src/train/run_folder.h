#pragma once
// A run folder: its paths, checkpoint naming, writing (atomic, keep-last-k, LAST) and reading,
// the checkpoints a resume tries in order, and metrics.jsonl cut back to a checkpoint.

#include <torch/optim/optimizer.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/train/config.h"
#include "thinkingvit/train/recipe.h"

namespace thinkingvit::train {

struct RunPaths {
  std::filesystem::path root, checkpoints, best, metrics, log, config;
  explicit RunPaths(const std::string& dir)
      : root(dir),
        checkpoints(root / "checkpoints"),
        best(root / "best"),
        metrics(root / "metrics.jsonl"),
        log(root / "train.log"),
        config(root / "config.yaml") {}
};

// Where a run stands: the last finished epoch and how far the next one got.
struct TrainState {
  int64_t epoch = -1;  // last finished epoch
  int64_t batch = 0;   // batches of epoch + 1 done: a mid-epoch checkpoint (0 at a boundary)
  int64_t step = 0;    // optimizer steps so far
  double best_top1 = -1;
  // Mid-epoch: every rank's running totals of the unfinished epoch, rank 0's first.
  std::vector<std::vector<double>> partial;
};

void write_text_atomic(const std::filesystem::path& path, const std::string& text);

// "epoch_0003": epoch 3 finished; "epoch_0004_batch_000120": 120 batches of epoch 4 done.
std::string checkpoint_name(const TrainState& state);
// Where a checkpoint folder's name puts it in the run, (epoch, batch) with a finished epoch
// after its mid-epoch checkpoints; nullopt for any other name.
std::optional<std::pair<int64_t, int64_t>> checkpoint_position(const std::string& name);
// The names of the folders in `dir` that start with `prefix`, sorted.
std::vector<std::string> folders_named(const std::filesystem::path& dir, const std::string& prefix);
// The checkpoint folders of a run, oldest first.
std::vector<std::string> checkpoint_folders(const std::filesystem::path& dir);

// checkpoints/<checkpoint_name(state)>, written whole or not at all, then LAST, then the oldest
// folders beyond keep_last removed. `midway` runs while the folder is half written (a test's
// fault point).
void save_checkpoint(const RunPaths& paths, const TrainConfig& config,
                     const std::vector<std::string>& label_names, models::ElasticModel& model,
                     ModelEma* ema, torch::optim::Optimizer& optimizer, const TrainState& state,
                     int keep_last, const std::function<void()>& midway);
TrainState load_checkpoint_folder(const std::filesystem::path& dir, models::ElasticModel& model,
                                  ModelEma* ema, torch::optim::Optimizer& optimizer,
                                  const c10::Device& device);
// The checkpoints to try, best first: the one LAST names (without a readable LAST: the newest),
// then the older ones, newest first.
std::vector<std::string> checkpoint_candidates(const RunPaths& paths);
// Whether `paths` holds a checkpoint that --resume would try (--auto-resume's question).
bool has_checkpoint(const RunPaths& paths);

// Removes the metrics lines written past the checkpoint `state` (a killed run's, which the
// resumed run writes again), so that no line appears twice: epoch lines after state.epoch, and
// step lines of the batches after the checkpoint's.
void drop_metrics_after(const std::filesystem::path& path, const TrainState& state);

}  // namespace thinkingvit::train
