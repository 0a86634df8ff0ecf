// The training configuration (YAML): parsed over the defaults and validated; an accepted config
// written back with to_yaml must load again to the same text.

#include <cstdlib>
#include <iostream>
#include <string>

#include "fuzz_util.h"
#include "thinkingvit/train/config.h"
#include "thinkingvit/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinkingvit;
  fuzz::scratch();
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string yaml;
  try {
    yaml = train::to_yaml(train::config_from_yaml_text(text, "fuzz.yaml"));
  } catch (const Error&) {
    return 0;
  }
  std::string again;
  try {
    again = train::to_yaml(train::config_from_yaml_text(yaml, "to_yaml"));
  } catch (const Error& e) {
    std::cerr << "to_yaml wrote a config that does not load: " << e.what() << "\n" << yaml;
    std::abort();
  }
  if (again != yaml) {
    std::cerr << "to_yaml does not round-trip:\n" << yaml << "\n---\n" << again;
    std::abort();
  }
  return 0;
}
