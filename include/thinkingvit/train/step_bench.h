#pragma once
// The training step as a benchmark row (bench --train): what Trainer::step runs on a batch that
// is already on the device, composed with eval's stage and elastic rows by run_benchmark.

#include <vector>

#include "thinkingvit/eval/benchmark.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/train/config.h"

namespace thinkingvit::train {

// One "train" row per case: Mixup / CutMix of the case's images with random labels
// (recipe.augment.mix; an odd batch, which mixing cannot pair, takes smoothed labels), every
// stage's forward (recycling), the run's multi-stage soft-target loss (recipe.loss's stage
// weights), backward, gradient clipping (recipe.optimizer.clip_grad) and the run's FusedAdamW over
// its two parameter groups (make_optimizer). The weights EMA and the data loading are not in it.
// The model's weights and train / eval mode are put back after each row; its MACs count three
// passes (backward ≈ twice the forward).
eval::ExtraCalls training_step_rows(models::ElasticModel& model, const TrainConfig& recipe);

}  // namespace thinkingvit::train
