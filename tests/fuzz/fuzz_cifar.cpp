// CIFAR-10 / CIFAR-100 binary batch files.

#include "fuzz_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinkingvit;
  const auto path = fuzz::write_input("data_batch_1.bin", data, size);
  for (const int classes : {10, 100}) {
    try {
      fuzz::read_dataset(*data::open_cifar({path}, classes), 4);
    } catch (const Error&) {
    }
  }
  return 0;
}
