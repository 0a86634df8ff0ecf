#include "eval_setup.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "common.h"
#include "thinkingvit/data/sampler.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/train/trainer.h"
#include "thinkingvit/util/cpu.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::apps {

namespace fs = std::filesystem;

void EvalSource::add_flags(CLI::App& app) {
  app.add_option("--run", run,
                 "run folder of `thinkingvit train` (uses its config.yaml and best/)");
  app.add_option("--config", config, "YAML configuration (data and model sections)");
  app.add_option("--weights", weights, "weights file or folder (default with --run: RUN/best)");
  app.add_option("--set", overrides, "override a configuration key, e.g. --set data.num_workers=4");
  app.add_flag("--ema", ema, "use the EMA weights (ema.safetensors beside the model)");
  add_threads_flag(app, threads, "the config's run.threads, where 0 is one per core");
  app.add_option("--device", device,
                 "auto (a GPU when one is visible), cpu, cuda or cuda:N (default: run.device)");
  app.add_flag("--cuda-graphs", cuda_graphs,
               "replay CUDA graphs of the stage forwards, captured per batch size on first use "
               "(GPU only)");
}

EvalSetup make_eval_setup(const EvalSource& s) {
  TVIT_CHECK(!s.run.empty() || !s.config.empty(), "pass --run RUN_FOLDER or --config FILE");
  EvalSetup setup;
  const std::string config_path =
      s.config.empty() ? (fs::path(s.run) / "config.yaml").string() : s.config;
  setup.config = train::load_config(config_path, s.overrides);
  set_threads(s.threads > 0 ? s.threads : setup.config.run.threads);
  std::string weights = s.weights;
  if (weights.empty()) {
    TVIT_CHECK(!s.run.empty(),
               "pass --weights PATH (or --run RUN_FOLDER to use its best/ weights)");
    weights = (fs::path(s.run) / "best").string();
  }
  if (s.ema) weights = ema_weights_path(weights);
  setup.weights_path = weights;
  const auto source = io::read_weights(weights);
  setup.device = s.device.empty() ? use_device(setup.config.run.device, "run.device")
                                  : use_device(s.device, "--device");
  const auto env = train::dist_env();
  if (env.world_size > 1 && setup.device.is_cuda() && !setup.device.has_index()) {
    setup.device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(train::gpu_for_local_rank(
                                               env.local_rank, compat::cuda_device_count())));
  }
  compat::set_current_device(setup.device);
  const auto& dc = setup.config.distributed;
  setup.dist = std::make_unique<train::Distributed>(
      env, dc.backend == "auto" ? (setup.device.is_cuda() ? "nccl" : "gloo") : dc.backend,
      std::chrono::milliseconds(static_cast<int64_t>(dc.timeout_s * 1000)), dc.bucket_mb,
      setup.device);
  if (!setup.dist->is_main()) spdlog::default_logger()->set_level(spdlog::level::warn);
  if (s.threads <= 0 && setup.config.run.threads <= 0 && setup.dist->enabled()) {
    set_threads(train::threads_per_process(env, util::usable_cores(),
                                           [](const char* name) { return std::getenv(name); }));
  }
  models::check_fits_in_memory(setup.config.model.options, 1, "model",
                               setup.config.data.eval_batch_size, /*training=*/false, setup.device);
  setup.model = models::make_model(setup.config.model.options);
  const auto report = io::load_state_dict(*setup.model, source.tensors, source.path);
  spdlog::info("weights '{}': {}", source.path, report.summary());
  compat::set_tf32(setup.config.precision.tf32);
  setup.model->to(setup.device);
  setup.model->eval();
  if (s.cuda_graphs) {
    TVIT_CHECK(setup.device.is_cuda(), "--cuda-graphs: needs a CUDA device, found '",
               setup.device.str(), "'");
    setup.model->set_cuda_graph_sizes(
        models::default_cuda_graph_sizes(setup.config.data.eval_batch_size));
  }

  setup.val = train::open_val_dataset(setup.config);
  const auto& e = setup.config.augment.eval;
  data::LoaderOptions lo;
  lo.batch_size = setup.config.data.eval_batch_size;
  lo.num_workers = setup.config.data.num_workers;
  lo.skip_corrupt = setup.config.data.skip_corrupt;
  lo.reduced_decode = setup.config.data.fast_decode;
  lo.pin_memory = setup.device.is_cuda();  // with non-blocking copies in evaluate()
  lo.uint8_batches = data::uint8_batches(setup.config.data, setup.device.is_cuda());
  setup.loader = std::make_unique<data::DataLoader>(
      setup.val,
      data::make_eval_transform(e, static_cast<int>(setup.config.model.options.in_channels())), lo);
  std::ostringstream pre;
  pre << "resize shorter side to floor(" << e.size << " / " << e.crop_pct << "), centre crop "
      << e.size << ", normalise";
  setup.preprocessing = pre.str();
  for (int64_t i = env.rank; i < setup.val->size(); i += env.world_size) setup.indices.push_back(i);
  spdlog::info("val: {}; {}", setup.val->describe(), setup.preprocessing);
  if (setup.dist->enabled()) {
    spdlog::info("val: {} processes, each evaluating every {}th image ({} here)", env.world_size,
                 env.world_size, setup.indices.size());
  }
  return setup;
}

eval::StageRecords EvalSetup::evaluate(models::EntropyRule rule, bool bf16,
                                       const std::function<void(int64_t, int64_t)>& progress,
                                       const std::function<void(const at::Tensor&)>& on_batch) {
  loader->start_epoch(0, indices);
  auto local = eval::evaluate(*model, *loader, rule, device, bf16, progress, on_batch);
  if (!dist->enabled()) return local;
  // Rows: correct1 (S), correct5 (S), entropy (S), label; column r + W j is this rank's j-th
  // image. float64 holds each float32 entropy, flag and label exactly.
  const int64_t stages = local.correct1.size(0), n = val->size(), w = dist->world_size();
  auto all = at::zeros({3 * stages + 1, n}, at::kDouble);
  const auto columns = at::arange(dist->rank(), n, w, at::kLong);
  TVIT_CHECK(columns.size(0) == local.num_samples, "evaluation: rank ", dist->rank(), " evaluated ",
             local.num_samples, " images, expected ", columns.size(0));
  all.index_copy_(
      1, columns,
      at::cat({local.correct1.to(at::kDouble), local.correct5.to(at::kDouble),
               local.entropy.to(at::kDouble), local.labels.to(at::kDouble).view({1, -1})}));
  dist->sum_on_device(all);
  eval::StageRecords records;
  records.num_samples = n;
  records.correct1 = all.slice(0, 0, stages).ne(0);
  records.correct5 = all.slice(0, stages, 2 * stages).ne(0);
  records.entropy = all.slice(0, 2 * stages, 3 * stages).to(at::kFloat).contiguous();
  records.labels = all[3 * stages].to(at::kLong);
  eval::set_accuracy(records);
  return records;
}

}  // namespace thinkingvit::apps
