// CIFAR-10 / CIFAR-100 binary batch files.

#include <algorithm>

#include "fuzz_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinkingvit;
  const auto path = fuzz::write_input("data_batch_1.bin", data, size);
  for (const int classes : {10, 100}) {
    try {
      const auto set = data::open_cifar({path}, classes);
      (void)set->labels();
      (void)set->class_names();
      for (int64_t i = 0; i < std::min<int64_t>(set->size(), 4); ++i) (void)set->get(i);
      if (set->size() > 0) (void)set->get(set->size() - 1);
    } catch (const Error&) {
    }
  }
  return 0;
}
