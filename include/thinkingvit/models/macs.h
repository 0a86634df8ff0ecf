#pragma once
// Exact multiply-accumulate counts of each stage, in the two conventions people quote.

#include <cstdint>
#include <string>
#include <vector>

namespace thinkingvit::models {

enum class MacConvention {
  kReleased,  // ThinkingViT's tables: convolution and matmuls only (1.25 / 4.60 / 17.56 G)
  kFvcore,    // timm's tables (fvcore): also LayerNorm at 5 MACs per element (1.26 / 4.61 / 17.58)
};

// Which totals count a term of a breakdown.
enum class MacCounted { kBoth, kFvcoreOnly, kNeither };

struct MacTerm {
  std::string name;  // "qkv", "MLP", ...
  int64_t macs = 0;
  MacCounted counted = MacCounted::kBoth;
};

// The MACs of one image through one stage, term by term, for any model family.
struct MacBreakdown {
  std::vector<MacTerm> terms;
  int64_t total(MacConvention convention) const;
  int64_t uncounted() const;  // the terms in no total (recycling projections)
};

MacConvention parse_mac_convention(const std::string& text, const std::string& what);
std::string to_string(MacConvention convention);

}  // namespace thinkingvit::models
