#pragma once
// Certainty of a prediction, the exit criterion of elastic inference.

#include <ATen/core/Tensor.h>

#include <string>

namespace thinkingvit::models {

enum class EntropyRule {
  // As released: entropy of the top-10 softmax probabilities renormalised to sum to one, with
  // p clamped to [eps, 1 - eps] (eps = float32 epsilon) inside the log. In (0, ln 10].
  kTop10,
  // The paper's formula: -sum_c p_c ln p_c over all classes.
  kFull,
};

// B x K logits -> B entropies, always computed in float32.
at::Tensor entropy(const at::Tensor& logits, EntropyRule rule = EntropyRule::kTop10);

// "top10" / "full"; throws naming `what` otherwise.
EntropyRule parse_entropy_rule(const std::string& text, const std::string& what = "entropy rule");
std::string to_string(EntropyRule rule);

}  // namespace thinkingvit::models
