#pragma once
// Where the time of a call goes, operator by operator: LibTorch's profiler (Kineto) around a few
// calls, reduced to self and total time per operator (and, on a GPU, per kernel).

#include <c10/core/Device.h>

#include <functional>
#include <string>
#include <vector>

#include "thinkingvit/eval/table.h"

namespace thinkingvit::eval {

struct OpStat {
  std::string name;     // "aten::addmm", a record_function scope, or a kernel's name
  std::string where;    // "cpu" (host operators) or "gpu" (device kernels)
  double calls = 0;     // per profiled call
  double self_ms = 0;   // per profiled call: its own time, nested operators' time taken out
  double total_ms = 0;  // per profiled call: with what it called (gpu: equal to self_ms)
};

struct Profile {
  std::vector<OpStat> ops;  // cpu operators by self time, then gpu kernels by time
  double wall_ms = 0;       // per profiled call, under the profiler
};

// Runs fn `calls` times (after the caller's warm-up) under the profiler and returns per-call
// figures. Self times are found by nesting the operators of each host thread (an operator's
// self time is its duration less that of the operators it called). `trace_path`, when not
// empty, receives the Chrome trace (chrome://tracing, Perfetto) from the profiler's own writer:
// give a path inside a folder that is written atomically (util::write_folder_atomic).
Profile profile_calls(const std::function<void()>& fn, int calls, const c10::Device& device,
                      const std::string& trace_path = "");

// The `top` operators of each profile by self time (every one when top <= 0), one row each:
// label, where, operator, calls, self and total ms per call, share of the self time of its kind.
Table profile_table(const std::vector<std::pair<std::string, Profile>>& profiles, int top);

}  // namespace thinkingvit::eval
