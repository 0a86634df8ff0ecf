// Parity with an independent PyTorch implementation of the same maths
// (scripts/make_golden.py, which regenerates tests/fixtures/tiny_*.safetensors).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../test_util.h"
#include "thinkingvit/io/checkpoint.h"

namespace thinkingvit::testing {

class Golden : public ::testing::Test {
 protected:
  void SetUp() override {
    weights_ = io::read_weights(fixture("tiny_weights.safetensors"));
    golden_ = io::read_safetensors(fixture("tiny_golden.safetensors")).tensors;
  }
  models::ThinkingViT load(models::AttentionBackend backend) {
    auto options = io::options_from_state(weights_.tensors, weights_.path, /*head_dim=*/4);
    options.as<models::ThinkingViTOptions>()->attention(backend);
    models::ThinkingViT model(*options.as<models::ThinkingViTOptions>());
    io::LoadOptions strict;
    strict.strict = true;
    io::load_state_dict(*model, weights_.tensors, weights_.path, strict);
    model->eval();
    return model;
  }
  io::WeightsSource weights_;
  io::TensorMap golden_;
};

TEST_F(Golden, EveryStageMatchesTheReference) {
  for (auto backend : {models::AttentionBackend::kFused, models::AttentionBackend::kExplicit,
                       models::AttentionBackend::kSmall}) {
    auto model = load(backend);
    EXPECT_EQ(model->options().stages(), (std::vector<int64_t>{1, 2, 3}));
    torch::NoGradGuard no_grad;
    auto outputs = model->forward_all(golden_.at("images"));
    for (int s = 0; s < 3; ++s) {
      const auto i = std::to_string(s);
      EXPECT_TRUE(torch::allclose(outputs[s].tokens, golden_.at("tokens." + i), 1e-4, 1e-5)) << s;
      EXPECT_TRUE(torch::allclose(outputs[s].logits, golden_.at("logits." + i), 1e-4, 1e-5)) << s;
      EXPECT_TRUE(torch::allclose(models::entropy(outputs[s].logits),
                                  golden_.at("entropy_top10." + i), 1e-5, 1e-5))
          << s;
      EXPECT_TRUE(torch::allclose(models::entropy(outputs[s].logits, models::EntropyRule::kFull),
                                  golden_.at("entropy_full." + i), 1e-5, 1e-5))
          << s;
    }
  }
}

TEST_F(Golden, ElasticInferenceSelectsTheReferenceLogits) {
  auto model = load(models::AttentionBackend::kFused);
  torch::NoGradGuard no_grad;
  const double tau = 1.3;  // the fixture's entropies put samples at every stage
  auto out = model->forward_elastic(golden_.at("images"), tau);
  for (int64_t b = 0; b < 6; ++b) {
    int64_t stage = 0;
    while (stage < 2 &&
           !(golden_.at("entropy_top10." + std::to_string(stage))[b].item<float>() < tau))
      ++stage;
    EXPECT_EQ(out.exit_stage[b].item<int64_t>(), stage) << b;
    EXPECT_TRUE(torch::allclose(out.logits[b], golden_.at("logits." + std::to_string(stage))[b],
                                1e-4, 1e-5));
  }
  EXPECT_GT(out.samples_per_stage[2], 0);
  EXPECT_LT(out.samples_per_stage[1], 6);
}

}  // namespace thinkingvit::testing
