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
