#include <gtest/gtest.h>

#include <torch/torch.h>
#include <cmath>

#include <set>

#include "../test_util.h"
#include "thinkingvit/train/recipe.h"

namespace thinkingvit::testing {

TEST(Recipe, SwinScheduleStartsTheCosineAfterItsWarmup) {
  // args_swin.yaml: lr 1e-3 (5e-4 x 1024 / 512), 20 warm-up epochs from 5e-7 before a 300-epoch
  // cosine to 5e-6, 310 epochs run.
  train::ScheduleSection s;
  s.epochs = 300;
  s.warmup_epochs = 20;
  s.warmup_lr = 5e-7;
  s.min_lr = 5e-6;
  s.warmup_prefix = true;
  const double lr = 1e-3;
  EXPECT_DOUBLE_EQ(train::learning_rate(s, lr, 0.0), 5e-7);
  EXPECT_DOUBLE_EQ(train::learning_rate(s, lr, 10.0), 5e-7 + 10.0 * (lr - 5e-7) / 20.0);
  EXPECT_DOUBLE_EQ(train::learning_rate(s, lr, 20.0), lr);  // the cosine's start
  const double last = 5e-6 + 0.5 * (lr - 5e-6) * (1.0 + std::cos(M_PI * 289.0 / 300.0));
  EXPECT_DOUBLE_EQ(train::learning_rate(s, lr, 309.0), last);
  EXPECT_NEAR(last, 8.3e-6, 1e-7);  // the last epoch never reaches min_lr
}

TEST(Recipe, LearningRateScheduleMatchesTheReleasedValues) {
  train::ScheduleSection s;  // 300 epochs, 5 warm-up from 1e-6, min 1e-5
  const double lr = 1e-3;
  EXPECT_DOUBLE_EQ(train::learning_rate(s, lr, 0.0), 1e-6);
  EXPECT_NEAR(train::learning_rate(s, lr, 1.0), 2.008e-4, 1e-12);
  EXPECT_NEAR(train::learning_rate(s, lr, 5.0),
              1e-5 + 0.5 * (lr - 1e-5) * (1 + std::cos(M_PI * 5 / 300)), 1e-15);
  EXPECT_DOUBLE_EQ(train::learning_rate(s, lr, 300.0), 1e-5);  // cool-down
  EXPECT_DOUBLE_EQ(train::learning_rate(s, lr, 309.0), 1e-5);
  EXPECT_NEAR(train::learning_rate(s, lr, 299.999), 1e-5, 1e-9);
  train::OptimizerSection o;  // lr 5e-4 per 512 images
  EXPECT_DOUBLE_EQ(train::effective_lr(o, 1024), 1e-3);
  EXPECT_DOUBLE_EQ(o.lr, 5e-4);  // the base value is kept
}

TEST(Recipe, EveryParameterInExactlyOneGroupChosenByName) {
  auto model = tiny_model({1, 2});
  const auto groups = train::split_param_groups(*model);
  std::set<std::string> decay(groups.decay.begin(), groups.decay.end());
  std::set<std::string> no_decay(groups.no_decay.begin(), groups.no_decay.end());
  size_t n = 0;
  for (const auto& item : model->named_parameters()) {
    EXPECT_NE(decay.count(item.key()), no_decay.count(item.key())) << item.key();
    ++n;
  }
  EXPECT_EQ(decay.size() + no_decay.size(), n);
  for (const auto* name :
       {"pos_embed", "cls_token", "alpha.0", "blocks.0.attn.qkv.bias", "norm.weight",
        "blocks.1.norm2.weight", "proj_layer.bias", "head.bias"}) {
    EXPECT_TRUE(no_decay.count(name)) << name;
  }
  for (const auto* name : {"blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.weight", "head.weight",
                           "proj_layer.weight", "patch_embed.proj.weight"}) {
    EXPECT_TRUE(decay.count(name)) << name;
  }
  auto optimizer = train::make_optimizer(*model, train::OptimizerSection{}, 1e-3);
  ASSERT_EQ(optimizer->param_groups().size(), 2u);
  EXPECT_EQ(optimizer->param_groups()[0].params().size(), decay.size());
  train::set_learning_rate(*optimizer, 0.25);
  EXPECT_DOUBLE_EQ(
      static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[1].options()).lr(), 0.25);
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(optimizer->param_groups()[1].options())
                       .weight_decay(),
                   0.0);
}

TEST(Recipe, SoftTargetCrossEntropyAndStageWeights) {
  auto logits = torch::tensor({{2.0f, 0.0f, -1.0f}, {0.5f, 0.5f, 0.5f}});
  auto targets = torch::tensor({{1.0f, 0.0f, 0.0f}, {0.2f, 0.3f, 0.5f}});
  const double lse0 = std::log(std::exp(2.0) + 1.0 + std::exp(-1.0));
  const double expected = 0.5 * ((lse0 - 2.0) + std::log(3.0));
  EXPECT_NEAR(train::soft_target_cross_entropy(logits, targets).item<double>(), expected, 1e-6);
  EXPECT_EQ(train::stage_loss_weights({}, 2), (std::vector<double>{0.5, 0.5}));
  train::LossSection loss;
  loss.stage_weights = {1.0};
  expect_error([&] { train::stage_loss_weights(loss, 2); }, {"loss.stage_weights", "expected 2"});
}

// The step's loss: sum of weight[s] * CE(stage s) over the chosen stages; with recycling the
// stages between run too (each fed its predecessor's tokens), without they do not.
TEST(Recipe, MultiStageLossWeighsTheChosenStages) {
  for (const bool recycling : {true, false}) {
    auto options = tiny_options({1, 2, 3});
    options.recycling(recycling);
    models::ThinkingViT model(options);
    randomize(model, /*seed=*/5);
    torch::manual_seed(2);
    const auto images = torch::randn({4, 3, 8, 8});
    const auto targets = torch::softmax(torch::randn({4, options.num_classes()}), 1);
    const std::vector<double> weights = {0.2, 0.3, 0.5};
    const auto loss = train::multi_stage_loss(*model, images, targets, {0, 2}, weights);
    ASSERT_EQ(loss.stages.size(), 2u);
    // The reference: stage by stage, tokens recycled as forward_all does.
    at::Tensor tokens;
    std::vector<at::Tensor> ce;
    for (int64_t s = 0; s < 3; ++s) {
      const auto out = model->forward_stage(s, images, recycling ? tokens : at::Tensor());
      tokens = out.tokens;
      ce.push_back(train::soft_target_cross_entropy(out.logits, targets));
    }
    EXPECT_NEAR(loss.stages[0].item<double>(), ce[0].item<double>(), 1e-6) << recycling;
    EXPECT_NEAR(loss.stages[1].item<double>(), ce[2].item<double>(), 1e-6) << recycling;
    const double expected = 0.2 * ce[0].item<double>() + 0.5 * ce[2].item<double>();
    EXPECT_NEAR(loss.total.item<double>(), expected, 1e-6 * expected) << recycling;
    EXPECT_TRUE(loss.total.requires_grad());
    EXPECT_FALSE(loss.stages[0].requires_grad());
  }
}

TEST(Recipe, ClipGradNormScalesAsLibTorchDoesAndSkipsMissingGradients) {
  torch::manual_seed(3);
  std::vector<at::Tensor> a, b;
  for (const auto& shape : std::vector<std::vector<int64_t>>{{4, 3}, {5}, {2, 2, 2}, {7}}) {
    a.push_back(torch::randn(shape).requires_grad_());
    b.push_back(a.back().detach().clone().requires_grad_());
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (i == 2) continue;  // a parameter without a gradient
    a[i].mutable_grad() = torch::randn(a[i].sizes()) * (1.0 + static_cast<double>(i));
    b[i].mutable_grad() = a[i].grad().clone();
  }
  double squares = 0;
  for (const auto& p : a) {
    if (p.grad().defined()) squares += p.grad().pow(2).sum().item<double>();
  }
  for (const double max_norm : {0.5, 1e6}) {  // clipped, and left as it is
    const auto norm = train::clip_grad_norm(a, max_norm);
    const double expected = torch::nn::utils::clip_grad_norm_(b, max_norm);
    EXPECT_NEAR(norm.item<double>(), expected, 1e-5 * expected);
    if (max_norm < 1) {
      EXPECT_NEAR(expected, std::sqrt(squares), 1e-5 * expected);
    }
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].grad().defined(), i != 2);
      if (i != 2) {
        EXPECT_TRUE(close_scaled(a[i].grad(), b[i].grad(), 1e-6)) << i;
      }
    }
  }
  double clipped = 0;
  for (const auto& p : a) {
    if (p.grad().defined()) clipped += p.grad().pow(2).sum().item<double>();
  }
  EXPECT_NEAR(std::sqrt(clipped), 0.5, 1e-5);
  EXPECT_FALSE(train::clip_grad_norm({torch::zeros({2}).requires_grad_()}, 1.0).defined());
}

TEST(Recipe, StageSampling) {
  std::mt19937_64 rng(1);
  train::SamplingSection s;
  EXPECT_EQ(train::sample_stages(s, 3, rng), (std::vector<int64_t>{0, 1, 2}));
  s.mode = "sandwich";
  EXPECT_EQ(train::sample_stages(s, 4, rng), (std::vector<int64_t>{0, 3}));
  s.sandwich_k = 1;
  for (int i = 0; i < 20; ++i) {
    auto st = train::sample_stages(s, 4, rng);
    ASSERT_EQ(st.size(), 3u);
    EXPECT_EQ(st.front(), 0);
    EXPECT_EQ(st.back(), 3);
  }
  s.mode = "stochastic";
  s.weights = {0.0, 1.0, 0.0};
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(train::sample_stages(s, 3, rng), (std::vector<int64_t>{1}));
}

TEST(Recipe, EmaArithmetic) {
  auto model = tiny_model({1, 2});
  train::ModelEma ema(*model, 0.9);
  const auto before = ema.module().named_parameters()["head.weight"].clone();
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["head.weight"].add_(1.0);
  }
  ema.update(*model);
  const auto expected = before * 0.9 + model->named_parameters()["head.weight"] * 0.1;
  EXPECT_TRUE(
      torch::allclose(ema.module().named_parameters()["head.weight"], expected, 1e-6, 1e-6));
  EXPECT_FALSE(ema.module().named_parameters()["head.weight"].requires_grad());
  expect_error([&] { train::ModelEma(*model, 1.5); }, {"ema.decay"});
}

}  // namespace thinkingvit::testing

namespace thinkingvit::testing {

// The fused AdamW takes LibTorch's AdamW steps: two groups (decayed or not), a parameter a step
// did not use (no gradient: no update, no decay), with and without amsgrad; and its state is
// AdamW's, so each loads the other's saved state and continues identically.
TEST(Recipe, FusedAdamWStepsAsAdamW) {
  for (const bool amsgrad : {false, true}) {
    torch::manual_seed(5);
    const std::vector<at::Tensor> init = {torch::randn({7, 5}), torch::randn({5}),
                                          torch::randn({3, 2, 2}), torch::randn({4})};
    auto make = [&](auto tag) {
      using Optimizer = typename decltype(tag)::type;
      std::vector<at::Tensor> params;
      for (const auto& t : init) params.push_back(t.clone().requires_grad_());
      auto options = [&](double wd) {
        return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(3e-2)
                                                                .betas({0.8, 0.95})
                                                                .eps(1e-7)
                                                                .weight_decay(wd)
                                                                .amsgrad(amsgrad));
      };
      std::vector<torch::optim::OptimizerParamGroup> groups;
      groups.emplace_back(std::vector<at::Tensor>{params[0], params[2]}, options(0.1));
      groups.emplace_back(std::vector<at::Tensor>{params[1], params[3]}, options(0.0));
      return std::make_pair(params, std::make_unique<Optimizer>(groups));
    };
    auto [a, reference] = make(std::common_type<torch::optim::AdamW>());
    auto [b, fused] = make(std::common_type<train::FusedAdamW>());
    auto run_steps = [](std::vector<at::Tensor>& p, torch::optim::Optimizer& opt, int first,
                        int count) {
      for (int s = first; s < first + count; ++s) {
        opt.zero_grad();
        // Parameter 3 is unused on even steps.
        auto loss = (p[0].sin() * (s + 1)).sum() + p[1].pow(2).sum() + p[2].tanh().sum();
        if (s % 2) loss = loss + (p[3] * p[3].exp()).sum();
        loss.backward();
        opt.step();
      }
    };
    run_steps(a, *reference, 0, 5);
    run_steps(b, *fused, 0, 5);
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(close_scaled(b[i], a[i], 1e-5)) << "amsgrad " << amsgrad << " param " << i;
      EXPECT_FALSE(torch::equal(a[i], init[i])) << i;
    }
    // Saved by one, loaded by the other: the next steps agree too.
    std::stringstream fused_state, reference_state;
    torch::save(*fused, fused_state);
    torch::save(*reference, reference_state);
    torch::load(*reference, fused_state);
    torch::load(*fused, reference_state);
    run_steps(a, *reference, 5, 3);
    run_steps(b, *fused, 5, 3);
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(close_scaled(b[i], a[i], 1e-5)) << "after the swap, param " << i;
  }
}

}  // namespace thinkingvit::testing
