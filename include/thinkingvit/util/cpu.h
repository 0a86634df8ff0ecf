#pragma once
// Run-time CPU dispatch for the few hand-vectorised loops (attention for short sequences,
// image resampling): such a loop is written once as an inline template, instantiated in a
// function compiled for AVX2 + FMA and in a baseline one, and cpu_has_avx2_fma() picks.

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <thread>

#if defined(__x86_64__) && defined(__GNUC__)
#define TVIT_HAVE_AVX2_COPY 1
#define TVIT_TARGET_AVX2 __attribute__((target("avx2,fma")))
// Forces a template into each copy (else both copies would call one baseline instance).
#define TVIT_INLINE inline __attribute__((always_inline))
#else
#define TVIT_HAVE_AVX2_COPY 0
#define TVIT_TARGET_AVX2
#define TVIT_INLINE inline
#endif

namespace thinkingvit::util {

// Off: every dispatch takes the baseline copy (tests compare the two; also a debugging aid).
inline std::atomic<bool>& simd_dispatch_enabled() {
  static std::atomic<bool> enabled{true};
  return enabled;
}

inline bool cpu_has_avx2_fma() {
#if TVIT_HAVE_AVX2_COPY
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has && simd_dispatch_enabled().load(std::memory_order_relaxed);
#else
  return false;
#endif
}

// The cores this process may run on: its affinity mask (a cpuset, taskset, Slurm's
// --cpus-per-task binding, a container's limit), not the machine's count, which
// std::thread::hardware_concurrency() reports.
inline int usable_cores() {
  for (int n = 1024; n <= 1 << 16; n *= 4) {  // masks past CPU_SETSIZE too
    cpu_set_t* set = CPU_ALLOC(n);
    if (set == nullptr) break;
    const size_t bytes = CPU_ALLOC_SIZE(n);
    CPU_ZERO_S(bytes, set);
    const bool ok = sched_getaffinity(0, bytes, set) == 0;
    const int count = ok ? CPU_COUNT_S(bytes, set) : 0;
    CPU_FREE(set);
    if (ok) return std::max(1, count);
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace thinkingvit::util
