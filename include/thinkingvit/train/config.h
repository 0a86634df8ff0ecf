#pragma once
// The training configuration: one settings struct per concern, defaults inline. Precedence:
// these defaults < the YAML file < `--set section.key=value` on the command line. Derived
// values (the scaled learning rate) get their own names and never overwrite inputs.

#include <cstdint>
#include <string>
#include <vector>

#include "thinkingvit/data/mixing.h"
#include "thinkingvit/data/open.h"
#include "thinkingvit/data/transforms.h"
#include "thinkingvit/models/model_options.h"
#include "thinkingvit/util/precision.h"

namespace thinkingvit::train {

struct ModelSection {
  std::string preset;  // base architecture; the fields below override it when set in YAML
  models::ModelOptions options;
  std::string init_from;     // checkpoint to initialise from (crop / embed into leading slices)
  bool init_strict = false;  // anything but an exact load is an error
};

using DataSection = data::DataSection;  // data/open.h

struct AugmentSection {
  data::TrainTransformOptions train;
  data::EvalTransformOptions eval;
  data::MixOptions mix;
};

struct LossSection {
  std::vector<double> stage_weights;  // lambda_i; empty: 1 / n each
};

struct OptimizerSection {
  double lr = 5e-4;            // base lr for a global batch of lr_base_batch
  double lr_base_batch = 512;  // lr_effective = lr * global_batch / lr_base_batch
  double weight_decay = 0.05;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double clip_grad = 0.0;  // 0: off
  int accum_steps = 1;
};

struct ScheduleSection {
  int64_t epochs = 300;
  double warmup_epochs = 5;  // fractional values make sense with per_step
  double warmup_lr = 1e-6;
  double min_lr = 1e-5;
  int64_t cooldown_epochs = 10;
  bool per_step = false;  // false: stepped per epoch, as released
  // true: the cosine starts after the warm-up, on t - warmup_epochs (timm's warmup_prefix, the
  // Swin recipe); false: the warm-up overlaps the cosine's start (DeiT).
  bool warmup_prefix = false;
};

struct EmaSection {
  bool enabled = true;
  double decay = 0.99996;
};

struct SamplingSection {
  // all: every stage every step (released); sandwich: smallest + largest + k random;
  // stochastic: one stage per step (HydraViT style), uniform or by `weights`.
  std::string mode = "all";
  int sandwich_k = 0;
  std::vector<double> weights;
};

struct PrecisionSection {
  util::Precision dtype = util::Precision::kFp32;       // training (autocast, CPU and CUDA)
  util::Precision eval_dtype = util::Precision::kFp32;  // validation, eval and sweep
  bool tf32 = true;  // fp32 matmuls / convolutions in TF32 on CUDA (Ampere+)
};

struct CheckpointSection {
  int64_t every_epochs = 1;
  // Also every N optimizer steps, mid-epoch (0: off); resuming from one is exact. SIGTERM and
  // SIGUSR1 (SLURM's warnings before preemption) write one at the next step and stop the run.
  int64_t every_steps = 0;
  int keep_last = 3;  // checkpoint folders kept, epoch and mid-epoch ones together
};

// Multi-process data parallelism; the ranks come from torchrun / SLURM variables
// (scripts/launch_local.sh N sets them for one machine).
struct DistributedSection {
  std::string backend = "auto";  // auto (nccl on CUDA, gloo on CPU) | gloo | nccl
  // A rank that stops answering fails the others after this: long enough for a start-up scan
  // of an ImageNet folder and a checkpoint written to shared storage (torch.distributed: 30 min).
  double timeout_s = 1800;
  double bucket_mb = 25;  // gradient all-reduce bucket size
  bool overlap = true;    // all-reduce buckets during backward (as DDP); false: after it
};

struct RunSection {
  std::string output_dir = "runs/default";
  uint64_t seed = 42;
  int threads = 0;  // intra-op threads per process; 0: cores / processes
  int64_t log_every_steps = 50;
  int64_t eval_every_epochs = 1;  // validation (and best/) every N epochs; the last always
  std::string device = "auto";    // auto | cpu | cuda
};

struct TrainConfig {
  ModelSection model;
  DataSection data;
  AugmentSection augment;
  LossSection loss;
  OptimizerSection optimizer;
  ScheduleSection schedule;
  EmaSection ema;
  SamplingSection sampling;
  PrecisionSection precision;
  CheckpointSection checkpoint;
  DistributedSection distributed;
  RunSection run;
};

// Reads a YAML file over the defaults, then applies `overrides` ("section.key=value", value in
// YAML syntax: `--set optimizer.lr=1e-3`, `--set model.stages=[2,4]`). Unknown sections or
// keys and wrong types are thinkingvit::Error naming the file, line and key (or the --set).
TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// load_config for `train`: the file must name the model and the data (sections `model` and
// `data`); the built-in defaults alone describe no sensible run (an ImageNet-sized model on
// Fashion-MNIST).
TrainConfig load_training_config(const std::string& path,
                                 const std::vector<std::string>& overrides = {});
TrainConfig config_from_yaml_text(const std::string& text, const std::string& name,
                                  const std::vector<std::string>& overrides = {});

// The keys that change what a run computes (the model's, the data, augmentation, loss,
// optimiser, schedule, sampling, training precision, seed): a resumed run must keep them. The
// others (workers, logging, checkpoints, evaluation, devices) may change between attempts.
std::vector<std::string> trajectory_keys();
// The trajectory keys whose values differ between `a` and `b` ("model" for any model key).
std::vector<std::string> trajectory_differences(const TrainConfig& a, const TrainConfig& b);

// The reference of every key outside `model:` as a markdown table (key, default, what the value
// must be, whether a resume must keep it, what it is): docs/config.md holds it, and a test keeps
// the two equal.
std::string config_reference();

// The resolved configuration as YAML (printed at start, saved in the run folder); loading it
// again gives the same configuration.
std::string to_yaml(const TrainConfig& config);

}  // namespace thinkingvit::train
