#pragma once
// PIL's arithmetic that RandAugment's ops and the affine resampler share (Pillow 9.4): value
// clipping and truncation, its luma, and Python's number semantics that torchvision / timm call.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "thinkingvit/data/image.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::data::pil {

inline void check_image(const Image& img, const char* op) {
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
inline uint8_t clip8(int64_t v) { return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }

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

// PIL's RGB -> L (Convert.c, L24): ITU-R 601-2 luma in 16-bit fixed point.
inline uint8_t luma(int r, int g, int b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// Python's float % (the sign follows the divisor), as Image.rotate's `angle % 360.0`.
inline double py_mod(double x, double m) {
  double r = std::fmod(x, m);
  if (r != 0.0) {
    if ((m < 0) != (r < 0)) r += m;
  } else {
    r = std::copysign(0.0, m);
  }
  return r;
}

// Python's round(v, 15): correctly rounded to 15 decimals, as printf("%.15f") does.
inline double py_round15(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15f", v);
  return std::strtod(buf, nullptr);
}

// Python's int() on a double, saturated to the int range.
inline int py_int(double v) {
  if (!(v > -1e9)) return -1000000000;
  if (v > 1e9) return 1000000000;
  return static_cast<int>(v);
}

}  // namespace thinkingvit::data::pil
