#include "thinkingvit/data/rand_augment.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>

#include "pil_internal.h"
#include "thinkingvit/util/error.h"

// Every op reproduces Pillow 9.4 bit for bit (the C sources named below), including its
// float32 blend, its truncating casts and its fixed-point nearest-neighbour affine paths, so
// that training sees the images timm's RandAugment would produce.

namespace thinkingvit::data {

namespace {

using namespace pil;  // NOLINT(google-build-using-namespace): the shared PIL arithmetic
using Lut = std::array<uint8_t, 256>;

Image apply_lut(const Image& img, const Lut& lut) {
  Image out(img.height, img.width, img.channels);
  const uint8_t* src = img.pixels.data();
  uint8_t* dst = out.pixels.data();
  for (size_t i = 0; i < out.pixels.size(); ++i) dst[i] = lut[src[i]];
  return out;
}

// One table per channel (ImageOps' 768-entry tables for RGB).
Image apply_luts(const Image& img, const std::vector<Lut>& luts) {
  if (img.channels == 1) return apply_lut(img, luts[0]);
  Image out(img.height, img.width, 3);
  const uint8_t* src = img.pixels.data();
  uint8_t* dst = out.pixels.data();
  for (size_t i = 0; i < out.pixels.size(); i += 3) {
    dst[i] = luts[0][src[i]];
    dst[i + 1] = luts[1][src[i + 1]];
    dst[i + 2] = luts[2][src[i + 2]];
  }
  return out;
}

using Histogram = std::array<int64_t, 256>;

// One histogram per channel, as Image.histogram.
std::vector<Histogram> histograms(const Image& img) {
  std::vector<Histogram> h(img.channels, Histogram{});
  const uint8_t* p = img.pixels.data();
  if (img.channels == 1) {
    for (size_t i = 0; i < img.pixels.size(); ++i) ++h[0][p[i]];
  } else {
    for (size_t i = 0; i < img.pixels.size(); i += 3) {
      ++h[0][p[i]];
      ++h[1][p[i + 1]];
      ++h[2][p[i + 2]];
    }
  }
  return h;
}

// Blend.c per value: a + alpha * (b - a) in float32, clipped and truncated. (Within [0, 1]
// PIL skips the clip, which never bites there.) The products come from a table, so that the
// sum is rounded as in Blend.c and never fused into a multiply-add.
class BlendKernel {
 public:
  explicit BlendKernel(float alpha) {
    TVIT_CHECK(std::isfinite(alpha), "enhance/blend: the factor must be finite, found ", alpha);
    for (int d = -255; d <= 255; ++d) step_[d + 255] = alpha * static_cast<float>(d);
  }
  uint8_t operator()(uint8_t a, uint8_t b) const {
    return clip8_trunc(static_cast<float>(a) + step_[b - a + 255]);
  }

 private:
  std::array<float, 511> step_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Ops

namespace ops {

// ImageOps.autocontrast(cutoff=0): per channel, stretch [lo, hi] to [0, 255].
Image auto_contrast(const Image& img) {
  check_image(img, "auto_contrast");
  const auto hist = histograms(img);
  std::vector<Lut> luts(img.channels);
  for (int ch = 0; ch < img.channels; ++ch) {
    const Histogram& h = hist[ch];
    int lo = 0, hi = 255;
    while (lo < 255 && h[lo] == 0) ++lo;
    while (hi > 0 && h[hi] == 0) --hi;
    Lut& lut = luts[ch];
    if (hi <= lo) {
      for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
      continue;
    }
    const double scale = 255.0 / (hi - lo);
    const double offset = -lo * scale;
    for (int i = 0; i < 256; ++i) {
      volatile double product = i * scale;  // volatile: no fused multiply-add, as in Python
      lut[i] = clip8(py_int(product + offset));
    }
  }
  return apply_luts(img, luts);
}

// ImageOps.equalize: per channel, lut[i] = (step / 2 + sum(h[:i])) / step with
// step = (total - count of the last non-empty bin) / 255, all in integers.
Image equalize(const Image& img) {
  check_image(img, "equalize");
  const auto hist = histograms(img);
  std::vector<Lut> luts(img.channels);
  for (int ch = 0; ch < img.channels; ++ch) {
    const Histogram& h = hist[ch];
    Lut& lut = luts[ch];
    int64_t total = 0, last = 0, nonzero = 0;
    for (int i = 0; i < 256; ++i) {
      if (h[i] == 0) continue;
      total += h[i];
      last = h[i];
      ++nonzero;
    }
    const int64_t step = nonzero <= 1 ? 0 : (total - last) / 255;
    if (step == 0) {
      for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
      continue;
    }
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      lut[i] = clip8(n / step);
      n += h[i];
    }
  }
  return apply_luts(img, luts);
}

Image invert(const Image& img) {
  check_image(img, "invert");
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(255 - i);
  return apply_lut(img, lut);
}

// timm returns the image unchanged for bits >= 8; PIL's mask ~(2^(8 - bits) - 1) clears
// every bit for bits <= 0.
Image posterize(const Image& img, int bits) {
  check_image(img, "posterize");
  if (bits >= 8) return img;
  const int mask = bits <= 0 ? 0 : (~((1 << (8 - bits)) - 1) & 0xff);
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i & mask);
  return apply_lut(img, lut);
}

// ImageOps.solarize: invert the values >= threshold.
Image solarize(const Image& img, int threshold) {
  check_image(img, "solarize");
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i < threshold ? i : 255 - i);
  return apply_lut(img, lut);
}

// timm's solarize_add: add to the values below the threshold, clipped to 255.
Image solarize_add(const Image& img, int add, int threshold) {
  check_image(img, "solarize_add");
  Lut lut;
  for (int i = 0; i < 256; ++i) {
    lut[i] = i < threshold ? clip8(std::min<int64_t>(255, static_cast<int64_t>(i) + add))
                           : static_cast<uint8_t>(i);
  }
  return apply_lut(img, lut);
}

// Blend.c: out = degenerate + alpha * (img - degenerate) with alpha = float(factor); alpha 0
// and 1 copy an input, which BlendKernel reproduces exactly (a + 0 = a, a + (b - a) = b).
Image blend(const Image& degenerate, const Image& img, double factor) {
  check_image(img, "blend");
  TVIT_CHECK(degenerate.height == img.height && degenerate.width == img.width &&
                 degenerate.channels == img.channels &&
                 degenerate.pixels.size() == img.pixels.size(),
             "blend: images differ in size (", degenerate.height, "x", degenerate.width, "x",
             degenerate.channels, " vs ", img.height, "x", img.width, "x", img.channels, ")");
  const BlendKernel k(static_cast<float>(factor));
  Image out(img.height, img.width, img.channels);
  const uint8_t* a = degenerate.pixels.data();
  const uint8_t* b = img.pixels.data();
  for (size_t i = 0; i < out.pixels.size(); ++i) out.pixels[i] = k(a[i], b[i]);
  return out;
}

namespace {
// Blend with a constant degenerate image: one table over the 256 values.
Image blend_constant(uint8_t degenerate, const Image& img, double factor) {
  const BlendKernel k(static_cast<float>(factor));
  Lut lut;
  for (int v = 0; v < 256; ++v) lut[v] = k(degenerate, static_cast<uint8_t>(v));
  return apply_lut(img, lut);
}
}  // namespace

// ImageEnhance.Color: blend with the L conversion (identity on gray images).
Image color(const Image& img, double factor) {
  check_image(img, "color");
  if (img.channels == 1) return img;
  const BlendKernel k(static_cast<float>(factor));
  Image out(img.height, img.width, 3);
  const uint8_t* p = img.pixels.data();
  uint8_t* dst = out.pixels.data();
  for (size_t i = 0; i < out.pixels.size(); i += 3) {
    const uint8_t l = luma(p[i], p[i + 1], p[i + 2]);
    dst[i] = k(l, p[i]);
    dst[i + 1] = k(l, p[i + 1]);
    dst[i + 2] = k(l, p[i + 2]);
  }
  return out;
}

// ImageEnhance.Contrast: blend with a constant image at int(mean of L + 0.5).
Image contrast(const Image& img, double factor) {
  check_image(img, "contrast");
  Histogram h{};
  if (img.channels == 1) {
    h = histograms(img)[0];
  } else {
    for (size_t i = 0; i < img.pixels.size(); i += 3) {
      ++h[luma(img.pixels[i], img.pixels[i + 1], img.pixels[i + 2])];
    }
  }
  double sum = 0.0;  // ImageStat: a float sum of j * h[j]
  for (int j = 0; j < 256; ++j) sum += static_cast<double>(j * h[j]);
  const double mean = sum / (static_cast<double>(img.height) * img.width);
  return blend_constant(static_cast<uint8_t>(py_int(mean + 0.5)), img, factor);
}

// ImageEnhance.Brightness: blend with black.
Image brightness(const Image& img, double factor) {
  check_image(img, "brightness");
  return blend_constant(0, img, factor);
}

// ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH, a 3x3 [[1,1,1],[1,5,1],[1,1,1]] / 13
// that Filter.c evaluates in float32 (+0.5, truncated) and leaves the one-pixel border (and
// images under 3x3) as they are; there the blend gives the input back.
Image sharpness(const Image& img, double factor) {
  check_image(img, "sharpness");
  if (img.width < 3 || img.height < 3) return img;
  const BlendKernel k(static_cast<float>(factor));
  const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
  // Products from tables: Filter.c's float roundings, and no fused multiply-add.
  std::array<float, 256> t1, t5;
  for (int v = 0; v < 256; ++v) {
    t1[v] = static_cast<float>(v) * k1;
    t5[v] = static_cast<float>(v) * k5;
  }
  // Row sums (t1[left] + t1[centre]) + t1[right], each shared by the rows above and below.
  const int c = img.channels;
  const size_t stride = static_cast<size_t>(img.width) * c;
  std::vector<float> sums(3 * stride);  // rolling: row r in slot r % 3
  auto row_sums = [&](int r) {
    const uint8_t* p = &img.pixels[r * stride];
    float* o = &sums[(r % 3) * stride];
    for (size_t i = c; i < stride - c; ++i) o[i] = (t1[p[i - c]] + t1[p[i]]) + t1[p[i + c]];
  };
  row_sums(0);
  row_sums(1);
  Image out = img;
  for (int y = 1; y < img.height - 1; ++y) {
    row_sums(y + 1);
    const float* above = &sums[((y - 1) % 3) * stride];
    const float* below = &sums[((y + 1) % 3) * stride];
    const uint8_t* row = &img.pixels[y * stride];
    uint8_t* dst = &out.pixels[y * stride];
    for (size_t i = c; i < stride - c; ++i) {
      // Filter.c's order: 0.5, then the row below, this row (centre weight 5), the row above.
      const float centre = (t1[row[i - c]] + t5[row[i]]) + t1[row[i + c]];
      const float ss = ((0.5f + below[i]) + centre) + above[i];
      dst[i] = k(clip8_trunc(ss), row[i]);
    }
  }
  return out;
}

}  // namespace ops

// ---------------------------------------------------------------------------------------
// Catalogue and level-to-argument maps (timm's LEVEL_TO_ARG)

namespace {

// One row per op, in AugmentOp's order: timm's name, whether its argument takes a random sign
// (_randomly_negate), whether it resamples (and so draws a filter), LEVEL_TO_ARG (level =
// magnitude / 10; `sign` is -1 or 1) and the PIL operation.
struct OpSpec {
  AugmentOp op;
  const char* name;
  bool is_signed;
  bool geometric;
  double (*argument)(double level, double sign);
  Image (*apply)(const Image& img, double arg, const std::vector<uint8_t>& fill, AffineFilter);
};

using Fill = std::vector<uint8_t>;
double none(double, double) { return 0.0; }
double enhance(double level, double) { return level * 1.8 + 0.1; }
double enhance_increasing(double level, double sign) {
  return std::max(0.1, 1.0 + sign * (level * 0.9));  // kept >= 0.1
}
double posterize_bits(double level, double) { return py_int(level * 4); }
double solarize_threshold(double level, double) { return std::min(256, py_int(level * 256)); }
Image color_op(const Image& img, double arg, const Fill&, AffineFilter) {
  return ops::color(img, arg);
}
Image contrast_op(const Image& img, double arg, const Fill&, AffineFilter) {
  return ops::contrast(img, arg);
}
Image brightness_op(const Image& img, double arg, const Fill&, AffineFilter) {
  return ops::brightness(img, arg);
}
Image sharpness_op(const Image& img, double arg, const Fill&, AffineFilter) {
  return ops::sharpness(img, arg);
}
Image posterize_op(const Image& img, double arg, const Fill&, AffineFilter) {
  return ops::posterize(img, py_int(arg));
}
Image solarize_op(const Image& img, double arg, const Fill&, AffineFilter) {
  return ops::solarize(img, py_int(arg));
}

constexpr size_t kNumOps = static_cast<size_t>(AugmentOp::kTranslateYRel) + 1;

const std::array<OpSpec, kNumOps>& op_table() {
  using A = AugmentOp;
  static const std::array<OpSpec, kNumOps> table = {{
      {A::kAutoContrast, "AutoContrast", false, false, none,
       [](const Image& img, double, const Fill&, AffineFilter) { return ops::auto_contrast(img); }},
      {A::kEqualize, "Equalize", false, false, none,
       [](const Image& img, double, const Fill&, AffineFilter) { return ops::equalize(img); }},
      {A::kInvert, "Invert", false, false, none,
       [](const Image& img, double, const Fill&, AffineFilter) { return ops::invert(img); }},
      {A::kRotate, "Rotate", true, true,
       [](double level, double sign) { return sign * (level * 30.0); },
       [](const Image& img, double arg, const Fill& fill, AffineFilter filter) {
         return ops::rotate(img, arg, fill, filter);
       }},
      {A::kPosterize, "Posterize", false, false, posterize_bits, posterize_op},
      {A::kPosterizeIncreasing, "PosterizeIncreasing", false, false,
       [](double level, double) { return 4.0 - py_int(level * 4); }, posterize_op},
      {A::kSolarize, "Solarize", false, false, solarize_threshold, solarize_op},
      {A::kSolarizeIncreasing, "SolarizeIncreasing", false, false,
       [](double level, double sign) { return 256 - solarize_threshold(level, sign); },
       solarize_op},
      {A::kSolarizeAdd, "SolarizeAdd", false, false,
       [](double level, double) { return static_cast<double>(std::min(128, py_int(level * 110))); },
       [](const Image& img, double arg, const Fill&, AffineFilter) {
         return ops::solarize_add(img, py_int(arg));
       }},
      {A::kColor, "Color", false, false, enhance, color_op},
      {A::kColorIncreasing, "ColorIncreasing", true, false, enhance_increasing, color_op},
      {A::kContrast, "Contrast", false, false, enhance, contrast_op},
      {A::kContrastIncreasing, "ContrastIncreasing", true, false, enhance_increasing, contrast_op},
      {A::kBrightness, "Brightness", false, false, enhance, brightness_op},
      {A::kBrightnessIncreasing, "BrightnessIncreasing", true, false, enhance_increasing,
       brightness_op},
      {A::kSharpness, "Sharpness", false, false, enhance, sharpness_op},
      {A::kSharpnessIncreasing, "SharpnessIncreasing", true, false, enhance_increasing,
       sharpness_op},
      {A::kShearX, "ShearX", true, true,
       [](double level, double sign) { return sign * (level * 0.3); },
       [](const Image& img, double arg, const Fill& fill, AffineFilter filter) {
         return ops::shear_x(img, arg, fill, filter);
       }},
      {A::kShearY, "ShearY", true, true,
       [](double level, double sign) { return sign * (level * 0.3); },
       [](const Image& img, double arg, const Fill& fill, AffineFilter filter) {
         return ops::shear_y(img, arg, fill, filter);
       }},
      {A::kTranslateXRel, "TranslateXRel", true, true,
       [](double level, double sign) { return sign * (level * 0.45); },
       [](const Image& img, double arg, const Fill& fill, AffineFilter filter) {
         return ops::translate_x(img, arg * img.width, fill, filter);
       }},
      {A::kTranslateYRel, "TranslateYRel", true, true,
       [](double level, double sign) { return sign * (level * 0.45); },
       [](const Image& img, double arg, const Fill& fill, AffineFilter filter) {
         return ops::translate_y(img, arg * img.height, fill, filter);
       }},
  }};
  return table;
}

const OpSpec& spec(AugmentOp op) {
  const auto index = static_cast<size_t>(op);
  TVIT_CHECK(index < kNumOps, "RandAugment: unknown op ", static_cast<int>(op));
  const auto& row = op_table()[index];
  TVIT_CHECK(row.op == op, "RandAugment: the op table is out of order at ", row.name);
  return row;
}

}  // namespace

const char* op_name(AugmentOp op) { return spec(op).name; }

std::vector<AugmentOp> rand_augment_op_set(bool increasing) {
  using A = AugmentOp;
  if (increasing) {
    return {A::kAutoContrast,
            A::kEqualize,
            A::kInvert,
            A::kRotate,
            A::kPosterizeIncreasing,
            A::kSolarizeIncreasing,
            A::kSolarizeAdd,
            A::kColorIncreasing,
            A::kContrastIncreasing,
            A::kBrightnessIncreasing,
            A::kSharpnessIncreasing,
            A::kShearX,
            A::kShearY,
            A::kTranslateXRel,
            A::kTranslateYRel};
  }
  return {A::kAutoContrast, A::kEqualize,    A::kInvert, A::kRotate,        A::kPosterize,
          A::kSolarize,     A::kSolarizeAdd, A::kColor,  A::kContrast,      A::kBrightness,
          A::kSharpness,    A::kShearX,      A::kShearY, A::kTranslateXRel, A::kTranslateYRel};
}

bool op_is_signed(AugmentOp op) { return spec(op).is_signed; }

double op_argument(AugmentOp op, double magnitude, bool negate) {
  constexpr double kLevelDenom = 10.0;  // timm's _LEVEL_DENOM, whatever mmax is
  return spec(op).argument(magnitude / kLevelDenom, negate ? -1.0 : 1.0);
}

Image apply_op(const Image& img, AugmentOp op, double arg, const std::vector<uint8_t>& fill,
               AffineFilter filter) {
  return spec(op).apply(img, arg, fill, filter);
}

// ---------------------------------------------------------------------------------------
// Policy strings

RandAugmentPolicy parse_rand_augment(const std::string& text, const std::string& what) {
  const auto prefix = what + ": bad RandAugment policy '" + text + "': ";
  std::vector<std::string> sections;
  size_t start = 0;
  while (true) {
    const size_t dash = text.find('-', start);
    sections.push_back(text.substr(start, dash == std::string::npos ? dash : dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  TVIT_CHECK(sections[0] == "rand", prefix,
             "it must start with 'rand' (e.g. 'rand-m9-mstd0.5-inc1')");
  RandAugmentPolicy policy;
  policy.magnitude = 10.0;  // timm's default without an m section
  std::set<std::string> seen;
  for (size_t i = 1; i < sections.size(); ++i) {
    const std::string& s = sections[i];
    size_t k = 0;
    while (k < s.size() && std::isalpha(static_cast<unsigned char>(s[k]))) ++k;
    const std::string key = s.substr(0, k), value = s.substr(k);
    TVIT_CHECK(
        key == "m" || key == "n" || key == "mstd" || key == "mmax" || key == "inc" || key == "p",
        prefix, "unknown section '", s,
        "' (expected m, n, mstd, mmax, inc or p followed by a number)");
    TVIT_CHECK(seen.insert(key).second, prefix, "section '", key, "' given twice");
    // A plain non-negative decimal: digits and at most one point, a digit first.
    const bool number = !value.empty() && std::isdigit(static_cast<unsigned char>(value[0])) &&
                        std::count(value.begin(), value.end(), '.') <= 1 &&
                        std::all_of(value.begin(), value.end(), [](char ch) {
                          return std::isdigit(static_cast<unsigned char>(ch)) || ch == '.';
                        });
    TVIT_CHECK(number, prefix, "section '", s, "' needs a number after '", key, "'");
    const double v = std::strtod(value.c_str(), nullptr);
    if (key == "m") {
      policy.magnitude = v;
    } else if (key == "n") {
      TVIT_CHECK(value.find('.') == std::string::npos && v <= 100, prefix, "section '", s,
                 "': the number of ops must be an integer in [0, 100]");
      policy.num_ops = static_cast<int>(v);
    } else if (key == "mstd") {
      // timm: above 100 means uniform sampling in [0, m].
      policy.magnitude_std = v > 100 ? std::numeric_limits<double>::infinity() : v;
    } else if (key == "mmax") {
      TVIT_CHECK(v > 0 && v <= 1000, prefix, "section '", s, "': mmax must be in (0, 1000]");
      policy.magnitude_max = v;
    } else if (key == "inc") {
      TVIT_CHECK(value == "0" || value == "1", prefix, "section '", s, "': inc must be 0 or 1");
      policy.increasing = value == "1";
    } else {
      TVIT_CHECK(v <= 1, prefix, "section '", s, "': p must be in [0, 1]");
      policy.prob = v;
    }
  }
  return policy;
}

// ---------------------------------------------------------------------------------------
// RandAugment

Image rand_augment(const Image& img, const RandAugmentPolicy& policy, Rng& rng) {
  check_image(img, "rand_augment");
  TVIT_CHECK(policy.num_ops >= 0, "rand_augment: num_ops must be >= 0, found ", policy.num_ops);
  TVIT_CHECK(policy.prob >= 0 && policy.prob <= 1, "rand_augment: prob must be in [0, 1], found ",
             policy.prob);
  TVIT_CHECK(policy.magnitude_std >= 0, "rand_augment: magnitude_std must be >= 0, found ",
             policy.magnitude_std);
  TVIT_CHECK(policy.magnitude_max > 0 && policy.magnitude_max <= 1000,
             "rand_augment: magnitude_max must be in (0, 1000], found ", policy.magnitude_max);
  TVIT_CHECK(std::isfinite(policy.magnitude), "rand_augment: magnitude must be finite");
  TVIT_CHECK(!policy.filters.empty(), "rand_augment: give at least one filter");
  const auto op_set = rand_augment_op_set(policy.increasing);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  // timm draws all ops first (np.random.choice with replacement), then applies each in turn.
  std::uniform_int_distribution<size_t> pick(0, op_set.size() - 1);
  std::vector<AugmentOp> chosen(policy.num_ops);
  for (auto& op : chosen) op = op_set[pick(rng)];
  Image out = img;
  for (const AugmentOp op : chosen) {
    if (policy.prob < 1.0 && !(u01(rng) < policy.prob)) continue;
    double magnitude = policy.magnitude;
    if (std::isinf(policy.magnitude_std)) {
      magnitude = magnitude * u01(rng);  // timm: random.uniform(0, m)
    } else if (policy.magnitude_std > 0) {
      magnitude = std::normal_distribution<double>(magnitude, policy.magnitude_std)(rng);
    }
    magnitude = std::max(0.0, std::min(magnitude, policy.magnitude_max));
    const bool negate = op_is_signed(op) && u01(rng) > 0.5;
    const double arg = op_argument(op, magnitude, negate);
    AffineFilter filter = policy.filters[0];
    if (spec(op).geometric && policy.filters.size() > 1) {
      filter =
          policy.filters[std::uniform_int_distribution<size_t>(0, policy.filters.size() - 1)(rng)];
    }
    out = apply_op(out, op, arg, policy.fill, filter);
  }
  return out;
}

}  // namespace thinkingvit::data
