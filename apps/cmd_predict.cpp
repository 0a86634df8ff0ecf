// thinkingvit predict: image files in, top-k classes out, with the stage each image stopped at
// (real early exit at --tau) and its entropy there.

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "common.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/data/transforms.h"
#include "thinkingvit/eval/table.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/model_config.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/elastic_queue.h"
#include "thinkingvit/train/config.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/limits.h"
#include "thinkingvit/util/progress.h"

namespace thinkingvit::apps {

namespace fs = std::filesystem;

namespace {

struct PredictArgs {
  std::vector<std::string> inputs;
  std::string run, weights, class_names, output, format = "md", entropy_rule = "top10";
  ModelChoice model;
  bool ema = false;
  double tau = 1.0;
  int64_t top_k = 5, batch_size = 64;
  std::optional<double> crop_pct;
  std::vector<float> mean, std;
  int threads = 0;
  std::string device = "auto";
};

// Files as given, folders walked recursively (image extensions only, sorted).
std::vector<std::string> collect_images(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& input : inputs) {
    std::error_code ec;
    if (fs::is_directory(input, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(input)) {
        if (e.is_regular_file() && data::has_image_extension(e.path()))
          found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      TVIT_CHECK(!found.empty(), "input folder '", input, "': expected image files (",
                 data::kImageExtensions, "), found none");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      TVIT_CHECK(fs::is_regular_file(input, ec), "input '", input, "': no such file or folder");
      files.push_back(input);
    }
  }
  return files;
}

std::vector<std::string> read_class_names(const std::string& path, int64_t num_classes) {
  std::ifstream in(path);
  TVIT_CHECK(in, "--class-names '", path, "': cannot open");
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  TVIT_CHECK(static_cast<int64_t>(names.size()) == num_classes, "--class-names '", path,
             "': expected one name per line for the model's ", num_classes, " classes, found ",
             names.size());
  return names;
}

std::string format_prob(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", p);
  return buf;
}

// What predict runs: the model with its weights on the device, the preprocessing and the names.
struct Predictor {
  models::ModelOptions options;
  std::shared_ptr<models::ElasticModel> model;
  data::EvalTransformOptions eval;
  data::SampleTransform transform;
  std::vector<std::string> names;
};

// Architecture and preprocessing: the run's config.yaml or a --config training YAML; else the
// architecture from a --config model file, a --preset or the weights (config.json / tensor
// shapes), with ImageNet preprocessing.
Predictor load_predictor(const PredictArgs& args, const c10::Device& device) {
  std::string weights_path = args.weights;
  std::optional<train::TrainConfig> config;
  if (!args.run.empty()) {
    TVIT_CHECK(args.model.preset.empty() && args.model.config.empty(),
               "--run takes the architecture from RUN/config.yaml; drop --preset / --config");
    config = train::load_config((fs::path(args.run) / "config.yaml").string());
    if (weights_path.empty()) weights_path = (fs::path(args.run) / "best").string();
  } else if (!args.model.config.empty() && !io::is_model_file(args.model.config)) {
    config = train::load_config(args.model.config);
  }
  TVIT_CHECK(!weights_path.empty(), "pass --weights PATH or --run RUN_FOLDER");
  if (args.ema) weights_path = ema_weights_path(weights_path);
  const auto weights = io::read_weights(weights_path);
  Predictor p;
  p.options = config ? config->model.options : resolve_model(args.model, &weights);
  models::check_fits_in_memory(p.options, 1, "model", args.batch_size, /*training=*/false, device);
  p.model = models::make_model(p.options);
  const auto report = io::load_state_dict(*p.model, weights.tensors, weights.path);
  spdlog::info("weights '{}': {}", weights.path, report.summary());
  p.model->to(device);
  p.model->eval();

  auto& eval = p.eval;
  eval = config ? config->augment.eval : data::EvalTransformOptions{};
  eval.size = static_cast<int>(p.options.image_size());
  if (args.crop_pct) {
    eval.crop_pct = *args.crop_pct;
    TVIT_CHECK(data::crop_pct_fits(eval.size, eval.crop_pct), "--crop-pct ", eval.crop_pct,
               ": would resize the model's ", eval.size, " pixels to ", eval.size / eval.crop_pct,
               ", beyond the supported ", util::kMaxImageSize);
  }
  if (!args.mean.empty()) eval.mean = args.mean;
  if (!args.std.empty()) eval.std = args.std;
  const auto channels = p.options.in_channels();
  TVIT_CHECK(static_cast<int64_t>(eval.mean.size()) == channels &&
                 static_cast<int64_t>(eval.std.size()) == channels,
             "normalisation: the model takes ", channels, "-channel images but mean/std have ",
             eval.mean.size(), "/", eval.std.size(), " values (pass --mean and --std)");
  TVIT_CHECK(eval.crop_pct > 0 && eval.crop_pct <= 1,
             "--crop-pct: expected a value in (0, 1], found ", eval.crop_pct);
  p.transform = data::make_eval_transform(eval, static_cast<int>(channels));

  const int64_t num_classes = p.options.num_classes();
  if (!args.class_names.empty()) {
    p.names = read_class_names(args.class_names, num_classes);
  } else if (!weights.label_names.empty()) {
    p.names = weights.label_names;
  } else {
    for (int64_t i = 0; i < num_classes; ++i) p.names.push_back(std::to_string(i));
  }
  return p;
}

// The images of files[start, end) that decode, preprocessed into one batch; `kept` gets the index
// of each row, and each unreadable file a warning.
at::Tensor read_batch(const Predictor& p, const std::vector<std::string>& files, size_t start,
                      size_t end, std::vector<size_t>& kept) {
  const int64_t channels = p.options.in_channels(), size = p.eval.size;
  auto batch = torch::empty({static_cast<int64_t>(end - start), channels, size, size});
  data::Rng unused_rng(0);
  kept.clear();
  for (size_t i = start; i < end; ++i) {
    std::string why;
    const auto image = data::decode_image_file(files[i], 0, &why);
    if (!image) {
      spdlog::warn("skipping '{}': {}", files[i], why);
      continue;
    }
    p.transform.apply(*image, unused_rng,
                      batch[static_cast<int64_t>(kept.size())].data_ptr<float>());
    kept.push_back(i);
  }
  return batch.narrow(0, 0, static_cast<int64_t>(kept.size()));
}

// One image's answer: its file (index), exit stage, entropy and top classes with probabilities.
struct Prediction {
  size_t file = 0;
  int64_t stage = 0;
  double entropy = 0;
  std::vector<std::pair<int64_t, float>> top;
};

void append_predictions(const models::ExitedImages& e, int64_t k, std::vector<Prediction>& out) {
  if (e.size() == 0) return;
  const auto ids = e.ids.cpu(), stage = e.exit_stage.cpu(), entropy = e.entropy.cpu();
  const auto probs = at::softmax(e.logits.to(at::kFloat), -1).cpu();
  const auto [top_p, top_i] = probs.topk(k, -1);
  for (int64_t j = 0; j < e.size(); ++j) {
    Prediction pred;
    pred.file = static_cast<size_t>(ids[j].item<int64_t>());
    pred.stage = stage[j].item<int64_t>();
    pred.entropy = entropy[j].item<float>();
    for (int64_t r = 0; r < k; ++r)
      pred.top.emplace_back(top_i[j][r].item<int64_t>(), top_p[j][r].item<float>());
    out.push_back(std::move(pred));
  }
}

void run_predict(const PredictArgs& args) {
  check_output(args.output);
  set_threads(args.threads);
  const auto device = use_device(args.device, "--device");
  const auto rule = models::parse_entropy_rule(args.entropy_rule, "--entropy");
  const auto format = eval::parse_table_format(args.format, "--format");
  const auto p = load_predictor(args, device);
  const auto files = collect_images(args.inputs);
  const int64_t k = std::min(args.top_k, p.options.num_classes());
  spdlog::info(
      "{} images; tau {} ({} entropy); preprocessing: shorter side to floor({} / {}), "
      "centre crop {}, normalise",
      files.size(), args.tau, args.entropy_rule, p.eval.size, p.eval.crop_pct, p.eval.size);

  eval::Table table(
      {"image", "stage", "heads", "entropy", "class", "prob", "top" + std::to_string(k)});
  std::vector<int64_t> per_stage(p.options.num_stages(), 0);
  int64_t skipped = 0;
  torch::NoGradGuard no_grad;
  util::Progress progress("predict", static_cast<int64_t>(files.size()), "img");
  // Early exit regrouped across batches: an image's id is its file's index, and the table is
  // written in file order once every image has exited.
  models::ElasticQueues queues(*p.model, args.tau, args.batch_size, rule);
  std::vector<Prediction> predictions;
  std::vector<size_t> kept;
  for (size_t start = 0; start < files.size(); start += args.batch_size) {
    const size_t end = std::min(files.size(), start + static_cast<size_t>(args.batch_size));
    const auto batch = read_batch(p, files, start, end, kept);
    skipped += static_cast<int64_t>(end - start - kept.size());
    progress.update(static_cast<int64_t>(end));
    if (kept.empty()) continue;
    const auto ids = torch::tensor(std::vector<int64_t>(kept.begin(), kept.end()), torch::kLong);
    queues.push(batch.to(device), ids.to(device));
    append_predictions(queues.take_exited(), k, predictions);  // to the CPU at once
  }
  queues.drain();
  append_predictions(queues.take_exited(), k, predictions);
  std::sort(predictions.begin(), predictions.end(),
            [](const Prediction& a, const Prediction& b) { return a.file < b.file; });
  for (const auto& pred : predictions) {
    ++per_stage[pred.stage];
    std::string top;
    for (size_t r = 0; r < pred.top.size(); ++r) {
      top += (r ? ", " : "") + p.names[pred.top[r].first] + " " + format_prob(pred.top[r].second);
    }
    table.add_row({files[pred.file], pred.stage, heads_cell(p.options, pred.stage), pred.entropy,
                   p.names[pred.top[0].first], static_cast<double>(pred.top[0].second), top});
  }
  progress.finish();
  TVIT_CHECK(!table.rows().empty(), "none of the ", files.size(), " input images could be read");
  table.write(std::cout, format);
  if (!args.output.empty()) save_table(table, args.output);
  std::string stops;
  for (size_t s = 0; s < per_stage.size(); ++s) {
    stops += (s ? ", " : "") + std::to_string(per_stage[s]) + " at stage " + std::to_string(s) +
             " (" + p.options.stage_heads(static_cast<int64_t>(s)) + " heads)";
  }
  spdlog::info("{} images: {}{}", table.rows().size(), stops,
               skipped ? "; " + std::to_string(skipped) + " unreadable, skipped" : "");
}

}  // namespace

void add_predict_command(CLI::App& root) {
  auto args = std::make_shared<PredictArgs>();
  auto* cmd = root.add_subcommand(
      "predict", "Top-k classes of image files with early exit: the stage and entropy per image");
  cmd->add_option("inputs", args->inputs, "image files or folders (searched recursively)")
      ->required();
  cmd->add_option("--run", args->run,
                  "run folder of `thinkingvit train` (config.yaml for the model and "
                  "preprocessing, best/ for the weights)");
  cmd->add_option("--weights", args->weights,
                  "weights: a safetensors file or a Hugging Face style folder");
  args->model.add_flags(*cmd, /*with_head_dim=*/true);
  cmd->add_flag("--ema", args->ema, "use the EMA weights (ema.safetensors beside the model)");
  cmd->add_option("--tau", args->tau,
                  "entropy threshold: an image stops at the first stage with H < tau")
      ->check(any_number())
      ->capture_default_str();
  cmd->add_option("--entropy", args->entropy_rule, "entropy rule: top10 (released) or full (paper)")
      ->capture_default_str();
  cmd->add_option("--class-names", args->class_names,
                  "text file with one class name per line (default: the weights' config.json "
                  "label_names, else class indices)");
  cmd->add_option("--top-k", args->top_k, "classes listed per image")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--crop-pct", args->crop_pct,
                  "eval crop fraction (default: the run's config, else 0.9)")
      ->check(fraction());
  cmd->add_option("--mean", args->mean, "normalisation mean per channel (default: config/ImageNet)")
      ->delimiter(',')
      ->allow_extra_args(false)  // --mean 0.5 image.png: the image is an input, not a value
      ->check(any_number());
  cmd->add_option("--std", args->std, "normalisation std per channel (default: config/ImageNet)")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->check(positive());
  cmd->add_option("--batch-size", args->batch_size, "images per forward pass")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--format", args->format, "stdout format: md, csv or json")
      ->capture_default_str();
  add_output_flag(*cmd, args->output);
  add_device_flag(*cmd, args->device);
  add_threads_flag(*cmd, args->threads);
  cmd->callback([args] { run_predict(*args); });
}

}  // namespace thinkingvit::apps
