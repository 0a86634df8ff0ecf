#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "../test_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/data/jpeg.h"
#include "thinkingvit/data/transforms.h"

#ifdef THINKINGVIT_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

namespace thinkingvit::testing {

#ifdef THINKINGVIT_HAVE_OPENCV
namespace {

// Smooth colour fields plus noise, odd sizes: compresses like a photograph and exercises the
// partial iMCUs at the right and bottom edges.
data::Image photo_like(int height, int width, int channels, uint64_t seed) {
  data::Image img(height, width, channels);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<double> noise(0.0, 12.0);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        const double v = 128 + 100 * std::sin(x / (9.0 + 4 * c) + y / 13.0 + c) + noise(rng);
        img.at(y, x, c) = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return img;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// OpenCV's decode of the same bytes (the same libjpeg-turbo underneath), turned to RGB.
data::Image opencv_rgb(const std::vector<uint8_t>& bytes, int flags) {
  const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1,
                       const_cast<uint8_t*>(bytes.data()));
  const cv::Mat bgr = cv::imdecode(buffer, flags | cv::IMREAD_IGNORE_ORIENTATION);
  data::Image out(bgr.rows, bgr.cols, 3);
  for (int y = 0; y < bgr.rows; ++y) {
    for (int x = 0; x < bgr.cols; ++x) {
      const auto& p = bgr.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) out.at(y, x, c) = p[2 - c];
    }
  }
  return out;
}

bool same_pixels_in(const data::Image& a, const data::CropBox& in_a, const data::Image& b,
                    const data::CropBox& in_b) {
  for (int y = 0; y < in_a.height; ++y) {
    for (int x = 0; x < in_a.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        if (a.at(in_a.top + y, in_a.left + x, c) != b.at(in_b.top + y, in_b.left + x, c))
          return false;
      }
    }
  }
  return true;
}

}  // namespace

TEST(Jpeg, FullAndScaledDecodesEqualOpenCvs) {
  ASSERT_TRUE(data::jpeg_decoder_available());
  TempDir dir;
  for (int channels : {3, 1}) {
    const auto path = dir.file("p" + std::to_string(channels) + ".jpg");
    data::write_image_file(path, photo_like(75, 101, channels, 1));
    const auto bytes = file_bytes(path);
    const std::pair<int, int> scales[] = {{1, cv::IMREAD_COLOR},
                                          {2, cv::IMREAD_REDUCED_COLOR_2},
                                          {4, cv::IMREAD_REDUCED_COLOR_4},
                                          {8, cv::IMREAD_REDUCED_COLOR_8}};
    for (const auto& [denom, flags] : scales) {
      data::JpegDecodeOptions options;
      options.scale_denom = denom;
      std::string why;
      const auto mine = data::decode_jpeg(bytes.data(), bytes.size(), options, &why);
      ASSERT_TRUE(mine.has_value()) << why;
      const auto theirs = opencv_rgb(bytes, flags);
      EXPECT_EQ(mine->full_height, (75 + denom - 1) / denom);
      EXPECT_EQ(mine->image.height, theirs.height) << denom;
      EXPECT_EQ(mine->image.width, theirs.width) << denom;
      EXPECT_EQ(mine->image.pixels, theirs.pixels) << channels << " channels, 1/" << denom;
    }
  }
}

// What the train loader relies on: the part decoded around a crop holds exactly the full
// decode's pixels of that crop, wherever the crop lies, and is smaller than the image.
TEST(Jpeg, PartAroundACropHoldsTheFullDecodesPixels) {
  TempDir dir;
  const auto root = dir.path() / "root";
  std::filesystem::create_directories(root / "k");
  data::write_image_file((root / "k" / "a.jpg").string(), photo_like(150, 203, 3, 2));
  const data::ImageFolder folder(root.string());
  const auto full = folder.get(0)->image;
  std::vector<data::CropBox> boxes = {{0, 0, 150, 203}, {0, 0, 1, 1},     {149, 202, 1, 1},
                                      {0, 150, 40, 53}, {100, 0, 50, 37}, {67, 81, 17, 23}};
  data::Rng rng(3);
  for (int i = 0; i < 40; ++i)
    boxes.push_back(data::random_resized_crop_box(150, 203, {0.08, 1.0}, {0.75, 4.0 / 3}, rng));
  int smaller = 0;
  for (const auto& box : boxes) {
    int calls = 0;
    const auto part = folder.get_part(0, [&](int height, int width) {
      ++calls;
      EXPECT_EQ(height, 150);
      EXPECT_EQ(width, 203);
      return box;
    });
    ASSERT_TRUE(part.has_value());
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(part->box.height, box.height);
    EXPECT_EQ(part->box.width, box.width);
    EXPECT_TRUE(same_pixels_in(part->sample.image, part->box, full, box))
        << "box top " << box.top << " left " << box.left << " " << box.height << "x" << box.width;
    smaller += part->sample.image.pixels.size() < full.pixels.size();
  }
  EXPECT_GE(smaller, 30);  // most crops decode less than the whole image
}

TEST(Jpeg, NonJpegPartsAreTheWholeImage) {
  TempDir dir;
  const auto root = dir.path() / "root";
  std::filesystem::create_directories(root / "k");
  data::write_image_file((root / "k" / "a.png").string(), photo_like(20, 30, 3, 4));
  const data::ImageFolder folder(root.string());
  const data::CropBox box{3, 4, 10, 12};
  const auto part = folder.get_part(0, [&](int, int) { return box; });
  ASSERT_TRUE(part.has_value());
  EXPECT_EQ(part->sample.image.pixels, folder.get(0)->image.pixels);
  EXPECT_EQ(part->box.top, 3);
  EXPECT_EQ(part->box.left, 4);
}

TEST(Jpeg, CorruptDataIsRejectedWithTheDecodersReason) {
  TempDir dir;
  const auto path = dir.file("c.jpg");
  data::write_image_file(path, photo_like(64, 64, 3, 5));
  auto bytes = file_bytes(path);
  // Scramble the middle of the entropy-coded data and the frame header's component count.
  std::vector<uint8_t> bad(bytes.begin(), bytes.begin() + 2);
  bad.insert(bad.end(), 200, 0xff);
  std::string why;
  EXPECT_FALSE(data::decode_jpeg(bad.data(), bad.size(), {}, &why).has_value());
  EXPECT_EQ(why.rfind("libjpeg: ", 0), 0u) << why;
}

// Found by fuzz_image: a frame header claiming a huge image made the decoder allocate its
// pixels (3 GB for a 431-byte file). Refused from the header, as the file loaders do.
TEST(Jpeg, ADecompressionBombIsRefusedBeforeAllocating) {
  TempDir dir;
  const auto path = dir.file("bomb.jpg");
  data::write_image_file(path, photo_like(8, 8, 3, 6));
  auto bytes = file_bytes(path);
  const std::vector<uint8_t> sof0 = {0xff, 0xc0};
  const auto sof = std::search(bytes.begin(), bytes.end(), sof0.begin(), sof0.end());
  ASSERT_NE(sof, bytes.end());
  for (int i = 5; i < 9; ++i) sof[i] = i % 2 ? 0xff : 0xdc;  // height, width = 65500
  std::string why;
  EXPECT_FALSE(data::decode_jpeg(bytes.data(), bytes.size(), {}, &why).has_value());
  EXPECT_EQ(why, "image too large: its header says 65500 x 65500 pixels, more than 178956970");
  // A plausible size (4096 x 4096) passes the check: decoded, the missing data filled as
  // libjpeg (and PIL) fill it.
  for (int i = 5; i < 9; ++i) sof[i] = i % 2 ? 0x10 : 0x00;
  const auto big = data::decode_jpeg(bytes.data(), bytes.size(), {}, &why);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->image.height, 4096);
  EXPECT_EQ(big->image.width, 4096);
}

// Found by fuzz_image: a file of another format (there, DICOM) went to OpenCV's imdecode, which
// tries every codec it has, and one aborted the process. Only the four formats reach a decoder.
TEST(Jpeg, OnlyTheFourFormatsReachADecoder) {
  TempDir dir;
  const auto crash = file_bytes(std::string(THINKINGVIT_FIXTURES) +
                                "/../fuzz/corpus/image/regression-dicom-abort");
  ASSERT_GT(crash.size(), 1u);
  std::ofstream(dir.file("x.jpg"), std::ios::binary)
      .write(reinterpret_cast<const char*>(crash.data()) + 1,  // the target's option byte off
             static_cast<std::streamsize>(crash.size() - 1));
  std::string why;
  EXPECT_FALSE(data::decode_image_file(dir.file("x.jpg"), 0, &why).has_value());
  EXPECT_EQ(why, "not a JPEG, PNG, BMP or WebP image");
  std::ofstream(dir.file("t.png"), std::ios::binary) << "II*" << '\0' << std::string(64, 'x');
  EXPECT_FALSE(data::decode_image_file(dir.file("t.png"), 0, &why).has_value());  // TIFF
  EXPECT_EQ(why, "not a JPEG, PNG, BMP or WebP image");
}
#endif  // THINKINGVIT_HAVE_OPENCV

}  // namespace thinkingvit::testing
