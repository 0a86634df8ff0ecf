#pragma once
// Pieces every subcommand shares: runtime set-up, model resolution, number formatting.

#include <c10/core/Device.h>
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/model_options.h"

#include "thinkingvit/eval/table.h"

namespace thinkingvit::apps {

// Where the architecture comes from: --preset, --config, or the weights themselves.
struct ModelChoice {
  std::string preset;
  std::string config;
  int64_t head_dim = 64;  // used only when deducing the architecture from tensor shapes
  void add_flags(CLI::App& app, bool with_head_dim);
};

// --preset / --config win; else the folder's config.json; else deduced from the tensors.
models::ModelOptions resolve_model(const ModelChoice& choice, const io::WeightsSource* weights);

// A model with its weights: the architecture as resolve_model finds it, every tensor loaded (a
// warning per tensor that did not load exactly; `strict`: an error), on `device`, in eval mode.
struct LoadedModel {
  models::ModelOptions options;
  std::shared_ptr<models::ElasticModel> model;
};
LoadedModel load_model(const std::string& weights, const ModelChoice& choice, bool strict,
                       const c10::Device& device);

// --device: auto (the current GPU when one is visible, else the CPU), cpu, cuda or cuda:N.
void add_device_flag(CLI::App& app, std::string& device);
// The device a --device (or run.device) value names, made the process's current CUDA device.
c10::Device use_device(const std::string& name, const std::string& flag);

// Intra-op threads (LibTorch defaults to 1 here); 0 means one per core.
void set_threads(int threads);
// --threads N (N >= 0); `zero_means` says what 0 stands for in --help.
void add_threads_flag(CLI::App& app, int& threads, const std::string& zero_means = "one per core");

// The EMA weights beside a weights file or inside a weights folder: DIR/ema.safetensors.
std::string ema_weights_path(const std::string& weights);

// --output FILE of a table command, the same in every command: the format follows the extension
// (.md, .csv or .json). check_output fails on any other name; call it before the work.
void add_output_flag(CLI::App& app, std::string& output);
void check_output(const std::string& path);
// Fails unless the folder that is to hold `path` exists (call it before the work).
void check_output_folder(const std::string& path, const std::string& flag);
// Writes `table` to an --output path, atomically.
void save_table(const eval::Table& table, const std::string& path);

// The "heads" cell of a stage's row: a ViT stage's head count as a number, a Swin round's heads
// per level as text ("3-3-6-12").
eval::Table::Cell heads_cell(const models::ModelOptions& options, int64_t stage);

// 1253683200 -> "1,253,683,200"
std::string with_commas(int64_t value);

// Checks for number flags (CLI11 validators; a list flag checks each value). A failure is one
// line naming the flag: "--threads: expected a number >= 0, found '-1'". NaN never passes.
CLI::Validator at_least(double min);
CLI::Validator positive();
CLI::Validator in_range(double min, double max);
CLI::Validator fraction();  // in (0, 1]
// Any number but NaN (as a threshold, infinity stops every image at stage 0).
CLI::Validator any_number();

}  // namespace thinkingvit::apps
