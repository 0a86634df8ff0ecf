#pragma once
// Copies between host and GPU that neither side waits for: input batches on a copy stream of
// their own, small tensors staged in pinned memory, results read back after an event. On the CPU
// each is the tensor itself.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>

namespace thinkingvit::compat {

// A CUDA event that marks when an asynchronous copy is done (Upload, Readback); defined in CUDA
// builds only.
struct CopyEvent;

// A host tensor (an input batch) copied to `device` without holding up the GPU's work: on CUDA
// the copy runs on a copy stream of its own (one per GPU, created for this and shared with
// nothing else), so that the next batch's copy overlaps the kernels of the current one (the host
// tensor must be pinned for that; from pageable memory the copy is synchronous, still correct).
// take() orders the current stream after the copy and returns the device tensor. For a CPU
// device, take() returns the tensor itself.
class Upload {
 public:
  Upload() = default;
  Upload(const at::Tensor& host, const c10::Device& device);
  at::Tensor take();

 private:
  at::Tensor tensor_;
  std::shared_ptr<CopyEvent> ready_;
};

// A small host tensor (targets, step counts) on `device` without the host waiting for the GPU:
// on CUDA it is staged in pinned memory and copied on the current stream (a copy from pageable
// memory would wait for every kernel queued so far). Elsewhere: host.to(device).
at::Tensor to_device_async(const at::Tensor& host, const c10::Device& device);

// A small device tensor (a step's losses, a flag) copied to the host without waiting for the
// GPU: on CUDA into pinned memory, after the kernels queued so far on the current stream, with
// an event. get() waits for those kernels only (not for work queued after the copy) and returns
// the CPU tensor; it never synchronises the whole device. For a CPU tensor: the tensor itself.
class Readback {
 public:
  Readback() = default;
  explicit Readback(const at::Tensor& tensor);
  bool defined() const { return host_.defined(); }
  const at::Tensor& get();

 private:
  at::Tensor host_;
  std::shared_ptr<CopyEvent> ready_;
};

}  // namespace thinkingvit::compat
