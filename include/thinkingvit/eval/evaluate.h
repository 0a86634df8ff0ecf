#pragma once
// One pass over a dataset that records, for every sample and stage, what a threshold sweep
// needs: the prediction, whether it is right (top-1, top-5) and the entropy. Per-stage accuracy
// (each stage alone, as the nested baselines are reported) follows from the same records.

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "thinkingvit/data/loader.h"
#include "thinkingvit/models/elastic_model.h"

namespace thinkingvit::eval {

struct StageRecords {
  int64_t num_samples = 0;
  at::Tensor correct1;             // S x N bool
  at::Tensor correct5;             // S x N bool
  at::Tensor entropy;              // S x N float32
  at::Tensor labels;               // N int64
  std::vector<double> top1, top5;  // per stage, percent
};

// Runs every stage on every batch of `loader` (an epoch must have been started) in eval mode,
// under bf16 autocast when `bf16`. `progress(done, total)` is called after each batch, and
// `on_batch(images)` with each batch's images on `device` (sweep keeps some for timing). The
// model keeps its training mode, and no inference weight cache unless it held one already.
StageRecords evaluate(models::ElasticModel& model, data::DataLoader& loader,
                      models::EntropyRule rule, const c10::Device& device, bool bf16 = false,
                      const std::function<void(int64_t, int64_t)>& progress = {},
                      const std::function<void(const at::Tensor&)>& on_batch = {});

// Builds records from per-stage logits (S tensors of N x K) and labels; used by evaluate and
// by tests that feed generated logits.
StageRecords records_from_logits(const std::vector<at::Tensor>& logits, const at::Tensor& labels,
                                 models::EntropyRule rule);
// Sets records.top1 / top5 (percent per stage) from correct1 / correct5 and num_samples.
void set_accuracy(StageRecords& records);

}  // namespace thinkingvit::eval
