#pragma once
// NVIDIA GPUs as the machine reports them, without CUDA: the kernel driver's files. A run asked
// to pick its device ("auto") on a GPU node that this build or its driver cannot use is an error
// saying which, never a silent run on the CPUs.

#include <c10/core/Device.h>

#include <string>

namespace thinkingvit::util {

struct NvidiaProbe {
  int gpus = 0;                // folders under proc/driver/nvidia/gpus (one per GPU)
  std::string driver_version;  // from proc/driver/nvidia/version ("580.65.06"), or empty
};

// Reads `root`/proc/driver/nvidia (root "/" on a real machine; tests pass a prepared folder).
NvidiaProbe probe_nvidia(const std::string& root = "/");

// The oldest Linux driver that runs a CUDA `major`.x build (0 where unknown): 13 -> 580, 12 -> 525.
int min_driver_for_cuda(int major);

// Why "auto" cannot take a GPU that the machine has, or "" when it can or the machine has none:
// a CPU-only build (with the reason the build recorded), a driver older than this build's CUDA
// needs, or CUDA seeing no device (CUDA_VISIBLE_DEVICES). `cuda_devices` is what CUDA sees.
std::string auto_device_problem(const NvidiaProbe& probe, int cuda_devices,
                                const std::string& cuda_build, const std::string& cpu_reason,
                                const char* visible_devices);

// "auto": cuda where CUDA sees a GPU, cpu on a machine without NVIDIA GPUs, and an Error naming
// `key` (run.device, --device) and the cause on a GPU machine that this build cannot use. The
// probe root is THINKINGVIT_GPU_PROBE_ROOT when set (tests), else "/".
c10::Device resolve_auto_device(const std::string& key);

}  // namespace thinkingvit::util
