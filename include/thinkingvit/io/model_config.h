#pragma once
// The `model` section of a YAML configuration file.

#include <string>

#include "thinkingvit/models/model_options.h"

namespace thinkingvit::io {

// Reads the top-level `model:` map of a YAML file: an optional `preset` as the base, then any of
// image_size, patch_size, in_channels, num_classes, head_dim, depth, mlp_ratio, qkv_bias,
// norm_eps, drop_path_rate, stages, attention (fused | explicit). The training keys init_from and
// init_strict are accepted and ignored here, so a training configuration is also a model file;
// train::load_config reads the section with the same parser. Unknown keys and wrong types are
// errors naming the file, line and key.
models::ModelOptions model_options_from_yaml(const std::string& path);

// Whether the YAML file holds a `model:` section and nothing else (an architecture file such as
// configs/*_model.yaml), not a training configuration. Errors as above for a missing or invalid
// file.
bool is_model_file(const std::string& path);

}  // namespace thinkingvit::io
