#pragma once
// Batch-level Mixup / CutMix with label smoothing folded into the soft targets
// (timm Mixup, mode "batch"): the partner of sample b is sample B-1-b.

#include <ATen/core/Tensor.h>

#include "thinkingvit/data/image.h"

namespace thinkingvit::data {

struct MixOptions {
  double mixup_alpha = 0.8;   // 0: off
  double cutmix_alpha = 1.0;  // 0: off
  double prob = 1.0;          // probability of mixing a batch at all
  double switch_prob = 0.5;   // CutMix instead of Mixup when both are on
  double label_smoothing = 0.1;
  bool correct_lam = true;  // lam = kept area after clipping the CutMix box
};

struct MixResult {
  at::Tensor targets;  // B x K soft targets, rows sum to 1
  double lam = 1.0;    // weight of each sample's own label
  bool cutmix = false;
  bool mixed = false;
  int box_top = 0, box_left = 0, box_height = 0, box_width = 0;  // CutMix box
};

// Smoothed one-hot targets: off = smoothing / K, on = 1 - smoothing + off.
at::Tensor smooth_one_hot(const at::Tensor& labels, int64_t num_classes, double smoothing);

// Mixes `images` (B x C x H x W float, modified in place) and returns the soft targets.
// B must be even when mixing is on (thinkingvit::Error otherwise).
MixResult mix_batch(at::Tensor& images, const at::Tensor& labels, int64_t num_classes,
                    const MixOptions& options, Rng& rng);

// Beta(alpha, alpha) from two gamma draws.
double sample_beta(double alpha, Rng& rng);

}  // namespace thinkingvit::data
