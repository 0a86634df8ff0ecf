#pragma once
// RandAugment as timm implements it (rand_augment_transform), on 8-bit images, with the
// PIL semantics of each operation. Policy strings: "rand-m9-mstd0.5-inc1" and friends.

#include <array>
#include <string>
#include <vector>

#include "thinkingvit/data/image.h"

namespace thinkingvit::data {

// Resampling of the geometric ops: the filters of PIL's Image.transform (Geometry.c). Its
// bicubic is the a = -1 cubic with edge clamping, not the a = -0.5 kernel of Image.resize.
enum class AffineFilter { kNearest, kBilinear, kBicubic };

struct RandAugmentPolicy {
  int num_ops = 2;              // n
  double magnitude = 9.0;       // m
  double magnitude_std = 0.0;   // mstd: magnitude ~ N(m, mstd), redrawn per application
  double magnitude_max = 10.0;  // mmax: clip range [0, mmax]
  bool increasing = false;      // inc: the *Increasing op variants
  double prob = 0.5;            // p: each chosen op is applied with this probability
  std::vector<uint8_t> fill = {124, 116, 104};  // for geometric ops (ImageNet mean as bytes)
  // One is drawn per geometric op. DeiT passes interpolation='bicubic' to timm; timm without
  // that hparam draws from {kBilinear, kBicubic}.
  std::vector<AffineFilter> filters = {AffineFilter::kBicubic};
};

// Parses "rand-m9-mstd0.5-inc1" (sections m, n, mstd, mmax, inc, p; in any order after "rand").
// Throws thinkingvit::Error naming `what` and the bad section.
RandAugmentPolicy parse_rand_augment(const std::string& text, const std::string& what);

// The 15 ops. `level` arguments are already mapped to the op's argument range.
namespace ops {
Image auto_contrast(const Image& img);
Image equalize(const Image& img);
Image invert(const Image& img);
Image rotate(const Image& img, double degrees, const std::vector<uint8_t>& fill);
Image posterize(const Image& img, int bits);
Image solarize(const Image& img, int threshold);
Image solarize_add(const Image& img, int add, int threshold = 128);
Image color(const Image& img, double factor);
Image contrast(const Image& img, double factor);
Image brightness(const Image& img, double factor);
Image sharpness(const Image& img, double factor);
Image shear_x(const Image& img, double factor, const std::vector<uint8_t>& fill);
Image shear_y(const Image& img, double factor, const std::vector<uint8_t>& fill);
Image translate_x(const Image& img, double pixels, const std::vector<uint8_t>& fill);
Image translate_y(const Image& img, double pixels, const std::vector<uint8_t>& fill);

// The geometric ops above use kBicubic; these choose the filter.
Image rotate(const Image& img, double degrees, const std::vector<uint8_t>& fill,
             AffineFilter filter);
Image shear_x(const Image& img, double factor, const std::vector<uint8_t>& fill,
              AffineFilter filter);
Image shear_y(const Image& img, double factor, const std::vector<uint8_t>& fill,
              AffineFilter filter);
Image translate_x(const Image& img, double pixels, const std::vector<uint8_t>& fill,
                  AffineFilter filter);
Image translate_y(const Image& img, double pixels, const std::vector<uint8_t>& fill,
                  AffineFilter filter);

// PIL's Image.transform(size, AFFINE, matrix, filter, fillcolor): output pixel centre (x, y)
// samples the input at (a0 x + a1 y + a2, a3 x + a4 y + a5). `fill`: one value per channel,
// one value for all, an RGB colour for a gray image (its PIL luma), or empty for black.
Image affine(const Image& img, const std::array<double, 6>& matrix, AffineFilter filter,
             const std::vector<uint8_t>& fill);
// PIL's Image.blend(degenerate, img, factor), the core of the four ImageEnhance ops.
Image blend(const Image& degenerate, const Image& img, double factor);
}  // namespace ops

// The op catalogue and timm's level-to-argument maps, for tests and tools.
enum class AugmentOp {
  kAutoContrast,
  kEqualize,
  kInvert,
  kRotate,
  kPosterize,
  kPosterizeIncreasing,
  kSolarize,
  kSolarizeIncreasing,
  kSolarizeAdd,
  kColor,
  kColorIncreasing,
  kContrast,
  kContrastIncreasing,
  kBrightness,
  kBrightnessIncreasing,
  kSharpness,
  kSharpnessIncreasing,
  kShearX,
  kShearY,
  kTranslateXRel,
  kTranslateYRel,
};
const char* op_name(AugmentOp op);  // timm's name, "PosterizeIncreasing"
// timm's _RAND_INCREASING_TRANSFORMS or _RAND_TRANSFORMS (15 ops each, timm's order).
std::vector<AugmentOp> rand_augment_op_set(bool increasing);
// True for the ops whose argument takes a random sign (timm's _randomly_negate).
bool op_is_signed(AugmentOp op);
// timm's LEVEL_TO_ARG for a magnitude already clipped to [0, mmax] (level = magnitude / 10);
// `negate` is the sign coin of the signed ops. Translations give a fraction of the size.
double op_argument(AugmentOp op, double magnitude, bool negate);
// Applies `op` with an argument from op_argument (ignored by the argument-free ops).
Image apply_op(const Image& img, AugmentOp op, double argument, const std::vector<uint8_t>& fill,
               AffineFilter filter);

// Applies `num_ops` ops drawn uniformly with replacement, each with probability `prob`.
Image rand_augment(const Image& img, const RandAugmentPolicy& policy, Rng& rng);

}  // namespace thinkingvit::data
