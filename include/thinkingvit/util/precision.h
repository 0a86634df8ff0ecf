#pragma once
// The arithmetic a run, an evaluation or a benchmark row computes in: float32, or bfloat16
// autocast (CPU and CUDA). Parsed once, where it is read.

#include <string>

namespace thinkingvit::util {

enum class Precision { kFp32, kBf16 };

// "fp32" | "bf16"; anything else is an Error naming `what` (a flag or key).
Precision parse_precision(const std::string& text, const std::string& what);
std::string to_string(Precision precision);
inline bool is_bf16(Precision precision) { return precision == Precision::kBf16; }

}  // namespace thinkingvit::util
