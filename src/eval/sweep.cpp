#include "thinkingvit/eval/sweep.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::eval {

at::Tensor exit_stages(const StageRecords& r, double tau) {
  const int64_t num_stages = r.entropy.size(0);
  auto exit = at::full({r.num_samples}, num_stages - 1, at::kLong);
  auto undecided = at::ones({r.num_samples}, at::kBool);
  for (int64_t s = 0; s + 1 < num_stages; ++s) {
    auto stop = undecided & r.entropy[s].lt(tau);  // strict, as released
    exit.masked_fill_(stop, s);
    undecided &= stop.logical_not();
  }
  return exit;
}

SweepRow sweep_at(const StageRecords& r, const models::ModelOptions& options, double tau,
                  models::MacConvention convention) {
  const int64_t num_stages = r.entropy.size(0);
  TVIT_CHECK(num_stages == options.num_stages(), "sweep: records have ", num_stages,
             " stages, the model ", options.num_stages());
  const double n = static_cast<double>(std::max<int64_t>(1, r.num_samples));
  SweepRow row;
  row.tau = tau;
  const auto exit = exit_stages(r, tau).view({1, -1});    // 1 x N
  const auto c1 = r.correct1.gather(0, exit).squeeze(0);  // N
  const auto c5 = r.correct5.gather(0, exit).squeeze(0);
  row.top1 = 100.0 * c1.sum().item<double>() / n;
  row.top5 = 100.0 * c5.sum().item<double>() / n;
  double reach = 1.0;
  for (int64_t s = 0; s < num_stages; ++s) {
    const auto here = exit.squeeze(0).eq(s);
    const double stopped = here.sum().item<double>();
    row.reach.push_back(reach);
    row.stop_share.push_back(stopped / n);
    row.stage_top1.push_back(stopped > 0 ? 100.0 * (c1 & here).sum().item<double>() / stopped
                                         : NAN);
    reach -= stopped / n;
  }
  row.gmacs = models::expected_macs(options, row.reach, convention) / 1e9;
  return row;
}

std::vector<double> parse_thresholds(const std::string& text, const std::string& what) {
  auto number = [&](const std::string& s) {
    const auto v = util::parse_number(s);
    if (!v) {
      fail(what, ": expected numbers such as 0,0.5,1 or a range start:stop:step, found '", text,
           "'");
    }
    return *v;
  };
  std::vector<double> out;
  if (text.find(':') != std::string::npos) {
    std::vector<double> parts;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ':')) parts.push_back(number(item));
    TVIT_CHECK(parts.size() == 3 && parts[2] > 0 && parts[1] >= parts[0], what,
               ": expected start:stop:step with step > 0 and stop >= start, found '", text, "'");
    const double steps_real = std::floor((parts[1] - parts[0]) / parts[2] + 1e-9);
    TVIT_CHECK(steps_real < kMaxThresholds, what, ": '", text, "' gives ", steps_real + 1,
               " thresholds, more than the ", kMaxThresholds, " a sweep takes");
    const auto steps = static_cast<int64_t>(steps_real);
    for (int64_t i = 0; i <= steps; ++i)
      out.push_back(parts[0] + static_cast<double>(i) * parts[2]);
    return out;
  }
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(number(item));
  TVIT_CHECK(!out.empty(), what, ": no thresholds in '", text, "'");
  TVIT_CHECK(static_cast<int64_t>(out.size()) <= kMaxThresholds, what, ": ", out.size(),
             " thresholds, more than the ", kMaxThresholds, " a sweep takes");
  return out;
}

double predicted_throughput(const std::vector<double>& reach, const std::vector<double>& t) {
  TVIT_CHECK(reach.size() == t.size(), "predicted throughput: ", reach.size(), " shares for ",
             t.size(), " stage throughputs");
  double seconds = 0.0;
  for (size_t i = 0; i < reach.size(); ++i) seconds += reach[i] / t[i];
  return seconds > 0 ? 1.0 / seconds : 0.0;
}

StageRecords half_of(const StageRecords& r, int parity) {
  TVIT_CHECK(parity == 0 || parity == 1, "half_of: parity must be 0 or 1, found ", parity);
  auto idx = at::arange(parity, r.num_samples, 2, at::kLong);
  StageRecords h;
  h.num_samples = idx.size(0);
  h.correct1 = r.correct1.index_select(1, idx);
  h.correct5 = r.correct5.index_select(1, idx);
  h.entropy = r.entropy.index_select(1, idx);
  h.labels = r.labels.index_select(0, idx);
  set_accuracy(h);
  return h;
}

std::vector<EntropyBin> entropy_histogram(const StageRecords& r, models::EntropyRule rule,
                                          int64_t num_classes, int64_t bins) {
  TVIT_CHECK(bins >= 1, "entropy histogram: bins must be >= 1, found ", bins);
  const double h_max = std::log(static_cast<double>(
      rule == models::EntropyRule::kTop10 ? std::min<int64_t>(10, num_classes) : num_classes));
  const double width = h_max / static_cast<double>(bins);
  auto bin = (r.entropy[0] / width).floor().clamp(0, bins - 1).to(at::kLong);
  const auto right = at::bincount(bin.masked_select(r.correct1[0]), {}, bins);
  const auto wrong = at::bincount(bin.masked_select(r.correct1[0].logical_not()), {}, bins);
  std::vector<EntropyBin> out;
  for (int64_t b = 0; b < bins; ++b) {
    out.push_back({static_cast<double>(b) * width, static_cast<double>(b + 1) * width,
                   right[b].item<int64_t>(), wrong[b].item<int64_t>()});
  }
  return out;
}

Table sweep_table(const std::vector<MeasuredSweepRow>& rows, int64_t batch,
                  const std::string& device, const std::string& precision, int threads) {
  Table table({"tau", "top1", "top5", "gmacs", "stop_share", "stage_top1", "img_per_s",
               "img_per_s_spread", "img_per_s_formula", "measured_over_formula", "timed_reach",
               "batch", "device", "precision", "threads"});
  for (const auto& r : rows) {
    table.add_row({r.sweep.tau, r.sweep.top1, r.sweep.top5, r.sweep.gmacs,
                   util::join_fixed(r.sweep.stop_share, 3), util::join_fixed(r.sweep.stage_top1, 3),
                   r.img_per_s, r.img_per_s_spread, r.img_per_s_formula,
                   r.img_per_s_formula > 0 ? Table::Cell(r.measured_over_formula)
                                           : Table::Cell(std::string("-")),
                   util::join_fixed(r.timed_reach, 3), batch, device, precision,
                   static_cast<int64_t>(threads)});
  }
  table.set_precision(4);
  return table;
}

Table entropy_histogram_table(const std::vector<EntropyBin>& bins) {
  Table table({"entropy_lo", "entropy_hi", "right", "wrong"});
  for (const auto& b : bins) table.add_row({b.lo, b.hi, b.right, b.wrong});
  return table;
}

BudgetChoice choose_within_budget(const StageRecords& choose, const StageRecords& report,
                                  const models::ModelOptions& options,
                                  const std::vector<MeasuredSweepRow>& rows, double max_gmacs,
                                  double min_throughput) {
  BudgetChoice best;
  for (const auto& row : rows) {
    const auto on_choose = sweep_at(choose, options, row.sweep.tau);
    const bool fits = (max_gmacs <= 0 || on_choose.gmacs <= max_gmacs) &&
                      (min_throughput <= 0 || row.img_per_s >= min_throughput);
    if (fits && (!best.found || on_choose.top1 > best.chosen_top1)) {
      best.found = true;
      best.tau = row.sweep.tau;
      best.chosen_top1 = on_choose.top1;
    }
  }
  if (best.found) best.reported = sweep_at(report, options, best.tau);
  return best;
}

}  // namespace thinkingvit::eval
