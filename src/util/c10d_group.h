#pragma once
// Private to process_group.cpp and process_group_nccl.cpp: a c10d Backend (ProcessGroupGloo or
// ProcessGroupNCCL) behind compat::ProcessGroup, with every failure turned into one Error line.

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <c10/util/Exception.h>
#include <torch/version.h>

#include <string>
#include <utility>
#include <vector>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/process_group.h"

namespace thinkingvit::compat::detail {

// One line: c10::Error's what() carries a C++ backtrace.
inline std::string describe(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

class C10dGroup : public ProcessGroup {
 public:
  C10dGroup(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<c10d::Backend> group,
            std::string backend, int rank, int size, c10::Device device)
      : store_(std::move(store)),
        group_(std::move(group)),
        backend_(std::move(backend)),
        rank_(rank),
        size_(size),
        device_(device) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return backend_; }
  c10::Device device() const override { return device_; }

  std::unique_ptr<PendingWork> all_reduce_sum_async(at::Tensor& tensor) override {
    check_device(tensor, "all-reduce");
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    return std::make_unique<Pending>(this, "all-reduce", start("all-reduce", [&] {
                                       return group_->allreduce(tensors, options);
                                     }));
  }

  void broadcast(at::Tensor& tensor, int root) override {
    check_device(tensor, "broadcast");
    std::vector<at::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    Pending(this, "broadcast",
            start("broadcast", [&] { return group_->broadcast(tensors, options); }))
        .wait();
  }

  void barrier() override {
    Pending(this, "barrier", start("barrier", [&] { return group_->barrier(); })).wait();
  }

  void shutdown() override {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 7)
    try {
      group_->shutdown();
    } catch (const std::exception& e) {
      failed("shutdown", e);
    }
#endif  // older LibTorch: c10d::Backend has no shutdown(); the destructor ends the group
  }

 private:
  class Pending : public PendingWork {
   public:
    Pending(const C10dGroup* group, const char* what, c10::intrusive_ptr<c10d::Work> work)
        : group_(group), what_(what), work_(std::move(work)) {}
    void wait() override {
      if (!work_) return;
      try {
        work_->wait();
      } catch (const std::exception& e) {
        group_->failed(what_, e);
      }
      work_.reset();
    }

   private:
    const C10dGroup* group_;
    const char* what_;
    c10::intrusive_ptr<c10d::Work> work_;
  };

  template <typename Start>
  c10::intrusive_ptr<c10d::Work> start(const char* what, Start start_work) {
    try {
      return start_work();
    } catch (const std::exception& e) {
      failed(what, e);
    }
  }

  // A peer that died or stopped answering surfaces here as one Error naming the operation.
  [[noreturn]] void failed(const char* what, const std::exception& e) const {
    fail("distributed ", what, " failed on rank ", rank_, " of ", size_, " (", backend_,
         "): ", describe(e), " -- another rank probably stopped; see its log for the cause");
  }

  void check_device(const at::Tensor& tensor, const char* what) const {
    TVIT_CHECK(tensor.device() == device_, "distributed ", what, " (", backend_, "): tensor on ",
               tensor.device().str(), ", the group reduces tensors on ", device_.str());
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> group_;
  std::string backend_;
  int rank_, size_;
  c10::Device device_;
};

// Joins (rank 0: hosts, unless the torchelastic agent does) the TCP store; the store seen
// through rendezvous.prefix when one is set.
c10::intrusive_ptr<c10d::Store> connect_store(const Rendezvous& rendezvous, int rank,
                                              int world_size, std::chrono::milliseconds timeout);

// process_group_nccl.cpp (builds with THINKINGVIT_HAVE_NCCL).
std::unique_ptr<ProcessGroup> make_nccl_group(c10::intrusive_ptr<c10d::Store> store, int rank,
                                              int world_size, std::chrono::milliseconds timeout,
                                              const c10::Device& device);

}  // namespace thinkingvit::compat::detail
