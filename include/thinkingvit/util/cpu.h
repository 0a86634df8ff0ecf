#pragma once
// Run-time CPU dispatch for the few hand-vectorised loops (attention for short sequences,
// image resampling): such a loop is written once as an inline template, instantiated in a
// function compiled for AVX2 + FMA and in a baseline one, and cpu_has_avx2_fma() picks.

#include <atomic>

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

}  // namespace thinkingvit::util
