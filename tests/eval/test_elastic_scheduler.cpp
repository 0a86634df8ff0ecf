// The serving scheduler: requests from many threads regrouped into shared stage queues, answers
// equal to forward_elastic's, deadlines that drain partial batches, a bounded queue, and a
// finish that answers everything admitted.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <thread>

#include "../test_util.h"
#include "thinkingvit/eval/elastic_scheduler.h"

namespace thinkingvit::testing {

namespace {

class Scheduler : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = tiny_model({1, 2, 3}, /*seed=*/4);
    images_ = tiny_images(48, 9);
    torch::NoGradGuard no_grad;
    tau_ = models::entropy(model_->forward_stage(0, images_).logits).median().item<double>();
    reference_ = model_->forward_elastic(images_, tau_);
  }

  // Image `first + i` of images_ against answer row i (kernels at other batch sizes: logits to
  // 1e-4 of their scale; an entropy that close to tau may exit a stage apart).
  void expect_answer(const eval::ElasticAnswer& a, int64_t first) const {
    for (int64_t i = 0; i < a.exit_stage.size(0); ++i) {
      const int64_t image = first + i;
      bool borderline = false;
      for (int64_t s = 0; s < 3; ++s) {
        const double h = reference_.stage_entropy[s][image].item<double>();
        borderline |= std::isfinite(h) && std::abs(h - tau_) < 1e-4 * std::max(1.0, tau_);
      }
      if (borderline) continue;
      EXPECT_EQ(a.exit_stage[i].item<int64_t>(), reference_.exit_stage[image].item<int64_t>())
          << "image " << image;
      EXPECT_TRUE(close_scaled(a.logits[i], reference_.logits[image], 1e-4)) << "image " << image;
      EXPECT_NEAR(a.entropy[i].item<double>(), reference_.entropy[image].item<double>(),
                  1e-4 * std::max(1.0, tau_));
    }
  }

  models::ThinkingViT model_{nullptr};
  at::Tensor images_;
  double tau_ = 0;
  models::ElasticOutput reference_;
};

eval::SchedulerOptions options(int64_t batch, double delay_ms, int64_t capacity = 4096) {
  eval::SchedulerOptions o;
  o.max_batch = batch;
  o.max_delay_ms = delay_ms;
  o.max_queued_images = capacity;
  return o;
}

}  // namespace

// Eight requests of three images share the queues: stage 0 runs three full batches of eight,
// where batch-by-batch early exit would run eight forwards of three.
TEST_F(Scheduler, RequestsShareTheStageQueues) {
  eval::ElasticScheduler scheduler(*model_, c10::Device(c10::kCPU), options(8, 300));
  std::vector<std::future<eval::ElasticAnswer>> answers;
  for (int64_t r = 0; r < 8; ++r)
    answers.push_back(scheduler.submit(images_.narrow(0, 3 * r, 3), tau_));
  for (int64_t r = 0; r < 8; ++r) expect_answer(answers[r].get(), 3 * r);
  const auto stats = scheduler.stats();
  EXPECT_EQ(stats.requests, 8);
  EXPECT_EQ(stats.images, 24);
  EXPECT_EQ(stats.fill[0].calls, 3);
  EXPECT_EQ(stats.fill[0].images, 24);
  int64_t exits = 0;
  for (const auto e : stats.exits) exits += e;
  EXPECT_EQ(exits, 24);
  EXPECT_EQ(stats.queued_images, 0);
}

// A stage limit per request (serve's parameters.budget): requests with and without one, at one
// tau, get queues of their own; the limited ones exit by the last allowed stage, the others as
// forward_elastic does. With and without regrouping.
TEST_F(Scheduler, AStageLimitCapsOnlyTheRequestsThatAskForIt) {
  for (const bool regroup : {true, false}) {
    auto o = options(4, 300);
    o.regroup = regroup;
    eval::ElasticScheduler scheduler(*model_, c10::Device(c10::kCPU), o);
    std::vector<std::future<eval::ElasticAnswer>> capped, free;
    for (int64_t r = 0; r < 6; ++r) {
      capped.push_back(scheduler.submit(images_.narrow(0, 8 * r, 8), tau_, /*stages=*/1));
      free.push_back(scheduler.submit(images_.narrow(0, 8 * r, 8), tau_));
    }
    torch::NoGradGuard no_grad;
    const auto want = model_->forward_elastic(images_, tau_, models::EntropyRule::kTop10, 1);
    for (int64_t r = 0; r < 6; ++r) {
      expect_answer(free[r].get(), 8 * r);
      const auto a = capped[r].get();
      const auto rows = want.exit_stage.narrow(0, 8 * r, 8);
      EXPECT_TRUE(torch::equal(a.exit_stage, rows)) << "regroup " << regroup << " request " << r;
      EXPECT_TRUE(close_scaled(a.logits, want.logits.narrow(0, 8 * r, 8), 1e-4));
    }
    EXPECT_TRUE(torch::equal(want.exit_stage, torch::zeros_like(want.exit_stage)));
    EXPECT_GT(reference_.samples_per_stage[1], 0) << "the test needs images the cap stops";
    expect_error([&] { scheduler.submit(images_.narrow(0, 0, 1), tau_, 4); },
                 {"stages must be -1 (all) or in [1, 3]", "found 4"});
  }
}

// Without regrouping each request runs alone: one stage-0 forward per request of three.
TEST_F(Scheduler, WithoutRegroupingEachRequestRunsAlone) {
  auto o = options(8, 300);
  o.regroup = false;
  eval::ElasticScheduler scheduler(*model_, c10::Device(c10::kCPU), o);
  std::vector<std::future<eval::ElasticAnswer>> answers;
  for (int64_t r = 0; r < 4; ++r)
    answers.push_back(scheduler.submit(images_.narrow(0, 3 * r, 3), tau_));
  for (int64_t r = 0; r < 4; ++r) expect_answer(answers[r].get(), 3 * r);
  const auto stats = scheduler.stats();
  EXPECT_EQ(stats.fill[0].calls, 4);
  EXPECT_EQ(stats.fill[0].images, 12);
  EXPECT_EQ(stats.queued_images, 0);
}

// Concurrent clients of uneven sizes, answered in their own order, equal to forward_elastic.
TEST_F(Scheduler, ConcurrentClientsGetTheirOwnAnswers) {
  eval::ElasticScheduler scheduler(*model_, c10::Device(c10::kCPU), options(5, 20));
  const std::vector<std::pair<int64_t, int64_t>> requests = {{0, 7},  {7, 1},  {8, 12},
                                                             {20, 4}, {24, 9}, {33, 15}};
  std::vector<std::thread> clients;
  std::vector<eval::ElasticAnswer> answers(requests.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    clients.emplace_back([&, r] {
      answers[r] =
          scheduler.submit(images_.narrow(0, requests[r].first, requests[r].second), tau_).get();
    });
  }
  for (auto& c : clients) c.join();
  for (size_t r = 0; r < requests.size(); ++r) {
    ASSERT_EQ(answers[r].exit_stage.size(0), requests[r].second);
    expect_answer(answers[r], requests[r].first);
  }
}

// A lone request never fills a batch: the deadline drains the queues and answers it.
TEST_F(Scheduler, TheDeadlineAnswersARequestThatFillsNoBatch) {
  eval::ElasticScheduler scheduler(*model_, c10::Device(c10::kCPU), options(64, 30));
  auto answer = scheduler.submit(images_.narrow(0, 0, 2), tau_);
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  expect_answer(answer.get(), 0);
  EXPECT_GE(scheduler.stats().deadline_drains, 1);
}

TEST_F(Scheduler, AFullQueueRefusesAndRecovers) {
  eval::ElasticScheduler scheduler(*model_, c10::Device(c10::kCPU), options(64, 400, 10));
  auto a = scheduler.submit(images_.narrow(0, 0, 4), tau_);
  auto b = scheduler.submit(images_.narrow(0, 4, 4), tau_);
  EXPECT_THROW(scheduler.submit(images_.narrow(0, 8, 4), tau_), eval::Overloaded);
  EXPECT_EQ(scheduler.stats().refused, 1);
  expect_answer(a.get(), 0);
  expect_answer(b.get(), 4);
  auto c = scheduler.submit(images_.narrow(0, 8, 4), tau_);  // room again
  expect_answer(c.get(), 8);
  expect_error([&] { scheduler.submit(images_.narrow(0, 0, 11), tau_); },
               {"request of 11 images is larger than the queue (10 images)"});
  expect_error([&] { scheduler.submit(images_.narrow(0, 0, 2).to(torch::kDouble), tau_); },
               {"float32 N x C x H x W", "Double"});
}

// finish() answers what was admitted at once (the deadline is far away) and refuses the rest.
TEST_F(Scheduler, FinishAnswersEverythingAdmitted) {
  eval::ElasticScheduler scheduler(*model_, c10::Device(c10::kCPU), options(64, 60000));
  auto a = scheduler.submit(images_.narrow(0, 0, 5), tau_);
  auto b = scheduler.submit(images_.narrow(0, 5, 3), tau_ / 2);  // another threshold's queues
  scheduler.finish();
  ASSERT_EQ(a.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  expect_answer(a.get(), 0);
  const auto at_half = b.get();
  torch::NoGradGuard no_grad;
  const auto want = model_->forward_elastic(images_.narrow(0, 5, 3), tau_ / 2);
  EXPECT_TRUE(torch::equal(at_half.exit_stage, want.exit_stage));
  EXPECT_THROW(scheduler.submit(images_.narrow(0, 0, 1), tau_), eval::ShuttingDown);
}

}  // namespace thinkingvit::testing
