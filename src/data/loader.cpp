#include "thinkingvit/data/loader.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "thinkingvit/util/compat.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::data {

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, SampleTransform transform,
                       LoaderOptions options)
    : dataset_(std::move(dataset)), transform_(std::move(transform)), options_(options) {
  TVIT_CHECK(dataset_ != nullptr, "data loader: no dataset");
  TVIT_CHECK(options_.batch_size > 0, "data loader: batch_size must be > 0, found ",
             options_.batch_size);
  TVIT_CHECK(options_.num_workers >= 0, "data loader: num_workers must be >= 0, found ",
             options_.num_workers);
  TVIT_CHECK(options_.prefetch_batches >= 1, "data loader: prefetch_batches must be >= 1, found ",
             options_.prefetch_batches);
  if (options_.pin_memory && !compat::cuda_available()) options_.pin_memory = false;
  ahead_ = std::max<int64_t>(options_.prefetch_batches, options_.num_workers);
  if (options_.reduced_decode && transform_.decode_min_side > 0)
    reducer_ = dataset_->partial_decoder();
  // A crop drawn before decoding lets the JPEG decoder skip what lies outside it (same pixels).
  if (transform_.crop_box && transform_.apply_cropped) part_decoder_ = dataset_->partial_decoder();
  for (int i = 0; i < options_.num_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void DataLoader::start_epoch(int64_t epoch, std::vector<int64_t> indices, int64_t first_batch) {
  auto next = std::make_shared<Epoch>();
  next->epoch = epoch;
  next->indices = std::move(indices);
  const int64_t n = static_cast<int64_t>(next->indices.size());
  next->num_batches = options_.drop_last ? n / options_.batch_size
                                         : (n + options_.batch_size - 1) / options_.batch_size;
  TVIT_CHECK(first_batch >= 0 && first_batch <= next->num_batches, "data loader: first batch ",
             first_batch, " is outside the epoch's ", next->num_batches, " batches");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    next->id = epoch_ ? epoch_->id + 1 : 1;
    epoch_ = std::move(next);
    next_build_ = next_return_ = first_batch;
    ready_.clear();
    error_ = nullptr;
  }
  work_cv_.notify_all();
}

int64_t DataLoader::num_batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return epoch_ ? epoch_->num_batches : 0;
}

Batch DataLoader::build(const Epoch& epoch, int64_t number) {
  const int64_t n = static_cast<int64_t>(epoch.indices.size());
  const int64_t begin = number * options_.batch_size;
  const int64_t end = std::min(n, begin + options_.batch_size);
  const int64_t rows = end - begin, c = transform_.channels, s = transform_.size;
  Batch batch;
  batch.number = number;
  batch.images = at::empty(
      {rows, c, s, s}, at::TensorOptions().dtype(at::kFloat).pinned_memory(options_.pin_memory));
  batch.labels = at::empty({rows}, at::kLong);
  float* images = batch.images.data_ptr<float>();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t position = begin + r;
    const auto base_rng = sample_rng(
        options_.seed, epoch.epoch, options_.position_offset + options_.position_stride * position);
    float* dst = images + r * c * s * s;
    bool done = false;
    int64_t index = -1;
    for (int64_t k = 0; k < n && !done; ++k) {  // replace unreadable samples, deterministically
      index = epoch.indices[(position + k) % n];
      auto rng = base_rng;  // every try starts from the position's own stream
      if (part_decoder_ != nullptr) {
        auto part = part_decoder_->get_part(
            index, [&](int height, int width) { return transform_.crop_box(height, width, rng); });
        if (part) {
          transform_.apply_cropped(part->sample.image, part->box, rng, dst);
          labels[r] = part->sample.label;
          done = true;
        }
      } else {
        auto sample = reducer_ ? reducer_->get_reduced(index, transform_.decode_min_side)
                               : dataset_->get(index);
        if (sample) {
          transform_.apply(sample->image, rng, dst);
          labels[r] = sample->label;
          done = true;
        }
      }
      if (!done) {
        ++skipped_;
        TVIT_CHECK(options_.skip_corrupt, "data loader: sample ", index,
                   " is unreadable (set data.skip_corrupt to skip such files)");
      }
    }
    TVIT_CHECK(done, "data loader: no readable sample in the epoch");
    batch.indices.push_back(index);
  }
  return batch;
}

void DataLoader::worker_loop() {
  while (true) {
    std::shared_ptr<const Epoch> epoch;
    int64_t number = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] {
        return stop_ || (epoch_ && !error_ && next_build_ < epoch_->num_batches &&
                         next_build_ < next_return_ + ahead_);
      });
      if (stop_) return;
      epoch = epoch_;
      number = next_build_++;
    }
    Batch batch;
    std::exception_ptr error;
    try {
      batch = build(*epoch, number);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (epoch_ != epoch) continue;  // a new epoch started meanwhile
      if (error) {
        if (!error_) error_ = error;
      } else {
        ready_.emplace(number, std::move(batch));
      }
    }
    ready_cv_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  TVIT_CHECK(epoch_ != nullptr, "data loader: start_epoch() was not called");
  if (next_return_ >= epoch_->num_batches) return std::nullopt;
  if (workers_.empty()) {
    const auto epoch = epoch_;
    const int64_t number = next_return_++;
    lock.unlock();
    return build(*epoch, number);
  }
  ready_cv_.wait(lock, [&] { return error_ || ready_.count(next_return_); });
  if (error_) std::rethrow_exception(error_);
  auto node = ready_.extract(next_return_++);
  lock.unlock();
  work_cv_.notify_all();
  return std::move(node.mapped());
}

}  // namespace thinkingvit::data
