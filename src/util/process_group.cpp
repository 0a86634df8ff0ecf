// The c10d half of the platform layer: TCPStore + ProcessGroupGloo, and ProcessGroupNCCL in
// builds with NCCL (process_group_nccl.cpp).

#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // the c10d headers guard Gloo behind this; libtorch_cpu has it built in
#endif

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <sstream>

#include "c10d_group.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/process_group.h"

namespace thinkingvit::compat {

namespace detail {

c10::intrusive_ptr<c10d::Store> connect_store(const Rendezvous& rendezvous, int rank,
                                              int world_size, std::chrono::milliseconds timeout) {
  const bool hosts = rank == 0 && !rendezvous.agent_store;
  const std::string where = rendezvous.addr + ":" + std::to_string(rendezvous.port) +
                            (rendezvous.origin.empty() ? "" : " " + rendezvous.origin);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(rendezvous.port);
    options.isServer = hosts;
    // Every rank counts itself in (a client under the agent too, as torch.distributed's env://
    // rendezvous does); the host waits for all of them.
    options.numWorkers = static_cast<std::size_t>(world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(rendezvous.addr, options);
  } catch (const std::exception& e) {
    if (hosts) {
      fail("distributed: rank 0 could not host the rendezvous at ", where, " or its ",
           world_size - 1, " peer(s) did not join within ", timeout.count() / 1000, " s (",
           describe(e), "); if the port is taken (another job on this node), set MASTER_PORT");
    }
    fail("distributed: rank ", rank, " could not join the rendezvous at ", where, " within ",
         timeout.count() / 1000, " s (", describe(e), ")");
  }
  if (rendezvous.prefix.empty()) return store;
  return c10::make_intrusive<c10d::PrefixStore>(rendezvous.prefix, store);
}

}  // namespace detail

namespace {

// As torch.distributed does: the interfaces in GLOO_SOCKET_IFNAME (comma-separated), else this
// machine's own address (its hostname resolved, loopback when that fails). Never MASTER_ADDR,
// which is rank 0's node: binding to it fails, or silently uses the wrong NIC, on other nodes.
std::vector<std::shared_ptr<::gloo::transport::Device>> gloo_devices() {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  const char* interfaces = std::getenv("GLOO_SOCKET_IFNAME");
  if (interfaces && *interfaces) {
    std::stringstream list(interfaces);
    std::string name;
    while (std::getline(list, name, ',')) {
      if (!name.empty()) devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
    }
  }
  if (devices.empty()) devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  return devices;
}

}  // namespace

std::unique_ptr<ProcessGroup> make_process_group(const std::string& backend,
                                                 const Rendezvous& rendezvous, int rank,
                                                 int world_size, std::chrono::milliseconds timeout,
                                                 const c10::Device& device) {
  const int master_port = rendezvous.port;
  TVIT_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "distributed: rank ", rank,
             " is outside a world of ", world_size);
  TVIT_CHECK(master_port > 0 && master_port < 65536, "distributed: MASTER_PORT ", master_port,
             " is not a TCP port");
  TVIT_CHECK(backend == "gloo" || backend == "nccl",
             "distributed.backend: expected gloo or nccl, found '", backend, "'");
#ifndef THINKINGVIT_HAVE_NCCL
  TVIT_CHECK(backend != "nccl", "distributed.backend: nccl is not in this build (",
             "CPU-only, or built with -DTHINKINGVIT_NCCL=OFF); use gloo");
#endif
  TVIT_CHECK(backend != "nccl" || device.is_cuda(),
             "distributed.backend: nccl reduces CUDA tensors, but this run's device is ",
             device.str(), "; use gloo, or run.device: cuda");
  auto store = detail::connect_store(rendezvous, rank, world_size, timeout);
#ifdef THINKINGVIT_HAVE_NCCL
  if (backend == "nccl") return detail::make_nccl_group(store, rank, world_size, timeout, device);
#endif
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  try {
    options->devices = gloo_devices();
    group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, options);
  } catch (const std::exception& e) {
    fail("distributed: rank ", rank, " could not connect to its peers within ",
         timeout.count() / 1000, " s (gloo): ", detail::describe(e));
  }
  return std::make_unique<detail::C10dGroup>(store, group, backend, rank, world_size,
                                             c10::Device(c10::kCPU));
}

}  // namespace thinkingvit::compat
