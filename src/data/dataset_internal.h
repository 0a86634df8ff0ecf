#pragma once
// Private to src/data/: helpers the dataset formats share (idx.cpp, cifar.cpp, synthetic.cpp,
// image_file.cpp, image_folder.cpp).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "thinkingvit/data/dataset.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::data::internal {

inline void check_index(int64_t index, int64_t size, const std::string& what) {
  TVIT_CHECK(index >= 0 && index < size, what, ": index ", index, " is out of range [0, ", size,
             ")");
}

inline std::vector<std::string> numbered_names(int64_t count) {
  std::vector<std::string> names;
  for (int64_t k = 0; k < count; ++k) names.push_back(std::to_string(k));
  return names;
}

inline std::string geometry(int height, int width, int channels) {
  return detail::concat(height, "x", width, "x", channels);
}

inline uint32_t read_u32_be(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

inline bool is_dir(const std::filesystem::path& path) {
  std::error_code error;
  return std::filesystem::is_directory(path, error);
}

// An image file decoded, with the crop chosen from its header (choose given), else an empty box.
struct DecodedFile {
  Image image;
  CropBox box;
};
using ChooseBox = std::function<CropBox(int height, int width)>;

// decode_image_file, and with `choose` the crop-first variant behind ImageFolder::get_part
// (image_file.cpp). nullopt with `why` set when the file cannot be read or decoded.
std::optional<DecodedFile> decode_file(const std::string& path, int min_side,
                                       const ChooseBox* choose, std::string* why);

}  // namespace thinkingvit::data::internal
