// The `thinkingvit` program as a user runs it: exit codes, one-line errors, no partial outputs.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "../test_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::testing {

namespace {

struct RunResult {
  int code;
  std::string out, err;
};

RunResult run(const TempDir& dir, const std::string& args) {
  const auto out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const std::string cmd = std::string(THINKINGVIT_BIN) + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  return {WEXITSTATUS(status), slurp(out), slurp(err)};
}

int64_t count_lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

}  // namespace

TEST(Cli, VersionNamesTheBuild) {
  TempDir dir;
  auto r = run(dir, "--version");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, util::build_summary() + "\n");
  EXPECT_EQ(r.out.rfind(std::string("thinkingvit ") + util::kVersion + ", LibTorch ", 0), 0u)
      << r.out;
}

TEST(Cli, MacsPrintsTheExactFigures) {
  TempDir dir;
  auto r = run(dir, "macs --preset deit_tiny_patch16_224");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("1,253,683,200"), std::string::npos);
  EXPECT_NE(r.out.find("1,258,411,200"), std::string::npos);
  EXPECT_NE(r.out.find("parameters: 5,717,416"), std::string::npos);
  r = run(dir, "macs --preset thinkingvit_3h_6h --reach 1,0.5");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("every stage (tau = 0): 5.8526 GMACs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("14,524,416"), std::string::npos);
  EXPECT_NE(r.out.find("parameters: 22,124,777"), std::string::npos);
  EXPECT_NE(r.out.find("reach 1,0.5: 3.5531 GMACs"), std::string::npos) << r.out;
}

TEST(Cli, MacsOfSwinAreTheReleasedFigures) {
  TempDir dir;
  auto r = run(dir, "macs --preset thinkingvit_swin_s");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("stage 0 (3-3-6-12 heads)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2,817,590,784"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8,857,684,992"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| token projector | 0 | 116,809,728 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters: 49,667,795"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("every stage (tau = 0): 11.6753 GMACs"), std::string::npos) << r.out;
}

TEST(Cli, InferRunsTheSwinFolderOfTheExport) {
  TempDir dir;
  const auto file = io::read_safetensors(fixture("swin_tiny_weights.safetensors"));
  std::filesystem::create_directories(dir.path() / "swin");
  std::ofstream(dir.file("swin/config.json")) << file.metadata.at("config");
  std::filesystem::copy_file(fixture("swin_tiny_weights.safetensors"),
                             dir.path() / "swin" / "model.safetensors");
  const auto golden = io::read_safetensors(fixture("swin_tiny_golden.safetensors")).tensors;
  const double tau = golden.at("thresholds")[2].item<double>();
  auto r = run(dir, "infer --weights " + dir.file("swin") + " --input " +
                        fixture("swin_tiny_golden.safetensors") + " --output " +
                        dir.file("out.safetensors") + " --threshold " + std::to_string(tau));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto out = io::read_safetensors(dir.file("out.safetensors")).tensors;
  EXPECT_TRUE(close_scaled(out.at("logits.1"), golden.at("logits.1"), 1e-4));
  EXPECT_TRUE(close_scaled(out.at("entropy.0"), golden.at("entropy_top10.0"), 1e-4));
  // std::to_string rounds tau to 6 decimals: the midpoints are far from every entropy.
  EXPECT_TRUE(torch::equal(out.at("exit_stage"), golden.at("exit_round")[2]));
  r = run(dir, "bench --weights " + dir.file("swin") +
                   " --batch-sizes 2 --reps 1 --warmup 0 --taus 0.5 --threads 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("elastic"), std::string::npos) << r.out;
}

TEST(Cli, InferMatchesTheGoldenReference) {
  TempDir dir;
  // The golden fixture holds more than images; infer reads only the 'images' tensor.
  const auto out = dir.file("out.safetensors");
  auto r = run(dir, "infer --weights " + fixture("tiny_weights.safetensors") +
                        " --head-dim 4 --input " + fixture("tiny_golden.safetensors") +
                        " --output " + out + " --threshold 1.3 --threads 1");
  ASSERT_EQ(r.code, 0) << r.err;
  auto result = io::read_safetensors(out).tensors;
  auto golden = io::read_safetensors(fixture("tiny_golden.safetensors")).tensors;
  for (int s = 0; s < 3; ++s) {
    const auto i = std::to_string(s);
    EXPECT_TRUE(torch::allclose(result.at("logits." + i), golden.at("logits." + i), 1e-4, 1e-5));
    EXPECT_TRUE(
        torch::allclose(result.at("entropy." + i), golden.at("entropy_top10." + i), 1e-5, 1e-5));
  }
  EXPECT_TRUE(
      torch::equal(result.at("exit_stage"), torch::tensor({2, 1, 2, 0, 2, 1}, torch::kLong)));
  EXPECT_TRUE(torch::allclose(result.at("logits")[3], golden.at("logits.0")[3], 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(result.at("logits")[1], golden.at("logits.1")[1], 1e-4, 1e-5));
  // Chunks of two: undecided images wait across chunks for a full next-stage batch, and every
  // answer comes back in input order.
  r = run(dir, "infer --weights " + fixture("tiny_weights.safetensors") + " --head-dim 4 --input " +
                   fixture("tiny_golden.safetensors") + " --output " +
                   dir.file("pairs.safetensors") + " --threshold 1.3 --threads 1 --batch-size 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto pairs = io::read_safetensors(dir.file("pairs.safetensors")).tensors;
  EXPECT_TRUE(torch::equal(pairs.at("exit_stage"), result.at("exit_stage")));
  EXPECT_TRUE(close_scaled(pairs.at("logits"), result.at("logits"), 1e-4));

  // A Hugging Face style folder configures the model from config.json.
  std::filesystem::create_directories(dir.path() / "hf");
  std::filesystem::copy_file(fixture("tiny_weights.safetensors"),
                             dir.path() / "hf" / "model.safetensors");
  std::ofstream(dir.file("hf/config.json"))
      << R"({"num_classes": 12, "model_args": {"thinking_stages": [1, 2, 3]}})";
  r = run(dir, "infer --weights " + dir.file("hf") + " --input " +
                   fixture("tiny_golden.safetensors") + " --output " + dir.file("hf.safetensors") +
                   " --entropy full");
  ASSERT_EQ(r.code, 0) << r.err;
  auto hf = io::read_safetensors(dir.file("hf.safetensors")).tensors;
  EXPECT_TRUE(torch::allclose(hf.at("entropy.2"), golden.at("entropy_full.2"), 1e-5, 1e-5));
  EXPECT_EQ(hf.count("exit_stage"), 0u);
}

TEST(Cli, BenchWritesEveryFormat) {
  TempDir dir;
  std::ofstream(dir.file("tiny.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 12\n"
         "  head_dim: 4\n  depth: 2\n  stages: [1, 2, 3]\n";
  auto r = run(dir, "bench --config " + dir.file("tiny.yaml") +
                        " --batch-sizes 2,3 --taus 0,9 --reps 1 --warmup 0 --threads 1 --format csv"
                        " --output " +
                        dir.file("b.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count_lines(r.out), 1 + 2 * (3 + 2)) << r.out;  // header + rows
  EXPECT_EQ(r.out.rfind("mode,stage,tau,reach,batch,precision,img_per_s", 0), 0u) << r.out;
  const auto json = nlohmann::json::parse(slurp(dir.file("b.json")));
  ASSERT_EQ(json.size(), 10u);
  EXPECT_EQ(json[4]["reach"], "1.000/0.000/0.000");  // tau 9 > ln 10: all stop at stage 0
  EXPECT_EQ(json[9]["batch"].get<int64_t>(), 3);
  r = run(dir, "bench --config " + dir.file("tiny.yaml") + " --precision fp8 --output " +
                   dir.file("c.json"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--precision: expected fp32 or bf16, found 'fp8'"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.json")));
}

// bench --profile: a folder with the top operators per row (markdown), all of them (CSV) and a
// Chrome trace per row; --peak fills peak_pct; bad flags are one line and leave nothing.
TEST(Cli, BenchProfilesEveryRow) {
  TempDir dir;
  std::ofstream(dir.file("tiny.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 12\n"
         "  head_dim: 4\n  depth: 2\n  stages: [1, 2]\n";
  const std::string bench = "bench --config " + dir.file("tiny.yaml") +
                            " --batch-sizes 2 --reps 1 --warmup 0 --threads 1 --format csv";
  auto r =
      run(dir, bench + " --taus 0 --peak --profile " + dir.file("prof") + " --profile-calls 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count_lines(r.out), 1 + 3) << r.out;
  const auto md = slurp(dir.file("prof/ops.md"));
  EXPECT_EQ(md.rfind("| row | where | op | calls | self_ms | total_ms | self_pct | wall_ms |", 0),
            0u)
      << md;
  for (const std::string row : {"stage0_b2_fp32", "stage1_b2_fp32", "elastic_tau0_b2_fp32"}) {
    EXPECT_NE(md.find("| " + row + " | cpu |"), std::string::npos) << row;
    EXPECT_TRUE(std::filesystem::exists(dir.file("prof/" + row + ".trace.json"))) << row;
  }
  EXPECT_NE(slurp(dir.file("prof/ops.csv")).find("stage1_b2_fp32,cpu,"), std::string::npos);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.file("prof")),
                          std::filesystem::directory_iterator()),
            2 + 3);  // no temp folder left beside the traces
  // --peak: the peak_pct column holds a positive share in every row.
  std::istringstream lines(r.out);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line.find(",gmacs,tflops,peak_pct,"), line.find(",min_ms,max_ms,") + 14) << line;
  while (std::getline(lines, line)) {
    std::vector<std::string> cells;
    std::istringstream fields(line);
    for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
    ASSERT_GT(cells.size(), 14u) << line;
    EXPECT_GT(std::stod(cells[14]), 0.0) << line;  // peak_pct
  }
  r = run(dir, bench + " --profile " + dir.file("missing/prof"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--profile: the folder '"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("missing")));
  r = run(dir, bench + " --profile " + dir.file("p2") + " --profile-calls 0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--profile-calls: expected a number >= 1, found '0'"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("p2")));
  // SIGTERM while profiling ends the run as SIGTERM does, and leaves no temp folder behind.
  const std::string killed =
      std::string(THINKINGVIT_BIN) + " bench --config " + dir.file("tiny.yaml") +
      " --batch-sizes 2 --reps 1000000 --warmup 0 --threads 1 --profile " + dir.file("p3") + " >" +
      dir.file("p3.log") + " 2>&1 & pid=$!; sleep 3; kill -TERM $pid; " + "wait $pid; echo $? > " +
      dir.file("p3.code");
  ASSERT_EQ(std::system(killed.c_str()), 0);
  EXPECT_EQ(util::trim(slurp(dir.file("p3.code"))), "143") << slurp(dir.file("p3.log"));
  EXPECT_FALSE(std::filesystem::exists(dir.file(".tmp-p3")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("p3")));
}

TEST(Cli, AKilledRunKeepsItsLogLines) {
  TempDir dir;
  std::ofstream(dir.file("tiny.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 12\n  head_dim: 4\n  depth: 2\n"
         "  stages: [1, 2]\n"
         "data:\n  dataset: synthetic\n  synthetic_size: 32\n  batch_size: 8\n  num_workers: 1\n"
         "augment:\n  train:\n    size: 8\n  eval:\n    size: 8\n    crop_pct: 1.0\n"
         "schedule:\n  epochs: 500\n  warmup_epochs: 1\n  cooldown_epochs: 0\n"
         "run:\n  threads: 1\n";
  const auto run_dir = dir.file("run");
  // SIGKILL as soon as the first epoch's metrics line exists (its log line was printed before).
  const std::string cmd = "(" + std::string(THINKINGVIT_BIN) + " train --config " +
                          dir.file("tiny.yaml") + " --output-dir " + run_dir +
                          " >/dev/null 2>&1 & pid=$!; for i in $(seq 1 1200); do grep -q "
                          "'\"type\":\"epoch\"' " +
                          run_dir +
                          "/metrics.jsonl 2>/dev/null && break; sleep 0.05; done; kill -9 $pid; "
                          "wait $pid 2>/dev/null; true)";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto log = slurp(run_dir + "/train.log");
  EXPECT_NE(log.find("epoch 1/500: loss"), std::string::npos) << log;
  EXPECT_EQ(log.find("epoch 500/500"), std::string::npos);  // it was killed, not finished
}

TEST(Cli, TrainEvalSweepASwin) {
  TempDir dir;
  std::ofstream(dir.file("swin.yaml"))
      << "model:\n  family: swin\n  image_size: 8\n  patch_size: 1\n  num_classes: 12\n"
         "  embed_dim: 8\n  depths: [2, 1]\n  num_heads: [2, 4]\n  window_size: 4\n"
         "  head_rounds: [[1, 2], [2, 4]]\n"
         "data:\n  dataset: synthetic\n  synthetic_size: 32\n  batch_size: 8\n  eval_batch_size: "
         "16\n  num_workers: 1\n"
         "augment:\n  train:\n    size: 8\n  eval:\n    size: 8\n    crop_pct: 1.0\n"
         "schedule:\n  epochs: 1\n  warmup_epochs: 1\n  cooldown_epochs: 0\n"
         "run:\n  threads: 1\n";
  const auto run_dir = dir.file("run");
  auto r = run(dir, "train --config " + dir.file("swin.yaml") + " --output-dir " + run_dir);
  ASSERT_EQ(r.code, 0) << r.err;
  r = run(dir, "eval --run " + run_dir + " --format csv");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("0,1-2,"), std::string::npos) << r.out;  // round 0 runs heads 1-2
  EXPECT_NE(r.out.find("1,2-4,"), std::string::npos) << r.out;
  r = run(dir, "sweep --run " + run_dir + " --taus 0,9 --reps 1 --timing-batches 1 --no-plot");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto json = nlohmann::json::parse(slurp(run_dir + "/sweep/sweep.json"));
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["stop_share"], "0.000/1.000");
  EXPECT_EQ(json[1]["stop_share"], "1.000/0.000");
  // The timed early exit ran round 2 on no image at tau 9.
  EXPECT_EQ(json[1]["timed_reach"], "1.000/0.000") << json[1].dump();
}

TEST(Cli, TrainEvalSweepOnASyntheticSet) {
  TempDir dir;
  std::ofstream(dir.file("tiny.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 12\n  head_dim: 4\n  depth: 2\n"
         "  stages: [1, 2]\n"
         "data:\n  dataset: synthetic\n  synthetic_size: 32\n  batch_size: 8\n  eval_batch_size: "
         "16\n"
         "  num_workers: 1\n"
         "augment:\n  train:\n    size: 8\n  eval:\n    size: 8\n    crop_pct: 1.0\n"
         "schedule:\n  epochs: 2\n  warmup_epochs: 1\n  cooldown_epochs: 0\n"
         "ema:\n  decay: 0.9\n"
         "run:\n  threads: 1\n";
  const auto run_dir = dir.file("run");
  auto r = run(dir, "train --config " + dir.file("tiny.yaml") + " --output-dir " + run_dir +
                        " --set optimizer.lr=1e-3");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(slurp(run_dir + "/config.yaml").find("lr: 0.001"), std::string::npos);
  EXPECT_EQ(count_lines(slurp(run_dir + "/metrics.jsonl")), 2);  // one epoch line per epoch
  r = run(dir, "eval --run " + run_dir + " --ema --format csv");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("stage,heads,top1,top5,images,weights"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(",32,"), std::string::npos) << r.out;  // every validation image counted
  r = run(dir, "sweep --run " + run_dir + " --taus 0,9 --reps 1 --timing-batches 1 --no-plot");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto json = nlohmann::json::parse(slurp(run_dir + "/sweep/sweep.json"));
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["stop_share"], "0.000/1.000");  // tau 0: everyone to the last stage
  EXPECT_EQ(json[1]["stop_share"], "1.000/0.000");  // tau 9 > ln 10: everyone stops at stage 0
  EXPECT_GT(json[1]["img_per_s"].get<double>(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(run_dir + "/sweep/sweep.csv"));
  // The first-stage entropy histogram counts every image once.
  std::ifstream hist(run_dir + "/sweep/entropy_hist.csv");
  std::string line;
  std::getline(hist, line);
  EXPECT_EQ(line, "entropy_lo,entropy_hi,right,wrong");
  int64_t counted = 0, bins = 0;
  while (std::getline(hist, line)) {
    const auto c2 = line.find(',', line.find(',') + 1), c3 = line.rfind(',');
    counted += std::stoll(line.substr(c2 + 1, c3 - c2 - 1)) + std::stoll(line.substr(c3 + 1));
    ++bins;
  }
  EXPECT_EQ(counted, 32);
  EXPECT_EQ(bins, 46);
  // --plot-script replaces the plot script found beside the binary; it gets the sweep table,
  // the stage table, the figure's path and the histogram, in that order.
  std::ofstream(dir.file("plot.sh")) << "printf '%s\\n' \"$@\" > \"$3.args\"\n";
  r = run(dir, "sweep --run " + run_dir + " --taus 0 --reps 1 --timing-batches 1 --plot-script " +
                   dir.file("plot.sh"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(slurp(run_dir + "/sweep/sweep.png.args"),
            run_dir + "/sweep/sweep.csv\n" + run_dir + "/sweep/stages.csv\n" + run_dir +
                "/sweep/sweep.png\n" + run_dir + "/sweep/entropy_hist.csv\n");
  // A sweep killed during its pass leaves no output folder (it is made when the tables are
  // written); one that cannot make it says so before the pass.
  const std::string killed =
      std::string(THINKINGVIT_BIN) + " sweep --run " + run_dir + " --output-dir " +
      dir.file("killed") + " --set data.synthetic_size=200000 --taus 0 --reps 1 --no-plot >" +
      dir.file("killed.log") + " 2>&1 & pid=$!; sleep 3; kill -TERM $pid; " + "wait $pid";
  EXPECT_NE(std::system(killed.c_str()), 0) << "the sweep should still be in its pass after 3 s";
  EXPECT_FALSE(std::filesystem::exists(dir.file("killed"))) << slurp(dir.file("killed.log"));
  std::ofstream(dir.file("plain")) << "a file\n";
  r = run(dir, "sweep --run " + run_dir + " --output-dir " + dir.file("plain") + "/out --no-plot");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--output-dir '" + dir.file("plain") + "/out': cannot create it"),
            std::string::npos)
      << r.err;
  // best/ names its classes for `predict`.
  const auto best = nlohmann::json::parse(slurp(run_dir + "/best/config.json"));
  EXPECT_EQ(best["label_names"].size(), 12u);
  // A wrong key is one clear line.
  r = run(dir, "train --config " + dir.file("tiny.yaml") + " --set optimizer.lrr=1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--set optimizer.lrr=1: unknown key 'optimizer.lrr'"), std::string::npos)
      << r.err;
}

#ifdef THINKINGVIT_HAVE_OPENCV
TEST(Cli, PredictNamesClassesStagesAndEntropies) {
  TempDir dir;
  // A Hugging Face style folder whose config.json names the classes.
  std::filesystem::create_directories(dir.path() / "hf");
  std::filesystem::copy_file(fixture("tiny_weights.safetensors"),
                             dir.path() / "hf" / "model.safetensors");
  nlohmann::json config = {{"num_classes", 12}, {"model_args", {{"thinking_stages", {1, 2, 3}}}}};
  for (int c = 0; c < 12; ++c) config["label_names"].push_back("class-" + std::to_string(c));
  std::ofstream(dir.file("hf/config.json")) << config.dump();

  // Eight random 8x8 RGB images (lossless PNG) and one corrupt JPEG, in a nested folder.
  std::filesystem::create_directories(dir.path() / "images" / "sub");
  torch::manual_seed(3);
  const auto pixels = torch::randint(0, 256, {8, 8, 8, 3}, torch::kUInt8);
  std::vector<std::string> paths;
  for (int i = 0; i < 8; ++i) {
    data::Image image(8, 8, 3);
    std::memcpy(image.pixels.data(), pixels[i].data_ptr<uint8_t>(), image.pixels.size());
    paths.push_back(dir.file("images/" + std::string(i < 4 ? "" : "sub/") + "img" +
                             std::to_string(i) + ".png"));
    data::write_image_file(paths.back(), image);
  }
  std::ofstream(dir.file("images/zz_corrupt.jpg")) << "\xff\xd8 not a jpeg";
  // A real JPEG whose frame header claims 65500 x 65500 pixels: refused before decoding.
  {
    data::Image image(8, 8, 3);
    data::write_image_file(dir.file("images/zz_huge.jpg"), image);
    auto bytes = slurp(dir.file("images/zz_huge.jpg"));
    const auto sof = bytes.find("\xff\xc0");
    ASSERT_NE(sof, std::string::npos);
    for (size_t i = 5; i < 9; ++i) bytes[sof + i] = i % 2 ? '\xff' : '\xdc';  // H, W = 65500
    std::ofstream(dir.file("images/zz_huge.jpg"), std::ios::binary) << bytes;
  }

  auto r = run(dir, "predict " + dir.file("images") + " --weights " + dir.file("hf") +
                        " --tau 1.3 --crop-pct 1 --top-k 3 --batch-size 3 --threads 1 --output " +
                        dir.file("pred.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("zz_corrupt.jpg"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("zz_huge.jpg': image too large: its header says 65500 x 65500"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("2 unreadable, skipped"), std::string::npos) << r.err;
  const auto rows = nlohmann::json::parse(slurp(dir.file("pred.json")));
  ASSERT_EQ(rows.size(), 8u);

  // Reference: normalise by hand (crop_pct 1 at the model's size is the identity), run
  // elastic inference in process.
  auto x = pixels.permute({0, 3, 1, 2}).to(torch::kFloat) / 255.0;
  x = (x - torch::tensor({0.485, 0.456, 0.406}).view({1, 3, 1, 1})) /
      torch::tensor({0.229, 0.224, 0.225}).view({1, 3, 1, 1});
  auto source = io::read_weights(dir.file("hf"));
  const auto model = models::make_model(*source.options);
  io::load_state_dict(*model, source.tensors, source.path);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto want = model->forward_elastic(x.to(torch::kFloat), 1.3, models::EntropyRule::kTop10);
  const auto probs = torch::softmax(want.logits, -1);
  std::set<int64_t> stages;
  for (int i = 0; i < 8; ++i) {  // folder order: images/img0..3.png, then images/sub/img4..7.png
    const auto& row = rows[i];
    EXPECT_EQ(row["image"], paths[i]);
    EXPECT_EQ(row["stage"].get<int64_t>(), want.exit_stage[i].item<int64_t>()) << i;
    EXPECT_NEAR(row["entropy"].get<double>(), want.entropy[i].item<float>(), 1e-4) << i;
    const int64_t top = probs[i].argmax().item<int64_t>();
    EXPECT_EQ(row["class"], "class-" + std::to_string(top)) << i;
    EXPECT_NEAR(row["prob"].get<double>(), probs[i][top].item<float>(), 1e-4) << i;
    const auto top3 = row["top3"].get<std::string>();  // "class-a 0.61, class-b 0.2, ..."
    EXPECT_EQ(std::count(top3.begin(), top3.end(), ','), 2) << top3;
    EXPECT_EQ(top3.rfind("class-" + std::to_string(top) + " ", 0), 0u) << top3;
    stages.insert(row["stage"].get<int64_t>());
  }
  EXPECT_GE(stages.size(), 2u) << "tau 1.3 should split these images across stages";

  // A model file (a `model:` section alone, as configs/*_model.yaml) sets the architecture; the
  // predictions are the same.
  std::ofstream(dir.file("model.yaml"))
      << "model:\n  image_size: 8\n  patch_size: 4\n  num_classes: 12\n  head_dim: 4\n"
      << "  depth: 2\n  stages: [1, 2, 3]\n";
  r = run(dir, "predict " + dir.file("images") + " --config " + dir.file("model.yaml") +
                   " --weights " + dir.file("hf") +
                   " --tau 1.3 --crop-pct 1 --top-k 3 --batch-size 3 --threads 1 --output " +
                   dir.file("pred_model.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(slurp(dir.file("pred_model.json"))), rows);

  // A class-list file wins over config.json; a wrong count is one clear error.
  std::ofstream(dir.file("names.txt")) << "only\ntwo\n";
  r = run(dir, "predict " + paths[0] + " --weights " + dir.file("hf") + " --class-names " +
                   dir.file("names.txt"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("names.txt': expected one name per line for the model's 12 classes, "
                       "found 2"),
            std::string::npos)
      << r.err;
  r = run(dir, "predict " + dir.file("missing") + " --weights " + dir.file("hf"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("missing': no such file or folder"), std::string::npos) << r.err;
}

TEST(Cli, DataBenchTimesEveryPipeline) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "jpegs" / "a");
  for (int i = 0; i < 3; ++i) {
    data::Image image(48, 64, 3, static_cast<uint8_t>(40 * i + 20));
    data::write_image_file(dir.file("jpegs/a/" + std::to_string(i) + ".jpg"), image);
  }
  auto r = run(dir, "data-bench --root " + dir.file("jpegs") +
                        " --images 3 --reps 1 --size 16 --output " + dir.file("b.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto rows = nlohmann::json::parse(slurp(dir.file("b.json")));
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0]["pipeline"], "decode only");
  EXPECT_EQ(rows[2]["decode"], "crop region");
  EXPECT_EQ(rows[4]["decode"], "reduced (DCT scaling)");
  for (const auto& row : rows) {
    EXPECT_GT(row["img_per_s_per_core"].get<double>(), 0.0);
    EXPECT_NEAR(row["ms_per_img"].get<double>() * row["img_per_s_per_core"].get<double>(), 1000.0,
                1e-6);
    EXPECT_EQ(row["images"].get<int64_t>(), 3);
  }
  r = run(dir, "data-bench --root " + dir.file("nothing-here"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("nothing-here"), std::string::npos) << r.err;

  // --workers: the train DataLoader, one row per worker count, speed-up against the first.
  r = run(dir, "data-bench --root " + dir.file("jpegs") + " --images 3 --reps 1 --size 16 " +
                   "--workers 1,3 --batch-size 2 --output " + dir.file("w.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto loader_rows = nlohmann::json::parse(slurp(dir.file("w.json")));
  ASSERT_EQ(loader_rows.size(), 2u);
  EXPECT_EQ(loader_rows[0]["workers"].get<int64_t>(), 1);
  EXPECT_EQ(loader_rows[1]["workers"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(loader_rows[0]["speedup"].get<double>(), 1.0);
  for (const auto& row : loader_rows) {
    const double rate = row["img_per_s"].get<double>();
    EXPECT_GT(rate, 0.0);
    EXPECT_NEAR(row["img_per_s_per_worker"].get<double>() * row["workers"].get<double>(), rate,
                1e-9 * rate);
    EXPECT_EQ(row["batch"].get<int64_t>(), 2);
  }
  EXPECT_NEAR(loader_rows[1]["speedup"].get<double>(),
              loader_rows[1]["img_per_s"].get<double>() / loader_rows[0]["img_per_s"].get<double>(),
              1e-9);
  r = run(dir, "data-bench --root " + dir.file("jpegs") + " --workers 0");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--workers"), std::string::npos) << r.err;

  // --batch-dtype float32,uint8: a row per dtype and worker count, dtypes outermost.
  r = run(dir, "data-bench --root " + dir.file("jpegs") + " --images 3 --reps 1 --size 16 " +
                   "--workers 1,2 --batch-dtype float32,uint8 --batch-size 2 --output " +
                   dir.file("d.json"));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto dtype_rows = nlohmann::json::parse(slurp(dir.file("d.json")));
  ASSERT_EQ(dtype_rows.size(), 4u);
  const std::pair<int64_t, const char*> expected[] = {
      {1, "float32"}, {2, "float32"}, {1, "uint8"}, {2, "uint8"}};
  for (size_t k = 0; k < 4; ++k) {
    EXPECT_EQ(dtype_rows[k]["workers"].get<int64_t>(), expected[k].first) << k;
    EXPECT_EQ(dtype_rows[k]["batch_dtype"].get<std::string>(), expected[k].second) << k;
    EXPECT_GT(dtype_rows[k]["img_per_s"].get<double>(), 0.0) << k;
  }
  r = run(dir, "data-bench --root " + dir.file("jpegs") + " --workers 1 --batch-dtype fp16");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--batch-dtype"), std::string::npos) << r.err;
}
#endif  // THINKINGVIT_HAVE_OPENCV

TEST(Cli, BadInputGivesOneLineAndNoOutputFile) {
  TempDir dir;
  const auto out = dir.file("out.safetensors");
  const std::string weights = fixture("tiny_weights.safetensors");
  const std::string input = fixture("tiny_golden.safetensors");
  auto expect_failure = [&](const std::string& args, const std::vector<std::string>& fragments) {
    auto r = run(dir, args);
    EXPECT_NE(r.code, 0) << args;
    // Log lines may precede it; the error itself is one line, the last one.
    const auto last = r.err.rfind("error: ");
    ASSERT_NE(last, std::string::npos) << r.err;
    EXPECT_EQ(count_lines(r.err.substr(last)), 1) << r.err;
    EXPECT_EQ(r.err.find("error: "), last) << "more than one error line: " << r.err;
    for (const auto& f : fragments) EXPECT_NE(r.err.find(f), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(out)) << args;
  };
  expect_failure(
      "infer --weights " + weights + " --input " + input + " --output " + out + " --preset nope",
      {"unknown preset 'nope'"});
  expect_failure("infer --weights " + weights + " --input " + input + " --output " + out +
                     " --preset deit_tiny_patch16_224",
                 {"tiny_weights.safetensors", "model expects"});
  expect_failure(
      "infer --weights " + weights + " --input " + weights + " --output " + out + " --head-dim 4",
      {"'images'"});
  {
    auto bytes = slurp(weights);
    std::ofstream(dir.file("cut.safetensors"), std::ios::binary)
        << bytes.substr(0, bytes.size() / 2);
  }
  expect_failure(
      "infer --weights " + dir.file("cut.safetensors") + " --input " + input + " --output " + out,
      {"cut.safetensors", "outside the data section"});
  expect_failure("infer --weights " + weights + " --input " + input + " --output " + out +
                     " --head-dim 4 --entropy top5",
                 {"--entropy", "'top5'"});
  expect_failure("infer --weights " + weights + " --input " + input + " --output " + out +
                     " --head-dim 4 --strict --preset thinkingvit_mnist_2h_4h",
                 {"tiny_weights.safetensors"});
  // --output names its format by extension, checked before any work.
  expect_failure("bench --preset thinkingvit_mnist_2h_4h --reps 1 --output " + dir.file("b.txt"),
                 {"--output", "b.txt", "expected a .md, .csv or .json file name"});
  EXPECT_FALSE(std::filesystem::exists(dir.file("b.txt")));
  // A command line the parser refuses is one line too, with the usage exit code 2.
  for (const auto& [args, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"fro --preset x", "unknown command 'fro' (expected one of: infer, macs"},
           {"bench --reps 1 --reps 2", "--reps"},
           {"bench --threads -1", "--threads: expected a number >= 0, found '-1'"},
           {"bench --taus 0,nan", "--taus: expected a number, found 'nan'"},
           {"bench --batch-sizes 2,0", "--batch-sizes: expected a number >= 1, found '0'"},
           {"predict --weights " + weights + " --std 0.2,0 x.png", "--std: expected a number > 0"},
           {"sweep --config x.yaml --budget-gmacs -1", "--budget-gmacs: expected a number > 0"}}) {
    expect_failure(args, {fragment});
    EXPECT_EQ(run(dir, args).code, 2) << args;
  }
  // --mean / --std take one comma-separated value: the inputs after them stay inputs.
  expect_failure("predict --weights " + weights + " --head-dim 4 --mean 0.5,0.5,0.5 " +
                     dir.file("no_such_a.png") + " " + dir.file("no_such_b.png"),
                 {"no_such_a.png': no such file or folder"});
  expect_failure("macs --preset thinkingvit_3h_6h --reach 1,nan", {"--reach", "'1,nan'"});
  expect_failure("macs --preset thinkingvit_3h_6h --reach 0.5,1", {"--reach", "'0.5,1'"});
  io::write_safetensors(dir.file("none.safetensors"), {{"images", torch::zeros({0, 3, 8, 8})}});
  expect_failure("infer --weights " + weights + " --input " + dir.file("none.safetensors") +
                     " --output " + out + " --head-dim 4",
                 {"none.safetensors': tensor 'images' holds no images"});
  {
    std::filesystem::copy_file(input, dir.file("in.safetensors"));
    const auto before = slurp(dir.file("in.safetensors"));
    auto r = run(dir, "infer --weights " + weights + " --input " + dir.file("in.safetensors") +
                          " --output " + dir.file("./in.safetensors") + " --head-dim 4");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("is the --input file"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(dir.file("in.safetensors")), before);
  }
  // Output folders are checked before any work.
  std::ofstream(dir.file("afile")) << "x";
  expect_failure(
      "bench --preset thinkingvit_mnist_2h_4h --reps 1 --output " + dir.file("afile/b.md"),
      {"--output", "afile' is not a folder"});
  expect_failure("infer --weights " + weights + " --input " + input + " --output " +
                     dir.file("nodir/o.safetensors"),
                 {"--output", "nodir' is not a folder"});
  // So is eval's --format (a typo must not cost a whole evaluation): named before the data is.
  expect_failure("eval --config " + dir.file("missing.yaml") + " --format yaml",
                 {"--format", "'yaml'"});
  expect_failure("infer --weights " + weights + " --input " + input + " --output " + out +
                     " --head-dim 4 --device gpu0",
                 {"--device", "expected cpu, cuda or cuda:N", "'gpu0'"});
  if (!compat::cuda_available()) {  // this machine has no GPU: cuda is refused, named
    expect_failure("infer --weights " + weights + " --input " + input + " --output " + out +
                       " --head-dim 4 --device cuda:0",
                   {"--device cuda:0"});
  }
  // --device cpu runs where auto would pick the same device.
  EXPECT_EQ(run(dir, "infer --weights " + weights + " --input " + input + " --output " + out +
                         " --head-dim 4 --device cpu")
                .code,
            0);
}

}  // namespace thinkingvit::testing
