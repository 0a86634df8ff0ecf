#include "thinkingvit/models/entropy.h"

#include <ATen/ATen.h>

#include <limits>

#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

at::Tensor entropy(const at::Tensor& logits, EntropyRule rule) {
  TVIT_CHECK(logits.dim() == 2, "entropy: expected B x K logits, found shape ",
             shape_str(logits.sizes().vec()));
  // bf16 rounding moves samples across tau: always work in float32.
  const auto x = logits.to(at::kFloat);
  if (rule == EntropyRule::kFull) {
    auto log_p = at::log_softmax(x, /*dim=*/-1);  // B x K
    return -(log_p.exp() * log_p).sum(/*dim=*/-1);
  }
  // Released code: torch.distributions.Categorical over top-10 renormalised probabilities,
  // which clamps probabilities to [eps, 1 - eps] before the log.
  constexpr double kEps = std::numeric_limits<float>::epsilon();
  const int64_t top = std::min<int64_t>(10, x.size(1));
  auto p = std::get<0>(at::softmax(x, /*dim=*/-1).topk(top, /*dim=*/-1));  // B x 10
  p = p / p.sum(/*dim=*/-1, /*keepdim=*/true);
  return -(p * p.clamp(kEps, 1.0 - kEps).log()).sum(/*dim=*/-1);
}

EntropyRule parse_entropy_rule(const std::string& text, const std::string& what) {
  if (text == "top10") return EntropyRule::kTop10;
  if (text == "full") return EntropyRule::kFull;
  fail(what, ": expected 'top10' or 'full', found '", text, "'");
}

std::string to_string(EntropyRule rule) { return rule == EntropyRule::kTop10 ? "top10" : "full"; }

}  // namespace thinkingvit::models
