#pragma once
// Limits that more than one layer checks against: values beyond them are broken input (a file,
// a key, a flag), refused before anything is allocated.

namespace thinkingvit::util {

// The largest image side, of a model's input or of any resize on the way there.
constexpr double kMaxImageSize = 16384;
// The most threads a setting may ask for (data.num_workers, run.threads, --threads).
constexpr int kMaxThreads = 512;

}  // namespace thinkingvit::util
