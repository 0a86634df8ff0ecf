#pragma once
// Fault points for tests, in one place: a run stopped early, killed, signalled, paused or fed NaN
// at a known batch. In-process tests set TrainOptions::hooks. The subprocess tests (kill and
// resume, torchrun and srun launches) set THINKINGVIT_KILL_AT=POINT:N[:RANK], which `thinkingvit
// train` reads once at start (hooks_from_environment); nothing else reads it.

#include <cstdint>
#include <string>

namespace thinkingvit::train {

struct TrainHooks {
  int64_t stop_after_epochs = -1;  // stop after this many epochs, as if killed (-1: never)
  // At global batch `batch` (counted from 1 over the whole run): "forward" (SIGKILL after the
  // forward pass, mid-step), "batch" (SIGKILL after the step), "checkpoint" (SIGKILL halfway
  // through writing the checkpoint that follows the batch), "sigterm" / "sigusr1" (that signal
  // after the step), "pause" (wait after the step until a stop signal arrives, at most 300 s:
  // a launcher's signal, sent by the test once the log says so, lands at a known batch), "nan"
  // (the batch's images become NaN: a loss that blows up). Empty: none.
  std::string point;
  int64_t batch = -1;
  int rank = -1;  // only on this rank (-1: every rank)
};

// THINKINGVIT_KILL_AT=POINT:N[:RANK] as TrainHooks (none when unset or empty); anything else is
// an Error naming the variable.
TrainHooks hooks_from_environment();

// The hooks of one process of a run, where the trainer reaches its fault points.
class FaultPoints {
 public:
  FaultPoints() = default;
  FaultPoints(const TrainHooks& hooks, int rank);
  // At `point` ("forward", "batch", "checkpoint") of global batch `global_batch`.
  void operator()(const std::string& point, int64_t global_batch) const;
  // Whether this batch's images are to become NaN.
  bool poisons(int64_t global_batch) const { return point_ == "nan" && global_batch == batch_; }

 private:
  std::string point_;
  int64_t batch_ = -1;
};

}  // namespace thinkingvit::train
