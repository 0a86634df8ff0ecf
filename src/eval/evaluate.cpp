#include "thinkingvit/eval/evaluate.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "thinkingvit/util/async_copy.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::eval {

StageRecords records_from_logits(const std::vector<at::Tensor>& logits, const at::Tensor& labels,
                                 models::EntropyRule rule) {
  TVIT_CHECK(!logits.empty(), "evaluation: no stage logits");
  StageRecords r;
  r.num_samples = labels.size(0);
  r.labels = labels.to(at::kLong).cpu();
  std::vector<at::Tensor> c1, c5, h;
  for (const auto& l : logits) {
    auto cpu = l.to(at::kFloat).cpu();
    const int64_t k = std::min<int64_t>(5, cpu.size(1));
    auto top = std::get<1>(cpu.topk(k, /*dim=*/1));  // N x 5
    auto hit = top.eq(r.labels.view({-1, 1}));       // N x 5
    c1.push_back(hit.select(1, 0));
    c5.push_back(hit.any(1));
    h.push_back(models::entropy(cpu, rule));
  }
  r.correct1 = at::stack(c1);
  r.correct5 = at::stack(c5);
  r.entropy = at::stack(h);
  set_accuracy(r);
  return r;
}

void set_accuracy(StageRecords& r) {
  const double n = std::max<int64_t>(1, r.num_samples);
  r.top1.clear();
  r.top5.clear();
  for (int64_t s = 0; s < r.correct1.size(0); ++s) {
    r.top1.push_back(100.0 * r.correct1[s].sum().item<double>() / n);
    r.top5.push_back(100.0 * r.correct5[s].sum().item<double>() / n);
  }
}

namespace {

// Leaves the model as evaluate() found it, also when a batch throws: in its training mode, and
// without inference weight caches where it had none (else the trainer's validation would keep
// contiguous and bf16 copies of the weights allocated through the next epoch). A model that
// caches nothing keeps its CUDA graphs.
class RestoreModel {
 public:
  explicit RestoreModel(models::ElasticModel& model)
      : model_(model),
        was_training_(model.is_training()),
        had_cache_(model.weight_cache_bytes() > 0) {}
  RestoreModel(const RestoreModel&) = delete;
  RestoreModel& operator=(const RestoreModel&) = delete;
  ~RestoreModel() {
    try {
      if (!had_cache_ && model_.weight_cache_bytes() > 0) model_.release_weight_cache();
      if (was_training_) model_.train();
    } catch (const std::exception& e) {  // a destructor may run while an error unwinds
      spdlog::warn("evaluation: could not restore the model: {}", e.what());
    }
  }

 private:
  models::ElasticModel& model_;
  bool was_training_, had_cache_;
};

}  // namespace

StageRecords evaluate(models::ElasticModel& model, data::DataLoader& loader,
                      models::EntropyRule rule, const c10::Device& device, bool bf16,
                      const std::function<void(int64_t, int64_t)>& progress,
                      const std::function<void(const at::Tensor&)>& on_batch) {
  RestoreModel restore(model);
  model.eval();
  torch::NoGradGuard no_grad;
  compat::AutocastGuard autocast(device.type(), at::kBFloat16, bf16);
  const int64_t num_stages = model.num_stages();
  std::vector<std::vector<at::Tensor>> logits(num_stages);
  std::vector<at::Tensor> labels;
  const int64_t total = loader.num_batches();
  int64_t done = 0;
  // On a GPU the host stays a batch ahead: the next batch's copy overlaps this batch's kernels,
  // and a batch's logits are read back once the next batch's kernels are queued.
  std::vector<compat::Readback> pending;  // the batch before's logits, per stage
  const auto settle = [&] {
    if (pending.empty()) return;
    for (int64_t s = 0; s < num_stages; ++s) logits[s].push_back(pending[s].get());
    pending.clear();
    if (progress) progress(++done, total);
  };
  auto batch = loader.next();
  data::BatchUpload upload;
  if (batch) upload = data::BatchUpload(*batch, device);
  while (batch) {
    const auto images = upload.take();
    auto outputs = model.forward_all(images);
    auto following = loader.next();
    if (following) upload = data::BatchUpload(*following, device);
    settle();
    for (int64_t s = 0; s < num_stages; ++s) pending.emplace_back(outputs[s].logits.to(at::kFloat));
    labels.push_back(batch->labels);
    if (on_batch) on_batch(images);
    batch = std::move(following);
  }
  settle();
  TVIT_CHECK(!labels.empty(), "evaluation: the loader produced no batches");
  std::vector<at::Tensor> stacked;
  for (auto& l : logits) stacked.push_back(at::cat(l));
  return records_from_logits(stacked, at::cat(labels), rule);
}

}  // namespace thinkingvit::eval
