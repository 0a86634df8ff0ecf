#pragma once
// Per-sample transforms on 8-bit images, as small pure functions (DeiT / timm recipe), and
// the two composed pipelines: train (RandomResizedCrop, flip, RandAugment, normalise, random
// erasing) and eval (resize the shorter side to size / crop_pct, centre crop, normalise).

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "thinkingvit/data/image.h"
#include "thinkingvit/data/rand_augment.h"

namespace thinkingvit::data {

enum class Interpolation { kNearest, kBilinear, kBicubic };
Interpolation parse_interpolation(const std::string& text, const std::string& what);

// A region of an image in pixel coordinates: [left, left + width) x [top, top + height).
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};

// Resamples `box` of `img` to out_w x out_h with PIL's antialiasing filters (the support
// widens by the downscale factor; bicubic uses a = -0.5), horizontal pass first, 8-bit
// intermediate: the pixels of PIL's img.crop(box).resize(size, resample), which is what
// torchvision's resized_crop computes (PIL's resize(size, resample, box) would read outside).
Image resize(const Image& img, int out_w, int out_h, Interpolation interp);
Image resize_box(const Image& img, const CropBox& box, int out_w, int out_h, Interpolation interp);

// Shorter side to `size`, the other to int(size * long / short) (torchvision Resize(int)).
Image resize_shorter(const Image& img, int size, Interpolation interp);
// torchvision CenterCrop: top = round((H - h) / 2), left = round((W - w) / 2).
Image center_crop(const Image& img, int height, int width);
// center_crop(resize_shorter(img, size), crop, crop), resampling only the crop's pixels.
Image resize_shorter_center_crop(const Image& img, int size, int crop, Interpolation interp);
Image crop(const Image& img, const CropBox& box);
Image hflip(const Image& img);
// Zero padding on every side, then a random size x size crop (CIFAR-style).
Image pad_random_crop(const Image& img, int size, int padding, Rng& rng);
// Gray -> RGB by replication, RGB -> gray by PIL's L = (299 R + 587 G + 114 B) / 1000.
Image to_channels(const Image& img, int channels);

// torchvision RandomResizedCrop.get_params: 10 tries of area * U(scale) with log-uniform
// aspect ratio, then a centre crop clamped to the ratio range.
CropBox random_resized_crop_box(int height, int width, std::array<double, 2> scale,
                                std::array<double, 2> ratio, Rng& rng);

// HWC uint8 -> CHW float32 into `dst` (C*H*W floats): (x / 255 - mean[c]) / std[c].
void write_normalized(const Image& img, const std::vector<float>& mean,
                      const std::vector<float>& std, float* dst);

// HWC uint8 -> CHW uint8 into `dst` (C*H*W bytes): the pixels of a uint8 batch.
void write_planar(const Image& img, uint8_t* dst);

// timm RandomErasing, mode "pixel", one box: with probability `prob`, up to 10 tries of area
// U(min_area, max_area) * H * W and log-uniform aspect in [0.3, 1/0.3]; the box is filled with
// per-pixel, per-channel N(0, 1) values. `chw` is C x H x W floats, already normalised.
void random_erasing(float* chw, int channels, int height, int width, double prob, Rng& rng,
                    double min_area = 0.02, double max_area = 1.0 / 3.0);
// random_erasing in two halves that draw what it draws: the box (none, with probability
// 1 - prob, or when no try fits), then its noise, channel by channel, row by row.
std::optional<CropBox> random_erasing_box(int height, int width, double prob, Rng& rng,
                                          double min_area = 0.02, double max_area = 1.0 / 3.0);
std::vector<float> random_erasing_noise(int channels, const CropBox& box, Rng& rng);

// Where a transform writes one sample: normalised C x S x S floats (the host path), or, for a
// uint8 batch finished on the device, its C x S x S pixels and random erasing's box and noise
// (box height 0: nothing erased), which the device applies after normalising.
struct ErasedBox {
  CropBox box;
  std::vector<float> noise;  // C x box.height x box.width
};
struct SampleOut {
  SampleOut(float* values) : floats(values) {}  // NOLINT(google-explicit-constructor)
  SampleOut(uint8_t* planar, ErasedBox* erased) : pixels(planar), erased(erased) {}
  float* floats = nullptr;
  uint8_t* pixels = nullptr;
  ErasedBox* erased = nullptr;
};

struct TrainTransformOptions {
  int size = 224;
  std::array<double, 2> scale = {0.08, 1.0};
  std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0};
  double hflip = 0.5;
  std::string auto_augment = "rand-m9-mstd0.5-inc1";  // empty: off
  double random_erasing = 0.25;
  Interpolation interpolation = Interpolation::kBicubic;
  // Small-image variant (28-32 px data): pad-and-crop instead of RandomResizedCrop.
  bool small_image = false;
  int padding = 4;
  std::vector<float> mean = {0.485f, 0.456f, 0.406f};
  std::vector<float> std = {0.229f, 0.224f, 0.225f};
};

struct EvalTransformOptions {
  int size = 224;
  double crop_pct = 0.9;  // ThinkingViT/timm; DeiT used 0.875
  Interpolation interpolation = Interpolation::kBicubic;
  std::vector<float> mean = {0.485f, 0.456f, 0.406f};
  std::vector<float> std = {0.229f, 0.224f, 0.225f};
};

// A per-sample transform writing a C x size x size image into dst; its last step normalises
// (x / 255 - mean[c]) / std[c].
struct SampleTransform {
  int channels = 3;
  int size = 224;
  std::vector<float> mean, std;
  std::function<void(const Image&, Rng&, SampleOut)> apply;
  // Shorter side the decoder may reduce to without losing detail (0: no hint).
  int decode_min_side = 0;
  // Set by transforms whose first step is a random crop (train: RandomResizedCrop). The crop is
  // drawn from the image size alone, so a decoder can decode only the part holding it:
  // apply(img, rng, dst) == apply_cropped(part, box in part, rng, dst) with
  // box = crop_box(img.height, img.width, rng) and `part` any region of img containing the box.
  std::function<CropBox(int height, int width, Rng&)> crop_box;
  std::function<void(const Image& part, const CropBox& box, Rng&, SampleOut)> apply_cropped;
};

SampleTransform make_train_transform(const TrainTransformOptions& options, int channels);
SampleTransform make_eval_transform(const EvalTransformOptions& options, int channels);
// Whether the eval crop fraction is in (0, 1] and its resize (size / crop_pct) within the largest
// supported image side.
bool crop_pct_fits(int size, double crop_pct);

}  // namespace thinkingvit::data
