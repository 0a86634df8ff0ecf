#pragma once
// Labelled image datasets: ImageNet-style folders, (Fashion-)MNIST IDX files, CIFAR binary
// batches and a deterministic synthetic set. All are safe to read from many threads at once.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "thinkingvit/data/image.h"
#include "thinkingvit/data/transforms.h"

namespace thinkingvit::data {

struct Sample {
  Image image;
  int64_t label = 0;
};

// A capability of datasets whose samples are encoded image files: decoding that skips work.
// The loader asks a dataset for it (Dataset::partial_decoder) instead of asking its type.
class PartialDecoder {
 public:
  virtual ~PartialDecoder() = default;
  // As Dataset::get(), but a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
  // scaling: about 2x faster at 1/2, 4x at 1/8) as long as its shorter side stays >= min_side.
  // For an eval pipeline that resizes the shorter side to S anyway, get_reduced(i, S) gives
  // nearly the same pixels for less work (pixels differ slightly from full decode + resize).
  virtual std::optional<Sample> get_reduced(int64_t index, int min_side) const = 0;
  // As Dataset::get(), for a transform that crops first: the box is chosen from the size in the
  // file's header by choose(height, width), and a JPEG is decoded only over the rows and columns
  // that hold it (same pixels as a full decode). The result's image is that part; `box` is the
  // chosen box in its coordinates.
  struct Part {
    Sample sample;
    CropBox box;
  };
  virtual std::optional<Part> get_part(
      int64_t index, const std::function<CropBox(int height, int width)>& choose) const = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  // Channels of the decoded images (1 or 3).
  virtual int channels() const = 0;
  // The sample at `index`, or nullopt when its file is unreadable or corrupt (the caller
  // counts and replaces it). Throws thinkingvit::Error for an index out of range.
  virtual std::optional<Sample> get(int64_t index) const = 0;
  // Labels of every sample, without decoding (samplers and class statistics use them).
  virtual std::vector<int64_t> labels() const = 0;
  // Class names when the dataset has them ("n01440764", "T-shirt/top"), else "0", "1", ...
  virtual std::vector<std::string> class_names() const = 0;
  // One line for logs: "fashion-mnist train: 60000 images, 10 classes, 28x28x1".
  virtual std::string describe() const = 0;
  // Partial decoding of sample `index` (same indices as get()), where the format allows it.
  virtual const PartialDecoder* partial_decoder() const { return nullptr; }
};

// Default location of Debian's dataset-fashion-mnist.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// What is known of an IDX data set by name: its class names when fixed (labels must index them),
// the classes it has at least, and where a system package puts it ("" when nowhere).
struct IdxSet {
  std::string name;
  std::vector<std::string> class_names;
  int64_t min_classes = 1;
  std::string default_root;
};
// fashion-mnist (Debian's dataset-fashion-mnist) and mnist; nullptr for other names.
const IdxSet* known_idx_set(const std::string& name);

// IDX image + label files (raw or gzip). `name` only labels the dataset in messages.
std::unique_ptr<Dataset> open_idx(const std::string& images_path, const std::string& labels_path,
                                  const std::string& name = "idx");
// (Fashion-)MNIST from a folder holding {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
std::unique_ptr<Dataset> open_mnist_folder(const std::string& dir, bool train,
                                           const std::string& name = "fashion-mnist");

// CIFAR-10 (`cifar10`: 1 label byte) or CIFAR-100 (`cifar100`: coarse + fine label bytes,
// the fine label is used) binary batch files, each record 32x32x3 planar.
std::unique_ptr<Dataset> open_cifar(const std::vector<std::string>& files, int num_classes);

// root/<class>/<image>; class index = position of the folder name in sorted order, or in
// `class_list` (a text file, one folder name per line) when given. Image files are .jpg,
// .jpeg, .png, .bmp, .webp (case-insensitive). An empty or missing root is an Error.
// Needs OpenCV for decoding (`get` throws Error naming the missing feature otherwise).
std::unique_ptr<Dataset> open_image_folder(const std::string& root,
                                           const std::string& class_list = "");

// The ImageFolder behind open_image_folder; its partial decoding is reached through
// Dataset::partial_decoder().
class ImageFolder : public Dataset, public PartialDecoder {
 public:
  explicit ImageFolder(const std::string& root, const std::string& class_list = "");
  int64_t size() const override { return static_cast<int64_t>(paths_.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(class_names_.size()); }
  int channels() const override { return 3; }
  std::optional<Sample> get(int64_t index) const override;
  std::vector<int64_t> labels() const override { return labels_; }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::string describe() const override;
  const PartialDecoder* partial_decoder() const override { return this; }

  std::optional<Sample> get_reduced(int64_t index, int min_side) const override;
  std::optional<Part> get_part(
      int64_t index, const std::function<CropBox(int height, int width)>& choose) const override;
  const std::string& path(int64_t index) const;
  const std::string& root() const { return root_; }

 private:
  std::optional<Sample> load(int64_t index, int min_side) const;
  void warn_skipped(int64_t index, const std::string& why) const;

  std::string root_;
  std::vector<std::string> class_names_;
  std::vector<std::string> paths_;  // sorted within each class
  std::vector<int64_t> labels_;
  mutable std::mutex warned_mutex_;
  mutable std::unordered_set<int64_t> warned_;  // indices already reported as undecodable
};

// `size` images of channels x height x width, uniform random pixels and labels from `seed`.
std::unique_ptr<Dataset> make_synthetic(int64_t size, int height, int width, int channels,
                                        int64_t num_classes, uint64_t seed = 0);

// ---- Image files. Decoding and writing need OpenCV; without it they throw Error. ----

struct ImageSize {
  int height = 0;
  int width = 0;
};
// Height and width read from a JPEG, PNG, BMP or WebP header without decoding; nullopt when the
// bytes are none of these or the header is cut short.
std::optional<ImageSize> peek_image_size(const uint8_t* data, size_t size);

// The largest of 1, 2, 4, 8 with min(height, width) >= factor * min_side; 1 when min_side <= 0.
int reduced_decode_factor(int height, int width, int min_side);

// The image files image folders and `predict` take: .jpg .jpeg .png .bmp .webp, any case.
inline constexpr const char* kImageExtensions = ".jpg .jpeg .png .bmp .webp";
bool has_image_extension(const std::string& path);

// Decodes an image file to 8-bit RGB (gray and alpha images are converted). With min_side > 0 a
// JPEG is decoded at 1 / reduced_decode_factor(h, w, min_side) scale; other formats always at full
// size (OpenCV would decode them fully and then resize without antialiasing). Returns nullopt
// for an unreadable, corrupt or truncated file and, when `why` is given, stores the reason there.
std::optional<Image> decode_image_file(const std::string& path, int min_side = 0,
                                       std::string* why = nullptr);

// Writes a gray or RGB image; the format follows the extension (.png, .jpg, .bmp, .webp, ...).
void write_image_file(const std::string& path, const Image& image, int jpeg_quality = 95);

}  // namespace thinkingvit::data
