#pragma once
// Shared helpers for the test suite: tiny models, random weights, temp files.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "test_paths.h"
#include "thinkingvit/data/image.h"
#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/models/swin/options.h"
#include "thinkingvit/models/vit/thinking_vit.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::testing {

// H x W x C uint8 tensor (as the PIL golden fixtures store images) -> Image.
inline data::Image to_image(const at::Tensor& t) {
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.scalar_type(), at::kByte);
  data::Image img(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)),
                  static_cast<int>(t.size(2)));
  const auto c = t.contiguous();
  std::copy_n(c.data_ptr<uint8_t>(), img.pixels.size(), img.pixels.data());
  return img;
}

// |a - b| <= rel * max|b| elementwise (max|b| floored at `floor`): a tolerance that scales with
// the values compared, so float rounding in large gradients is not mistaken for an error.
inline ::testing::AssertionResult close_scaled(const at::Tensor& a, const at::Tensor& b, double rel,
                                               double floor = 1e-12) {
  if (a.sizes() != b.sizes()) {
    return ::testing::AssertionFailure() << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  }
  const auto a64 = a.detach().to(torch::kCPU, torch::kDouble);
  const auto b64 = b.detach().to(torch::kCPU, torch::kDouble);
  const double scale = std::max(b64.abs().max().item<double>(), floor);
  const double diff = (a64 - b64).abs().max().item<double>();
  if (diff <= rel * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max |a - b| = " << diff << " > " << rel << " * " << scale << " (max |b|)";
}

// 8x8 RGB images, patch 4 (5 tokens), 12 classes, head_dim 4, depth 2.
inline models::ThinkingViTOptions tiny_options(std::vector<int64_t> stages = {1, 2, 3}) {
  return models::ThinkingViTOptions()
      .image_size(8)
      .patch_size(4)
      .in_channels(3)
      .num_classes(12)
      .head_dim(4)
      .depth(2)
      .stages(std::move(stages));
}

// 8x8 RGB images, patch 1: 8x8 tokens then 4x4 (window 4), widths 8 and 16, heads (2, 4),
// depths (2, 1), 12 classes; round 0 runs heads (1, 2), round 1 (2, 4).
inline models::ThinkingSwinOptions tiny_swin_options() {
  return models::ThinkingSwinOptions()
      .image_size(8)
      .patch_size(1)
      .embed_dim(8)
      .depths({2, 1})
      .num_heads({2, 4})
      .window_size(4)
      .num_classes(12)
      .head_rounds({{1, 2}, {2, 4}});
}

// Sets a CPU kernel policy for one scope and puts THINKINGVIT_CPU_KERNELS's back afterwards.
struct KernelPolicyScope {
  explicit KernelPolicyScope(models::cpu::KernelPolicy policy) { models::cpu::set_policy(policy); }
  ~KernelPolicyScope() {
    const char* env = std::getenv("THINKINGVIT_CPU_KERNELS");
    models::cpu::set_policy(
        models::cpu::parse_kernel_policy(env && *env ? env : "auto", "THINKINGVIT_CPU_KERNELS"));
  }
  KernelPolicyScope(const KernelPolicyScope&) = delete;
  KernelPolicyScope& operator=(const KernelPolicyScope&) = delete;
};

// Every parameter random (LayerNorm weights around 1), alphas set to `alpha`.
inline void randomize(models::ThinkingViT& model, uint64_t seed, double alpha = 0.5) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& item : model->named_parameters()) {
    auto& p = item.value();
    if (item.key().rfind("alpha.", 0) == 0) {
      p.fill_(alpha);
    } else if (item.key().find("norm") != std::string::npos &&
               item.key().find("weight") != std::string::npos) {
      p.normal_(1.0, 0.1);
    } else {
      p.normal_(0.0, 0.3);
    }
  }
}

inline models::ThinkingViT tiny_model(std::vector<int64_t> stages = {1, 2, 3}, uint64_t seed = 1,
                                      double alpha = 0.5) {
  models::ThinkingViT model(tiny_options(std::move(stages)));
  randomize(model, seed, alpha);
  model->eval();
  return model;
}

inline at::Tensor tiny_images(int64_t batch, uint64_t seed = 7) {
  torch::manual_seed(seed);
  return torch::randn({batch, 3, 8, 8});
}

// A TCP port nobody listens on now (the kernel's pick for an ephemeral bind).
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  return ok ? ntohs(addr.sin_port) : 29500;
}

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("thinkingvit-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::filesystem::path path_;
};

// The whole content of a file ("" when it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// How a shell command ended: its exit status, or the signal that ended it.
struct ShellExit {
  int code = -1;   // exit status; -1 when a signal ended the shell itself
  int signal = 0;  // that signal
  // Killed by `sig`, whether the shell ran the program itself or reported its death (128 + sig).
  bool killed_by(int sig) const { return signal == sig || code == 128 + sig; }
};

inline ShellExit run_shell(const std::string& cmd) {
  const int status = std::system(cmd.c_str());
  ShellExit e;
  if (WIFEXITED(status)) e.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
  return e;
}

// scripts/launch_local.sh of this checkout: N processes as one job.
inline std::string launcher_script() {
  return std::string(THINKINGVIT_FIXTURES) + "/../../scripts/launch_local.sh";
}

inline std::string fixture(const std::string& name) {
  return std::string(THINKINGVIT_FIXTURES) + "/" + name;
}

// Runs `body` and checks it throws thinkingvit::Error whose message contains every fragment.
template <typename F>
void expect_error(F&& body, const std::vector<std::string>& fragments) {
  try {
    body();
    ADD_FAILURE() << "expected thinkingvit::Error";
  } catch (const thinkingvit::Error& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) {
      EXPECT_NE(msg.find(f), std::string::npos) << "message '" << msg << "' lacks '" << f << "'";
    }
  }
}

}  // namespace thinkingvit::testing
