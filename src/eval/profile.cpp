#include "thinkingvit/eval/profile.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <unordered_map>

#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::eval {

namespace {

namespace kineto = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// Stops the profiler when the profiled function throws.
class ProfilerSession {
 public:
  explicit ProfilerSession(const c10::Device& device) {
    // A CPU profile: keep Kineto from reporting that it found no GPU (its own logging, read when
    // the profiler starts; a level the user set stays).
    if (!device.is_cuda()) ::setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
    activities_.insert(ActivityType::CPU);
    if (device.is_cuda()) activities_.insert(ActivityType::CUDA);
    kineto::prepareProfiler(config_, activities_);
    kineto::enableProfiler(config_, activities_);
    active_ = true;
  }
  std::unique_ptr<kineto::ProfilerResult> stop() {
    active_ = false;
    return kineto::disableProfiler();
  }
  ~ProfilerSession() {
    if (active_) kineto::disableProfiler();
  }
  ProfilerSession(const ProfilerSession&) = delete;
  ProfilerSession& operator=(const ProfilerSession&) = delete;

 private:
  ProfilerConfig config_{ProfilerState::KINETO};
  std::set<ActivityType> activities_;
  bool active_ = false;
};

struct Span {
  const kineto::KinetoEvent* event;
  uint64_t start, end;
};

}  // namespace

Profile profile_calls(const std::function<void()>& fn, int calls, const c10::Device& device,
                      const std::string& trace_path) {
  TVIT_CHECK(calls > 0, "profile: calls must be > 0, found ", calls);
  compat::synchronize(device);
  ProfilerSession session(device);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) fn();
  compat::synchronize(device);
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto result = session.stop();
  if (!trace_path.empty()) {
    result->save(trace_path);
  }

  // Host operators per thread, parents before the operators they call.
  std::map<uint64_t, std::vector<Span>> threads;
  struct Sums {
    std::string where;
    double calls = 0, self_ns = 0, total_ns = 0;
  };
  std::unordered_map<std::string, Sums> sums;
  for (const auto& e : result->events()) {
    if (e.isHiddenEvent()) continue;
    if (e.deviceType() == c10::DeviceType::CPU) {
      threads[e.startThreadId()].push_back({&e, e.startNs(), e.endNs()});
    } else {
      auto& s = sums["gpu\t" + e.name()];
      s.where = "gpu";
      s.calls += 1;
      s.self_ns += static_cast<double>(e.durationNs());
      s.total_ns += static_cast<double>(e.durationNs());
    }
  }
  for (auto& [thread, spans] : threads) {
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
      return a.start != b.start ? a.start < b.start : a.end > b.end;
    });
    std::vector<std::pair<const Span*, double>> open;  // span, time of the operators it called
    auto close = [&](const Span* span, double children_ns) {
      auto& s = sums["cpu\t" + span->event->name()];
      s.where = "cpu";
      s.calls += 1;
      const double total = static_cast<double>(span->end - span->start);
      s.total_ns += total;
      s.self_ns += std::max(0.0, total - children_ns);
    };
    for (const auto& span : spans) {
      while (!open.empty() && open.back().first->end <= span.start) {
        close(open.back().first, open.back().second);
        open.pop_back();
      }
      if (!open.empty()) open.back().second += static_cast<double>(span.end - span.start);
      open.emplace_back(&span, 0.0);
    }
    while (!open.empty()) {
      close(open.back().first, open.back().second);
      open.pop_back();
    }
  }

  Profile profile;
  profile.wall_ms = wall_ms / calls;
  for (const auto& [key, s] : sums) {
    profile.ops.push_back({key.substr(key.find('\t') + 1), s.where, s.calls / calls,
                           s.self_ns / 1e6 / calls, s.total_ns / 1e6 / calls});
  }
  std::sort(profile.ops.begin(), profile.ops.end(), [](const OpStat& a, const OpStat& b) {
    if (a.where != b.where) return a.where < b.where;  // cpu first
    if (a.self_ms != b.self_ms) return a.self_ms > b.self_ms;
    return a.name < b.name;
  });
  return profile;
}

Table profile_table(const std::vector<std::pair<std::string, Profile>>& profiles, int top) {
  Table table({"row", "where", "op", "calls", "self_ms", "total_ms", "self_pct", "wall_ms"});
  for (const auto& [label, profile] : profiles) {
    std::map<std::string, double> self_sum;
    for (const auto& op : profile.ops) self_sum[op.where] += op.self_ms;
    std::map<std::string, int> shown;
    for (const auto& op : profile.ops) {
      if (top > 0 && shown[op.where]++ >= top) continue;
      const double sum = self_sum[op.where];
      table.add_row({label, op.where, op.name, op.calls, op.self_ms, op.total_ms,
                     sum > 0 ? 100.0 * op.self_ms / sum : 0.0, profile.wall_ms});
    }
  }
  table.set_precision(3);
  return table;
}

}  // namespace thinkingvit::eval
