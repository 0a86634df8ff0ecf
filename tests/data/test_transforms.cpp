#include <gtest/gtest.h>

#include <cmath>

#include <sstream>

#include "../test_util.h"
#include "thinkingvit/data/transforms.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/util/cpu.h"

namespace thinkingvit::testing {

using data::Image;
using data::Interpolation;

namespace {

Image ramp(int h, int w, int c) {
  Image img(h, w, c);
  for (size_t i = 0; i < img.pixels.size(); ++i)
    img.pixels[i] = static_cast<uint8_t>((i * 37) % 256);
  return img;
}

}  // namespace

TEST(Transforms, BilinearDownscaleMatchesPilsAntialiasedFilter) {
  // 1 x 4 -> 1 x 2: support 2 (scale 2), taps (0.75, 0.75, 0.25) / 1.75 around each centre.
  Image img(1, 4, 1);
  img.pixels = {0, 70, 140, 210};
  auto out = data::resize(img, 2, 1, Interpolation::kBilinear);
  ASSERT_EQ(out.width, 2);
  EXPECT_EQ(out.pixels[0], 50);   // (3*0 + 3*70 + 1*140) / 7
  EXPECT_EQ(out.pixels[1], 160);  // (1*70 + 3*140 + 3*210) / 7
}

// PIL 9.4's img.crop(box).resize(size, filter) on RGB, gray and hard-edged images, down, up,
// one axis only, long filters and tiny boxes (tests/fixtures/resize_golden.safetensors, written
// by scripts/make_resize_golden.py): every pixel equal.
TEST(Transforms, ResizeBoxEqualsPilsResampling) {
  const auto file = io::read_safetensors(fixture("resize_golden.safetensors"));
  int cases = 0;
  for (const auto& [key, description] : file.metadata) {
    if (key == "pillow") continue;
    std::istringstream in(description);
    std::string image, filter;
    int w = 0, h = 0;
    data::CropBox box;
    in >> image >> filter >> w >> h >> box.left >> box.top >> box.width >> box.height;
    const Image input = to_image(file.tensors.at("input." + image));
    const Image expected = to_image(file.tensors.at(key));
    const auto interp = filter == "bicubic" ? Interpolation::kBicubic : Interpolation::kBilinear;
    const Image got = data::resize_box(input, box, w, h, interp);
    ASSERT_EQ(got.height, expected.height) << key;
    ASSERT_EQ(got.width, expected.width) << key;
    EXPECT_EQ(got.pixels, expected.pixels) << key;
    util::simd_dispatch_enabled() = false;  // the baseline copy (CPUs without AVX2) too
    EXPECT_EQ(data::resize_box(input, box, w, h, interp).pixels, expected.pixels) << key;
    util::simd_dispatch_enabled() = true;
    ++cases;
  }
  EXPECT_EQ(cases, 48);
}

// The eval path resamples only the centre crop's pixels; they equal resize then crop.
TEST(Transforms, ResizeShorterCenterCropEqualsResizeThenCrop) {
  for (auto interp : {Interpolation::kNearest, Interpolation::kBilinear, Interpolation::kBicubic}) {
    for (auto [h, w] :
         {std::pair{37, 53}, std::pair{53, 37}, std::pair{24, 31}, std::pair{20, 20}}) {
      const Image img = ramp(h, w, 3);
      for (auto [size, crop] : {std::pair{24, 20}, std::pair{24, 24}, std::pair{40, 33}}) {
        const Image expected =
            data::center_crop(data::resize_shorter(img, size, interp), crop, crop);
        EXPECT_EQ(data::resize_shorter_center_crop(img, size, crop, interp).pixels, expected.pixels)
            << h << "x" << w << " -> " << size << " crop " << crop;
      }
    }
  }
}

TEST(Transforms, ResizeKeepsConstantsAndIdentity) {
  Image flat(13, 9, 3, 77);
  for (auto interp : {Interpolation::kBicubic, Interpolation::kBilinear, Interpolation::kNearest}) {
    auto up = data::resize(flat, 20, 31, interp);
    for (auto p : up.pixels) ASSERT_EQ(p, 77);
    auto down = data::resize(flat, 4, 3, interp);
    for (auto p : down.pixels) ASSERT_EQ(p, 77);
  }
  const auto img = ramp(6, 5, 3);
  EXPECT_EQ(data::resize(img, 5, 6, Interpolation::kBicubic).pixels, img.pixels);
  // A box resize at the box's own size is a crop.
  EXPECT_EQ(data::resize_box(img, {1, 2, 3, 2}, 2, 3, Interpolation::kBicubic).pixels,
            data::crop(img, {1, 2, 3, 2}).pixels);
}

TEST(Transforms, ResizeShorterAndCenterCropFollowTorchvision) {
  Image img(100, 150, 1);
  auto r = data::resize_shorter(img, 40, Interpolation::kBicubic);
  EXPECT_EQ(r.height, 40);
  EXPECT_EQ(r.width, 60);
  auto tall = data::resize_shorter(Image(99, 50, 3), 20, Interpolation::kBicubic);
  EXPECT_EQ(tall.width, 20);
  EXPECT_EQ(tall.height, 39);  // int(20 * 99 / 50)
  const auto src = ramp(5, 6, 1);
  auto c = data::center_crop(src, 2, 3);  // top = round(1.5) = 2, left = round(1.5) = 2
  ASSERT_EQ(c.height, 2);
  EXPECT_EQ(c.at(0, 0, 0), src.at(2, 2, 0));
  EXPECT_EQ(c.at(1, 2, 0), src.at(3, 4, 0));
  expect_error([&] { data::center_crop(src, 9, 3); }, {"larger than the image"});
}

TEST(Transforms, FlipPadCropAndChannels) {
  const auto img = ramp(3, 4, 3);
  auto f = data::hflip(img);
  EXPECT_EQ(f.at(1, 0, 2), img.at(1, 3, 2));
  EXPECT_EQ(data::hflip(f).pixels, img.pixels);
  data::Rng rng(1);
  EXPECT_EQ(data::pad_random_crop(img, 3, 0, rng).height, 3);
  Image one(2, 2, 1, 9);
  auto padded = data::pad_random_crop(one, 6, 2, rng);  // the whole padded image
  int nonzero = 0;
  for (auto p : padded.pixels) nonzero += p == 9;
  EXPECT_EQ(nonzero, 4);
  EXPECT_EQ(padded.at(2, 2, 0), 9);
  Image red(1, 1, 3);
  red.pixels = {255, 0, 0};
  EXPECT_EQ(data::to_channels(red, 1).pixels[0], 76);  // PIL L: 255 * 299 / 1000 = 76.2
  EXPECT_EQ(data::to_channels(one, 3).pixels, std::vector<uint8_t>(12, 9));
}

TEST(Transforms, RandomResizedCropBox) {
  data::Rng rng(3);
  for (int i = 0; i < 200; ++i) {
    auto box = data::random_resized_crop_box(375, 500, {0.08, 1.0}, {0.75, 4.0 / 3.0}, rng);
    ASSERT_GE(box.top, 0);
    ASSERT_GE(box.left, 0);
    ASSERT_LE(box.top + box.height, 375);
    ASSERT_LE(box.left + box.width, 500);
    const double area = static_cast<double>(box.height) * box.width / (375.0 * 500.0);
    EXPECT_GE(area, 0.07);
  }
  // An impossible scale falls back to a centre crop with the ratio clamped: 100 x 50 has
  // ratio 0.5 < 3/4, so w = 50 and h = round(50 / 0.75) = 67.
  auto box = data::random_resized_crop_box(100, 50, {2.0, 3.0}, {0.75, 4.0 / 3.0}, rng);
  EXPECT_EQ(box.width, 50);
  EXPECT_EQ(box.height, 67);
  EXPECT_EQ(box.top, 16);
}

TEST(Transforms, NormaliseAndErase) {
  Image img(1, 2, 1);
  img.pixels = {255, 0};
  float out[2];
  data::write_normalized(img, {0.5f}, {0.5f}, out);
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], -1.0f);

  std::vector<float> chw(3 * 20 * 30, 5.0f);
  data::Rng rng(4);
  data::random_erasing(chw.data(), 3, 20, 30, /*prob=*/0.0, rng);
  for (float v : chw) ASSERT_EQ(v, 5.0f);
  data::random_erasing(chw.data(), 3, 20, 30, /*prob=*/1.0, rng);
  int erased = 0;
  for (float v : chw) erased += v != 5.0f;
  EXPECT_GE(erased, static_cast<int>(0.02 * 600 * 3 * 0.8));
  EXPECT_LE(erased, 600 * 3 / 3 + 60);
}

TEST(Transforms, PipelinesAreDeterministicPerRng) {
  data::TrainTransformOptions train;
  train.size = 16;
  auto t = data::make_train_transform(train, 3);
  const auto img = ramp(40, 50, 3);
  std::vector<float> a(3 * 16 * 16), b(a.size()), c(a.size());
  data::Rng r1(7), r2(7), r3(8);
  t.apply(img, r1, a.data());
  t.apply(img, r2, b.data());
  t.apply(img, r3, c.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Eval: a constant image stays constant through resize and crop.
  data::EvalTransformOptions eval;
  eval.size = 8;
  eval.mean = {0.5f};
  eval.std = {0.25f};
  auto e = data::make_eval_transform(eval, 1);
  EXPECT_EQ(e.decode_min_side, 8);  // floor(8 / 0.9)
  std::vector<float> out(64);
  data::Rng rng(0);
  e.apply(Image(30, 20, 1, 255), rng, out.data());
  for (float v : out) ASSERT_FLOAT_EQ(v, 2.0f);
  expect_error([] { data::make_eval_transform(data::EvalTransformOptions{}, 1); },
               {"expected 1 mean"});
}

}  // namespace thinkingvit::testing
