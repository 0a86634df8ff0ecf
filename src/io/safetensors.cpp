#include "thinkingvit/io/safetensors.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstring>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"

namespace thinkingvit::io {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the reference implementation's limit

const std::vector<std::pair<std::string, at::ScalarType>>& dtype_table() {
  static const std::vector<std::pair<std::string, at::ScalarType>> table = {
      {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
      {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
      {"U8", at::kByte},    {"BOOL", at::kBool},
  };
  return table;
}

at::ScalarType parse_dtype(const std::string& text, const std::string& where) {
  for (const auto& [name, type] : dtype_table()) {
    if (name == text) return type;
  }
  fail(where, ": unsupported dtype '", text, "'; expected one of F64, F32, F16, BF16, I64, I32, ",
       "I16, I8, U8, BOOL");
}

std::string dtype_name(at::ScalarType type, const std::string& where) {
  for (const auto& [name, t] : dtype_table()) {
    if (t == type) return name;
  }
  fail(where, ": cannot store dtype ", c10::toString(type), " in safetensors");
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

SafetensorsFile parse_safetensors(const char* data, size_t size, const std::string& name) {
  const std::string file = "safetensors file '" + name + "'";
  TVIT_CHECK(size >= 8, file, ": expected at least 8 bytes (header length), found ", size);
  const uint64_t header_len = read_u64_le(data);
  TVIT_CHECK(header_len <= kMaxHeaderBytes && header_len <= size - 8, file, ": header length ",
             header_len, " exceeds the file (", size, " bytes); the file is truncated or not ",
             "safetensors");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data + 8, data + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(file, ": header is not valid JSON (", e.what(), ")");
  }
  TVIT_CHECK(header.is_object(), file, ": header must be a JSON object");

  const char* payload = data + 8 + header_len;
  const uint64_t payload_size = size - 8 - header_len;
  SafetensorsFile result;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") {
      TVIT_CHECK(entry.is_object(), file, ": __metadata__ must be an object of strings");
      for (const auto& [mk, mv] : entry.items()) {
        TVIT_CHECK(mv.is_string(), file, ": __metadata__['", mk, "'] must be a string");
        result.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = file + ", tensor '" + key + "'";
    TVIT_CHECK(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                   entry.contains("data_offsets"),
               where, ": expected an object with dtype, shape and data_offsets");
    TVIT_CHECK(entry["dtype"].is_string(), where, ": dtype must be a string");
    const auto dtype = parse_dtype(entry["dtype"].get<std::string>(), where);
    const auto& shape_json = entry["shape"];
    const auto& offsets = entry["data_offsets"];
    TVIT_CHECK(shape_json.is_array(), where, ": shape must be an array");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& d : shape_json) {
      TVIT_CHECK(d.is_number_unsigned(), where, ": shape entries must be non-negative integers");
      const auto dim = d.get<uint64_t>();
      TVIT_CHECK(dim < (1ull << 40), where, ": dimension ", dim, " is too large");
      numel *= dim;
      TVIT_CHECK(numel < (1ull << 50), where, ": too many elements");
      shape.push_back(static_cast<int64_t>(dim));
    }
    TVIT_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                   offsets[1].is_number_unsigned(),
               where, ": data_offsets must be [begin, end]");
    const auto begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    TVIT_CHECK(begin <= end && end <= payload_size, where, ": data_offsets [", begin, ", ", end,
               "] lie outside the data section of ", payload_size, " bytes (truncated file?)");
    const uint64_t bytes = numel * c10::elementSize(dtype);
    TVIT_CHECK(end - begin == bytes, where, ": shape ", shape_str(shape), " of ",
               entry["dtype"].get<std::string>(), " needs ", bytes, " bytes, data_offsets give ",
               end - begin);
    ranges.emplace_back(begin, end);
    auto tensor = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (bytes > 0) std::memcpy(tensor.data_ptr(), payload + begin, bytes);
    result.tensors.emplace(key, std::move(tensor));
  }
  // As the format's reference reader requires: the tensors tile the data section exactly, with
  // no overlap, gap or trailing bytes. A header length that is off by a byte fails here instead
  // of shifting every tensor.
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (const auto& [begin, end] : ranges) {
    if (begin == end) continue;
    TVIT_CHECK(begin >= covered, file, ": tensors overlap in the data section (bytes ", begin, "..",
               covered, ")");
    TVIT_CHECK(begin == covered, file, ": the data section has a gap at bytes ", covered, "..",
               begin, " (is the header length right?)");
    covered = end;
  }
  TVIT_CHECK(covered == payload_size, file, ": the tensors cover ", covered,
             " bytes of a data section of ", payload_size,
             " (the header length field or the file size is wrong)");
  return result;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const auto bytes = util::read_file(path);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<at::Tensor> ordered;
  uint64_t offset = 0;
  for (const auto& [key, value] : tensors) {
    TVIT_CHECK(value.defined(), "writing '", path, "': tensor '", key, "' is undefined");
    auto t = value.detach().to(at::kCPU).contiguous();
    const uint64_t bytes = t.numel() * t.element_size();
    header[key] = {
        {"dtype", dtype_name(t.scalar_type(), "writing '" + path + "', tensor '" + key + "'")},
        {"shape", t.sizes().vec()},
        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    ordered.push_back(std::move(t));
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');  // data section starts 8-aligned
  util::write_file_atomic(path, [&](std::ostream& out) {
    char len[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i, n >>= 8) len[i] = static_cast<char>(n & 0xff);
    out.write(len, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : ordered) {
      out.write(static_cast<const char*>(t.data_ptr()),
                static_cast<std::streamsize>(t.numel() * t.element_size()));
    }
  });
}

}  // namespace thinkingvit::io
