#include "thinkingvit/train/recipe.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "thinkingvit/util/async_copy.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::train {

double effective_lr(const OptimizerSection& o, int64_t global_batch) {
  return o.lr * static_cast<double>(global_batch) / o.lr_base_batch;
}

double learning_rate(const ScheduleSection& s, double lr, double t) {
  if (t < s.warmup_epochs) {
    return s.warmup_lr + t * (lr - s.warmup_lr) / s.warmup_epochs;
  }
  if (s.warmup_prefix) t -= s.warmup_epochs;
  if (t >= static_cast<double>(s.epochs)) return s.min_lr;  // cool-down
  return s.min_lr +
         0.5 * (lr - s.min_lr) * (1.0 + std::cos(M_PI * t / static_cast<double>(s.epochs)));
}

ParamGroups split_param_groups(const models::ElasticModel& model) {
  ParamGroups groups;
  for (const auto& item : model.named_parameters()) {
    (model.decays(item.key(), item.value()) ? groups.decay : groups.no_decay).push_back(item.key());
  }
  return groups;
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(models::ElasticModel& model,
                                                    const OptimizerSection& o, double lr) {
  std::vector<at::Tensor> decay, no_decay;
  for (auto& item : model.named_parameters()) {
    (model.decays(item.key(), item.value()) ? decay : no_decay).push_back(item.value());
  }
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::AdamWOptions>(
        torch::optim::AdamWOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(o.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  return std::make_unique<FusedAdamW>(groups, torch::optim::AdamWOptions(lr));
}

at::Tensor FusedAdamW::step(LossClosure closure) {
  at::NoGradGuard no_grad;
  at::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs;
    std::vector<float> steps;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;  // as PyTorch: no gradient, no update, no decay
      TVIT_CHECK(!p.grad().is_sparse(), "AdamW does not support sparse gradients");
      TVIT_CHECK(params.empty() || (p.device() == params.front().device() &&
                                    p.scalar_type() == params.front().scalar_type()),
                 "FusedAdamW: a parameter group mixes devices or dtypes (",
                 params.front().toString(), " and ", p.toString(), ")");
      auto& slot = state_[p.unsafeGetTensorImpl()];
      if (!slot) {
        auto state = std::make_unique<torch::optim::AdamWParamState>();
        state->step(0);
        state->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        state->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        if (o.amsgrad()) state->max_exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        slot = std::move(state);
      }
      auto& state = static_cast<torch::optim::AdamWParamState&>(*slot);
      state.step(state.step() + 1);
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(state.exp_avg());
      exp_avg_sqs.push_back(state.exp_avg_sq());
      if (o.amsgrad()) max_exp_avg_sqs.push_back(state.max_exp_avg_sq());
      steps.push_back(static_cast<float>(state.step()));
    }
    if (params.empty()) continue;
    // Every step count in one tensor (one copy to the device, without waiting for the GPU),
    // handed over as 0-d views.
    const auto step_tensor =
        compat::to_device_async(at::tensor(steps, at::kFloat), params.front().device());
    const auto state_steps = step_tensor.unbind(0);
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, o.lr(),
                      std::get<0>(o.betas()), std::get<1>(o.betas()), o.weight_decay(), o.eps(),
                      o.amsgrad(), /*maximize=*/false);
  }
  return loss;
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  }
}

at::Tensor clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return {};
  const auto norms = at::_foreach_norm(grads, 2);
  const auto dtype = at::promote_types(norms.front().scalar_type(), at::kFloat);
  auto total = at::linalg_vector_norm(at::stack(norms).to(dtype), 2);
  const auto coefficient = (max_norm / (total + 1e-6)).clamp_max(1.0);
  at::_foreach_mul_(grads, coefficient);
  return total;
}

at::Tensor soft_target_cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  return (-targets * at::log_softmax(logits.to(at::kFloat), /*dim=*/-1)).sum(/*dim=*/-1).mean();
}

std::vector<double> stage_loss_weights(const LossSection& loss, int64_t num_stages) {
  if (loss.stage_weights.empty()) return std::vector<double>(num_stages, 1.0 / num_stages);
  TVIT_CHECK(static_cast<int64_t>(loss.stage_weights.size()) == num_stages,
             "loss.stage_weights: expected ", num_stages, " weights (one per stage), found ",
             loss.stage_weights.size());
  return loss.stage_weights;
}

StepLoss multi_stage_loss(models::ElasticModel& model, const at::Tensor& images,
                          const at::Tensor& targets, const std::vector<int64_t>& stages,
                          const std::vector<double>& weights) {
  TVIT_CHECK(!stages.empty(), "training step: no stage chosen");
  StepLoss loss;
  loss.total = torch::zeros({}, torch::TensorOptions().device(images.device()));
  const bool recycling = model.model_options().recycling();
  at::Tensor tokens;
  size_t next = 0;
  for (int64_t s = 0; s <= stages.back(); ++s) {
    const bool chosen = stages[next] == s;
    if (!chosen && !recycling) continue;
    auto out = model.forward_stage(s, images, tokens);
    tokens = out.tokens;
    if (!chosen) continue;
    ++next;
    auto stage_loss = soft_target_cross_entropy(out.logits, targets);
    loss.stages.push_back(stage_loss.detach());
    loss.total = loss.total + weights[s] * stage_loss;
  }
  return loss;
}

std::vector<int64_t> sample_stages(const SamplingSection& s, int64_t n, std::mt19937_64& rng) {
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  if (s.mode == "all" || n == 1) return all;
  if (s.mode == "stochastic") {
    if (s.weights.empty()) return {std::uniform_int_distribution<int64_t>(0, n - 1)(rng)};
    std::discrete_distribution<int64_t> pick(s.weights.begin(), s.weights.end());
    return {pick(rng)};
  }
  TVIT_CHECK(s.mode == "sandwich", "sampling.mode: expected all, sandwich or stochastic, found '",
             s.mode, "'");
  std::vector<int64_t> middle(all.begin() + 1, all.end() - 1);
  std::shuffle(middle.begin(), middle.end(), rng);
  std::vector<int64_t> chosen = {0, n - 1};
  for (int i = 0; i < s.sandwich_k && i < static_cast<int>(middle.size()); ++i)
    chosen.push_back(middle[i]);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

ModelEma::ModelEma(const models::ElasticModel& model, double decay) : decay_(decay) {
  TVIT_CHECK(decay > 0 && decay < 1, "ema.decay: expected a value in (0, 1), found ", decay);
  // A fresh model and a copy of the weights: LibTorch cannot clone() a ParameterList.
  ema_ = models::make_model(model.model_options());
  torch::NoGradGuard no_grad;
  auto src = model.named_parameters();
  for (auto& item : ema_->named_parameters()) item.value().copy_(src[item.key()]);
  auto src_buffers = model.named_buffers();
  for (auto& item : ema_->named_buffers()) item.value().copy_(src_buffers[item.key()]);
  const auto device = src.size() > 0 ? src.begin()->value().device() : c10::Device(c10::kCPU);
  ema_->to(device);
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
  ema_->eval();
}

void ModelEma::update(const models::ElasticModel& model) {
  torch::NoGradGuard no_grad;
  // Multi-tensor kernels: a handful of launches per step on a GPU instead of two per tensor.
  std::vector<at::Tensor> mine, theirs;
  auto src = model.named_parameters();
  for (auto& item : ema_->named_parameters()) {
    mine.push_back(item.value());
    theirs.push_back(src[item.key()].detach());
  }
  auto src_buffers = model.named_buffers();
  for (auto& item : ema_->named_buffers()) {
    if (at::isFloatingType(item.value().scalar_type())) {
      mine.push_back(item.value());
      theirs.push_back(src_buffers[item.key()]);
    } else {
      item.value().copy_(src_buffers[item.key()]);
    }
  }
  if (mine.empty()) return;
  at::_foreach_mul_(mine, decay_);
  at::_foreach_add_(mine, theirs, 1.0 - decay_);
}

}  // namespace thinkingvit::train
