#include "thinkingvit/util/cuda_graph.h"

#include <ATen/autocast_mode.h>

#ifdef THINKINGVIT_HAVE_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::compat {

#ifdef THINKINGVIT_HAVE_CUDA
struct CapturedCall::Impl {
  at::cuda::CUDAGraph graph;
};

CapturedCall::CapturedCall(const std::function<void()>& fn, const c10::Device& device, int warmup,
                           GraphPool* pool) {
  TVIT_CHECK(device.is_cuda() && cuda_available(), "CUDA graphs: ", device.str(),
             " is not a visible CUDA device");
  impl_ = std::make_unique<Impl>();
  const c10::cuda::CUDAGuard device_guard(device);
  // Capture needs a stream of its own; the side stream starts after the work queued so far.
  auto side =
      c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_guard.current_device().index());
  c10::cuda::device_synchronize();
  // Autocast's cache of cast weights is emptied when the outermost autocast region ends: a graph
  // that read a cached cast would replay on freed memory. Casts made inside the graph instead
  // (as PyTorch's make_graphed_callables requires).
  struct NoAutocastCache {
    bool was = at::autocast::is_autocast_cache_enabled();
    NoAutocastCache() { at::autocast::set_autocast_cache_enabled(false); }
    ~NoAutocastCache() { at::autocast::set_autocast_cache_enabled(was); }
  } no_cache;
  {
    const c10::cuda::CUDAStreamGuard stream_guard(side);
    for (int i = 0; i < warmup; ++i) fn();
    side.synchronize();
    // Thread-local capture mode: a loader thread's CUDA calls (pinned allocations) may go on.
    const at::cuda::MempoolId_t into = pool != nullptr
                                           ? at::cuda::MempoolId_t{pool->first, pool->second}
                                           : at::cuda::MempoolId_t{0, 0};
    impl_->graph.capture_begin(into, cudaStreamCaptureModeThreadLocal);
    try {
      fn();
    } catch (...) {
      try {
        impl_->graph.capture_end();
      } catch (...) {
      }
      throw;
    }
    impl_->graph.capture_end();
    if (pool != nullptr && *pool == GraphPool{0, 0}) {
      const auto id = impl_->graph.pool();
      *pool = {id.first, id.second};
    }
  }
  c10::cuda::device_synchronize();
}

void CapturedCall::replay() { impl_->graph.replay(); }
#else
struct CapturedCall::Impl {};

CapturedCall::CapturedCall(const std::function<void()>& fn, const c10::Device& device, int warmup,
                           GraphPool* pool) {
  (void)fn;
  (void)warmup;
  (void)pool;
  fail("CUDA graphs: ", device.str(), ": this is a CPU-only build");
}

void CapturedCall::replay() { fail("CUDA graphs: this is a CPU-only build"); }
#endif

CapturedCall::~CapturedCall() = default;

}  // namespace thinkingvit::compat
