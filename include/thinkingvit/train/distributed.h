#pragma once
// Data-parallel training across processes: where this process sits in the job (torchrun or
// SLURM variables), the process group, parameters broadcast from rank 0, gradients averaged in
// flat buckets, metrics summed across ranks. A single process needs none of it and pays nothing.

#include <ATen/core/Tensor.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "thinkingvit/util/compat.h"

namespace thinkingvit::train {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // processes on this machine (threads per process = cores / this)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single process";  // "torchrun variables", "SLURM"
};

// torchrun-style RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT
// first, else SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID / SLURM_NTASKS_PER_NODE (MASTER_ADDR
// and MASTER_PORT still needed unless SLURM_LAUNCH_NODE_IPADDR is set), else one process.
// `getenv` is a parameter so that tests can feed variables; a malformed value is an Error
// naming the variable.
DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv);
DistEnv dist_env();

// The GPU index a process takes: LOCAL_RANK among the GPUs it sees, or the only one it sees
// (SLURM's --gpus-per-task, a CUDA_VISIBLE_DEVICES per process). An Error when LOCAL_RANK is
// past the visible GPUs.
int gpu_for_local_rank(int local_rank, int visible_gpus);

class GradientReducer;

class Distributed {
 public:
  // World size 1: no process group, every call is a no-op. `device` is this process's device
  // (NCCL reduces tensors there; Gloo on the CPU).
  Distributed(const DistEnv& env, const std::string& backend, std::chrono::milliseconds timeout,
              double bucket_mb = 25.0, const c10::Device& device = c10::Device(c10::kCPU));
  ~Distributed();
  bool enabled() const { return group_ != nullptr; }
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  const DistEnv& env() const { return env_; }

  // Every rank gets rank 0's values (parameters and buffers at start).
  void broadcast(const std::vector<at::Tensor>& tensors);
  // Gradients of `params` summed over ranks and divided by the world size, in flat buckets of
  // at most bucket_mb MB (one all-reduce each), after backward. As DDP with
  // find_unused_parameters: a parameter without a gradient on some ranks counts as zero there;
  // one without a gradient on every rank keeps none (the optimizer skips it, as in one process).
  void average_gradients(const std::vector<at::Tensor>& params);
  // The same averaging overlapped with backward (see GradientReducer); null for one process.
  std::unique_ptr<GradientReducer> make_reducer(const std::vector<at::Tensor>& params);
  // Elementwise sum over ranks of a small vector of numbers (metrics, counts), reduced on the
  // group's device (NCCL reduces only CUDA tensors).
  std::vector<double> sum(std::vector<double> values);
  // The same sum in place on a tensor, without a host wait on NCCL (the current CUDA stream
  // waits for it; read it back with compat::Readback). Gloo's returns done; a tensor off the
  // group's device (Gloo with the model on a GPU) goes through the host.
  void sum_on_device(at::Tensor& tensor);
  void barrier();
  // After a run's last collective on every rank: ends the process group cleanly (see
  // compat::ProcessGroup::shutdown); a failure is logged as a warning, the run's work is done.
  void shutdown();

 private:
  DistEnv env_;
  int64_t bucket_bytes_;
  std::unique_ptr<compat::ProcessGroup> group_;
};

// Gradient averaging overlapped with backward, as PyTorch DDP's Reducer does it. Parameters are
// grouped into flat buckets of at most bucket_bytes, in reverse parameter order (roughly the
// order backward produces gradients); a hook on each parameter's gradient accumulator copies
// the finished gradient into its bucket, and a bucket's all-reduce starts, asynchronously, once
// all its gradients are in and every earlier bucket has started (the same order on every rank).
// Unused parameters are found as DDP's find_unused_parameters does: by walking the loss's
// autograd graph before backward.
//
//   reducer.prepare(loss);  // only for the backward pass that precedes an optimizer step
//   loss.backward();
//   reducer.finish();       // waits for every bucket, writes averaged gradients
class GradientReducer {
 public:
  GradientReducer(const std::vector<at::Tensor>& params, compat::ProcessGroup& group,
                  int64_t bucket_bytes);
  ~GradientReducer();  // removes the hooks
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void prepare(const at::Tensor& loss);
  void finish();
  int64_t num_buckets() const;

 private:
  struct Impl;  // buckets, hooks and in-flight work (autograd types stay in the .cpp)
  std::unique_ptr<Impl> impl_;
};

}  // namespace thinkingvit::train
