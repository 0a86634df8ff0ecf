#pragma once
// What `eval` and `sweep` share: a model with its weights and the validation data, from a run
// folder (its config.yaml and best/ weights) or from --config and --weights. Under torchrun or
// srun each process takes its own GPU and a shard of the validation set (images r, r + W, ...),
// and the shards' records are gathered so that every rank holds what one process would.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "thinkingvit/data/loader.h"
#include "thinkingvit/eval/evaluate.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/train/config.h"
#include "thinkingvit/train/distributed.h"

namespace thinkingvit::apps {

struct EvalSource {
  std::string run, config, weights;
  std::vector<std::string> overrides;
  bool ema = false;
  int threads = 0;
  std::string device;  // empty: the config's run.device
  bool cuda_graphs = false;
  void add_flags(CLI::App& app);
};

struct EvalSetup {
  train::TrainConfig config;
  std::shared_ptr<models::ElasticModel> model;
  std::shared_ptr<const data::Dataset> val;
  std::unique_ptr<data::DataLoader> loader;
  c10::Device device = c10::Device(c10::kCPU);
  std::string weights_path;
  std::string preprocessing;  // one line describing the eval transform
  std::unique_ptr<train::Distributed> dist;  // world size 1: no process group
  std::vector<int64_t> indices;               // this process's validation images

  bool is_main() const { return dist->is_main(); }
  // Batches in this process's pass.
  int64_t loader_batches() const {
    const auto b = config.data.eval_batch_size;
    return (static_cast<int64_t>(indices.size()) + b - 1) / b;
  }
  // One pass over this process's images (see eval::evaluate), then, with several processes,
  // every shard's records put together in image order on every rank: exact, as each value is
  // summed with zeros only, so the records equal one process's pass over the whole set.
  eval::StageRecords evaluate(models::EntropyRule rule, bool bf16,
                              const std::function<void(int64_t, int64_t)>& progress = {},
                              const std::function<void(const at::Tensor&)>& on_batch = {});
};

EvalSetup make_eval_setup(const EvalSource& source);

}  // namespace thinkingvit::apps
