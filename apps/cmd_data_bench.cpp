// thinkingvit data-bench: images per second per core for decode + transform on an image folder,
// the measurement behind "is the loader fast enough for N GPUs". One thread, so the figure is
// per core. With --workers N,M,..., the real DataLoader train pipeline instead, with N worker
// threads: how the per-core figure scales.

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <numeric>
#include <vector>

#include "common.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/data/loader.h"
#include "thinkingvit/data/transforms.h"
#include "thinkingvit/eval/benchmark.h"
#include "thinkingvit/eval/table.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/limits.h"
#include "thinkingvit/util/progress.h"

namespace thinkingvit::apps {

namespace {

struct DataBenchArgs {
  std::string root, format = "md", output;
  int64_t images = 200;
  int reps = 3;
  int size = 224;
  std::string auto_augment = "rand-m9-mstd0.5-inc1";
  std::vector<int> workers;
  std::vector<std::string> batch_dtypes = {"float32"};
  int64_t batch_size = 64;
};

using Clock = std::chrono::steady_clock;

// Median images/s over `reps` passes of `count` images through decode + transform.
double measure(const std::string& what, int64_t count, int reps,
               const std::function<void(int64_t, float*)>& one, int64_t floats_per_image) {
  std::vector<float> out(static_cast<size_t>(floats_per_image));
  std::vector<double> rates;
  util::Progress progress(what, reps * count, "img");
  for (int r = 0; r < reps; ++r) {
    const auto start = Clock::now();
    for (int64_t i = 0; i < count; ++i) {
      one(i, out.data());
      progress.update(r * count + i + 1);
    }
    rates.push_back(count / std::chrono::duration<double>(Clock::now() - start).count());
  }
  progress.finish();
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// The train loader as `train` runs it (crop drawn from the JPEG header, only its part decoded,
// RandAugment, erasing; one batch per worker thread), once per worker count, batch dtype and
// pass, interleaved so that a machine's drift affects all alike. Median images/s of each.
void loader_bench(const DataBenchArgs& args, const std::shared_ptr<const data::ImageFolder>& folder,
                  const data::SampleTransform& train, int64_t count, eval::TableFormat format) {
  std::vector<int64_t> indices(static_cast<size_t>(count));
  std::iota(indices.begin(), indices.end(), 0);
  struct Setting {
    int workers;
    std::string dtype;
  };
  std::vector<Setting> settings;
  for (const auto& dtype : args.batch_dtypes)
    for (int w : args.workers) settings.push_back({w, dtype});
  std::vector<std::vector<double>> rates(settings.size());
  util::Progress progress("loader", static_cast<int64_t>(args.reps * settings.size()) * count,
                          "img");
  int64_t done = 0;
  for (int r = 0; r < args.reps; ++r) {
    for (size_t k = 0; k < settings.size(); ++k) {
      data::LoaderOptions options;
      options.batch_size = args.batch_size;
      options.num_workers = settings[k].workers;
      options.uint8_batches = settings[k].dtype == "uint8";
      data::DataLoader loader(folder, train, options);
      const auto start = Clock::now();
      loader.start_epoch(r, indices);
      while (auto batch = loader.next()) progress.update(done += batch->images.size(0));
      rates[k].push_back(count / std::chrono::duration<double>(Clock::now() - start).count());
    }
  }
  progress.finish();
  eval::Table table({"workers", "batch_dtype", "img_per_s", "speedup", "img_per_s_per_worker",
                     "images", "batch", "size"});
  const double first = median(rates[0]);
  for (size_t k = 0; k < settings.size(); ++k) {
    const double rate = median(rates[k]);
    table.add_row({static_cast<int64_t>(settings[k].workers), settings[k].dtype, rate, rate / first,
                   rate / settings[k].workers, count, args.batch_size,
                   static_cast<int64_t>(args.size)});
  }
  table.set_precision(2);
  table.write(std::cout, format);
  if (!args.output.empty()) save_table(table, args.output);
}

void run_data_bench(const DataBenchArgs& args) {
  check_output(args.output);
  const auto format = eval::parse_table_format(args.format, "--format");
  at::set_num_threads(1);
  const auto shared_folder = std::make_shared<const data::ImageFolder>(args.root);
  const data::ImageFolder& folder = *shared_folder;
  const int64_t count = std::min<int64_t>(args.images, folder.size());

  data::TrainTransformOptions train_options;
  train_options.size = args.size;
  train_options.auto_augment = args.auto_augment;
  data::EvalTransformOptions eval_options;
  eval_options.size = args.size;
  const auto train = data::make_train_transform(train_options, 3);
  const auto eval = data::make_eval_transform(eval_options, 3);
  const int64_t floats = 3LL * args.size * args.size;
  if (!args.workers.empty()) {
    std::string counts;
    for (int w : args.workers) counts += (counts.empty() ? "" : " / ") + std::to_string(w);
    spdlog::info("{}; timing the train loader on {} images, {} passes, {} worker threads",
                 folder.describe(), count, args.reps, counts);
    loader_bench(args, shared_folder, train, count, format);
    return;
  }
  spdlog::info("{}; timing {} images, {} passes, 1 thread", folder.describe(), count, args.reps);

  auto sample = [&](int64_t i, int min_side) {
    auto s = min_side > 0 ? folder.get_reduced(i, min_side) : folder.get(i);
    TVIT_CHECK(s.has_value(), "'", folder.path(i), "' could not be decoded");
    return std::move(*s);
  };
  eval::Table table({"pipeline", "decode", "img_per_s_per_core", "ms_per_img", "images", "size"});
  auto add = [&](const std::string& pipeline, const std::string& decode, double ips) {
    table.add_row({pipeline, decode, ips, 1000.0 / ips, count, static_cast<int64_t>(args.size)});
  };
  const auto decode_only = measure(
      "decode", count, args.reps, [&](int64_t i, float*) { sample(i, 0); }, floats);
  add("decode only", "full", decode_only);
  const std::string train_name =
      "train: RRC+flip+" +
      (args.auto_augment.empty() ? std::string("no RandAugment") : args.auto_augment) + "+erasing";
  add(train_name, "full",
      measure(
          "train", count, args.reps,
          [&](int64_t i, float* dst) {
            auto rng = data::sample_rng(0, 0, i);
            train.apply(sample(i, 0).image, rng, dst);
          },
          floats));
  // As the loader runs it: the crop drawn from the header, only its rows and columns decoded.
  add(train_name, "crop region",
      measure(
          "train region", count, args.reps,
          [&](int64_t i, float* dst) {
            auto rng = data::sample_rng(0, 0, i);
            auto part = folder.get_part(
                i, [&](int height, int width) { return train.crop_box(height, width, rng); });
            TVIT_CHECK(part.has_value(), "'", folder.path(i), "' could not be decoded");
            train.apply_cropped(part->sample.image, part->box, rng, dst);
          },
          floats));
  auto eval_pass = [&](const std::string& label, int min_side) {
    return measure(
        label, count, args.reps,
        [&](int64_t i, float* dst) {
          auto rng = data::sample_rng(0, 0, i);
          eval.apply(sample(i, min_side).image, rng, dst);
        },
        floats);
  };
  add("eval: resize+centre crop", "full", eval_pass("eval", 0));
  add("eval: resize+centre crop", "reduced (DCT scaling)",
      eval_pass("eval reduced", eval.decode_min_side));
  table.set_precision(2);
  table.write(std::cout, format);
  if (!args.output.empty()) save_table(table, args.output);
}

}  // namespace

void add_data_bench_command(CLI::App& root) {
  auto args = std::make_shared<DataBenchArgs>();
  auto* cmd = root.add_subcommand(
      "data-bench", "Images/s per core for decode + train / eval transforms on an image folder");
  cmd->add_option("--root", args->root, "image folder in the ImageNet layout (root/<class>/<img>)")
      ->required();
  cmd->add_option("--images", args->images, "images timed per pass")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--reps", args->reps, "passes (median reported)")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--size", args->size, "output size")
      ->check(in_range(1, util::kMaxImageSize))
      ->capture_default_str();
  cmd->add_option("--auto-augment", args->auto_augment, "RandAugment policy ('' for none)")
      ->capture_default_str();
  cmd->add_option("--workers", args->workers,
                  "time the train DataLoader with these worker-thread counts instead (e.g. 1,2)")
      ->delimiter(',')
      ->check(in_range(1, 512));
  cmd->add_option("--batch-dtype", args->batch_dtypes,
                  "batch dtypes of --workers runs: float32 (normalised by the workers), uint8 "
                  "(the pixels; a GPU run normalises them there), or both: float32,uint8")
      ->delimiter(',')
      ->check(CLI::IsMember({"float32", "uint8"}))
      ->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "batch size of --workers runs")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--format", args->format, "stdout format: md, csv or json")
      ->capture_default_str();
  add_output_flag(*cmd, args->output);
  cmd->callback([args] { run_data_bench(*args); });
}

}  // namespace thinkingvit::apps
