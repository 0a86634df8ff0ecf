#include "thinkingvit/train/hooks.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "stop_signals.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::train {

TrainHooks hooks_from_environment() {
  TrainHooks hooks;
  const char* spec = std::getenv("THINKINGVIT_KILL_AT");
  if (spec == nullptr || *spec == '\0') return hooks;
  char point[16] = {};
  long long batch = 0;
  int rank = -1;
  TVIT_CHECK(std::sscanf(spec, "%15[a-z0-9]:%lld:%d", point, &batch, &rank) >= 2,
             "THINKINGVIT_KILL_AT: expected POINT:BATCH[:RANK], found '", spec, "'");
  hooks.point = point;
  hooks.batch = batch;
  hooks.rank = rank;
  return hooks;
}

FaultPoints::FaultPoints(const TrainHooks& hooks, int rank) {
  if (hooks.point.empty() || (hooks.rank >= 0 && hooks.rank != rank)) return;
  point_ = hooks.point;
  batch_ = hooks.batch;
}

void FaultPoints::operator()(const std::string& point, int64_t global_batch) const {
  if (global_batch != batch_) return;
  if (point_ == point) std::raise(SIGKILL);
  if (point != "batch") return;
  if (point_ == "sigterm") std::raise(SIGTERM);
  if (point_ == "sigusr1") std::raise(SIGUSR1);
  if (point_ == "pause") {
    spdlog::warn("THINKINGVIT_KILL_AT: paused after batch {} until a stop signal", global_batch);
    for (int i = 0; i < 6000 && StopSignals::received() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace thinkingvit::train
