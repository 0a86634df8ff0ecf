#pragma once
// An 8-bit image in memory: H x W x C, row-major, channels interleaved (RGB or gray).
// The currency of decoding and augmentation, free of any imaging library in its interface.

#include <cstdint>
#include <random>
#include <vector>

namespace thinkingvit::data {

// Pillow's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS): images whose header claims
// more pixels are refused before any pixel buffer is allocated.
inline constexpr int64_t kMaxImagePixels = 178956970;

struct Image {
  int height = 0;
  int width = 0;
  int channels = 0;             // 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;  // height * width * channels

  Image() = default;
  Image(int h, int w, int c, uint8_t fill = 0)
      : height(h), width(w), channels(c), pixels(static_cast<size_t>(h) * w * c, fill) {}
  bool empty() const { return pixels.empty(); }
  uint8_t& at(int y, int x, int c) {
    return pixels[(static_cast<size_t>(y) * width + x) * channels + c];
  }
  uint8_t at(int y, int x, int c) const {
    return pixels[(static_cast<size_t>(y) * width + x) * channels + c];
  }
};

// Augmentation randomness derives from (seed, epoch, sample index) only, so results do not
// depend on which thread handles a sample or in what order.
using Rng = std::mt19937_64;
Rng sample_rng(uint64_t seed, int64_t epoch, int64_t index);

}  // namespace thinkingvit::data
