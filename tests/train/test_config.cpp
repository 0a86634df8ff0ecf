#include "thinkingvit/train/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../test_util.h"
#include "test_paths.h"
#include "thinkingvit/io/model_config.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::testing {
namespace {

using train::config_from_yaml_text;
using train::load_config;
using train::load_training_config;
using train::to_yaml;
using train::TrainConfig;

TrainConfig parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return config_from_yaml_text(text, "x.yaml", overrides);
}

// Parsing `text` (with `overrides`) fails with a message holding every fragment.
void expect_config_error(const std::string& text, const std::vector<std::string>& fragments,
                         const std::vector<std::string>& overrides = {}) {
  SCOPED_TRACE(text);
  expect_error([&] { parse(text, overrides); }, fragments);
}

std::filesystem::path configs_dir() {
  // THINKINGVIT_FIXTURES is <repo>/tests/fixtures.
  return std::filesystem::path(THINKINGVIT_FIXTURES).parent_path().parent_path() / "configs";
}

// A small CPU configuration touching every section.
const char* kSmallConfig = R"(
model:
  depth: 3            # given before the preset: the preset is still the base
  preset: thinkingvit_mnist_2h_4h
  init_from: weights/tiny.safetensors
data:
  dataset: synthetic
  synthetic_size: 64
  batch_size: 32
augment:
  train:
    size: 28
    small_image: true
    padding: 2
    auto_augment: ""
    scale: [0.5, 1.0]
    interpolation: bilinear
    mean: [0.2860]
    std: [0.3530]
  eval:
    size: 28
    crop_pct: 1.0
    interpolation: nearest
    mean: [0.2860]
    std: [0.3530]
  mix:
    mixup_alpha: 0
    cutmix_alpha: 0
loss:
  stage_weights: [0.25, 0.75]
optimizer:
  lr: 1e-3
  lr_base_batch: 128
schedule:
  epochs: 10
  warmup_epochs: 1
  per_step: true
ema:
  enabled: false
sampling:
  mode: stochastic
  weights: [1, 3]
precision:
  dtype: bf16
run:
  output_dir: runs/small
  seed: 7
)";

TEST(ConfigDefaults, EmptyFileGivesTheStructDefaults) {
  const TrainConfig defaults;
  for (const char* text : {"", "# nothing but a comment\n", "optimizer:\n"}) {
    const auto c = parse(text);
    EXPECT_EQ(to_yaml(c), to_yaml(defaults)) << text;
  }
  const auto c = parse("");
  EXPECT_EQ(c.model.preset, "");
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->stages(),
            (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(c.model.options.image_size(), 224);
  EXPECT_EQ(c.data.dataset, "fashion-mnist");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 5e-4);
  EXPECT_DOUBLE_EQ(c.optimizer.lr_base_batch, 512);
  EXPECT_EQ(c.schedule.epochs, 300);
  EXPECT_EQ(c.schedule.warmup_epochs, 5);
  EXPECT_DOUBLE_EQ(c.ema.decay, 0.99996);
  EXPECT_EQ(c.augment.train.auto_augment, "rand-m9-mstd0.5-inc1");
  EXPECT_EQ(c.augment.train.interpolation, data::Interpolation::kBicubic);
  EXPECT_DOUBLE_EQ(c.augment.eval.crop_pct, 0.9);
  EXPECT_DOUBLE_EQ(c.augment.mix.mixup_alpha, 0.8);
  EXPECT_EQ(c.sampling.mode, "all");
  EXPECT_EQ(c.precision.dtype, util::Precision::kFp32);
  EXPECT_EQ(c.run.seed, 42u);
}

TEST(ConfigYaml, FileValuesOverrideTheDefaults) {
  const auto c = parse(kSmallConfig);
  EXPECT_EQ(c.model.preset, "thinkingvit_mnist_2h_4h");
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->depth(),
            3);  // explicit key over the preset
  EXPECT_EQ(c.model.options.image_size(), 28);
  EXPECT_EQ(c.model.options.in_channels(), 1);
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->stages(),
            (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(c.model.init_from, "weights/tiny.safetensors");
  EXPECT_FALSE(c.model.init_strict);
  EXPECT_EQ(c.data.dataset, "synthetic");
  EXPECT_EQ(c.data.synthetic_size, 64);
  EXPECT_EQ(c.data.batch_size, 32);
  EXPECT_EQ(c.augment.train.auto_augment, "");
  EXPECT_TRUE(c.augment.train.small_image);
  EXPECT_EQ(c.augment.train.padding, 2);
  EXPECT_DOUBLE_EQ(c.augment.train.scale[0], 0.5);
  EXPECT_DOUBLE_EQ(c.augment.train.scale[1], 1.0);
  EXPECT_EQ(c.augment.train.interpolation, data::Interpolation::kBilinear);
  EXPECT_EQ(c.augment.train.mean, (std::vector<float>{0.2860f}));
  EXPECT_EQ(c.augment.eval.interpolation, data::Interpolation::kNearest);
  EXPECT_DOUBLE_EQ(c.augment.eval.crop_pct, 1.0);
  EXPECT_DOUBLE_EQ(c.augment.mix.cutmix_alpha, 0.0);
  EXPECT_EQ(c.loss.stage_weights, (std::vector<double>{0.25, 0.75}));
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-3);
  EXPECT_DOUBLE_EQ(c.optimizer.lr_base_batch, 128);
  EXPECT_EQ(c.schedule.epochs, 10);
  EXPECT_TRUE(c.schedule.per_step);
  EXPECT_FALSE(c.ema.enabled);
  EXPECT_EQ(c.sampling.mode, "stochastic");
  EXPECT_EQ(c.sampling.weights, (std::vector<double>{1, 3}));
  EXPECT_EQ(c.precision.dtype, util::Precision::kBf16);
  EXPECT_EQ(c.run.output_dir, "runs/small");
  EXPECT_EQ(c.run.seed, 7u);
  // Untouched keys keep their defaults.
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.05);
  EXPECT_EQ(c.schedule.cooldown_epochs, 10);
  EXPECT_DOUBLE_EQ(c.augment.train.hflip, 0.5);
  EXPECT_DOUBLE_EQ(c.augment.mix.label_smoothing, 0.1);
}

TEST(ConfigOverrides, SetWinsOverTheFileInOrder) {
  const auto c =
      parse(kSmallConfig, {"optimizer.lr=2e-3", "schedule.per_step=false", "model.stages=[1, 2, 4]",
                           "loss.stage_weights=[1,1,2]",
                           "sampling.weights=", "augment.train.scale=[0.25,1]", "optimizer.lr=3e-3",
                           "ema={enabled: true, decay: 0.999}", "run.output_dir = runs/other"});
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 3e-3);  // the later --set wins
  EXPECT_FALSE(c.schedule.per_step);
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->stages(),
            (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->depth(), 3);  // from the file
  EXPECT_EQ(c.loss.stage_weights, (std::vector<double>{1, 1, 2}));
  EXPECT_TRUE(c.sampling.weights.empty());
  EXPECT_DOUBLE_EQ(c.augment.train.scale[0], 0.25);
  EXPECT_TRUE(c.ema.enabled);
  EXPECT_DOUBLE_EQ(c.ema.decay, 0.999);
  EXPECT_EQ(c.run.output_dir, "runs/other");
  EXPECT_DOUBLE_EQ(c.optimizer.lr_base_batch, 128);  // from the file
}

TEST(ConfigOverrides, APresetKeepsTheExplicitModelKeys) {
  const auto c = parse("model:\n  preset: thinkingvit_3h_6h\n  depth: 6\n",
                       {"model.preset=thinkingvit_2h_3h_6h", "model.drop_path_rate=0.2"});
  EXPECT_EQ(c.model.preset, "thinkingvit_2h_3h_6h");
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->stages(),
            (std::vector<int64_t>{2, 3, 6}));
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->depth(), 6);
  EXPECT_DOUBLE_EQ(c.model.options.as<models::ThinkingViTOptions>()->drop_path_rate(), 0.2);
}

TEST(ConfigOverrides, ChecksRunAfterEveryOverride) {
  // An out-of-range file value is fine when a --set replaces it.
  const auto c = parse("schedule:\n  epochs: 0\n", {"schedule.epochs=5"});
  EXPECT_EQ(c.schedule.epochs, 5);
}

TEST(ConfigErrors, UnknownSectionsAndKeysNameFileLineAndPath) {
  expect_config_error("optimizer:\n  lr: 1e-3\n  lrr: 2\n",
                      {"config 'x.yaml' line 3: unknown key 'optimizer.lrr'", "weight_decay"});
  expect_config_error("schedule:\n  epochs: 3\noptimiser:\n  lr: 1\n",
                      {"config 'x.yaml' line 3: unknown section 'optimiser'", "optimizer"});
  expect_config_error("augment:\n  train:\n    sizee: 3\n",
                      {"config 'x.yaml' line 3: unknown key 'augment.train.sizee'"});
  expect_config_error("augment:\n  test:\n    size: 3\n",
                      {"line 2", "unknown key 'augment.test'", "train, eval, mix"});
  expect_config_error("model:\n  preset: thinkingvit_3h_6h\n  widht: 3\n",
                      {"config 'x.yaml' line 3: unknown key 'model.widht'"});
  expect_config_error("model:\n  preset: thinkingvit_7h\n",
                      {"line 2", "'model.preset'", "unknown preset 'thinkingvit_7h'"});
  expect_config_error("schedule:\n  epochs: 3\n  epochs: 4\n",
                      {"config 'x.yaml' line 3: duplicate key 'schedule.epochs'"});
  expect_config_error("optimizer: 5\n", {"line 1", "key 'optimizer' expects a map"});
  expect_config_error("sampling:\n  mode: stochastic\n  recycling: false\n",
                      {"line 3", "'sampling.recycling' has moved to 'model.recycling'"});
  expect_config_error("- 1\n- 2\n", {"config 'x.yaml'", "expected a map of sections"});
  expect_config_error("optimizer:\n  lr: [1,\n", {"config 'x.yaml' line", "invalid YAML"});
}

TEST(ConfigErrors, WrongTypesNameTheKeyAndTheValue) {
  expect_config_error(
      "data:\n  dataset: synthetic\nschedule:\n  epochs: ten\n",
      {"config 'x.yaml' line 4: key 'schedule.epochs' expects an integer, found 'ten'"});
  expect_config_error("optimizer:\n  lr: fast\n",
                      {"line 2: key 'optimizer.lr' expects a number, found 'fast'"});
  expect_config_error("optimizer:\n  lr: .inf\n", {"'optimizer.lr' expects a finite number"});
  expect_config_error("schedule:\n  warmup_epochs: soon\n",
                      {"'schedule.warmup_epochs' expects a number, found 'soon'"});
  expect_config_error("ema:\n  enabled: maybe\n",
                      {"line 2: key 'ema.enabled' expects true or false, found 'maybe'"});
  expect_config_error("augment:\n  train:\n    scale: [0.08]\n",
                      {"line 3: key 'augment.train.scale' expects a list of two numbers"});
  expect_config_error("augment:\n  eval:\n    interpolation: lanczos\n",
                      {"line 3: key 'augment.eval.interpolation' expects bicubic, bilinear or "
                       "nearest, found 'lanczos'"});
  expect_config_error("loss:\n  stage_weights: 0.5\n",
                      {"'loss.stage_weights' expects a list of numbers, found '0.5'"});
  expect_config_error("run:\n  seed: -1\n",
                      {"'run.seed' expects a non-negative integer, found '-1'"});
  expect_config_error("data:\n  dataset: [a, b]\n",
                      {"'data.dataset' expects a string, found '[a, b]'"});
  expect_config_error("model:\n  stages: three\n",
                      {"line 2: key 'model.stages' expects a list of head counts"});
  expect_config_error("model:\n  attention: flash\n",
                      {"'model.attention' expects 'fused', 'explicit' or 'small', found 'flash'"});
  // A family refuses what it cannot run: Swin has no small-sequence kernel.
  expect_config_error("model:\n  preset: thinkingvit_swin_s\n  attention: small\n",
                      {"line 3: model option 'attention': 'small' is a ViT kernel; a Swin model "
                       "runs 'fused' or 'explicit'"});
  expect_config_error("model:\n  init_strict: sometimes\n",
                      {"'model.init_strict' expects true or false"});
}

TEST(ConfigErrors, RangeChecksNameTheLineOfTheValue) {
  struct Case {
    std::string text;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {"schedule:\n  epochs: 0\n",
       {"config 'x.yaml' line 2: key 'schedule.epochs' expects an integer >= 1, found 0"}},
      {"schedule:\n  epochs: 4\n  warmup_epochs: 5\n", {"line 3", "'schedule.warmup_epochs'"}},
      {"optimizer:\n  lr: -1\n", {"line 2: key 'optimizer.lr' expects a value > 0, found -1"}},
      {"optimizer:\n  lr_base_batch: 0\n", {"line 2", "'optimizer.lr_base_batch'"}},
      {"optimizer:\n  beta2: 1\n", {"line 2", "'optimizer.beta2'", "[0, 1)"}},
      {"optimizer:\n  accum_steps: 0\n", {"line 2", "'optimizer.accum_steps'"}},
      {"ema:\n  decay: 1.0\n", {"line 2: key 'ema.decay' expects a value in (0, 1), found 1"}},
      {"precision:\n  dtype: fp16\n",
       {"line 2: key 'precision.dtype' expects one of fp32, bf16; found 'fp16'"}},
      {"precision:\n  eval_dtype: half\n",
       {"line 2: key 'precision.eval_dtype' expects one of fp32, bf16; found 'half'"}},
      {"distributed:\n  overlap: maybe\n", {"line 2", "'distributed.overlap'"}},
      {"sampling:\n  mode: random\n", {"line 2", "all, sandwich, stochastic", "'random'"}},
      {"sampling:\n  mode: sandwich\n  sandwich_k: 1\n", {"line 3", "'sampling.sandwich_k'"}},
      {"sampling:\n  weights: [1]\n", {"line 2", "'sampling.weights'", "one value per stage"}},
      {"data:\n  dataset: imagenet\n", {"line 2", "'data.dataset'", "image-folder", "'imagenet'"}},
      {"data:\n  batch_dtype: int8\n",
       {"line 2: key 'data.batch_dtype' expects one of auto, uint8, float32; found 'int8'"}},
      {"data:\n  dataset: image-folder\n",
       {"config 'x.yaml': key 'data.root' (default value) must name the dataset folder"}},
      {"data:\n  batch_size: 0\n", {"line 2", "'data.batch_size' expects an integer >= 1"}},
      {"data:\n  batch_size: 127\n", {"line 2", "'data.batch_size' must be even"}},
      {"data:\n  eval_batch_size: -4\n", {"line 2", "'data.eval_batch_size'"}},
      {"data:\n  repeated_aug: 0\n", {"line 2", "'data.repeated_aug'"}},
      {"loss:\n  stage_weights: [0.3, 0.3, 0.4]\n",
       {"line 2: key 'loss.stage_weights' expects one value per stage (2 for model.stages [3, "
        "6])"}},
      {"loss:\n  stage_weights: [0, 0]\n", {"line 2", "positive sum"}},
      {"model:\n  stages: [6, 3]\n", {"config 'x.yaml' line 2", "strictly increasing"}},
      {"model:\n  preset: thinkingvit_3h_6h\n  patch_size: 15\n", {"line 3", "divisible"}},
      {"augment:\n  train:\n    auto_augment: rand-x9\n",
       {"line 3", "'augment.train.auto_augment'"}},
      {"augment:\n  train:\n    scale: [0.5, 0.1]\n", {"line 3", "'augment.train.scale'"}},
      {"augment:\n  train:\n    hflip: 2\n", {"line 3", "'augment.train.hflip'", "[0, 1]"}},
      {"augment:\n  train:\n    size: 32\n",
       {"line 3", "'augment.train.size' expects the model's image size 224"}},
      {"augment:\n  train:\n    mean: [0.5]\n",
       {"line 3", "'augment.train.mean' expects one value per channel (model.in_channels = 3)"}},
      {"model:\n  preset: thinkingvit_mnist_2h_4h\naugment:\n  train:\n    size: 28\n",
       {"config 'x.yaml': key 'augment.train.mean' (default value) expects one value per channel "
        "(model.in_channels = 1), found [0.485, 0.456, 0.406]"}},
      {"augment:\n  eval:\n    std: [1, 0, 1]\n", {"line 3", "'augment.eval.std'", "positive"}},
      {"augment:\n  eval:\n    crop_pct: 1.5\n", {"line 3", "'augment.eval.crop_pct'"}},
      {"augment:\n  mix:\n    label_smoothing: 1\n", {"line 3", "'augment.mix.label_smoothing'"}},
      {"augment:\n  mix:\n    mixup_alpha: -0.1\n", {"line 3", "'augment.mix.mixup_alpha'"}},
      {"checkpoint:\n  keep_last: 0\n", {"line 2", "'checkpoint.keep_last'"}},
      {"checkpoint:\n  every_steps: -5\n",
       {"line 2", "'checkpoint.every_steps' expects an integer >= 0 (0: off), found -5"}},
      {"run:\n  device: tpu\n", {"line 2", "'run.device'", "auto, cpu, cuda"}},
      {"run:\n  output_dir: \"\"\n", {"line 2", "'run.output_dir'"}},
      // A check involving two keys names the line of the key it reports.
      {"loss:\n  stage_weights: [0.5, 0.5]\nmodel:\n  preset: thinkingvit_2h_3h_6h\n",
       {"line 2", "'loss.stage_weights'", "3 for model.stages [2, 3, 6]"}},
  };
  for (const auto& c : cases) expect_config_error(c.text, c.fragments);
}

TEST(ConfigOverrides, ErrorsNameTheOverride) {
  expect_config_error("", {"--set optimizer.lrr=1: unknown key 'optimizer.lrr'"},
                      {"optimizer.lrr=1"});
  expect_config_error("", {"--set optimiser.lr=1: unknown section 'optimiser'"},
                      {"optimiser.lr=1"});
  expect_config_error("", {"--set augment.train.foo.bar=1: unknown key 'augment.train.foo'"},
                      {"augment.train.foo.bar=1"});
  expect_config_error("", {"--set model.depthh=3: unknown key 'model.depthh'"}, {"model.depthh=3"});
  expect_config_error(
      "", {"--set schedule.epochs=ten: key 'schedule.epochs' expects an integer, found 'ten'"},
      {"schedule.epochs=ten"});
  expect_config_error("",
                      {"--set schedule.epochs=0: key 'schedule.epochs' expects an integer >= 1"},
                      {"schedule.epochs=0"});
  expect_config_error("", {"--set optimizer.lr: expected section.key=value"}, {"optimizer.lr"});
  expect_config_error("", {"--set =3: expected a key path"}, {"=3"});
  expect_config_error("", {"--set model.stages=[2,: the value is not valid YAML"},
                      {"model.stages=[2,"});
  expect_config_error("", {"--set model.stages=[4,2]", "strictly increasing"},
                      {"model.stages=[4,2]"});
  expect_config_error("", {"--set optimizer=3: key 'optimizer' expects a map"}, {"optimizer=3"});
  // The last source of a value is the one named.
  expect_config_error("precision:\n  dtype: fp32\n", {"--set precision.dtype=fp8", "'fp8'"},
                      {"precision.dtype=fp8"});
}

// The released recipe's cooldown comes on top of schedule.epochs: the resolved config says how
// many epochs the run trains, in a comment that leaves it parseable.
TEST(ConfigRoundTrip, TheResolvedConfigSaysHowManyEpochsTrain) {
  const auto c = parse(kSmallConfig, {"schedule.epochs=1", "schedule.cooldown_epochs=10"});
  const auto text = to_yaml(c);
  EXPECT_NE(text.find("# the run trains epochs + cooldown_epochs = 11 epochs"), std::string::npos)
      << text;
  EXPECT_EQ(to_yaml(config_from_yaml_text(text, "resolved.yaml")), text);
  const auto none = to_yaml(parse(kSmallConfig, {"schedule.cooldown_epochs=0"}));
  EXPECT_EQ(none.find("the run trains"), std::string::npos) << none;
}

TEST(ConfigRoundTrip, ToYamlReadsBackToTheSameConfig) {
  const auto c = parse(
      kSmallConfig, {"model.attention=small", "model.init_strict=true",
                     "run.seed=18446744073709551615", "optimizer.lr=3.3e-4",
                     "augment.eval.mean=[0.1234567]", "run.device=cpu", "model.recycling=false"});
  const auto text = to_yaml(c);
  const auto back = config_from_yaml_text(text, "resolved.yaml");
  EXPECT_EQ(to_yaml(back), text);
  EXPECT_EQ(back.model.preset, c.model.preset);
  EXPECT_EQ(back.model.options.describe(), c.model.options.describe());
  EXPECT_EQ(back.model.options.as<models::ThinkingViTOptions>()->attention(),
            models::AttentionBackend::kSmall);
  EXPECT_FALSE(back.model.options.recycling());
  EXPECT_TRUE(back.model.init_strict);
  EXPECT_EQ(back.model.init_from, c.model.init_from);
  EXPECT_EQ(back.run.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(back.optimizer.lr, c.optimizer.lr);  // exactly, not approximately
  EXPECT_EQ(back.augment.eval.mean, c.augment.eval.mean);
  EXPECT_EQ(back.augment.train.std, c.augment.train.std);
  EXPECT_EQ(back.augment.train.scale, c.augment.train.scale);
  EXPECT_EQ(back.augment.train.ratio, c.augment.train.ratio);
  EXPECT_EQ(back.augment.train.auto_augment, "");
  EXPECT_EQ(back.augment.eval.interpolation, data::Interpolation::kNearest);
  EXPECT_EQ(back.sampling.weights, c.sampling.weights);
  EXPECT_EQ(back.run.device, "cpu");
  // Every model option is written out, not only the preset; numbers in their shortest form.
  for (const char* fragment :
       {"preset: \"thinkingvit_mnist_2h_4h\"", "depth: 3", "head_dim: 32", "stages: [2, 4]",
        "attention: small", "recycling: false", "lr: 0.00033", "mean: [0.286]",
        "interpolation: bilinear", "scale: [0.5, 1]"}) {
    EXPECT_NE(text.find(fragment), std::string::npos) << fragment << " in\n" << text;
  }
  // The defaults too.
  const TrainConfig defaults;
  EXPECT_EQ(to_yaml(config_from_yaml_text(to_yaml(defaults), "defaults.yaml")), to_yaml(defaults));
}

TEST(ConfigShipped, EveryConfigLoadsAndRoundTrips) {
  int loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(configs_dir())) {
    const auto path = entry.path();
    if (path.extension() != ".yaml") continue;
    SCOPED_TRACE(path.string());
    const auto name = path.filename().string();
    // *_model.yaml hold only a model section (for `infer`/`macs --config`); the training
    // defaults (224 px RGB transforms) do not fit every model, so they are checked as model files.
    if (name.size() > 11 && name.compare(name.size() - 11, 11, "_model.yaml") == 0) {
      EXPECT_NO_THROW(io::model_options_from_yaml(path.string()));
      continue;
    }
    TrainConfig c;
    ASSERT_NO_THROW(c = load_config(path.string()));
    EXPECT_EQ(to_yaml(config_from_yaml_text(to_yaml(c), "resolved.yaml")), to_yaml(c));
    ++loaded;
  }
  EXPECT_GE(loaded, 5);
}

TEST(Config, ThreadCountsAreBounded) {
  // 100000 workers used to abort without a message; 100000 threads hung.
  expect_error([] { config_from_yaml_text("data:\n  num_workers: 100000\n", "w.yaml"); },
               {"w.yaml", "line 2", "'data.num_workers'", "0..512", "100000"});
  expect_error([] { config_from_yaml_text("run:\n  threads: 100000\n", "t.yaml"); },
               {"t.yaml", "line 2", "'run.threads'", "0..512", "100000"});
}

TEST(ConfigShipped, SwinRecipeIsArgsSwinYaml) {
  const auto c = load_config((configs_dir() / "thinkingvit_swin_s_imagenet.yaml").string());
  ASSERT_NE(c.model.options.as<models::ThinkingSwinOptions>(), nullptr);
  EXPECT_EQ(c.model.options.as<models::ThinkingSwinOptions>()->head_rounds(),
            (std::vector<std::vector<int64_t>>{{3, 3, 6, 12}, {3, 6, 12, 24}}));
  EXPECT_EQ(c.model.options.as<models::ThinkingSwinOptions>()->depths(),
            (std::vector<int64_t>{2, 2, 18, 2}));
  EXPECT_DOUBLE_EQ(c.model.options.as<models::ThinkingSwinOptions>()->drop_path_rate(), 0.3);
  EXPECT_EQ(c.data.batch_size * 4 * c.optimizer.accum_steps, 1024);  // x 4 GPUs
  EXPECT_DOUBLE_EQ(c.optimizer.lr * 1024 / c.optimizer.lr_base_batch, 1e-3);
  EXPECT_DOUBLE_EQ(c.optimizer.clip_grad, 5.0);
  EXPECT_EQ(c.schedule.epochs + c.schedule.cooldown_epochs, 310);
  EXPECT_EQ(c.schedule.warmup_epochs, 20);
  EXPECT_TRUE(c.schedule.warmup_prefix);
  EXPECT_DOUBLE_EQ(c.schedule.warmup_lr, 5e-7);
  EXPECT_DOUBLE_EQ(c.schedule.min_lr, 5e-6);
  EXPECT_EQ(c.data.repeated_aug, 1);  // off
  EXPECT_EQ(c.loss.stage_weights, (std::vector<double>{0.5, 0.5}));
  EXPECT_EQ(c.sampling.mode, "all");
  EXPECT_DOUBLE_EQ(c.ema.decay, 0.99996);
  EXPECT_EQ(c.augment.train.interpolation, data::Interpolation::kBicubic);
  EXPECT_DOUBLE_EQ(c.augment.eval.crop_pct, 0.9);
  EXPECT_EQ(c.precision.dtype, util::Precision::kFp32);
  EXPECT_TRUE(c.precision.tf32);
}

TEST(ConfigShipped, ReleasedRecipeHasTheReleasedValues) {
  const auto c = load_config((configs_dir() / "thinkingvit_3h_6h_imagenet.yaml").string());
  EXPECT_EQ(c.model.options.as<models::ThinkingViTOptions>()->stages(),
            (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(c.model.options.describe(),
            models::preset("thinkingvit_3h_6h").drop_path_rate(0.1).describe());
  EXPECT_FALSE(c.model.init_from.empty());
  EXPECT_EQ(c.data.dataset, "image-folder");
  EXPECT_EQ(c.data.batch_size * 8, 1024);  // per GPU x 8 GPUs
  EXPECT_EQ(c.data.repeated_aug, 3);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 5e-4);
  EXPECT_DOUBLE_EQ(c.optimizer.lr_base_batch, 512);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(c.optimizer.clip_grad, 0.0);
  EXPECT_EQ(c.schedule.epochs, 300);
  EXPECT_EQ(c.schedule.cooldown_epochs, 10);
  EXPECT_EQ(c.schedule.warmup_epochs, 5);
  EXPECT_DOUBLE_EQ(c.schedule.warmup_lr, 1e-6);
  EXPECT_DOUBLE_EQ(c.schedule.min_lr, 1e-5);
  EXPECT_FALSE(c.schedule.per_step);
  EXPECT_TRUE(c.ema.enabled);
  EXPECT_DOUBLE_EQ(c.ema.decay, 0.99996);
  EXPECT_EQ(c.augment.train.auto_augment, "rand-m9-mstd0.5-inc1");
  EXPECT_DOUBLE_EQ(c.augment.train.random_erasing, 0.25);
  EXPECT_DOUBLE_EQ(c.augment.eval.crop_pct, 0.9);
  EXPECT_DOUBLE_EQ(c.augment.mix.mixup_alpha, 0.8);
  EXPECT_DOUBLE_EQ(c.augment.mix.cutmix_alpha, 1.0);
  EXPECT_DOUBLE_EQ(c.augment.mix.switch_prob, 0.5);
  EXPECT_DOUBLE_EQ(c.augment.mix.label_smoothing, 0.1);
  EXPECT_EQ(c.loss.stage_weights, (std::vector<double>{0.5, 0.5}));
  EXPECT_EQ(c.sampling.mode, "all");
  EXPECT_EQ(c.precision.dtype, util::Precision::kFp32);
  EXPECT_EQ(c.precision.eval_dtype, util::Precision::kFp32);
  EXPECT_TRUE(c.precision.tf32);
  EXPECT_EQ(c.run.seed, 42u);

  const auto fashion = load_config((configs_dir() / "fashion_mnist_2h_4h.yaml").string());
  EXPECT_EQ(fashion.data.dataset, "fashion-mnist");
  EXPECT_EQ(fashion.model.options.image_size(), 28);
  EXPECT_EQ(fashion.augment.train.auto_augment, "");
  EXPECT_DOUBLE_EQ(fashion.augment.mix.mixup_alpha, 0.0);
  EXPECT_FALSE(fashion.ema.enabled);
  for (const char* name :
       {"thinkingvit_2h_3h_6h_imagenet.yaml", "thinkingvit_3h_6h_12h_imagenet.yaml"}) {
    const auto three = load_config((configs_dir() / name).string());
    EXPECT_EQ(three.model.options.num_stages(), 3) << name;
    EXPECT_EQ(three.loss.stage_weights.size(), 3u) << name;
  }
}

TEST(ConfigShipped, TrainingConfigsNameTheirModelAndData) {
  TempDir dir;
  const auto path = dir.file("c.yaml");
  std::ofstream(path) << "";
  expect_error([&] { load_training_config(path); }, {path, "sections model, data are missing"});
  std::ofstream(path) << "model:\n  preset: thinkingvit_mnist_2h_4h\n";
  expect_error([&] { load_training_config(path); }, {path, "section data is missing"});
  std::ofstream(path) << "model:\n  preset: thinkingvit_3h_6h\ndata:\n  dataset: synthetic\n";
  EXPECT_EQ(load_training_config(path).data.dataset, "synthetic");
  expect_error([&] { load_training_config(dir.file("absent.yaml")); }, {"no such file"});
  EXPECT_EQ(load_training_config((configs_dir() / "fashion_mnist_2h_4h.yaml").string())
                .model.options.num_stages(),
            2);
}

TEST(ConfigShipped, LoadConfigNamesAMissingFile) {
  expect_error([] { load_config("/nonexistent/x.yaml"); },
               {"config '/nonexistent/x.yaml': no such file"});
  TempDir dir;
  // A folder where the file should be: named as such by every reader of a config.
  const std::string folder = dir.path().string();
  expect_error([&] { load_config(folder); }, {"config '" + folder + "': is a folder"});
  expect_error([&] { load_training_config(folder); }, {"config '" + folder + "': is a folder"});
  expect_error([&] { io::model_options_from_yaml(folder); },
               {"config '" + folder + "': is a folder"});
  // Limits name the key that broke them, whichever it was.
  expect_error([] { parse("data:\n  eval_batch_size: 2000000\n"); },
               {"data.eval_batch_size", "at most 1048576"});
  expect_error([] { parse("data:\n  synthetic_size: 1000000000000\n"); },
               {"data.synthetic_size", "1..67108864"});
  const auto path = dir.file("c.yaml");
  std::ofstream(path) << "schedule:\n  epochs: 2\n  warmup: 1\n";
  expect_error([&] { load_config(path); },
               {"config '" + path + "' line 3: unknown key 'schedule.warmup'"});
  std::ofstream(path) << "schedule:\n  epochs: 2\n  warmup_epochs: 1\n";
  const auto c = load_config(path, {"schedule.epochs=3"});
  EXPECT_EQ(c.schedule.epochs, 3);
  EXPECT_EQ(c.schedule.warmup_epochs, 1);
}

}  // namespace
// docs/config.md holds the reference the table prints, between its two markers. With
// THINKINGVIT_WRITE_DOCS=1 the test writes it there instead (after a change to the table).
TEST(ConfigTable, TheReferenceInTheDocsIsTheTables) {
  const std::string path = std::string(THINKINGVIT_SOURCE_DIR) + "/docs/config.md";
  const std::string begin = "<!-- generated by train::config_reference() -->\n",
                    end = "<!-- end -->";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream text;
  text << in.rdbuf();
  auto doc = text.str();
  const auto from = doc.find(begin), to = doc.find(end);
  ASSERT_NE(from, std::string::npos) << path << " has no '" << begin << "'";
  ASSERT_NE(to, std::string::npos) << path << " has no '" << end << "'";
  const auto reference = train::config_reference();
  if (const char* write = std::getenv("THINKINGVIT_WRITE_DOCS");
      write && std::string(write) == "1") {
    doc.replace(from + begin.size(), to - from - begin.size(), reference);
    std::ofstream(path) << doc;
    GTEST_SKIP() << "wrote " << path;
  }
  EXPECT_EQ(doc.substr(from + begin.size(), to - from - begin.size()), reference)
      << path << " differs from the table: THINKINGVIT_WRITE_DOCS=1 build/tests/thinkingvit_tests "
      << "--gtest_filter=ConfigTable.* rewrites it";
  // Every key of the table is documented and in the YAML the run writes.
  const auto yaml = train::to_yaml(train::TrainConfig{});
  std::istringstream rows(reference);
  int keys = 0;
  for (std::string row; std::getline(rows, row);) {
    if (row.rfind("| `", 0) != 0) continue;
    ++keys;
    std::vector<std::string> cells;
    std::stringstream split(row);
    for (std::string cell; std::getline(split, cell, '|');) cells.push_back(cell);
    ASSERT_GE(cells.size(), 6u) << row;
    EXPECT_GT(util::trim(cells[5]).size(), 3u) << "no description: " << row;
    const auto key = util::trim(cells[1]);
    const auto leaf = key.substr(key.rfind('.') + 1, key.size() - key.rfind('.') - 2);
    EXPECT_NE(yaml.find(leaf + ":"), std::string::npos) << key;
  }
  EXPECT_GE(keys, 70);
}

// A resume compares the keys that change the computation; the others may change.
TEST(ConfigTable, TrajectoryKeysAreTheOnesThatChangeTheRun) {
  const auto keys = train::trajectory_keys();
  const auto has = [&](const std::string& k) {
    return std::find(keys.begin(), keys.end(), k) != keys.end();
  };
  for (const auto* k : {"model.stages", "optimizer.lr", "data.batch_size", "augment.mix.prob",
                        "run.seed", "precision.dtype", "sampling.mode", "schedule.epochs"})
    EXPECT_TRUE(has(k)) << k;
  for (const auto* k : {"data.num_workers", "data.batch_dtype", "run.output_dir",
                        "checkpoint.keep_last", "precision.eval_dtype", "distributed.timeout_s"})
    EXPECT_FALSE(has(k)) << k;

  const train::TrainConfig a;
  auto b = a;
  b.data.num_workers = 7;
  b.run.log_every_steps = 3;
  EXPECT_TRUE(train::trajectory_differences(a, b).empty());
  b.optimizer.lr = 1e-3;
  b.augment.train.mean = {0.5f, 0.5f, 0.5f};
  EXPECT_EQ(train::trajectory_differences(a, b),
            (std::vector<std::string>{"augment.train.mean", "optimizer.lr"}));
  auto c = a;
  c.model.options = tiny_options({1, 2});
  EXPECT_EQ(train::trajectory_differences(a, c), (std::vector<std::string>{"model"}));
}

}  // namespace thinkingvit::testing
