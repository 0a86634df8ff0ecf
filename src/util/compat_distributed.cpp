// The c10d half of the compatibility layer: TCPStore + ProcessGroupGloo (and NCCL where the
// LibTorch build has it). 1.13: ProcessGroupGloo derives from ProcessGroup; 2.x: from Backend.
// Both expose allreduce / broadcast / barrier returning a waitable Work, which is all we use.

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // the c10d headers guard Gloo behind this; libtorch_cpu has it built in
#endif

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <c10/util/Exception.h>

#include "thinkingvit/util/compat.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::compat {

namespace {

// One line: c10::Error's what() carries a C++ backtrace.
std::string describe(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

template <typename Group>
class C10dGroup : public ProcessGroup {
 public:
  C10dGroup(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<Group> group,
            std::string backend, int rank, int size)
      : store_(std::move(store)),
        group_(std::move(group)),
        backend_(std::move(backend)),
        rank_(rank),
        size_(size) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return backend_; }

  void all_reduce_sum(at::Tensor& tensor) override {
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    wait("all-reduce", [&] { return group_->allreduce(tensors, options); });
  }

  void broadcast(at::Tensor& tensor, int root) override {
    std::vector<at::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait("broadcast", [&] { return group_->broadcast(tensors, options); });
  }

  void barrier() override {
    wait("barrier", [&] { return group_->barrier(); });
  }

 private:
  // A peer that died or stopped answering surfaces here as one Error naming the operation.
  template <typename Start>
  void wait(const char* what, Start start) {
    try {
      start()->wait();
    } catch (const std::exception& e) {
      fail("distributed ", what, " failed on rank ", rank_, " of ", size_, " (", backend_,
           "): ", describe(e), " -- another rank probably stopped; see its log for the cause");
    }
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<Group> group_;
  std::string backend_;
  int rank_, size_;
};

}  // namespace

std::unique_ptr<ProcessGroup> make_process_group(const std::string& backend,
                                                 const std::string& master_addr, int master_port,
                                                 int rank, int world_size,
                                                 std::chrono::milliseconds timeout) {
  TVIT_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "distributed: rank ", rank,
             " is outside a world of ", world_size);
  TVIT_CHECK(master_port > 0 && master_port < 65536, "distributed: MASTER_PORT ", master_port,
             " is not a TCP port");
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(master_port);
    options.isServer = rank == 0;
    options.numWorkers = static_cast<std::size_t>(world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(master_addr, options);
  } catch (const std::exception& e) {
    fail("distributed: rank ", rank, " could not join the rendezvous at ", master_addr, ":",
         master_port, " within ", timeout.count() / 1000, " s (", describe(e), ")");
  }
  if (backend == "gloo") {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // Without a device Gloo fails with "No device(s) specified" (1.13).
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(
        master_addr == "localhost" ? "127.0.0.1" : master_addr));
    c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
    try {
      group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
    } catch (const std::exception& e) {
      fail("distributed: rank ", rank, " could not connect to its peers within ",
           timeout.count() / 1000, " s (gloo): ", describe(e));
    }
    return std::make_unique<C10dGroup<c10d::ProcessGroupGloo>>(store, group, backend, rank,
                                                               world_size);
  }
  if (backend == "nccl") {
#ifdef USE_C10D_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
    return std::make_unique<C10dGroup<c10d::ProcessGroupNCCL>>(store, group, backend, rank,
                                                               world_size);
#else
    fail("distributed.backend: nccl is not available in this LibTorch build (", torch_version(),
         "); use gloo");
#endif
  }
  fail("distributed.backend: expected gloo or nccl, found '", backend, "'");
}

}  // namespace thinkingvit::compat
