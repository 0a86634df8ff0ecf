#pragma once
// SIGTERM and SIGUSR1 (what Slurm sends before preemption or the time limit) while a run trains:
// they only raise a flag; the run finishes its step, writes a checkpoint and stops.

#include <csignal>

#include <array>

namespace thinkingvit::train {

// Installs the handlers for its lifetime (the previous ones come back after).
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The last stop signal received since construction, 0 for none.
  static int received();

 private:
  static constexpr std::array<int, 2> kSignals = {SIGTERM, SIGUSR1};
  std::array<struct sigaction, 2> previous_;
};

}  // namespace thinkingvit::train
