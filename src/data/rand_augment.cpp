#include "thinkingvit/data/rand_augment.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "thinkingvit/util/error.h"

// Every op reproduces Pillow 9.4 bit for bit (the C sources named below), including its
// float32 blend, its truncating casts and its fixed-point nearest-neighbour affine paths, so
// that training sees the images timm's RandAugment would produce.

namespace thinkingvit::data {

namespace {

using Lut = std::array<uint8_t, 256>;

void check_image(const Image& img, const char* op) {
  TVIT_CHECK(img.channels == 1 || img.channels == 3, op,
             ": expected a gray (1 channel) or RGB (3 channel) image, found ", img.channels,
             " channels");
  TVIT_CHECK(img.height > 0 && img.width > 0, op, ": empty image (", img.height, " x ", img.width,
             ")");
  TVIT_CHECK(img.pixels.size() == static_cast<size_t>(img.height) * img.width * img.channels, op,
             ": image holds ", img.pixels.size(), " bytes, expected ", img.height, " x ", img.width,
             " x ", img.channels);
}

// PIL's Image.point clips every table entry to [0, 255] (CLIP8 in _imaging.c).
uint8_t clip8(int64_t v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }

// float -> uint8 as PIL's Blend.c and Filter.c do it: clip, then truncate. Branch-free on
// x86 (blends of noisy images clip unpredictably).
inline uint8_t clip8_trunc(float v) {
#if defined(__SSE2__)
  const __m128 clipped =
      _mm_min_ss(_mm_max_ss(_mm_set_ss(v), _mm_setzero_ps()), _mm_set_ss(255.0f));
  return static_cast<uint8_t>(_mm_cvttss_si32(clipped));
#else
  if (v <= 0.0f) return 0;
  if (v >= 255.0f) return 255;
  return static_cast<uint8_t>(v);
#endif
}

// The same for Geometry.c's double results.
inline uint8_t clip8_trunc(double v) {
#if defined(__SSE2__)
  const __m128d clipped =
      _mm_min_sd(_mm_max_sd(_mm_set_sd(v), _mm_setzero_pd()), _mm_set_sd(255.0));
  return static_cast<uint8_t>(_mm_cvttsd_si32(clipped));
#else
  if (v <= 0.0) return 0;
  if (v >= 255.0) return 255;
  return static_cast<uint8_t>(v);
#endif
}

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

// PIL's RGB -> L (Convert.c, L24): ITU-R 601-2 luma in 16-bit fixed point.
uint8_t luma(int r, int g, int b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// The per-channel fill colour of a geometric op (see ops::affine).
std::array<uint8_t, 3> resolve_fill(const std::vector<uint8_t>& fill, int channels) {
  std::array<uint8_t, 3> out{};
  if (fill.empty()) return out;  // PIL without fillcolor: black
  if (static_cast<int>(fill.size()) == channels) {
    std::copy(fill.begin(), fill.end(), out.begin());
  } else if (fill.size() == 1) {
    out.fill(fill[0]);
  } else if (fill.size() == 3 && channels == 1) {
    out[0] = luma(fill[0], fill[1], fill[2]);
  } else {
    fail("geometric augmentation: fill has ", fill.size(), " values for a ", channels,
         "-channel image; give 1 or ", channels);
  }
  return out;
}

// Python's float % (the sign follows the divisor), as Image.rotate's `angle % 360.0`.
double py_mod(double x, double m) {
  double r = std::fmod(x, m);
  if (r != 0.0) {
    if ((m < 0) != (r < 0)) r += m;
  } else {
    r = std::copysign(0.0, m);
  }
  return r;
}

// Python's round(v, 15): correctly rounded to 15 decimals, as printf("%.15f") does.
double py_round15(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15f", v);
  return std::strtod(buf, nullptr);
}

// Python's int() on a double, saturated to the int range.
int py_int(double v) {
  if (!(v > -1e9)) return -1000000000;
  if (v > 1e9) return 1000000000;
  return static_cast<int>(v);
}

// Geometry.c: FLOOR and COORD.
inline int pil_floor(double v) {
  return v < 0.0 ? static_cast<int>(std::floor(v)) : static_cast<int>(v);
}
inline int pil_coord(double v) { return v < 0.0 ? -1 : static_cast<int>(v); }

// Geometry.c BICUBIC: the a = -1 cubic through v1..v4 at offset d in [0, 1) from v2, in
// PIL's Horner form so that every rounding is the same.
inline double pil_cubic(double v1, double v2, double v3, double v4, double d) {
  const double p1 = v2;
  const double p2 = -v1 + v3;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

// The same on 8-bit samples: p2..p4 are small integers, exact in int as in double.
inline double pil_cubic_u8(int v1, int v2, int v3, int v4, double d) {
  const int p2 = -v1 + v3;
  const int p3 = 2 * (v1 - v2) + v3 - v4;
  const int p4 = -v1 + v2 - v3 + v4;
  return v2 + d * (p2 + d * (p3 + d * p4));
}

inline int clamp_index(int i, int size) { return i < 0 ? 0 : (i < size ? i : size - 1); }

// Source position of output pixel (x, y) under PIL's affine_transform (pixel centres).
struct SourcePoint {
  double x, y;
};
inline SourcePoint source_point(const std::array<double, 6>& a, int x, int y) {
  const double xc = x + 0.5, yc = y + 0.5;
  return {a[0] * xc + a[1] * yc + a[2], a[3] * xc + a[4] * yc + a[5]};
}

// The loop both interpolating transforms share (ImagingGenericTransform): for every output
// pixel whose source point lies inside the image, fn(dst, xin, yin) with PIL's half-pixel
// shift already applied; other pixels keep the fill colour.
template <int C, typename Fn>
void for_each_inside(const Image& in, Image& out, const std::array<double, 6>& a, Fn&& fn) {
  const int w = in.width, h = in.height;
  const size_t stride = static_cast<size_t>(w) * C;
  for (int y = 0; y < h; ++y) {
    uint8_t* dst = &out.pixels[y * stride];
    for (int x = 0; x < w; ++x, dst += C) {
      const auto [xin, yin] = source_point(a, x, y);
      if (xin < 0.0 || xin >= w || yin < 0.0 || yin >= h) continue;
      fn(dst, xin - 0.5, yin - 0.5);
    }
  }
}

// ImagingGenericTransform with bicubic_filter8 / bicubic_filter32RGB. Columns and the first
// row are clamped; a later row outside the image repeats the previous row's value. A zero
// offset (integer translations, the rows of a shear) reduces a cubic to its second sample
// exactly (v2 + 0 * ...), so those are skipped. Pixels whose source lies outside the image
// keep the fill colour.
template <int C>
void bicubic_affine(const Image& in, Image& out, const std::array<double, 6>& a) {
  const int w = in.width, h = in.height;
  const size_t stride = static_cast<size_t>(w) * C;
  const uint8_t* src = in.pixels.data();
  for_each_inside<C>(in, out, a, [&](uint8_t* dst, double xin, double yin) {
    const int xf = pil_floor(xin), yf = pil_floor(yin);
    const double dx = xin - xf, dy = yin - yf;
    int xs[4];
    for (int k = 0; k < 4; ++k) xs[k] = clamp_index(xf - 1 + k, w) * C;
    const uint8_t* rows[4];
    rows[0] = src + clamp_index(yf - 1, h) * stride;
    for (int k = 1; k < 4; ++k) {
      rows[k] = (yf - 1 + k >= 0 && yf - 1 + k < h) ? src + (yf - 1 + k) * stride : nullptr;
    }
    for (int ch = 0; ch < C; ++ch) {
      auto row_cubic = [&](const uint8_t* r) {
        r += ch;
        if (dx == 0.0) return static_cast<double>(r[xs[1]]);
        return pil_cubic_u8(r[xs[0]], r[xs[1]], r[xs[2]], r[xs[3]], dx);
      };
      double s;
      if (dy == 0.0) {
        s = row_cubic(rows[1]);  // yin is a whole row inside the image here
      } else {
        const double v1 = row_cubic(rows[0]);
        const double v2 = rows[1] ? row_cubic(rows[1]) : v1;
        const double v3 = rows[2] ? row_cubic(rows[2]) : v2;
        const double v4 = rows[3] ? row_cubic(rows[3]) : v3;
        s = pil_cubic(v1, v2, v3, v4, dy);
      }
      dst[ch] = clip8_trunc(s);
    }
  });
}

// ImagingGenericTransform with bilinear_filter8 / bilinear_filter32RGB (truncating).
template <int C>
void bilinear_affine(const Image& in, Image& out, const std::array<double, 6>& a) {
  const int w = in.width, h = in.height;
  const size_t stride = static_cast<size_t>(w) * C;
  const uint8_t* src = in.pixels.data();
  for_each_inside<C>(in, out, a, [&](uint8_t* dst, double xin, double yin) {
    const int xf = pil_floor(xin), yf = pil_floor(yin);
    const double dx = xin - xf, dy = yin - yf;
    const int xa = clamp_index(xf, w) * C, xb = clamp_index(xf + 1, w) * C;
    const uint8_t* r0 = src + clamp_index(yf, h) * stride;
    const uint8_t* r1 = (yf + 1 >= 0 && yf + 1 < h) ? src + (yf + 1) * stride : nullptr;
    for (int ch = 0; ch < C; ++ch) {
      const double v1 = r0[xa + ch] + (r0[xb + ch] - r0[xa + ch]) * dx;
      const double v2 = r1 ? r1[xa + ch] + (r1[xb + ch] - r1[xa + ch]) * dx : v1;
      const double v = v1 + (v2 - v1) * dy;
      dst[ch] = clip8_trunc(v);
    }
  });
}

void copy_pixel(const Image& in, int yin, int xin, Image& out, int y, int x) {
  const int c = in.channels;
  std::copy_n(&in.pixels[(static_cast<size_t>(yin) * in.width + xin) * c], c,
              &out.pixels[(static_cast<size_t>(y) * out.width + x) * c]);
}

// ImagingScaleAffine (nearest, no rotation or shear): positions accumulate in doubles.
void scale_affine(const Image& in, Image& out, const std::array<double, 6>& a) {
  const int w = in.width, h = in.height;
  std::vector<int> xintab(w, 0);
  double xo = a[2] + a[0] * 0.5;
  double yo = a[5] + a[4] * 0.5;
  int xmin = w, xmax = 0;
  for (int x = 0; x < w; ++x) {
    const int xin = pil_coord(xo);
    if (xin >= 0 && xin < w) {
      xmax = x + 1;
      xmin = std::min(xmin, x);
      xintab[x] = xin;
    }
    xo += a[0];
  }
  for (int y = 0; y < h; ++y) {
    const int yi = pil_coord(yo);
    if (yi >= 0 && yi < h) {
      for (int x = xmin; x < xmax; ++x) copy_pixel(in, yi, xintab[x], out, y, x);
    }
    yo += a[4];
  }
}

// affine_fixed (nearest): 16.16 fixed point, used while every corner stays within +-32768.
bool fits_fixed(const std::array<double, 6>& a, int x, int y) {
  return std::fabs(x * a[0] + y * a[1] + a[2]) < 32768.0 &&
         std::fabs(x * a[3] + y * a[4] + a[5]) < 32768.0;
}

void affine_fixed(const Image& in, Image& out, const std::array<double, 6>& a) {
  const int w = in.width, h = in.height;
  auto fix = [](double v) { return static_cast<int32_t>(pil_floor(v * 65536.0 + 0.5)); };
  const int32_t a0 = fix(a[0]), a1 = fix(a[1]), a3 = fix(a[3]), a4 = fix(a[4]);
  int32_t a2 = fix(a[2] + a[0] * 0.5 + a[1] * 0.5);
  int32_t a5 = fix(a[5] + a[3] * 0.5 + a[4] * 0.5);
  for (int y = 0; y < h; ++y) {
    int32_t xx = a2, yy = a5;
    for (int x = 0; x < w; ++x) {
      const int xin = xx >> 16;
      if (xin >= 0 && xin < w) {
        const int yin = yy >> 16;
        if (yin >= 0 && yin < h) copy_pixel(in, yin, xin, out, y, x);
      }
      xx += a0;
      yy += a3;
    }
    a2 += a1;
    a5 += a4;
  }
}

// The floating-point nearest path of ImagingTransformAffine (huge coordinates only).
void affine_float(const Image& in, Image& out, const std::array<double, 6>& a) {
  const int w = in.width, h = in.height;
  double xo = a[2] + a[1] * 0.5 + a[0] * 0.5;
  double yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
  for (int y = 0; y < h; ++y) {
    double xx = xo, yy = yo;
    for (int x = 0; x < w; ++x) {
      const int xin = pil_coord(xx);
      if (xin >= 0 && xin < w) {
        const int yin = pil_coord(yy);
        if (yin >= 0 && yin < h) copy_pixel(in, yin, xin, out, y, x);
      }
      xx += a[0];
      yy += a[3];
    }
    xo += a[1];
    yo += a[4];
  }
}

// Transpose.ROTATE_90 / ROTATE_180 / ROTATE_270 (counter-clockwise), Geometry.c.
Image rotate_quarter(const Image& img, int quarters) {
  const int w = img.width, h = img.height;
  Image out(quarters == 2 ? h : w, quarters == 2 ? w : h, img.channels);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (quarters == 1) copy_pixel(img, y, x, out, w - 1 - x, y);
      if (quarters == 2) copy_pixel(img, y, x, out, h - 1 - y, w - 1 - x);
      if (quarters == 3) copy_pixel(img, y, x, out, x, h - 1 - y);
    }
  }
  return out;
}

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

// Image.transform(AFFINE) dispatch as in ImagingTransformAffine.
Image affine(const Image& img, const std::array<double, 6>& a, AffineFilter filter,
             const std::vector<uint8_t>& fill) {
  check_image(img, "affine");
  for (double v : a) TVIT_CHECK(std::isfinite(v), "affine: the matrix must be finite, found ", v);
  const auto colour = resolve_fill(fill, img.channels);
  Image out(img.height, img.width, img.channels);
  for (size_t i = 0; i < out.pixels.size(); i += img.channels) {
    std::copy_n(colour.begin(), img.channels, &out.pixels[i]);
  }
  const int w = img.width, h = img.height;
  if (filter == AffineFilter::kBicubic) {
    img.channels == 3 ? bicubic_affine<3>(img, out, a) : bicubic_affine<1>(img, out, a);
  } else if (filter == AffineFilter::kBilinear) {
    img.channels == 3 ? bilinear_affine<3>(img, out, a) : bilinear_affine<1>(img, out, a);
  } else if (a[1] == 0 && a[3] == 0) {
    scale_affine(img, out, a);
  } else if (fits_fixed(a, 0, 0) && fits_fixed(a, w, h) && fits_fixed(a, 0, h) &&
             fits_fixed(a, w, 0)) {
    affine_fixed(img, out, a);
  } else {
    affine_float(img, out, a);
  }
  return out;
}

// Image.rotate(degrees, filter, fillcolor) about the centre, size kept: multiples of 180
// (and of 90 on square images) are exact transposes, anything else an affine transform.
Image rotate(const Image& img, double degrees, const std::vector<uint8_t>& fill,
             AffineFilter filter) {
  check_image(img, "rotate");
  TVIT_CHECK(std::isfinite(degrees), "rotate: the angle must be finite, found ", degrees);
  const double angle = py_mod(degrees, 360.0);
  if (angle == 0) return img;
  if (angle == 180) return rotate_quarter(img, 2);
  if ((angle == 90 || angle == 270) && img.width == img.height) {
    return rotate_quarter(img, angle == 90 ? 1 : 3);
  }
  constexpr double kDegToRad = 3.14159265358979323846 / 180.0;  // Python's math.radians
  const double rad = -(angle * kDegToRad);
  std::array<double, 6> m = {py_round15(std::cos(rad)),  py_round15(std::sin(rad)), 0.0,
                             py_round15(-std::sin(rad)), py_round15(std::cos(rad)), 0.0};
  const double cx = img.width / 2.0, cy = img.height / 2.0;
  const double m2 = m[0] * -cx + m[1] * -cy + m[2];
  const double m5 = m[3] * -cx + m[4] * -cy + m[5];
  m[2] = m2 + cx;
  m[5] = m5 + cy;
  return affine(img, m, filter, fill);
}

Image shear_x(const Image& img, double factor, const std::vector<uint8_t>& fill,
              AffineFilter filter) {
  return affine(img, {1, factor, 0, 0, 1, 0}, filter, fill);
}
Image shear_y(const Image& img, double factor, const std::vector<uint8_t>& fill,
              AffineFilter filter) {
  return affine(img, {1, 0, 0, factor, 1, 0}, filter, fill);
}
Image translate_x(const Image& img, double pixels, const std::vector<uint8_t>& fill,
                  AffineFilter filter) {
  return affine(img, {1, 0, pixels, 0, 1, 0}, filter, fill);
}
Image translate_y(const Image& img, double pixels, const std::vector<uint8_t>& fill,
                  AffineFilter filter) {
  return affine(img, {1, 0, 0, 0, 1, pixels}, filter, fill);
}

Image rotate(const Image& img, double degrees, const std::vector<uint8_t>& fill) {
  return rotate(img, degrees, fill, AffineFilter::kBicubic);
}
Image shear_x(const Image& img, double factor, const std::vector<uint8_t>& fill) {
  return shear_x(img, factor, fill, AffineFilter::kBicubic);
}
Image shear_y(const Image& img, double factor, const std::vector<uint8_t>& fill) {
  return shear_y(img, factor, fill, AffineFilter::kBicubic);
}
Image translate_x(const Image& img, double pixels, const std::vector<uint8_t>& fill) {
  return translate_x(img, pixels, fill, AffineFilter::kBicubic);
}
Image translate_y(const Image& img, double pixels, const std::vector<uint8_t>& fill) {
  return translate_y(img, pixels, fill, AffineFilter::kBicubic);
}

}  // namespace ops

// ---------------------------------------------------------------------------------------
// Catalogue and level-to-argument maps (timm's LEVEL_TO_ARG)

const char* op_name(AugmentOp op) {
  switch (op) {
    case AugmentOp::kAutoContrast:
      return "AutoContrast";
    case AugmentOp::kEqualize:
      return "Equalize";
    case AugmentOp::kInvert:
      return "Invert";
    case AugmentOp::kRotate:
      return "Rotate";
    case AugmentOp::kPosterize:
      return "Posterize";
    case AugmentOp::kPosterizeIncreasing:
      return "PosterizeIncreasing";
    case AugmentOp::kSolarize:
      return "Solarize";
    case AugmentOp::kSolarizeIncreasing:
      return "SolarizeIncreasing";
    case AugmentOp::kSolarizeAdd:
      return "SolarizeAdd";
    case AugmentOp::kColor:
      return "Color";
    case AugmentOp::kColorIncreasing:
      return "ColorIncreasing";
    case AugmentOp::kContrast:
      return "Contrast";
    case AugmentOp::kContrastIncreasing:
      return "ContrastIncreasing";
    case AugmentOp::kBrightness:
      return "Brightness";
    case AugmentOp::kBrightnessIncreasing:
      return "BrightnessIncreasing";
    case AugmentOp::kSharpness:
      return "Sharpness";
    case AugmentOp::kSharpnessIncreasing:
      return "SharpnessIncreasing";
    case AugmentOp::kShearX:
      return "ShearX";
    case AugmentOp::kShearY:
      return "ShearY";
    case AugmentOp::kTranslateXRel:
      return "TranslateXRel";
    case AugmentOp::kTranslateYRel:
      return "TranslateYRel";
  }
  return "?";
}

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

bool op_is_signed(AugmentOp op) {
  switch (op) {
    case AugmentOp::kRotate:
    case AugmentOp::kColorIncreasing:
    case AugmentOp::kContrastIncreasing:
    case AugmentOp::kBrightnessIncreasing:
    case AugmentOp::kSharpnessIncreasing:
    case AugmentOp::kShearX:
    case AugmentOp::kShearY:
    case AugmentOp::kTranslateXRel:
    case AugmentOp::kTranslateYRel:
      return true;
    default:
      return false;
  }
}

namespace {
bool is_geometric(AugmentOp op) {
  return op == AugmentOp::kRotate || op == AugmentOp::kShearX || op == AugmentOp::kShearY ||
         op == AugmentOp::kTranslateXRel || op == AugmentOp::kTranslateYRel;
}
}  // namespace

double op_argument(AugmentOp op, double magnitude, bool negate) {
  constexpr double kLevelDenom = 10.0;  // timm's _LEVEL_DENOM, whatever mmax is
  const double level = magnitude / kLevelDenom;
  const double sign = negate ? -1.0 : 1.0;
  switch (op) {
    case AugmentOp::kAutoContrast:
    case AugmentOp::kEqualize:
    case AugmentOp::kInvert:
      return 0.0;
    case AugmentOp::kRotate:
      return sign * (level * 30.0);
    case AugmentOp::kPosterize:
      return py_int(level * 4);
    case AugmentOp::kPosterizeIncreasing:
      return 4 - py_int(level * 4);
    case AugmentOp::kSolarize:
      return std::min(256, py_int(level * 256));
    case AugmentOp::kSolarizeIncreasing:
      return 256 - std::min(256, py_int(level * 256));
    case AugmentOp::kSolarizeAdd:
      return std::min(128, py_int(level * 110));
    case AugmentOp::kColor:
    case AugmentOp::kContrast:
    case AugmentOp::kBrightness:
    case AugmentOp::kSharpness:
      return level * 1.8 + 0.1;
    case AugmentOp::kColorIncreasing:
    case AugmentOp::kContrastIncreasing:
    case AugmentOp::kBrightnessIncreasing:
    case AugmentOp::kSharpnessIncreasing:
      return std::max(0.1, 1.0 + sign * (level * 0.9));  // kept >= 0.1
    case AugmentOp::kShearX:
    case AugmentOp::kShearY:
      return sign * (level * 0.3);
    case AugmentOp::kTranslateXRel:
    case AugmentOp::kTranslateYRel:
      return sign * (level * 0.45);
  }
  return 0.0;
}

Image apply_op(const Image& img, AugmentOp op, double arg, const std::vector<uint8_t>& fill,
               AffineFilter filter) {
  switch (op) {
    case AugmentOp::kAutoContrast:
      return ops::auto_contrast(img);
    case AugmentOp::kEqualize:
      return ops::equalize(img);
    case AugmentOp::kInvert:
      return ops::invert(img);
    case AugmentOp::kRotate:
      return ops::rotate(img, arg, fill, filter);
    case AugmentOp::kPosterize:
    case AugmentOp::kPosterizeIncreasing:
      return ops::posterize(img, py_int(arg));
    case AugmentOp::kSolarize:
    case AugmentOp::kSolarizeIncreasing:
      return ops::solarize(img, py_int(arg));
    case AugmentOp::kSolarizeAdd:
      return ops::solarize_add(img, py_int(arg));
    case AugmentOp::kColor:
    case AugmentOp::kColorIncreasing:
      return ops::color(img, arg);
    case AugmentOp::kContrast:
    case AugmentOp::kContrastIncreasing:
      return ops::contrast(img, arg);
    case AugmentOp::kBrightness:
    case AugmentOp::kBrightnessIncreasing:
      return ops::brightness(img, arg);
    case AugmentOp::kSharpness:
    case AugmentOp::kSharpnessIncreasing:
      return ops::sharpness(img, arg);
    case AugmentOp::kShearX:
      return ops::shear_x(img, arg, fill, filter);
    case AugmentOp::kShearY:
      return ops::shear_y(img, arg, fill, filter);
    case AugmentOp::kTranslateXRel:
      return ops::translate_x(img, arg * img.width, fill, filter);
    case AugmentOp::kTranslateYRel:
      return ops::translate_y(img, arg * img.height, fill, filter);
  }
  fail("apply_op: unknown op ", static_cast<int>(op));
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
    if (is_geometric(op) && policy.filters.size() > 1) {
      filter =
          policy.filters[std::uniform_int_distribution<size_t>(0, policy.filters.size() - 1)(rng)];
    }
    out = apply_op(out, op, arg, policy.fill, filter);
  }
  return out;
}

}  // namespace thinkingvit::data
