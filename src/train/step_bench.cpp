#include "thinkingvit/train/step_bench.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <memory>
#include <numeric>

#include "thinkingvit/data/mixing.h"
#include "thinkingvit/train/recipe.h"
#include "thinkingvit/util/async_copy.h"

namespace thinkingvit::train {

namespace {

// Training steps on one case's images; the weights and mode are put back when this goes.
class TrainingSteps {
 public:
  TrainingSteps(models::ElasticModel& model, TrainConfig recipe, const at::Tensor& images)
      : model_(model), recipe_(std::move(recipe)), images_(images) {
    const torch::AutoGradMode grad(true);
    for (const auto& p : model.parameters()) saved_.push_back(p.detach().clone());
    model.train();
    const auto& o = model.model_options();
    optimizer_ =
        make_optimizer(model, recipe.optimizer, effective_lr(recipe.optimizer, images.size(0)));
    labels_ = torch::randint(o.num_classes(), {images.size(0)}, at::kLong);
    stages_.resize(o.num_stages());
    std::iota(stages_.begin(), stages_.end(), 0);
    weights_ = stage_loss_weights(recipe.loss, o.num_stages());
    for (const auto& p : model.parameters()) params_.push_back(p);
  }
  ~TrainingSteps() {
    model_.eval();
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) params_[i].detach().copy_(saved_[i]);
  }
  TrainingSteps(const TrainingSteps&) = delete;
  TrainingSteps& operator=(const TrainingSteps&) = delete;

  void step() {
    const torch::AutoGradMode grad(true);
    auto x = images_.clone();  // mixed in place
    const int64_t classes = model_.model_options().num_classes();
    const auto& mixing = recipe_.augment.mix;
    const bool mixes = (mixing.mixup_alpha > 0 || mixing.cutmix_alpha > 0) && x.size(0) % 2 == 0;
    const auto targets = (mixes ? data::mix_batch(x, labels_, classes, mixing, rng_).targets
                                : data::smooth_one_hot(labels_, classes, mixing.label_smoothing));
    const auto on_device = compat::to_device_async(targets, x.device());
    auto loss = multi_stage_loss(model_, x, on_device, stages_, weights_);
    loss.total.backward();
    if (recipe_.optimizer.clip_grad > 0) clip_grad_norm(params_, recipe_.optimizer.clip_grad);
    optimizer_->step();
    optimizer_->zero_grad();
    // As each of the trainer's steps ends its autocast region: the next step casts the updated
    // weights again instead of reusing this step's bf16 copies.
    if (at::autocast::is_autocast_enabled(x.device().type())) at::autocast::clear_cache();
  }

 private:
  models::ElasticModel& model_;
  const TrainConfig recipe_;
  at::Tensor images_, labels_;
  std::vector<at::Tensor> saved_, params_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::vector<int64_t> stages_;
  std::vector<double> weights_;
  data::Rng rng_{0};
};

}  // namespace

eval::ExtraCalls training_step_rows(models::ElasticModel& model, const TrainConfig& recipe) {
  return [&model, recipe](const eval::BenchCase& c) {
    auto steps = std::make_shared<TrainingSteps>(model, recipe, c.images);
    eval::ExtraCall call;
    call.mode = "train";
    call.reach.assign(model.model_options().num_stages(), 1.0);
    call.macs_factor = 3.0;
    call.call = [steps] { steps->step(); };
    return std::vector<eval::ExtraCall>{std::move(call)};
  };
}

}  // namespace thinkingvit::train
