// The class-list file of an image folder (one folder name per line).

#include <filesystem>

#include "fuzz_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinkingvit;
  static const auto root = [] {
    const auto dir = fuzz::scratch() / "root";
    for (const char* c : {"cat", "dog", "n01440764", "a b"}) {
      std::filesystem::create_directories(dir / c);
      const uint8_t byte = 0;
      fuzz::write_bytes(dir / c / "x.png", &byte, 1);
    }
    return dir.string();
  }();
  const auto list = fuzz::write_input("classes.txt", data, size);
  try {
    data::ImageFolder folder(root, list);
    (void)folder.class_names();
    (void)folder.labels();
  } catch (const Error&) {
  }
  return 0;
}
