#pragma once
// The c10d half of the platform layer: a process group over a job's ranks (Gloo, NCCL in
// builds with it) and the rendezvous that forms it; the c10d types stay inside
// process_group.cpp / process_group_nccl.cpp.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <memory>
#include <string>

namespace thinkingvit::compat {

// A collective started by ProcessGroup::all_reduce_sum_async; wait() blocks until it finished
// (on CUDA: until the current stream is ordered after it) or throws an Error naming the peer
// failure.
class PendingWork {
 public:
  virtual ~PendingWork() = default;
  virtual void wait() = 0;
};

// A c10d process group over the ranks of a job, reduced to what training needs. The c10d types
// stay inside process_group.cpp / process_group_nccl.cpp.
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
