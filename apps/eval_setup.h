#pragma once
// What `eval` and `sweep` share: a model with its weights and the validation data, from a run
// folder (its config.yaml and best/ weights) or from --config and --weights.

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "thinkingvit/data/loader.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/train/config.h"

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
};

EvalSetup make_eval_setup(const EvalSource& source);

}  // namespace thinkingvit::apps
