#include "thinkingvit/train/distributed.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <unordered_set>

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

int gpu_for_local_rank(int local_rank, int visible_gpus) {
  TVIT_CHECK(visible_gpus > 0, "run.device cuda: no GPU is visible");
  if (visible_gpus == 1) return 0;
  TVIT_CHECK(local_rank < visible_gpus, "run.device cuda: LOCAL_RANK ", local_rank, " but only ",
             visible_gpus,
             " GPUs are visible (let each process see every GPU of its node, or exactly one)");
  return local_rank;
}

namespace {

// Buckets of parameter indices in reverse parameter order, each of one dtype and at most
// `bucket_bytes` (a larger parameter gets a bucket of its own).
std::vector<std::vector<size_t>> make_buckets(const std::vector<at::Tensor>& params,
                                              const std::vector<size_t>& chosen,
                                              int64_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = 0;
  for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) {
    const auto& p = params[*it];
    const auto size = static_cast<int64_t>(p.nbytes());
    if (buckets.empty() || bytes + size > bucket_bytes ||
        p.scalar_type() != params[buckets.back().front()].scalar_type()) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(*it);
    bytes += size;
  }
  return buckets;
}

std::vector<size_t> all_indices(size_t n) {
  std::vector<size_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = i;
  return out;
}

// P floats on `device`: 1 where this rank has a gradient for the parameter. Staged in pinned
// memory: a pageable copy to a GPU would wait for every kernel queued so far.
at::Tensor used_map(const std::vector<bool>& used, const c10::Device& device) {
  std::vector<float> values(used.begin(), used.end());
  return compat::to_device_async(at::tensor(values, at::kFloat), device);
}

bool all_used(const std::vector<bool>& used) {
  return std::find(used.begin(), used.end(), false) == used.end();
}

// After the all-reduce: the averaged slice of `flat` becomes p's gradient.
void write_gradient(const at::Tensor& p, const at::Tensor& slice) {
  if (p.grad().defined()) {
    p.grad().copy_(slice.view(p.grad().sizes()));
  } else {
    p.mutable_grad() = slice.view(p.sizes()).to(p.device(), /*non_blocking=*/false, /*copy=*/true);
  }
}

}  // namespace

Distributed::Distributed(const DistEnv& env, const std::string& backend,
                         std::chrono::milliseconds timeout, double bucket_mb,
                         const c10::Device& device)
    : env_(env), bucket_bytes_(static_cast<int64_t>(bucket_mb * 1024 * 1024)) {
  if (env.world_size == 1) return;
  spdlog::info("distributed: rank {} of {} ({}), {} via {}:{}, device {}", env.rank, env.world_size,
               env.source, backend, env.master_addr, env.master_port, device.str());
  group_ = compat::make_process_group(backend, env.master_addr, env.master_port, env.rank,
                                      env.world_size, timeout, device);
}

Distributed::~Distributed() = default;

void Distributed::broadcast(const std::vector<at::Tensor>& tensors) {
  if (!group_) return;
  at::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    // The tensor itself when already contiguous and on the group's device.
    auto buffer = t.detach().to(group_->device()).contiguous();
    group_->broadcast(buffer, 0);
    if (buffer.data_ptr() != t.data_ptr()) t.detach().copy_(buffer);
  }
}

void Distributed::average_gradients(const std::vector<at::Tensor>& params) {
  if (!group_) return;
  at::NoGradGuard no_grad;
  std::vector<bool> local(params.size());
  for (size_t i = 0; i < params.size(); ++i) local[i] = params[i].grad().defined();
  auto counts = used_map(local, group_->device());
  group_->all_reduce_sum(counts);  // every rank takes part: some may lack a gradient
  std::vector<size_t> used;
  if (all_used(local)) {  // then so does the union over ranks: no read-back
    used = all_indices(params.size());
  } else {
    counts = counts.cpu();
    for (size_t i = 0; i < params.size(); ++i) {
      if (counts[static_cast<int64_t>(i)].item<float>() > 0) used.push_back(i);
    }
  }
  const double scale = 1.0 / env_.world_size;
  for (const auto& bucket : make_buckets(params, used, bucket_bytes_)) {
    std::vector<at::Tensor> views;
    for (const size_t i : bucket) {
      const auto& p = params[i];
      views.push_back(p.grad().defined() ? p.grad().reshape({-1})
                                         : at::zeros({p.numel()}, p.options()));
    }
    auto flat = at::cat(views).to(group_->device());
    group_->all_reduce_sum(flat);
    flat.mul_(scale);
    int64_t offset = 0;
    for (const size_t i : bucket) {
      write_gradient(params[i], flat.narrow(0, offset, params[i].numel()));
      offset += params[i].numel();
    }
  }
}

std::unique_ptr<GradientReducer> Distributed::make_reducer(const std::vector<at::Tensor>& params) {
  if (!group_) return nullptr;
  return std::make_unique<GradientReducer>(params, *group_, bucket_bytes_);
}

void Distributed::sum_on_device(at::Tensor& tensor) {
  if (!group_) return;
  if (tensor.device() == group_->device()) {
    group_->all_reduce_sum_async(tensor)->wait();
    return;
  }
  // Gloo with the model on a GPU: through the host (a wait, as in sum()).
  auto on_group = tensor.to(group_->device());
  group_->all_reduce_sum(on_group);
  tensor.copy_(on_group);
}

std::vector<double> Distributed::sum(std::vector<double> values) {
  if (!group_ || values.empty()) return values;
  auto t = at::tensor(values, at::kDouble).to(group_->device());
  group_->all_reduce_sum(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void Distributed::barrier() {
  if (group_) group_->barrier();
}

void Distributed::shutdown() {
  if (!group_) return;
  try {
    group_->shutdown();
  } catch (const std::exception& e) {
    spdlog::warn("{}", e.what());
  }
}

// ---- GradientReducer ----

struct GradientReducer::Impl {
  struct Bucket {
    std::vector<size_t> params;
    std::vector<int64_t> offsets;  // of each parameter in `flat`
    at::Tensor flat;               // on the group's device
    size_t pending = 0;            // gradients still to come this step
    std::unique_ptr<compat::PendingWork> work;
  };

  Impl(const std::vector<at::Tensor>& params_in, compat::ProcessGroup& group_in,
       int64_t bucket_bytes)
      : params(params_in), group(group_in), bucket_of(params_in.size()), slot_of(params_in.size()) {
    for (auto& indices : make_buckets(params, all_indices(params.size()), bucket_bytes)) {
      Bucket b;
      int64_t numel = 0;
      for (const size_t i : indices) {
        bucket_of[i] = buckets.size();
        slot_of[i] = b.offsets.size();
        b.offsets.push_back(numel);
        numel += params[i].numel();
      }
      b.params = std::move(indices);
      b.flat = at::zeros({numel}, params[b.params.front()].options().device(group.device()));
      buckets.push_back(std::move(b));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      auto acc = torch::autograd::impl::grad_accumulator(params[i]);
      TVIT_CHECK(acc != nullptr, "gradient reducer: parameter ", i, " does not require grad");
      keys.push_back(acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [this, i](const torch::autograd::variable_list& outputs,
                    const torch::autograd::variable_list&) {
            mark_ready(i);
            return outputs;
          })));
      accumulators.push_back(std::move(acc));
    }
  }

  ~Impl() {
    for (size_t i = 0; i < accumulators.size(); ++i) accumulators[i]->del_post_hook(keys[i]);
  }

  at::Tensor slot(size_t i) {
    auto& b = buckets[bucket_of[i]];
    return b.flat.narrow(0, b.offsets[slot_of[i]], params[i].numel());
  }

  void mark_ready(size_t i) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || !locally_used[i] || done[i]) return;
    done[i] = true;
    at::NoGradGuard no_grad;
    slot(i).copy_(params[i].grad().reshape({-1}), /*non_blocking=*/true);
    --buckets[bucket_of[i]].pending;
    launch_ready_buckets();
  }

  // Every rank launches the buckets in the same order: bucket k only after buckets 0..k-1.
  void launch_ready_buckets() {
    while (next_bucket < buckets.size() && buckets[next_bucket].pending == 0) {
      auto& b = buckets[next_bucket++];
      b.work = group.all_reduce_sum_async(b.flat);
    }
  }

  std::vector<at::Tensor> params;
  compat::ProcessGroup& group;
  std::vector<size_t> bucket_of, slot_of;
  std::vector<Bucket> buckets;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> keys;
  std::vector<bool> locally_used, done;
  at::Tensor used_counts;
  std::unique_ptr<compat::PendingWork> used_work;
  std::mutex mutex;
  size_t next_bucket = 0;
  bool armed = false;
};

GradientReducer::GradientReducer(const std::vector<at::Tensor>& params, compat::ProcessGroup& group,
                                 int64_t bucket_bytes)
    : impl_(std::make_unique<Impl>(params, group, bucket_bytes)) {}

GradientReducer::~GradientReducer() = default;

int64_t GradientReducer::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }

void GradientReducer::prepare(const at::Tensor& loss) {
  auto& m = *impl_;
  TVIT_CHECK(!m.armed, "gradient reducer: prepare() twice without finish()");
  // The parameters this loss reaches: every node of its graph, from grad_fn down.
  std::unordered_set<const torch::autograd::Node*> seen;
  std::vector<const torch::autograd::Node*> stack;
  if (loss.grad_fn()) {
    stack.push_back(loss.grad_fn().get());
    seen.insert(stack.back());
  }
  while (!stack.empty()) {
    const auto* node = stack.back();
    stack.pop_back();
    for (const auto& edge : node->next_edges()) {
      if (edge.function && seen.insert(edge.function.get()).second)
        stack.push_back(edge.function.get());
    }
  }
  std::lock_guard<std::mutex> lock(m.mutex);
  at::NoGradGuard no_grad;
  m.locally_used.assign(m.params.size(), false);
  m.done.assign(m.params.size(), false);
  // A parameter this loss does not reach but that has a gradient from earlier micro-batches
  // (gradient accumulation) is used too, and its gradient is already final.
  std::vector<size_t> final_already;
  for (size_t i = 0; i < m.params.size(); ++i) {
    const bool reached = seen.count(m.accumulators[i].get()) > 0;
    m.locally_used[i] = reached || m.params[i].grad().defined();
    if (!reached && m.locally_used[i]) final_already.push_back(i);
  }
  m.used_counts = used_map(m.locally_used, m.group.device());
  m.used_work = m.group.all_reduce_sum_async(m.used_counts);
  for (auto& b : m.buckets) {
    b.flat.zero_();  // an unused parameter contributes zeros
    b.pending = 0;
    for (const size_t i : b.params) b.pending += m.locally_used[i] ? 1 : 0;
  }
  m.next_bucket = 0;
  m.armed = true;
  for (const size_t i : final_already) {
    m.done[i] = true;
    m.slot(i).copy_(m.params[i].grad().reshape({-1}));
    --m.buckets[m.bucket_of[i]].pending;
  }
  m.launch_ready_buckets();
}

void GradientReducer::finish() {
  auto& m = *impl_;
  TVIT_CHECK(m.armed, "gradient reducer: finish() without prepare()");
  at::NoGradGuard no_grad;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    // A reached parameter whose hook did not run (its gradient was not needed): zeros.
    for (auto& b : m.buckets) b.pending = 0;
    m.launch_ready_buckets();
    m.armed = false;
  }
  m.used_work->wait();
  // Which parameters some rank used: read back (a wait for the device) only when this rank
  // lacks a gradient for one of them; where it used them all, so did the union.
  std::vector<bool> used = m.locally_used;
  if (!all_used(used)) {
    const auto counts = m.used_counts.cpu();
    for (size_t i = 0; i < used.size(); ++i)
      used[i] = counts[static_cast<int64_t>(i)].item<float>() > 0;
  }
  const double scale = 1.0 / m.group.size();
  for (auto& b : m.buckets) {
    b.work->wait();
    b.work.reset();
    b.flat.mul_(scale);
    for (const size_t i : b.params) {
      if (used[i]) write_gradient(m.params[i], m.slot(i));
    }
  }
}

}  // namespace thinkingvit::train
