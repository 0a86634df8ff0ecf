#pragma once
// Shared by the fuzz targets (one per reader of outside data). Every target holds the readers to
// one rule: malformed input ends in a thinkingvit::Error, never in another exception, a crash,
// undefined behaviour, a hang or a huge allocation (AddressSanitizer, UBSan and libFuzzer's
// -rss_limit_mb / -malloc_limit_mb report those). Readers that take paths get the input written
// to a file in a folder of this process's own.

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "thinkingvit/data/dataset.h"

namespace thinkingvit::fuzz {

// This process's scratch folder, removed at exit; logs silenced once.
inline const std::filesystem::path& scratch() {
  static const struct Dir {
    std::filesystem::path path;
    Dir()
        : path(std::filesystem::temp_directory_path() /
               ("thinkingvit-fuzz-" + std::to_string(::getpid()))) {
      std::filesystem::create_directories(path);
      spdlog::set_level(spdlog::level::off);
    }
    ~Dir() {
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } dir;
  return dir.path;
}

inline void write_bytes(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// The input as a file of the scratch folder; returns its path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const auto path = scratch() / name;
  std::filesystem::create_directories(path.parent_path());
  write_bytes(path, data, size);
  return path.string();
}

// What a training run asks of an opened dataset: labels, names, the first `samples` and the last.
inline void read_dataset(const data::Dataset& set, int64_t samples) {
  (void)set.labels();
  (void)set.class_names();
  (void)set.describe();
  for (int64_t i = 0; i < std::min<int64_t>(set.size(), samples); ++i) (void)set.get(i);
  if (set.size() > 0) (void)set.get(set.size() - 1);
}

}  // namespace thinkingvit::fuzz
