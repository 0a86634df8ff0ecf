#include "checkpoint_format.h"

#include <cmath>
#include <regex>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::models::swin {

namespace {

// The timm architectures a Swin config.json may name, as our presets.
const std::vector<std::pair<std::string, std::string>>& architectures() {
  static const std::vector<std::pair<std::string, std::string>> table = {
      {"swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224"},
      {"swin_small_patch4_window7_224", "swin_small_patch4_window7_224"},
      {"swin_base_patch4_window7_224", "swin_base_patch4_window7_224"},
  };
  return table;
}

}  // namespace

bool is_swin_config(const nlohmann::json& config) {
  if (!config.is_object()) return false;
  if (config.contains("model_args") && config["model_args"].is_object() &&
      config["model_args"].contains("head_rounds")) {
    return true;
  }
  return config.contains("architecture") && config["architecture"].is_string() &&
         util::starts_with(config["architecture"].get<std::string>(), "swin");
}

models::ThinkingSwinOptions options_from_config(const nlohmann::json& config,
                                                const std::string& path) {
  const auto where = "'" + path + "'";
  models::ThinkingSwinOptions o = models::swin_preset("swin_small_patch4_window7_224");
  if (config.contains("architecture")) {
    TVIT_CHECK(config["architecture"].is_string(), where,
               ": key 'architecture' must be a string, found ", config["architecture"].dump());
    const auto name = config["architecture"].get<std::string>();
    std::string known;
    bool found = false;
    for (const auto& [arch, preset] : architectures()) {
      known += (known.empty() ? "" : ", ") + arch;
      if (arch == name) {
        o = models::swin_preset(preset);
        found = true;
      }
    }
    TVIT_CHECK(found, where, ": architecture '", name, "' is not a Swin this build knows (", known,
               ")");
  }
  const auto integer = [&](const nlohmann::json& obj, const char* key, const std::string& path_key,
                           auto set) {
    if (!obj.contains(key)) return;
    TVIT_CHECK(obj[key].is_number_integer(), where, ": key '", path_key,
               "' must be an integer, found ", obj[key].dump());
    set(obj[key].get<int64_t>());
  };
  const auto int_list = [&](const nlohmann::json& v, const std::string& key) {
    std::vector<int64_t> out;
    TVIT_CHECK(v.is_array() && !v.empty() && v.size() <= 8, where, ": key '", key,
               "' must be a list of 1 to 8 integers, found ", v.dump());
    for (const auto& e : v) {
      TVIT_CHECK(e.is_number_integer() && e.get<int64_t>() > 0 && e.get<int64_t>() <= 4096, where,
                 ": key '", key, "' must hold integers in 1..4096, found ", v.dump());
      out.push_back(e.get<int64_t>());
    }
    return out;
  };
  integer(config, "num_classes", "num_classes", [&](int64_t v) { o.num_classes(v); });
  if (config.contains("model_args")) {
    const auto& a = config["model_args"];
    TVIT_CHECK(a.is_object(), where, ": model_args must be an object, found ", a.dump());
    integer(a, "img_size", "model_args.img_size", [&](int64_t v) { o.image_size(v); });
    integer(a, "patch_size", "model_args.patch_size", [&](int64_t v) { o.patch_size(v); });
    integer(a, "in_chans", "model_args.in_chans", [&](int64_t v) { o.in_channels(v); });
    integer(a, "embed_dim", "model_args.embed_dim", [&](int64_t v) { o.embed_dim(v); });
    integer(a, "window_size", "model_args.window_size", [&](int64_t v) { o.window_size(v); });
    if (a.contains("depths")) o.depths(int_list(a["depths"], "model_args.depths"));
    if (a.contains("num_heads")) o.num_heads(int_list(a["num_heads"], "model_args.num_heads"));
    if (a.contains("mlp_ratio")) {
      TVIT_CHECK(a["mlp_ratio"].is_number(), where,
                 ": key 'model_args.mlp_ratio' must be a number, found ", a["mlp_ratio"].dump());
      o.mlp_ratio(a["mlp_ratio"].get<double>());
    }
    for (const char* key : {"qkv_bias", "recycling"}) {
      if (!a.contains(key)) continue;
      TVIT_CHECK(a[key].is_boolean(), where, ": key 'model_args.", key,
                 "' must be true or false, found ", a[key].dump());
      if (std::string(key) == "qkv_bias") o.qkv_bias(a[key].get<bool>());
      if (std::string(key) == "recycling") o.recycling(a[key].get<bool>());
    }
    if (a.contains("head_rounds")) {
      const auto& r = a["head_rounds"];
      TVIT_CHECK(r.is_array() && !r.empty() && r.size() <= 8, where,
                 ": key 'model_args.head_rounds' must be a list of 1 to 8 rounds, found ",
                 r.dump());
      std::vector<std::vector<int64_t>> rounds;
      for (const auto& round : r) rounds.push_back(int_list(round, "model_args.head_rounds"));
      o.head_rounds(rounds);
    } else {
      o.head_rounds({o.num_heads()});  // a plain Swin: one round at full heads
    }
  }
  try {
    o.validate();
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
  return o;
}

nlohmann::json config_json(const models::ThinkingSwinOptions& o) {
  std::string architecture = "swin_tiny_patch4_window7_224";  // overridden by model_args
  for (const auto& [arch, preset] : architectures()) {
    const auto p = models::swin_preset(preset);
    if (p.embed_dim() == o.embed_dim() && p.depths() == o.depths() &&
        p.num_heads() == o.num_heads() && p.window_size() == o.window_size()) {
      architecture = arch;
    }
  }
  nlohmann::json args = {{"img_size", o.image_size()},
                         {"patch_size", o.patch_size()},
                         {"in_chans", o.in_channels()},
                         {"window_size", o.window_size()},
                         {"embed_dim", o.embed_dim()},
                         {"depths", o.depths()},
                         {"num_heads", o.num_heads()},
                         {"mlp_ratio", o.mlp_ratio()},
                         {"qkv_bias", o.qkv_bias()},
                         {"head_rounds", o.head_rounds()},
                         {"build_token_projector", o.num_stages() > 1}};
  if (!o.recycling()) args["recycling"] = false;  // ours; timm's constructor has no such key
  const int64_t last = o.resolution(o.num_levels() - 1);
  // timm reads model_args only beside a pretrained_cfg (else it takes the file for an old one).
  nlohmann::json pretrained = {{"input_size", {o.in_channels(), o.image_size(), o.image_size()}},
                               {"fixed_input_size", true},
                               {"interpolation", "bicubic"},
                               {"crop_pct", 0.9},
                               {"crop_mode", "center"},
                               {"mean", {0.485, 0.456, 0.406}},
                               {"std", {0.229, 0.224, 0.225}},
                               {"num_classes", o.num_classes()},
                               {"pool_size", {last, last}},
                               {"first_conv", "patch_embed.proj"},
                               {"classifier", "head.fc"}};
  return {{"architecture", architecture},
          {"num_classes", o.num_classes()},
          {"num_features", o.level_dim(o.num_levels() - 1)},
          {"global_pool", "avg"},
          {"model_args", args},
          {"pretrained_cfg", pretrained}};
}

bool is_swin_state(const TensorMap& tensors) {
  return tensors.count("layers.0.blocks.0.attn.relative_position_bias_table") > 0;
}

models::ThinkingSwinOptions options_from_state(const TensorMap& tensors,
                                               const std::string& source) {
  const auto where = "checkpoint '" + source + "'";
  TVIT_CHECK(!tensors.count("proj_layer.upsample.weight"), where,
             ": a ThinkingViT-Swin's head rounds cannot be read from its tensors; use its folder "
             "with config.json, or pass --preset or --config");
  const auto get = [&](const std::string& name, int64_t ndim) -> const at::Tensor& {
    auto it = tensors.find(name);
    TVIT_CHECK(it != tensors.end() && it->second.dim() == ndim, where, ": tensor '", name,
               "' is missing or not ", ndim, "-dimensional; cannot deduce the Swin architecture");
    return it->second;
  };
  const auto& patch = get("patch_embed.proj.weight", 4);
  const auto& head =
      tensors.count("head.fc.weight") ? get("head.fc.weight", 2) : get("head.weight", 2);
  std::vector<int64_t> depths, heads;
  for (int64_t i = 0;; ++i) {
    const auto prefix = "layers." + std::to_string(i) + ".blocks.";
    int64_t d = 0;
    while (tensors.count(prefix + std::to_string(d) + ".attn.relative_position_bias_table")) ++d;
    if (d == 0) break;
    depths.push_back(d);
    heads.push_back(get(prefix + "0.attn.relative_position_bias_table", 2).size(1));
  }
  const auto& table = get("layers.0.blocks.0.attn.relative_position_bias_table", 2);
  const auto side =
      static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(table.size(0)))));
  TVIT_CHECK(side * side == table.size(0) && side % 2 == 1, where,
             ": relative_position_bias_table has ", table.size(0),
             " rows, expected (2 * window - 1)^2");
  const int64_t window = (side + 1) / 2;
  const auto levels = static_cast<int64_t>(depths.size());
  const int64_t dim = patch.size(0);
  const auto& fc1 = get("layers.0.blocks.0.mlp.fc1.weight", 2);
  auto o = models::ThinkingSwinOptions()
               .patch_size(patch.size(2))
               .in_channels(patch.size(1))
               .embed_dim(dim)
               .depths(depths)
               .num_heads(heads)
               .window_size(window)
               .image_size(patch.size(2) * window * (int64_t{1} << (levels - 1)))
               .num_classes(head.size(0))
               .mlp_ratio(static_cast<double>(fc1.size(0)) / static_cast<double>(dim))
               .qkv_bias(tensors.count("layers.0.blocks.0.attn.qkv.bias") > 0)
               .head_rounds({heads});
  o.validate();
  return o;
}

TensorMap adapt_checkpoint(const TensorMap& tensors) {
  // Microsoft's layout merges at the end of a level (layers.0.downsample exists) and names the
  // classifier "head"; timm's merges at the start of the next and names it "head.fc".
  const bool old_merges = tensors.count("layers.0.downsample.reduction.weight") > 0;
  const bool old_head = !tensors.count("head.fc.weight");
  static const std::regex downsample(R"(^layers\.(\d+)\.downsample\.(.*)$)");
  TensorMap out;
  for (const auto& [name, t] : tensors) {
    if (name.find("relative_position_index") != std::string::npos ||
        name.find("attn_mask") != std::string::npos) {
      continue;
    }
    std::string key = name;
    std::smatch m;
    if (old_merges && std::regex_match(name, m, downsample)) {
      key = "layers." + std::to_string(std::stoll(m[1]) + 1) + ".downsample." + m[2].str();
    } else if (old_head && util::starts_with(name, "head.")) {
      key = "head.fc." + name.substr(5);
    }
    out[key] = t;
  }
  return out;
}

}  // namespace thinkingvit::models::swin
