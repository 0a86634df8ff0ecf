#pragma once
// Private to the Swin family: the config.json schema and checkpoint key layout of ThinkingViT on
// Swin, as the released Hugging Face export and timm write them.

#include <nlohmann/json.hpp>

#include <string>

#include "thinkingvit/models/family.h"
#include "thinkingvit/models/swin/options.h"

namespace thinkingvit::models::swin {

// A config.json describing a Swin: model_args.head_rounds, or an architecture named swin_*.
bool is_swin_config(const nlohmann::json& config);
// The options a Swin config.json describes: the named timm architecture overridden by
// model_args (img_size, patch_size, in_chans, embed_dim, depths, num_heads, window_size,
// mlp_ratio, qkv_bias, head_rounds, recycling) and num_classes. Errors name `path` and the key.
models::ThinkingSwinOptions options_from_config(const nlohmann::json& config,
                                                const std::string& path);
// The config.json the export writes (without label_names): timm loads it; model_args.recycling
// appears only when false.
nlohmann::json config_json(const models::ThinkingSwinOptions& options);

// timm Swin tensors: "layers.0.blocks.0.attn.relative_position_bias_table" is present.
bool is_swin_state(const TensorMap& tensors);
// A plain (one-round) Swin from its tensors; the image size is taken as the smallest whose last
// level is one window. A state with a token projector needs its config.json.
models::ThinkingSwinOptions options_from_state(const TensorMap& tensors, const std::string& source);

// timm's checkpoint filter: drops relative_position_index and attn_mask, and renames an old
// (Microsoft) layout (downsample at the end of a level, "head.weight") to the current one.
TensorMap adapt_checkpoint(const TensorMap& tensors);

}  // namespace thinkingvit::models::swin
