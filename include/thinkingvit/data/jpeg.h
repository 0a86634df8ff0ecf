#pragma once
// JPEG decoding straight through libjpeg(-turbo): RGB out of the decoder (no BGR copy), DCT
// scaling (1/2, 1/4, 1/8) and, for a crop chosen before decoding, only the rows and columns
// that hold it. Pixels are those of PIL's Image.open(...).convert("RGB") (the same library,
// accurate integer IDCT, fancy upsampling).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "thinkingvit/data/image.h"
#include "thinkingvit/data/transforms.h"

namespace thinkingvit::data {

// False when the project was built without libjpeg (decode_jpeg then always fails).
bool jpeg_decoder_available();

struct JpegDecodeOptions {
  int scale_denom = 1;  // 1, 2, 4 or 8: decode at 1/scale_denom of the size
  // Decode at least this region (in pixels of the scaled image); nullopt: the whole image.
  std::optional<CropBox> region;
};

struct DecodedJpeg {
  Image image;                          // RGB
  int top = 0, left = 0;                // where `image` sits in the scaled image
  int full_height = 0, full_width = 0;  // the scaled image's size
};

// nullopt (with the reason in *why) for data libjpeg rejects, including CMYK/YCCK JPEGs, which
// it cannot convert to RGB.
std::optional<DecodedJpeg> decode_jpeg(const uint8_t* data, size_t size,
                                       const JpegDecodeOptions& options, std::string* why);

}  // namespace thinkingvit::data
