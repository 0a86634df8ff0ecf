// safetensors: the bounds-checked parser behind every weights file.

#include <ATen/ATen.h>

#include "fuzz_util.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  thinkingvit::fuzz::scratch();
  try {
    const auto file =
        thinkingvit::io::parse_safetensors(reinterpret_cast<const char*>(data), size, "fuzz");
    // Touch every element: the offsets must have covered real bytes.
    for (const auto& [name, t] : file.tensors) {
      if (t.numel() > 0 && at::isFloatingType(t.scalar_type())) (void)t.sum().item<double>();
    }
  } catch (const thinkingvit::Error&) {
  }
  return 0;
}
