// Built instead of jpeg.cpp when CMake finds no libjpeg: image folders then decode JPEGs with
// OpenCV alone.
#include "thinkingvit/data/jpeg.h"

namespace thinkingvit::data {

bool jpeg_decoder_available() { return false; }

std::optional<DecodedJpeg> decode_jpeg(const uint8_t*, size_t, const JpegDecodeOptions&,
                                       std::string* why) {
  if (why != nullptr) *why = "built without libjpeg";
  return std::nullopt;
}

}  // namespace thinkingvit::data
