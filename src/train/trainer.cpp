#include "thinkingvit/train/trainer.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "thinkingvit/data/loader.h"
#include "thinkingvit/data/mixing.h"
#include "thinkingvit/data/sampler.h"
#include "thinkingvit/eval/evaluate.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/train/distributed.h"
#include "thinkingvit/train/recipe.h"
#include "thinkingvit/util/compat.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "thinkingvit/util/progress.h"

namespace thinkingvit::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

data::SyntheticSpec synthetic_spec(const TrainConfig& c) {
  const auto& m = c.model.options;
  return {static_cast<int>(m.image_size()), static_cast<int>(m.in_channels()), m.num_classes(),
          c.run.seed};
}

// A split against the model: channels (gray into RGB allowed) and classes; errors name the key.
void check_against_model(const data::Dataset& set, const TrainConfig& c) {
  const auto& m = c.model.options;
  TVIT_CHECK(set.channels() == m.in_channels() || (set.channels() == 1 && m.in_channels() == 3),
             "data.dataset '", c.data.dataset, "' has ", set.channels(),
             "-channel images, model.in_channels is ", m.in_channels());
  TVIT_CHECK(set.num_classes() <= m.num_classes(), "data.dataset '", c.data.dataset, "' has ",
             set.num_classes(), " classes, model.num_classes is ", m.num_classes());
}

}  // namespace

std::shared_ptr<const data::Dataset> open_val_dataset(const TrainConfig& c) {
  TVIT_CHECK(c.augment.eval.size == c.model.options.image_size(), "augment.eval.size (",
             c.augment.eval.size, ") must equal model.image_size ", c.model.options.image_size());
  auto val = data::open_split(c.data, data::Split::kVal, synthetic_spec(c));
  check_against_model(*val, c);
  return val;
}

Datasets open_datasets(const TrainConfig& c) {
  TVIT_CHECK(c.augment.train.size == c.model.options.image_size() &&
                 c.augment.eval.size == c.model.options.image_size(),
             "augment.train.size / augment.eval.size (", c.augment.train.size, " / ",
             c.augment.eval.size, ") must equal model.image_size ", c.model.options.image_size());
  Datasets out;
  out.train = data::open_split(c.data, data::Split::kTrain, synthetic_spec(c));
  check_against_model(*out.train, c);
  out.val = open_val_dataset(c);
  return out;
}

namespace {

struct RunPaths {
  fs::path root, checkpoints, best, metrics, log, config;
  explicit RunPaths(const std::string& dir)
      : root(dir),
        checkpoints(root / "checkpoints"),
        best(root / "best"),
        metrics(root / "metrics.jsonl"),
        log(root / "train.log"),
        config(root / "config.yaml") {}
};

void write_text_atomic(const fs::path& path, const std::string& text) {
  util::write_file_atomic(path.string(), [&](std::ostream& out) { out << text; });
}

struct TrainState {
  int64_t epoch = -1;  // last finished epoch
  int64_t step = 0;    // optimizer steps so far
  double best_top1 = -1;
};

// Writes a folder atomically: fill a temp folder, then rename it into place.
void write_folder_atomic(const fs::path& target, const std::function<void(const fs::path&)>& fill) {
  const fs::path tmp = target.parent_path() / (".tmp-" + target.filename().string());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  fill(tmp);
  const fs::path old = target.parent_path() / (".old-" + target.filename().string());
  fs::remove_all(old);
  if (fs::exists(target)) fs::rename(target, old);
  fs::rename(tmp, target);
  fs::remove_all(old);
}

void save_checkpoint(const RunPaths& paths, const TrainConfig& config,
                     const std::vector<std::string>& label_names, models::ThinkingViT& model,
                     ModelEma* ema, torch::optim::Optimizer& optimizer, const TrainState& state,
                     int keep_last) {
  char name[32];
  std::snprintf(name, sizeof name, "epoch_%04lld", static_cast<long long>(state.epoch));
  fs::create_directories(paths.checkpoints);
  write_folder_atomic(paths.checkpoints / name, [&](const fs::path& dir) {
    io::save_weights(model, (dir / "model.safetensors").string());
    if (ema) io::save_weights(ema->module(), (dir / "ema.safetensors").string());
    torch::save(optimizer, (dir / "optimizer.pt").string());
    nlohmann::json j = {
        {"epoch", state.epoch}, {"step", state.step}, {"best_top1", state.best_top1}};
    write_text_atomic(dir / "state.json", j.dump(2) + "\n");
    write_text_atomic(dir / "config.yaml", to_yaml(config));
    write_text_atomic(dir / "config.json", io::config_json(config.model.options, label_names));
  });
  write_text_atomic(paths.checkpoints / "LAST", std::string(name) + "\n");
  // keep-last-k: remove the oldest epoch folders.
  std::vector<fs::path> folders;
  for (const auto& e : fs::directory_iterator(paths.checkpoints)) {
    if (e.is_directory() && e.path().filename().string().rfind("epoch_", 0) == 0)
      folders.push_back(e.path());
  }
  std::sort(folders.begin(), folders.end());
  for (size_t i = 0; keep_last > 0 && i + keep_last < folders.size(); ++i)
    fs::remove_all(folders[i]);
}

TrainState load_checkpoint(const RunPaths& paths, models::ThinkingViT& model, ModelEma* ema,
                           torch::optim::Optimizer& optimizer, const c10::Device& device) {
  std::ifstream last(paths.checkpoints / "LAST");
  std::string name;
  TVIT_CHECK(last && (last >> name), "--resume: no checkpoint in '", paths.checkpoints.string(),
             "' (expected a LAST file written by an earlier run)");
  const fs::path dir = paths.checkpoints / name;
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
  std::ifstream in(dir / "state.json");
  const auto j = nlohmann::json::parse(in);
  TrainState state;
  state.epoch = j.at("epoch").get<int64_t>();
  state.step = j.at("step").get<int64_t>();
  state.best_top1 = j.at("best_top1").get<double>();
  spdlog::info("resumed from {} (epoch {}, step {})", dir.string(), state.epoch, state.step);
  return state;
}

std::string join(const std::vector<double>& v, int digits) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v[i]);
    out += (i ? "/" : "") + std::string(buf);
  }
  return out;
}

// Top-1 / top-5 percentages per stage over every rank's share of the validation set.
void reduce_accuracy(const eval::StageRecords& records, Distributed& dist,
                     std::vector<double>& top1, std::vector<double>& top5) {
  const auto stages = static_cast<size_t>(records.correct1.size(0));
  std::vector<double> counts(2 * stages + 1);
  for (size_t s = 0; s < stages; ++s) {
    counts[s] = static_cast<double>(records.correct1[s].sum().item<int64_t>());
    counts[stages + s] = static_cast<double>(records.correct5[s].sum().item<int64_t>());
  }
  counts[2 * stages] = static_cast<double>(records.num_samples);
  counts = dist.sum(counts);
  top1.assign(stages, 0.0);
  top5.assign(stages, 0.0);
  for (size_t s = 0; s < stages; ++s) {
    top1[s] = 100.0 * counts[s] / counts[2 * stages];
    top5[s] = 100.0 * counts[stages + s] / counts[2 * stages];
  }
}

}  // namespace

std::vector<EpochSummary> train(const TrainConfig& config_in, const TrainOptions& train_options) {
  TrainConfig config = config_in;
  const bool cuda =
      config.run.device == "cuda" || (config.run.device == "auto" && compat::cuda_available());

  // ---- processes: rank 0 alone writes logs, metrics and checkpoints ----
  const auto env = dist_env();
  // Each process works on GPU LOCAL_RANK, made current before any CUDA work (NCCL included).
  const c10::Device device =
      cuda ? c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank))
           : c10::Device(c10::kCPU);
  if (cuda) {
    TVIT_CHECK(env.local_rank < compat::cuda_device_count(), "run.device cuda: LOCAL_RANK ",
               env.local_rank, " but only ", compat::cuda_device_count(), " GPU(s) are visible");
  }
  compat::set_current_device(device);
  compat::set_tf32(config.precision.tf32);
  const auto& dc = config.distributed;
  Distributed dist(env, dc.backend == "auto" ? (cuda ? "nccl" : "gloo") : dc.backend,
                   std::chrono::milliseconds(static_cast<int64_t>(dc.timeout_s * 1000)),
                   dc.bucket_mb, device);
  const bool main_rank = dist.is_main();
  if (config.run.threads > 0) {
    at::set_num_threads(config.run.threads);
  } else if (dist.enabled()) {  // share the cores among this machine's processes
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    at::set_num_threads(std::max(1, cores / env.local_world_size));
  }
  const RunPaths paths(config.run.output_dir);
  struct LogGuard {  // the file sink (rank 0) or a quieter console (other ranks), undone at exit
    std::shared_ptr<spdlog::sinks::sink> sink;
    spdlog::level::level_enum level = spdlog::default_logger()->level();
    ~LogGuard() {
      auto& sinks = spdlog::default_logger()->sinks();
      if (sink) sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
      spdlog::default_logger()->set_level(level);
    }
  } log_guard;
  if (main_rank) {
    fs::create_directories(paths.root);
    log_guard.sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(paths.log.string());
    spdlog::default_logger()->sinks().push_back(log_guard.sink);
    spdlog::flush_every(std::chrono::seconds(5));
  } else {
    spdlog::default_logger()->set_level(spdlog::level::warn);
  }

  const std::string resolved = to_yaml(config);
  if (main_rank) write_text_atomic(paths.config, resolved);
  spdlog::info("resolved configuration (saved to {}):\n{}", paths.config.string(), resolved);
  const auto& mo = config.model.options;

  // ---- data ----
  const auto sets = open_datasets(config);
  spdlog::info("train: {}", sets.train->describe());
  spdlog::info("val: {}", sets.val->describe());
  // The dataset's class names, padded with indices when the model has more classes.
  auto label_names = sets.val->class_names();
  for (auto i = static_cast<int64_t>(label_names.size()); i < mo.num_classes(); ++i)
    label_names.push_back(std::to_string(i));
  data::LoaderOptions lo;
  lo.batch_size = config.data.batch_size;
  lo.num_workers = config.data.num_workers;
  lo.prefetch_batches = config.data.prefetch_batches;
  lo.drop_last = true;
  lo.pin_memory = cuda && config.data.pin_memory;
  lo.skip_corrupt = config.data.skip_corrupt;
  lo.seed = config.run.seed;
  lo.position_offset = dist.rank();  // rank r holds global positions r, r + W, ...
  lo.position_stride = dist.world_size();
  const int channels = static_cast<int>(mo.in_channels());
  data::DataLoader train_loader(sets.train,
                                data::make_train_transform(config.augment.train, channels), lo);
  auto eval_lo = lo;
  eval_lo.batch_size = config.data.eval_batch_size;
  eval_lo.drop_last = false;
  eval_lo.reduced_decode = config.data.fast_decode;
  // Validation: rank r takes images r, r + W, ... (no padding); the counts are summed.
  std::vector<int64_t> val_indices;
  for (int64_t i = dist.rank(); i < sets.val->size(); i += dist.world_size())
    val_indices.push_back(i);
  data::DataLoader val_loader(sets.val, data::make_eval_transform(config.augment.eval, channels),
                              eval_lo);
  data::SamplerOptions so;
  so.seed = config.run.seed;
  so.repeats = config.data.repeated_aug;
  so.rank = dist.rank();
  so.world_size = dist.world_size();

  // ---- model, optimiser, EMA ----
  torch::manual_seed(config.run.seed);
  models::ThinkingViT model(mo);
  if (!config.model.init_from.empty()) {
    const auto weights = io::read_weights(config.model.init_from);
    io::LoadOptions init;
    init.strict = config.model.init_strict;
    init.allow_missing = true;
    const auto report = io::load_state_dict(model, weights.tensors, weights.path, init);
    spdlog::info("initialised from '{}': {}", weights.path, report.summary());
  }
  model->to(device);
  {
    std::vector<at::Tensor> state = model->parameters();
    for (const auto& b : model->buffers()) state.push_back(b);
    dist.broadcast(state);  // every rank starts from rank 0's weights
  }
  const std::vector<at::Tensor> params = model->parameters();
  const int64_t global_batch =
      config.data.batch_size * dist.world_size() * config.optimizer.accum_steps;
  const double lr = effective_lr(config.optimizer, global_batch);
  spdlog::info("lr: base {} for batch {}, effective {} for global batch {}", config.optimizer.lr,
               config.optimizer.lr_base_batch, lr, global_batch);
  auto optimizer = make_optimizer(model, config.optimizer, lr);
  std::unique_ptr<ModelEma> ema;
  if (config.ema.enabled) ema = std::make_unique<ModelEma>(model, config.ema.decay);
  const auto loss_weights = stage_loss_weights(config.loss, mo.num_stages());

  TrainState state;
  if (train_options.resume) state = load_checkpoint(paths, model, ema.get(), *optimizer, device);
  const auto reducer = dc.overlap ? dist.make_reducer(params) : nullptr;
  std::ofstream metrics;
  if (main_rank) metrics.open(paths.metrics, std::ios::app);

  const int64_t total_epochs = config.schedule.epochs + config.schedule.cooldown_epochs;
  const bool bf16 = config.precision.dtype == "bf16";
  const bool eval_bf16 = config.precision.eval_dtype == "bf16";
  std::vector<EpochSummary> history;
  int64_t epochs_run = 0;
  for (int64_t epoch = state.epoch + 1; epoch < total_epochs; ++epoch) {
    if (train_options.stop_after_epochs >= 0 && epochs_run >= train_options.stop_after_epochs)
      break;
    // Every source of randomness is a function of (seed, epoch): resuming repeats it exactly.
    torch::manual_seed(config.run.seed * 1000003 + epoch +
                       (static_cast<uint64_t>(dist.rank()) << 32));  // drop path differs by rank
    auto step_rng = data::sample_rng(config.run.seed, epoch, /*index=*/-7);
    train_loader.start_epoch(epoch, data::epoch_indices(sets.train->size(), epoch, so));
    const int64_t steps = train_loader.num_batches();
    TVIT_CHECK(steps > 0, "data.batch_size ", config.data.batch_size, " exceeds the training set (",
               sets.train->size(), " images)");
    model->train();
    EpochSummary summary;
    summary.epoch = epoch;
    summary.stage_loss.assign(mo.num_stages(), 0.0);
    double wait_s = 0.0;
    int64_t skipped_images = 0;
    int64_t images = 0;
    const auto epoch_start = Clock::now();
    util::Progress progress("epoch " + std::to_string(epoch), steps, "step");
    for (int64_t i = 0; i < steps; ++i) {
      const double t = config.schedule.per_step ? epoch + static_cast<double>(i) / steps : epoch;
      const double lr_now = learning_rate(config.schedule, lr, t);
      set_learning_rate(*optimizer, lr_now);
      summary.lr = lr_now;
      const auto wait_start = Clock::now();
      auto batch = train_loader.next();
      wait_s += std::chrono::duration<double>(Clock::now() - wait_start).count();
      auto x = batch->images.to(device, /*non_blocking=*/true);
      auto mix = data::mix_batch(x, batch->labels, mo.num_classes(), config.augment.mix, step_rng);
      auto targets = mix.targets.to(device);
      const auto stages = sample_stages(config.sampling, mo.num_stages(), step_rng);

      at::Tensor loss = torch::zeros({}, torch::TensorOptions().device(device));
      {
        compat::AutocastGuard autocast(device.type(), at::kBFloat16, bf16);
        at::Tensor tokens;
        size_t next = 0;
        for (int64_t s = 0; s <= stages.back(); ++s) {
          const bool chosen = stages[next] == s;
          if (!chosen && !mo.recycling()) continue;
          auto out = model->forward_stage(s, x, tokens);
          tokens = out.tokens;
          if (!chosen) continue;
          ++next;
          auto stage_loss = soft_target_cross_entropy(out.logits, targets);
          const double value = stage_loss.item<double>();
          TVIT_CHECK(std::isfinite(value), "non-finite loss ", value, " at epoch ", epoch, " step ",
                     i, " stage ", s, "; stopping (the last checkpoint is kept)");
          summary.stage_loss[s] += value;
          loss = loss + loss_weights[s] * stage_loss;
        }
      }
      const bool step_now = (i + 1) % config.optimizer.accum_steps == 0 || i + 1 == steps;
      const auto scaled_loss = loss / config.optimizer.accum_steps;
      if (reducer && step_now) reducer->prepare(scaled_loss);
      scaled_loss.backward();
      if (step_now) {
        if (reducer) {
          reducer->finish();
        } else {
          dist.average_gradients(params);
        }
        if (config.optimizer.clip_grad > 0) {
          torch::nn::utils::clip_grad_norm_(model->parameters(), config.optimizer.clip_grad);
        }
        optimizer->step();
        optimizer->zero_grad();
        ++state.step;
        if (ema) ema->update(model);
      }
      const double loss_value = loss.item<double>();
      summary.loss += loss_value;
      images += batch->images.size(0);
      if (main_rank && (i + 1) % config.run.log_every_steps == 0) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
        nlohmann::json j = {{"type", "step"},
                            {"epoch", epoch},
                            {"step", state.step},
                            {"lr", lr_now},
                            {"loss", loss_value},
                            {"images_per_s", dist.world_size() * images / elapsed},
                            {"data_wait_share", wait_s / elapsed}};
        metrics << j.dump() << "\n" << std::flush;
      }
      char extra[96];
      std::snprintf(extra, sizeof extra, "loss %.4f lr %.2e", loss_value, lr_now);
      progress.update(i + 1, extra);
    }
    progress.finish();
    const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start).count();
    {  // losses averaged over ranks, throughput summed, data wait averaged
      std::vector<double> values = {summary.loss, static_cast<double>(images), wait_s / elapsed,
                                    static_cast<double>(train_loader.skipped())};
      values.insert(values.end(), summary.stage_loss.begin(), summary.stage_loss.end());
      values = dist.sum(values);
      const double w = dist.world_size();
      summary.loss = values[0] / w / steps;
      summary.images_per_s = values[1] / elapsed;
      summary.data_wait_share = values[2] / w;
      skipped_images = static_cast<int64_t>(values[3]);
      for (size_t s = 0; s < summary.stage_loss.size(); ++s)
        summary.stage_loss[s] = values[4 + s] / w / steps;
    }

    // ---- validation: every stage alone, model and EMA (every N epochs and the last) ----
    const bool validate = epoch + 1 == total_epochs ||
                          (epoch + 1) % std::max<int64_t>(1, config.run.eval_every_epochs) == 0;
    if (validate) {
      val_loader.start_epoch(0, val_indices);
      reduce_accuracy(
          eval::evaluate(model, val_loader, models::EntropyRule::kTop10, device, eval_bf16), dist,
          summary.val_top1, summary.val_top5);
    }
    if (validate && ema) {
      val_loader.start_epoch(0, val_indices);
      std::vector<double> unused;
      reduce_accuracy(
          eval::evaluate(ema->module(), val_loader, models::EntropyRule::kTop10, device, eval_bf16),
          dist, summary.ema_top1, unused);
    }
    spdlog::info(
        "epoch {}/{}: loss {:.4f} (stages {}), lr {:.3e}, {:.1f} img/s, data wait {:.0f}%, "
        "val top-1 {}{}",
        epoch + 1, total_epochs, summary.loss, join(summary.stage_loss, 4), summary.lr,
        summary.images_per_s, 100 * summary.data_wait_share,
        validate ? join(summary.val_top1, 2) : std::string("not run this epoch"),
        ema ? ", EMA " + join(summary.ema_top1, 2) : "");
    nlohmann::json j = {{"type", "epoch"},
                        {"epoch", epoch},
                        {"step", state.step},
                        {"lr", summary.lr},
                        {"loss", summary.loss},
                        {"stage_loss", summary.stage_loss},
                        {"images_per_s", summary.images_per_s},
                        {"data_wait_share", summary.data_wait_share},
                        {"val_top1", summary.val_top1},
                        {"val_top5", summary.val_top5},
                        {"ema_top1", summary.ema_top1},
                        {"skipped_images", skipped_images}};
    if (main_rank) metrics << j.dump() << "\n" << std::flush;

    // ---- checkpoints ----
    state.epoch = epoch;
    const bool last_epoch = epoch + 1 == total_epochs;
    if (main_rank &&
        (last_epoch || (epoch + 1) % std::max<int64_t>(1, config.checkpoint.every_epochs) == 0)) {
      save_checkpoint(paths, config, label_names, model, ema.get(), *optimizer, state,
                      config.checkpoint.keep_last);
    }
    const double top1 = validate ? summary.val_top1.back() : -1.0;
    if (validate && top1 > state.best_top1) {
      state.best_top1 = top1;
      if (main_rank)
        write_folder_atomic(paths.best, [&](const fs::path& dir) {
          io::save_weights(model, (dir / "model.safetensors").string(),
                           {{"epoch", std::to_string(epoch)}});
          if (ema) io::save_weights(ema->module(), (dir / "ema.safetensors").string());
          write_text_atomic(dir / "config.json", io::config_json(mo, label_names));
        });
    }
    history.push_back(summary);
    ++epochs_run;
  }
  return history;
}

}  // namespace thinkingvit::train
