#include "thinkingvit/data/mixing.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "thinkingvit/util/error.h"

namespace thinkingvit::data {

double sample_beta(double alpha, Rng& rng) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  const double x = gamma(rng), y = gamma(rng);
  return x + y > 0 ? x / (x + y) : 0.5;
}

at::Tensor smooth_one_hot(const at::Tensor& labels, int64_t num_classes, double smoothing) {
  const double off = smoothing / static_cast<double>(num_classes);
  auto targets = at::full({labels.size(0), num_classes}, off, at::kFloat);
  targets.scatter_(1, labels.to(at::kLong).view({-1, 1}), 1.0 - smoothing + off);
  return targets;
}

MixResult mix_batch(at::Tensor& images, const at::Tensor& labels, int64_t num_classes,
                    const MixOptions& o, Rng& rng) {
  MixResult result;
  const int64_t batch = images.size(0);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  const bool any = o.mixup_alpha > 0 || o.cutmix_alpha > 0;
  if (any && u01(rng) < o.prob) {
    TVIT_CHECK(batch % 2 == 0, "mixup/cutmix: the batch size must be even, found ", batch);
    result.mixed = true;
    result.cutmix = o.cutmix_alpha > 0 && (o.mixup_alpha <= 0 || u01(rng) < o.switch_prob);
    result.lam = sample_beta(result.cutmix ? o.cutmix_alpha : o.mixup_alpha, rng);
  }
  const auto flipped = images.flip(0);  // B x C x H x W, partner b <-> B-1-b
  if (result.mixed && !result.cutmix) {
    images.mul_(result.lam).add_(flipped, 1.0 - result.lam);
  } else if (result.mixed) {
    const int64_t h = images.size(2), w = images.size(3);
    const double ratio = std::sqrt(1.0 - result.lam);
    const int64_t cut_h = static_cast<int64_t>(h * ratio), cut_w = static_cast<int64_t>(w * ratio);
    const int64_t cy = std::uniform_int_distribution<int64_t>(0, h - 1)(rng);
    const int64_t cx = std::uniform_int_distribution<int64_t>(0, w - 1)(rng);
    const int64_t y1 = std::clamp<int64_t>(cy - cut_h / 2, 0, h),
                  y2 = std::clamp<int64_t>(cy + cut_h / 2, 0, h);
    const int64_t x1 = std::clamp<int64_t>(cx - cut_w / 2, 0, w),
                  x2 = std::clamp<int64_t>(cx + cut_w / 2, 0, w);
    images.slice(2, y1, y2).slice(3, x1, x2).copy_(flipped.slice(2, y1, y2).slice(3, x1, x2));
    if (o.correct_lam) result.lam = 1.0 - static_cast<double>((y2 - y1) * (x2 - x1)) / (h * w);
    result.box_top = static_cast<int>(y1);
    result.box_left = static_cast<int>(x1);
    result.box_height = static_cast<int>(y2 - y1);
    result.box_width = static_cast<int>(x2 - x1);
  }
  const auto own = smooth_one_hot(labels, num_classes, o.label_smoothing);
  result.targets = result.mixed ? own * result.lam + own.flip(0) * (1.0 - result.lam) : own;
  return result;
}

}  // namespace thinkingvit::data
