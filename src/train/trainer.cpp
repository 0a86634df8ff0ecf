#include "thinkingvit/train/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "log_sinks.h"
#include "run_folder.h"
#include "stop_signals.h"
#include "thinkingvit/data/loader.h"
#include "thinkingvit/data/mixing.h"
#include "thinkingvit/data/sampler.h"
#include "thinkingvit/eval/evaluate.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/train/distributed.h"
#include "thinkingvit/train/recipe.h"
#include "thinkingvit/util/async_copy.h"
#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "thinkingvit/util/progress.h"
#include "thinkingvit/util/text.h"

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

// FNV-1a: the same text gives the same number in every process of a job (std::hash need not).
uint64_t fingerprint(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return h;
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

namespace {

// One training run. prepare(): processes, logs, data, model; then each epoch() runs its step()s,
// validate()s every N epochs and checkpoint()s. Every source of randomness is a function of
// (seed, epoch), so resuming repeats an uninterrupted run exactly.
class Trainer {
 public:
  Trainer(const TrainConfig& config, const TrainOptions& options)
      : config_(config), options_(options), paths_(config.run.output_dir) {}

  std::vector<EpochSummary> run() {
    const bool new_folder = !fs::exists(paths_.root);
    StopSignals signals;
    try {
      prepare();
      auto history = epochs();
      dist_->shutdown();
      return history;
    } catch (const Stopped&) {
      dist_->shutdown();  // every rank stopped after the same step
      throw;
    } catch (...) {
      // A run that fails before its first step (missing data, a batch larger than the data set,
      // nothing to resume) leaves no run folder behind; later failures keep the logs.
      if (new_folder && !started_ && (!dist_ || dist_->is_main())) {
        std::error_code ignored;
        fs::remove_all(paths_.root, ignored);
      }
      throw;
    }
  }

 private:
  std::vector<EpochSummary> epochs() {
    std::vector<EpochSummary> history;
    for (int64_t e = state_.epoch + 1; e < total_epochs_; ++e) {
      if (options_.hooks.stop_after_epochs >= 0 &&
          static_cast<int64_t>(history.size()) >= options_.hooks.stop_after_epochs)
        break;
      history.push_back(epoch(e));
    }
    return history;
  }

  const models::ModelOptions& mo() const { return config_.model.options; }

  void prepare() {
    prepare_processes();
    prepare_data();
    prepare_model();
  }

  // Rank 0 alone writes logs, metrics and checkpoints. Each process works on GPU LOCAL_RANK (or
  // the only GPU it sees), made current before any CUDA work (NCCL included).
  void prepare_processes() {
    const auto& run = config_.run;
    cuda_ = run.device == "cuda" ||
            (run.device == "auto" && compat::resolve_auto_device("run.device").is_cuda());
    const auto env = dist_env();
    if (cuda_) {
      const int gpu = gpu_for_local_rank(env.local_rank, compat::cuda_device_count());
      device_ = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(gpu));
    }
    compat::set_current_device(device_);
    compat::set_tf32(config_.precision.tf32);
    const auto& dc = config_.distributed;
    dist_ = std::make_unique<Distributed>(
        env, dc.backend == "auto" ? (cuda_ ? "nccl" : "gloo") : dc.backend,
        std::chrono::milliseconds(static_cast<int64_t>(dc.timeout_s * 1000)), dc.bucket_mb,
        device_);
    if (run.threads > 0) {
      at::set_num_threads(run.threads);
    } else if (dist_->enabled()) {  // share the cores among this machine's processes
      at::set_num_threads(threads_per_process(env, util::usable_cores(),
                                              [](const char* name) { return std::getenv(name); }));
    }
    if (options_.auto_resume) choose_auto_resume();
    claim_run_folder();
    if (dist_->is_main()) {
      std::error_code error;
      fs::create_directories(paths_.root, error);
      TVIT_CHECK(!error, "run.output_dir '", paths_.root.string(),
                 "': cannot create the run folder (", error.message(), ")");
      logs_.to_file(paths_.log);
    } else {
      logs_.warnings_only();
    }
    const std::string resolved = to_yaml(config_);
    if (dist_->is_main()) write_text_atomic(paths_.config, resolved);
    spdlog::info("resolved configuration (saved to {}):\n{}", paths_.config.string(), resolved);
  }

  // --auto-resume: rank 0 looks for a checkpoint and every rank does what it decided.
  void choose_auto_resume() {
    const double found = dist_->sum({dist_->is_main() && has_checkpoint(paths_) ? 1.0 : 0.0})[0];
    options_.resume = found > 0;
    options_.overwrite = !options_.resume;  // a killed attempt's logs, nothing to continue
    if (options_.resume) {
      spdlog::info("--auto-resume: '{}' holds a checkpoint; resuming", paths_.checkpoints.string());
    } else {
      spdlog::info("--auto-resume: no checkpoint in '{}'; starting fresh", paths_.root.string());
    }
  }

  // A folder that already holds a run is continued (--resume) or started again (--overwrite),
  // never silently mixed with a new one.
  void claim_run_folder() {
    const bool has_run = fs::exists(paths_.checkpoints / "LAST") || fs::exists(paths_.metrics);
    if (!has_run || options_.resume) return;
    TVIT_CHECK(options_.overwrite, "run folder '", paths_.root.string(),
               "' already holds a run; pass --resume to continue it or --overwrite to start it "
               "again");
    if (!dist_->is_main()) return;
    for (const auto& path : {paths_.checkpoints, paths_.best, paths_.metrics, paths_.log})
      fs::remove_all(path);
  }

  void prepare_data() {
    sets_ = open_datasets(config_);
    spdlog::info("train: {}", sets_.train->describe());
    spdlog::info("val: {}", sets_.val->describe());
    // The dataset's class names, padded with indices when the model has more classes.
    label_names_ = sets_.val->class_names();
    for (auto i = static_cast<int64_t>(label_names_.size()); i < mo().num_classes(); ++i)
      label_names_.push_back(std::to_string(i));
    const auto& d = config_.data;
    data::LoaderOptions lo;
    lo.batch_size = d.batch_size;
    lo.num_workers = d.num_workers;
    lo.prefetch_batches = d.prefetch_batches;
    lo.drop_last = true;
    lo.pin_memory = cuda_ && d.pin_memory;
    lo.uint8_batches = data::uint8_batches(d, cuda_);
    lo.skip_corrupt = d.skip_corrupt;
    lo.seed = config_.run.seed;
    lo.position_offset = dist_->rank();  // rank r holds global positions r, r + W, ...
    lo.position_stride = dist_->world_size();
    const int channels = static_cast<int>(mo().in_channels());
    train_loader_ = std::make_unique<data::DataLoader>(
        sets_.train, data::make_train_transform(config_.augment.train, channels), lo);
    auto eval_lo = lo;
    eval_lo.batch_size = d.eval_batch_size;
    eval_lo.drop_last = false;
    eval_lo.reduced_decode = d.fast_decode;
    // Validation: rank r takes images r, r + W, ... (no padding); the counts are summed.
    for (int64_t i = dist_->rank(); i < sets_.val->size(); i += dist_->world_size())
      val_indices_.push_back(i);
    val_loader_ = std::make_unique<data::DataLoader>(
        sets_.val, data::make_eval_transform(config_.augment.eval, channels), eval_lo);
    sampler_.seed = config_.run.seed;
    sampler_.repeats = d.repeated_aug;
    sampler_.rank = dist_->rank();
    sampler_.world_size = dist_->world_size();
  }

  // Model (every rank starts from rank 0's weights), optimiser, EMA, resume, gradient reducer.
  void prepare_model() {
    torch::manual_seed(config_.run.seed);
    models::check_fits_in_memory(mo(), config_.ema.enabled ? 5 : 4, "model",
                                 config_.data.batch_size, /*training=*/true, device_);
    model_ = models::make_model(mo());
    if (!config_.model.init_from.empty()) {
      const auto weights = io::read_weights(config_.model.init_from);
      io::LoadOptions init;
      init.strict = config_.model.init_strict;
      init.allow_missing = true;
      const auto report = io::load_state_dict(*model_, weights.tensors, weights.path, init);
      spdlog::info("initialised from '{}': {}", weights.path, report.summary());
    }
    model_->to(device_);
    params_ = model_->parameters();
    const int64_t global_batch =
        config_.data.batch_size * dist_->world_size() * config_.optimizer.accum_steps;
    lr_ = effective_lr(config_.optimizer, global_batch);
    spdlog::info("lr: base {} for batch {}, effective {} for global batch {}", config_.optimizer.lr,
                 config_.optimizer.lr_base_batch, lr_, global_batch);
    optimizer_ = make_optimizer(*model_, config_.optimizer, lr_);
    if (config_.ema.enabled) ema_ = std::make_unique<ModelEma>(*model_, config_.ema.decay);
    loss_weights_ = stage_loss_weights(config_.loss, mo().num_stages());
    if (options_.resume) {
      resume_from_checkpoint();
      TVIT_CHECK(
          state_.batch == 0 || static_cast<int64_t>(state_.partial.size()) == dist_->world_size(),
          "--resume: the last checkpoint was written mid-epoch by ", state_.partial.size(),
          " process(es); resume it with as many (this job has ", dist_->world_size(),
          "), or remove it to resume from the epoch before");
    }
    check_ranks_agree();
    // Every rank continues from rank 0's model and EMA: after the load, so that no rank trains
    // on what its own read of the checkpoint gave.
    std::vector<at::Tensor> state = model_->parameters();
    for (const auto& b : model_->buffers()) state.push_back(b);
    if (ema_) {
      for (const auto& p : ema_->module().parameters()) state.push_back(p);
      for (const auto& b : ema_->module().buffers()) state.push_back(b);
    }
    dist_->broadcast(state);
    // Every rank samples the same stages (step()), so every rank uses the same parameters.
    if (config_.distributed.overlap)
      reducer_ = dist_->make_reducer(params_, /*same_use_on_every_rank=*/true);
    if (dist_->is_main()) {
      if (options_.resume) drop_metrics_after(paths_.metrics, state_);
      metrics_.open(paths_.metrics, std::ios::app);
    }
    total_epochs_ = config_.schedule.epochs + config_.schedule.cooldown_epochs;
    if (dist_->is_main() && config_.schedule.cooldown_epochs > 0) {
      spdlog::info(
          "training {} epochs: schedule.epochs {} on the cosine, then schedule.cooldown_epochs {} "
          "at min_lr (the released recipe's cooldown; set it to 0 to train exactly epochs)",
          total_epochs_, config_.schedule.epochs, config_.schedule.cooldown_epochs);
    }
  }

  // Rank 0 chooses the checkpoint (LAST, else the newest that loads) and every other rank
  // loads the one it chose; a rank that cannot load it stops the job with rank 0's choice named.
  void resume_from_checkpoint() {
    std::string chosen, why;
    if (dist_->is_main()) {
      for (const auto& candidate : checkpoint_candidates(paths_)) {
        const fs::path dir = paths_.checkpoints / candidate;
        try {
          state_ = load_checkpoint_folder(dir, *model_, ema_.get(), *optimizer_, device_);
          chosen = candidate;
          break;
        } catch (const std::exception& e) {
          why = e.what();
          spdlog::warn("checkpoint '{}' cannot be loaded ({}); trying the one before", dir.string(),
                       why);
        }
      }
    }
    chosen = dist_->broadcast_string(chosen);
    if (chosen.empty()) {
      if (dist_->is_main())
        fail("--resume: no loadable checkpoint in '", paths_.checkpoints.string(),
             "' (the last error: ", why, ")");
      fail("--resume: rank 0 found no loadable checkpoint in '", paths_.checkpoints.string(),
           "'; see its log");
    }
    const fs::path dir = paths_.checkpoints / chosen;
    double loaded = 1;
    if (!dist_->is_main()) {
      try {
        state_ = load_checkpoint_folder(dir, *model_, ema_.get(), *optimizer_, device_);
      } catch (const std::exception& e) {
        why = e.what();
        loaded = 0;
      }
    }
    const double failed = dist_->sum({1 - loaded}).front();
    if (failed > 0) {
      if (loaded == 0)
        fail("--resume: rank ", dist_->rank(), " cannot load checkpoint '", dir.string(),
             "', the one rank 0 chose (", why, ")");
      fail("--resume: ", failed, " rank(s) cannot load checkpoint '", dir.string(),
           "', the one rank 0 chose; see their logs");
    }
    spdlog::info("resumed from {} (epoch {}, batch {}, step {})", dir.string(), state_.epoch + 1,
                 state_.batch, state_.step);
  }

  // Every rank holds rank 0's configuration and, when resuming, rank 0's epoch, batch and step:
  // else one clear error on every rank (ranks that trained on as different models would give
  // no error at all).
  void check_ranks_agree() {
    const uint64_t hash = fingerprint(to_yaml(config_));
    const std::vector<double> mine = {
        static_cast<double>(state_.epoch), static_cast<double>(state_.batch),
        static_cast<double>(state_.step), static_cast<double>(hash >> 32),
        static_cast<double>(hash & 0xffffffffu)};
    const size_t k = mine.size(), world = static_cast<size_t>(dist_->world_size());
    std::vector<double> all(k * world, 0.0);  // each rank fills its slot; the sum adds zeros
    std::copy(mine.begin(), mine.end(), all.begin() + static_cast<int64_t>(k * dist_->rank()));
    all = dist_->sum(all);
    for (size_t r = 1; r < world; ++r) {
      const auto at = [&](size_t rank, size_t i) { return all[rank * k + i]; };
      if (at(r, 3) != at(0, 3) || at(r, 4) != at(0, 4)) {
        fail("distributed: rank ", r,
             "'s configuration differs from rank 0's (every rank must "
             "run the same config and --set overrides)");
      }
      if (at(r, 0) != at(0, 0) || at(r, 1) != at(0, 1) || at(r, 2) != at(0, 2)) {
        fail("--resume: rank ", r, " holds epoch ", at(r, 0) + 1, " batch ", at(r, 1), " step ",
             at(r, 2), ", rank 0 epoch ", at(0, 0) + 1, " batch ", at(0, 1), " step ", at(0, 2),
             " (the ranks read different checkpoints; is the run folder shared?)");
      }
    }
  }

  EpochSummary epoch(int64_t e) {
    const int64_t first = e == state_.epoch + 1 ? state_.batch : 0;  // resumed mid-epoch
    train_loader_->start_epoch(e, data::epoch_indices(sets_.train->size(), e, sampler_), first);
    const int64_t steps = train_loader_->num_batches();
    TVIT_CHECK(steps > 0, "data.batch_size ", config_.data.batch_size,
               " exceeds the training set (", sets_.train->size(), " images)");
    model_->train();
    EpochSummary summary;
    summary.epoch = e;
    summary.stage_loss.assign(mo().num_stages(), 0.0);
    summary.stage_steps.assign(mo().num_stages(), 0);
    EpochCounters counters;
    counters.skipped_base = train_loader_->skipped();
    if (first > 0) restore_totals(state_.partial.at(dist_->rank()), summary, counters);
    state_.partial.clear();
    util::Progress progress("epoch " + std::to_string(e), steps - first, "step");
    bool checkpoint_due = false;
    staged_.reset();
    for (int64_t i = first; i < steps; ++i) {
      step(e, i, steps, summary, counters);
      char extra[96];
      if (std::isnan(last_loss_)) {
        std::snprintf(extra, sizeof extra, "lr %.2e", summary.lr);
      } else {  // the loss of the step before: read back without waiting for this one
        std::snprintf(extra, sizeof extra, "loss %.4f lr %.2e", last_loss_, summary.lr);
      }
      progress.update(i + 1 - first, extra);
      const int64_t batch = e * steps + i + 1;
      kill_at_("batch", batch);
      // Checkpoints and stops fall between optimizer steps (never inside an accumulation).
      if ((i + 1) % config_.optimizer.accum_steps != 0 && i + 1 != steps) continue;
      const int64_t every = config_.checkpoint.every_steps;
      checkpoint_due = every > 0 && state_.step % every == 0;
      const bool stop = stop_requested();
      if (i + 1 == steps) {  // the epoch's end follows: it writes the checkpoint
        checkpoint_due = checkpoint_due || stop;
        break;
      }
      if (checkpoint_due || stop) {
        save_mid_epoch(i + 1, batch, summary, counters);
        if (stop_signal_received_) stopped();  // also when learnt while settling for it
      }
    }
    settle_losses(summary, counters);
    progress.finish();
    const int64_t skipped = reduce_over_ranks(summary, counters, steps);
    // A job learns of a signal from the last step's flags or the epoch's sums.
    checkpoint_due = checkpoint_due || stop_signal_received_;
    const bool validated = validates(e);
    if (validated) validate(summary);
    log_epoch(summary, validated, skipped);
    checkpoint(summary, validated, checkpoint_due, (e + 1) * steps);
    if (stop_signal_received_ && e + 1 < total_epochs_) stopped();
    return summary;
  }

  struct EpochCounters {
    Clock::time_point start = Clock::now();  // less the time before a resume
    double wait_s = 0;                       // waiting for batches
    int64_t images = 0;                      // this rank's
    int64_t skipped_base = 0;                // the loader's count of unreadable images at the start
    int64_t skipped = 0;                     // unreadable images before a resume
    int64_t skipped_now(const data::DataLoader& loader) const {
      return skipped + loader.skipped() - skipped_base;
    }
  };

  // A rank's running totals of its epoch, as numbers: what a mid-epoch checkpoint keeps so that
  // the resumed epoch reports what the uninterrupted one would.
  std::vector<double> epoch_totals(const EpochSummary& summary,
                                   const EpochCounters& counters) const {
    std::vector<double> v = {summary.loss,
                             summary.lr,
                             static_cast<double>(counters.images),
                             counters.wait_s,
                             std::chrono::duration<double>(Clock::now() - counters.start).count(),
                             static_cast<double>(counters.skipped_now(*train_loader_))};
    v.insert(v.end(), summary.stage_loss.begin(), summary.stage_loss.end());
    v.insert(v.end(), summary.stage_steps.begin(), summary.stage_steps.end());
    return v;
  }

  void restore_totals(const std::vector<double>& v, EpochSummary& summary,
                      EpochCounters& counters) const {
    const size_t n = summary.stage_loss.size();
    TVIT_CHECK(v.size() == 6 + 2 * n, "--resume: the mid-epoch checkpoint holds ", v.size(),
               " running totals, this model needs ", 6 + 2 * n);
    summary.loss = v[0];
    summary.lr = v[1];
    counters.images = static_cast<int64_t>(v[2]);
    counters.wait_s = v[3];
    counters.start -=
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(v[4]));
    counters.skipped = static_cast<int64_t>(v[5]);
    for (size_t s = 0; s < n; ++s) {
      summary.stage_loss[s] = v[6 + s];
      summary.stage_steps[s] = static_cast<int64_t>(v[6 + n + s]);
    }
  }

  // Whether SIGTERM / SIGUSR1 reached this process or, in a job, any rank. In a job the answer
  // rides on the step flags (see step()) and the epoch's sums: every rank learns it at the same
  // point, so all stop after the same optimizer step (a step or two after the signal, since the
  // flags are read back a step late), and no step waits for it.
  bool stop_requested() {
    if (!dist_->enabled() && StopSignals::received() != 0) note_stop_request();
    return stop_signal_received_;
  }

  void note_stop_request() {
    if (stop_signal_received_) return;
    stop_signal_received_ = true;
    spdlog::warn(
        "stop requested (SIGTERM or SIGUSR1): writing a checkpoint once the current step ends");
  }

  [[noreturn]] void stopped() {
    // No rank exits before rank 0's checkpoint is complete: a launcher that kills the job when
    // the first rank exits (torchrun, srun --kill-on-bad-exit) would end rank 0 mid-write.
    dist_->barrier();
    const auto where = (paths_.checkpoints / checkpoint_name(state_)).string();
    const std::string message =
        "stopped by a signal; checkpoint '" + where + "' holds the run (continue it with --resume)";
    spdlog::warn("{}", message);
    throw Stopped(message);
  }

  // A checkpoint after batch `batch_in_epoch` of this epoch, with every rank's running totals.
  void save_mid_epoch(int64_t batch_in_epoch, int64_t global_batch, EpochSummary& summary,
                      const EpochCounters& counters) {
    settle_losses(summary, counters);  // a non-finite loss stops before the checkpoint
    const auto mine = epoch_totals(summary, counters);
    const size_t k = mine.size(), world = static_cast<size_t>(dist_->world_size());
    // Every rank's totals in rank order: each rank fills its own slot, the sum adds zeros.
    std::vector<double> all(k * world, 0.0);
    std::copy(mine.begin(), mine.end(), all.begin() + static_cast<int64_t>(k * dist_->rank()));
    all = dist_->sum(all);
    state_.batch = batch_in_epoch;
    state_.partial.clear();
    for (size_t r = 0; r < world; ++r)
      state_.partial.emplace_back(all.begin() + r * k, all.begin() + (r + 1) * k);
    if (dist_->is_main()) write_checkpoint(global_batch);
    state_.partial.clear();
  }

  void write_checkpoint(int64_t global_batch) {
    save_checkpoint(paths_, config_, label_names_, *model_, ema_.get(), *optimizer_, state_,
                    config_.checkpoint.keep_last, [&] { kill_at_("checkpoint", global_batch); });
  }

  // A step's losses on their way to the host (deferred_losses, settle_losses).
  struct StepLosses {
    compat::Readback values;  // the chosen stages' losses (float64), then any step flags
    bool flags = false;       // a job's optimizer step: the summed step flags follow the losses
    std::vector<int64_t> stages;
    int64_t epoch = 0, batch = 0, step = 0;
    double lr = 0;
  };

  // One batch, as DeiT's train_one_epoch: learning rate, batch, Mixup / CutMix, forward and loss
  // (every chosen stage, the ones before it too when recycling), backward, and every accum_steps
  // batches the averaged gradients' optimizer step and EMA; then the losses for the log. The host
  // never waits for the device here: the next batch's copy starts while this step's kernels run,
  // and the step's losses are read back during the next step (settle_losses).
  void step(int64_t e, int64_t i, int64_t steps, EpochSummary& summary, EpochCounters& counters) {
    started_ = true;
    const int64_t global_batch = e * steps + i + 1;
    auto random = seed_step(e, i);
    summary.lr = learning_rate(config_.schedule, lr_,
                               config_.schedule.per_step ? e + static_cast<double>(i) / steps : e);
    set_learning_rate(*optimizer_, summary.lr);

    if (!staged_) stage_batch(counters);
    StagedBatch batch = std::move(*staged_);
    staged_.reset();
    auto x = batch.images.take();
    if (kill_at_.poisons(global_batch)) x = x * std::numeric_limits<float>::quiet_NaN();
    const auto mix =
        data::mix_batch(x, batch.batch.labels, mo().num_classes(), config_.augment.mix, random.mix);
    const auto targets = compat::to_device_async(mix.targets, device_);

    const auto stages = sample_stages(config_.sampling, mo().num_stages(), random.stages);
    const auto loss = forward_loss(x, targets, stages);
    kill_at_("forward", global_batch);
    const bool step_now = (i + 1) % config_.optimizer.accum_steps == 0 || i + 1 == steps;
    const auto scaled_loss = loss.total / config_.optimizer.accum_steps;
    if (reducer_ && step_now) reducer_->prepare(scaled_loss);
    scaled_loss.backward();
    if (step_now) optimizer_step();

    auto losses = deferred_losses(e, i, summary.lr, stages, loss.stages, step_now);
    if (i + 1 < steps) stage_batch(counters);  // its copy overlaps this step's kernels
    settle_losses(summary, counters);          // the step before's, done on the device by now
    counters.images += batch.batch.images.size(0);
    pending_losses_ = std::move(losses);
  }

  // A batch's randomness is a function of (seed, epoch, batch, rank) alone, so that a run resumed
  // mid-epoch draws what the uninterrupted one drew: stage sampling the same on every rank (so
  // that every rank uses the same parameters), Mixup / CutMix and LibTorch's generator (drop
  // path) drawn per process, as timm's Mixup in each DDP process.
  struct StepRandomness {
    data::Rng stages, mix;
  };
  StepRandomness seed_step(int64_t e, int64_t i) {
    auto stages = data::sample_rng(config_.run.seed, e, -16 - i);
    const auto rank = static_cast<uint64_t>(dist_->rank() + 1);
    torch::manual_seed(stages() ^ (0x9E3779B97F4A7C15ull * rank));
    const int64_t mix_position = -(int64_t{1} << 40) * static_cast<int64_t>(rank) - i;
    return {stages, data::sample_rng(config_.run.seed, e, mix_position)};
  }

  // The weighted loss of the chosen stages, under the run's autocast.
  StepLoss forward_loss(const at::Tensor& x, const at::Tensor& targets,
                        const std::vector<int64_t>& stages) {
    const compat::AutocastGuard autocast(device_.type(), at::kBFloat16,
                                         util::is_bf16(config_.precision.dtype));
    return multi_stage_loss(*model_, x, targets, stages, loss_weights_);
  }

  // The step's losses on their way to the host, read back by settle_losses a step later. In a
  // job, after each optimizer step, the step flags ride along, summed over ranks (the ranks are
  // in step there): how many ranks had a non-finite loss since the last flags, and how many had
  // received a stop signal. Every rank settles them at the same point, so all stop or fail
  // together, whichever rank saw it, and no step waits for it.
  StepLosses deferred_losses(int64_t e, int64_t i, double lr, const std::vector<int64_t>& stages,
                             const std::vector<at::Tensor>& stage_losses, bool step_now) {
    StepLosses losses;
    losses.epoch = e;
    losses.batch = i;
    losses.lr = lr;
    losses.stages = stages;
    losses.step = state_.step;
    auto values = torch::stack(stage_losses).to(at::kDouble);
    if (dist_->enabled()) {
      const auto bad = values.isfinite().logical_not().any();
      nonfinite_since_flags_ =
          nonfinite_since_flags_.defined() ? nonfinite_since_flags_ | bad : bad;
      if (step_now) {
        const double signal = StopSignals::received() != 0 ? 1.0 : 0.0;
        auto flags =
            torch::cat({nonfinite_since_flags_.to(at::kDouble).reshape({1}),
                        compat::to_device_async(torch::tensor({signal}, at::kDouble), device_)});
        nonfinite_since_flags_ = at::Tensor();
        dist_->sum_on_device(flags);
        values = torch::cat({values, flags});
        losses.flags = true;
      }
    }
    losses.values = compat::Readback(values);
    return losses;
  }

  // The next batch from the loader, its copy to the device started.
  void stage_batch(EpochCounters& counters) {
    const auto wait_start = Clock::now();
    auto batch = train_loader_->next();
    counters.wait_s += std::chrono::duration<double>(Clock::now() - wait_start).count();
    TVIT_CHECK(batch.has_value(), "training: the loader ran out of batches before the epoch's end");
    data::BatchUpload images(*batch, device_);
    staged_ = StagedBatch{std::move(*batch), std::move(images)};
  }

  // The losses of the step still pending: waits for its forward (long finished when called a step
  // later), stops on a non-finite value, adds them to the epoch's totals and writes its metrics
  // line.
  void settle_losses(EpochSummary& summary, const EpochCounters& counters) {
    if (!pending_losses_) return;
    StepLosses losses = std::move(*pending_losses_);
    pending_losses_.reset();
    const at::Tensor host = losses.values.get();
    const double* v = host.data_ptr<double>();
    const size_t n = losses.stages.size();
    for (size_t k = 0; k < n && nonfinite_message_.empty(); ++k) {
      if (std::isfinite(v[k])) continue;
      std::ostringstream message;
      message << "non-finite loss " << v[k] << " at epoch " << losses.epoch << " step "
              << losses.batch << " stage " << losses.stages[k]
              << (dist_->enabled() ? " on rank " + std::to_string(dist_->rank()) : "")
              << "; stopping (the last checkpoint is kept)";
      nonfinite_message_ = message.str();
    }
    // One process stops at once; in a job every rank stops where the step flags (see step())
    // say some rank saw one, so that none is left waiting in a collective.
    if (!dist_->enabled() && !nonfinite_message_.empty()) fail(nonfinite_message_);
    if (losses.flags) {
      if (v[n] > 0) {
        if (!nonfinite_message_.empty()) fail(nonfinite_message_);
        fail("non-finite loss on ", v[n], " of ", dist_->world_size(), " ranks by epoch ",
             losses.epoch, " step ", losses.batch,
             "; stopping (the last checkpoint is kept; that rank's log names the step and stage)");
      }
      if (v[n + 1] > 0) note_stop_request();
    }
    double loss_value = 0;
    for (size_t k = 0; k < n; ++k) {
      const double value = v[k];
      const int64_t s = losses.stages[k];
      summary.stage_loss[s] += value;
      summary.stage_steps[s] += 1;
      loss_value += loss_weights_[s] * value;
    }
    summary.loss += loss_value;
    last_loss_ = loss_value;
    if (dist_->is_main() && (losses.batch + 1) % config_.run.log_every_steps == 0) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - counters.start).count();
      nlohmann::json j = {{"type", "step"},
                          {"epoch", losses.epoch},
                          {"batch", losses.batch},
                          {"step", losses.step},
                          {"lr", losses.lr},
                          {"loss", loss_value},
                          {"images_per_s", dist_->world_size() * counters.images / elapsed},
                          {"data_wait_share", counters.wait_s / elapsed}};
      metrics_ << j.dump() << "\n" << std::flush;
    }
  }

  void optimizer_step() {
    if (reducer_) {
      reducer_->finish();
    } else {
      dist_->average_gradients(params_, /*same_use_on_every_rank=*/true);
    }
    if (config_.optimizer.clip_grad > 0) {
      clip_grad_norm(params_, config_.optimizer.clip_grad);
    }
    optimizer_->step();
    optimizer_->zero_grad();
    ++state_.step;
    if (ema_) ema_->update(*model_);
  }

  // Losses averaged over ranks and steps, throughput summed, data wait averaged; returns the
  // images skipped as unreadable, summed.
  int64_t reduce_over_ranks(EpochSummary& summary, const EpochCounters& counters, int64_t steps) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - counters.start).count();
    std::vector<double> values = {summary.loss, static_cast<double>(counters.images),
                                  counters.wait_s / elapsed,
                                  static_cast<double>(counters.skipped_now(*train_loader_))};
    const size_t n = summary.stage_loss.size();
    values.insert(values.end(), summary.stage_loss.begin(), summary.stage_loss.end());
    values.insert(values.end(), summary.stage_steps.begin(), summary.stage_steps.end());
    values.push_back(StopSignals::received() != 0 ? 1.0 : 0.0);  // a signal rides along
    values = dist_->sum(values);
    if (dist_->enabled() && values.back() > 0) note_stop_request();
    const double w = dist_->world_size();
    summary.loss = values[0] / w / steps;
    summary.images_per_s = values[1] / elapsed;
    summary.data_wait_share = values[2] / w;
    // A stage's loss is its mean over the steps that ran it (sandwich and stochastic sampling
    // skip stages); NaN when no step did.
    for (size_t s = 0; s < n; ++s) {
      const double ran = values[4 + n + s];
      summary.stage_steps[s] = static_cast<int64_t>(ran / w);
      summary.stage_loss[s] =
          ran > 0 ? values[4 + s] / ran : std::numeric_limits<double>::quiet_NaN();
    }
    return static_cast<int64_t>(values[3]);
  }

  // Every N epochs and the last.
  bool validates(int64_t e) const {
    return e + 1 == total_epochs_ ||
           (e + 1) % std::max<int64_t>(1, config_.run.eval_every_epochs) == 0;
  }

  // Every stage alone, the model and its EMA, over every rank's share of the validation set.
  void validate(EpochSummary& summary) {
    const bool bf16 = util::is_bf16(config_.precision.eval_dtype);
    val_loader_->start_epoch(0, val_indices_);
    reduce_accuracy(
        eval::evaluate(*model_, *val_loader_, models::EntropyRule::kTop10, device_, bf16), *dist_,
        summary.val_top1, summary.val_top5);
    if (!ema_) return;
    val_loader_->start_epoch(0, val_indices_);
    std::vector<double> unused;
    reduce_accuracy(
        eval::evaluate(ema_->module(), *val_loader_, models::EntropyRule::kTop10, device_, bf16),
        *dist_, summary.ema_top1, unused);
  }

  void log_epoch(const EpochSummary& summary, bool validated, int64_t skipped) {
    spdlog::info(
        "epoch {}/{}: loss {:.4f} (stages {}), lr {:.3e}, {:.1f} img/s, data wait {:.0f}%, "
        "val top-1 {}{}",
        summary.epoch + 1, total_epochs_, summary.loss, util::join_fixed(summary.stage_loss, 4),
        summary.lr, summary.images_per_s, 100 * summary.data_wait_share,
        validated ? util::join_fixed(summary.val_top1, 2) : std::string("not run this epoch"),
        ema_ ? ", EMA " + util::join_fixed(summary.ema_top1, 2) : "");
    nlohmann::json j = {{"type", "epoch"},
                        {"epoch", summary.epoch},
                        {"step", state_.step},
                        {"lr", summary.lr},
                        {"loss", summary.loss},
                        {"stage_loss", summary.stage_loss},
                        {"stage_steps", summary.stage_steps},
                        {"images_per_s", summary.images_per_s},
                        {"data_wait_share", summary.data_wait_share},
                        {"val_top1", summary.val_top1},
                        {"val_top5", summary.val_top5},
                        {"ema_top1", summary.ema_top1},
                        {"skipped_images", skipped}};
    if (dist_->is_main()) metrics_ << j.dump() << "\n" << std::flush;
  }

  // checkpoints/epoch_NNNN every N epochs, the last, and when a step checkpoint or a stop fell
  // on the epoch's last batch (`due`); keep-last-k; best/ on a new best validation top-1 of the
  // last stage. Rank 0 writes; every rank tracks the state.
  void checkpoint(const EpochSummary& summary, bool validated, bool due, int64_t global_batch) {
    state_.epoch = summary.epoch;
    state_.batch = 0;
    // best/ first, and best_top1 with it, so that the checkpoint records the best it follows: a
    // resumed run then never replaces best/ with a worse model.
    if (validated && summary.val_top1.back() > state_.best_top1) {
      state_.best_top1 = summary.val_top1.back();
      if (dist_->is_main()) {
        util::write_folder_atomic(paths_.best.string(), [&](const fs::path& dir) {
          io::save_weights(*model_, (dir / "model.safetensors").string(),
                           {{"epoch", std::to_string(summary.epoch)}});
          if (ema_) io::save_weights(ema_->module(), (dir / "ema.safetensors").string());
          write_text_atomic(dir / "config.json", io::config_json(mo(), label_names_));
        });
      }
    }
    const bool last = summary.epoch + 1 == total_epochs_;
    due = due || (summary.epoch + 1) % config_.checkpoint.every_epochs == 0;
    if (dist_->is_main() && (last || due)) write_checkpoint(global_batch);
  }

  const TrainConfig config_;
  TrainOptions options_;  // --auto-resume settles resume and overwrite
  const RunPaths paths_;
  bool cuda_ = false;
  c10::Device device_{c10::kCPU};
  std::unique_ptr<Distributed> dist_;
  LogGuard logs_;
  Datasets sets_;
  std::vector<std::string> label_names_;
  std::unique_ptr<data::DataLoader> train_loader_, val_loader_;
  std::vector<int64_t> val_indices_;
  data::SamplerOptions sampler_;
  std::shared_ptr<models::ElasticModel> model_;
  std::vector<at::Tensor> params_;
  double lr_ = 0;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<ModelEma> ema_;
  std::vector<double> loss_weights_;
  TrainState state_;
  std::unique_ptr<GradientReducer> reducer_;
  struct StagedBatch {
    data::Batch batch;  // on the host
    data::BatchUpload images;
  };
  std::optional<StagedBatch> staged_;         // the next batch, on its way to the device
  std::optional<StepLosses> pending_losses_;  // a step's losses not yet read back
  at::Tensor nonfinite_since_flags_;  // a job's: any non-finite loss since the last step flags
  std::string nonfinite_message_;     // this rank's first non-finite loss, for the error
  double last_loss_ = std::numeric_limits<double>::quiet_NaN();  // the last one read back
  std::ofstream metrics_;
  int64_t total_epochs_ = 0;
  bool started_ = false;  // a training step has begun: the run folder is worth keeping
  bool stop_signal_received_ = false;
  FaultPoints kill_at_{options_.hooks, dist_env().rank};
};

}  // namespace

std::vector<EpochSummary> train(const TrainConfig& config, const TrainOptions& options) {
  return Trainer(config, options).run();
}

}  // namespace thinkingvit::train
