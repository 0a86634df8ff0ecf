// Every registered preset, whatever its family, through the same checks: forward shapes, the
// parameters each stage uses, a save / load round trip, MACs against a count made here, and early
// exit equal to running every stage. One image per call (two for early exit) at the preset's own
// size, so that DeiT-B and Swin-B stay within seconds on two cores.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "../test_util.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/entropy.h"
#include "thinkingvit/models/model_options.h"

namespace thinkingvit::testing {

namespace {

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    options_ = models::model_preset(GetParam());
    torch::manual_seed(7);
    model_ = models::make_model(options_);
    model_->eval();
    images_ =
        torch::randn({1, options_.in_channels(), options_.image_size(), options_.image_size()});
  }
  models::ModelOptions options_;
  std::shared_ptr<models::ElasticModel> model_;
  at::Tensor images_;
};

// The same architecture with stage `s` alone (its heads as the only stage or round).
models::ModelOptions single_stage(const models::ModelOptions& options, int64_t s) {
  auto single = options;
  if (auto* vit = single.as<models::ThinkingViTOptions>()) vit->stages({vit->stages().at(s)});
  if (auto* swin = single.as<models::ThinkingSwinOptions>())
    swin->head_rounds({swin->head_rounds().at(s)});
  return single;
}

// A ViT stage counted from the architecture: patch embedding, per block q / k / v, the two
// attention matmuls over N = patches + 1 tokens, the projection and the MLP, then the head.
int64_t vit_stage_macs(const models::ThinkingViTOptions& o, int64_t s) {
  const int64_t patches = (o.image_size() / o.patch_size()) * (o.image_size() / o.patch_size());
  const int64_t n = patches + 1, d = o.head_dim() * o.stages().at(s);
  const auto hidden = static_cast<int64_t>(static_cast<double>(d) * o.mlp_ratio());
  const int64_t block = 3 * n * d * d + 2 * n * n * d + n * d * d + 2 * n * d * hidden;
  return patches * o.in_channels() * o.patch_size() * o.patch_size() * d + o.depth() * block +
         d * o.num_classes();
}

}  // namespace

TEST_P(Conformance, EveryStageGivesLogitsAndTokens) {
  torch::NoGradGuard no_grad;
  const auto outputs = model_->forward_all(images_);
  ASSERT_EQ(static_cast<int64_t>(outputs.size()), options_.num_stages());
  for (const auto& out : outputs) {
    EXPECT_EQ(out.logits.sizes(), (at::IntArrayRef{1, options_.num_classes()}));
    EXPECT_TRUE(out.logits.isfinite().all().item<bool>());
    ASSERT_TRUE(out.tokens.defined());
    EXPECT_EQ(out.tokens.size(0), 1);
  }
}

// A stage's logits depend on the parameters it uses and on no others: the elements with a
// gradient are at most stage_parameter_count(s), and nearly all of those.
TEST_P(Conformance, EachStageUsesItsCountedParameters) {
  for (int64_t s = 0; s < options_.num_stages(); ++s) {
    model_->zero_grad();
    const auto outputs = model_->forward_all(images_);
    outputs[s].logits.pow(2).sum().backward();
    int64_t used = 0;
    for (const auto& p : model_->parameters()) {
      if (p.grad().defined()) used += p.grad().ne(0).sum().item<int64_t>();
    }
    const int64_t counted = model_->stage_parameter_count(s);
    EXPECT_LE(used, counted) << "stage " << s;
    EXPECT_GE(static_cast<double>(used), 0.99 * static_cast<double>(counted)) << "stage " << s;
  }
  EXPECT_EQ(model_->stage_parameter_count(options_.num_stages() - 1) <= options_.parameter_count(),
            true);
}

TEST_P(Conformance, SavedWeightsLoadBackExactly) {
  TempDir dir;
  const auto path = dir.file("model.safetensors");
  io::save_weights(*model_, path);
  torch::manual_seed(8);
  auto other = models::make_model(options_);
  other->eval();
  io::LoadOptions strict;
  strict.strict = true;
  io::load_state_dict(*other, io::read_safetensors(path).tensors, path, strict);
  torch::NoGradGuard no_grad;
  const auto a = model_->forward_all(images_), b = other->forward_all(images_);
  for (size_t s = 0; s < a.size(); ++s) EXPECT_TRUE(torch::equal(a[s].logits, b[s].logits)) << s;
}

// Stage s of a multi-stage model costs what the same architecture with that stage alone costs,
// plus the projection that recycles the previous stage's tokens (where a family's released
// tables count it: Swin's token projector; ViT's is in neither total); a ViT stage costs the
// count made above.
TEST_P(Conformance, MacsMatchACountMadeHere) {
  const auto projection = [](const models::MacBreakdown& m, models::MacConvention convention) {
    int64_t macs = 0;
    for (const auto& term : m.terms) {
      const bool counted = term.counted == models::MacCounted::kBoth ||
                           (term.counted == models::MacCounted::kFvcoreOnly &&
                            convention == models::MacConvention::kFvcore);
      const bool recycles = term.name.find("projector") != std::string::npos ||
                            term.name.find("recycling") != std::string::npos;
      if (counted && recycles) macs += term.macs;
    }
    return macs;
  };
  for (int64_t s = 0; s < options_.num_stages(); ++s) {
    const auto macs = options_.stage_macs(s);
    for (const auto convention :
         {models::MacConvention::kReleased, models::MacConvention::kFvcore}) {
      EXPECT_EQ(macs.total(convention) - projection(macs, convention),
                single_stage(options_, s).stage_macs(0).total(convention))
          << "stage " << s;
      EXPECT_EQ(projection(macs, convention) > 0,
                s > 0 && options_.as<models::ThinkingSwinOptions>() != nullptr)
          << s;
    }
    if (const auto* vit = options_.as<models::ThinkingViTOptions>()) {
      EXPECT_EQ(options_.stage_macs(s).total(models::MacConvention::kReleased),
                vit_stage_macs(*vit, s))
          << "stage " << s;
    }
    if (s > 0) {
      EXPECT_GT(options_.stage_macs(s).total(models::MacConvention::kReleased),
                options_.stage_macs(s - 1).total(models::MacConvention::kReleased));
    }
  }
}

// Elastic inference gives each image the logits of the stage it stops at, as running every
// stage does, with a threshold between the two images' stage-0 entropies (so that one stops at
// stage 0 and the other goes on; a one-stage model stops both there).
TEST_P(Conformance, EarlyExitEqualsRunningEveryStage) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(9);
  const auto images =
      torch::randn({2, options_.in_channels(), options_.image_size(), options_.image_size()});
  const auto all = model_->forward_all(images);
  const auto h = models::entropy(all[0].logits, models::EntropyRule::kTop10);
  const double tau = 0.5 * (h[0].item<double>() + h[1].item<double>());
  const auto out = model_->forward_elastic(images, tau, models::EntropyRule::kTop10);
  int64_t stopped = 0;
  for (int64_t b = 0; b < 2; ++b) {
    const int64_t stage = out.exit_stage[b].item<int64_t>();
    stopped += stage == 0;
    const auto expected = all[stage].logits[b];
    const double scale = std::max(1e-3, expected.abs().max().item<double>());
    EXPECT_LE((out.logits[b] - expected).abs().max().item<double>(), 1e-4 * scale)
        << "image " << b << " stage " << stage;
  }
  if (options_.num_stages() == 1) {
    EXPECT_EQ(stopped, 2);  // one stage: every image ends there
  } else if (h[0].item<double>() != h[1].item<double>()) {
    EXPECT_EQ(stopped, 1);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryPreset, Conformance,
                         ::testing::ValuesIn(models::model_preset_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace thinkingvit::testing
