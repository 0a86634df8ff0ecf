#pragma once
// Shared helpers for the test suite: tiny models, random weights, temp files.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <string>

#include "test_paths.h"
#include "thinkingvit/data/image.h"
#include "thinkingvit/models/thinking_vit.h"
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
