#include "thinkingvit/util/gpu_probe.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/compat.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::util {

namespace fs = std::filesystem;

NvidiaProbe probe_nvidia(const std::string& root) {
  NvidiaProbe probe;
  const fs::path driver = fs::path(root) / "proc/driver/nvidia";
  std::error_code error;
  for (fs::directory_iterator it(driver / "gpus", error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_directory(error)) ++probe.gpus;
  }
  // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..."
  std::ifstream version(driver / "version");
  std::string line;
  static const std::regex kVersion(R"(Kernel Module\s+(?:for \S+\s+)?([0-9]+(?:\.[0-9]+)+))");
  if (version && std::getline(version, line)) {
    std::smatch match;
    if (std::regex_search(line, match, kVersion)) probe.driver_version = match[1];
  }
  return probe;
}

int min_driver_for_cuda(int major) {
  switch (major) {
    case 13: return 580;
    case 12: return 525;
    case 11: return 450;
    default: return 0;
  }
}

std::string auto_device_problem(const NvidiaProbe& probe, int cuda_devices,
                                const std::string& cuda_build, const std::string& cpu_reason,
                                const char* visible_devices) {
  if (probe.gpus == 0 || cuda_devices > 0) return "";
  std::ostringstream out;
  out << "this machine has " << probe.gpus << " NVIDIA GPU(s) (driver "
      << (probe.driver_version.empty() ? "version unknown" : probe.driver_version) << "), but ";
  if (cuda_build == "cpu") {
    out << "this thinkingvit build has no CUDA ("
        << (cpu_reason.empty() ? "configured without it" : cpu_reason)
        << "); rebuild with scripts/setup.sh on a host whose nvcc matches the LibTorch's CUDA";
    return out.str();
  }
  const int major = std::atoi(cuda_build.c_str());
  const int needed = min_driver_for_cuda(major);
  const int driver = std::atoi(probe.driver_version.c_str());
  if (needed > 0 && driver > 0 && driver < needed) {
    out << "driver " << probe.driver_version << " is older than this build's CUDA " << cuda_build
        << " needs (>= " << needed << "); update the driver, or use a LibTorch built for an "
        << "older CUDA";
    return out.str();
  }
  out << "CUDA " << cuda_build << " sees none of them";
  if (visible_devices) out << " (CUDA_VISIBLE_DEVICES='" << visible_devices << "')";
  out << "; check the driver with nvidia-smi";
  return out.str();
}

c10::Device resolve_auto_device(const std::string& key) {
  const int devices = compat::cuda_device_count();
  if (devices > 0) return c10::Device(c10::kCUDA);
  const char* root = std::getenv("THINKINGVIT_GPU_PROBE_ROOT");
  const auto problem =
      auto_device_problem(probe_nvidia(root && *root ? root : "/"), devices, kCudaBuildVersion,
                          kCpuOnlyReason, std::getenv("CUDA_VISIBLE_DEVICES"));
  TVIT_CHECK(problem.empty(), key, " auto: ", problem,
             ". Set it to cpu to run on the CPUs on purpose");
  return c10::Device(c10::kCPU);
}

}  // namespace thinkingvit::util
