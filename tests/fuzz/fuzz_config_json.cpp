// config.json of a weights folder (timm / Hugging Face style, ViT or Swin), read beside fixed
// tiny weights; a config that is accepted is then built and loaded when it is small.

#include <array>
#include <filesystem>

#include "fuzz_util.h"
#include "test_paths.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/models/model_options.h"
#include "thinkingvit/util/error.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinkingvit;
  static const auto folders = [] {
    std::array<fs::path, 2> out;
    const char* weights[2] = {"tiny_weights.safetensors", "swin_tiny_weights.safetensors"};
    for (int i = 0; i < 2; ++i) {
      out[i] = fuzz::scratch() / (i == 0 ? "vit" : "swin");
      fs::create_directories(out[i]);
      fs::copy_file(fs::path(THINKINGVIT_FIXTURES) / weights[i], out[i] / "model.safetensors",
                    fs::copy_options::overwrite_existing);
    }
    return out;
  }();
  // The first byte picks the weights: the rest is config.json.
  const auto& folder = folders[size > 0 && (data[0] & 1)];
  if (size > 0) {
    ++data;
    --size;
  }
  fuzz::write_bytes(folder / "config.json", data, size);
  try {
    const auto source = io::read_weights(folder.string());
    if (source.options && source.options->parameter_count() < 2'000'000) {
      auto model = models::make_model(*source.options);
      io::load_state_dict(*model, source.tensors, source.path);
    }
  } catch (const Error&) {
  }
  return 0;
}
