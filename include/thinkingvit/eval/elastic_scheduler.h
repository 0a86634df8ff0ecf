#pragma once
// Elastic inference for a server: requests of any size are batched dynamically into shared
// stage queues (models::ElasticQueues, one set per threshold), so that the undecided images of
// many requests fill the later stages' batches together. A worker thread owns the model. A
// stage runs when its queue holds a full batch; before the oldest queued image has waited
// `max_delay_ms` (less the time a drain takes), the queues drain, partial batches and all. A
// request completes when its last image exits.

#include <ATen/core/Tensor.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "thinkingvit/models/elastic_queue.h"

namespace thinkingvit::eval {

struct SchedulerOptions {
  int64_t max_batch = 64;            // images per stage forward
  double max_delay_ms = 10;          // an image's whole stay, through every stage queue
  int64_t max_queued_images = 4096;  // admitted but not finished; past it submit refuses
  models::EntropyRule rule = models::EntropyRule::kTop10;
  // false: each request's early exit runs alone (forward_elastic over the request in batches of
  // max_batch), as a server without regrouping would; for comparison.
  bool regroup = true;
};

// One request's answers, row i for image i.
struct ElasticAnswer {
  at::Tensor logits;      // N x K float32, on the CPU
  at::Tensor exit_stage;  // N int64
  at::Tensor entropy;     // N float32
};

// Thrown by submit when admitting the request would exceed max_queued_images.
struct Overloaded : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Thrown by submit once finish() has begun.
struct ShuttingDown : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Counters for a /metrics page: totals since start, and the queues now.
struct SchedulerStats {
  int64_t requests = 0, images = 0, refused = 0, deadline_drains = 0;
  std::vector<models::StageFill> fill;  // per stage, over every threshold's queues
  std::vector<int64_t> exits;           // images that exited at each stage
  int64_t queued_images = 0;            // admitted and not yet finished
};

class ElasticScheduler {
 public:
  // The model must stay alive and be used by nobody else while the scheduler runs; it is run
  // in eval mode under no-grad on `device`.
  ElasticScheduler(models::ElasticModel& model, const c10::Device& device,
                   SchedulerOptions options);
  ~ElasticScheduler();  // finish(), then joins the worker
  ElasticScheduler(const ElasticScheduler&) = delete;
  ElasticScheduler& operator=(const ElasticScheduler&) = delete;

  // Queues N x C x H x W float32 `images` (any device) at threshold `tau`, running at most the
  // first `stages` stages (-1: all; a compute budget). The future holds the answer, or the error
  // the model raised. Throws Overloaded when full, and ShuttingDown once finish() has begun.
  // Requests share queues when they share `tau` and `stages`.
  std::future<ElasticAnswer> submit(const at::Tensor& images, double tau, int64_t stages = -1);
  // Stops admitting, answers every admitted request (draining the queues), then returns.
  void finish();
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Request {
    at::Tensor images;
    double tau = 0;
    int64_t stages = -1;
    Clock::time_point arrival;
    int64_t first_id = 0, remaining = 0;
    ElasticAnswer answer;
    std::promise<ElasticAnswer> promise;
  };
  struct TauQueues {
    std::unique_ptr<models::ElasticQueues> queues;
    std::deque<std::shared_ptr<Request>> waiting;  // unfinished requests, oldest first
  };
  void run();
  void admit(std::shared_ptr<Request> request);
  void collect(TauQueues& tq);
  void answer_alone(std::shared_ptr<Request> request);
  void run_alone(Request& request);
  void drain_due(Clock::time_point now);
  Clock::time_point next_deadline() const;
  void fail_all(const std::exception_ptr& error,
                std::deque<std::shared_ptr<Request>>& not_admitted);
  void retire_idle();
  std::vector<models::StageFill> total_fill() const;

  models::ElasticModel& model_;
  c10::Device device_;
  SchedulerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Request>> incoming_;
  bool finishing_ = false, stopped_ = false;
  int64_t admitted_images_ = 0;  // guarded by mutex_: queued and not finished
  SchedulerStats stats_;         // guarded by mutex_
  // Worker thread only:
  std::map<std::pair<double, int64_t>, TauQueues> queues_;  // by (tau, stages)
  std::map<int64_t, std::shared_ptr<Request>> by_first_id_;
  int64_t next_id_ = 0;
  double drain_ms_ = 0;                          // how long a deadline drain took, smoothed
  std::vector<models::StageFill> alone_fill_;    // without regrouping
  std::vector<models::StageFill> retired_fill_;  // of the queues retire_idle removed
  std::thread worker_;
};

}  // namespace thinkingvit::eval
