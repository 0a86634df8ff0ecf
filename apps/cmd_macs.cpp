// thinkingvit macs: exact per-stage MACs with a breakdown, and parameter counts.

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "common.h"
#include "thinkingvit/models/model_options.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::apps {

namespace {

struct MacsArgs {
  ModelChoice model;
  std::string reach;
  bool list = false;
};

std::string gmacs(double macs) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(4) << macs / 1e9;
  return out.str();
}

void run_macs(const MacsArgs& args) {
  if (args.list) {
    for (const auto& name : models::model_preset_names()) std::cout << name << "\n";
    return;
  }
  const auto o = resolve_model(args.model, nullptr);
  const int64_t n = o.num_stages();
  // --reach is checked before anything is printed.
  std::vector<double> reach;
  if (!args.reach.empty()) {
    std::stringstream in(args.reach);
    std::string item;
    while (std::getline(in, item, ',')) {
      const double v = util::parse_number(item).value_or(-1);
      TVIT_CHECK(v >= 0 && v <= 1 && (reach.empty() || v <= reach.back()),
                 "--reach: expected comma-separated shares in [0, 1], one per stage and none above "
                 "the one before (such as 1,0.36), found '",
                 args.reach, "'");
      reach.push_back(v);
    }
    TVIT_CHECK(static_cast<int64_t>(reach.size()) == n, "--reach: expected ", n,
               " shares (one per stage), found ", reach.size());
  }
  std::vector<models::MacBreakdown> stages;
  for (int64_t s = 0; s < n; ++s) stages.push_back(o.stage_macs(s));

  std::cout << "model: " << o.describe() << "\n\n| MACs per image |";
  for (int64_t s = 0; s < n; ++s)
    std::cout << " stage " << s << " (" << o.stage_heads(s) << " heads) |";
  std::cout << "\n|---|";
  for (int64_t s = 0; s < n; ++s) std::cout << "---:|";
  std::cout << "\n";
  auto row = [&](const std::string& label, auto value) {
    std::cout << "| " << label << " |";
    for (int64_t s = 0; s < n; ++s) std::cout << " " << value(s) << " |";
    std::cout << "\n";
  };
  using models::MacConvention;
  using models::MacCounted;
  // One row per term, in the order the model lists them; every stage lists the same terms.
  for (size_t t = 0; t < stages.front().terms.size(); ++t) {
    const auto& term = stages.front().terms[t];
    const char* note = term.counted == MacCounted::kFvcoreOnly ? " (fvcore only)"
                       : term.counted == MacCounted::kNeither  ? " (in no total)"
                                                               : "";
    row(term.name + note, [&](int64_t s) { return with_commas(stages[s].terms.at(t).macs); });
  }
  row("**total, released convention**",
      [&](int64_t s) { return with_commas(stages[s].total(MacConvention::kReleased)); });
  row("**total, fvcore convention**",
      [&](int64_t s) { return with_commas(stages[s].total(MacConvention::kFvcore)); });
  row("GMACs released / fvcore", [&](int64_t s) {
    return gmacs(stages[s].total(MacConvention::kReleased)) + " / " +
           gmacs(stages[s].total(MacConvention::kFvcore));
  });
  row("parameters used", [&](int64_t s) { return with_commas(o.stage_parameter_count(s)); });

  std::cout << "\nparameters: " << with_commas(o.parameter_count()) << "\n";
  std::vector<double> all(n, 1.0);
  std::cout << "every stage (tau = 0): "
            << gmacs(models::expected_macs(o, all, MacConvention::kReleased)) << " GMACs released, "
            << gmacs(models::expected_macs(o, all, MacConvention::kFvcore)) << " fvcore, "
            << gmacs(models::expected_macs(o, all, MacConvention::kReleased, true))
            << " released + uncounted terms\n";
  if (!reach.empty()) {
    std::cout << "reach " << args.reach << ": "
              << gmacs(models::expected_macs(o, reach, MacConvention::kReleased))
              << " GMACs released, "
              << gmacs(models::expected_macs(o, reach, MacConvention::kFvcore)) << " fvcore\n";
  }
}

}  // namespace

void add_macs_command(CLI::App& root) {
  auto args = std::make_shared<MacsArgs>();
  auto* cmd = root.add_subcommand("macs", "Per-stage MACs (two conventions) and parameter counts");
  args->model.add_flags(*cmd, /*with_head_dim=*/false);
  cmd->add_option("--reach", args->reach,
                  "shares of images reaching each stage, e.g. 1,0.36: prints the expected GMACs");
  cmd->add_flag("--list", args->list, "list the preset names");
  cmd->callback([args] { run_macs(*args); });
}

}  // namespace thinkingvit::apps
