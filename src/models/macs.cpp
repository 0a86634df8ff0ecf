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

MacBreakdown breakdown(const StageMacs& m) {
  return {{{"patch embed", m.patch_embed, MacCounted::kBoth},
           {"qkv", m.qkv, MacCounted::kBoth},
           {"attention matmuls (q·kᵀ, attn·v)", m.attention, MacCounted::kBoth},
           {"attention proj", m.proj, MacCounted::kBoth},
           {"MLP", m.mlp, MacCounted::kBoth},
           {"head", m.head, MacCounted::kBoth},
           {"LayerNorm", m.layer_norm, MacCounted::kFvcoreOnly},
           {"recycling projection", m.recycle, MacCounted::kNeither}}};
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
