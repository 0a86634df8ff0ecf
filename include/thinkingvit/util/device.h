#pragma once
// The device module of the platform layer (with async_copy.h, cuda_graph.h and process_group.h;
// no other file includes a CUDA or c10d header): which GPUs the machine has and whether this
// build can use them, the CUDA runtime it loaded, device choice and precision switches. CUDA
// calls compile only in CUDA builds (THINKINGVIT_HAVE_CUDA); elsewhere they report that no GPU
// is there. The NVIDIA probe reads the kernel driver's files, without CUDA: a run asked to pick
// its device ("auto") on a GPU node that this build or its driver cannot use is an error saying
// which, never a silent run on the CPUs.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>

namespace thinkingvit::compat {

// True in a CUDA build with at least one visible GPU.
bool cuda_available();
int cuda_device_count();
// "NVIDIA H200" for a CUDA device (its index, or the current one), "" elsewhere.
std::string gpu_name(const c10::Device& device);

// Bytes of memory on `device`: its GPU's total for CUDA, this machine's physical memory for the
// CPU; 0 when unknown.
double device_memory_bytes(const c10::Device& device);

// "cpu", "cuda" (the current GPU) or "cuda:N" -> a device; an unknown name, or a GPU this build
// or machine does not have, is an Error naming `flag`.
c10::Device parse_device(const std::string& name, const std::string& flag);

// Makes `device` the current CUDA device of this process (no-op on CPU). Call before any other
// CUDA work, so that NCCL, streams and allocations land on the process's own GPU.
void set_current_device(const c10::Device& device);

// Waits for queued kernels on `device` (no-op on CPU): call before reading a clock.
void synchronize(const c10::Device& device);

// precision.tf32: float32 matmuls and cuDNN convolutions may use TF32 on Ampere and newer GPUs
// ("high" matmul precision); false restores full float32 ("highest").
void set_tf32(bool enabled);
bool tf32_enabled();

// The versions this binary runs with: LibTorch, CUDA runtime ("cpu" in a CPU build or without a
// GPU), cuDNN and NCCL ("-" where absent).
struct RuntimeVersions {
  std::string torch, cuda, cudnn, nccl;
};
RuntimeVersions runtime_versions();

// RAII: enables autocast to `dtype` for `device_type` (kCPU: bf16 only; kCUDA: bf16/fp16),
// restores the previous state on destruction. A disabled guard does nothing.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device_type, c10::ScalarType dtype, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_type_;
  bool enabled_;
  bool prev_enabled_ = false;
  c10::ScalarType prev_dtype_ = c10::ScalarType::Undefined;
};

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

}  // namespace thinkingvit::compat
