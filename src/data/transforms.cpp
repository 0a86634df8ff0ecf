#include "thinkingvit/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/limits.h"

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

// The same table with every window max_taps long: windows that would run past the input's end
// slide left and their weights move right, padded with zeros (the sums are unchanged), so the
// pass runs a fixed number of taps and never mispredicts the count.
Coeffs uniform(Coeffs c, int in_size) {
  if (in_size < c.max_taps) {  // tiny inputs: shrink the window to the input instead
    for (size_t x = 0; x < c.first.size(); ++x) {
      for (int t = c.count[x]; t < c.max_taps; ++t) c.weights[x * c.max_taps + t] = 0;
    }
    std::vector<int32_t> narrow(c.first.size() * in_size, 0);
    for (size_t x = 0; x < c.first.size(); ++x) {
      for (int t = 0; t < c.count[x]; ++t)
        narrow[x * in_size + c.first[x] + t] = c.weights[x * c.max_taps + t];
      c.first[x] = 0;
      c.count[x] = in_size;
    }
    c.weights = std::move(narrow);
    c.max_taps = in_size;
    return c;
  }
  for (size_t x = 0; x < c.first.size(); ++x) {
    int32_t* w = &c.weights[x * c.max_taps];
    const int shift = std::max(0, c.first[x] + c.max_taps - in_size);
    for (int t = c.count[x]; t < c.max_taps; ++t) w[t] = 0;
    if (shift > 0) {
      std::copy_backward(w, w + c.max_taps - shift, w + c.max_taps);
      std::fill(w, w + shift, 0);
      c.first[x] -= shift;
    }
    c.count[x] = c.max_taps;
  }
  return c;
}

// 8-bit passes in 32-bit sums, as PIL's (255 x the weights' absolute sum stays below 2^31).
TVIT_INLINE uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
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
TVIT_TARGET_AVX2 void vertical_pass_avx2(const uint8_t* src, size_t stride, int row_first,
                                         const Coeffs& v, int out_h, uint8_t* dst, int32_t* acc) {
  vertical_pass(src, stride, row_first, v, out_h, dst, acc);
}
#endif

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

// `rows` x `cols` pixels of C bytes (rows src_stride apart) -> cols x rows pixels, in tiles that
// stay in L1.
template <int kChannels>
void transpose_pixels(const uint8_t* src, size_t src_stride, int rows, int cols, uint8_t* dst) {
  constexpr int kTile = 32;
  const size_t dst_stride = static_cast<size_t>(rows) * kChannels;
  for (int y0 = 0; y0 < rows; y0 += kTile) {
    for (int x0 = 0; x0 < cols; x0 += kTile) {
      const int y1 = std::min(rows, y0 + kTile), x1 = std::min(cols, x0 + kTile);
      for (int y = y0; y < y1; ++y) {
        const uint8_t* s = src + y * src_stride;
        for (int x = x0; x < x1; ++x) {
          for (int c = 0; c < kChannels; ++c)
            dst[x * dst_stride + y * kChannels + c] = s[x * kChannels + c];
        }
      }
    }
  }
}

void transpose_pixels(const uint8_t* src, size_t src_stride, int rows, int cols, int channels,
                      uint8_t* dst) {
  switch (channels) {
    case 1:
      return transpose_pixels<1>(src, src_stride, rows, cols, dst);
    case 3:
      return transpose_pixels<3>(src, src_stride, rows, cols, dst);
    case 4:
      return transpose_pixels<4>(src, src_stride, rows, cols, dst);
    default:
      fail("resize: expected 1, 3 or 4 channels, found ", channels);
  }
}

// The horizontal pass as a vertical one on the transposed rows: the same sums (so the same
// pixels as PIL's), but each tap is one vectorised multiply-add over a whole column.
void run_horizontal(const uint8_t* src, size_t src_stride, int rows, int in_w, const Coeffs& h,
                    int out_w, int channels, uint8_t* dst) {
  const size_t column = static_cast<size_t>(rows) * channels;
  std::vector<uint8_t> columns(static_cast<size_t>(in_w) * column);
  std::vector<uint8_t> resized(static_cast<size_t>(out_w) * column);
  transpose_pixels(src, src_stride, rows, in_w, channels, columns.data());
  run_vertical(columns.data(), column, /*row_first=*/0, h, out_w, resized.data());
  transpose_pixels(resized.data(), column, out_w, rows, channels, dst);
}

}  // namespace

namespace {

// Entries [begin, begin + n) of a table.
Coeffs slice(const Coeffs& c, int begin, int n) {
  Coeffs out;
  out.max_taps = c.max_taps;
  out.first.assign(c.first.begin() + begin, c.first.begin() + begin + n);
  out.count.assign(c.count.begin() + begin, c.count.begin() + begin + n);
  out.weights.assign(c.weights.begin() + static_cast<size_t>(begin) * c.max_taps,
                     c.weights.begin() + static_cast<size_t>(begin + n) * c.max_taps);
  return out;
}

// [first, last) of the input the table reads; `first` entries are made relative to it.
std::pair<int, int> input_span(Coeffs& c) {
  int lo = c.first.front(), hi = 0;
  for (size_t i = 0; i < c.first.size(); ++i) {
    lo = std::min(lo, c.first[i]);
    hi = std::max(hi, c.first[i] + c.count[i]);
  }
  for (auto& f : c.first) f -= lo;
  return {lo, hi};
}

// resize_box computing only `window` (in output pixels) of the out_w x out_h result: the same
// pixels, for the work of the window alone. An axis whose size does not change is copied, not
// filtered (PIL skips that pass too).
Image resample(const Image& img, const CropBox& box, int out_w, int out_h, const CropBox& window,
               Interpolation interp) {
  TVIT_CHECK(out_w > 0 && out_h > 0 && box.width > 0 && box.height > 0 && box.left >= 0 &&
                 box.top >= 0 && box.left + box.width <= img.width &&
                 box.top + box.height <= img.height,
             "resize: invalid box or size");
  TVIT_CHECK(window.top >= 0 && window.left >= 0 && window.height > 0 && window.width > 0 &&
                 window.top + window.height <= out_h && window.left + window.width <= out_w,
             "resize: window outside the output");
  const int c = img.channels;
  if (interp == Interpolation::kNearest) {
    Image out(window.height, window.width, c);
    for (int y = 0; y < window.height; ++y) {
      const int sy = box.top + static_cast<int>((window.top + y + 0.5) * box.height / out_h);
      for (int x = 0; x < window.width; ++x) {
        const int sx = box.left + static_cast<int>((window.left + x + 0.5) * box.width / out_w);
        for (int ch = 0; ch < c; ++ch) out.at(y, x, ch) = img.at(sy, sx, ch);
      }
    }
    return out;
  }
  // Rows of the box the vertical pass reads (all the window's rows when there is none).
  const bool vertical = out_h != box.height;
  Coeffs vert;
  std::pair<int, int> rows_read = {window.top, window.top + window.height};
  if (vertical) {
    vert = slice(precompute(box.height, out_h, interp), window.top, window.height);
    rows_read = input_span(vert);
  }
  const int rows = rows_read.second - rows_read.first;
  const size_t img_stride = static_cast<size_t>(img.width) * c;
  const uint8_t* row0 = &img.pixels[static_cast<size_t>(box.top + rows_read.first) * img_stride];
  // Horizontal pass over those rows, then the vertical pass.
  Image tmp(rows, window.width, c);
  if (out_w == box.width) {
    const uint8_t* src = row0 + static_cast<size_t>(box.left + window.left) * c;
    const size_t row_bytes = static_cast<size_t>(window.width) * c;
    for (int y = 0; y < rows; ++y) {
      std::copy(src + y * img_stride, src + y * img_stride + row_bytes,
                &tmp.pixels[static_cast<size_t>(y) * row_bytes]);
    }
  } else {
    auto horiz = slice(precompute(box.width, out_w, interp), window.left, window.width);
    const auto cols = input_span(horiz);
    const int in_w = cols.second - cols.first;
    run_horizontal(row0 + static_cast<size_t>(box.left + cols.first) * c, img_stride, rows, in_w,
                   uniform(std::move(horiz), in_w), window.width, c, tmp.pixels.data());
  }
  if (!vertical) return tmp;
  Image out(window.height, window.width, c);
  run_vertical(tmp.pixels.data(), static_cast<size_t>(window.width) * c, /*row_first=*/0, vert,
               window.height, out.pixels.data());
  return out;
}

}  // namespace

Image resize_box(const Image& img, const CropBox& box, int out_w, int out_h, Interpolation interp) {
  return resample(img, box, out_w, out_h, {0, 0, out_h, out_w}, interp);
}

Image resize(const Image& img, int out_w, int out_h, Interpolation interp) {
  return resize_box(img, {0, 0, img.height, img.width}, out_w, out_h, interp);
}

namespace {

// torchvision Resize(int): the shorter side to `size`, the other to int(size * long / short).
std::pair<int, int> shorter_side_size(const Image& img, int size) {  // (height, width)
  const int short_side = std::min(img.height, img.width);
  const int long_side = std::max(img.height, img.width);
  const int other = static_cast<int>(static_cast<int64_t>(size) * long_side / short_side);
  return img.height <= img.width ? std::make_pair(size, other) : std::make_pair(other, size);
}

CropBox center_box(int height, int width, int crop_h, int crop_w) {
  TVIT_CHECK(crop_h <= height && crop_w <= width, "center crop ", crop_h, "x", crop_w,
             " is larger than the image ", height, "x", width);
  return {static_cast<int>(std::round((height - crop_h) / 2.0)),
          static_cast<int>(std::round((width - crop_w) / 2.0)), crop_h, crop_w};
}

}  // namespace

Image resize_shorter(const Image& img, int size, Interpolation interp) {
  if (std::min(img.height, img.width) == size) return img;
  const auto [h, w] = shorter_side_size(img, size);
  return resize(img, w, h, interp);
}

Image resize_shorter_center_crop(const Image& img, int size, int crop, Interpolation interp) {
  if (std::min(img.height, img.width) == size) return center_crop(img, crop, crop);
  const auto [h, w] = shorter_side_size(img, size);
  return resample(img, {0, 0, img.height, img.width}, w, h, center_box(h, w, crop, crop), interp);
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
  return crop(img, center_box(img.height, img.width, height, width));
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

void write_planar(const Image& img, uint8_t* dst) {
  const int c = img.channels;
  const size_t n = static_cast<size_t>(img.height) * img.width;
  for (int ch = 0; ch < c; ++ch) {
    uint8_t* plane = dst + ch * n;
    for (size_t i = 0; i < n; ++i) plane[i] = img.pixels[i * c + ch];
  }
}

std::optional<CropBox> random_erasing_box(int height, int width, double prob, Rng& rng,
                                          double min_area, double max_area) {
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  if (u01(rng) > prob) return std::nullopt;
  const double area = static_cast<double>(height) * width;
  std::uniform_real_distribution<double> u_area(min_area, max_area);
  std::uniform_real_distribution<double> u_log_ratio(std::log(0.3), std::log(1.0 / 0.3));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * u_area(rng);
    const double aspect = std::exp(u_log_ratio(rng));
    const int h = static_cast<int>(std::round(std::sqrt(target * aspect)));
    const int w = static_cast<int>(std::round(std::sqrt(target / aspect)));
    if (w < width && h < height) {
      const int top = std::uniform_int_distribution<int>(0, height - h)(rng);
      const int left = std::uniform_int_distribution<int>(0, width - w)(rng);
      return CropBox{top, left, h, w};
    }
  }
  return std::nullopt;
}

std::vector<float> random_erasing_noise(int channels, const CropBox& box, Rng& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> noise(static_cast<size_t>(channels) * box.height * box.width);
  for (auto& v : noise) v = normal(rng);
  return noise;
}

void random_erasing(float* chw, int channels, int height, int width, double prob, Rng& rng,
                    double min_area, double max_area) {
  const auto box = random_erasing_box(height, width, prob, rng, min_area, max_area);
  if (!box) return;
  const auto noise = random_erasing_noise(channels, *box, rng);
  const float* next = noise.data();
  for (int c = 0; c < channels; ++c) {
    for (int y = box->top; y < box->top + box->height; ++y) {
      float* row = chw + (static_cast<size_t>(c) * height + y) * width + box->left;
      std::copy(next, next + box->width, row);
      next += box->width;
    }
  }
}

namespace {

// The transforms' last step: normalised floats, or the pixels as they are (a uint8 batch).
void write_sample(const Image& img, const std::vector<float>& mean, const std::vector<float>& std,
                  const SampleOut& dst) {
  if (dst.floats != nullptr) {
    write_normalized(img, mean, std, dst.floats);
  } else {
    write_planar(img, dst.pixels);
  }
}

}  // namespace

SampleTransform make_train_transform(const TrainTransformOptions& o, int channels) {
  TVIT_CHECK(
      static_cast<int>(o.mean.size()) == channels && static_cast<int>(o.std.size()) == channels,
      "train transform: expected ", channels, " mean and std values, found ", o.mean.size(),
      " and ", o.std.size());
  const bool augment = !o.auto_augment.empty();
  RandAugmentPolicy policy;
  if (augment) policy = parse_rand_augment(o.auto_augment, "augmentation policy");
  // Gray models keep the RGB fill: the ops take its L conversion (124, 116, 104 -> 117). timm has
  // no behaviour to match (Pillow 9.4 rejects an RGB fill on an 'L' image: "color must be int
  // or single-element tuple"); this is the image a gray conversion of the RGB result would give.
  SampleTransform t;
  t.channels = channels;
  t.size = o.size;
  t.mean = o.mean;
  t.std = o.std;
  const auto finish = [o, channels, augment, policy](Image img, Rng& rng, const SampleOut& dst) {
    if (std::uniform_real_distribution<double>(0.0, 1.0)(rng) < o.hflip) img = hflip(img);
    if (augment) img = rand_augment(img, policy, rng);
    write_sample(img, o.mean, o.std, dst);
    if (o.random_erasing <= 0) return;
    if (dst.floats != nullptr) {
      random_erasing(dst.floats, channels, o.size, o.size, o.random_erasing, rng);
    } else if (const auto box = random_erasing_box(o.size, o.size, o.random_erasing, rng)) {
      *dst.erased = ErasedBox{*box, random_erasing_noise(channels, *box, rng)};
    }
  };
  if (o.small_image) {
    t.apply = [o, channels, finish](const Image& input, Rng& rng, SampleOut dst) {
      finish(pad_random_crop(to_channels(input, channels), o.size, o.padding, rng), rng, dst);
    };
    return t;
  }
  t.crop_box = [o](int height, int width, Rng& rng) {
    return random_resized_crop_box(height, width, o.scale, o.ratio, rng);
  };
  t.apply_cropped = [o, channels, finish](const Image& part, const CropBox& box, Rng& rng,
                                          SampleOut dst) {
    const auto resized = [&](const Image& img) {
      return resize_box(img, box, o.size, o.size, o.interpolation);
    };
    finish(part.channels == channels ? resized(part) : resized(to_channels(part, channels)), rng,
           dst);
  };
  t.apply = [crop_box = t.crop_box, apply_cropped = t.apply_cropped](const Image& input, Rng& rng,
                                                                     SampleOut dst) {
    apply_cropped(input, crop_box(input.height, input.width, rng), rng, dst);
  };
  return t;
}

bool crop_pct_fits(int size, double crop_pct) {
  return crop_pct > 0 && crop_pct <= 1 && size / crop_pct <= util::kMaxImageSize;
}

SampleTransform make_eval_transform(const EvalTransformOptions& o, int channels) {
  TVIT_CHECK(crop_pct_fits(o.size, o.crop_pct), "eval transform: crop_pct must be in (0, 1] with ",
             "size / crop_pct <= ", util::kMaxImageSize, ", found ", o.crop_pct);
  TVIT_CHECK(
      static_cast<int>(o.mean.size()) == channels && static_cast<int>(o.std.size()) == channels,
      "eval transform: expected ", channels, " mean and std values, found ", o.mean.size(), " and ",
      o.std.size());
  SampleTransform t;
  t.channels = channels;
  t.size = o.size;
  t.mean = o.mean;
  t.std = o.std;
  const int resize_to = static_cast<int>(std::floor(o.size / o.crop_pct));
  t.decode_min_side = resize_to;
  t.apply = [o, channels, resize_to](const Image& input, Rng&, SampleOut dst) {
    const auto resized = [&](const Image& img) {
      return resize_shorter_center_crop(img, resize_to, o.size, o.interpolation);
    };
    write_sample(
        input.channels == channels ? resized(input) : resized(to_channels(input, channels)), o.mean,
        o.std, dst);
  };
  return t;
}

}  // namespace thinkingvit::data
