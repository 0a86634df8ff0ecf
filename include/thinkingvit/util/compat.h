#pragma once
// The platform layer: what touches LibTorch's device, autocast and c10d APIs, so that the rest of
// the code base never includes a CUDA or c10d header. CUDA calls compile only in CUDA builds
// (THINKINGVIT_HAVE_CUDA); elsewhere they report that no GPU is there.

#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace thinkingvit::compat {

// softmax(q kᵀ · Dh^-0.5) v through at::scaled_dot_product_attention (flash / memory-efficient
// kernels on CUDA). q, k, v: B x H x N x Dh -> B x H x N x Dh.
at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

// The same maths written out: softmax(q kᵀ · Dh^-0.5) v.
at::Tensor explicit_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

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

// One call captured into a CUDA graph and replayed: the kernels a fixed-shape forward launches
// go to the GPU in one launch, which matters where a forward is short (a small stage at a large
// batch on a fast GPU spends more time launching kernels than running them). The constructor
// runs fn `warmup` times on a side stream (first-call allocations, cuBLAS / cuDNN plans), then
// captures one more call into a graph with its own memory pool (or a shared one, below). fn must read its inputs from, and
// leave its outputs in, tensors that outlive this object; replay() re-runs the captured kernels
// on the current stream with whatever those tensors hold then. CUDA builds only: elsewhere, and
// for a CPU device, the constructor throws an Error.
// `pool`, when given, is the memory pool to capture into: {0, 0} the first time (the graph's
// new pool is written back), then shared by every graph captured with it. Graphs that share a
// pool may reuse each other's scratch memory: replay them one at a time, and copy what a graph
// leaves before replaying another.
using GraphPool = std::pair<unsigned long long, unsigned long long>;

class CapturedCall {
 public:
  CapturedCall(const std::function<void()>& fn, const c10::Device& device, int warmup = 2,
               GraphPool* pool = nullptr);
  ~CapturedCall();
  CapturedCall(const CapturedCall&) = delete;
  CapturedCall& operator=(const CapturedCall&) = delete;
  void replay();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A collective started by ProcessGroup::all_reduce_sum_async; wait() blocks until it finished
// (on CUDA: until the current stream is ordered after it) or throws an Error naming the peer
// failure.
class PendingWork {
 public:
  virtual ~PendingWork() = default;
  virtual void wait() = 0;
};

// A c10d process group over the ranks of a job, reduced to what training needs. The c10d types
// stay inside compat_distributed.cpp / compat_nccl.cpp.
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;
  // Where tensors given to the collectives must live: CPU for Gloo, this rank's GPU for NCCL.
  virtual c10::Device device() const = 0;
  // In place, every rank ends with the elementwise sum (Gloo refuses AVG: divide yourself).
  virtual std::unique_ptr<PendingWork> all_reduce_sum_async(at::Tensor& tensor) = 0;
  void all_reduce_sum(at::Tensor& tensor) { all_reduce_sum_async(tensor)->wait(); }
  // In place, every rank ends with `root`'s values.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  virtual void barrier() = 0;
  // Ends the group after its last collective, as PyTorch's destroy_process_group: NCCL finishes
  // its queued work and destroys its communicators (without it the destructor aborts them and
  // warns). No collective may follow.
  virtual void shutdown() {}
};

// Where the ranks meet: a TCP store that rank 0 hosts, or, under torchelastic's agent
// (torchrun), the agent's own store, which every rank joins as a client with its keys under
// `prefix` (one per restart attempt). `origin` says where address and port came from; every
// rendezvous error line names it.
struct Rendezvous {
  std::string addr = "127.0.0.1";
  int port = 29500;
  bool agent_store = false;
  std::string prefix;
  std::string origin;
};

// Joins (rank 0: hosts, unless agent_store) the TCP store and creates the process group:
// "gloo" (CPU tensors; binds to this node's own address: GLOO_SOCKET_IFNAME's interface when set,
// else the address its hostname resolves to) or "nccl" (tensors on `device`, a CUDA device, in
// builds with NCCL). Every collective and the rendezvous fail with an Error after `timeout`
// instead of hanging.
std::unique_ptr<ProcessGroup> make_process_group(
    const std::string& backend, const Rendezvous& rendezvous, int rank, int world_size,
    std::chrono::milliseconds timeout, const c10::Device& device = c10::Device(c10::kCPU));
inline std::unique_ptr<ProcessGroup> make_process_group(
    const std::string& backend, const std::string& master_addr, int master_port, int rank,
    int world_size, std::chrono::milliseconds timeout,
    const c10::Device& device = c10::Device(c10::kCPU)) {
  Rendezvous r;
  r.addr = master_addr;
  r.port = master_port;
  return make_process_group(backend, r, rank, world_size, timeout, device);
}

}  // namespace thinkingvit::compat
