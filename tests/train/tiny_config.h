#pragma once
// The trainer tests' job: shared by the CPU trainer tests and the CUDA tests.

#include <string>

#include "../test_util.h"
#include "thinkingvit/train/config.h"

namespace thinkingvit::testing {

// A tiny model on a tiny synthetic set, augmentation and mixing off.
inline train::TrainConfig tiny_config(const std::string& dir) {
  train::TrainConfig c;
  c.model.options = tiny_options({1, 2});
  c.model.options.as<models::ThinkingViTOptions>()->drop_path_rate(0.1);
  c.data.dataset = "synthetic";
  c.data.synthetic_size = 32;
  c.data.batch_size = 8;
  c.data.eval_batch_size = 16;
  c.data.num_workers = 2;
  c.augment.train.size = c.augment.eval.size = 8;
  c.augment.train.small_image = true;
  c.augment.train.padding = 0;
  c.augment.train.hflip = 0.0;
  c.augment.train.auto_augment = "";
  c.augment.train.random_erasing = 0.0;
  c.augment.eval.crop_pct = 1.0;
  c.augment.mix.mixup_alpha = c.augment.mix.cutmix_alpha = 0.0;
  c.augment.mix.label_smoothing = 0.0;
  c.optimizer.lr = 2e-3;
  c.optimizer.lr_base_batch = 8;
  c.optimizer.weight_decay = 0.0;
  c.schedule.epochs = 3;
  c.schedule.warmup_epochs = 1;
  c.schedule.cooldown_epochs = 0;
  c.schedule.per_step = true;
  c.ema.decay = 0.9;
  c.run.output_dir = dir;
  c.run.threads = 1;
  c.run.log_every_steps = 1;
  return c;
}

}  // namespace thinkingvit::testing
