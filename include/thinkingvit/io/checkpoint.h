#pragma once
// Loading weights into an elastic model with the adaptation rules of the released code (exact,
// crop a larger checkpoint, embed a smaller one into the leading slices, where the model's
// tensor_layout allows it) and saving them in a form the released Python code loads unchanged
// (timm names, fp32, contiguous safetensors).

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/models/elastic_model.h"

namespace thinkingvit::io {

enum class TensorStatus { kLoaded, kCropped, kEmbedded, kMissing, kUnexpected };
std::string to_string(TensorStatus status);

struct TensorReport {
  std::string name;
  TensorStatus status;
  std::vector<int64_t> file_shape;   // empty when missing
  std::vector<int64_t> model_shape;  // empty when unexpected
};

struct LoadReport {
  std::string source;
  std::vector<TensorReport> tensors;
  int64_t count(TensorStatus status) const;
  bool exact() const;  // everything loaded, nothing missing or unexpected
  // "loaded 150, cropped 0, embedded 0, missing 2, unexpected 0"
  std::string summary() const;
};

struct LoadOptions {
  bool strict = false;         // anything but an exact load is an error
  bool allow_missing = false;  // model tensors absent from the file keep their init
  bool allow_crop = true;      // a larger checkpoint tensor is cropped to its leading slices
  bool allow_embed = true;     // a smaller one fills the leading slices, the rest keeps its init
};

// Copies `tensors` into the model following the rules above. Throws thinkingvit::Error naming
// `source` and the tensor on a shape that cannot be adapted, a non-float dtype, or (per
// options) missing/unexpected/inexact tensors. The model is left unchanged on error.
LoadReport load_state_dict(models::ElasticModel& model, const TensorMap& tensors,
                           const std::string& source, const LoadOptions& options = {});

// timm-named fp32 state dict (parameters and buffers), detached CPU copies.
TensorMap state_dict(const models::ElasticModel& model);

// Writes the state dict as safetensors (atomic).
void save_weights(const models::ElasticModel& model, const std::string& path,
                  std::map<std::string, std::string> metadata = {});

// Weights read from a file or folder, with the architecture if the source states it.
struct WeightsSource {
  std::string path;  // the tensor file actually read
  TensorMap tensors;
  std::optional<models::ModelOptions> options;  // from config.json, when present
  std::vector<std::string> label_names;         // config.json "label_names", when present
};

// PATH may be a Hugging Face style folder (config.json + model.safetensors; stages from
// model_args.thinking_stages, class names from label_names) or a flat safetensors file (timm DeiT,
// released, ours). A common "module." prefix is stripped.
WeightsSource read_weights(const std::string& path);

// Deduces the architecture from timm-named tensors (width, depth, patch, channels, classes,
// image size, stages from the recycling projections), assuming `head_dim`.
models::ModelOptions options_from_state(const TensorMap& tensors, const std::string& source,
                                        int64_t head_dim = 64);

// The timm-style config.json of a weights folder, the schema options_from_config_json and
// read_weights read back: architecture, num_classes, model_args (thinking_stages, img_size,
// patch_size, in_chans, depth, mlp_ratio, qkv_bias, recycling) and label_names (one per class).
std::string config_json(const models::ModelOptions& options,
                        const std::vector<std::string>& label_names);

}  // namespace thinkingvit::io
