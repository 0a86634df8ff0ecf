// CIFAR-10 / CIFAR-100 binary batches.
#include "thinkingvit/data/dataset.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "dataset_internal.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::data {

using internal::check_index;
using internal::geometry;
using internal::numbered_names;

namespace fs = std::filesystem;

namespace {

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

}  // namespace

std::unique_ptr<Dataset> open_cifar(const std::vector<std::string>& files, int num_classes) {
  return std::make_unique<CifarDataset>(files, num_classes);
}

}  // namespace thinkingvit::data
