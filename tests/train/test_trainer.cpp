#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/train/trainer.h"
#include "thinkingvit/util/device.h"
#include "tiny_config.h"

namespace thinkingvit::testing {

TEST(Trainer, TinyModelOverfitsATinyDataset) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.schedule.epochs = 60;
  c.model.options.as<models::ThinkingViTOptions>()->drop_path_rate(0.0).head_dim(
      16);  // widths 16 / 32: room to memorise
  c.optimizer.lr = 5e-3;
  c.ema.enabled = false;
  c.checkpoint.every_epochs = 100;
  c.run.eval_every_epochs = 25;  // epochs 25, 50 and the last
  const auto history = train::train(c);
  ASSERT_EQ(history.size(), 60u);
  for (size_t e = 0; e < 60; ++e) {
    EXPECT_EQ(history[e].val_top1.empty(), e != 24 && e != 49 && e != 59) << e;
  }
  EXPECT_LT(history.back().loss, 0.25 * history.front().loss);
  for (size_t s = 0; s < 2; ++s) EXPECT_LT(history.back().stage_loss[s], 0.5) << s;
  const auto run = dir.path() / "run";
  for (const auto* f :
       {"config.yaml", "train.log", "metrics.jsonl", "checkpoints/LAST",
        "checkpoints/epoch_0059/model.safetensors", "best/model.safetensors", "best/config.json"}) {
    EXPECT_TRUE(std::filesystem::exists(run / f)) << f;
  }
}

TEST(Trainer, ANonFiniteLossStopsTheRunBeforeACheckpointKeepsIt) {
  // A step's losses are read back during the next step (the host does not wait for the device
  // inside a step); a NaN from the first step must still stop the run before the checkpoint due
  // after that step is written.
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  auto model = tiny_model({1, 2});
  model->named_parameters()["head.bias"].detach()[0] = std::nan("");
  io::save_weights(*model, dir.file("nan.safetensors"));
  c.model.init_from = dir.file("nan.safetensors");
  c.checkpoint.every_steps = 1;
  expect_error([&] { train::train(c); }, {"non-finite loss", "nan at epoch 0 step 0 stage 0"});
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "run" / "checkpoints" / "LAST"));
}

TEST(Trainer, ACheckpointRecordsTheBestItFollows) {
  // The checkpoint of an epoch that set a new best holds that best: a resumed run compares its
  // next epochs with it, not with the best before.
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.schedule.epochs = 1;
  const auto history = train::train(c);
  const auto state = nlohmann::json::parse(
      std::ifstream(dir.path() / "run" / "checkpoints" / "epoch_0000" / "state.json"));
  EXPECT_DOUBLE_EQ(state["best_top1"].get<double>(), history.back().val_top1.back());
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "run" / "best" / "model.safetensors"));
}

TEST(Trainer, AStageLossIsItsMeanOverTheStepsThatRanIt) {
  // lr 0: the weights never change, so a stage's loss on a batch does not depend on the
  // sampling; stochastic sampling runs each stage on some steps only.
  TempDir dir;
  auto c = tiny_config(dir.file("all"));
  c.schedule.epochs = 1;
  c.optimizer.lr = 0;
  c.schedule.warmup_lr = 0;
  c.ema.enabled = false;
  c.data.synthetic_size = 64;
  const auto all = train::train(c).back();
  c.run.output_dir = dir.file("stochastic");
  c.sampling.mode = "stochastic";
  const auto some = train::train(c).back();
  ASSERT_EQ(some.stage_steps.size(), 2u);
  EXPECT_EQ(some.stage_steps[0] + some.stage_steps[1], 8);  // one stage per step
  EXPECT_EQ(all.stage_steps, (std::vector<int64_t>{8, 8}));
  for (int s = 0; s < 2; ++s) {
    if (some.stage_steps[s] == 0) continue;
    // Means over different batches of one fixed model: close, not half (the old division).
    EXPECT_NEAR(some.stage_loss[s], all.stage_loss[s], 0.25 * all.stage_loss[s]) << s;
  }
}

TEST(Trainer, ADamagedLastCheckpointFallsBackToTheOneBefore) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.schedule.epochs = 2;
  c.checkpoint.keep_last = 3;
  ASSERT_EQ(train::train(c).size(), 2u);
  const auto damaged = dir.path() / "run" / "checkpoints" / "epoch_0001" / "model.safetensors";
  std::filesystem::resize_file(damaged, 10);
  c.schedule.epochs = 3;
  train::TrainOptions resume;
  resume.resume = true;
  const auto history = train::train(c, resume);
  ASSERT_EQ(history.size(), 2u);  // epoch_0000 loaded: epochs 1 and 2 run again
  EXPECT_EQ(history.front().epoch, 1);
  const auto log = slurp((dir.path() / "run" / "train.log").string());
  EXPECT_NE(log.find("epoch_0001' cannot be loaded"), std::string::npos) << log;
  // Nothing loadable at all: one error naming the folder.
  for (const auto& e : std::filesystem::directory_iterator(dir.path() / "run" / "checkpoints")) {
    if (e.is_directory()) std::filesystem::resize_file(e.path() / "model.safetensors", 10);
  }
  expect_error([&] { train::train(c, resume); },
               {"--resume: no loadable checkpoint", "checkpoints"});
}

TEST(Trainer, ADamagedLastFileResumesFromTheNewestCheckpoint) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.schedule.epochs = 2;
  c.checkpoint.keep_last = 3;
  ASSERT_EQ(train::train(c).size(), 2u);
  const auto last = dir.path() / "run" / "checkpoints" / "LAST";
  std::ofstream(last, std::ios::binary) << "\x01junk";
  c.schedule.epochs = 3;
  train::TrainOptions resume;
  resume.resume = true;
  const auto history = train::train(c, resume);
  ASSERT_EQ(history.size(), 1u);  // epoch_0001, the newest, loaded: only epoch 2 runs
  EXPECT_EQ(history.front().epoch, 2);
  const auto log = slurp((dir.path() / "run" / "train.log").string());
  EXPECT_NE(log.find("LAST' is missing or damaged"), std::string::npos) << log;
}

TEST(Trainer, AFailedCheckpointWriteIsOneErrorAndLosesNothing) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.schedule.epochs = 1;
  ASSERT_EQ(train::train(c).size(), 1u);
  // A killed writer's temp folder, and a full disk while the optimizer state is written.
  std::filesystem::create_directories(dir.path() / "run" / "checkpoints" / ".tmp-epoch_0007");
  c.schedule.epochs = 2;
  c.checkpoint.keep_last = 1;  // the failed write must not cost the only good checkpoint
  train::TrainOptions resume;
  resume.resume = true;
  ::setenv("THINKINGVIT_FAIL_WRITE", "optimizer.pt", 1);
  expect_error([&] { train::train(c, resume); },
               {"cannot write '", "epoch_0001/optimizer.pt", "No space left on device"});
  ::unsetenv("THINKINGVIT_FAIL_WRITE");
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() / "run" / "checkpoints")) {
    left.push_back(e.path().filename().string());
  }
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"LAST", "epoch_0000"}));  // no temp folder, no part
  // The same for a mid-epoch checkpoint (every 2 steps; 4 batches an epoch).
  c.checkpoint.every_steps = 2;
  ::setenv("THINKINGVIT_FAIL_WRITE", "epoch_0001_batch_000002/optimizer.pt", 1);
  expect_error([&] { train::train(c, resume); },
               {"cannot write '", "epoch_0001_batch_000002/optimizer.pt", "No space left"});
  ::unsetenv("THINKINGVIT_FAIL_WRITE");
  left.clear();
  for (const auto& e : std::filesystem::directory_iterator(dir.path() / "run" / "checkpoints")) {
    left.push_back(e.path().filename().string());
  }
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"LAST", "epoch_0000"}));
  // The previous checkpoint still loads: the resumed run redoes epoch 1.
  const auto history = train::train(c, resume);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history.front().epoch, 1);
}

TEST(Trainer, KilledAndResumedEqualsUninterrupted) {
  TempDir dir;
  const auto whole = tiny_config(dir.file("whole"));
  train::train(whole);
  auto parts = tiny_config(dir.file("parts"));
  train::TrainOptions first;
  first.hooks.stop_after_epochs = 1;
  ASSERT_EQ(train::train(parts, first).size(), 1u);
  // A kill in epoch 1 after two logged steps: its lines are past the checkpoint of epoch 0.
  std::ofstream(dir.file("parts/metrics.jsonl"), std::ios::app)
      << R"({"type":"step","epoch":1,"step":5,"loss":9.0})"
      << "\n"
      << R"({"type":"step","epoch":1,"step":6,"loss":9.0})"
      << "\n";
  train::TrainOptions rest;
  rest.resume = true;
  ASSERT_EQ(train::train(parts, rest).size(), 2u);
  // metrics.jsonl: the same lines as the uninterrupted run's, no step twice.
  const auto lines = [&](const std::string& run) {
    std::vector<std::pair<std::string, int64_t>> out;
    std::ifstream in(dir.file(run + "/metrics.jsonl"));
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      out.emplace_back(j["type"].get<std::string>(), j["step"].get<int64_t>());
    }
    return out;
  };
  EXPECT_EQ(lines("parts"), lines("whole"));
  for (const auto* file : {"model.safetensors", "ema.safetensors"}) {
    const auto a = io::read_safetensors(dir.file("whole/checkpoints/epoch_0002/") + file).tensors;
    const auto b = io::read_safetensors(dir.file("parts/checkpoints/epoch_0002/") + file).tensors;
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << file << " " << name;
  }
}

// data.batch_dtype uint8 (a GPU's default): the trainer takes the batches through BatchUpload,
// normalised and erased where the model runs; the run trains the float32 run's model.
TEST(Trainer, Uint8BatchesTrainTheFloatRunsModel) {
  TempDir dir;
  const auto config = [&](const std::string& name, const std::string& dtype) {
    auto c = tiny_config(dir.file(name));
    c.schedule.epochs = 2;
    c.augment.train.random_erasing = 0.5;
    c.augment.train.hflip = 0.5;
    c.data.batch_dtype = dtype;
    return c;
  };
  const auto floats = train::train(config("floats", "float32"));
  const auto pixels = train::train(config("pixels", "uint8"));
  ASSERT_EQ(floats.size(), pixels.size());
  for (size_t e = 0; e < floats.size(); ++e) {
    EXPECT_NEAR(pixels[e].loss, floats[e].loss, 1e-5 * std::abs(floats[e].loss)) << e;
  }
  const auto a = io::read_safetensors(dir.file("floats/checkpoints/epoch_0001/model.safetensors"));
  const auto b = io::read_safetensors(dir.file("pixels/checkpoints/epoch_0001/model.safetensors"));
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    const auto& u = b.tensors.at(name);
    const double scale = std::max(1e-3, t.abs().max().item<double>());
    EXPECT_LE((u - t).abs().max().item<double>(), 1e-5 * scale) << name;
  }
}

TEST(Trainer, AppliesPrecisionTf32) {
  for (const bool tf32 : {false, true, false}) {
    TempDir dir;
    auto c = tiny_config(dir.file("run"));
    c.schedule.epochs = 1;
    c.precision.tf32 = tf32;
    train::train(c);
    EXPECT_EQ(compat::tf32_enabled(), tf32);
  }
}

// eval and sweep open the validation split alone: an image folder without train/ is enough.
TEST(Trainer, TheValidationSetOpensWithoutTheTrainingSet) {
  TempDir dir;
  const std::filesystem::path root = dir.path() / "images";
  for (const char* file : {"val/cat/a.png", "val/cat/b.png", "val/dog/c.jpg"}) {
    std::filesystem::create_directories((root / file).parent_path());
    std::ofstream((root / file).string()).put('x');  // listing never decodes
  }
  auto c = tiny_config(dir.file("run"));
  c.data.dataset = "image-folder";
  c.data.root = root.string();
  const auto val = train::open_val_dataset(c);
  EXPECT_EQ(val->size(), 3);
  EXPECT_EQ(val->class_names(), (std::vector<std::string>{"cat", "dog"}));
  EXPECT_NE(val->partial_decoder(), nullptr);  // image files: the loader may decode parts
  c.data.val_limit = 2;
  const auto limited = train::open_val_dataset(c);
  EXPECT_EQ(limited->size(), 2);
  EXPECT_NE(limited->partial_decoder(), nullptr) << "a limit keeps partial decoding";
  EXPECT_EQ(train::open_val_dataset(tiny_config(dir.file("run")))->partial_decoder(), nullptr)
      << "synthetic images are not files";
  // Training needs train/, and says so.
  expect_error([&] { train::open_datasets(c); }, {(root / "train").string()});
}

TEST(Trainer, AFinishedRunFolderIsContinuedOrStartedAgainNeverMixed) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.schedule.epochs = 1;
  train::train(c);
  expect_error([&] { train::train(c); }, {"already holds a run", "--resume", "--overwrite"});
  train::TrainOptions overwrite;
  overwrite.overwrite = true;
  ASSERT_EQ(train::train(c, overwrite).size(), 1u);
  std::ifstream metrics(dir.file("run/metrics.jsonl"));
  int epochs = 0;
  for (std::string line; std::getline(metrics, line);)
    epochs += line.find("\"type\":\"epoch\"") != std::string::npos;
  EXPECT_EQ(epochs, 1) << "the first run's metrics were removed";
}

// Commands that fail before training starts leave no run folder behind.
TEST(Trainer, AFailedStartLeavesNoRunFolder) {
  TempDir dir;
  auto c = tiny_config(dir.file("missing-data"));
  c.data.dataset = "image-folder";
  c.data.root = dir.file("nowhere");
  EXPECT_THROW(train::train(c), Error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("missing-data")));
  c = tiny_config(dir.file("big-batch"));
  c.data.batch_size = 1000;
  expect_error([&] { train::train(c); }, {"exceeds the training set"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("big-batch")));
  train::TrainOptions resume;
  resume.resume = true;
  expect_error([&] { train::train(tiny_config(dir.file("nothing")), resume); }, {"--resume"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("nothing")));
  // A run folder that cannot be made (root ignores permissions: a file stands in the way).
  std::ofstream(dir.file("file")) << "x";
  expect_error([&] { train::train(tiny_config(dir.file("file/run"))); },
               {"run.output_dir '" + dir.file("file/run") + "': cannot create the run folder",
                "Not a directory"});
}

TEST(Trainer, ChecksTheDataAgainstTheModel) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.augment.train.size = 16;
  expect_error([&] { train::open_datasets(c); }, {"augment.train.size", "model.image_size 8"});
  c = tiny_config(dir.file("run"));
  c.data.dataset = "fashion-mnist";
  c.data.root = dir.file("nowhere");
  expect_error([&] { train::open_datasets(c); }, {"nowhere"});
  expect_error(
      [&] {
        train::TrainOptions resume;
        resume.resume = true;
        train::train(tiny_config(dir.file("fresh")), resume);
      },
      {"--resume", "no checkpoint"});
}

}  // namespace thinkingvit::testing

namespace thinkingvit::testing {

TEST(Trainer, LimitsTakeTheFirstSamples) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  const auto full = train::open_datasets(c);
  c.data.train_limit = 10;
  c.data.val_limit = 100;  // more than there are: all 32
  const auto limited = train::open_datasets(c);
  ASSERT_EQ(limited.train->size(), 10);
  EXPECT_EQ(limited.val->size(), 32);
  auto labels = full.train->labels();
  labels.resize(10);
  EXPECT_EQ(limited.train->labels(), labels);
  EXPECT_EQ(limited.train->get(9)->image.pixels, full.train->get(9)->image.pixels);
  EXPECT_THROW(limited.train->get(10), Error);
  EXPECT_NE(limited.train->describe().find("first 10 used"), std::string::npos);
}

}  // namespace thinkingvit::testing
