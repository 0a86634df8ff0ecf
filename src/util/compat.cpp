#include "thinkingvit/util/compat.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>
#include <unistd.h>

#include <map>
#include <mutex>

#ifdef THINKINGVIT_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/cuda/nccl.h>
#endif

#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::compat {

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  return at::scaled_dot_product_attention(q, k, v);
}

at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto attn = at::matmul(q, k.transpose(-2, -1)) * scale;  // B x H x N x N
  return at::matmul(attn.softmax(/*dim=*/-1), v);          // B x H x N x Dh
}

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
    const at::cuda::MempoolId_t into = pool != nullptr ? at::cuda::MempoolId_t{pool->first, pool->second}
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
