#include "thinkingvit/eval/sweep.h"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>

#include "thinkingvit/util/error.h"

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

SweepRow sweep_at(const StageRecords& r, const models::ThinkingViTOptions& options, double tau,
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
    try {
      size_t used = 0;
      const double v = std::stod(s, &used);
      if (used == s.size()) return v;
    } catch (const std::exception&) {
    }
    fail(what, ": expected numbers such as 0,0.5,1 or a range start:stop:step, found '", text, "'");
  };
  std::vector<double> out;
  if (text.find(':') != std::string::npos) {
    std::vector<double> parts;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ':')) parts.push_back(number(item));
    TVIT_CHECK(parts.size() == 3 && parts[2] > 0 && parts[1] >= parts[0], what,
               ": expected start:stop:step with step > 0 and stop >= start, found '", text, "'");
    const auto steps = static_cast<int64_t>(std::floor((parts[1] - parts[0]) / parts[2] + 1e-9));
    for (int64_t i = 0; i <= steps; ++i)
      out.push_back(parts[0] + static_cast<double>(i) * parts[2]);
    return out;
  }
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(number(item));
  TVIT_CHECK(!out.empty(), what, ": no thresholds in '", text, "'");
  return out;
}

double predicted_throughput(const std::vector<double>& reach, const std::vector<double>& t) {
  TVIT_CHECK(reach.size() == t.size(), "predicted throughput: ", reach.size(), " shares for ",
             t.size(), " stage throughputs");
  double seconds = 0.0;
  for (size_t i = 0; i < reach.size(); ++i) seconds += reach[i] / t[i];
  return seconds > 0 ? 1.0 / seconds : 0.0;
}

}  // namespace thinkingvit::eval
