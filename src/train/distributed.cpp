#include "thinkingvit/train/distributed.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <thread>

#include "thinkingvit/util/error.h"

namespace thinkingvit::train {

namespace {

int parse_int(const char* name, const char* text, int min_value) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  TVIT_CHECK(end != text && *end == '\0' && value >= min_value && value <= 1 << 30,
             "environment variable ", name, ": expected an integer >= ", min_value, ", found '",
             text, "'");
  return static_cast<int>(value);
}

}  // namespace

DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv) {
  DistEnv env;
  auto get_int = [&](const char* name, int fallback, int min_value) {
    const char* text = getenv(name);
    return text ? parse_int(name, text, min_value) : fallback;
  };
  if (getenv("WORLD_SIZE") || getenv("RANK")) {
    TVIT_CHECK(
        getenv("WORLD_SIZE") && getenv("RANK"),
        "environment: RANK and WORLD_SIZE must be set together (torchrun style), found only ",
        getenv("RANK") ? "RANK" : "WORLD_SIZE");
    env.source = "torchrun variables";
    env.world_size = get_int("WORLD_SIZE", 1, 1);
    env.rank = get_int("RANK", 0, 0);
    env.local_rank = get_int("LOCAL_RANK", env.rank, 0);
    env.local_world_size = get_int("LOCAL_WORLD_SIZE", env.world_size, 1);
  } else if (getenv("SLURM_PROCID") && getenv("SLURM_NTASKS")) {
    env.source = "SLURM";
    env.world_size = get_int("SLURM_NTASKS", 1, 1);
    env.rank = get_int("SLURM_PROCID", 0, 0);
    env.local_rank = get_int("SLURM_LOCALID", 0, 0);
    env.local_world_size = get_int("SLURM_NTASKS_PER_NODE", env.world_size, 1);
    if (const char* addr = getenv("SLURM_LAUNCH_NODE_IPADDR")) env.master_addr = addr;
  }
  TVIT_CHECK(env.rank < env.world_size, "environment (", env.source, "): rank ", env.rank,
             " is outside a world of ", env.world_size);
  if (const char* addr = getenv("MASTER_ADDR")) env.master_addr = addr;
  env.master_port = get_int("MASTER_PORT", env.master_port, 1);
  TVIT_CHECK(env.master_port < 65536,
             "environment variable MASTER_PORT: expected a TCP port, found ", env.master_port);
  return env;
}

DistEnv dist_env() {
  return dist_env_from([](const char* name) { return std::getenv(name); });
}

Distributed::Distributed(const DistEnv& env, const std::string& backend,
                         std::chrono::milliseconds timeout, double bucket_mb)
    : env_(env), bucket_bytes_(static_cast<int64_t>(bucket_mb * 1024 * 1024)) {
  if (env.world_size == 1) return;
  spdlog::info("distributed: rank {} of {} ({}), {} via {}:{}", env.rank, env.world_size,
               env.source, backend, env.master_addr, env.master_port);
  group_ = compat::make_process_group(backend, env.master_addr, env.master_port, env.rank,
                                      env.world_size, timeout);
}

void Distributed::broadcast(const std::vector<at::Tensor>& tensors) {
  if (!group_) return;
  at::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    auto buffer = t.detach().contiguous();  // the tensor itself when already contiguous
    group_->broadcast(buffer, 0);
    if (buffer.data_ptr() != t.data_ptr()) t.detach().copy_(buffer);
  }
}

void Distributed::average_gradients(const std::vector<at::Tensor>& params) {
  if (!group_) return;
  at::NoGradGuard no_grad;
  const double scale = 1.0 / env_.world_size;
  size_t begin = 0;
  while (begin < params.size()) {
    // One bucket: consecutive parameters of one dtype/device up to bucket_bytes_.
    size_t end = begin;
    int64_t bytes = 0;
    std::vector<at::Tensor> grads;
    while (end < params.size() &&
           (grads.empty() || (bytes + static_cast<int64_t>(params[end].nbytes()) <= bucket_bytes_ &&
                              params[end].options().type_equal(params[begin].options())))) {
      auto& p = params[end];
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      grads.push_back(p.grad());
      bytes += static_cast<int64_t>(p.nbytes());
      ++end;
    }
    std::vector<at::Tensor> views;
    for (const auto& g : grads) views.push_back(g.reshape({-1}));
    auto flat = at::cat(views);
    group_->all_reduce_sum(flat);
    flat.mul_(scale);
    int64_t offset = 0;
    for (auto& g : grads) {
      g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
    begin = end;
  }
}

std::vector<double> Distributed::sum(std::vector<double> values) {
  if (!group_ || values.empty()) return values;
  auto t = at::tensor(values, at::kDouble);
  group_->all_reduce_sum(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void Distributed::barrier() {
  if (group_) group_->barrier();
}

}  // namespace thinkingvit::train
