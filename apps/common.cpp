#include "common.h"

#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <functional>
#include <sstream>

#include "thinkingvit/eval/table.h"
#include "thinkingvit/io/model_config.h"
#include "thinkingvit/train/config.h"
#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/limits.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::apps {

void ModelChoice::add_flags(CLI::App& app, bool with_head_dim) {
  auto* p =
      app.add_option("--preset", preset, "architecture by name (see `thinkingvit macs --list`)");
  auto* c =
      app.add_option("--config", config, "YAML file whose `model:` section sets the architecture");
  p->excludes(c);
  if (with_head_dim) {
    app.add_option("--head-dim", head_dim,
                   "head width assumed when the architecture is deduced from the weights")
        ->capture_default_str();
  }
}

models::ModelOptions resolve_model(const ModelChoice& choice, const io::WeightsSource* weights) {
  if (!choice.preset.empty()) return models::model_preset(choice.preset);
  if (!choice.config.empty()) return io::model_options_from_yaml(choice.config);
  TVIT_CHECK(weights != nullptr, "no architecture given: pass --preset NAME or --config FILE");
  if (weights->options) return *weights->options;
  return io::options_from_state(weights->tensors, weights->path, choice.head_dim);
}

namespace {

CLI::Validator number_check(std::string description, const std::function<bool(double)>& accepts) {
  return CLI::Validator(
      [description, accepts](std::string& text) -> std::string {
        const auto value = util::parse_number(text);
        return value && accepts(*value) ? "" : "expected " + description + ", found '" + text + "'";
      },
      "");  // no description: --help would print it inside the type ("INT:a number >= 0=0")
}

}  // namespace

CLI::Validator at_least(double min) {
  std::ostringstream description;
  description << "a number >= " << min;
  return number_check(description.str(), [min](double v) { return v >= min; });
}

CLI::Validator positive() {
  return number_check("a number > 0", [](double v) { return v > 0; });
}

CLI::Validator in_range(double min, double max) {
  std::ostringstream description;
  description << "a number in [" << min << ", " << max << "]";
  return number_check(description.str(), [min, max](double v) { return v >= min && v <= max; });
}

CLI::Validator fraction() {
  return number_check("a number in (0, 1]", [](double v) { return v > 0 && v <= 1; });
}

CLI::Validator any_number() {
  return number_check("a number", [](double) { return true; });
}

void add_device_flag(CLI::App& app, std::string& device) {
  app.add_option("--device", device, "auto (a GPU when one is visible), cpu, cuda or cuda:N")
      ->capture_default_str();
}

c10::Device use_device(const std::string& name, const std::string& flag) {
  const auto device =
      name == "auto" ? compat::resolve_auto_device(flag) : compat::parse_device(name, flag);
  compat::set_current_device(device);
  return device;
}

void set_threads(int threads) {
  TVIT_CHECK(threads <= util::kMaxThreads, "--threads: expects at most ", util::kMaxThreads,
             ", found ", threads);
  if (threads <= 0) threads = util::usable_cores();
  at::set_num_threads(threads);
}

void add_threads_flag(CLI::App& app, int& threads, const std::string& zero_means) {
  app.add_option("--threads", threads, "intra-op threads (0: " + zero_means + ")")
      ->check(at_least(0))
      ->capture_default_str();
}

std::string ema_weights_path(const std::string& weights) {
  const std::filesystem::path dir = std::filesystem::is_directory(weights)
                                        ? std::filesystem::path(weights)
                                        : std::filesystem::path(weights).parent_path();
  return (dir / "ema.safetensors").string();
}

void add_output_flag(CLI::App& app, std::string& output) {
  app.add_option("--output", output, "also write the table to a .md, .csv or .json file");
}

void check_output_folder(const std::string& path, const std::string& flag) {
  if (path.empty()) return;
  const auto folder = std::filesystem::path(path).parent_path();
  std::error_code error;
  TVIT_CHECK(folder.empty() || std::filesystem::is_directory(folder, error), flag, " '", path,
             "': '", folder.string(), "' is not a folder");
}

void check_output(const std::string& path) {
  if (path.empty()) return;
  eval::table_format_for_path(path, "--output");
  check_output_folder(path, "--output");
}

void save_table(const eval::Table& table, const std::string& path) {
  table.save(path, eval::table_format_for_path(path, "--output"));
}

eval::Table::Cell heads_cell(const models::ModelOptions& options, int64_t stage) {
  // A number where a stage's heads are one count, the text ("3-3-6-12") otherwise.
  const auto heads = options.stage_heads(stage);
  if (!heads.empty() &&
      std::all_of(heads.begin(), heads.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return static_cast<int64_t>(std::stoll(heads));
  }
  return heads;
}

std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

LoadedModel load_model(const std::string& weights_path, const ModelChoice& choice, bool strict,
                       const c10::Device& device) {
  const auto weights = io::read_weights(weights_path);
  LoadedModel out{resolve_model(choice, &weights), nullptr};
  spdlog::info("model: {}", out.options.describe());
  models::check_fits_in_memory(out.options, 1, "model", 0, false, device);
  out.model = models::make_model(out.options);
  io::LoadOptions load;
  load.strict = strict;
  const auto report = io::load_state_dict(*out.model, weights.tensors, weights.path, load);
  spdlog::info("weights '{}': {}", weights.path, report.summary());
  for (const auto& t : report.tensors) {
    if (t.status != io::TensorStatus::kLoaded) {
      spdlog::warn("  {} {} (file {}, model {})", io::to_string(t.status), t.name,
                   shape_str(t.file_shape), shape_str(t.model_shape));
    }
  }
  out.model->to(device);
  out.model->eval();
  return out;
}

}  // namespace thinkingvit::apps
