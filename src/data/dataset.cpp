#include "thinkingvit/data/dataset.h"

#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#ifdef THINKINGVIT_HAVE_OPENCV
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif

#include "thinkingvit/data/jpeg.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::data {

namespace fs = std::filesystem;

namespace {

void check_index(int64_t index, int64_t size, const std::string& what) {
  TVIT_CHECK(index >= 0 && index < size, what, ": index ", index, " is out of range [0, ", size,
             ")");
}

std::vector<std::string> numbered_names(int64_t count) {
  std::vector<std::string> names;
  for (int64_t k = 0; k < count; ++k) names.push_back(std::to_string(k));
  return names;
}

std::string geometry(int height, int width, int channels) {
  return detail::concat(height, "x", width, "x", channels);
}

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", value);
  return text;
}

uint32_t read_u32_be(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// ---------------------------------------------------------------------------------------------
// IDX (MNIST, Fashion-MNIST): a big-endian header (magic 0x000008dd: unsigned bytes, dd
// dimensions; then one u32 per dimension) followed by the raw bytes.

// A file read sequentially, gunzipped on the fly when it starts with the gzip magic 1f 8b.
class ByteReader {
 public:
  ByteReader(const std::string& path, std::string what) : what_(std::move(what)) {
    raw_ = std::fopen(path.c_str(), "rb");
    TVIT_CHECK(raw_ != nullptr, what_, ": cannot open: ", std::strerror(errno));
    uint8_t magic[2] = {0, 0};
    const size_t got = std::fread(magic, 1, 2, raw_);
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
      std::fclose(raw_);
      raw_ = nullptr;
      gz_ = gzopen(path.c_str(), "rb");
      TVIT_CHECK(gz_ != nullptr, what_, ": cannot open: ", std::strerror(errno));
      gzbuffer(gz_, 1u << 20);
    } else {
      std::rewind(raw_);
    }
  }
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;
  ~ByteReader() {
    if (raw_ != nullptr) std::fclose(raw_);
    if (gz_ != nullptr) gzclose_r(gz_);
  }

  bool gzip() const { return gz_ != nullptr; }

  // Reads up to n bytes; fewer only at the end of the data. Throws on read or gzip errors.
  size_t read(uint8_t* dst, size_t n) {
    size_t total = 0;
    while (total < n) {
      const size_t want = std::min<size_t>(n - total, 1u << 30);
      size_t got = 0;
      if (gz_ != nullptr) {
        const int r = gzread(gz_, dst + total, static_cast<unsigned>(want));
        int errnum = Z_OK;
        const char* message = gzerror(gz_, &errnum);
        TVIT_CHECK(r >= 0 && (errnum == Z_OK || errnum == Z_BUF_ERROR), what_,
                   ": corrupt gzip data (", message, ")");
        got = static_cast<size_t>(r);
        // Z_BUF_ERROR: the gzip stream ends in the middle; the short count reports it.
      } else {
        got = std::fread(dst + total, 1, want, raw_);
        TVIT_CHECK(!std::ferror(raw_), what_, ": read failed: ", std::strerror(errno));
      }
      total += got;
      if (got < want) break;
    }
    return total;
  }

 private:
  std::string what_;
  FILE* raw_ = nullptr;
  gzFile gz_ = nullptr;
};

struct IdxArray {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;
};

// Reads an IDX file of unsigned bytes with `num_dims` dimensions; `dim_names` describe them for
// messages ("count, rows, columns").
IdxArray read_idx(const std::string& path, int num_dims, const std::string& kind,
                  const std::string& dim_names) {
  const std::string what = "IDX " + kind + " file '" + path + "'";
  TVIT_CHECK(fs::exists(path), what, ": not found");
  ByteReader reader(path, what);
  const uint32_t expected_magic = 0x00000800u | static_cast<uint32_t>(num_dims);
  const std::string expected = detail::concat("magic ", hex32(expected_magic), " (unsigned bytes, ",
                                              num_dims, " dimensions: ", dim_names, ")");

  uint8_t header[4 * 4];
  const size_t got_magic = reader.read(header, 4);
  TVIT_CHECK(got_magic == 4, what, ": expected ", expected, ", found a file of ", got_magic,
             " bytes");
  const uint32_t magic = read_u32_be(header);
  if (magic != expected_magic) {
    std::string hint;
    if (magic == 0x00000801u) hint = "; this looks like an IDX labels file";
    if (magic == 0x00000803u) hint = "; this looks like an IDX images file";
    if ((magic >> 8) == 0x000008u && hint.empty()) hint = "; an IDX file of another shape";
    if ((magic >> 8) != 0x000008u && (magic >> 8) != 0u) hint = "; not an IDX file of bytes";
    fail(what, ": expected ", expected, ", found ", hex32(magic), hint);
  }

  IdxArray array;
  const size_t dims_bytes = 4 * static_cast<size_t>(num_dims);
  const size_t got_dims = reader.read(header, dims_bytes);
  TVIT_CHECK(got_dims == dims_bytes, what, ": truncated header: expected ", dims_bytes,
             " bytes of dimensions after the magic, found ", got_dims);
  uint64_t expected_bytes = 1;
  for (int d = 0; d < num_dims; ++d) {
    array.dims.push_back(read_u32_be(header + 4 * d));
    expected_bytes *= array.dims.back();
  }

  // Grow in chunks, so that a corrupt header cannot make us allocate more than the file holds.
  constexpr size_t kChunk = size_t{16} << 20;
  while (array.data.size() < expected_bytes) {
    const size_t old_size = array.data.size();
    const size_t want = std::min<uint64_t>(kChunk, expected_bytes - old_size);
    array.data.resize(old_size + want);
    const size_t got = reader.read(array.data.data() + old_size, want);
    array.data.resize(old_size + got);
    if (got < want) break;
  }
  std::ostringstream shape;
  for (size_t d = 0; d < array.dims.size(); ++d) shape << (d ? " x " : "") << array.dims[d];
  TVIT_CHECK(array.data.size() == expected_bytes, what, ": truncated: the header announces ",
             shape.str(), " (", expected_bytes, " bytes of data), found only ", array.data.size(),
             " bytes", reader.gzip() ? " after decompression" : "");
  uint8_t extra = 0;
  TVIT_CHECK(reader.read(&extra, 1) == 0, what, ": expected exactly ", expected_bytes,
             " bytes of data after the header (", shape.str(), "), found more");
  return array;
}

class IdxDataset final : public Dataset {
 public:
  IdxDataset(const std::string& images_path, const std::string& labels_path, const IdxSet& set,
             std::string title)
      : title_(std::move(title)) {
    IdxArray images = read_idx(images_path, 3, "images", "count, rows, columns");
    IdxArray labels = read_idx(labels_path, 1, "labels", "count");
    TVIT_CHECK(images.dims[0] == labels.dims[0], "IDX files '", images_path, "' and '", labels_path,
               "': expected as many labels as images, found ", images.dims[0], " images and ",
               labels.dims[0], " labels");
    TVIT_CHECK(images.dims[0] > 0, "IDX images file '", images_path, "': expected images, found 0");
    TVIT_CHECK(images.dims[1] > 0 && images.dims[2] > 0 && images.dims[1] <= (1u << 15) &&
                   images.dims[2] <= (1u << 15),
               "IDX images file '", images_path, "': expected images of 1..32768 pixels a side, ",
               "found ", images.dims[1], " x ", images.dims[2]);
    height_ = static_cast<int>(images.dims[1]);
    width_ = static_cast<int>(images.dims[2]);
    pixels_ = std::move(images.data);

    const auto fixed = static_cast<int64_t>(set.class_names.size());
    labels_.assign(labels.data.begin(), labels.data.end());
    int64_t max_label = 0;
    for (size_t i = 0; i < labels_.size(); ++i) {
      TVIT_CHECK(fixed == 0 || labels_[i] < fixed, "IDX labels file '", labels_path, "', label ", i,
                 ": ", set.name, " expects labels 0..", fixed - 1, ", found ", labels_[i]);
      max_label = std::max(max_label, labels_[i]);
    }
    class_names_ =
        fixed > 0 ? set.class_names : numbered_names(std::max(max_label + 1, set.min_classes));
  }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(class_names_.size()); }
  int channels() const override { return 1; }

  std::optional<Sample> get(int64_t index) const override {
    check_index(index, size(), title_);
    Sample sample;
    sample.image = Image(height_, width_, 1);
    const size_t bytes = static_cast<size_t>(height_) * width_;
    std::memcpy(sample.image.pixels.data(), pixels_.data() + bytes * index, bytes);
    sample.label = labels_[index];
    return sample;
  }

  std::vector<int64_t> labels() const override { return labels_; }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::string describe() const override {
    return detail::concat(title_, ": ", size(), " images, ", num_classes(), " classes, ",
                          geometry(height_, width_, 1));
  }

 private:
  std::string title_;
  int height_ = 0;
  int width_ = 0;
  std::vector<uint8_t> pixels_;  // N x H x W
  std::vector<int64_t> labels_;
  std::vector<std::string> class_names_;
};

// ---------------------------------------------------------------------------------------------
// CIFAR binary batches: records of label byte(s) + 1024 R + 1024 G + 1024 B (32 x 32 row-major).

constexpr int kCifarSide = 32;
constexpr size_t kCifarPixels = 3 * kCifarSide * kCifarSide;

const std::vector<std::string>& cifar10_names() {
  static const std::vector<std::string> names = {
      "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  return names;
}

// Non-empty lines of `path`, trailing whitespace removed; empty when the file does not exist.
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto text = util::trim(line);
    if (!text.empty()) lines.push_back(std::move(text));
  }
  return lines;
}

class CifarDataset final : public Dataset {
 public:
  CifarDataset(const std::vector<std::string>& files, int num_classes)
      : num_classes_(num_classes), num_files_(files.size()) {
    TVIT_CHECK(num_classes == 10 || num_classes == 100,
               "CIFAR: expected num_classes 10 (CIFAR-10) ", "or 100 (CIFAR-100), found ",
               num_classes);
    const std::string format = num_classes == 10 ? "CIFAR-10" : "CIFAR-100";
    TVIT_CHECK(!files.empty(), format, ": expected at least one binary batch file, found none");
    const size_t label_bytes = num_classes == 10 ? 1 : 2;
    const size_t record = label_bytes + kCifarPixels;
    for (const auto& file : files) {
      const std::string what = format + " file '" + file + "'";
      TVIT_CHECK(fs::is_regular_file(file), what, ": not found; expected a binary batch (",
                 num_classes == 10 ? "data_batch_1.bin .. data_batch_5.bin, test_batch.bin"
                                   : "train.bin, test.bin",
                 ")");
      const std::vector<char> bytes = util::read_file(file);
      const std::string other = num_classes == 10 ? "CIFAR-100 (3074)" : "CIFAR-10 (3073)";
      TVIT_CHECK(!bytes.empty() && bytes.size() % record == 0, what, ": expected a multiple of ",
                 record, " bytes (", label_bytes, " label byte", label_bytes > 1 ? "s" : "",
                 " + 3072 pixel bytes per image), found ", bytes.size(), " bytes",
                 bytes.size() % (record == 3073 ? 3074 : 3073) == 0 && !bytes.empty()
                     ? "; it looks like " + other + " records: check num_classes"
                     : "");
      const size_t count = bytes.size() / record;
      const size_t base = labels_.size();
      labels_.resize(base + count);
      pixels_.resize((base + count) * kCifarPixels);
      for (size_t r = 0; r < count; ++r) {
        const auto* rec = reinterpret_cast<const uint8_t*>(bytes.data()) + r * record;
        const int label = rec[label_bytes - 1];  // CIFAR-100: coarse, fine; the fine one is used
        TVIT_CHECK(label < num_classes, what, ", record ", r, ": expected a label in 0..",
                   num_classes - 1, ", found ", label);
        labels_[base + r] = label;
        // 3 x 32 x 32 planar -> 32 x 32 x 3 interleaved
        const uint8_t* planes = rec + label_bytes;
        uint8_t* out = pixels_.data() + (base + r) * kCifarPixels;
        constexpr size_t kPlane = kCifarSide * kCifarSide;
        for (size_t p = 0; p < kPlane; ++p) {
          out[3 * p + 0] = planes[p];
          out[3 * p + 1] = planes[kPlane + p];
          out[3 * p + 2] = planes[2 * kPlane + p];
        }
      }
    }
    // The archives ship the names beside the batches (batches.meta.txt, fine_label_names.txt).
    const fs::path dir = fs::path(files.front()).parent_path();
    auto names = read_lines(
        (dir / (num_classes == 10 ? "batches.meta.txt" : "fine_label_names.txt")).string());
    if (static_cast<int>(names.size()) == num_classes) {
      class_names_ = std::move(names);
    } else {
      class_names_ = num_classes == 10 ? cifar10_names() : numbered_names(num_classes);
    }
    title_ = num_classes == 10 ? "cifar10" : "cifar100";
  }

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int64_t num_classes() const override { return num_classes_; }
  int channels() const override { return 3; }

  std::optional<Sample> get(int64_t index) const override {
    check_index(index, size(), title_);
    Sample sample;
    sample.image = Image(kCifarSide, kCifarSide, 3);
    std::memcpy(sample.image.pixels.data(), pixels_.data() + kCifarPixels * index, kCifarPixels);
    sample.label = labels_[index];
    return sample;
  }

  std::vector<int64_t> labels() const override { return labels_; }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::string describe() const override {
    return detail::concat(title_, ": ", size(), " images from ", num_files_, " file",
                          num_files_ == 1 ? "" : "s", ", ", num_classes_, " classes, ",
                          geometry(kCifarSide, kCifarSide, 3));
  }

 private:
  int64_t num_classes_ = 0;
  size_t num_files_ = 0;
  std::string title_;
  std::vector<uint8_t> pixels_;  // N x 32 x 32 x 3
  std::vector<int64_t> labels_;
  std::vector<std::string> class_names_;
};

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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

namespace {

bool is_dir(const fs::path& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

}  // namespace

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

struct DecodedFile {
  Image image;
  CropBox box;  // the chosen crop in the image's coordinates (choose given), else empty
};
using ChooseBox = std::function<CropBox(int height, int width)>;

// decode_image_file, and with `choose` the crop-first variant behind ImageFolder::get_part.
std::optional<DecodedFile> decode_file(const std::string& path, int min_side,
                                       const ChooseBox* choose, std::string* why) {
  std::string reason;
  const auto reject = [&](std::string text) -> std::optional<DecodedFile> {
    if (why != nullptr) *why = std::move(text);
    return std::nullopt;
  };
  std::vector<uint8_t> bytes;
  if (!read_whole_file(path, bytes, reason)) return reject("cannot read: " + reason);
  if (bytes.empty()) return reject("empty file");

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

}  // namespace

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

// ---------------------------------------------------------------------------------------------

ImageFolder::ImageFolder(const std::string& root, const std::string& class_list) : root_(root) {
  const std::string what = "image folder '" + root + "'";
  const std::string layout = "expected root/<class>/<image> (e.g. an ImageNet train or val folder)";
  TVIT_CHECK(!root.empty(), "image folder: no path given; ", layout);
  std::error_code error;
  TVIT_CHECK(fs::exists(root, error), what, ": not found; ", layout);
  TVIT_CHECK(is_dir(root), what, ": not a directory; ", layout);

  std::vector<std::string> folders;
  for (fs::directory_iterator it(root, error), end; !error && it != end; it.increment(error)) {
    if (is_dir(it->path())) folders.push_back(it->path().filename().string());
  }
  TVIT_CHECK(!error, what, ": cannot list: ", error.message());
  TVIT_CHECK(!folders.empty(), what, ": holds no class folders; ", layout);
  std::sort(folders.begin(), folders.end());

  if (class_list.empty()) {
    class_names_ = folders;
  } else {
    std::ifstream in(class_list);
    TVIT_CHECK(in, "class list '", class_list, "': cannot open: ", std::strerror(errno));
    std::set<std::string> seen;
    std::string line;
    for (int line_number = 1; std::getline(in, line); ++line_number) {
      const std::string name = util::trim(line);
      if (name.empty()) continue;
      TVIT_CHECK(seen.insert(name).second, "class list '", class_list, "', line ", line_number,
                 ": class '", name, "' is listed twice");
      TVIT_CHECK(std::binary_search(folders.begin(), folders.end(), name), "class list '",
                 class_list, "', line ", line_number, ": expected a folder '",
                 (fs::path(root) / name).string(), "', found none");
      class_names_.push_back(name);
    }
    TVIT_CHECK(!class_names_.empty(), "class list '", class_list,
               "': expected one class folder name per line, found none");
  }

  // Like torchvision's ImageFolder: files found recursively, sorted per folder.
  std::vector<std::string> empty_classes;
  for (size_t label = 0; label < class_names_.size(); ++label) {
    std::vector<std::pair<std::string, std::string>> files;  // (folder, file name)
    const fs::path class_dir = fs::path(root) / class_names_[label];
    fs::recursive_directory_iterator it(class_dir, fs::directory_options::follow_directory_symlink,
                                        error);
    for (fs::recursive_directory_iterator end; !error && it != end; it.increment(error)) {
      const fs::path& path = it->path();
      if (has_image_extension(path.string()) && !is_dir(path)) {
        files.emplace_back(path.parent_path().string(), path.filename().string());
      }
    }
    TVIT_CHECK(!error, what, ": cannot list '", class_dir.string(), "': ", error.message());
    if (files.empty()) empty_classes.push_back(class_names_[label]);
    std::sort(files.begin(), files.end());
    for (const auto& [folder, name] : files) {
      paths_.push_back((fs::path(folder) / name).string());
      labels_.push_back(static_cast<int64_t>(label));
    }
  }
  TVIT_CHECK(!paths_.empty(), what, ": expected image files (", kImageExtensions, ") under its ",
             class_names_.size(), " class folders, found none");
  if (!empty_classes.empty()) {
    spdlog::warn(
        "{}: {} of {} class folders hold no images (first: '{}'); their classes keep "
        "their indices",
        what, empty_classes.size(), class_names_.size(), empty_classes.front());
  }
}

std::optional<Sample> ImageFolder::get(int64_t index) const { return load(index, /*min_side=*/0); }

std::optional<Sample> ImageFolder::get_reduced(int64_t index, int min_side) const {
  return load(index, min_side);
}

const std::string& ImageFolder::path(int64_t index) const {
  check_index(index, size(), "image folder '" + root_ + "'");
  return paths_[index];
}

std::optional<ImageFolder::Part> ImageFolder::get_part(
    int64_t index, const std::function<CropBox(int height, int width)>& choose) const {
  check_index(index, size(), "image folder '" + root_ + "'");
  std::string why;
  auto decoded = decode_file(paths_[index], /*min_side=*/0, &choose, &why);
  if (!decoded) {
    warn_skipped(index, why);
    return std::nullopt;
  }
  return Part{Sample{std::move(decoded->image), labels_[index]}, decoded->box};
}

std::optional<Sample> ImageFolder::load(int64_t index, int min_side) const {
  check_index(index, size(), "image folder '" + root_ + "'");
  std::string why;
  std::optional<Image> image = decode_image_file(paths_[index], min_side, &why);
  if (!image) {
    warn_skipped(index, why);
    return std::nullopt;
  }
  return Sample{std::move(*image), labels_[index]};
}

void ImageFolder::warn_skipped(int64_t index, const std::string& why) const {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(warned_mutex_);
    first = warned_.insert(index).second;
  }
  if (first) spdlog::warn("image folder '{}': skipping '{}': {}", root_, paths_[index], why);
}

std::string ImageFolder::describe() const {
  return detail::concat("image folder '", root_, "': ", size(), " images, ", num_classes(),
                        " classes");
}

// ---------------------------------------------------------------------------------------------

const IdxSet* known_idx_set(const std::string& name) {
  static const std::vector<IdxSet> sets = {
      {"fashion-mnist",
       {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot"},
       10,
       kFashionMnistDir},
      {"mnist", {}, 10, ""},
  };
  for (const auto& set : sets) {
    if (set.name == name) return &set;
  }
  return nullptr;
}

std::unique_ptr<Dataset> open_idx(const std::string& images_path, const std::string& labels_path,
                                  const std::string& name) {
  const auto* known = known_idx_set(name);
  return std::make_unique<IdxDataset>(images_path, labels_path,
                                      known ? *known : IdxSet{name, {}, 1, ""}, name);
}

std::unique_ptr<Dataset> open_mnist_folder(const std::string& dir, bool train,
                                           const std::string& name) {
  const std::string split = train ? "train" : "t10k";
  const std::string expected = "expected " + split + "-images-idx3-ubyte and " + split +
                               "-labels-idx1-ubyte (optionally .gz)";
  TVIT_CHECK(is_dir(dir), name, " folder '", dir, "': not found; ", expected);
  const auto find = [&](const std::string& stem) {
    const fs::path raw = fs::path(dir) / stem;
    fs::path gz = raw;
    gz += ".gz";
    std::error_code error;
    if (fs::is_regular_file(raw, error)) return raw.string();
    if (fs::is_regular_file(gz, error)) return gz.string();
    fail(name, " folder '", dir, "': expected '", stem, "' or '", stem, ".gz', found neither");
  };
  const std::string images = find(split + "-images-idx3-ubyte");
  const std::string labels = find(split + "-labels-idx1-ubyte");
  const auto* known = known_idx_set(name);
  return std::make_unique<IdxDataset>(images, labels, known ? *known : IdxSet{name, {}, 10, ""},
                                      name + (train ? " train" : " test"));
}

std::unique_ptr<Dataset> open_cifar(const std::vector<std::string>& files, int num_classes) {
  return std::make_unique<CifarDataset>(files, num_classes);
}

std::unique_ptr<Dataset> open_image_folder(const std::string& root, const std::string& class_list) {
  return std::make_unique<ImageFolder>(root, class_list);
}

std::unique_ptr<Dataset> make_synthetic(int64_t size, int height, int width, int channels,
                                        int64_t num_classes, uint64_t seed) {
  return std::make_unique<SyntheticDataset>(size, height, width, channels, num_classes, seed);
}

}  // namespace thinkingvit::data
