// IDX files (MNIST, Fashion-MNIST).
#include "thinkingvit/data/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "dataset_internal.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::data {

using internal::check_index;
using internal::geometry;
using internal::is_dir;
using internal::numbered_names;
using internal::read_u32_be;

namespace fs = std::filesystem;

namespace {

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", value);
  return text;
}

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

}  // namespace

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

}  // namespace thinkingvit::data
