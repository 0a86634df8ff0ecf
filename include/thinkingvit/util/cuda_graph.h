#pragma once
// CUDA graphs: a fixed-shape call captured once and replayed in one launch.
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <utility>

namespace thinkingvit::compat {

// One call captured into a CUDA graph and replayed: the kernels a fixed-shape forward launches
// go to the GPU in one launch, which matters where a forward is short (a small stage at a large
// batch on a fast GPU spends more time launching kernels than running them). The constructor
// runs fn `warmup` times on a side stream (first-call allocations, cuBLAS / cuDNN plans), then
// captures one more call into a graph with its own memory pool (or a shared one, below). fn must
// read its inputs from, and leave its outputs in, tensors that outlive this object; replay()
// re-runs the captured kernels on the current stream with whatever those tensors hold then. CUDA
// builds only: elsewhere, and for a CPU device, the constructor throws an Error. `pool`, when
// given, is the memory pool to capture into: {0, 0} the first time (the graph's new pool is written
// back), then shared by every graph captured with it. Graphs that share a pool may reuse each
// other's scratch memory: replay them one at a time, and copy what a graph leaves before replaying
// another.
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

}  // namespace thinkingvit::compat
