#pragma once
// Opening the datasets a configuration names (the YAML `data:` section), one split at a time, so
// that a command opens only what it reads: `eval` and `sweep` never touch the training set.

#include <cstdint>
#include <memory>
#include <string>

#include "thinkingvit/data/dataset.h"

namespace thinkingvit::data {

// The largest synthetic split: an epoch's index list alone is 8 bytes a sample.
constexpr int64_t kMaxSyntheticSize = int64_t{1} << 26;

struct DataSection {
  // fashion-mnist | mnist | cifar10 | cifar100 | image-folder | synthetic
  std::string dataset = "fashion-mnist";
  std::string root;  // folder; fashion-mnist defaults to Debian's location
  std::string train_dir = "train", val_dir = "val";  // image-folder sub-folders
  std::string class_list;                            // image-folder: one class folder per line
  int64_t synthetic_size = 1024;                     // synthetic: images per split
  int64_t train_limit = 0;   // use only the first N training images (0: all); quick runs
  int64_t val_limit = 0;     // use only the first N validation images (0: all)
  int64_t batch_size = 128;  // per process
  int64_t eval_batch_size = 256;
  int num_workers = 2;
  int prefetch_batches = 4;
  bool skip_corrupt = true;
  bool fast_decode = false;  // eval: JPEG DCT-scaled decoding (faster, pixels differ slightly)
  bool pin_memory = true;
  // auto: uint8 batches on a GPU (normalised and erased there), float32 on the CPU.
  std::string batch_dtype = "auto";  // auto | uint8 | float32
  int repeated_aug = 1;  // DeiT's repeated augmentation copies (3 in the ImageNet recipe)
};

enum class Split { kTrain, kVal };

// What a synthetic set is made of: the model's input and classes, and the run's seed.
struct SyntheticSpec {
  int image_size = 32;
  int channels = 3;
  int64_t num_classes = 10;
  uint64_t seed = 0;
};

// The split of the configured dataset, cut to data.train_limit / data.val_limit. Errors name the
// file or folder that is missing or malformed.
std::shared_ptr<const Dataset> open_split(const DataSection& data, Split split,
                                          const SyntheticSpec& synthetic);

// Whether the loaders hand out uint8 batches (data.batch_dtype; auto: on a CUDA device).
bool uint8_batches(const DataSection& data, bool cuda);

}  // namespace thinkingvit::data
