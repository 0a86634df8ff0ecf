#pragma once
// A multi-threaded batch loader: worker threads decode and transform samples straight into
// the batch tensor, a bounded queue holds finished batches, batches come out in order.
// Each sample's randomness derives from (seed, epoch, position in the epoch), so batches are
// identical for any number of workers.

#include <ATen/core/Tensor.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "thinkingvit/data/dataset.h"
#include "thinkingvit/data/transforms.h"
#include "thinkingvit/util/async_copy.h"

namespace thinkingvit::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  int num_workers = 2;  // 0: build batches on the calling thread
  // Finished or in-flight batches ahead of the consumer; never fewer than num_workers, so that
  // every worker always has a batch to build.
  int prefetch_batches = 4;
  bool drop_last = false;
  bool pin_memory = false;  // page-locked batches for asynchronous host-to-GPU copies
  // Batches of uint8 pixels, normalised (and random erasing's boxes filled) where BatchUpload
  // takes them: a quarter of the bytes to copy, and the float work on the GPU (timm's
  // PrefetchLoader). The images equal the float batches' (same boxes, same noise).
  bool uint8_batches = false;
  bool skip_corrupt = true;  // false: an unreadable sample is an error
  uint64_t seed = 0;
  // Local position p of an epoch draws its randomness from global position
  // position_offset + position_stride * p. Rank r of W (rank::W sharding): offset r, stride W,
  // so that every sample is augmented as a single process with the global batch would do.
  int64_t position_offset = 0;
  int64_t position_stride = 1;
  // Image folders: decode JPEGs at 1/2, 1/4 or 1/8 scale when the transform's
  // decode_min_side allows (eval: about 2x faster; pixels differ slightly from a full decode).
  bool reduced_decode = false;
};

struct Batch {
  at::Tensor images;             // B x C x S x S float32, or uint8 pixels (uint8_batches)
  at::Tensor labels;             // B int64
  std::vector<int64_t> indices;  // dataset index of each row (after replacements)
  int64_t number = 0;            // position in the epoch
  // uint8 batches only: per channel, the normalised value is pixel * scale + bias; random
  // erasing's boxes (B x 4 int64: top, left, height, width; height 0: none) and their noise, the
  // boxes' values one after the other in B x C x S x S order (float32).
  at::Tensor scale, bias;
  at::Tensor erase_boxes, erase_noise;
};

// A batch's copy to `device`, started at construction (compat::Upload, pinned buffers copy
// asynchronously); take() returns the B x C x S x S float32 images there: a uint8 batch
// normalised and erased on the device, a float batch as it is.
class BatchUpload {
 public:
  BatchUpload() = default;
  BatchUpload(const Batch& batch, const c10::Device& device);
  at::Tensor take();

 private:
  compat::Upload images_, boxes_, noise_;
  at::Tensor scale_, bias_;
  bool finish_ = false;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, SampleTransform transform,
             LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts an epoch over `indices` (from a sampler) at batch `first_batch` (a resumed epoch:
  // the batches from there are those of the whole epoch); batches of a previous epoch not yet
  // taken are dropped.
  void start_epoch(int64_t epoch, std::vector<int64_t> indices, int64_t first_batch = 0);
  // The next batch in order, or nullopt at the end of the epoch. Rethrows worker errors.
  std::optional<Batch> next();
  int64_t num_batches() const;
  // Unreadable samples met so far (each replaced by the next readable one in the epoch).
  int64_t skipped() const { return skipped_.load(); }

 private:
  struct Epoch {
    int64_t id = 0;
    int64_t epoch = 0;
    std::vector<int64_t> indices;
    int64_t num_batches = 0;
  };
  Batch build(const Epoch& epoch, int64_t number);
  void worker_loop();

  std::shared_ptr<const Dataset> dataset_;
  const PartialDecoder* reducer_ = nullptr;       // set when reduced decoding applies
  const PartialDecoder* part_decoder_ = nullptr;  // set when the transform crops first
  SampleTransform transform_;
  LoaderOptions options_;
  at::Tensor scale_, bias_;  // uint8 batches: the normalisation, per channel
  std::atomic<int64_t> skipped_{0};

  mutable std::mutex mutex_;
  std::condition_variable work_cv_, ready_cv_;
  std::shared_ptr<const Epoch> epoch_;
  int64_t next_build_ = 0, next_return_ = 0;
  int64_t ahead_ = 1;  // max(prefetch_batches, num_workers)
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace thinkingvit::data
