// thinkingvit infer: weights + a safetensors batch in, per-stage logits and entropies out.
// The interop path with Python users and the parity check against the released code.

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "common.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/elastic_queue.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::apps {

namespace {

struct InferArgs {
  std::string weights, input, output, entropy_rule = "top10";
  std::optional<double> threshold;
  ModelChoice model;
  bool strict = false;
  int64_t batch_size = 256;
  int threads = 0;
  std::string device = "auto";
};

at::Tensor read_images(const std::string& path, const models::ModelOptions& o) {
  auto file = io::read_safetensors(path);
  auto it = file.tensors.find("images");
  TVIT_CHECK(it != file.tensors.end(), "input '", path,
             "': expected a tensor named 'images' (float32 B x C x H x W), found none");
  const auto& images = it->second;
  const std::vector<int64_t> want = {-1, o.in_channels(), o.image_size(), o.image_size()};
  TVIT_CHECK(images.scalar_type() == at::kFloat, "input '", path,
             "': tensor 'images' must be float32, found ", c10::toString(images.scalar_type()));
  TVIT_CHECK(images.dim() == 4 && images.size(1) == want[1] && images.size(2) == want[2] &&
                 images.size(3) == want[3],
             "input '", path, "': tensor 'images' has shape ", shape_str(images.sizes().vec()),
             ", the model expects [B, ", want[1], ", ", want[2], ", ", want[3], "]");
  TVIT_CHECK(images.size(0) > 0, "input '", path, "': tensor 'images' holds no images (shape ",
             shape_str(images.sizes().vec()), ")");
  return images;
}

// The answers on the CPU, so that the device holds only the queues.
models::ExitedImages to_cpu(const models::ExitedImages& e) {
  if (e.size() == 0) return e;
  return {e.ids.cpu(), e.logits.cpu(), e.exit_stage.cpu(), e.entropy.cpu()};
}

void run_infer(const InferArgs& args) {
  check_output_folder(args.output, "--output");
  std::error_code error;
  TVIT_CHECK(!std::filesystem::equivalent(args.input, args.output, error), "--output '",
             args.output, "': is the --input file; write the results elsewhere");
  set_threads(args.threads);
  const auto device = use_device(args.device, "--device");
  const auto rule = models::parse_entropy_rule(args.entropy_rule, "--entropy");
  const auto [options, model] = load_model(args.weights, args.model, args.strict, device);
  torch::NoGradGuard no_grad;

  const auto images = read_images(args.input, options);
  const int64_t batch = images.size(0), num_stages = options.num_stages();
  std::vector<std::vector<at::Tensor>> logits(num_stages), entropies(num_stages);
  // Early exit regrouped across the chunks: undecided images wait for a full next-stage batch.
  std::optional<models::ElasticQueues> queues;
  if (args.threshold) queues.emplace(*model, *args.threshold, args.batch_size, rule);
  std::vector<models::ExitedImages> exited;
  for (int64_t start = 0; start < batch; start += args.batch_size) {
    const int64_t end = std::min(batch, start + args.batch_size);
    auto chunk = images.slice(0, start, end).to(device);
    auto outputs = model->forward_all(chunk);
    for (int64_t s = 0; s < num_stages; ++s) {
      logits[s].push_back(outputs[s].logits.cpu());
      entropies[s].push_back(models::entropy(outputs[s].logits, rule).cpu());
    }
    if (!queues) continue;
    queues->push(chunk, torch::arange(start, end, torch::dtype(torch::kLong).device(device)));
    exited.push_back(to_cpu(queues->take_exited()));
  }
  if (queues) {
    queues->drain();
    exited.push_back(to_cpu(queues->take_exited()));
  }

  io::TensorMap out;
  for (int64_t s = 0; s < num_stages; ++s) {
    out["logits." + std::to_string(s)] = at::cat(logits[s]);
    out["entropy." + std::to_string(s)] = at::cat(entropies[s]);
  }
  std::map<std::string, std::string> metadata = {{"entropy_rule", args.entropy_rule},
                                                 {"model", options.describe()}};
  std::string stages;
  for (int64_t s = 0; s < num_stages; ++s) stages += (s ? ", " : "[") + options.stage_heads(s);
  metadata["stages"] = stages + "]";
  if (args.threshold) {
    // Back into input order: row i is image i.
    out["logits"] = torch::empty_like(out["logits.0"]);
    out["exit_stage"] = torch::empty({batch}, torch::kLong);
    for (const auto& e : exited) {
      if (e.size() == 0) continue;
      out["logits"].index_copy_(0, e.ids, e.logits.to(out["logits"].scalar_type()));
      out["exit_stage"].index_copy_(0, e.ids, e.exit_stage);
    }
    metadata["threshold"] = std::to_string(*args.threshold);
    auto counts = at::bincount(out["exit_stage"], {}, num_stages);
    spdlog::info("tau {}: samples stopping per stage {}", *args.threshold,
                 shape_str(std::vector<int64_t>(counts.data_ptr<int64_t>(),
                                                counts.data_ptr<int64_t>() + num_stages)));
  }
  io::write_safetensors(args.output, out, metadata);
  spdlog::info("wrote {} ({} images, {} stages)", args.output, batch, num_stages);
}

}  // namespace

void add_infer_command(CLI::App& root) {
  auto args = std::make_shared<InferArgs>();
  auto* cmd = root.add_subcommand(
      "infer", "Run every stage (and optionally elastic inference) on a safetensors batch");
  cmd->add_option("--weights", args->weights,
                  "weights: a safetensors file or a Hugging Face style folder")
      ->required();
  cmd->add_option("--input", args->input,
                  "safetensors file with 'images', float32 B x C x H x W, already normalised")
      ->required();
  cmd->add_option("--output", args->output,
                  "safetensors file to write: logits.{i}, entropy.{i} per stage; with "
                  "--threshold also exit_stage and logits")
      ->required();
  cmd->add_option("--threshold", args->threshold,
                  "entropy threshold tau: a sample stops at the first stage with H < tau")
      ->check(any_number());
  cmd->add_option("--entropy", args->entropy_rule, "entropy rule: top10 (released) or full (paper)")
      ->capture_default_str();
  args->model.add_flags(*cmd, /*with_head_dim=*/true);
  cmd->add_flag("--strict", args->strict, "fail unless every tensor loads exactly");
  cmd->add_option("--batch-size", args->batch_size, "images per forward pass")
      ->check(at_least(1))
      ->capture_default_str();
  add_device_flag(*cmd, args->device);
  add_threads_flag(*cmd, args->threads);
  cmd->callback([args] { run_infer(*args); });
}

}  // namespace thinkingvit::apps
