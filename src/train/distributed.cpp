#include "thinkingvit/train/distributed.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cstdlib>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <sstream>
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

bool truthy(const char* text) {
  if (text == nullptr) return false;
  std::string t(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  return t == "1" || t == "true" || t == "yes";
}

// "a[1-2]b" at `pos` (after a '['): the range list up to ']' as strings, padding kept.
std::vector<std::string> expand_brackets(const std::string& body, const std::string& what,
                                         const std::string& list) {
  std::vector<std::string> out;
  std::stringstream items(body);
  std::string item;
  auto bad = [&](const std::string& why) {
    fail("environment variable ", what, ": host list '", list, "' ", why);
  };
  while (std::getline(items, item, ',')) {
    const auto dash = item.find('-');
    const std::string lo = item.substr(0, dash);
    const std::string hi = dash == std::string::npos ? lo : item.substr(dash + 1);
    const auto digits = [](const std::string& t) {
      return !t.empty() && t.size() <= 9 &&
             std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isdigit(c); });
    };
    if (!digits(lo) || !digits(hi)) bad("has a range '" + item + "' that is not N or N-M");
    const long a = std::stol(lo), b = std::stol(hi);
    if (b < a) bad("has a range '" + item + "' that runs backwards");
    if (b - a >= 1 << 16) bad("has a range '" + item + "' of more than 65536 hosts");
    for (long v = a; v <= b; ++v) {
      std::string number = std::to_string(v);
      if (number.size() < lo.size()) number.insert(0, lo.size() - number.size(), '0');
      out.push_back(number);
    }
  }
  if (out.empty()) bad("has an empty range '[]'");
  return out;
}

}  // namespace

std::vector<std::string> expand_hostlist(const std::string& list, const std::string& what) {
  // Split at the commas outside brackets: "gpu[01-02,07],cpu1" -> "gpu[01-02,07]", "cpu1".
  std::vector<std::string> names;
  std::string current;
  int depth = 0;
  for (const char c : list) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    TVIT_CHECK(depth == 0 || depth == 1, "environment variable ", what, ": host list '", list,
               "' has unbalanced brackets");
    if (c == ',' && depth == 0) {
      names.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  TVIT_CHECK(depth == 0, "environment variable ", what, ": host list '", list,
             "' has unbalanced brackets");
  names.push_back(current);
  std::vector<std::string> hosts;
  for (const auto& name : names) {
    TVIT_CHECK(!name.empty(), "environment variable ", what, ": host list '", list,
               "' has an empty host name");
    std::vector<std::string> expanded{""};  // every bracket group multiplies the names out
    size_t pos = 0;
    while (pos < name.size()) {
      const auto open = name.find('[', pos);
      const std::string text = name.substr(pos, open - pos);
      for (auto& e : expanded) e += text;
      if (open == std::string::npos) break;
      const auto close = name.find(']', open);
      std::vector<std::string> next;
      for (const auto& e : expanded) {
        for (const auto& n : expand_brackets(name.substr(open + 1, close - open - 1), what, list))
          next.push_back(e + n);
      }
      TVIT_CHECK(next.size() <= 1 << 20, "environment variable ", what, ": host list '", list,
                 "' names more than 2^20 hosts");
      expanded = std::move(next);
      pos = close + 1;
    }
    hosts.insert(hosts.end(), expanded.begin(), expanded.end());
  }
  return hosts;
}

std::vector<int> expand_tasks_per_node(const std::string& list, const std::string& what) {
  std::vector<int> counts;
  std::stringstream items(list);
  std::string item;
  while (std::getline(items, item, ',')) {
    int count = 0, repeat = 1;
    char tail = 0;
    if (std::sscanf(item.c_str(), "%d(x%d)%c", &count, &repeat, &tail) == 2 ||
        (std::sscanf(item.c_str(), "%d%c", &count, &tail) == 1 && (repeat = 1))) {
      TVIT_CHECK(count >= 1 && repeat >= 1 && repeat <= 1 << 20, "environment variable ", what,
                 ": expected counts like '2(x3),1', found '", list, "'");
      counts.insert(counts.end(), static_cast<size_t>(repeat), count);
    } else {
      fail("environment variable ", what, ": expected counts like '2(x3),1', found '", list, "'");
    }
  }
  TVIT_CHECK(!counts.empty(), "environment variable ", what,
             ": expected counts like '2(x3),1', found '", list, "'");
  return counts;
}

int port_for_slurm_job(long long job_id) { return 10000 + static_cast<int>(job_id % 20000); }

std::string DistEnv::origin() const {
  std::string text = "(address: " + addr_source + ", port: " + port_source;
  if (agent_store) text += ", torchelastic agent store, keys under " + store_prefix;
  return text + ")";
}

std::string DistEnv::rendezvous() const {
  return master_addr + ":" + std::to_string(master_port) + " " + origin();
}

DistEnv dist_env_from(const std::function<const char*(const char*)>& getenv) {
  DistEnv env;
  auto get_int = [&](const char* name, int fallback, int min_value) {
    const char* text = getenv(name);
    return text ? parse_int(name, text, min_value) : fallback;
  };
  // srun sets SLURM_STEP_ID in each task of a step; a batch script's own process has
  // SLURM_PROCID and SLURM_NTASKS too (the job's), but no step.
  const bool slurm_step = getenv("SLURM_STEP_ID") && getenv("SLURM_PROCID");
  if (getenv("WORLD_SIZE") || getenv("RANK")) {
    TVIT_CHECK(
        getenv("WORLD_SIZE") && getenv("RANK"),
        "environment: RANK and WORLD_SIZE must be set together (torchrun style), found only ",
        getenv("RANK") ? "RANK" : "WORLD_SIZE");
    env.source = slurm_step ? "torchrun in a Slurm step" : "torchrun";
    env.world_size = get_int("WORLD_SIZE", 1, 1);
    env.rank = get_int("RANK", 0, 0);
    env.local_rank = get_int("LOCAL_RANK", env.rank, 0);
    env.local_world_size = get_int("LOCAL_WORLD_SIZE", env.world_size, 1);
    env.agent_store = truthy(getenv("TORCHELASTIC_USE_AGENT_STORE"));
    env.restart_count = get_int("TORCHELASTIC_RESTART_COUNT", 0, 0);
    // As torch.distributed's env:// rendezvous under the agent: one key space per attempt.
    if (env.agent_store) env.store_prefix = "/worker/attempt_" + std::to_string(env.restart_count);
  } else if (slurm_step) {
    TVIT_CHECK(getenv("SLURM_NTASKS"), "environment: SLURM_STEP_ID and SLURM_PROCID are set "
               "(a Slurm step) but SLURM_NTASKS is not");
    env.source = "Slurm step";
    env.world_size = get_int("SLURM_NTASKS", 1, 1);
    env.rank = get_int("SLURM_PROCID", 0, 0);
    env.local_rank = get_int("SLURM_LOCALID", 0, 0);
    env.restart_count = get_int("SLURM_RESTART_COUNT", 0, 0);
    env.local_world_size = env.world_size;
    if (getenv("SLURM_NTASKS_PER_NODE")) {
      env.local_world_size = get_int("SLURM_NTASKS_PER_NODE", 1, 1);
    } else {
      for (const char* name : {"SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"}) {
        if (!getenv(name)) continue;
        const auto counts = expand_tasks_per_node(getenv(name), name);
        const int node = get_int("SLURM_NODEID", 0, 0);
        if (node < static_cast<int>(counts.size())) env.local_world_size = counts[node];
        break;
      }
    }
  }
  TVIT_CHECK(env.rank < env.world_size, "environment (", env.source, "): rank ", env.rank,
             " is outside a world of ", env.world_size);
  TVIT_CHECK(env.local_rank < env.local_world_size, "environment (", env.source,
             "): local rank ", env.local_rank, " is outside the ", env.local_world_size,
             " processes of this node");
  if (const char* addr = getenv("MASTER_ADDR"); addr && *addr) {
    env.master_addr = addr;
    env.addr_source = "MASTER_ADDR";
  } else if (env.world_size > 1) {
    for (const char* name : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"}) {
      const char* list = getenv(name);
      if (!list || !*list) continue;
      env.master_addr = expand_hostlist(list, name).front();
      env.addr_source = std::string("first host of ") + name + " '" + list + "'";
      break;
    }
  }
  if (const char* port = getenv("MASTER_PORT"); port && *port) {
    env.master_port = parse_int("MASTER_PORT", port, 1);
    env.port_source = "MASTER_PORT";
  } else if (const char* job = getenv("SLURM_JOB_ID"); job && env.world_size > 1) {
    env.master_port = port_for_slurm_job(parse_int("SLURM_JOB_ID", job, 0));
    env.port_source = std::string("derived from SLURM_JOB_ID ") + job;
  }
  TVIT_CHECK(env.master_port < 65536,
             "environment variable MASTER_PORT: expected a TCP port, found ", env.master_port);
  return env;
}

DistEnv dist_env() {
  return dist_env_from([](const char* name) { return std::getenv(name); });
}

int threads_per_process(const DistEnv& env, int usable_cores,
                        const std::function<const char*(const char*)>& getenv) {
  int threads = std::max(1, usable_cores / std::max(1, env.local_world_size));
  const char* per_task = getenv("SLURM_CPUS_PER_TASK");
  if (per_task && env.source == "Slurm step") {  // torchrun in a step shares its task's CPUs
    threads = std::min(std::max(1, usable_cores),
                       parse_int("SLURM_CPUS_PER_TASK", per_task, /*min_value=*/1));
  }
  return threads;
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
  spdlog::info("distributed: rank {} of {} ({}, local rank {} of {}), {} via {}, device {}",
               env.rank, env.world_size, env.source, env.local_rank, env.local_world_size, backend,
               env.rendezvous(), device.str());
  compat::Rendezvous rendezvous;
  rendezvous.addr = env.master_addr;
  rendezvous.port = env.master_port;
  rendezvous.agent_store = env.agent_store;
  rendezvous.prefix = env.store_prefix;
  rendezvous.origin = env.origin();
  group_ = compat::make_process_group(backend, rendezvous, env.rank, env.world_size, timeout,
                                      device);
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

std::string Distributed::broadcast_string(const std::string& text) {
  if (!group_) return text;
  constexpr int64_t kMaxBytes = 1 << 20;
  TVIT_CHECK(!is_main() || static_cast<int64_t>(text.size()) <= kMaxBytes,
             "distributed: a broadcast text of ", text.size(), " bytes; at most ", kMaxBytes);
  auto length = at::tensor({static_cast<int64_t>(text.size())}, at::kLong).to(group_->device());
  group_->broadcast(length, 0);
  const int64_t n = length.cpu().item<int64_t>();
  auto bytes = at::zeros({std::max<int64_t>(n, 1)}, at::kByte);
  if (is_main()) std::copy(text.begin(), text.end(), bytes.data_ptr<uint8_t>());
  bytes = bytes.to(group_->device());
  group_->broadcast(bytes, 0);
  bytes = bytes.cpu();
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()),
                     static_cast<size_t>(n));
}

void Distributed::average_gradients(const std::vector<at::Tensor>& params,
                                    bool same_use_on_every_rank) {
  if (!group_) return;
  at::NoGradGuard no_grad;
  std::vector<bool> local(params.size());
  for (size_t i = 0; i < params.size(); ++i) local[i] = params[i].grad().defined();
  std::vector<size_t> used;
  if (same_use_on_every_rank) {
    for (size_t i = 0; i < params.size(); ++i) {
      if (local[i]) used.push_back(i);
    }
  } else {
    auto counts = used_map(local, group_->device());
    group_->all_reduce_sum(counts);  // every rank takes part: some may lack a gradient
    if (all_used(local)) {           // then so does the union over ranks: no read-back
      used = all_indices(params.size());
    } else {
      counts = counts.cpu();
      for (size_t i = 0; i < params.size(); ++i) {
        if (counts[static_cast<int64_t>(i)].item<float>() > 0) used.push_back(i);
      }
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

std::unique_ptr<GradientReducer> Distributed::make_reducer(const std::vector<at::Tensor>& params,
                                                           bool same_use_on_every_rank) {
  if (!group_) return nullptr;
  return std::make_unique<GradientReducer>(params, *group_, bucket_bytes_, same_use_on_every_rank);
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
       int64_t bucket_bytes, bool same_use)
      : params(params_in),
        group(group_in),
        bucket_of(params_in.size()),
        slot_of(params_in.size()),
        same_use_on_every_rank(same_use) {
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
  bool same_use_on_every_rank = false;
  int64_t used_readbacks = 0;
};

GradientReducer::GradientReducer(const std::vector<at::Tensor>& params, compat::ProcessGroup& group,
                                 int64_t bucket_bytes, bool same_use_on_every_rank)
    : impl_(std::make_unique<Impl>(params, group, bucket_bytes, same_use_on_every_rank)) {}

GradientReducer::~GradientReducer() = default;

int64_t GradientReducer::num_buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }

int64_t GradientReducer::used_readbacks() const { return impl_->used_readbacks; }

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
  if (!m.same_use_on_every_rank) {
    m.used_counts = used_map(m.locally_used, m.group.device());
    m.used_work = m.group.all_reduce_sum_async(m.used_counts);
  }
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
  // Which parameters some rank used: read back (a wait for the device) only when this rank
  // lacks a gradient for one of them; where it used them all, so did the union.
  std::vector<bool> used = m.locally_used;
  if (m.used_work) {
    m.used_work->wait();
    m.used_work.reset();
  }
  if (!m.same_use_on_every_rank && !all_used(used)) {
    ++m.used_readbacks;
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
