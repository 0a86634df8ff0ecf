#include "checkpoint_format.h"

#include <cmath>

#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::models::vit {

namespace {

const at::Tensor& require(const TensorMap& tensors, const std::string& name,
                          const std::string& source, int64_t ndim) {
  auto it = tensors.find(name);
  TVIT_CHECK(it != tensors.end(), "checkpoint '", source, "': tensor '", name,
             "' is missing; cannot deduce the architecture (pass --preset or --config)");
  TVIT_CHECK(it->second.dim() == ndim, "checkpoint '", source, "': tensor '", name, "' has shape ",
             shape_str(it->second.sizes().vec()), ", expected ", ndim, " dimensions");
  return it->second;
}

}  // namespace

// A DeiT-style ThinkingViT from timm-named tensors: width, depth, patch, channels, classes,
// image size, and the stages from the recycling projections.
ThinkingViTOptions options_from_state(const TensorMap& tensors, const std::string& source,
                                      int64_t head_dim) {
  const std::string where = "checkpoint '" + source + "'";
  const auto& cls = require(tensors, "cls_token", source, 3);
  const auto& pos = require(tensors, "pos_embed", source, 3);
  const auto& patch = require(tensors, "patch_embed.proj.weight", source, 4);
  const auto& head = require(tensors, "head.weight", source, 2);
  const auto& fc1 = require(tensors, "blocks.0.mlp.fc1.weight", source, 2);
  const int64_t dim = cls.size(2);
  int64_t depth = 0;
  while (tensors.count("blocks." + std::to_string(depth) + ".norm1.weight")) ++depth;
  const int64_t patches = pos.size(1) - 1;
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(patches))));
  TVIT_CHECK(grid * grid == patches, where, ": pos_embed has ", pos.size(1),
             " tokens, expected 1 + a square number of patches");
  TVIT_CHECK(dim % head_dim == 0, where, ": width ", dim, " is not a multiple of head_dim ",
             head_dim);
  std::vector<int64_t> stages;
  for (int64_t t = 0;; ++t) {
    auto it = tensors.find(recycle_projection_name(t) + ".weight");
    if (it == tensors.end()) break;
    const int64_t k = it->second.size(1);
    TVIT_CHECK(k % head_dim == 0, where, ": ", it->first, " takes width ", k,
               ", not a multiple of head_dim ", head_dim);
    stages.push_back(k / head_dim);
  }
  stages.push_back(dim / head_dim);
  auto options = ThinkingViTOptions()
                     .image_size(grid * patch.size(2))
                     .patch_size(patch.size(2))
                     .in_channels(patch.size(1))
                     .num_classes(head.size(0))
                     .head_dim(head_dim)
                     .depth(depth)
                     .mlp_ratio(static_cast<double>(fc1.size(0)) / static_cast<double>(dim))
                     .qkv_bias(tensors.count("blocks.0.attn.qkv.bias") > 0)
                     .stages(stages);
  options.validate();
  return options;
}

// More heads than any ViT has: a larger count in config.json is a broken file.
constexpr int64_t kMaxHeads = 1024;

ThinkingViTOptions options_from_config(const nlohmann::json& config, const TensorMap& tensors,
                                       const std::string& source, const std::string& path) {
  TVIT_CHECK(!config.contains("model_args") || config["model_args"].is_object(), "'", path,
             "': model_args must be an object, found ", config["model_args"].dump());
  if (config.contains("model_args") && config["model_args"].contains("thinking_stages")) {
    const auto& st = config["model_args"]["thinking_stages"];
    bool valid = st.is_array() && !st.empty();
    int64_t previous = 0;
    for (size_t i = 0; valid && i < st.size(); ++i) {
      valid = st[i].is_number_integer() && st[i].get<int64_t>() > previous &&
              st[i].get<int64_t>() <= kMaxHeads;
      if (valid) previous = st[i].get<int64_t>();
    }
    TVIT_CHECK(valid, "'", path,
               "': model_args.thinking_stages must be a non-empty, increasing list of head counts "
               "in 1..",
               kMaxHeads, ", found ", st.dump());
  }
  auto get_int = [&](const nlohmann::json& obj, const char* key, int64_t& field) {
    if (!obj.contains(key)) return;
    TVIT_CHECK(obj[key].is_number_integer(), "'", path, "': key '", key,
               "' must be an integer, found ", obj[key].dump());
    field = obj[key].get<int64_t>();
  };
  // The width comes from the tensors; head_dim from the stated heads (64 when unstated).
  int64_t head_dim = 64;
  const auto& args_or_empty =
      config.contains("model_args") ? config["model_args"] : nlohmann::json::object();
  const auto cls = tensors.find("cls_token");
  if (cls != tensors.end() && cls->second.dim() == 3) {
    const int64_t width = cls->second.size(2);
    int64_t heads = 0;
    if (args_or_empty.contains("thinking_stages") && args_or_empty["thinking_stages"].is_array() &&
        !args_or_empty["thinking_stages"].empty() &&
        args_or_empty["thinking_stages"].back().is_number_integer()) {
      heads = args_or_empty["thinking_stages"].back().get<int64_t>();
    } else if (args_or_empty.contains("num_heads") &&
               args_or_empty["num_heads"].is_number_integer()) {
      heads = args_or_empty["num_heads"].get<int64_t>();
    }
    if (heads > 0 && width % heads == 0) head_dim = width / heads;
  }
  auto options = options_from_state(tensors, source, head_dim);
  int64_t value = options.num_classes();
  get_int(config, "num_classes", value);
  options.num_classes(value);
  if (config.contains("model_args")) {
    const auto& args = config["model_args"];
    TVIT_CHECK(args.is_object(), "'", path, "': model_args must be an object");
    if (args.contains("thinking_stages")) {
      const auto& st = args["thinking_stages"];
      TVIT_CHECK(st.is_array() && !st.empty(), "'", path,
                 "': model_args.thinking_stages must be a list of head counts, found ", st.dump());
      std::vector<int64_t> stages;
      for (const auto& s : st) {
        TVIT_CHECK(s.is_number_integer(), "'", path,
                   "': model_args.thinking_stages must hold integers, found ", st.dump());
        stages.push_back(s.get<int64_t>());
      }
      TVIT_CHECK(options.embed_dim() % stages.back() == 0, "'", path,
                 "': model_args.thinking_stages ", st.dump(), " does not divide the width ",
                 options.embed_dim());
      options.head_dim(options.embed_dim() / stages.back()).stages(stages);
    }
    value = options.image_size();
    get_int(args, "img_size", value);
    options.image_size(value);
    value = options.patch_size();
    get_int(args, "patch_size", value);
    options.patch_size(value);
    value = options.in_channels();
    get_int(args, "in_chans", value);
    options.in_channels(value);
    value = options.depth();
    get_int(args, "depth", value);
    options.depth(value);
    if (args.contains("mlp_ratio") && args["mlp_ratio"].is_number()) {
      options.mlp_ratio(args["mlp_ratio"].get<double>());
    }
    if (args.contains("qkv_bias") && args["qkv_bias"].is_boolean()) {
      options.qkv_bias(args["qkv_bias"].get<bool>());
    }
    if (args.contains("recycling")) {  // ours; the released folders recycle (no key)
      TVIT_CHECK(args["recycling"].is_boolean(), "'", path,
                 "': model_args.recycling must be true or false, found ", args["recycling"].dump());
      options.recycling(args["recycling"].get<bool>());
    }
  }
  try {
    options.validate();
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
  return options;
}

nlohmann::json config_json(const ThinkingViTOptions& o) {
  nlohmann::json j = {{"architecture", "thinkingvit"},
                      {"num_classes", o.num_classes()},
                      {"model_args",
                       {{"thinking_stages", o.stages()},
                        {"img_size", o.image_size()},
                        {"patch_size", o.patch_size()},
                        {"in_chans", o.in_channels()},
                        {"depth", o.depth()},
                        {"mlp_ratio", o.mlp_ratio()},
                        {"qkv_bias", o.qkv_bias()},
                        {"recycling", o.recycling()}}}};
  return j;
}

}  // namespace thinkingvit::models::vit
