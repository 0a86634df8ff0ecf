#include "thinkingvit/util/device.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#ifdef THINKINGVIT_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/cuda/nccl.h>
#endif

#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::compat {

namespace fs = std::filesystem;

int cuda_device_count() {
#ifdef THINKINGVIT_HAVE_CUDA
  return static_cast<int>(c10::cuda::device_count());
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

double device_memory_bytes(const c10::Device& device) {
#ifdef THINKINGVIT_HAVE_CUDA
  if (device.is_cuda() && cuda_available()) {
    return static_cast<double>(at::cuda::getDeviceProperties(device.has_index()
                                                                 ? device.index()
                                                                 : c10::cuda::current_device())
                                   ->totalGlobalMem);
  }
#endif
  if (device.is_cuda()) return 0;
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0;
}

std::string gpu_name(const c10::Device& device) {
#ifdef THINKINGVIT_HAVE_CUDA
  if (device.is_cuda() && cuda_available()) {
    return at::cuda::getDeviceProperties(device.has_index() ? device.index()
                                                            : c10::cuda::current_device())
        ->name;
  }
#endif
  (void)device;
  return "";
}

c10::Device parse_device(const std::string& name, const std::string& flag) {
  std::optional<c10::Device> device;
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
  }
  TVIT_CHECK(device && (device->is_cpu() || device->is_cuda()), flag,
             ": expected cpu, cuda or cuda:N, found '", name, "'");
  if (device->is_cuda()) {
    const int count = cuda_device_count();
    TVIT_CHECK(count > 0, flag, " ", name, ": no CUDA GPU is visible to this ",
#ifdef THINKINGVIT_HAVE_CUDA
               "process (check CUDA_VISIBLE_DEVICES and the driver)"
#else
               "CPU-only build (rebuild with the CUDA toolkit installed)"
#endif
    );
    TVIT_CHECK(!device->has_index() || device->index() < count, flag, " ", name, ": only ", count,
               " GPU(s) visible (cuda:0 .. cuda:", count - 1, ")");
  }
  return *device;
}

void set_current_device(const c10::Device& device) {
  if (!device.is_cuda()) return;
#ifdef THINKINGVIT_HAVE_CUDA
  c10::cuda::set_device(device.has_index() ? device.index() : 0);
#else
  fail("device ", device.str(), ": this is a CPU-only build");
#endif
}

void synchronize(const c10::Device& device) {
  if (!device.is_cuda()) return;
#ifdef THINKINGVIT_HAVE_CUDA
  const c10::cuda::CUDAGuard guard(device);  // that device, not the current one
  c10::cuda::device_synchronize();
#endif
}

void set_tf32(bool enabled) {
  at::globalContext().setFloat32MatmulPrecision(enabled ? "high" : "highest");
  at::globalContext().setAllowTF32CuDNN(enabled);
}

bool tf32_enabled() {
  return at::globalContext().float32MatmulPrecision() != at::Float32MatmulPrecision::HIGHEST;
}

#ifdef THINKINGVIT_HAVE_CUDA
namespace {

// 13000 -> "13.0"; 91900 -> "9.19.0" (cuDNN 9 codes major*10000 + minor*100 + patch).
std::string version_from_code(long code, bool three_parts) {
  if (three_parts) {
    return std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." +
           std::to_string(code % 100);
  }
  return std::to_string(code / 1000) + "." + std::to_string(code % 1000 / 10);
}

}  // namespace
#endif

RuntimeVersions runtime_versions() {
  RuntimeVersions v{std::to_string(TORCH_VERSION_MAJOR) + "." +
                        std::to_string(TORCH_VERSION_MINOR) + "." +
                        std::to_string(TORCH_VERSION_PATCH),
                    "cpu", "-", "-"};
#ifdef THINKINGVIT_HAVE_CUDA
  const auto& hooks = at::detail::getCUDAHooks();
  if (hooks.hasCUDA()) {
    v.cuda = version_from_code(hooks.versionCUDART(), /*three_parts=*/false);
    v.cudnn = version_from_code(hooks.versionCuDNN(), /*three_parts=*/true);
    // Packed as major << 32 | minor << 16 | patch.
    const uint64_t nccl = torch::cuda::nccl::version();
    v.nccl = std::to_string(nccl >> 32) + "." + std::to_string((nccl >> 16) & 0xffff) + "." +
             std::to_string(nccl & 0xffff);
  }
#endif
  return v;
}

AutocastGuard::AutocastGuard(c10::DeviceType device_type, c10::ScalarType dtype, bool enabled)
    : device_type_(device_type), enabled_(enabled) {
  if (!enabled_) return;
  prev_enabled_ = at::autocast::is_autocast_enabled(device_type_);
  prev_dtype_ = at::autocast::get_autocast_dtype(device_type_);
  at::autocast::set_autocast_enabled(device_type_, true);
  at::autocast::set_autocast_dtype(device_type_, dtype);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_type_, prev_enabled_);
  at::autocast::set_autocast_dtype(device_type_, prev_dtype_);
}

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
    case 13:
      return 580;
    case 12:
      return 525;
    case 11:
      return 450;
    default:
      return 0;
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
  const auto problem = auto_device_problem(probe_nvidia(root && *root ? root : "/"), devices,
                                           util::kCudaBuildVersion, util::kCpuOnlyReason,
                                           std::getenv("CUDA_VISIBLE_DEVICES"));
  TVIT_CHECK(problem.empty(), key, " auto: ", problem,
             ". Set it to cpu to run on the CPUs on purpose");
  return c10::Device(c10::kCPU);
}

}  // namespace thinkingvit::compat
