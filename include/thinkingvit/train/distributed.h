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

class Distributed {
 public:
  // World size 1: no process group, every call is a no-op.
  Distributed(const DistEnv& env, const std::string& backend, std::chrono::milliseconds timeout,
              double bucket_mb = 25.0);
  bool enabled() const { return group_ != nullptr; }
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool is_main() const { return env_.rank == 0; }
  const DistEnv& env() const { return env_; }

  // Every rank gets rank 0's values (parameters and buffers at start).
  void broadcast(const std::vector<at::Tensor>& tensors);
  // Gradients of `params` summed over ranks and divided by the world size, in flat buckets of
  // at most bucket_mb MB (one all-reduce each). Parameters without a gradient count as zero.
  void average_gradients(const std::vector<at::Tensor>& params);
  // Elementwise sum over ranks of a small vector of numbers (metrics, counts).
  std::vector<double> sum(std::vector<double> values);
  void barrier();

 private:
  DistEnv env_;
  int64_t bucket_bytes_;
  std::unique_ptr<compat::ProcessGroup> group_;
};

}  // namespace thinkingvit::train
