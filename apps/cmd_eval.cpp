// thinkingvit eval: top-1 / top-5 of every stage alone on the whole validation set (sharded over
// the processes of a torchrun / srun launch).

#include <spdlog/spdlog.h>

#include <iostream>

#include "common.h"
#include "eval_setup.h"
#include "thinkingvit/eval/evaluate.h"
#include "thinkingvit/eval/table.h"
#include "thinkingvit/util/progress.h"

namespace thinkingvit::apps {

namespace {

struct EvalArgs {
  EvalSource source;
  std::string format = "md", output;
};

void run_eval(const EvalArgs& args) {
  check_output(args.output);
  const auto format = eval::parse_table_format(args.format, "--format");
  auto setup = make_eval_setup(args.source);
  util::Progress progress("eval", setup.loader_batches(), "batch");
  const auto records =
      setup.evaluate(models::EntropyRule::kTop10, util::is_bf16(setup.config.precision.eval_dtype),
                     [&](int64_t done, int64_t) { progress.update(done); });
  progress.finish();
  if (!setup.is_main()) return;  // rank 0 prints and writes what every rank holds
  eval::Table table({"stage", "heads", "top1", "top5", "images", "weights"});
  for (size_t s = 0; s < records.top1.size(); ++s) {
    table.add_row({static_cast<int64_t>(s),
                   heads_cell(setup.config.model.options, static_cast<int64_t>(s)), records.top1[s],
                   records.top5[s], records.num_samples, setup.weights_path});
  }
  table.set_precision(2);
  spdlog::info("preprocessing: {}", setup.preprocessing);  // stdout holds the table alone
  table.write(std::cout, format);
  if (!args.output.empty()) save_table(table, args.output);
}

}  // namespace

void add_eval_command(CLI::App& root) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd =
      root.add_subcommand("eval", "Top-1 / top-5 of every stage alone on the validation set");
  args->source.add_flags(*cmd);
  cmd->add_option("--format", args->format, "stdout format: md, csv or json")
      ->capture_default_str();
  add_output_flag(*cmd, args->output);
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace thinkingvit::apps
