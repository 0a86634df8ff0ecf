// Regrouped elastic inference (ElasticQueues) against forward_elastic on the same images, for
// every family: streams of uneven batches, ids in shuffled order, exits at every stage, and
// queues that carry images over many pushes.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../test_util.h"
#include "thinkingvit/models/elastic_queue.h"
#include "thinkingvit/util/device.h"

namespace thinkingvit::testing {

namespace {

// Random weights that spread the stages' entropies (LayerNorm weights around 1, alphas 0.5).
void randomize_any(models::ElasticModel& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& item : model.named_parameters()) {
    auto& p = item.value();
    if (item.key().rfind("alpha.", 0) == 0) {
      p.fill_(0.5);
    } else if (item.key().find("norm") != std::string::npos &&
               item.key().find("weight") != std::string::npos) {
      p.normal_(1.0, 0.1);
    } else {
      p.normal_(0.0, 0.3);
    }
  }
}

struct Family {
  const char* name;
  models::ModelOptions options;
};

class ElasticQueuesTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    const Family families[] = {{"vit", models::ModelOptions(tiny_options({1, 2, 3}))},
                               {"swin", models::ModelOptions(tiny_swin_options())}};
    const auto& family = families[GetParam()];
    model_ = models::make_model(family.options);
    randomize_any(*model_, 11);
    model_->eval();
    images_ = tiny_images(40, 5);
    // tau between the stage-0 entropies, so that images exit at every stage (checked below).
    tau_ = models::entropy(model_->forward_stage(0, images_).logits).median().item<double>();
    reference_ = model_->forward_elastic(images_, tau_);
  }

  // forward_elastic's answer for image i, with the tolerance of kernels run at another batch
  // size: logits within 1e-4 of their scale, the exit stage equal unless the entropy that
  // decided it lies within that tolerance of tau.
  void expect_matches(int64_t image, const at::Tensor& logits, int64_t exit_stage) const {
    const int64_t want = reference_.exit_stage[image].item<int64_t>();
    bool borderline = false;
    for (int64_t s = 0; s < model_->num_stages(); ++s) {
      const double h = reference_.stage_entropy[s][image].item<double>();
      borderline |= std::isfinite(h) && std::abs(h - tau_) < 1e-4 * std::max(1.0, tau_);
    }
    if (!borderline) {
      EXPECT_EQ(exit_stage, want) << "image " << image;
      EXPECT_TRUE(close_scaled(logits, reference_.logits[image], 1e-4)) << "image " << image;
    }
  }

  std::shared_ptr<models::ElasticModel> model_;
  at::Tensor images_;
  double tau_ = 0;
  models::ElasticOutput reference_;
};

// The tokens one queued image carries into `stage` (stage > 0): N x k of the stage before.
int64_t token_bytes(models::ElasticModel& model, const at::Tensor& image, int64_t stage) {
  at::Tensor tokens;
  for (int64_t s = 0; s < stage; ++s) tokens = model.forward_stage(s, image, tokens).tokens;
  return tokens.nbytes();
}

}  // namespace

TEST_P(ElasticQueuesTest, ImagesExitAtEveryStage) {
  const auto counts = at::bincount(reference_.exit_stage, {}, model_->num_stages());
  for (int64_t s = 0; s < model_->num_stages(); ++s)
    EXPECT_GT(counts[s].item<int64_t>(), 0) << "stage " << s << ": the test needs mixed exits";
}

TEST_P(ElasticQueuesTest, UnevenPushesInShuffledOrderMatchForwardElastic) {
  torch::NoGradGuard no_grad;
  const int64_t batch = 4;
  models::ElasticQueues queues(*model_, tau_, batch);
  // ids: a shuffled permutation scaled by 3, so an id is neither a row nor a position.
  torch::manual_seed(2);
  const auto order = torch::randperm(images_.size(0), torch::kLong);
  const std::vector<int64_t> sizes = {3, 8, 1, 5, 0, 9, 2, 6, 6};
  int64_t start = 0, pushes_spanned = 0;
  std::vector<int64_t> exited_by_push;
  for (const int64_t n : sizes) {
    const auto rows = order.narrow(0, start, n);
    queues.push(images_.index_select(0, rows), rows * 3);
    start += n;
    for (int64_t s = 0; s < model_->num_stages(); ++s)
      EXPECT_LT(queues.queued(s), batch) << "stage " << s << " after a push";
    pushes_spanned += queues.queued() > 0;
  }
  ASSERT_EQ(start, images_.size(0));
  EXPECT_GT(pushes_spanned, 3) << "images must wait across pushes";
  queues.drain();
  EXPECT_EQ(queues.queued(), 0);
  EXPECT_EQ(queues.queued_bytes(), 0);

  const auto exited = queues.take_exited();
  ASSERT_EQ(exited.size(), images_.size(0));
  EXPECT_EQ(queues.take_exited().size(), 0) << "taken once";
  std::vector<bool> seen(images_.size(0), false);
  for (int64_t j = 0; j < exited.size(); ++j) {
    const int64_t id = exited.ids[j].item<int64_t>();
    ASSERT_EQ(id % 3, 0);
    ASSERT_FALSE(seen[id / 3]) << "id " << id << " exited twice";
    seen[id / 3] = true;
    expect_matches(id / 3, exited.logits[j], exited.exit_stage[j].item<int64_t>());
    EXPECT_NEAR(exited.entropy[j].item<double>(), reference_.entropy[id / 3].item<double>(),
                1e-4 * std::max(1.0, tau_));
  }
  // Every stage ran full batches but for its last: ceil(images / batch) calls, the fewest.
  for (int64_t s = 0; s < model_->num_stages(); ++s) {
    const auto& fill = queues.fill()[s];
    EXPECT_EQ(fill.images, reference_.samples_per_stage[s]) << "stage " << s;
    EXPECT_EQ(fill.calls, (fill.images + batch - 1) / batch) << "stage " << s;
  }
}

TEST_P(ElasticQueuesTest, QueuedBytesCountImagesTokensAndIds) {
  torch::NoGradGuard no_grad;
  // A batch larger than the stream: nothing runs until run_oldest.
  models::ElasticQueues queues(*model_, tau_, 64);
  const auto few = images_.narrow(0, 0, 10);
  queues.push(few, torch::arange(10, torch::kLong));
  const int64_t image_bytes = few[0].nbytes(), id_bytes = 8;
  EXPECT_EQ(queues.queued(0), 10);
  EXPECT_EQ(queues.queued_bytes(), 10 * (image_bytes + id_bytes));
  EXPECT_EQ(queues.fill()[0].calls, 0);

  queues.run_oldest(0);  // a deadline's partial batch: all ten at once
  EXPECT_EQ(queues.fill()[0].calls, 1);
  EXPECT_EQ(queues.fill()[0].images, 10);
  const int64_t waiting = queues.queued(1);
  EXPECT_EQ(waiting + queues.take_exited().size(), 10);
  EXPECT_EQ(queues.queued_bytes(),
            waiting * (image_bytes + id_bytes + token_bytes(*model_, few.narrow(0, 0, 1), 1)));
  queues.run_oldest(0);  // empty: nothing
  EXPECT_EQ(queues.fill()[0].calls, 1);
}

TEST_P(ElasticQueuesTest, RegroupedStreamEqualsForwardElasticInInputOrder) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> batches;
  for (int64_t start = 0; start < images_.size(0); start += 7)
    batches.push_back(images_.narrow(0, start, std::min<int64_t>(7, images_.size(0) - start)));
  const auto out = models::forward_elastic_regrouped(*model_, batches, tau_, /*batch=*/5);
  ASSERT_EQ(out.logits.size(0), images_.size(0));
  EXPECT_FALSE(out.stage_entropy.defined());
  EXPECT_EQ(out.samples_per_stage, reference_.samples_per_stage);
  for (int64_t i = 0; i < images_.size(0); ++i)
    expect_matches(i, out.logits[i], out.exit_stage[i].item<int64_t>());
}

// A stage limit (a request's compute budget): the last allowed stage decides everyone left.
// Closed form against the unlimited reference: an image exits at min(its stage, limit - 1), with
// the reference's logits where it stopped earlier and that stage's own logits where it was cut.
TEST_P(ElasticQueuesTest, StageLimitStopsEveryoneAtTheLastAllowedStage) {
  torch::NoGradGuard no_grad;
  const int64_t all = model_->num_stages();
  for (int64_t limit = 1; limit < all; ++limit) {
    // The stage `limit - 1` logits of every image, by running the stages one after another.
    at::Tensor tokens, cut_logits;
    for (int64_t s = 0; s < limit; ++s) {
      const auto out = model_->forward_stage(s, images_, tokens);
      tokens = out.tokens;
      cut_logits = out.logits;
    }
    const auto alone = model_->forward_elastic(images_, tau_, models::EntropyRule::kTop10, limit);
    const auto queued = models::forward_elastic_regrouped(
        *model_, {images_.narrow(0, 0, 13), images_.narrow(0, 13, 27)}, tau_, /*batch=*/4,
        models::EntropyRule::kTop10, limit);
    for (int64_t i = 0; i < images_.size(0); ++i) {
      const int64_t want = std::min(reference_.exit_stage[i].item<int64_t>(), limit - 1);
      for (const auto* got : {&alone, &queued}) {
        ASSERT_EQ(got->exit_stage[i].item<int64_t>(), want) << "limit " << limit << " image " << i;
        const auto& logits = want < limit - 1 ? reference_.logits[i] : cut_logits[i];
        EXPECT_TRUE(close_scaled(got->logits[i], logits, 1e-4))
            << "limit " << limit << " image " << i;
      }
    }
    EXPECT_EQ(alone.samples_per_stage.size(), static_cast<size_t>(all));
    for (int64_t s = limit; s < all; ++s) {
      EXPECT_EQ(alone.samples_per_stage[s], 0) << "stage " << s << " is past the limit";
      EXPECT_EQ(queued.samples_per_stage[s], 0) << "stage " << s << " is past the limit";
    }
  }
  // -1 and the model's own count mean every stage.
  const auto full = model_->forward_elastic(images_, tau_, models::EntropyRule::kTop10, all);
  EXPECT_TRUE(torch::equal(full.exit_stage, reference_.exit_stage));
  expect_error(
      [&] { (void)models::ElasticQueues(*model_, tau_, 4, models::EntropyRule::kTop10, 0); },
      {"stages must be -1 (all) or in [1, " + std::to_string(all) + "]", "found 0"});
  expect_error(
      [&] { model_->forward_elastic(images_, tau_, models::EntropyRule::kTop10, all + 1); },
      {"stages must be -1 (all)", "found " + std::to_string(all + 1)});
}

TEST_P(ElasticQueuesTest, BadArgumentsAreOneClearError) {
  expect_error([&] { (void)models::ElasticQueues(*model_, tau_, 0); },
               {"batch must be > 0", "found 0"});
  models::ElasticQueues queues(*model_, tau_, 4);
  expect_error([&] { queues.push(images_.narrow(0, 0, 3), torch::arange(2, torch::kLong)); },
               {"ids must be 3 int64 values", "[2]"});
  expect_error([&] { queues.push(images_.narrow(0, 0, 2), torch::arange(2, torch::kInt)); },
               {"ids must be 2 int64 values", "Int"});
  expect_error([&] { queues.push(images_[0], torch::arange(1, torch::kLong)); },
               {"B x C x H x W", "found 3 dimensions"});
  expect_error([&] { queues.run_oldest(7); }, {"stage 7 out of range"});
  expect_error([&] { models::forward_elastic_regrouped(*model_, {}, tau_, 4); }, {"no batches"});
}

// Under bf16 autocast the stages answer in bf16: the queues carry those answers as they are.
TEST_P(ElasticQueuesTest, Bf16AutocastMatchesForwardElasticUnderAutocast) {
  torch::NoGradGuard no_grad;
  models::ElasticOutput want, got;
  {
    compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16);
    want = model_->forward_elastic(images_, tau_);
    got = models::forward_elastic_regrouped(
        *model_, {images_.narrow(0, 0, 17), images_.narrow(0, 17, 23)}, tau_, /*batch=*/8);
  }
  EXPECT_EQ(got.logits.scalar_type(), at::kBFloat16);
  EXPECT_EQ(got.logits.scalar_type(), want.logits.scalar_type());
  EXPECT_EQ(got.samples_per_stage[0], images_.size(0));
  // bf16 kernels at another batch size: the exits agree but for entropies near tau.
  int64_t agree = 0;
  for (int64_t i = 0; i < images_.size(0); ++i)
    agree += got.exit_stage[i].item<int64_t>() == want.exit_stage[i].item<int64_t>();
  EXPECT_GE(agree, images_.size(0) - 3);
}

// One stage: every image exits at stage 0, in full batches but the last.
TEST(ElasticQueues, OneStageExitsEverythingAtStageZero) {
  torch::NoGradGuard no_grad;
  auto model = tiny_model({2});
  const auto images = tiny_images(10);
  const auto out = models::forward_elastic_regrouped(*model, {images}, 0.5, /*batch=*/4);
  const auto want = model->forward_elastic(images, 0.5);
  EXPECT_TRUE(torch::equal(out.exit_stage, torch::zeros({10}, torch::kLong)));
  EXPECT_TRUE(close_scaled(out.logits, want.logits, 1e-4));
  EXPECT_EQ(out.samples_per_stage, std::vector<int64_t>{10});
}

INSTANTIATE_TEST_SUITE_P(Families, ElasticQueuesTest, ::testing::Values(0, 1),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == 0 ? "ViT" : "Swin");
                         });

}  // namespace thinkingvit::testing
