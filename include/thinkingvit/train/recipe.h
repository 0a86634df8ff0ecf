#pragma once
// The pieces of the DeiT recipe a training step uses: learning-rate schedule, AdamW parameter
// groups chosen by name, the weighted multi-stage soft-target loss and the weight EMA.

#include <ATen/core/Tensor.h>
#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <vector>

#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/train/config.h"

namespace thinkingvit::train {

// lr_effective = lr * global_batch / lr_base_batch (the base value is kept as given).
double effective_lr(const OptimizerSection& optimizer, int64_t global_batch);

// Learning rate at (fractional) epoch t: linear warm-up from warmup_lr over warmup_epochs,
// then min_lr + (lr - min_lr)(1 + cos(pi t / epochs)) / 2, then min_lr in the cool-down; with
// warmup_prefix the cosine runs on t - warmup_epochs.
double learning_rate(const ScheduleSection& schedule, double lr, double t);

struct ParamGroups {
  std::vector<std::string> decay, no_decay;  // parameter names
};
// Decayed or not as the model's decays() says (DeiT: no decay for 1-D parameters, biases,
// position embeddings, tokens and recycling gains).
ParamGroups split_param_groups(const models::ElasticModel& model);

// torch::optim::AdamW whose step() updates every parameter of a group in one call of ATen's
// fused AdamW kernel (CPU and CUDA) instead of a dozen tensor operations per parameter, as
// torch.optim.AdamW(fused=True) does. Same maths, same state (saved and loaded as AdamW's);
// parameters without a gradient are skipped; amsgrad is supported. A group's parameters share
// one device and dtype.
class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  at::Tensor step(LossClosure closure = nullptr) override;
};

// FusedAdamW over two groups: decayed parameters and the others (split_param_groups).
std::unique_ptr<torch::optim::AdamW> make_optimizer(models::ElasticModel& model,
                                                    const OptimizerSection& options, double lr);
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// Scales the gradients of `params` so that their global L2 norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_ does (coefficient max_norm / (norm + 1e-6), clamped at 1), in
// a few multi-tensor kernels and without reading the norm back: no device synchronisation
// (LibTorch's clip_grad_norm_ returns a double, so it waits for the GPU every step). Returns the
// norm before clipping, a 0-dim tensor on the gradients' device (undefined without gradients).
at::Tensor clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

// Mean over the batch of sum_c -target_c * log_softmax(logits)_c.
at::Tensor soft_target_cross_entropy(const at::Tensor& logits, const at::Tensor& targets);

// lambda_i: the configured weights, or 1/n each.
std::vector<double> stage_loss_weights(const LossSection& loss, int64_t num_stages);

// A training step's loss: sum over the chosen `stages` (ascending) of weights[s] times the
// soft-target cross-entropy of stage s's logits. With recycling every stage up to the last
// chosen one runs, each fed its predecessor's tokens; without, only the chosen ones.
struct StepLoss {
  at::Tensor total;
  std::vector<at::Tensor> stages;  // each chosen stage's loss, detached
};
StepLoss multi_stage_loss(models::ElasticModel& model, const at::Tensor& images,
                          const at::Tensor& targets, const std::vector<int64_t>& stages,
                          const std::vector<double>& weights);

// Which stages a step trains: all, sandwich (smallest + largest + k random others) or
// stochastic (one, uniform or weighted). Sorted ascending.
std::vector<int64_t> sample_stages(const SamplingSection& sampling, int64_t num_stages,
                                   std::mt19937_64& rng);

// ema = decay * ema + (1 - decay) * model, over every floating parameter and buffer.
class ModelEma {
 public:
  ModelEma(const models::ElasticModel& model, double decay);
  void update(const models::ElasticModel& model);
  models::ElasticModel& module() { return *ema_; }
  double decay() const { return decay_; }

 private:
  std::shared_ptr<models::ElasticModel> ema_;
  double decay_;
};

}  // namespace thinkingvit::train
