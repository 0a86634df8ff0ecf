#pragma once
// Private to the ViT family: the config.json schema and the checkpoint layout of a DeiT-style
// ThinkingViT, as timm and the released code write them.

#include <nlohmann/json.hpp>

#include <string>

#include "thinkingvit/models/family.h"
#include "thinkingvit/models/vit/options.h"

namespace thinkingvit::models::vit {

// A ThinkingViT from timm-named tensors: width, depth, patch, channels, classes, image size, and
// the stages from the recycling projections, assuming `head_dim`. Errors name `source` and the
// tensor missing or misshapen.
ThinkingViTOptions options_from_state(const TensorMap& tensors, const std::string& source,
                                      int64_t head_dim);

// The architecture of a Hugging Face style folder: shapes from the tensors, overridden by a
// timm-style config.json (num_classes; model_args: thinking_stages, img_size, patch_size,
// in_chans, depth, mlp_ratio, qkv_bias, num_heads, recycling). Errors name `path` and the key.
ThinkingViTOptions options_from_config(const nlohmann::json& config, const TensorMap& tensors,
                                       const std::string& source, const std::string& path);

// The config.json the export writes (without label_names): architecture, num_classes and
// model_args (thinking_stages, img_size, patch_size, in_chans, depth, mlp_ratio, qkv_bias,
// recycling).
nlohmann::json config_json(const ThinkingViTOptions& options);

}  // namespace thinkingvit::models::vit
