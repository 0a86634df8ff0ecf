// Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/): small valid inputs of
// every format and variant each reader takes, made with the project's own writers and OpenCV.
//
//   build/tests/fuzz/thinkingvit_make_fuzz_corpus tests/fuzz/corpus

#include <zlib.h>

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "test_paths.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/train/config.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

fs::path out_root;

void put(const std::string& target, const std::string& name, const Bytes& bytes) {
  const auto dir = out_root / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Bytes gzip(const Bytes& raw) {
  z_stream z = {};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // gzip wrapper
  Bytes out(deflateBound(&z, raw.size()) + 32);
  z.next_in = const_cast<uint8_t*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

Bytes with_prefix(uint8_t first, const Bytes& rest) {
  Bytes b(rest.size() + 1);
  b[0] = first;
  std::copy(rest.begin(), rest.end(), b.begin() + 1);
  return b;
}

void safetensors() {
  put("safetensors", "tiny_weights.safetensors",
      slurp(fs::path(THINKINGVIT_FIXTURES) / "tiny_weights.safetensors"));
  thinkingvit::io::TensorMap tensors = {
      {"f16", at::arange(6, at::kFloat).reshape({2, 3}).to(at::kHalf)},
      {"bf16", at::ones({3}, at::kBFloat16)},
      {"i64", at::arange(4, at::kLong)},
      {"u8", at::zeros({2, 2}, at::kByte)},
      {"empty", at::zeros({0, 4})}};
  const auto path = fs::temp_directory_path() / "thinkingvit-corpus.safetensors";
  thinkingvit::io::write_safetensors(path.string(), tensors, {{"format", "pt"}});
  put("safetensors", "dtypes.safetensors", slurp(path));
  fs::remove(path);
}

void config_json() {
  // A ViT folder as this project writes it, and the Swin export's own (the fixture's metadata).
  const auto vit = thinkingvit::io::read_weights(
      (fs::path(THINKINGVIT_FIXTURES) / "tiny_weights.safetensors").string());
  const auto options = thinkingvit::io::options_from_state(vit.tensors, vit.path, /*head_dim=*/4);
  std::vector<std::string> names;
  for (int64_t c = 0; c < options.num_classes(); ++c) names.push_back("class " + std::to_string(c));
  put("config_json", "vit.json",
      with_prefix(0, text(thinkingvit::io::config_json(options, names))));
  const auto swin = thinkingvit::io::read_safetensors(
      (fs::path(THINKINGVIT_FIXTURES) / "swin_tiny_weights.safetensors").string());
  put("config_json", "swin.json", with_prefix(1, text(swin.metadata.at("config"))));
  // The released folders' form: stages only.
  put("config_json", "released.json",
      with_prefix(0, text(R"({"architecture": "thinkingvit", "num_classes": 12,)"
                          R"( "model_args": {"thinking_stages": [1, 2]}})")));
}

void yaml_config() {
  const fs::path configs = fs::path(THINKINGVIT_FIXTURES) / "../../configs";
  for (const auto& e : fs::directory_iterator(configs))
    put("yaml_config", e.path().filename().string(), slurp(e.path()));
  put("yaml_config", "defaults.yaml",
      text(thinkingvit::train::to_yaml(thinkingvit::train::TrainConfig{})));
  put("yaml_config", "overrides.yaml",
      text("model:\n  preset: thinkingvit_swin_mnist\ndata:\n  dataset: synthetic\n"
           "schedule: {epochs: 2, per_step: true}\nsampling:\n  mode: sandwich\n"
           "loss:\n  stage_weights: [0.5, 0.5]\n"));
}

void idx() {
  // Three 4x5 images and their labels.
  Bytes images = {0, 0, 8, 3}, labels = {0, 0, 8, 1};
  be32(images, 3);
  be32(images, 4);
  be32(images, 5);
  for (int i = 0; i < 3 * 4 * 5; ++i) images.push_back(static_cast<uint8_t>(i * 4));
  be32(labels, 3);
  labels.insert(labels.end(), {0, 7, 9});
  const auto pack = [](const Bytes& a, const Bytes& b) {
    Bytes out(4);
    const uint32_t n = static_cast<uint32_t>(a.size());
    std::memcpy(out.data(), &n, 4);
    out.insert(out.end(), a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
    return out;
  };
  put("idx", "raw", pack(images, labels));
  put("idx", "gzip", pack(gzip(images), gzip(labels)));
  put("idx", "gzip_images_raw_labels", pack(gzip(images), labels));
}

void cifar() {
  for (const int label_bytes : {1, 2}) {
    Bytes b;
    for (int r = 0; r < 2; ++r) {
      for (int l = 0; l < label_bytes; ++l) b.push_back(static_cast<uint8_t>(3 + r + l));
      for (int p = 0; p < 3 * 32 * 32; ++p) b.push_back(static_cast<uint8_t>(p * 7 + r));
    }
    put("cifar", label_bytes == 1 ? "cifar10.bin" : "cifar100.bin", b);
  }
}

void image() {
  cv::Mat color(9, 12, CV_8UC3), gray(7, 5, CV_8UC1), rgba(6, 6, CV_8UC4);
  cv::randu(color, 0, 255);
  cv::randu(gray, 0, 255);
  cv::randu(rgba, 0, 255);
  const auto encode = [](const std::string& ext, const cv::Mat& m, std::vector<int> params = {}) {
    std::vector<uchar> buf;
    cv::imencode(ext, m, buf, params);
    return Bytes(buf.begin(), buf.end());
  };
  put("image", "color.jpg", with_prefix(0, encode(".jpg", color)));
  put("image", "color_scaled_region.jpg", with_prefix(0x0e, encode(".jpg", color)));
  put("image", "progressive.jpg",
      with_prefix(5, encode(".jpg", color, {cv::IMWRITE_JPEG_PROGRESSIVE, 1})));
  put("image", "gray.jpg", with_prefix(1, encode(".jpg", gray)));
  put("image", "color.png", with_prefix(0, encode(".png", color)));
  put("image", "gray.png", with_prefix(0, encode(".png", gray)));
  put("image", "rgba.png", with_prefix(0, encode(".png", rgba)));
  put("image", "color.bmp", with_prefix(0, encode(".bmp", color)));
  put("image", "gray.bmp", with_prefix(0, encode(".bmp", gray)));
  put("image", "color.webp", with_prefix(0, encode(".webp", color)));
  put("image", "lossless.webp",
      with_prefix(0, encode(".webp", rgba, {cv::IMWRITE_WEBP_QUALITY, 101})));
}

void class_list() {
  put("class_list", "two", text("cat\ndog\n"));
  put("class_list", "crlf_and_blank", text("n01440764\r\n\r\ncat\n"));
  put("class_list", "space", text("a b\n"));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " OUTPUT_FOLDER\n";
    return 2;
  }
  out_root = argv[1];
  safetensors();
  config_json();
  yaml_config();
  idx();
  cifar();
  image();
  class_list();
  std::cout << "seed corpora written to " << out_root.string() << "\n";
  return 0;
}
