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

#include "thinkingvit/util/async_copy.h"
#include "thinkingvit/util/process_group.h"

namespace thinkingvit::train {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  // processes on this machine (threads per process = cores / this)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single process";  // "torchrun", "Slurm step", "torchrun in a Slurm step"
  std::string addr_source = "default";    // where master_addr came from, for logs and errors
  std::string port_source = "default";    // where master_port came from
  // Under torchelastic's agent (torchrun): the agent hosts the store at MASTER_ADDR:MASTER_PORT
  // and every rank is a client; keys live under store_prefix, one per restart attempt, so that a
  // restarted group never reads the previous attempt's keys (NCCL ids, Gloo addresses).
  bool agent_store = false;
  std::string store_prefix;
  int restart_count = 0;  // TORCHELASTIC_RESTART_COUNT, else SLURM_RESTART_COUNT
  // "(address: MASTER_ADDR, port: default)": where address and port came from.
  std::string origin() const;
  // "127.0.0.1:29500 (address: ...)": what every rendezvous line names.
  std::string rendezvous() const;
};

// Where this process sits in the job, from the launcher's variables:
//   - torchrun (RANK and WORLD_SIZE; LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
//     TORCHELASTIC_*) first, also inside a Slurm step: they describe this process's own rank;
//   - else a task of a Slurm step (srun sets SLURM_STEP_ID with SLURM_PROCID / SLURM_NTASKS /
//     SLURM_LOCALID / SLURM_NODEID / SLURM_STEP_TASKS_PER_NODE). A batch script's own process
//     carries SLURM_PROCID and SLURM_NTASKS too, but no step: it is one process;
//   - else one process.
// The address is MASTER_ADDR, else the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST
// (never SLURM_LAUNCH_NODE_IPADDR, the node srun ran on: a login node under salloc); the port
// is MASTER_PORT, else one derived from SLURM_JOB_ID (two jobs whose rank 0 shares a node get
// different ports), else 29500. `getenv` is a parameter so that tests can feed variables; a
// malformed value is an Error naming the variable.
DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv);
DistEnv dist_env();

// A Slurm host list expanded: "gpu[01-03,07],cpu1" -> gpu01 gpu02 gpu03 gpu07 cpu1 (zero
// padding kept, several bracket groups in one name multiply out). An Error names `what` (the
// variable) when the list is malformed.
std::vector<std::string> expand_hostlist(const std::string& list, const std::string& what);
// Slurm's tasks-per-node list ("2(x3),1") expanded to one count per node: 2 2 2 1.
std::vector<int> expand_tasks_per_node(const std::string& list, const std::string& what);
// The port a Slurm job uses when MASTER_PORT is not set: 10000 + job_id % 20000 (below the
// kernel's ephemeral range, so that it does not collide with outgoing connections).
int port_for_slurm_job(long long job_id);

// The GPU index a process takes: LOCAL_RANK among the GPUs it sees, or the only one it sees
// (SLURM's --gpus-per-task, a CUDA_VISIBLE_DEVICES per process). An Error when LOCAL_RANK is
// past the visible GPUs.
int gpu_for_local_rank(int local_rank, int visible_gpus);

// Intra-op threads for each of this node's processes: the cores this process may use (its
// affinity mask, util::usable_cores) shared among the node's local_world_size processes; a Slurm
// task with SLURM_CPUS_PER_TASK gets at most that many (srun may already have bound it to them).
int threads_per_process(const DistEnv& env, int usable_cores,
                        const std::function<const char*(const char*)>& getenv);

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
  // Rank 0's `text` on every rank (what rank 0 chose: a checkpoint's name); at most 1 MiB.
  std::string broadcast_string(const std::string& text);
  // Gradients of `params` summed over ranks and divided by the world size, in flat buckets of
  // at most bucket_mb MB (one all-reduce each), after backward. As DDP with
  // find_unused_parameters: a parameter without a gradient on some ranks counts as zero there;
  // one without a gradient on every rank keeps none (the optimizer skips it, as in one process).
  // same_use_on_every_rank: the caller knows that every rank has gradients for the same
  // parameters (the trainer: every rank samples the same stages); then no used-parameter counts
  // are exchanged at all.
  void average_gradients(const std::vector<at::Tensor>& params,
                         bool same_use_on_every_rank = false);
  // The same averaging overlapped with backward (see GradientReducer); null for one process.
  std::unique_ptr<GradientReducer> make_reducer(const std::vector<at::Tensor>& params,
                                                bool same_use_on_every_rank = false);
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
  // same_use_on_every_rank: every rank's loss reaches the same parameters (see
  // Distributed::average_gradients); the used-parameter all-reduce and its read-back are skipped.
  GradientReducer(const std::vector<at::Tensor>& params, compat::ProcessGroup& group,
                  int64_t bucket_bytes, bool same_use_on_every_rank = false);
  ~GradientReducer();  // removes the hooks
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void prepare(const at::Tensor& loss);
  void finish();
  int64_t num_buckets() const;
  // Host waits so far to read back which parameters some rank used (tests: zero when every
  // rank used what this one did, or under same_use_on_every_rank).
  int64_t used_readbacks() const;

 private:
  struct Impl;  // buckets, hooks and in-flight work (autograd types stay in the .cpp)
  std::unique_ptr<Impl> impl_;
};

}  // namespace thinkingvit::train
