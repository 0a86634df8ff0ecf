#pragma once
// The accuracy / compute trade-off of elastic inference, computed exactly for every threshold
// from one evaluation pass (StageRecords).

#include <string>
#include <vector>

#include "thinkingvit/eval/evaluate.h"
#include "thinkingvit/eval/table.h"
#include "thinkingvit/models/model_options.h"

namespace thinkingvit::eval {

struct SweepRow {
  double tau = 0;
  double top1 = 0, top5 = 0;       // percent
  double gmacs = 0;                // average per image, released convention
  std::vector<double> stop_share;  // share of images stopping at each stage
  std::vector<double> reach;       // share of images running each stage
  std::vector<double> stage_top1;  // accuracy among the images stopping at each stage
};

// A sample stops at the first stage with H < tau; the last stage takes everything left.
at::Tensor exit_stages(const StageRecords& records, double tau);
SweepRow sweep_at(const StageRecords& records, const models::ModelOptions& options, double tau,
                  models::MacConvention convention = models::MacConvention::kReleased);

// "0,0.5,1" or "start:stop:step" (inclusive of stop within rounding) -> thresholds; NaN and
// more than kMaxThresholds are errors.
constexpr int64_t kMaxThresholds = 10000;
std::vector<double> parse_thresholds(const std::string& text, const std::string& what);

// The released formula: 1 / sum_i (reach_i / T_i), T_i the standalone throughput of stage i.
double predicted_throughput(const std::vector<double>& reach,
                            const std::vector<double>& stage_throughput);

// The records of every other sample (parity 0: samples 0, 2, 4, ...; 1: samples 1, 3, ...):
// the two halves on which budget mode chooses a threshold and then reports it.
StageRecords half_of(const StageRecords& records, int parity);

// One bin of the first-stage entropy histogram (the paper's Figure 5): how many images whose
// entropy falls in [lo, hi) stage 0 classifies right and wrong.
struct EntropyBin {
  double lo = 0, hi = 0;
  int64_t right = 0, wrong = 0;
};
// `bins` equal bins over [0, H_max], H_max = ln(min(10, K)) for the top-10 rule, ln K for the
// full one; entropies at H_max fall into the last bin.
std::vector<EntropyBin> entropy_histogram(const StageRecords& records, models::EntropyRule rule,
                                          int64_t num_classes, int64_t bins = 46);

// A threshold's row with what was measured for it: batched early exit, timed.
struct MeasuredSweepRow {
  SweepRow sweep;
  double img_per_s = 0;              // median over the repetitions
  double img_per_s_spread = 0;       // fastest minus slowest repetition
  double img_per_s_formula = 0;      // the released formula from the standalone stage throughputs
  double measured_over_formula = 0;  // paired per timing round (eval::measured_over_formula)
  std::vector<double> timed_reach;   // share of the timed images that ran each stage
};

// Budget mode: the threshold with the best top-1 on `choose` among those within the budget
// (average GMACs <= max_gmacs when > 0, measured img/s >= min_throughput when > 0), reported on
// `report`, the other half. `rows` holds one measured row per threshold, in `taus` order.
// The sweep table as `sweep` writes it (sweep.md / .csv / .json), one row per threshold; the
// run's batch, device, precision and threads repeated on every row.
Table sweep_table(const std::vector<MeasuredSweepRow>& rows, int64_t batch,
                  const std::string& device, const std::string& precision, int threads);
Table entropy_histogram_table(const std::vector<EntropyBin>& bins);

struct BudgetChoice {
  bool found = false;
  double tau = 0;
  double chosen_top1 = 0;  // on `choose`
  SweepRow reported;       // on `report`
};
BudgetChoice choose_within_budget(const StageRecords& choose, const StageRecords& report,
                                  const models::ModelOptions& options,
                                  const std::vector<MeasuredSweepRow>& rows, double max_gmacs,
                                  double min_throughput);

}  // namespace thinkingvit::eval
