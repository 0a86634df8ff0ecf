#include "thinkingvit/data/jpeg.h"

// clang-format off
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
// clang-format on

#include <algorithm>
#include <csetjmp>
#include <memory>

namespace thinkingvit::data {

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_message(j_common_ptr, int) {}  // corrupt-data warnings: decode on, as PIL does

// Everything the decoder touches lives on the heap behind one pointer that does not change
// after setjmp, so a longjmp back leaves nothing indeterminate.
struct State {
  jpeg_decompress_struct cinfo = {};
  ErrorManager err;
  DecodedJpeg out;
};

// jpeg_crop_scanline / jpeg_skip_scanlines: libjpeg-turbo 1.5 and later. Elsewhere a region
// request decodes the whole image (still correct: the region lies inside it).
#if defined(LIBJPEG_TURBO_VERSION_NUMBER) && LIBJPEG_TURBO_VERSION_NUMBER >= 1005000
#define TVIT_JPEG_CAN_CROP 1
#else
#define TVIT_JPEG_CAN_CROP 0
#endif

}  // namespace

bool jpeg_decoder_available() { return true; }

std::optional<DecodedJpeg> decode_jpeg(const uint8_t* data, size_t size,
                                       const JpegDecodeOptions& options, std::string* why) {
  const auto state = std::make_unique<State>();
  jpeg_decompress_struct& cinfo = state->cinfo;
  cinfo.err = jpeg_std_error(&state->err.pub);
  state->err.pub.error_exit = on_error;
  state->err.pub.emit_message = on_message;
  if (setjmp(state->err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    if (why != nullptr) *why = std::string("libjpeg: ") + state->err.message;
    return std::nullopt;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, const_cast<unsigned char*>(data), static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const int64_t pixels = int64_t{cinfo.image_width} * int64_t{cinfo.image_height};
  if (pixels > kMaxImagePixels) {  // a bomb (or a damaged header): refused before allocating
    jpeg_destroy_decompress(&cinfo);
    if (why != nullptr) {
      *why = "image too large: its header says " + std::to_string(cinfo.image_width) + " x " +
             std::to_string(cinfo.image_height) + " pixels, more than " +
             std::to_string(kMaxImagePixels);
    }
    return std::nullopt;
  }
  cinfo.out_color_space = JCS_RGB;  // gray is replicated; CMYK / YCCK fail in start_decompress
  cinfo.scale_num = 1;
  cinfo.scale_denom = static_cast<unsigned int>(std::max(1, options.scale_denom));
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);

  DecodedJpeg& out = state->out;
  out.full_height = static_cast<int>(cinfo.output_height);
  out.full_width = static_cast<int>(cinfo.output_width);
  int first_row = 0, rows = out.full_height;
#if TVIT_JPEG_CAN_CROP
  if (options.region) {
    // Clamp to the image; crop_scanline widens the columns to iMCU boundaries.
    const CropBox& r = *options.region;
    first_row = std::clamp(r.top, 0, out.full_height - 1);
    rows = std::clamp(r.height, 1, out.full_height - first_row);
    JDIMENSION x = static_cast<JDIMENSION>(std::clamp(r.left, 0, out.full_width - 1));
    JDIMENSION w =
        static_cast<JDIMENSION>(std::clamp(r.width, 1, out.full_width - static_cast<int>(x)));
    if (w < cinfo.output_width) jpeg_crop_scanline(&cinfo, &x, &w);
    if (first_row > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(first_row));
    out.left = static_cast<int>(x);
  }
#endif
  out.top = first_row;
  out.image = Image(rows, static_cast<int>(cinfo.output_width), 3);
  const size_t stride = static_cast<size_t>(cinfo.output_width) * 3;
  while (static_cast<int>(cinfo.output_scanline) < first_row + rows) {
    JSAMPROW lines[4];
    const int y = static_cast<int>(cinfo.output_scanline) - first_row;
    const int n = std::min(4, rows - y);
    for (int i = 0; i < n; ++i) lines[i] = out.image.pixels.data() + (y + i) * stride;
    if (jpeg_read_scanlines(&cinfo, lines, static_cast<JDIMENSION>(n)) == 0) {
      std::snprintf(state->err.message, sizeof(state->err.message), "no scanline after row %d",
                    static_cast<int>(cinfo.output_scanline));
      std::longjmp(state->err.jump, 1);
    }
  }
  if (static_cast<int>(cinfo.output_scanline) == out.full_height) {
    jpeg_finish_decompress(&cinfo);
  } else {
    jpeg_abort_decompress(&cinfo);  // the rows below the region are never decoded
  }
  jpeg_destroy_decompress(&cinfo);
  return std::move(out);
}

}  // namespace thinkingvit::data
