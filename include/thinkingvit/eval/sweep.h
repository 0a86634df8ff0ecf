#pragma once
// The accuracy / compute trade-off of elastic inference, computed exactly for every threshold
// from one evaluation pass (StageRecords).

#include <string>
#include <vector>

#include "thinkingvit/eval/evaluate.h"
#include "thinkingvit/models/macs.h"

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
SweepRow sweep_at(const StageRecords& records, const models::ThinkingViTOptions& options,
                  double tau, models::MacConvention convention = models::MacConvention::kReleased);

// "0,0.5,1" or "start:stop:step" (inclusive of stop within rounding) -> thresholds.
std::vector<double> parse_thresholds(const std::string& text, const std::string& what);

// The released formula: 1 / sum_i (reach_i / T_i), T_i the standalone throughput of stage i.
double predicted_throughput(const std::vector<double>& reach,
                            const std::vector<double>& stage_throughput);

}  // namespace thinkingvit::eval
