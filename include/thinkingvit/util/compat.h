#pragma once
// Everything that differs between LibTorch 1.13 (Debian, CPU) and LibTorch 2.x (pip wheels,
// CUDA) lives behind this header, so the rest of the code base is version-free.

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>

namespace thinkingvit::compat {

// Major/minor version of the LibTorch this was compiled against, e.g. "1.13".
std::string torch_version();

// True where LibTorch has a public fused scaled-dot-product attention (2.x).
bool has_public_fused_attention();

// softmax(q kᵀ · scale) v through LibTorch's fused kernel: the public
// at::scaled_dot_product_attention on 2.x, the private composite one on 1.13.
// q, k, v: B x H x N x Dh -> B x H x N x Dh. scale is Dh^-0.5.
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The same maths written out: softmax(q kᵀ · Dh^-0.5) v.
at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

bool cuda_available();

// Waits for queued kernels on `device` (no-op on CPU): call before reading a clock.
void synchronize(const c10::Device& device);

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

// A c10d process group over the ranks of a job, reduced to what training needs. The c10d types
// (their class hierarchy changed between 1.13 and 2.x) stay inside compat_distributed.cpp.
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  // In place, every rank ends with the elementwise sum (Gloo refuses AVG: divide yourself).
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // In place, every rank ends with `root`'s values.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
};

// Joins (rank 0: hosts) a TCP store at master_addr:master_port and creates the process group:
// "gloo" (CPU tensors) or "nccl" (CUDA tensors, where LibTorch was built with it). Every
// collective and the rendezvous fail with an Error after `timeout` instead of hanging.
std::unique_ptr<ProcessGroup> make_process_group(const std::string& backend,
                                                 const std::string& master_addr, int master_port,
                                                 int rank, int world_size,
                                                 std::chrono::milliseconds timeout);

}  // namespace thinkingvit::compat
