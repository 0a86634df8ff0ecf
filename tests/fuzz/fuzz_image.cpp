// Image files: header sniffing, the JPEG decoder (scaled, region) and the image folder's decode
// paths (full, reduced, crop-first) for JPEG, PNG, BMP and WebP. The first byte picks options.

#include <algorithm>

#include "fuzz_util.h"
#include "thinkingvit/data/dataset.h"
#include "thinkingvit/data/jpeg.h"
#include "thinkingvit/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace thinkingvit;
  const uint8_t options = size > 0 ? data[0] : 0;
  if (size > 0) {
    ++data;
    --size;
  }
  (void)data::peek_image_size(data, size);
  data::JpegDecodeOptions jpeg;
  jpeg.scale_denom = 1 << (options & 3);
  if (options & 4) jpeg.region = data::CropBox{(options >> 3) & 3, (options >> 5) & 3, 5, 7};
  std::string why;
  (void)data::decode_jpeg(data, size, jpeg, &why);
  // One image in one class folder.
  const auto path = fuzz::write_input("images/c/x.jpg", data, size);
  try {
    (void)data::decode_image_file(path, (options & 8) ? 4 : 0, &why);
    data::ImageFolder folder((fuzz::scratch() / "images").string());
    (void)folder.get(0);
    (void)folder.get_reduced(0, 3);
    (void)folder.get_part(0, [&](int height, int width) {
      const int h = std::max(1, height / 2), w = std::max(1, width / 3);
      return data::CropBox{(height - h) / 2, width - w, h, w};
    });
  } catch (const Error&) {
  }
  return 0;
}
