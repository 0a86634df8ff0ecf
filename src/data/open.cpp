#include "thinkingvit/data/open.h"

#include <filesystem>

#include "thinkingvit/util/error.h"

namespace thinkingvit::data {

namespace {

namespace fs = std::filesystem;

// The first `limit` samples of a dataset (data.train_limit / data.val_limit).
class FirstSamples : public Dataset {
 public:
  FirstSamples(std::shared_ptr<const Dataset> base, int64_t limit)
      : base_(std::move(base)), size_(std::min(limit, base_->size())) {}
  int64_t size() const override { return size_; }
  int64_t num_classes() const override { return base_->num_classes(); }
  int channels() const override { return base_->channels(); }
  std::optional<Sample> get(int64_t index) const override {
    TVIT_CHECK(index >= 0 && index < size_, "sample index ", index, " outside [0, ", size_, ")");
    return base_->get(index);
  }
  std::vector<int64_t> labels() const override {
    auto all = base_->labels();
    all.resize(static_cast<size_t>(size_));
    return all;
  }
  std::vector<std::string> class_names() const override { return base_->class_names(); }
  std::string describe() const override {
    return base_->describe() + ", first " + std::to_string(size_) + " used";
  }
  // The first samples keep their indices, so the base's partial decoding serves them as is.
  const PartialDecoder* partial_decoder() const override { return base_->partial_decoder(); }

 private:
  std::shared_ptr<const Dataset> base_;
  int64_t size_;
};

std::shared_ptr<const Dataset> open_whole_split(const DataSection& d, bool train,
                                                const SyntheticSpec& synthetic) {
  const fs::path root(d.root);
  if (const auto* idx = known_idx_set(d.dataset)) {
    TVIT_CHECK(!d.root.empty() || !idx->default_root.empty(), "data.root: ", d.dataset,
               " has no default folder; set data.root to the folder of its IDX files");
    return open_mnist_folder(d.root.empty() ? idx->default_root : d.root, train, d.dataset);
  }
  if (d.dataset == "cifar10") {
    if (!train) return open_cifar({(root / "test_batch.bin").string()}, 10);
    std::vector<std::string> files;
    for (int i = 1; i <= 5; ++i)
      files.push_back((root / ("data_batch_" + std::to_string(i) + ".bin")).string());
    return open_cifar(files, 10);
  }
  if (d.dataset == "cifar100") {
    return open_cifar({(root / (train ? "train.bin" : "test.bin")).string()}, 100);
  }
  if (d.dataset == "image-folder") {
    return open_image_folder((root / (train ? d.train_dir : d.val_dir)).string(), d.class_list);
  }
  if (d.dataset == "synthetic") {
    const int size = synthetic.image_size;
    return make_synthetic(d.synthetic_size, size, size, synthetic.channels, synthetic.num_classes,
                          synthetic.seed + (train ? 0 : 1));
  }
  fail("data.dataset: unknown dataset '", d.dataset, "'");
}

}  // namespace

std::shared_ptr<const Dataset> open_split(const DataSection& data, Split split,
                                          const SyntheticSpec& synthetic) {
  const bool train = split == Split::kTrain;
  auto set = open_whole_split(data, train, synthetic);
  const int64_t limit = train ? data.train_limit : data.val_limit;
  if (limit > 0) set = std::make_shared<FirstSamples>(set, limit);
  return set;
}

bool uint8_batches(const DataSection& data, bool cuda) {
  return data.batch_dtype == "uint8" || (data.batch_dtype == "auto" && cuda);
}

}  // namespace thinkingvit::data
