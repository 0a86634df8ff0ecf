// Image folders: ROOT/<class>/<image>, classes sorted or listed.
#include "thinkingvit/data/dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "dataset_internal.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::data {

using internal::check_index;
using internal::decode_file;
using internal::is_dir;

namespace fs = std::filesystem;

ImageFolder::ImageFolder(const std::string& root, const std::string& class_list) : root_(root) {
  const std::string what = "image folder '" + root + "'";
  const std::string layout = "expected root/<class>/<image> (e.g. an ImageNet train or val folder)";
  TVIT_CHECK(!root.empty(), "image folder: no path given; ", layout);
  std::error_code error;
  TVIT_CHECK(fs::exists(root, error), what, ": not found; ", layout);
  TVIT_CHECK(is_dir(root), what, ": not a directory; ", layout);

  std::vector<std::string> folders;
  for (fs::directory_iterator it(root, error), end; !error && it != end; it.increment(error)) {
    if (is_dir(it->path())) folders.push_back(it->path().filename().string());
  }
  TVIT_CHECK(!error, what, ": cannot list: ", error.message());
  TVIT_CHECK(!folders.empty(), what, ": holds no class folders; ", layout);
  std::sort(folders.begin(), folders.end());

  if (class_list.empty()) {
    class_names_ = folders;
  } else {
    std::ifstream in(class_list);
    TVIT_CHECK(in, "class list '", class_list, "': cannot open: ", std::strerror(errno));
    std::set<std::string> seen;
    std::string line;
    for (int line_number = 1; std::getline(in, line); ++line_number) {
      const std::string name = util::trim(line);
      if (name.empty()) continue;
      TVIT_CHECK(seen.insert(name).second, "class list '", class_list, "', line ", line_number,
                 ": class '", name, "' is listed twice");
      TVIT_CHECK(std::binary_search(folders.begin(), folders.end(), name), "class list '",
                 class_list, "', line ", line_number, ": expected a folder '",
                 (fs::path(root) / name).string(), "', found none");
      class_names_.push_back(name);
    }
    TVIT_CHECK(!class_names_.empty(), "class list '", class_list,
               "': expected one class folder name per line, found none");
  }

  // Like torchvision's ImageFolder: files found recursively, sorted per folder.
  std::vector<std::string> empty_classes;
  for (size_t label = 0; label < class_names_.size(); ++label) {
    std::vector<std::pair<std::string, std::string>> files;  // (folder, file name)
    const fs::path class_dir = fs::path(root) / class_names_[label];
    fs::recursive_directory_iterator it(class_dir, fs::directory_options::follow_directory_symlink,
                                        error);
    for (fs::recursive_directory_iterator end; !error && it != end; it.increment(error)) {
      const fs::path& path = it->path();
      if (has_image_extension(path.string()) && !is_dir(path)) {
        files.emplace_back(path.parent_path().string(), path.filename().string());
      }
    }
    TVIT_CHECK(!error, what, ": cannot list '", class_dir.string(), "': ", error.message());
    if (files.empty()) empty_classes.push_back(class_names_[label]);
    std::sort(files.begin(), files.end());
    for (const auto& [folder, name] : files) {
      paths_.push_back((fs::path(folder) / name).string());
      labels_.push_back(static_cast<int64_t>(label));
    }
  }
  TVIT_CHECK(!paths_.empty(), what, ": expected image files (", kImageExtensions, ") under its ",
             class_names_.size(), " class folders, found none");
  if (!empty_classes.empty()) {
    spdlog::warn(
        "{}: {} of {} class folders hold no images (first: '{}'); their classes keep "
        "their indices",
        what, empty_classes.size(), class_names_.size(), empty_classes.front());
  }
}

std::optional<Sample> ImageFolder::get(int64_t index) const { return load(index, /*min_side=*/0); }

std::optional<Sample> ImageFolder::get_reduced(int64_t index, int min_side) const {
  return load(index, min_side);
}

const std::string& ImageFolder::path(int64_t index) const {
  check_index(index, size(), "image folder '" + root_ + "'");
  return paths_[index];
}

std::optional<ImageFolder::Part> ImageFolder::get_part(
    int64_t index, const std::function<CropBox(int height, int width)>& choose) const {
  check_index(index, size(), "image folder '" + root_ + "'");
  std::string why;
  auto decoded = decode_file(paths_[index], /*min_side=*/0, &choose, &why);
  if (!decoded) {
    warn_skipped(index, why);
    return std::nullopt;
  }
  return Part{Sample{std::move(decoded->image), labels_[index]}, decoded->box};
}

std::optional<Sample> ImageFolder::load(int64_t index, int min_side) const {
  check_index(index, size(), "image folder '" + root_ + "'");
  std::string why;
  std::optional<Image> image = decode_image_file(paths_[index], min_side, &why);
  if (!image) {
    warn_skipped(index, why);
    return std::nullopt;
  }
  return Sample{std::move(*image), labels_[index]};
}

void ImageFolder::warn_skipped(int64_t index, const std::string& why) const {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(warned_mutex_);
    first = warned_.insert(index).second;
  }
  if (first) spdlog::warn("image folder '{}': skipping '{}': {}", root_, paths_[index], why);
}

std::string ImageFolder::describe() const {
  return detail::concat("image folder '", root_, "': ", size(), " images, ", num_classes(),
                        " classes");
}

std::unique_ptr<Dataset> open_image_folder(const std::string& root, const std::string& class_list) {
  return std::make_unique<ImageFolder>(root, class_list);
}

}  // namespace thinkingvit::data
