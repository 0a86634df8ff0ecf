// Synthetic images for tests and benchmarks.
#include "thinkingvit/data/dataset.h"

#include <random>

#include "dataset_internal.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::data {

using internal::check_index;
using internal::geometry;
using internal::numbered_names;

namespace {

// Synthetic: everything about sample i comes from sample_rng(seed, 0, i).

class SyntheticDataset final : public Dataset {
 public:
  SyntheticDataset(int64_t size, int height, int width, int channels, int64_t num_classes,
                   uint64_t seed)
      : size_(size),
        height_(height),
        width_(width),
        channels_(channels),
        num_classes_(num_classes),
        seed_(seed) {
    TVIT_CHECK(size > 0, "synthetic dataset: expected size > 0, found ", size);
    TVIT_CHECK(height > 0 && width > 0, "synthetic dataset: expected positive height and width, ",
               "found ", height, "x", width);
    TVIT_CHECK(channels == 1 || channels == 3,
               "synthetic dataset: expected 1 or 3 channels, found ", channels);
    TVIT_CHECK(num_classes > 0, "synthetic dataset: expected num_classes > 0, found ", num_classes);
  }

  int64_t size() const override { return size_; }
  int64_t num_classes() const override { return num_classes_; }
  int channels() const override { return channels_; }

  std::optional<Sample> get(int64_t index) const override {
    check_index(index, size_, "synthetic dataset");
    Rng rng = sample_rng(seed_, /*epoch=*/0, index);
    Sample sample;
    sample.label = draw_label(rng);
    sample.image = Image(height_, width_, channels_);
    auto& pixels = sample.image.pixels;
    for (size_t i = 0; i < pixels.size(); i += 8) {
      uint64_t bits = rng();
      for (size_t j = i; j < std::min(i + 8, pixels.size()); ++j, bits >>= 8) {
        pixels[j] = static_cast<uint8_t>(bits);
      }
    }
    return sample;
  }

  std::vector<int64_t> labels() const override {
    std::vector<int64_t> result(size_);
    for (int64_t i = 0; i < size_; ++i) {
      Rng rng = sample_rng(seed_, /*epoch=*/0, i);
      result[i] = draw_label(rng);
    }
    return result;
  }
  std::vector<std::string> class_names() const override { return numbered_names(num_classes_); }
  std::string describe() const override {
    return detail::concat("synthetic (seed ", seed_, "): ", size_, " images, ", num_classes_,
                          " classes, ", geometry(height_, width_, channels_));
  }

 private:
  // The first draw, so labels() needs no pixels. The modulo bias is below 2^-50.
  int64_t draw_label(Rng& rng) const {
    return static_cast<int64_t>(rng() % static_cast<uint64_t>(num_classes_));
  }

  int64_t size_;
  int height_;
  int width_;
  int channels_;
  int64_t num_classes_;
  uint64_t seed_;
};

}  // namespace

std::unique_ptr<Dataset> make_synthetic(int64_t size, int height, int width, int channels,
                                        int64_t num_classes, uint64_t seed) {
  return std::make_unique<SyntheticDataset>(size, height, width, channels, num_classes, seed);
}

}  // namespace thinkingvit::data
