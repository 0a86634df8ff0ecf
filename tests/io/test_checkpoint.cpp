#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/model_config.h"

namespace thinkingvit::testing {

namespace {

io::TensorStatus status_of(const io::LoadReport& report, const std::string& name) {
  for (const auto& t : report.tensors) {
    if (t.name == name) return t.status;
  }
  ADD_FAILURE() << "no report for " << name;
  return io::TensorStatus::kUnexpected;
}

}  // namespace

TEST(Checkpoint, CropsALargerModelIntoItsLeadingStages) {
  auto big = tiny_model({1, 2, 3}, /*seed=*/11);
  auto small = tiny_model({1, 2}, /*seed=*/12);
  auto report = io::load_state_dict(*small, io::state_dict(*big), "big");
  EXPECT_EQ(status_of(report, "blocks.0.attn.qkv.weight"), io::TensorStatus::kCropped);
  EXPECT_EQ(status_of(report, "alpha.0"), io::TensorStatus::kLoaded);
  EXPECT_EQ(status_of(report, "proj_layer.weight"), io::TensorStatus::kCropped);
  EXPECT_EQ(status_of(report, "alpha.1"), io::TensorStatus::kUnexpected);
  EXPECT_EQ(status_of(report, "proj_layer2.weight"), io::TensorStatus::kUnexpected);
  EXPECT_EQ(report.count(io::TensorStatus::kMissing), 0);
  // The cropped model's stages are the big model's first stages, qkv cropped per block.
  auto images = tiny_images(3);
  torch::NoGradGuard no_grad;
  auto a = big->forward_all(images), b = small->forward_all(images);
  for (int s = 0; s < 2; ++s) {
    EXPECT_TRUE(torch::allclose(a[s].logits, b[s].logits, 1e-5, 1e-6)) << "stage " << s;
  }
}

TEST(Checkpoint, EmbedsASmallerModelIntoTheLeadingSlices) {
  // "Initialised from DeiT-Tiny": a one-stage model fills stage 0 of a two-stage one.
  auto tiny = tiny_model({1}, /*seed=*/13);
  auto model = tiny_model({1, 2}, /*seed=*/14);
  const auto untouched = model->named_parameters()["blocks.0.attn.qkv.weight"].clone();
  io::LoadOptions options;
  options.allow_missing = true;
  auto report = io::load_state_dict(*model, io::state_dict(*tiny), "tiny", options);
  EXPECT_EQ(status_of(report, "blocks.0.attn.qkv.weight"), io::TensorStatus::kEmbedded);
  EXPECT_EQ(status_of(report, "head.bias"), io::TensorStatus::kLoaded);
  EXPECT_EQ(status_of(report, "alpha.0"), io::TensorStatus::kMissing);
  EXPECT_EQ(status_of(report, "proj_layer.weight"), io::TensorStatus::kMissing);
  // qkv per block: rows [4, 8) of the q block keep their init, rows [0, 4) of v are tiny's v.
  const auto qkv = model->named_parameters()["blocks.0.attn.qkv.weight"];
  const auto tiny_qkv = tiny->named_parameters()["blocks.0.attn.qkv.weight"];
  EXPECT_TRUE(torch::equal(qkv.slice(0, 16, 20).slice(1, 0, 4), tiny_qkv.slice(0, 8, 12)));
  EXPECT_TRUE(torch::equal(qkv.slice(0, 4, 8), untouched.slice(0, 4, 8)));
  EXPECT_TRUE(
      torch::equal(qkv.slice(0, 0, 4).slice(1, 4, 8), untouched.slice(0, 0, 4).slice(1, 4, 8)));
  auto images = tiny_images(2);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(model->forward_stage(0, images).logits,
                              tiny->forward_stage(0, images).logits, 1e-5, 1e-6));
}

TEST(Checkpoint, RejectsWhatCannotBeLoaded) {
  auto model = tiny_model({1, 2});
  const auto before = io::state_dict(*model);
  auto good = io::state_dict(*model);
  io::LoadOptions strict;
  strict.strict = true;

  auto wrong_tokens = good;
  wrong_tokens["pos_embed"] = torch::zeros({1, 17, 8});
  expect_error([&] { io::load_state_dict(*model, wrong_tokens, "x.safetensors"); },
               {"checkpoint 'x.safetensors'", "'pos_embed'", "[1, 17, 8]", "[1, 5, 8]"});

  auto wrong_dtype = good;
  wrong_dtype["norm.weight"] = torch::ones({8}, torch::kLong);
  expect_error([&] { io::load_state_dict(*model, wrong_dtype, "x.safetensors"); },
               {"'norm.weight'", "Long", "floating"});

  auto missing = good;
  missing.erase("blocks.1.mlp.fc2.bias");
  expect_error([&] { io::load_state_dict(*model, missing, "x.safetensors"); },
               {"'blocks.1.mlp.fc2.bias'", "missing"});

  auto extra = good;
  extra["alpha.5"] = torch::zeros({1});
  expect_error([&] { io::load_state_dict(*model, extra, "x.safetensors", strict); },
               {"'alpha.5'", "unexpected", "--strict"});
  EXPECT_NO_THROW(io::load_state_dict(*model, extra, "x.safetensors"));

  auto bigger = io::state_dict(*tiny_model({1, 2, 3}));
  expect_error([&] { io::load_state_dict(*model, bigger, "big.safetensors", strict); },
               {"cropped", "--strict"});
  // Failed loads leave the model as it was.
  for (const auto& [name, t] : io::state_dict(*model))
    EXPECT_TRUE(torch::equal(t, before.at(name))) << name;
}

TEST(Checkpoint, DeducesTheArchitectureFromTensorsAndConfigJson) {
  TempDir dir;
  auto model = tiny_model({1, 2, 3});
  io::save_weights(*model, dir.file("model.safetensors"));
  const auto flat = io::read_weights(dir.file("model.safetensors"));
  EXPECT_FALSE(flat.options.has_value());
  const auto deduced = io::options_from_state(flat.tensors, flat.path, /*head_dim=*/4);
  EXPECT_EQ(deduced.describe(), tiny_options().describe());
  expect_error([&] { io::options_from_state(flat.tensors, flat.path, /*head_dim=*/64); },
               {"not a multiple of head_dim 64"});

  std::ofstream(dir.file("config.json")) << R"({"architecture": "thinkingvit", "num_classes": 12,
      "model_args": {"thinking_stages": [1, 2, 3], "img_size": 8, "patch_size": 4}})";
  const auto folder = io::read_weights(dir.path().string());
  ASSERT_TRUE(folder.options.has_value());
  EXPECT_EQ(folder.options->describe(), tiny_options().describe());
  expect_error([&] { io::read_weights(dir.file("nothing-here")); },
               {"nothing-here", "no such file"});
}

// The config.json a run writes beside its weights gives back the architecture, the recycling
// switch and the class names.
TEST(Checkpoint, ConfigJsonRoundTrip) {
  TempDir dir;
  auto options = tiny_options({1, 3});
  options.recycling(false);
  models::ThinkingViT model(options);
  io::save_weights(*model, dir.file("model.safetensors"));
  std::vector<std::string> names;
  for (int i = 0; i < 12; ++i) names.push_back("class " + std::to_string(i));
  std::ofstream(dir.file("config.json")) << io::config_json(options, names);
  const auto back = io::read_weights(dir.path().string());
  ASSERT_TRUE(back.options.has_value());
  EXPECT_EQ(back.options->describe(), options.describe());
  EXPECT_FALSE(back.options->recycling());
  EXPECT_EQ(back.label_names, names);
  // Released folders say nothing of recycling: they recycle.
  std::ofstream(dir.file("config.json")) << R"({"num_classes": 12, "model_args":
      {"thinking_stages": [1, 3], "img_size": 8, "patch_size": 4}})";
  EXPECT_TRUE(io::read_weights(dir.path().string()).options->recycling());
  std::ofstream(dir.file("config.json"))
      << R"({"model_args": {"thinking_stages": [1, 3], "recycling": "no"}})";
  expect_error([&] { io::read_weights(dir.path().string()); },
               {"config.json", "model_args.recycling must be true or false", "\"no\""});
}

// A broken config.json is an error about config.json, not a shape mismatch in the weights.
TEST(Checkpoint, BrokenConfigJsonNamesItself) {
  TempDir dir;
  models::ThinkingViT model(tiny_options({1, 3}));
  io::save_weights(*model, dir.file("model.safetensors"));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[1, 2]", "expected a JSON object"},
      {R"({"model_args": "vit"})", "model_args must be an object"},
      {R"({"model_args": {"thinking_stages": []}})", "thinking_stages must be"},
      {R"({"model_args": {"thinking_stages": "3"}})", "thinking_stages must be"},
      {R"({"model_args": {"thinking_stages": [3, 100000]}})", "found [3,100000]"},
      {R"({"model_args": {"thinking_stages": [1, 9223372036854775807]}})", "thinking_stages"},
      {R"({"model_args": {"thinking_stages": [3, 1]}})", "increasing"},
      {R"({"model_args": {"thinking_stages": [1, 3], "depth": 100000}})",
       "'depth': 100000 is beyond"},
  };
  for (const auto& [text, fragment] : cases) {
    std::ofstream(dir.file("config.json")) << text;
    expect_error([&] { io::read_weights(dir.path().string()); }, {"config.json", fragment});
  }
  std::filesystem::remove(dir.file("config.json"));
  std::filesystem::create_directory(dir.file("config.json"));
  expect_error([&] { io::read_weights(dir.path().string()); }, {"config.json", "is a directory"});
}

TEST(Checkpoint, ModelSectionOfAYamlConfig) {
  TempDir dir;
  const auto path = dir.file("c.yaml");
  std::ofstream(path)
      << "model:\n  preset: thinkingvit_mnist_2h_4h\n  depth: 3\n  stages: [1, 4]\n";
  const auto o = io::model_options_from_yaml(path);
  ASSERT_NE(o.as<models::ThinkingViTOptions>(), nullptr);
  EXPECT_EQ(o.as<models::ThinkingViTOptions>()->depth(), 3);
  EXPECT_EQ(o.as<models::ThinkingViTOptions>()->stages(), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(o.image_size(), 28);
  std::ofstream(path) << "model:\n  depth: 3\n  widht: 4\n";
  expect_error([&] { io::model_options_from_yaml(path); },
               {path, "line 3", "unknown key 'model.widht'"});
  std::ofstream(path) << "model:\n  depth: three\n";
  expect_error([&] { io::model_options_from_yaml(path); },
               {"line 2", "'model.depth'", "an integer", "three"});
  std::ofstream(path) << "model:\n  stages: [4, 2]\n";
  expect_error([&] { io::model_options_from_yaml(path); }, {path, "strictly increasing"});
}

}  // namespace thinkingvit::testing

namespace thinkingvit::testing {

TEST(Checkpoint, ShippedModelConfigsParse) {
  const auto dir =
      std::filesystem::path(THINKINGVIT_FIXTURES).parent_path().parent_path() / "configs";
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    EXPECT_NO_THROW(io::model_options_from_yaml(entry.path().string())) << entry.path();
    // The *_model.yaml files hold the architecture alone; the others are training configs.
    const auto stem = entry.path().stem().string();
    const bool model_file = stem.size() > 6 && stem.compare(stem.size() - 6, 6, "_model") == 0;
    EXPECT_EQ(io::is_model_file(entry.path().string()), model_file) << entry.path();
    ++parsed;
  }
  TempDir tmp;  // no model map at all: not a model file, and no error (its reader says what lacks)
  std::ofstream(tmp.file("data.yaml")) << "data:\n  dataset: synthetic\n";
  EXPECT_FALSE(io::is_model_file(tmp.file("data.yaml")));
  EXPECT_GE(parsed, 2);
  EXPECT_EQ(io::model_options_from_yaml((dir / "thinkingvit_3h_6h_model.yaml").string())
                .as<models::ThinkingViTOptions>()
                ->stages(),
            models::preset("thinkingvit_3h_6h").stages());
}

}  // namespace thinkingvit::testing
