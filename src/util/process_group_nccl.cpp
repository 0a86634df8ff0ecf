// ProcessGroupNCCL behind compat::ProcessGroup. Compiled only with THINKINGVIT_NCCL (CUDA builds),
// against the nccl.h of the NCCL that LibTorch itself links: ProcessGroupNCCL::Options embeds
// ncclConfig_t, whose layout must match.

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "c10d_group.h"

namespace thinkingvit::compat::detail {

std::unique_ptr<ProcessGroup> make_nccl_group(c10::intrusive_ptr<c10d::Store> store, int rank,
                                              int world_size, std::chrono::milliseconds timeout,
                                              const c10::Device& device) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> group;
  try {
    group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
  } catch (const std::exception& e) {
    fail("distributed: rank ", rank, " could not create its NCCL group: ", describe(e));
  }
  // Bound to this rank's GPU: collectives without a tensor (barrier) use it instead of guessing.
  if (device.has_index()) group->setBoundDeviceId(device);
  return std::make_unique<C10dGroup>(store, group, "nccl", rank, world_size, device);
}

}  // namespace thinkingvit::compat::detail
