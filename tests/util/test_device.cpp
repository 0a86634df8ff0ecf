// "device: auto" on a GPU node that the build or its driver cannot use: an error saying which,
// never a silent run on the CPUs. The driver's /proc files come from a prepared folder (no GPU
// here), the one stand-in in these tests.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/device.h"

namespace thinkingvit::testing {

namespace {

namespace fs = std::filesystem;

// `root`/proc/driver/nvidia as the driver lays it out: one folder per GPU, and its version line.
void fake_driver(const fs::path& root, int gpus, const std::string& version_line) {
  const auto driver = root / "proc/driver/nvidia";
  for (int g = 0; g < gpus; ++g)
    fs::create_directories(driver / "gpus" / ("0000:" + std::to_string(0x10 + g) + ":00.0"));
  fs::create_directories(driver);
  if (!version_line.empty()) std::ofstream(driver / "version") << version_line << "\n";
}

}  // namespace

TEST(GpuProbe, ReadsTheDriversFiles) {
  TempDir dir;
  fake_driver(dir.path() / "a", 8,
              "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:12 UTC "
              "2025");
  auto probe = compat::probe_nvidia((dir.path() / "a").string());
  EXPECT_EQ(probe.gpus, 8);
  EXPECT_EQ(probe.driver_version, "580.65.06");
  // The open kernel module's wording.
  fake_driver(dir.path() / "b", 1,
              "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build");
  probe = compat::probe_nvidia((dir.path() / "b").string());
  EXPECT_EQ(probe.gpus, 1);
  EXPECT_EQ(probe.driver_version, "570.124.06");
  probe = compat::probe_nvidia((dir.path() / "none").string());
  EXPECT_EQ(probe.gpus, 0);
  EXPECT_EQ(probe.driver_version, "");
}

TEST(GpuProbe, SaysWhyAutoCannotTakeTheGpus) {
  compat::NvidiaProbe probe;
  EXPECT_EQ(compat::auto_device_problem(probe, 0, "cpu", "", nullptr), "") << "no GPU: the CPU";
  probe.gpus = 4;
  probe.driver_version = "580.65.06";
  EXPECT_EQ(compat::auto_device_problem(probe, 4, "13.0", "", nullptr), "") << "CUDA sees them";
  const auto cpu_build = compat::auto_device_problem(
      probe, 0, "cpu", "nvcc for CUDA 12, but LibTorch is built for CUDA 13", nullptr);
  EXPECT_NE(cpu_build.find("this machine has 4 NVIDIA GPU(s) (driver 580.65.06)"),
            std::string::npos)
      << cpu_build;
  EXPECT_NE(cpu_build.find("no CUDA (nvcc for CUDA 12, but LibTorch is built for CUDA 13)"),
            std::string::npos)
      << cpu_build;
  probe.driver_version = "535.183.01";
  const auto old_driver = compat::auto_device_problem(probe, 0, "13.0", "", nullptr);
  EXPECT_NE(old_driver.find("driver 535.183.01 is older than this build's CUDA 13.0 needs (>= "
                            "580)"),
            std::string::npos)
      << old_driver;
  EXPECT_EQ(compat::auto_device_problem(probe, 0, "12.4", "", nullptr).find("older"),
            std::string::npos)
      << "535 runs CUDA 12";
  probe.driver_version = "580.65.06";
  const auto hidden = compat::auto_device_problem(probe, 0, "13.0", "", "");
  EXPECT_NE(hidden.find("CUDA 13.0 sees none of them (CUDA_VISIBLE_DEVICES='')"), std::string::npos)
      << hidden;
  EXPECT_EQ(compat::min_driver_for_cuda(13), 580);
  EXPECT_EQ(compat::min_driver_for_cuda(12), 525);
}

// The real command on a machine that reports GPUs CUDA cannot see: one error line naming
// run.device, exit 1, no run folder; `run.device: cpu` trains.
TEST(GpuProbe, TrainOnAGpuNodeWithoutUsableCudaStopsUnlessCpuIsAsked) {
  TempDir dir;
  fake_driver(dir.path() / "node", 2,
              "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun Jul 27 2025");
  std::ofstream(dir.file("tiny.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 4\n  head_dim: 4\n"
         "  depth: 1\n  stages: [1, 2]\n"
         "data:\n  dataset: synthetic\n  synthetic_size: 8\n  batch_size: 4\n  num_workers: 1\n"
         "augment:\n  train:\n    size: 8\n  eval:\n    size: 8\n    crop_pct: 1.0\n"
         "schedule:\n  epochs: 1\n  warmup_epochs: 0\n  cooldown_epochs: 0\n"
         "run:\n  threads: 1\n";
  const std::string env = "THINKINGVIT_GPU_PROBE_ROOT=" + (dir.path() / "node").string() + " ";
  const auto cmd = env + THINKINGVIT_BIN + " train --config " + dir.file("tiny.yaml") +
                   " --output-dir " + dir.file("run");
  const auto log = dir.file("out.txt");
  struct Result {
    int code;
    std::string output;
  };
  auto run = [&](const std::string& command) {
    const auto e = run_shell(command + " > " + log + " 2>&1");
    return Result{e.code, slurp(log)};
  };
  const auto refused = run(cmd);
  EXPECT_EQ(refused.code, 1) << refused.output;
  const std::string cause = std::string(util::kCudaBuildVersion) == "cpu"
                                ? "this thinkingvit build has no CUDA ("
                                : "driver 535.183.01 is older than this build's CUDA";
  EXPECT_NE(refused.output.find("run.device auto: this machine has 2 NVIDIA GPU(s) (driver "
                                "535.183.01), but "),
            std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find(cause), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("Set it to cpu to run on the CPUs on purpose"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("run")));
  const auto on_cpu = run(cmd + " --set run.device=cpu");
  EXPECT_EQ(on_cpu.code, 0) << on_cpu.output;
  // eval's --device auto takes the same path.
  const auto eval = run(env + THINKINGVIT_BIN + " eval --config " + dir.file("tiny.yaml") +
                        " --weights " + dir.file("run/best"));
  EXPECT_EQ(eval.code, 1) << eval.output;
  EXPECT_NE(eval.output.find("run.device auto: this machine has 2 NVIDIA GPU(s)"),
            std::string::npos)
      << eval.output;
}

}  // namespace thinkingvit::testing
