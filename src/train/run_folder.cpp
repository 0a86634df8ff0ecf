#include "run_folder.h"

#include <spdlog/spdlog.h>
#include <torch/serialize.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::train {

namespace fs = std::filesystem;

void write_text_atomic(const fs::path& path, const std::string& text) {
  util::write_file_atomic(path.string(), [&](std::ostream& out) { out << text; });
}

// "epoch_0003": epoch 3 finished; "epoch_0004_batch_000120": 120 batches of epoch 4 done.
std::string checkpoint_name(const TrainState& state) {
  char name[64];
  if (state.batch == 0) {
    std::snprintf(name, sizeof name, "epoch_%04lld", static_cast<long long>(state.epoch));
  } else {
    std::snprintf(name, sizeof name, "epoch_%04lld_batch_%06lld",
                  static_cast<long long>(state.epoch + 1), static_cast<long long>(state.batch));
  }
  return name;
}

// Where a checkpoint folder's name puts it in the run, (epoch, batch) with a finished epoch
// after its mid-epoch checkpoints; nullopt for any other name.
std::optional<std::pair<int64_t, int64_t>> checkpoint_position(const std::string& name) {
  long long epoch = 0, batch = 0;
  int used = 0;
  const auto whole = [&] { return used == static_cast<int>(name.size()); };
  if (std::sscanf(name.c_str(), "epoch_%lld_batch_%lld%n", &epoch, &batch, &used) == 2 && whole() &&
      batch > 0) {
    return std::make_pair<int64_t, int64_t>(epoch, batch);
  }
  used = 0;
  if (std::sscanf(name.c_str(), "epoch_%lld%n", &epoch, &used) == 1 && whole()) {
    return std::make_pair<int64_t, int64_t>(epoch, std::numeric_limits<int64_t>::max());
  }
  return std::nullopt;
}

// The names of the folders in `dir` that start with `prefix`, sorted.
std::vector<std::string> folders_named(const fs::path& dir, const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (e.is_directory() && util::starts_with(name, prefix)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The checkpoint folders of a run, oldest first.
std::vector<std::string> checkpoint_folders(const fs::path& dir) {
  std::vector<std::string> names;
  for (auto& name : folders_named(dir, "epoch_")) {
    if (checkpoint_position(name)) names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    return *checkpoint_position(a) < *checkpoint_position(b);
  });
  return names;
}

// `midway` runs while the folder is half written (a test's kill point).
void save_checkpoint(const RunPaths& paths, const TrainConfig& config,
                     const std::vector<std::string>& label_names, models::ElasticModel& model,
                     ModelEma* ema, torch::optim::Optimizer& optimizer, const TrainState& state,
                     int keep_last, const std::function<void()>& midway) {
  const std::string name = checkpoint_name(state);
  fs::create_directories(paths.checkpoints);
  for (const auto& stale : folders_named(paths.checkpoints, ".tmp-epoch_")) {  // killed writers'
    std::error_code ignored;
    fs::remove_all(paths.checkpoints / stale, ignored);
  }
  util::write_folder_atomic((paths.checkpoints / name).string(), [&](const fs::path& dir) {
    io::save_weights(model, (dir / "model.safetensors").string());
    midway();
    if (ema) io::save_weights(ema->module(), (dir / "ema.safetensors").string());
    // Through our checked atomic writer: a failed write is an Error, never an abort inside
    // LibTorch's archive writer.
    util::write_file_atomic((dir / "optimizer.pt").string(),
                            [&](std::ostream& out) { torch::save(optimizer, out); });
    nlohmann::json j = {
        {"epoch", state.epoch}, {"step", state.step}, {"best_top1", state.best_top1}};
    if (state.batch > 0) {  // mid-epoch: where, and every rank's running totals
      j["batch"] = state.batch;
      j["world_size"] = state.partial.size();
      j["partial"] = state.partial;
    }
    write_text_atomic(dir / "state.json", j.dump(2) + "\n");
    write_text_atomic(dir / "config.yaml", to_yaml(config));
    write_text_atomic(dir / "config.json", io::config_json(config.model.options, label_names));
  });
  write_text_atomic(paths.checkpoints / "LAST", name + "\n");
  // keep-last-k: remove the oldest folders, now that the new one is complete.
  const auto folders = checkpoint_folders(paths.checkpoints);
  for (size_t i = 0; keep_last > 0 && i + keep_last < folders.size(); ++i)
    fs::remove_all(paths.checkpoints / folders[i]);
}

TrainState load_checkpoint_folder(const fs::path& dir, models::ElasticModel& model, ModelEma* ema,
                                  torch::optim::Optimizer& optimizer, const c10::Device& device) {
  io::LoadOptions strict;
  strict.strict = true;
  io::load_state_dict(model, io::read_safetensors((dir / "model.safetensors").string()).tensors,
                      (dir / "model.safetensors").string(), strict);
  if (ema && fs::exists(dir / "ema.safetensors")) {
    io::load_state_dict(ema->module(),
                        io::read_safetensors((dir / "ema.safetensors").string()).tensors,
                        (dir / "ema.safetensors").string(), strict);
  }
  // Onto this process's own device: the saved tensors remember rank 0's.
  torch::load(optimizer, (dir / "optimizer.pt").string(), device);
  const auto state_path = (dir / "state.json").string();
  std::ifstream in(state_path);
  const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  TVIT_CHECK(j.is_object() && j.contains("epoch") && j.contains("step") && j.contains("best_top1"),
             "'", state_path, "': not a checkpoint state (JSON with epoch, step and best_top1)");
  TrainState state;
  state.epoch = j.at("epoch").get<int64_t>();
  state.step = j.at("step").get<int64_t>();
  state.best_top1 = j.at("best_top1").get<double>();
  if (j.contains("batch")) state.batch = j.at("batch").get<int64_t>();
  if (j.contains("partial"))
    state.partial = j.at("partial").get<std::vector<std::vector<double>>>();
  TVIT_CHECK(state.batch >= 0 && (state.batch == 0 || !state.partial.empty()), "'",
             (dir / "state.json").string(), "': a mid-epoch checkpoint without its totals");
  return state;
}

// The checkpoints to try, best first: the one LAST names (without a readable LAST: the newest),
// then the older ones, newest first.
std::vector<std::string> checkpoint_candidates(const RunPaths& paths) {
  std::ifstream last(paths.checkpoints / "LAST");
  std::string name;
  const bool named = last && (last >> name) && checkpoint_position(name);
  const auto folders = fs::is_directory(paths.checkpoints) ? checkpoint_folders(paths.checkpoints)
                                                           : std::vector<std::string>{};
  TVIT_CHECK(named || !folders.empty(), "--resume: no checkpoint in '", paths.checkpoints.string(),
             "' (expected a LAST file written by an earlier run)");
  std::vector<std::string> candidates;
  if (named) {
    candidates.push_back(name);
  } else {
    spdlog::warn("'{}' is missing or damaged; trying the checkpoints newest first",
                 (paths.checkpoints / "LAST").string());
  }
  for (auto it = folders.rbegin(); it != folders.rend(); ++it) {  // newest first
    if (!named || *checkpoint_position(*it) < *checkpoint_position(name)) candidates.push_back(*it);
  }
  return candidates;
}

// Whether `paths` holds a checkpoint that --resume would try (--auto-resume's question).
bool has_checkpoint(const RunPaths& paths) {
  std::error_code error;
  return fs::exists(paths.checkpoints / "LAST", error) ||
         (fs::is_directory(paths.checkpoints, error) &&
          !checkpoint_folders(paths.checkpoints).empty());
}

// Removes the metrics lines written past the checkpoint `state` (a killed run's, which the
// resumed run writes again), so that no line appears twice: epoch lines after state.epoch, and
// step lines of the batches after the checkpoint's.
void drop_metrics_after(const fs::path& path, const TrainState& state) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  int64_t dropped = 0;
  const auto integer = [](const nlohmann::json& j, const char* key, int64_t fallback) {
    return j.contains(key) && j[key].is_number_integer() ? j[key].get<int64_t>() : fallback;
  };
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) {
      const int64_t epoch = integer(j, "epoch", -1);
      const bool step_line = j.contains("type") && j["type"] == "step";
      // A step line names the batch it followed (older runs' lines do not: dropped with their
      // epoch's mid-epoch part).
      const bool past =
          step_line ? epoch > state.epoch + 1 || (epoch == state.epoch + 1 &&
                                                  integer(j, "batch", state.batch) >= state.batch)
                    : epoch > state.epoch;
      if (past) {
        ++dropped;
        continue;
      }
    }
    kept += line + "\n";
  }
  in.close();
  if (dropped == 0) return;
  write_text_atomic(path, kept);
  spdlog::info("metrics.jsonl: dropped {} line(s) past the checkpoint, to be written again",
               dropped);
}

}  // namespace thinkingvit::train
