#include "stop_signals.h"

#include <atomic>

namespace thinkingvit::train {

namespace {

std::atomic<int> stop_signal{0};  // the last SIGTERM / SIGUSR1 received, 0: none
static_assert(std::atomic<int>::is_always_lock_free, "a signal handler may only touch these");

extern "C" void note_stop_signal(int signal) { stop_signal.store(signal); }

}  // namespace

StopSignals::StopSignals() {
  stop_signal.store(0);
  struct sigaction action = {};
  action.sa_handler = note_stop_signal;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &action, &previous_[i]);
}

StopSignals::~StopSignals() {
  for (size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &previous_[i], nullptr);
}

int StopSignals::received() { return stop_signal.load(); }

}  // namespace thinkingvit::train
