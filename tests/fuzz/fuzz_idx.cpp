// IDX image + label files (MNIST, Fashion-MNIST), raw or gzip: the input holds both, the first
// four bytes (little-endian) giving the image file's length.

#include <algorithm>
#include <cstring>

#include "fuzz_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinkingvit;
  uint32_t split = 0;
  if (size >= 4) std::memcpy(&split, data, 4);
  const size_t body = size >= 4 ? size - 4 : 0;
  const uint8_t* bytes = data + (size >= 4 ? 4 : size);
  const size_t first = std::min<size_t>(split, body);
  const auto images = fuzz::write_input("images-idx3-ubyte", bytes, first);
  const auto labels = fuzz::write_input("labels-idx1-ubyte", bytes + first, body - first);
  try {
    fuzz::read_dataset(*data::open_idx(images, labels, "fuzz"), 8);
  } catch (const Error&) {
  }
  return 0;
}
