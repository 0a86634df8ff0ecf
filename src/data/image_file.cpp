// Image files: extensions, header sizes, decoding (libjpeg-turbo, OpenCV) and writing.
#include "thinkingvit/data/dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#ifdef THINKINGVIT_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

#include "dataset_internal.h"
#include "thinkingvit/data/jpeg.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"

namespace thinkingvit::data {

using internal::ChooseBox;
using internal::decode_file;
using internal::DecodedFile;
using internal::read_u32_be;

namespace fs = std::filesystem;

namespace {

// Image files.

struct JpegLayout {
  std::optional<ImageSize> size;
  size_t scan_offset = 0;  // first start-of-scan marker; 0 when not reached
};

// Walks the marker segments from SOI to the first SOS.
JpegLayout jpeg_layout(const uint8_t* d, size_t n) {
  JpegLayout layout;
  if (n < 4 || d[0] != 0xFF || d[1] != 0xD8) return layout;
  size_t pos = 2;
  while (pos + 4 <= n) {
    if (d[pos] != 0xFF) return layout;
    const uint8_t marker = d[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    pos += 2;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // no payload
    if (marker == 0xD9) return layout;
    const size_t length = (size_t{d[pos]} << 8) | d[pos + 1];
    if (length < 2) return layout;
    const bool frame =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame && pos + 7 <= n) {
      layout.size = ImageSize{(d[pos + 3] << 8) | d[pos + 4], (d[pos + 5] << 8) | d[pos + 6]};
    }
    if (marker == 0xDA) {
      layout.scan_offset = pos;
      return layout;
    }
    pos += length;
  }
  return layout;
}

// Entropy-coded data stuffs every 0xFF with 0x00, so FF D9 after the first scan is the
// end-of-image marker; without it the file was cut short (libjpeg would only warn and return
// the top of the image over grey, where PIL fails with "image file is truncated").
bool jpeg_has_end(const uint8_t* d, size_t n, size_t scan_offset) {
  for (size_t i = n - 1; i > scan_offset; --i) {
    if (d[i] == 0xD9 && d[i - 1] == 0xFF) return true;
  }
  return false;
}

bool is_jpeg(const uint8_t* d, size_t n) {
  return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF;
}

uint32_t read_u32_le(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

bool read_whole_file(const std::string& path, std::vector<uint8_t>& bytes, std::string& why) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    why = std::strerror(errno);
    return false;
  }
  bytes.clear();
  long size = 0;
  if (std::fseek(file, 0, SEEK_END) == 0) {
    size = std::max(std::ftell(file), 0L);
    std::rewind(file);
  }
  // One read of the size found, then a loop in case the file is not seekable or has grown.
  bytes.resize(static_cast<size_t>(size) + 1);
  size_t total = 0;
  size_t got = 0;
  while ((got = std::fread(bytes.data() + total, 1, bytes.size() - total, file)) > 0) {
    total += got;
    if (total == bytes.size()) bytes.resize(2 * bytes.size());
  }
  bytes.resize(total);
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) why = "read failed";
  return !failed;
}

constexpr const char* kNoOpenCv =
    "this build lacks OpenCV, which decodes and writes image files (install libopencv-dev and "
    "rebuild)";

}  // namespace

bool has_image_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".webp";
}

std::optional<ImageSize> peek_image_size(const uint8_t* d, size_t n) {
  if (is_jpeg(d, n)) return jpeg_layout(d, n).size;
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 24 && std::memcmp(d, kPng, 8) == 0 && std::memcmp(d + 12, "IHDR", 4) == 0) {
    return ImageSize{static_cast<int>(read_u32_be(d + 20)), static_cast<int>(read_u32_be(d + 16))};
  }
  if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
    if (read_u32_le(d + 14) == 12) {  // BITMAPCOREHEADER: 16-bit sizes
      return ImageSize{d[20] | (d[21] << 8), d[18] | (d[19] << 8)};
    }
    const auto width = static_cast<int32_t>(read_u32_le(d + 18));
    const auto height = static_cast<int32_t>(read_u32_le(d + 22));  // negative: top-down
    return ImageSize{height < 0 ? -height : height, width};
  }
  if (n >= 30 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0) {
    if (std::memcmp(d + 12, "VP8 ", 4) == 0 && d[23] == 0x9d && d[24] == 0x01 && d[25] == 0x2a) {
      return ImageSize{(d[28] | (d[29] << 8)) & 0x3fff, (d[26] | (d[27] << 8)) & 0x3fff};
    }
    if (std::memcmp(d + 12, "VP8L", 4) == 0 && d[20] == 0x2f) {
      const uint32_t bits = read_u32_le(d + 21);
      return ImageSize{static_cast<int>((bits >> 14) & 0x3fff) + 1,
                       static_cast<int>(bits & 0x3fff) + 1};
    }
    if (std::memcmp(d + 12, "VP8X", 4) == 0) {
      return ImageSize{(d[27] | (d[28] << 8) | (d[29] << 16)) + 1,
                       (d[24] | (d[25] << 8) | (d[26] << 16)) + 1};
    }
  }
  return std::nullopt;
}

int reduced_decode_factor(int height, int width, int min_side) {
  if (min_side <= 0) return 1;
  const int64_t shorter = std::min(height, width);
  for (int factor : {8, 4, 2}) {
    if (shorter >= int64_t{factor} * min_side) return factor;
  }
  return 1;
}

namespace {

// Decoder margin around a chosen crop: a full iMCU (16 px) on every side, so that chroma
// upsampling at the crop's edges sees the same neighbours as in a full decode.
constexpr int kCropMargin = 16;

}  // namespace

std::optional<DecodedFile> internal::decode_file(const std::string& path, int min_side,
                                                 const ChooseBox* choose, std::string* why) {
  std::string reason;
  const auto reject = [&](std::string text) -> std::optional<DecodedFile> {
    if (why != nullptr) *why = std::move(text);
    return std::nullopt;
  };
  std::vector<uint8_t> bytes;
  if (!read_whole_file(path, bytes, reason)) return reject("cannot read: " + reason);
  if (bytes.empty()) return reject("empty file");
  const auto size = peek_image_size(bytes.data(), bytes.size());
  // Only the formats image folders take reach a decoder: OpenCV's imdecode would otherwise try
  // every codec it was built with (JPEG 2000, TIFF, DICOM, ...), and one of them aborts the
  // process on a malformed file (found by fuzz_image).
  if (!size && !is_jpeg(bytes.data(), bytes.size())) {
    return reject("not a JPEG, PNG, BMP or WebP image");
  }
  if (size) {
    const int64_t pixels = std::abs(int64_t{size->width}) * std::abs(int64_t{size->height});
    if (pixels > kMaxImagePixels) {
      return reject("image too large: its header says " + std::to_string(size->width) + " x " +
                    std::to_string(size->height) + " pixels (" + std::to_string(pixels) +
                    "), more than the " + std::to_string(kMaxImagePixels) + " this loader decodes");
    }
  }

  int reduce = 1;
  CropBox box;  // with `choose`: drawn once, from the header's size where there is one
  bool chosen = false;
  if (is_jpeg(bytes.data(), bytes.size())) {
    const JpegLayout layout = jpeg_layout(bytes.data(), bytes.size());
    if (!layout.size || layout.scan_offset == 0) return reject("corrupt or truncated JPEG header");
    if (!jpeg_has_end(bytes.data(), bytes.size(), layout.scan_offset)) {
      return reject("truncated JPEG (no end-of-image marker)");
    }
    // libjpeg directly: RGB out of the decoder. What it cannot do (CMYK) goes to OpenCV.
    JpegDecodeOptions options;
    if (choose != nullptr) {
      box = (*choose)(layout.size->height, layout.size->width);
      options.region = CropBox{box.top - kCropMargin, box.left - kCropMargin,
                               box.height + 2 * kCropMargin, box.width + 2 * kCropMargin};
      options.region->height += std::min(0, options.region->top);  // clamp at the top-left;
      options.region->width += std::min(0, options.region->left);  // decode_jpeg clamps the rest
      options.region->top = std::max(0, options.region->top);
      options.region->left = std::max(0, options.region->left);
      chosen = true;
    } else {
      reduce = reduced_decode_factor(layout.size->height, layout.size->width, min_side);
      options.scale_denom = reduce;
    }
    if (auto decoded = decode_jpeg(bytes.data(), bytes.size(), options, &reason)) {
      const CropBox in_part{box.top - decoded->top, box.left - decoded->left, box.height,
                            box.width};
      const Image& img = decoded->image;
      if (in_part.top >= 0 && in_part.left >= 0 && in_part.top + in_part.height <= img.height &&
          in_part.left + in_part.width <= img.width) {
        return DecodedFile{std::move(decoded->image), chosen ? in_part : CropBox{}};
      }
      reason = "decoded part does not hold the crop";  // not expected; decode in full below
    }
  }
#ifdef THINKINGVIT_HAVE_OPENCV
  // PIL, which timm's loader uses, ignores the EXIF orientation; so do we.
  int flags = cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION;
  switch (reduce) {
    case 2:
      flags = cv::IMREAD_REDUCED_COLOR_2 | cv::IMREAD_IGNORE_ORIENTATION;
      break;
    case 4:
      flags = cv::IMREAD_REDUCED_COLOR_4 | cv::IMREAD_IGNORE_ORIENTATION;
      break;
    case 8:
      flags = cv::IMREAD_REDUCED_COLOR_8 | cv::IMREAD_IGNORE_ORIENTATION;
      break;
    default:
      break;
  }
  cv::Mat bgr;
  try {
    const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1, bytes.data());
    bgr = cv::imdecode(buffer, flags);
  } catch (const cv::Exception& e) {
    return reject(std::string("OpenCV: ") + e.what());
  }
  if (bgr.empty()) return reject(reason.empty() ? "not a decodable image" : reason);
  if (bgr.type() != CV_8UC3) return reject("unexpected pixel type after decoding");

  // BGR -> RGB while copying out; no cv::cvtColor, so no OpenCV thread pool under our loaders.
  Image image(bgr.rows, bgr.cols, 3);
  for (int y = 0; y < bgr.rows; ++y) {
    const uint8_t* src = bgr.ptr<uint8_t>(y);
    uint8_t* dst = image.pixels.data() + static_cast<size_t>(y) * bgr.cols * 3;
    for (int x = 0; x < bgr.cols; ++x, src += 3, dst += 3) {
      dst[0] = src[2];
      dst[1] = src[1];
      dst[2] = src[0];
    }
  }
  if (choose != nullptr && !chosen) box = (*choose)(image.height, image.width);
  return DecodedFile{std::move(image), box};
#else
  (void)reduce;
  if (!reason.empty()) return reject(reason);
  fail("cannot decode '", path, "': ", kNoOpenCv);
#endif
}

std::optional<Image> decode_image_file(const std::string& path, int min_side, std::string* why) {
  auto decoded = decode_file(path, min_side, /*choose=*/nullptr, why);
  if (!decoded) return std::nullopt;
  return std::move(decoded->image);
}

void write_image_file(const std::string& path, const Image& image, int jpeg_quality) {
  TVIT_CHECK(image.channels == 1 || image.channels == 3, "cannot write '", path,
             "': expected a gray or RGB image, found ", image.channels, " channels");
  TVIT_CHECK(
      image.pixels.size() == static_cast<size_t>(image.height) * image.width * image.channels &&
          !image.empty(),
      "cannot write '", path, "': expected ", image.height, "x", image.width, "x", image.channels,
      " pixels, found ", image.pixels.size());
#ifdef THINKINGVIT_HAVE_OPENCV
  cv::Mat mat(image.height, image.width, image.channels == 1 ? CV_8UC1 : CV_8UC3);
  for (int y = 0; y < image.height; ++y) {
    uint8_t* dst = mat.ptr<uint8_t>(y);
    for (int x = 0; x < image.width; ++x) {
      for (int c = 0; c < image.channels; ++c) {
        // RGB -> BGR
        dst[x * image.channels + c] = image.at(y, x, image.channels == 3 ? 2 - c : 0);
      }
    }
  }
  bool written = false;
  try {
    written = cv::imwrite(path, mat, {cv::IMWRITE_JPEG_QUALITY, jpeg_quality});
  } catch (const cv::Exception& e) {
    fail("cannot write '", path, "': ", e.what());
  }
  TVIT_CHECK(written, "cannot write '", path, "': OpenCV could not encode or write it (check the ",
             "extension and the folder)");
#else
  (void)jpeg_quality;
  fail("cannot write '", path, "': ", kNoOpenCv);
#endif
}

}  // namespace thinkingvit::data
