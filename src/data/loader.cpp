#include "thinkingvit/data/loader.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "thinkingvit/util/async_copy.h"
#include "thinkingvit/util/device.h"
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
  if (options_.uint8_batches) {
    const auto& mean = transform_.mean;
    const auto& std = transform_.std;
    TVIT_CHECK(static_cast<int>(mean.size()) == transform_.channels &&
                   static_cast<int>(std.size()) == transform_.channels,
               "data loader: uint8 batches need the transform's ", transform_.channels,
               " mean and std values, found ", mean.size(), " and ", std.size());
    scale_ = at::empty({transform_.channels}, at::kFloat);
    bias_ = at::empty({transform_.channels}, at::kFloat);
    for (int ch = 0; ch < transform_.channels; ++ch) {  // as write_normalized computes them
      scale_[ch] = 1.0f / (255.0f * std[ch]);
      bias_[ch] = -mean[ch] / std[ch];
    }
  }
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
  const bool planar = options_.uint8_batches;
  const auto pinned = at::TensorOptions().pinned_memory(options_.pin_memory);
  batch.images = at::empty({rows, c, s, s}, pinned.dtype(planar ? at::kByte : at::kFloat));
  batch.labels = at::empty({rows}, at::kLong);
  std::vector<ErasedBox> erased(planar ? rows : 0);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t position = begin + r;
    const auto base_rng = sample_rng(
        options_.seed, epoch.epoch, options_.position_offset + options_.position_stride * position);
    const auto out = [&] {
      if (!planar) return SampleOut(batch.images.data_ptr<float>() + r * c * s * s);
      erased[r] = ErasedBox{};
      return SampleOut(batch.images.data_ptr<uint8_t>() + r * c * s * s, &erased[r]);
    };
    bool done = false;
    int64_t index = -1;
    for (int64_t k = 0; k < n && !done; ++k) {  // replace unreadable samples, deterministically
      index = epoch.indices[(position + k) % n];
      auto rng = base_rng;  // every try starts from the position's own stream
      if (part_decoder_ != nullptr) {
        auto part = part_decoder_->get_part(
            index, [&](int height, int width) { return transform_.crop_box(height, width, rng); });
        if (part) {
          transform_.apply_cropped(part->sample.image, part->box, rng, out());
          labels[r] = part->sample.label;
          done = true;
        }
      } else {
        auto sample = reducer_ ? reducer_->get_reduced(index, transform_.decode_min_side)
                               : dataset_->get(index);
        if (sample) {
          transform_.apply(sample->image, rng, out());
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
  if (planar) {
    batch.scale = scale_;
    batch.bias = bias_;
    size_t values = 0;
    for (const auto& e : erased) values += e.noise.size();
    if (values > 0) {
      batch.erase_boxes = at::empty({rows, 4}, pinned.dtype(at::kLong));
      batch.erase_noise = at::empty({static_cast<int64_t>(values)}, pinned.dtype(at::kFloat));
      int64_t* box = batch.erase_boxes.data_ptr<int64_t>();
      float* noise = batch.erase_noise.data_ptr<float>();
      for (const auto& e : erased) {
        const auto& b = e.box;
        *box++ = b.top;
        *box++ = b.left;
        *box++ = e.noise.empty() ? 0 : b.height;
        *box++ = b.width;
        noise = std::copy(e.noise.begin(), e.noise.end(), noise);
      }
    }
  }
  return batch;
}

BatchUpload::BatchUpload(const Batch& batch, const c10::Device& device)
    : images_(batch.images, device) {
  finish_ = batch.images.scalar_type() == at::kByte;
  if (!finish_) return;
  TVIT_CHECK(batch.scale.defined() && batch.bias.defined(),
             "batch upload: a uint8 batch without its normalisation");
  scale_ = compat::to_device_async(batch.scale, device);
  bias_ = compat::to_device_async(batch.bias, device);
  if (batch.erase_noise.defined()) {
    boxes_ = compat::Upload(batch.erase_boxes, device);
    noise_ = compat::Upload(batch.erase_noise, device);
  }
}

at::Tensor BatchUpload::take() {
  auto x = images_.take();
  if (!finish_) return x;
  const int64_t c = x.size(1), s = x.size(2);
  // Two roundings, as write_normalized: pixel * scale, then + bias.
  auto images = x.to(at::kFloat).mul_(scale_.view({1, c, 1, 1})).add_(bias_.view({1, c, 1, 1}));
  auto noise = noise_.take();
  if (noise.defined()) {  // the boxes' pixels, in B x C x S x S order, are the noise's values
    const auto boxes = boxes_.take();
    const auto pos = at::arange(s, boxes.options()).unsqueeze(0);  // 1 x S
    const auto inside = [&](int64_t start, int64_t length) {       // B x S
      const auto from = boxes.select(1, start).unsqueeze(1);
      return (pos >= from) & (pos < from + boxes.select(1, length).unsqueeze(1));
    };
    const auto rows = inside(0, 2), cols = inside(1, 3);
    images.masked_scatter_((rows.unsqueeze(2) & cols.unsqueeze(1)).unsqueeze(1), noise);
  }
  return images;
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
