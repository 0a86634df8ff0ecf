#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/util/fs.h"

namespace thinkingvit::testing {

namespace {

// Builds a safetensors file by hand: header length, JSON, payload.
std::string raw_file(const std::string& json, const std::string& payload) {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[i] = static_cast<char>(n & 0xff);
  return out + json + payload;
}

void write_raw(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string float_bytes(std::initializer_list<float> values) {
  std::string out;
  for (float v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
  return out;
}

}  // namespace

TEST(Safetensors, ReadsAHandWrittenFile) {
  TempDir dir;
  const auto path = dir.file("hand.safetensors");
  write_raw(path, raw_file(R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},)"
                           R"("a":{"dtype":"F32","shape":[1,3],"data_offsets":[0,12]},)"
                           R"("__metadata__":{"format":"pt"}})",
                           float_bytes({1.5f, -2.0f, 3.25f, 7.0f, 8.0f})));
  auto file = io::read_safetensors(path);
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_TRUE(torch::equal(file.tensors.at("a"), torch::tensor({{1.5f, -2.0f, 3.25f}})));
  EXPECT_TRUE(torch::equal(file.tensors.at("b"), torch::tensor({7.0f, 8.0f})));
  EXPECT_EQ(file.metadata.at("format"), "pt");
}

TEST(Safetensors, RoundTripsEveryDtype) {
  TempDir dir;
  io::TensorMap tensors = {
      {"f32", torch::randn({3, 4})},
      {"f16", torch::randn({5}).to(torch::kHalf)},
      {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"i64", torch::arange(6, torch::kLong).view({2, 3})},
      {"i32", torch::arange(3, torch::kInt)},
      {"u8", torch::arange(7, torch::kByte)},
      {"bool", torch::tensor({true, false, true})},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::randn({4, 4}).t()},  // non-contiguous input is made contiguous
  };
  const auto path = dir.file("all.safetensors");
  io::write_safetensors(path, tensors, {{"note", "hello"}});
  auto bytes = util::read_file(path);
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + header) % 8, 0u);  // data section aligned
  auto back = io::read_safetensors(path);
  EXPECT_EQ(back.metadata.at("note"), "hello");
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(back.tensors.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back.tensors.at(name), t)) << name;
  }
}

TEST(Safetensors, RejectsMalformedFiles) {
  TempDir dir;
  const auto path = dir.file("bad.safetensors");
  auto check = [&](const std::string& bytes, std::vector<std::string> fragments) {
    write_raw(path, bytes);
    fragments.push_back(path);
    expect_error([&] { io::read_safetensors(path); }, fragments);
  };
  const std::string good = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  check("abc", {"at least 8 bytes"});
  check(raw_file(good, float_bytes({1, 2})).substr(0, 20), {"header length", "truncated"});
  check(raw_file("{not json", ""), {"not valid JSON"});
  check(raw_file("[1,2]", ""), {"JSON object"});
  check(raw_file(R"({"w":{"dtype":"Q8","shape":[2],"data_offsets":[0,8]}})", float_bytes({1, 2})),
        {"tensor 'w'", "unsupported dtype 'Q8'"});
  check(raw_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", float_bytes({1, 2})),
        {"tensor 'w'", "[3]", "needs 12 bytes", "give 8"});
  check(raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", float_bytes({1})),
        {"tensor 'w'", "outside the data section"});
  check(raw_file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", float_bytes({1, 2})),
        {"tensor 'w'", "non-negative"});
  check(raw_file(R"({"w":{"dtype":"F32","shape":[2]}})", float_bytes({1, 2})),
        {"tensor 'w'", "data_offsets"});
  check(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                 float_bytes({1, 2, 3})),
        {"overlap"});
  // The tensors must tile the data section: a header length one byte short (the header's
  // padding space then counts as data) shifts every tensor, and is refused.
  auto short_header = raw_file(good + " ", float_bytes({1, 2}));
  short_header[0] = static_cast<char>(short_header[0] - 1);
  check(short_header, {"cover 8 bytes of a data section of 9", "header length"});
  check(raw_file(good, float_bytes({1, 2, 3})), {"cover 8 bytes of a data section of 12"});
  check(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                 float_bytes({1, 2, 3})),
        {"gap at bytes 4..8"});
  expect_error([&] { io::read_safetensors(dir.file("absent.safetensors")); },
               {"cannot open", "absent.safetensors"});
  expect_error([&] { io::read_safetensors(dir.path().string()); },
               {"is a directory, expected a file"});
}

TEST(Safetensors, FailedWritesLeaveNoFile) {
  TempDir dir;
  const auto path = dir.file("missing-dir/out.safetensors");
  expect_error(
      [&] {
        io::write_safetensors(path, {{"x", torch::ones({2})}});
      },
      {"out.safetensors"});
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "missing-dir"));
  // A writer that throws midway removes its temp file and leaves no target.
  const auto target = dir.file("t.bin");
  EXPECT_THROW(util::write_file_atomic(target,
                                       [](std::ostream& out) {
                                         out << "partial";
                                         throw Error("boom");
                                       }),
               Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Safetensors, FoldersAreReplacedAtomically) {
  TempDir dir;
  const auto target = dir.file("best");
  auto fill_with = [](const std::string& text) {
    return [text](const std::filesystem::path& folder) {
      std::ofstream(folder / "model.txt") << text;
    };
  };
  auto content = [&] {
    std::ifstream in(target + "/model.txt");
    std::string text;
    in >> text;
    return text;
  };
  util::write_folder_atomic(target, fill_with("one"));
  EXPECT_EQ(content(), "one");
  util::write_folder_atomic(target, fill_with("two"));  // replaces an existing folder
  EXPECT_EQ(content(), "two");
  // A writer that fails keeps the old folder and leaves no temporary one.
  EXPECT_THROW(
      util::write_folder_atomic(target, [](const std::filesystem::path&) { throw Error("full"); }),
      Error);
  EXPECT_EQ(content(), "two");
  // A writer killed between the fallback's two renames left only .old-best: it comes back.
  std::filesystem::rename(target, dir.file(".old-best"));
  EXPECT_THROW(
      util::write_folder_atomic(target, [](const std::filesystem::path&) { throw Error("full"); }),
      Error);
  EXPECT_EQ(content(), "two");
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.path()))
    left.push_back(e.path().filename().string());
  EXPECT_EQ(left, std::vector<std::string>{"best"});
}

}  // namespace thinkingvit::testing
