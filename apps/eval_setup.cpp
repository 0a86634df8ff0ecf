#include "eval_setup.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <sstream>

#include "common.h"
#include "thinkingvit/data/sampler.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/train/trainer.h"
#include "thinkingvit/util/compat.h"
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
  setup.loader = std::make_unique<data::DataLoader>(
      setup.val,
      data::make_eval_transform(e, static_cast<int>(setup.config.model.options.in_channels())), lo);
  std::ostringstream pre;
  pre << "resize shorter side to floor(" << e.size << " / " << e.crop_pct << "), centre crop "
      << e.size << ", normalise";
  setup.preprocessing = pre.str();
  spdlog::info("val: {}; {}", setup.val->describe(), setup.preprocessing);
  return setup;
}

}  // namespace thinkingvit::apps
