#include "thinkingvit/util/precision.h"

#include "thinkingvit/util/error.h"

namespace thinkingvit::util {

Precision parse_precision(const std::string& text, const std::string& what) {
  if (text == "fp32") return Precision::kFp32;
  if (text == "bf16") return Precision::kBf16;
  fail(what, ": expected fp32 or bf16, found '", text, "'");
}

std::string to_string(Precision precision) {
  return precision == Precision::kFp32 ? "fp32" : "bf16";
}

}  // namespace thinkingvit::util
