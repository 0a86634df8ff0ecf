// PIL's Image.transform(AFFINE) (Geometry.c, ImagingTransformAffine): the nearest, bilinear and
// bicubic resamplers bit for bit, and the geometric ops of RandAugment built on it (rotate,
// shear, translate).

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "pil_internal.h"
#include "thinkingvit/data/rand_augment.h"

namespace thinkingvit::data {

namespace {

using namespace pil;  // NOLINT(google-build-using-namespace): the shared PIL arithmetic

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

namespace ops {

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

}  // namespace thinkingvit::data
