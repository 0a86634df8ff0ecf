#include "thinkingvit/io/model_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "thinkingvit/util/error.h"

namespace thinkingvit::io {

namespace {

std::string location(const std::string& path, const YAML::Node& node) {
  return "'" + path + "' line " + std::to_string(node.Mark().line + 1);
}

template <typename T>
T as(const YAML::Node& node, const std::string& path, const std::string& key, const char* type) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    fail(location(path, node), ": key 'model.", key, "' expects ", type, ", found '",
         YAML::Dump(node), "'");
  }
}

}  // namespace

models::ThinkingViTOptions model_options_from_yaml(const std::string& path) {
  TVIT_CHECK(std::filesystem::exists(path), "config '", path, "': no such file");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail("config '", path, "' line ", e.mark.line + 1, ": invalid YAML (", e.msg, ")");
  }
  TVIT_CHECK(root.IsMap() && root["model"] && root["model"].IsMap(), "config '", path,
             "': expected a top-level 'model' section (a map)");
  const auto model = root["model"];
  models::ThinkingViTOptions options;
  if (model["preset"]) {
    options = models::preset(as<std::string>(model["preset"], path, "preset", "a preset name"));
  }
  for (const auto& item : model) {
    const auto key = item.first.as<std::string>();
    const auto& v = item.second;
    if (key == "preset") continue;
    if (key == "image_size")
      options.image_size(as<int64_t>(v, path, key, "an integer"));
    else if (key == "patch_size")
      options.patch_size(as<int64_t>(v, path, key, "an integer"));
    else if (key == "in_channels")
      options.in_channels(as<int64_t>(v, path, key, "an integer"));
    else if (key == "num_classes")
      options.num_classes(as<int64_t>(v, path, key, "an integer"));
    else if (key == "head_dim")
      options.head_dim(as<int64_t>(v, path, key, "an integer"));
    else if (key == "depth")
      options.depth(as<int64_t>(v, path, key, "an integer"));
    else if (key == "mlp_ratio")
      options.mlp_ratio(as<double>(v, path, key, "a number"));
    else if (key == "qkv_bias")
      options.qkv_bias(as<bool>(v, path, key, "true or false"));
    else if (key == "norm_eps")
      options.norm_eps(as<double>(v, path, key, "a number"));
    else if (key == "drop_path_rate")
      options.drop_path_rate(as<double>(v, path, key, "a number"));
    else if (key == "stages") {
      options.stages(as<std::vector<int64_t>>(v, path, key, "a list of head counts"));
    } else if (key == "attention") {
      const auto text = as<std::string>(v, path, key, "'fused' or 'explicit'");
      TVIT_CHECK(text == "fused" || text == "explicit", location(path, v),
                 ": key 'model.attention' expects 'fused' or 'explicit', found '", text, "'");
      options.attention(text == "fused" ? models::AttentionBackend::kFused
                                        : models::AttentionBackend::kExplicit);
    } else {
      fail(location(path, item.first), ": unknown key 'model.", key, "'");
    }
  }
  try {
    options.validate();
  } catch (const Error& e) {
    fail("config '", path, "': ", e.what());
  }
  return options;
}

}  // namespace thinkingvit::io
