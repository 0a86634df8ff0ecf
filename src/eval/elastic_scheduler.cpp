#include "thinkingvit/eval/elastic_scheduler.h"

#include <torch/torch.h>

#include <algorithm>
#include <utility>

#include "thinkingvit/util/error.h"

namespace thinkingvit::eval {

ElasticScheduler::ElasticScheduler(models::ElasticModel& model, const c10::Device& device,
                                   SchedulerOptions options)
    : model_(model), device_(device), options_(options) {
  TVIT_CHECK(options_.max_batch > 0, "scheduler: max batch must be > 0, found ",
             options_.max_batch);
  TVIT_CHECK(options_.max_delay_ms >= 0, "scheduler: max delay must be >= 0 ms, found ",
             options_.max_delay_ms);
  TVIT_CHECK(options_.max_queued_images > 0, "scheduler: the queue must hold > 0 images, found ",
             options_.max_queued_images);
  model_.eval();
  stats_.fill.resize(model.num_stages());
  alone_fill_.resize(model.num_stages());
  retired_fill_.resize(model.num_stages());
  stats_.exits.assign(model.num_stages(), 0);
  worker_ = std::thread([this] { run(); });
}

ElasticScheduler::~ElasticScheduler() { finish(); }

std::future<ElasticAnswer> ElasticScheduler::submit(const at::Tensor& images, double tau,
                                                    int64_t stages) {
  TVIT_CHECK(images.dim() == 4 && images.scalar_type() == at::kFloat,
             "scheduler: images must be float32 N x C x H x W, found ", images.sizes(), " ",
             images.scalar_type());
  TVIT_CHECK(stages == -1 || (stages >= 1 && stages <= model_.num_stages()),
             "scheduler: stages must be -1 (all) or in [1, ", model_.num_stages(), "], found ",
             stages);
  const int64_t n = images.size(0);
  TVIT_CHECK(n <= options_.max_queued_images, "scheduler: a request of ", n,
             " images is larger than the queue (", options_.max_queued_images, " images)");
  auto request = std::make_shared<Request>();
  request->images = images;
  request->tau = tau;
  request->stages = stages;
  request->remaining = n;
  auto future = request->promise.get_future();
  std::lock_guard<std::mutex> lock(mutex_);
  if (finishing_) throw ShuttingDown("shutting down: no new requests");
  if (admitted_images_ + n > options_.max_queued_images) {
    ++stats_.refused;
    throw Overloaded("the queue holds " + std::to_string(admitted_images_) + " of " +
                     std::to_string(options_.max_queued_images) + " images");
  }
  request->arrival = Clock::now();
  if (n == 0) {
    request->promise.set_value({torch::empty({0, model_.model_options().num_classes()}),
                                torch::empty({0}, torch::kLong), torch::empty({0})});
    return future;
  }
  admitted_images_ += n;
  stats_.queued_images = admitted_images_;
  ++stats_.requests;
  stats_.images += n;
  incoming_.push_back(std::move(request));
  wake_.notify_one();
  return future;
}

void ElasticScheduler::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finishing_ = true;
  }
  wake_.notify_one();
  if (worker_.joinable()) worker_.join();
}

SchedulerStats ElasticScheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

ElasticScheduler::Clock::time_point ElasticScheduler::next_deadline() const {
  auto deadline = Clock::time_point::max();
  const auto budget = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(std::max(0.0, options_.max_delay_ms - drain_ms_)));
  for (const auto& [key, tq] : queues_) {
    if (!tq.waiting.empty()) deadline = std::min(deadline, tq.waiting.front()->arrival + budget);
  }
  return deadline;
}

void ElasticScheduler::run() {
  torch::NoGradGuard no_grad;
  for (;;) {
    std::deque<std::shared_ptr<Request>> arrived;
    bool finishing = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      const auto ready = [&] { return !incoming_.empty() || finishing_; };
      const auto deadline = next_deadline();
      if (deadline == Clock::time_point::max()) {
        wake_.wait(lock, ready);
      } else {
        wake_.wait_until(lock, deadline, ready);
      }
      arrived.swap(incoming_);
      finishing = finishing_;
    }
    try {
      while (!arrived.empty()) {
        auto request = std::move(arrived.front());
        arrived.pop_front();
        admit(std::move(request));
      }
      drain_due(finishing ? Clock::time_point::max() : Clock::now());
      retire_idle();
    } catch (...) {
      fail_all(std::current_exception(), arrived);
    }
    if (finishing) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (incoming_.empty() && by_first_id_.empty()) return;
    }
  }
}

void ElasticScheduler::admit(std::shared_ptr<Request> request) {
  const int64_t n = request->images.size(0);
  if (!options_.regroup) return answer_alone(std::move(request));
  request->first_id = next_id_;
  next_id_ += n;
  by_first_id_[request->first_id] = request;
  const auto& o = model_.model_options();
  request->answer = {torch::empty({n, o.num_classes()}), torch::empty({n}, torch::kLong),
                     torch::empty({n})};
  auto& tq = queues_[{request->tau, request->stages}];
  if (!tq.queues) {
    tq.queues = std::make_unique<models::ElasticQueues>(model_, request->tau, options_.max_batch,
                                                        options_.rule, request->stages);
  }
  tq.waiting.push_back(request);
  const auto ids = torch::arange(request->first_id, request->first_id + n,
                                 torch::dtype(torch::kLong).device(device_));
  tq.queues->push(request->images.to(device_), ids);
  request->images = at::Tensor();  // the queues hold what they need
  collect(tq);
}

void ElasticScheduler::answer_alone(std::shared_ptr<Request> request) {
  try {
    run_alone(*request);
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      admitted_images_ -= request->remaining;
      stats_.queued_images = admitted_images_;
    }
    request->promise.set_exception(std::current_exception());
  }
}

void ElasticScheduler::run_alone(Request& request) {
  const auto images = request.images.to(device_);
  const int64_t n = images.size(0);
  std::vector<at::Tensor> logits, stages, entropy;
  for (int64_t start = 0; start < n; start += options_.max_batch) {
    const auto out =
        model_.forward_elastic(images.narrow(0, start, std::min(options_.max_batch, n - start)),
                               request.tau, options_.rule, request.stages);
    logits.push_back(out.logits.to(at::kFloat).cpu());
    stages.push_back(out.exit_stage.cpu());
    entropy.push_back(out.entropy.cpu());
    for (int64_t s = 0; s < model_.num_stages(); ++s) {
      if (out.samples_per_stage[s] == 0) continue;
      alone_fill_[s].calls += 1;
      alone_fill_[s].images += out.samples_per_stage[s];
    }
  }
  const auto stage = at::cat(stages);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto* st = stage.data_ptr<int64_t>();
    for (int64_t j = 0; j < n; ++j) ++stats_.exits[st[j]];
    admitted_images_ -= n;
    stats_.queued_images = admitted_images_;
    stats_.fill = alone_fill_;
  }
  request.promise.set_value({at::cat(logits), stage, at::cat(entropy)});
}

void ElasticScheduler::collect(TauQueues& tq) {
  const auto exited = tq.queues->take_exited();
  if (exited.size() == 0) return;
  const auto ids = exited.ids.cpu();
  const auto logits = exited.logits.to(at::kFloat).cpu();
  const auto stage = exited.exit_stage.cpu();
  const auto entropy = exited.entropy.cpu();
  // Each request's rows: (row in `exited`, row in the request).
  std::map<Request*, std::pair<std::vector<int64_t>, std::vector<int64_t>>> rows;
  const auto* id = ids.data_ptr<int64_t>();
  for (int64_t j = 0; j < exited.size(); ++j) {
    auto* request = std::prev(by_first_id_.upper_bound(id[j]))->second.get();
    auto& r = rows[request];
    r.first.push_back(j);
    r.second.push_back(id[j] - request->first_id);
  }
  for (auto& [request, r] : rows) {
    const auto from = torch::tensor(r.first, torch::kLong);
    const auto to = torch::tensor(r.second, torch::kLong);
    auto& a = request->answer;
    a.logits.index_copy_(0, to, logits.index_select(0, from));
    a.exit_stage.index_copy_(0, to, stage.index_select(0, from));
    a.entropy.index_copy_(0, to, entropy.index_select(0, from));
    request->remaining -= static_cast<int64_t>(r.first.size());
  }
  // Requests whose last image exited are answered (after the counters, so that a client who
  // has its answer finds the room it freed); the deadline follows the oldest request left.
  std::vector<std::shared_ptr<Request>> done;
  int64_t finished = 0;
  for (auto& [request, r] : rows) {
    if (request->remaining > 0) continue;
    finished += request->answer.exit_stage.size(0);
    done.push_back(by_first_id_.at(request->first_id));
    by_first_id_.erase(request->first_id);
  }
  while (!tq.waiting.empty() && tq.waiting.front()->remaining == 0) tq.waiting.pop_front();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto* s = stage.data_ptr<int64_t>();
    for (int64_t j = 0; j < exited.size(); ++j) ++stats_.exits[s[j]];
    admitted_images_ -= finished;
    stats_.queued_images = admitted_images_;
    stats_.fill = total_fill();
  }
  for (auto& request : done) request->promise.set_value(std::move(request->answer));
}

namespace {

void add_fill(std::vector<models::StageFill>& total, const std::vector<models::StageFill>& more) {
  for (size_t k = 0; k < total.size(); ++k) {
    total[k].calls += more[k].calls;
    total[k].images += more[k].images;
  }
}

}  // namespace

std::vector<models::StageFill> ElasticScheduler::total_fill() const {
  auto fill = retired_fill_;
  for (const auto& [key, q] : queues_) add_fill(fill, q.queues->fill());
  return fill;
}

void ElasticScheduler::retire_idle() {
  // A threshold's queues go once they hold nothing (a client may send many thresholds); their
  // counts stay in the totals.
  for (auto it = queues_.begin(); it != queues_.end();) {
    if (!it->second.waiting.empty() || it->second.queues->queued() > 0) {
      ++it;
      continue;
    }
    add_fill(retired_fill_, it->second.queues->fill());
    it = queues_.erase(it);
  }
}

void ElasticScheduler::drain_due(Clock::time_point now) {
  const auto budget =
      std::chrono::duration<double, std::milli>(std::max(0.0, options_.max_delay_ms - drain_ms_));
  for (auto& [key, tq] : queues_) {
    if (tq.waiting.empty()) continue;
    const bool due =
        now == Clock::time_point::max() ||
        now >= tq.waiting.front()->arrival + std::chrono::duration_cast<Clock::duration>(budget);
    if (!due) continue;
    if (now != Clock::time_point::max()) {
      std::lock_guard<std::mutex> lock(mutex_);
      ++stats_.deadline_drains;  // before the answers it releases
    }
    const auto start = Clock::now();
    tq.queues->drain();
    collect(tq);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    // What a drain costs, so that the next one starts early enough: smoothed, and never less
    // than the last one.
    drain_ms_ = std::max(ms, 0.8 * drain_ms_ + 0.2 * ms);
  }
}

void ElasticScheduler::fail_all(const std::exception_ptr& error,
                                std::deque<std::shared_ptr<Request>>& not_admitted) {
  // Every request in the queues shares the failed forward's fate; those not yet admitted too.
  std::vector<std::shared_ptr<Request>> failed;
  for (auto& [first, request] : by_first_id_) failed.push_back(request);
  for (auto& request : not_admitted) failed.push_back(std::move(request));
  not_admitted.clear();
  by_first_id_.clear();
  for (auto& [key, q] : queues_) add_fill(retired_fill_, q.queues->fill());
  queues_.clear();  // what they held belonged to the failed requests
  int64_t images = 0;
  for (const auto& request : failed)
    images += request->answer.exit_stage.defined() ? request->answer.exit_stage.size(0)
                                                   : request->remaining;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    admitted_images_ -= images;
    stats_.queued_images = admitted_images_;
  }
  for (auto& request : failed) request->promise.set_exception(error);
}

}  // namespace thinkingvit::eval
