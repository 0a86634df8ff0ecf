// Data-parallel training: where a process sits in the job, and two Gloo processes training
// exactly as one process with the same global batch.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "../test_util.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/train/distributed.h"
#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/process_group.h"

namespace thinkingvit::testing {

namespace {

using train::dist_env_from;

train::DistEnv env_of(const std::map<std::string, std::string>& vars) {
  return dist_env_from([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

// A tiny synthetic job whose randomness is all per sample (augmentation) or shared (schedule):
// no mixup / cutmix (they pair samples within a batch) and no drop path.
void write_config(const TempDir& dir) {
  std::ofstream(dir.file("tiny.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 12\n  head_dim: 4\n"
         "  depth: 2\n  stages: [1, 2]\n  drop_path_rate: 0.0\n"
         "data:\n  dataset: synthetic\n  synthetic_size: 48\n  batch_size: 8\n"
         "  eval_batch_size: 16\n  num_workers: 1\n"
         "augment:\n  train:\n    size: 8\n  eval:\n    size: 8\n    crop_pct: 1.0\n"
         "  mix:\n    mixup_alpha: 0.0\n    cutmix_alpha: 0.0\n"
         "optimizer:\n  lr: 1.0e-3\n  lr_base_batch: 8\n"
         "schedule:\n  epochs: 2\n  warmup_epochs: 0.5\n  cooldown_epochs: 0\n  per_step: true\n"
         "ema:\n  decay: 0.9\n"
         "distributed:\n  timeout_s: 20\n"
         "run:\n  threads: 1\n";
}

// A one-rank Gloo group: collectives run for real and the average is the rank's own value.
std::unique_ptr<compat::ProcessGroup> one_rank_group() {
  return compat::make_process_group("gloo", "127.0.0.1", free_port(), 0, 1,
                                    std::chrono::seconds(20));
}

}  // namespace

TEST(DistEnv, SingleProcessWithoutVariables) {
  const auto env = env_of({});
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.source, "single process");
}

TEST(DistEnv, TorchrunVariables) {
  const auto env = env_of({{"RANK", "5"},
                           {"WORLD_SIZE", "8"},
                           {"LOCAL_RANK", "1"},
                           {"LOCAL_WORLD_SIZE", "4"},
                           {"MASTER_ADDR", "node7"},
                           {"MASTER_PORT", "23456"}});
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.master_addr, "node7");
  EXPECT_EQ(env.master_port, 23456);
  EXPECT_EQ(env.source, "torchrun");
  EXPECT_EQ(env.addr_source, "MASTER_ADDR");
  EXPECT_EQ(env.port_source, "MASTER_PORT");
}

// An srun task: its rank and world from the step, the address from the step's first node
// (never SLURM_LAUNCH_NODE_IPADDR, the node srun ran on: a login node under salloc), the port
// from the job id.
TEST(DistEnv, SlurmStepTasks) {
  const auto env = env_of({{"SLURM_JOB_ID", "123456"},
                           {"SLURM_STEP_ID", "0"},
                           {"SLURM_PROCID", "3"},
                           {"SLURM_NTASKS", "4"},
                           {"SLURM_LOCALID", "1"},
                           {"SLURM_NODEID", "1"},
                           {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"},
                           {"SLURM_STEP_NODELIST", "gpu[07-08]"},
                           {"SLURM_JOB_NODELIST", "gpu[01-08]"},
                           {"SLURM_LAUNCH_NODE_IPADDR", "10.0.0.2"}});
  EXPECT_EQ(env.source, "Slurm step");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "gpu07");
  EXPECT_EQ(env.addr_source, "first host of SLURM_STEP_NODELIST 'gpu[07-08]'");
  EXPECT_EQ(env.master_port, 10000 + 123456 % 20000);
  EXPECT_EQ(env.port_source, "derived from SLURM_JOB_ID 123456");
  EXPECT_EQ(env.rendezvous(),
            "gpu07:13456 (address: first host of SLURM_STEP_NODELIST 'gpu[07-08]', port: "
            "derived from SLURM_JOB_ID 123456)");
  EXPECT_FALSE(env.agent_store);
  // MASTER_ADDR and MASTER_PORT win; without a step list, the job's.
  const auto exported = env_of({{"SLURM_JOB_ID", "7"}, {"SLURM_STEP_ID", "0"},
                                {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"},
                                {"SLURM_JOB_NODELIST", "a1,b2"}, {"MASTER_PORT", "29400"}});
  EXPECT_EQ(exported.master_addr, "a1");
  EXPECT_EQ(exported.master_port, 29400);
  EXPECT_EQ(exported.port_source, "MASTER_PORT");
  EXPECT_EQ(env_of({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"},
                    {"SLURM_STEP_NODELIST", "a1"}, {"MASTER_ADDR", "head"}})
                .addr_source,
            "MASTER_ADDR");
  // Two jobs whose rank 0 shares a node meet on different ports.
  EXPECT_NE(train::port_for_slurm_job(1001), train::port_for_slurm_job(1002));
  for (const long long job : {0LL, 19999LL, 20000LL, 987654321LL}) {
    EXPECT_GE(train::port_for_slurm_job(job), 10000);
    EXPECT_LT(train::port_for_slurm_job(job), 30000);
  }
}

// The process a batch script runs has the job's SLURM_PROCID and SLURM_NTASKS but no step: it is
// one process, and does not wait for peers that never come.
TEST(DistEnv, ABatchScriptProcessIsOneProcess) {
  const auto env = env_of({{"SLURM_JOB_ID", "42"},
                           {"SLURM_PROCID", "0"},
                           {"SLURM_NTASKS", "4"},
                           {"SLURM_LOCALID", "0"},
                           {"SLURM_JOB_NODELIST", "node[1-2]"}});
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.source, "single process");
  EXPECT_EQ(env.master_addr, "127.0.0.1");
  EXPECT_EQ(env.addr_source, "default");
}

// torchrun's variables describe the process's own rank, also inside a Slurm step; under its
// agent every rank is a store client, with one key prefix per restart attempt.
TEST(DistEnv, TorchrunAgentStoreAndInsideASlurmStep) {
  const auto env = env_of({{"RANK", "3"},
                           {"WORLD_SIZE", "8"},
                           {"LOCAL_RANK", "1"},
                           {"LOCAL_WORLD_SIZE", "2"},
                           {"MASTER_ADDR", "n1"},
                           {"MASTER_PORT", "29500"},
                           {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                           {"TORCHELASTIC_RESTART_COUNT", "2"},
                           {"SLURM_STEP_ID", "0"},
                           {"SLURM_PROCID", "1"},
                           {"SLURM_NTASKS", "4"}});
  EXPECT_EQ(env.source, "torchrun in a Slurm step");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_TRUE(env.agent_store);
  EXPECT_EQ(env.store_prefix, "/worker/attempt_2");
  EXPECT_EQ(env.restart_count, 2);
  EXPECT_NE(env.rendezvous().find("torchelastic agent store, keys under /worker/attempt_2"),
            std::string::npos);
  EXPECT_FALSE(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}).agent_store);
  EXPECT_FALSE(
      env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", "False"}})
          .agent_store);
}

TEST(DistEnv, HostListsExpandAsSlurmDoes) {
  using V = std::vector<std::string>;
  EXPECT_EQ(train::expand_hostlist("gpu[01-04,07]", "L"),
            (V{"gpu01", "gpu02", "gpu03", "gpu04", "gpu07"}));
  EXPECT_EQ(train::expand_hostlist("node7", "L"), (V{"node7"}));
  EXPECT_EQ(train::expand_hostlist("a[9-11],b,c[3]", "L"), (V{"a9", "a10", "a11", "b", "c3"}));
  EXPECT_EQ(train::expand_hostlist("r[1-2]-n[08-09]", "L"),
            (V{"r1-n08", "r1-n09", "r2-n08", "r2-n09"}));
  EXPECT_EQ(train::expand_hostlist("x[098-100]", "L"), (V{"x098", "x099", "x100"}));
  for (const auto& [bad, why] : std::vector<std::pair<std::string, std::string>>{
           {"gpu[01-04", "unbalanced brackets"},
           {"gpu[4-1]", "runs backwards"},
           {"gpu[a-b]", "not N or N-M"},
           {"gpu[]", "empty range"},
           {"a,,b", "empty host name"}}) {
    expect_error([&] { train::expand_hostlist(bad, "SLURM_STEP_NODELIST"); },
                 {"environment variable SLURM_STEP_NODELIST", "'" + bad + "'", why});
  }
  EXPECT_EQ(train::expand_tasks_per_node("2(x3),1", "T"), (std::vector<int>{2, 2, 2, 1}));
  EXPECT_EQ(train::expand_tasks_per_node("4", "T"), (std::vector<int>{4}));
  expect_error([] { train::expand_tasks_per_node("2x", "SLURM_STEP_TASKS_PER_NODE"); },
               {"SLURM_STEP_TASKS_PER_NODE", "'2x'"});
}

// Threads: the usable cores shared among the node's processes; a Slurm task's --cpus-per-task
// caps them.
TEST(DistEnv, ThreadsShareTheUsableCores) {
  auto no_vars = [](const char*) -> const char* { return nullptr; };
  train::DistEnv env;
  env.local_world_size = 4;
  env.source = "torchrun";
  EXPECT_EQ(train::threads_per_process(env, 16, no_vars), 4);
  EXPECT_EQ(train::threads_per_process(env, 2, no_vars), 1);
  auto per_task = [](const char* name) -> const char* {
    return std::string(name) == "SLURM_CPUS_PER_TASK" ? "6" : nullptr;
  };
  env.source = "Slurm step";
  EXPECT_EQ(train::threads_per_process(env, 6, per_task), 6);   // srun bound the task to its 6
  EXPECT_EQ(train::threads_per_process(env, 24, per_task), 6);  // unbound: still its share
  EXPECT_EQ(train::threads_per_process(env, 4, per_task), 4);
  env.source = "torchrun in a Slurm step";  // the task's CPUs shared by torchrun's workers
  EXPECT_EQ(train::threads_per_process(env, 8, per_task), 2);
  // This process's affinity mask, not the machine's core count.
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &saved)) {
      CPU_SET(c, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int pinned = util::usable_cores();
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
  EXPECT_EQ(pinned, 1);
  EXPECT_EQ(util::usable_cores(), CPU_COUNT(&saved));
}

// GPU LOCAL_RANK of those visible, or the only one a process sees (SLURM --gpus-per-task).
TEST(DistEnv, EachProcessTakesItsGpu) {
  EXPECT_EQ(train::gpu_for_local_rank(0, 8), 0);
  EXPECT_EQ(train::gpu_for_local_rank(5, 8), 5);
  EXPECT_EQ(train::gpu_for_local_rank(3, 1), 0);
  expect_error([] { train::gpu_for_local_rank(4, 2); },
               {"run.device cuda: LOCAL_RANK 4 but only 2 GPUs are visible"});
  expect_error([] { train::gpu_for_local_rank(0, 0); }, {"no GPU is visible"});
}

TEST(DistEnv, MalformedVariablesNameThemselves) {
  auto expect_error = [](const std::map<std::string, std::string>& vars, const std::string& what) {
    try {
      env_of(vars);
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error({{"RANK", "one"}, {"WORLD_SIZE", "2"}},
               "environment variable RANK: expected an integer >= 0, found 'one'");
  expect_error({{"RANK", "2"}, {"WORLD_SIZE", "2"}}, "rank 2 is outside a world of 2");
  expect_error({{"RANK", "0"}}, "RANK and WORLD_SIZE must be set together");
  expect_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}, "MASTER_PORT");
}

TEST(GradientReducer, HooksDeliverEveryUsedGradientAndLeaveUnusedOnesEmpty) {
  auto group = one_rank_group();
  EXPECT_EQ(group->device(), c10::Device(c10::kCPU));
  auto a = torch::randn({5}).requires_grad_(), b = torch::randn({3, 2}).requires_grad_();
  auto c = torch::randn({4}).requires_grad_();
  // 8 bytes per bucket: every parameter gets its own bucket, launched in reverse order.
  train::GradientReducer reducer({a, b, c}, *group, /*bucket_bytes=*/8);
  EXPECT_EQ(reducer.num_buckets(), 3);
  const auto x = torch::randn({5}), y = torch::randn({3, 2});
  for (int step = 0; step < 2; ++step) {  // the hooks re-arm for every step
    a.mutable_grad() = at::Tensor();
    b.mutable_grad() = at::Tensor();
    const auto loss = (a * x).sum() + (b * b * y).sum();  // c takes no part
    reducer.prepare(loss);
    loss.backward();
    reducer.finish();
    EXPECT_TRUE(close_scaled(a.grad(), x, 1e-7));
    EXPECT_TRUE(close_scaled(b.grad(), 2 * b.detach() * y, 1e-7));
    EXPECT_FALSE(c.grad().defined()) << "a parameter no rank used keeps no gradient";
  }
  // c unused here: which parameters some rank used had to be read back, at every step.
  EXPECT_EQ(reducer.used_readbacks(), 2);
}

// The trainer's case (every rank samples the same stages): no used-parameter exchange, no host
// wait, and the same gradients.
TEST(GradientReducer, SameUseOnEveryRankNeedsNoReadback) {
  auto group = one_rank_group();
  auto a = torch::randn({5}).requires_grad_(), c = torch::randn({4}).requires_grad_();
  train::GradientReducer reducer({a, c}, *group, /*bucket_bytes=*/8,
                                 /*same_use_on_every_rank=*/true);
  const auto x = torch::randn({5});
  for (int step = 0; step < 3; ++step) {
    a.mutable_grad() = at::Tensor();
    const auto loss = (a * a * x).sum();  // c takes no part, as an unsampled stage's weights
    reducer.prepare(loss);
    loss.backward();
    reducer.finish();
    EXPECT_TRUE(close_scaled(a.grad(), 2 * a.detach() * x, 1e-7));
    EXPECT_FALSE(c.grad().defined());
  }
  EXPECT_EQ(reducer.used_readbacks(), 0);
}

TEST(GradientReducer, GradientsFromEarlierMicroBatchesCount) {
  auto group = one_rank_group();
  auto a = torch::randn({4}).requires_grad_(), c = torch::randn({4}).requires_grad_();
  train::GradientReducer reducer({a, c}, *group, /*bucket_bytes=*/1 << 20);
  EXPECT_EQ(reducer.num_buckets(), 1);
  const auto x = torch::randn({4});
  (c * x).sum().backward();                             // micro-batch 1 (no step follows): only c
  const auto loss = (a * x * 3).sum() + (c * x).sum();  // micro-batch 2: both
  reducer.prepare(loss);
  loss.backward();
  reducer.finish();
  EXPECT_TRUE(close_scaled(a.grad(), 3 * x, 1e-7));
  EXPECT_TRUE(close_scaled(c.grad(), 2 * x, 1e-7));
  // c used only before the last micro-batch: its gradient is final before backward.
  a.mutable_grad() = at::Tensor();
  c.mutable_grad() = x.clone();
  const auto only_a = (a * x).sum();
  reducer.prepare(only_a);
  only_a.backward();
  reducer.finish();
  EXPECT_TRUE(close_scaled(a.grad(), x, 1e-7));
  EXPECT_TRUE(close_scaled(c.grad(), x, 1e-7));
}

TEST(GradientReducer, RefusesCallsOutOfOrder) {
  auto group = one_rank_group();
  auto a = torch::randn({3}).requires_grad_(), c = torch::randn({3}).requires_grad_();
  train::GradientReducer reducer({a, c}, *group, 1 << 20);
  EXPECT_THROW(reducer.finish(), Error);  // finish() without prepare()
  const auto loss = (a * 2).sum();
  reducer.prepare(loss);
  EXPECT_THROW(reducer.prepare(loss), Error);
  loss.backward();
  reducer.finish();
  EXPECT_TRUE(close_scaled(a.grad(), torch::full({3}, 2.0), 1e-7));
  EXPECT_FALSE(c.grad().defined());
}

// Two ranks (threads with a Gloo group each): rank 0 uses every parameter, rank 1 only `a`.
// Both end with the average over ranks, a gradient that rank 1 lacks counting as zero there;
// rank 0 knows the union without reading the counts back, rank 1 reads them. The overlapped
// reducer and the sequential average_gradients agree.
TEST(GradientReducer, TwoRanksAverageWhatEitherUsed) {
  const int ports[2] = {free_port(), free_port()};
  const auto x = torch::randn({4}), y = torch::randn({2, 3});
  const auto a0 = torch::randn({4}), b0 = torch::randn({2, 3}), c0 = torch::randn({3});
  for (const bool overlap : {true, false}) {
    std::vector<at::Tensor> grads[2];
    auto rank = [&](int r) {
      train::DistEnv env;
      env.rank = r;
      env.world_size = 2;
      env.master_port = ports[overlap ? 0 : 1];
      train::Distributed dist(env, "gloo", std::chrono::seconds(20), /*bucket_mb=*/1e-5);
      auto a = a0.clone().requires_grad_(), b = b0.clone().requires_grad_();
      auto c = c0.clone().requires_grad_();
      auto reducer = dist.make_reducer({a, b, c});
      const auto loss = r == 0 ? (a * x).sum() + (b * y).sum() + (c * c).sum() : (a * 3 * x).sum();
      if (overlap) reducer->prepare(loss);
      loss.backward();
      if (overlap) {
        reducer->finish();
      } else {
        dist.average_gradients({a, b, c});
      }
      for (const auto& p : {a, b, c})
        grads[r].push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
    };
    std::thread other(rank, 1);
    rank(0);
    other.join();
    const at::Tensor expected[3] = {2 * x, y / 2, c0};  // (x + 3x) / 2, (y + 0) / 2, (2c + 0) / 2
    for (int r = 0; r < 2; ++r) {
      for (int k = 0; k < 3; ++k) {
        ASSERT_TRUE(grads[r][k].defined()) << "rank " << r << " parameter " << k;
        EXPECT_TRUE(close_scaled(grads[r][k], expected[k], 1e-6))
            << "overlap " << overlap << " rank " << r << " parameter " << k;
      }
    }
  }
}

// Gloo binds to this node's own address, or to GLOO_SOCKET_IFNAME's interface (never to
// MASTER_ADDR, rank 0's node).
TEST(Distributed, GlooBindsToGlooSocketIfname) {
  ::setenv("GLOO_SOCKET_IFNAME", "lo", 1);
  {
    auto group = one_rank_group();
    auto t = torch::ones({3});
    group->all_reduce_sum(t);
    EXPECT_TRUE(torch::equal(t, torch::ones({3})));
  }
  ::setenv("GLOO_SOCKET_IFNAME", "no-such-nic0", 1);
  try {
    one_rank_group();
    ADD_FAILURE() << "an interface that does not exist was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-nic0"), std::string::npos) << e.what();
  }
  ::unsetenv("GLOO_SOCKET_IFNAME");
}

TEST(Distributed, CollectivesRefuseTensorsOffTheGroupsDevice) {
  auto group = one_rank_group();
  auto meta = torch::empty({2}, torch::TensorOptions().device(c10::kMeta));
  try {
    group->all_reduce_sum(meta);
    ADD_FAILURE() << "a tensor on another device was reduced";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the group reduces tensors on cpu"), std::string::npos)
        << e.what();
  }
}

TEST(Distributed, SingleProcessIsANoOp) {
  train::Distributed dist(train::DistEnv{}, "gloo", std::chrono::seconds(1));
  EXPECT_FALSE(dist.enabled());
  auto p = torch::ones({3}).requires_grad_();
  p.mutable_grad() = torch::full({3}, 2.0);
  dist.average_gradients({p});
  EXPECT_TRUE(torch::equal(p.grad(), torch::full({3}, 2.0)));
  EXPECT_EQ(dist.sum({1.5, 2.0}), (std::vector<double>{1.5, 2.0}));
}

// Two Gloo processes with 4 images each end with the weights of one process with 8 images.
TEST(Distributed, TwoGlooProcessesEqualOneWithTheSameGlobalBatch) {
  TempDir dir;
  write_config(dir);
  const std::string bin = THINKINGVIT_BIN;
  const std::string common = " train --config " + dir.file("tiny.yaml");
  ASSERT_EQ(run_shell(bin + common + " --output-dir " + dir.file("one") + " > " +
                      dir.file("one.log") + " 2>&1")
                .code,
            0)
      << slurp(dir.file("one.log"));
  ASSERT_EQ(
      run_shell("bash " + launcher_script() + " 2 " + bin + common + " --output-dir " +
                dir.file("two") + " --set data.batch_size=4 > " + dir.file("two.log") + " 2>&1")
          .code,
      0)
      << slurp(dir.file("two.log"));
  EXPECT_NE(slurp(dir.file("two/train.log")).find("effective 0.001 for global batch 8"),
            std::string::npos);
  const std::string last = "/checkpoints/epoch_0001/";
  for (const char* file : {"model.safetensors", "ema.safetensors"}) {
    const auto one = io::read_safetensors(dir.file("one") + last + file).tensors;
    const auto two = io::read_safetensors(dir.file("two") + last + file).tensors;
    ASSERT_EQ(one.size(), two.size());
    for (const auto& [name, tensor] : one) {
      const double diff = (tensor - two.at(name)).abs().max().item<double>();
      EXPECT_LT(diff, 1e-5) << file << " " << name;
    }
  }
  // The second epoch moved the weights: the 1e-5 agreement is not between unchanged tensors.
  const auto first = io::read_safetensors(dir.file("one/checkpoints/epoch_0000/model.safetensors"));
  const auto second = io::read_safetensors(dir.file("one") + last + "model.safetensors");
  EXPECT_GT((first.tensors.at("head.weight") - second.tensors.at("head.weight"))
                .abs()
                .max()
                .item<double>(),
            1e-4);
  // Only rank 0 wrote: one metrics line per epoch, and validation counted every image once.
  const auto metrics = slurp(dir.file("two/metrics.jsonl"));
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 2) << metrics;
  const auto one_metrics = slurp(dir.file("one/metrics.jsonl"));
  const auto top1 = [](const std::string& text) {
    const auto at = text.rfind("\"val_top1\":");
    return text.substr(at, text.find(']', at) - at);
  };
  EXPECT_EQ(top1(metrics), top1(one_metrics));
}

// Gradient all-reduce overlapped with backward (buckets launched from the accumulator hooks)
// ends with the weights of the all-reduce after backward, for every stage-sampling mode and
// with gradient accumulation; small buckets make several of them per step.
TEST(Distributed, OverlappedAllReduceGivesTheWeightsOfTheSequentialOne) {
  TempDir dir;
  write_config(dir);
  const std::string bin = THINKINGVIT_BIN;
  const std::string common = " train --config " + dir.file("tiny.yaml") +
                             " --set data.batch_size=4 --set distributed.bucket_mb=0.002"
                             " --set model.stages=[1,2,3] --set schedule.epochs=1";
  const std::vector<std::string> modes = {"sampling.mode=all --set optimizer.accum_steps=2",
                                          "sampling.mode=sandwich", "sampling.mode=stochastic"};
  for (size_t m = 0; m < modes.size(); ++m) {
    std::map<std::string, io::TensorMap> weights;
    for (const char* overlap : {"true", "false"}) {
      const std::string out = dir.file("run" + std::to_string(m) + overlap);
      ASSERT_EQ(run_shell("bash " + launcher_script() + " 2 " + bin + common + " --set " +
                          modes[m] + " --set distributed.overlap=" + overlap + " --output-dir " +
                          out + " > " + out + ".log 2>&1")
                    .code,
                0)
          << slurp(out + ".log");
      weights[overlap] =
          io::read_safetensors(out + "/checkpoints/epoch_0000/model.safetensors").tensors;
    }
    ASSERT_EQ(weights["true"].size(), weights["false"].size());
    for (const auto& [name, tensor] : weights["false"]) {
      EXPECT_TRUE(close_scaled(weights["true"].at(name), tensor, 1e-6)) << modes[m] << " " << name;
    }
  }
}

// A rank whose peers never arrive fails with one clear error inside the timeout.
TEST(Distributed, AMissingPeerFailsWithinTheTimeout) {
  TempDir dir;
  write_config(dir);
  const auto start = std::chrono::steady_clock::now();
  const int code =
      run_shell("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                std::to_string(free_port()) + " " + std::string(THINKINGVIT_BIN) +
                " train --config " + dir.file("tiny.yaml") + " --output-dir " + dir.file("run") +
                " --set distributed.timeout_s=2 > /dev/null 2> " + dir.file("err.txt"))
          .code;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(code, 0);
  EXPECT_LT(seconds, 60.0);
  const auto err = slurp(dir.file("err.txt"));
  EXPECT_NE(err.find("error: distributed: rank 0"), std::string::npos) << err;
  EXPECT_EQ(err.find("frame #"), std::string::npos) << "a backtrace instead of one line: " << err;
  // The launcher stops every process when one fails and returns its status.
  const int launched =
      run_shell("bash " + launcher_script() + " 2 " + std::string(THINKINGVIT_BIN) +
                " train --config " + dir.file("missing.yaml") + " > /dev/null 2> " +
                dir.file("launch.txt"))
          .code;
  EXPECT_NE(launched, 0);
  EXPECT_NE(slurp(dir.file("launch.txt")).find("missing.yaml"), std::string::npos);
}

}  // namespace thinkingvit::testing
