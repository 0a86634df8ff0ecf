#include "thinkingvit/models/macs.h"

#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

int64_t MacBreakdown::total(MacConvention convention) const {
  int64_t sum = 0;
  for (const auto& t : terms) {
    if (t.counted == MacCounted::kBoth ||
        (t.counted == MacCounted::kFvcoreOnly && convention == MacConvention::kFvcore)) {
      sum += t.macs;
    }
  }
  return sum;
}

int64_t MacBreakdown::uncounted() const {
  int64_t sum = 0;
  for (const auto& t : terms) {
    if (t.counted == MacCounted::kNeither) sum += t.macs;
  }
  return sum;
}

MacConvention parse_mac_convention(const std::string& text, const std::string& what) {
  if (text == "released") return MacConvention::kReleased;
  if (text == "fvcore") return MacConvention::kFvcore;
  fail(what, ": expected 'released' or 'fvcore', found '", text, "'");
}

std::string to_string(MacConvention convention) {
  return convention == MacConvention::kReleased ? "released" : "fvcore";
}

}  // namespace thinkingvit::models
