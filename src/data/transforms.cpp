#include "thinkingvit/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::data {

Interpolation parse_interpolation(const std::string& text, const std::string& what) {
  if (text == "bicubic") return Interpolation::kBicubic;
  if (text == "bilinear") return Interpolation::kBilinear;
  if (text == "nearest") return Interpolation::kNearest;
  fail(what, ": expected bicubic, bilinear or nearest, found '", text, "'");
}

namespace {

// PIL's Resample.c: filters, coefficient tables in 22-bit fixed point, 8-bit passes.
constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}
double bilinear_filter(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// For each output coordinate: the first input index and integer weights over [first, first+n).
struct Coeffs {
  std::vector<int> first, count;
  std::vector<int32_t> weights;  // out_size x max_taps
  int max_taps = 0;
};

Coeffs precompute(int in_size, int out_size, Interpolation interp) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = (interp == Interpolation::kBicubic ? 2.0 : 1.0) * filterscale;
  const auto filter = interp == Interpolation::kBicubic ? bicubic_filter : bilinear_filter;
  Coeffs c;
  c.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.max_taps, 0);
  std::vector<double> k(c.max_taps);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      k[x] = filter((x + xmin - center + 0.5) / filterscale);
      total += k[x];
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
    for (int x = 0; x < xmax; ++x) {
      const double w = total != 0.0 ? k[x] / total : 0.0;
      c.weights[static_cast<size_t>(xx) * c.max_taps + x] = static_cast<int32_t>(
          w < 0 ? w * (1 << kPrecisionBits) - 0.5 : w * (1 << kPrecisionBits) + 0.5);
    }
  }
  return c;
}

// 8-bit passes in 32-bit sums, as PIL's (255 x the weights' absolute sum stays below 2^31).
TVIT_INLINE uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Rows of `rows` x (in width) x C -> rows x out_w x C along x; src rows `src_stride` bytes apart.
template <int kChannels>
TVIT_INLINE void horizontal_pass_t(const uint8_t* src, size_t src_stride, int rows,
                                   const Coeffs& h, int out_w, int channels, uint8_t* dst) {
  const int c = kChannels > 0 ? kChannels : channels;
  for (int y = 0; y < rows; ++y) {
    const uint8_t* row = src + y * src_stride;
    uint8_t* out = dst + static_cast<size_t>(y) * out_w * c;
    for (int x = 0; x < out_w; ++x) {
      const int32_t* k = &h.weights[static_cast<size_t>(x) * h.max_taps];
      const uint8_t* p = row + static_cast<size_t>(h.first[x]) * c;
      const int taps = h.count[x];
      for (int ch = 0; ch < c; ++ch) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int t = 0; t < taps; ++t) ss += int32_t{p[t * c + ch]} * k[t];
        out[x * c + ch] = clip8(ss);
      }
    }
  }
}

TVIT_INLINE void horizontal_pass(const uint8_t* src, size_t src_stride, int rows, const Coeffs& h,
                                 int out_w, int channels, uint8_t* dst) {
  if (channels == 3) return horizontal_pass_t<3>(src, src_stride, rows, h, out_w, 3, dst);
  if (channels == 1) return horizontal_pass_t<1>(src, src_stride, rows, h, out_w, 1, dst);
  horizontal_pass_t<0>(src, src_stride, rows, h, out_w, channels, dst);
}

// Along y, one output row at a time, whole rows at once so the sums vectorise.
TVIT_INLINE void vertical_pass(const uint8_t* src, size_t stride, int row_first, const Coeffs& v,
                               int out_h, uint8_t* dst, int32_t* acc) {
  for (int y = 0; y < out_h; ++y) {
    const int32_t* k = &v.weights[static_cast<size_t>(y) * v.max_taps];
    const uint8_t* rows = src + static_cast<size_t>(v.first[y] - row_first) * stride;
    std::fill(acc, acc + stride, int32_t{1} << (kPrecisionBits - 1));
    for (int t = 0; t < v.count[y]; ++t) {
      const int32_t w = k[t];
      const uint8_t* row = rows + t * stride;
      for (size_t i = 0; i < stride; ++i) acc[i] += int32_t{row[i]} * w;
    }
    uint8_t* out = dst + static_cast<size_t>(y) * stride;
    for (size_t i = 0; i < stride; ++i) out[i] = clip8(acc[i]);
  }
}

#if TVIT_HAVE_AVX2_COPY
TVIT_TARGET_AVX2 void horizontal_pass_avx2(const uint8_t* src, size_t src_stride, int rows,
                                           const Coeffs& h, int out_w, int channels,
                                           uint8_t* dst) {
  horizontal_pass(src, src_stride, rows, h, out_w, channels, dst);
}
TVIT_TARGET_AVX2 void vertical_pass_avx2(const uint8_t* src, size_t stride, int row_first,
                                         const Coeffs& v, int out_h, uint8_t* dst,
                                         int32_t* acc) {
  vertical_pass(src, stride, row_first, v, out_h, dst, acc);
}
#endif

void run_horizontal(const uint8_t* src, size_t src_stride, int rows, const Coeffs& h, int out_w,
                    int channels, uint8_t* dst) {
#if TVIT_HAVE_AVX2_COPY
  if (util::cpu_has_avx2_fma()) {
    return horizontal_pass_avx2(src, src_stride, rows, h, out_w, channels, dst);
  }
#endif
  horizontal_pass(src, src_stride, rows, h, out_w, channels, dst);
}

void run_vertical(const uint8_t* src, size_t stride, int row_first, const Coeffs& v, int out_h,
                  uint8_t* dst) {
  std::vector<int32_t> acc(stride);
#if TVIT_HAVE_AVX2_COPY
  if (util::cpu_has_avx2_fma()) {
    return vertical_pass_avx2(src, stride, row_first, v, out_h, dst, acc.data());
  }
#endif
  vertical_pass(src, stride, row_first, v, out_h, dst, acc.data());
}

}  // namespace

Image resize_box(const Image& img, const CropBox& box, int out_w, int out_h, Interpolation interp) {
  TVIT_CHECK(out_w > 0 && out_h > 0 && box.width > 0 && box.height > 0 && box.left >= 0 &&
                 box.top >= 0 && box.left + box.width <= img.width &&
                 box.top + box.height <= img.height,
             "resize: invalid box or size");
  const int c = img.channels;
  if (interp == Interpolation::kNearest) {
    Image out(out_h, out_w, c);
    for (int y = 0; y < out_h; ++y) {
      const int sy = box.top + static_cast<int>((y + 0.5) * box.height / out_h);
      for (int x = 0; x < out_w; ++x) {
        const int sx = box.left + static_cast<int>((x + 0.5) * box.width / out_w);
        for (int ch = 0; ch < c; ++ch) out.at(y, x, ch) = img.at(sy, sx, ch);
      }
    }
    return out;
  }
  // Horizontal pass over the rows the vertical pass needs, then the vertical pass.
  const auto vert = precompute(box.height, out_h, interp);
  const int row_first = vert.first.front();
  const int row_last = vert.first.back() + vert.count.back();
  const int rows = row_last - row_first;
  const size_t img_stride = static_cast<size_t>(img.width) * c;
  const uint8_t* top_left =
      &img.pixels[static_cast<size_t>(box.top + row_first) * img_stride + box.left * c];
  Image tmp(rows, out_w, c);
  if (out_w == box.width) {
    for (int y = 0; y < rows; ++y) {
      std::copy(top_left + y * img_stride, top_left + y * img_stride + static_cast<size_t>(out_w) * c,
                &tmp.pixels[static_cast<size_t>(y) * out_w * c]);
    }
  } else {
    run_horizontal(top_left, img_stride, rows, precompute(box.width, out_w, interp), out_w, c,
                   tmp.pixels.data());
  }
  if (out_h == rows && row_first == 0 && out_h == box.height) return tmp;
  Image out(out_h, out_w, c);
  run_vertical(tmp.pixels.data(), static_cast<size_t>(out_w) * c, row_first, vert, out_h,
               out.pixels.data());
  return out;
}

Image resize(const Image& img, int out_w, int out_h, Interpolation interp) {
  return resize_box(img, {0, 0, img.height, img.width}, out_w, out_h, interp);
}

Image resize_shorter(const Image& img, int size, Interpolation interp) {
  const int short_side = std::min(img.height, img.width);
  const int long_side = std::max(img.height, img.width);
  const int other = static_cast<int>(static_cast<int64_t>(size) * long_side / short_side);
  if (short_side == size) return img;
  return img.height <= img.width ? resize(img, other, size, interp)
                                 : resize(img, size, other, interp);
}

Image crop(const Image& img, const CropBox& box) {
  TVIT_CHECK(box.top >= 0 && box.left >= 0 && box.top + box.height <= img.height &&
                 box.left + box.width <= img.width,
             "crop: box outside the image");
  Image out(box.height, box.width, img.channels);
  const size_t row = static_cast<size_t>(box.width) * img.channels;
  for (int y = 0; y < box.height; ++y) {
    const uint8_t* src =
        &img.pixels[(static_cast<size_t>(box.top + y) * img.width + box.left) * img.channels];
    std::copy(src, src + row, &out.pixels[static_cast<size_t>(y) * row]);
  }
  return out;
}

Image center_crop(const Image& img, int height, int width) {
  TVIT_CHECK(height <= img.height && width <= img.width, "center crop ", height, "x", width,
             " is larger than the image ", img.height, "x", img.width);
  const int top = static_cast<int>(std::round((img.height - height) / 2.0));
  const int left = static_cast<int>(std::round((img.width - width) / 2.0));
  return crop(img, {top, left, height, width});
}

Image hflip(const Image& img) {
  Image out(img.height, img.width, img.channels);
  for (int y = 0; y < img.height; ++y) {
    for (int x = 0; x < img.width; ++x) {
      for (int c = 0; c < img.channels; ++c) out.at(y, x, c) = img.at(y, img.width - 1 - x, c);
    }
  }
  return out;
}

Image pad_random_crop(const Image& img, int size, int padding, Rng& rng) {
  const int h = img.height + 2 * padding, w = img.width + 2 * padding;
  TVIT_CHECK(size <= h && size <= w, "pad-and-crop: crop ", size, " exceeds the padded image ", h,
             "x", w);
  const int top = std::uniform_int_distribution<int>(0, h - size)(rng);
  const int left = std::uniform_int_distribution<int>(0, w - size)(rng);
  Image out(size, size, img.channels);
  for (int y = 0; y < size; ++y) {
    const int sy = top + y - padding;
    if (sy < 0 || sy >= img.height) continue;
    for (int x = 0; x < size; ++x) {
      const int sx = left + x - padding;
      if (sx < 0 || sx >= img.width) continue;
      for (int c = 0; c < img.channels; ++c) out.at(y, x, c) = img.at(sy, sx, c);
    }
  }
  return out;
}

Image to_channels(const Image& img, int channels) {
  if (img.channels == channels) return img;
  Image out(img.height, img.width, channels);
  const size_t n = static_cast<size_t>(img.height) * img.width;
  if (img.channels == 1 && channels == 3) {
    for (size_t i = 0; i < n; ++i) {
      out.pixels[3 * i] = out.pixels[3 * i + 1] = out.pixels[3 * i + 2] = img.pixels[i];
    }
    return out;
  }
  TVIT_CHECK(img.channels == 3 && channels == 1, "cannot convert ", img.channels, " channels to ",
             channels);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &img.pixels[3 * i];
    // PIL's "L" conversion: (R*299 + G*587 + B*114) / 1000, rounded.
    out.pixels[i] =
        static_cast<uint8_t>((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
  }
  return out;
}

CropBox random_resized_crop_box(int height, int width, std::array<double, 2> scale,
                                std::array<double, 2> ratio, Rng& rng) {
  const double area = static_cast<double>(height) * width;
  std::uniform_real_distribution<double> u_scale(scale[0], scale[1]);
  std::uniform_real_distribution<double> u_log_ratio(std::log(ratio[0]), std::log(ratio[1]));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * u_scale(rng);
    const double aspect = std::exp(u_log_ratio(rng));
    const int w = static_cast<int>(std::round(std::sqrt(target * aspect)));
    const int h = static_cast<int>(std::round(std::sqrt(target / aspect)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const int top = std::uniform_int_distribution<int>(0, height - h)(rng);
      const int left = std::uniform_int_distribution<int>(0, width - w)(rng);
      return {top, left, h, w};
    }
  }
  // Fallback: a centre crop with the aspect ratio clamped to the range.
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio[0]) {
    h = static_cast<int>(std::round(w / ratio[0]));
  } else if (in_ratio > ratio[1]) {
    w = static_cast<int>(std::round(h * ratio[1]));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

void write_normalized(const Image& img, const std::vector<float>& mean,
                      const std::vector<float>& std, float* dst) {
  const int c = img.channels;
  TVIT_CHECK(static_cast<int>(mean.size()) == c && static_cast<int>(std.size()) == c,
             "normalise: expected ", c, " mean/std values, found ", mean.size(), "/", std.size());
  const size_t n = static_cast<size_t>(img.height) * img.width;
  for (int ch = 0; ch < c; ++ch) {
    const float s = 1.0f / (255.0f * std[ch]), b = -mean[ch] / std[ch];
    float* plane = dst + ch * n;
    for (size_t i = 0; i < n; ++i) plane[i] = img.pixels[i * c + ch] * s + b;
  }
}

void random_erasing(float* chw, int channels, int height, int width, double prob, Rng& rng,
                    double min_area, double max_area) {
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  if (u01(rng) > prob) return;
  const double area = static_cast<double>(height) * width;
  std::uniform_real_distribution<double> u_area(min_area, max_area);
  std::uniform_real_distribution<double> u_log_ratio(std::log(0.3), std::log(1.0 / 0.3));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * u_area(rng);
    const double aspect = std::exp(u_log_ratio(rng));
    const int h = static_cast<int>(std::round(std::sqrt(target * aspect)));
    const int w = static_cast<int>(std::round(std::sqrt(target / aspect)));
    if (w < width && h < height) {
      const int top = std::uniform_int_distribution<int>(0, height - h)(rng);
      const int left = std::uniform_int_distribution<int>(0, width - w)(rng);
      for (int c = 0; c < channels; ++c) {
        for (int y = top; y < top + h; ++y) {
          float* row = chw + (static_cast<size_t>(c) * height + y) * width;
          for (int x = left; x < left + w; ++x) row[x] = normal(rng);
        }
      }
      return;
    }
  }
}

SampleTransform make_train_transform(const TrainTransformOptions& o, int channels) {
  TVIT_CHECK(
      static_cast<int>(o.mean.size()) == channels && static_cast<int>(o.std.size()) == channels,
      "train transform: expected ", channels, " mean and std values, found ", o.mean.size(),
      " and ", o.std.size());
  const bool augment = !o.auto_augment.empty();
  RandAugmentPolicy policy;
  if (augment) policy = parse_rand_augment(o.auto_augment, "augmentation policy");
  // Gray models: the fill's first value. timm has no behaviour to match here: Pillow (9.4)
  // rejects an RGB fill tuple on an 'L' image ("color must be int or single-element tuple").
  if (channels == 1) policy.fill = {policy.fill.empty() ? uint8_t{0} : policy.fill[0]};
  SampleTransform t;
  t.channels = channels;
  t.size = o.size;
  const auto finish = [o, channels, augment, policy](Image img, Rng& rng, float* dst) {
    if (std::uniform_real_distribution<double>(0.0, 1.0)(rng) < o.hflip) img = hflip(img);
    if (augment) img = rand_augment(img, policy, rng);
    write_normalized(img, o.mean, o.std, dst);
    if (o.random_erasing > 0) random_erasing(dst, channels, o.size, o.size, o.random_erasing, rng);
  };
  if (o.small_image) {
    t.apply = [o, channels, finish](const Image& input, Rng& rng, float* dst) {
      finish(pad_random_crop(to_channels(input, channels), o.size, o.padding, rng), rng, dst);
    };
    return t;
  }
  t.crop_box = [o](int height, int width, Rng& rng) {
    return random_resized_crop_box(height, width, o.scale, o.ratio, rng);
  };
  t.apply_cropped = [o, channels, finish](const Image& part, const CropBox& box, Rng& rng,
                                          float* dst) {
    const auto resized = [&](const Image& img) {
      return resize_box(img, box, o.size, o.size, o.interpolation);
    };
    finish(part.channels == channels ? resized(part) : resized(to_channels(part, channels)), rng,
           dst);
  };
  t.apply = [crop_box = t.crop_box, apply_cropped = t.apply_cropped](const Image& input, Rng& rng,
                                                                     float* dst) {
    apply_cropped(input, crop_box(input.height, input.width, rng), rng, dst);
  };
  return t;
}

SampleTransform make_eval_transform(const EvalTransformOptions& o, int channels) {
  TVIT_CHECK(o.crop_pct > 0 && o.crop_pct <= 1,
             "eval transform: crop_pct must be in (0, 1], found ", o.crop_pct);
  TVIT_CHECK(
      static_cast<int>(o.mean.size()) == channels && static_cast<int>(o.std.size()) == channels,
      "eval transform: expected ", channels, " mean and std values, found ", o.mean.size(), " and ",
      o.std.size());
  SampleTransform t;
  t.channels = channels;
  t.size = o.size;
  const int resize_to = static_cast<int>(std::floor(o.size / o.crop_pct));
  t.decode_min_side = resize_to;
  t.apply = [o, channels, resize_to](const Image& input, Rng&, float* dst) {
    Image img = to_channels(input, channels);
    img = resize_shorter(img, resize_to, o.interpolation);
    img = center_crop(img, o.size, o.size);
    write_normalized(img, o.mean, o.std, dst);
  };
  return t;
}

}  // namespace thinkingvit::data
