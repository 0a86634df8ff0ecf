#pragma once
// A bounds-checked reader and an atomic writer for the safetensors format: 8-byte
// little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the raw little-endian row-major data.

#include <ATen/core/Tensor.h>

#include <map>
#include <string>

namespace thinkingvit::io {

using TensorMap = std::map<std::string, at::Tensor>;

struct SafetensorsFile {
  TensorMap tensors;  // CPU, contiguous, in the file's dtype
  std::map<std::string, std::string> metadata;
};

// Throws thinkingvit::Error naming the file (and tensor) on any malformed content: short file,
// header length past the end, invalid JSON, unknown dtype, negative or mismatched shapes,
// offsets outside the data section or overlapping.
SafetensorsFile read_safetensors(const std::string& path);
SafetensorsFile parse_safetensors(const char* data, size_t size, const std::string& name);

// Writes tensors (moved to CPU, made contiguous, dtype kept) atomically.
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace thinkingvit::io
