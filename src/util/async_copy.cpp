#include "thinkingvit/util/async_copy.h"

#include <ATen/ATen.h>

#include <map>
#include <mutex>

#ifdef THINKINGVIT_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace thinkingvit::compat {

#ifdef THINKINGVIT_HAVE_CUDA
struct CopyEvent {
  at::cuda::CUDAEvent event;
};

namespace {

// The input copy stream of a GPU: a stream of its own, not one of LibTorch's pool streams
// (which NCCL and graph capture also draw from), created once and kept for the process.
c10::cuda::CUDAStream input_copy_stream(c10::DeviceIndex index) {
  static std::mutex mutex;
  static std::map<c10::DeviceIndex, cudaStream_t> streams;
  const std::lock_guard<std::mutex> lock(mutex);
  auto it = streams.find(index);
  if (it == streams.end()) {
    cudaStream_t stream = nullptr;
    C10_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    it = streams.emplace(index, stream).first;
  }
  return c10::cuda::getStreamFromExternal(it->second, index);
}

}  // namespace
#endif

at::Tensor to_device_async(const at::Tensor& host, const c10::Device& device) {
#ifdef THINKINGVIT_HAVE_CUDA
  if (device.is_cuda() && !host.is_cuda()) {
    const auto pinned = host.is_pinned() ? host : host.pin_memory();
    return pinned.to(device, /*non_blocking=*/true);
  }
#endif
  return host.to(device);
}

Upload::Upload(const at::Tensor& host, const c10::Device& device) {
#ifdef THINKINGVIT_HAVE_CUDA
  if (device.is_cuda() && !host.is_cuda()) {
    const c10::cuda::CUDAGuard device_guard(device);
    const auto copy_stream = input_copy_stream(device_guard.current_device().index());
    {
      const c10::cuda::CUDAStreamGuard stream_guard(copy_stream);
      tensor_ = host.to(device_guard.current_device(), /*non_blocking=*/true);
    }
    ready_ = std::make_shared<CopyEvent>();
    ready_->event.record(copy_stream);
    return;
  }
#endif
  tensor_ = host.to(device);
}

at::Tensor Upload::take() {
#ifdef THINKINGVIT_HAVE_CUDA
  if (ready_) {
    const auto current = c10::cuda::getCurrentCUDAStream(tensor_.device().index());
    ready_->event.block(current);
    // Allocated on the copy stream, used on this one: the allocator must not hand the memory
    // out again before this stream's work on it is done.
    c10::cuda::CUDACachingAllocator::recordStream(tensor_.storage().data_ptr(), current);
    ready_.reset();
  }
#endif
  return tensor_;
}

Readback::Readback(const at::Tensor& tensor) {
#ifdef THINKINGVIT_HAVE_CUDA
  if (tensor.is_cuda()) {
    const c10::cuda::CUDAGuard device_guard(tensor.device());
    host_ = at::empty(tensor.sizes(), tensor.options().device(c10::kCPU).pinned_memory(true));
    host_.copy_(tensor.detach(), /*non_blocking=*/true);
    ready_ = std::make_shared<CopyEvent>();
    ready_->event.record(c10::cuda::getCurrentCUDAStream(tensor.device().index()));
    return;
  }
#endif
  host_ = tensor.detach().to(c10::kCPU);
}

const at::Tensor& Readback::get() {
#ifdef THINKINGVIT_HAVE_CUDA
  if (ready_) {
    ready_->event.synchronize();
    ready_.reset();
  }
#endif
  return host_;
}

}  // namespace thinkingvit::compat
