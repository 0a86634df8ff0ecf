#include "thinkingvit/models/macs.h"

#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

int64_t StageMacs::total(MacConvention convention) const {
  const int64_t matmuls = patch_embed + qkv + attention + proj + mlp + head;
  return convention == MacConvention::kFvcore ? matmuls + layer_norm : matmuls;
}

StageMacs stage_macs(const ThinkingViTOptions& o, int64_t stage) {
  TVIT_CHECK(stage >= 0 && stage < o.num_stages(), "stage ", stage, " out of range: the model has ",
             o.num_stages(), " stage(s)");
  const int64_t k = o.stage_width(stage), hidden = o.hidden_width(k);
  const int64_t n = o.num_tokens(), depth = o.depth();
  StageMacs m;
  m.patch_embed = o.num_patches() * k * o.in_channels() * o.patch_size() * o.patch_size();
  m.qkv = depth * n * k * 3 * k;
  m.attention = depth * 2 * n * n * k;
  m.proj = depth * n * k * k;
  m.mlp = depth * 2 * n * k * hidden;
  m.head = k * o.num_classes();
  m.layer_norm = 5 * (2 * depth + 1) * n * k;
  if (stage > 0) m.recycle = n * o.stage_width(stage - 1) * k;
  return m;
}

double expected_macs(const ThinkingViTOptions& o, const std::vector<double>& reach,
                     MacConvention convention, bool with_recycle) {
  TVIT_CHECK(static_cast<int64_t>(reach.size()) == o.num_stages(), "expected one share per stage (",
             o.num_stages(), "), found ", reach.size());
  double total = 0.0;
  for (int64_t s = 0; s < o.num_stages(); ++s) {
    const auto m = stage_macs(o, s);
    const double cost = static_cast<double>(m.total(convention) + (with_recycle ? m.recycle : 0));
    total += reach[s] * cost;
  }
  return total;
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
