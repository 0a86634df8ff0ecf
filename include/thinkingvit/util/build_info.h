#pragma once
// What this binary was built from: set by CMake in one place (build/generated/build_info.cpp).

#include <string>

namespace thinkingvit::util {

extern const char* const kVersion;            // thinkingvit, CMake's project(VERSION)
extern const char* const kTorchBuildVersion;  // LibTorch compiled against, e.g. "2.11.0"
extern const char* const kCudaBuildVersion;   // CUDA toolkit compiled with, or "cpu"
extern const char* const kCpuOnlyReason;      // why a build has no CUDA ("" in CUDA builds)
extern const char* const kNcclBuildVersion;   // NCCL headers compiled with, or "none"
extern const char* const kBuildType;          // Release, Debug, ...

// One line for --version and every benchmark row: "thinkingvit 0.1.0, LibTorch 2.11.0,
// CUDA 13.0 (runtime 13.0, cuDNN 9.19.0, NCCL 2.28.9) | cpu, Release".
std::string build_summary();

}  // namespace thinkingvit::util
