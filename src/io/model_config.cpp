#include "thinkingvit/io/model_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "yaml_model.h"

namespace thinkingvit::io {

std::string yaml_show(const YAML::Node& node) {
  if (!node || node.IsNull()) return "";
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

std::string format_number(double value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  char text[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, value);
    if (std::strtod(text, nullptr) == value) break;
  }
  return text;
}

std::string format_number(float value) {
  if (std::isnan(value)) return ".nan";
  if (std::isinf(value)) return value > 0 ? ".inf" : "-.inf";
  char text[40];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, static_cast<double>(value));
    if (std::strtof(text, nullptr) == value) break;
  }
  return text;
}

void fail_type(const std::string& where, const YAML::Node& node, const std::string& key,
               const std::string& expects) {
  fail(where, ": key '", key, "' expects ", expects, ", found '", yaml_show(node), "'");
}

std::string yaml_read_string(const YAML::Node& node, const std::string& where,
                             const std::string& key) {
  if (node.IsNull()) return "";
  if (!node.IsScalar()) fail_type(where, node, key, "a string");
  return node.Scalar();
}

std::vector<YamlEntry> yaml_entries(const YAML::Node& map, const YamlWhere& where,
                                    const std::string& section) {
  std::vector<YamlEntry> entries;
  std::set<std::string> seen;
  for (const auto& item : map) {
    const auto path = [&](const std::string& name) {
      return section.empty() ? name : section + "." + name;
    };
    TVIT_CHECK(item.first.IsScalar() && !item.first.Scalar().empty(), where(item.first),
               ": expected a key name in ", section.empty() ? "the top level" : "'" + section + "'",
               ", found '", yaml_show(item.first), "'");
    const auto& name = item.first.Scalar();
    TVIT_CHECK(seen.insert(name).second, where(item.first), ": duplicate key '", path(name), "'");
    entries.push_back({name, item.first, item.second});
  }
  return entries;
}

namespace {

using OptionSetter = std::function<void(models::ModelOptions&)>;

const std::vector<std::string> kOptionKeys = {
    "image_size", "patch_size", "in_channels", "num_classes", "mlp_ratio", "qkv_bias", "norm_eps",
    "drop_path_rate", "attention", "recycling",
    // ViT
    "head_dim", "depth", "stages",
    // Swin
    "embed_dim", "depths", "num_heads", "window_size", "head_rounds"};

// Applies `f` to the options of whichever family the model is.
template <typename F>
void on_family(models::ModelOptions& o, F&& f) {
  if (auto* vit = o.vit()) {
    f(*vit);
  } else {
    f(*o.swin());
  }
}

// Reads `value` as the option `key`; throws on a wrong type, returns null for an unknown key.
OptionSetter read_option(const std::string& key, const YAML::Node& value,
                         const std::string& where) {
  const auto path = "model." + key;
  const auto integer = [&] { return yaml_read<int64_t>(value, where, path, "an integer"); };
  const auto number = [&] { return yaml_read<double>(value, where, path, "a number"); };
  const auto boolean = [&] { return yaml_read<bool>(value, where, path, "true or false"); };
  const auto list = [&](const char* what) {
    return yaml_read<std::vector<int64_t>>(value, where, path, what);
  };
  // A key of one family on a model of the other is an error naming the key.
  const auto vit = [path, where](models::ModelOptions& o) -> models::ThinkingViTOptions& {
    TVIT_CHECK(o.vit() != nullptr, where, ": key '", path, "' is a ViT option; the model is '",
               o.architecture(), "'");
    return *o.vit();
  };
  const auto swin = [path, where](models::ModelOptions& o) -> models::ThinkingSwinOptions& {
    TVIT_CHECK(o.swin() != nullptr, where, ": key '", path, "' is a Swin option; the model is '",
               o.architecture(), "' (set model.family: swin or a Swin preset)");
    return *o.swin();
  };
  using Options = models::ModelOptions;
  // Keys every family has.
  if (key == "image_size") {
    return [v = integer()](Options& o) { on_family(o, [&](auto& f) { f.image_size(v); }); };
  }
  if (key == "patch_size") {
    return [v = integer()](Options& o) { on_family(o, [&](auto& f) { f.patch_size(v); }); };
  }
  if (key == "in_channels") {
    return [v = integer()](Options& o) { on_family(o, [&](auto& f) { f.in_channels(v); }); };
  }
  if (key == "num_classes") return [v = integer()](Options& o) { o.num_classes(v); };
  if (key == "mlp_ratio") {
    return [v = number()](Options& o) { on_family(o, [&](auto& f) { f.mlp_ratio(v); }); };
  }
  if (key == "norm_eps") {
    return [v = number()](Options& o) { on_family(o, [&](auto& f) { f.norm_eps(v); }); };
  }
  if (key == "drop_path_rate") {
    return [v = number()](Options& o) { on_family(o, [&](auto& f) { f.drop_path_rate(v); }); };
  }
  if (key == "qkv_bias") {
    return [v = boolean()](Options& o) { on_family(o, [&](auto& f) { f.qkv_bias(v); }); };
  }
  if (key == "recycling") return [v = boolean()](Options& o) { o.recycling(v); };
  if (key == "attention") {
    const auto text = value.IsScalar() ? value.Scalar() : "";
    const auto backend = models::attention_backend_from(text);
    if (!backend) fail_type(where, value, path, "'fused', 'explicit' or 'small'");
    return [b = *backend](Options& o) { on_family(o, [&](auto& f) { f.attention(b); }); };
  }
  // ViT keys.
  if (key == "head_dim") return [v = integer(), vit](Options& o) { vit(o).head_dim(v); };
  if (key == "depth") return [v = integer(), vit](Options& o) { vit(o).depth(v); };
  if (key == "stages") {
    return [v = list("a list of head counts"), vit](Options& o) { vit(o).stages(v); };
  }
  // Swin keys.
  if (key == "embed_dim") return [v = integer(), swin](Options& o) { swin(o).embed_dim(v); };
  if (key == "window_size") return [v = integer(), swin](Options& o) { swin(o).window_size(v); };
  if (key == "depths") {
    return [v = list("a list of block counts"), swin](Options& o) { swin(o).depths(v); };
  }
  if (key == "num_heads") {
    return [v = list("a list of head counts"), swin](Options& o) { swin(o).num_heads(v); };
  }
  if (key == "head_rounds") {
    return [v = yaml_read<std::vector<std::vector<int64_t>>>(value, where, path,
                                                             "a list of head-count lists"),
            swin](Options& o) { swin(o).head_rounds(v); };
  }
  return nullptr;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

const std::vector<std::string>& YamlModelSection::keys() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> k = {"preset", "family"};
    k.insert(k.end(), kOptionKeys.begin(), kOptionKeys.end());
    k.push_back("init_from");
    k.push_back("init_strict");
    return k;
  }();
  return all;
}

void YamlModelSection::read_map(const YAML::Node& model, const YamlWhere& where) {
  const auto entries = yaml_entries(model, where, "model");
  const auto known = [](const std::string& name) {
    const auto& k = keys();
    return std::find(k.begin(), k.end(), name) != k.end();
  };
  for (const auto& e : entries) {
    TVIT_CHECK(known(e.name), where(e.key), ": unknown key 'model.", e.name,
               "' (model keys: ", joined(keys()), ")");
  }
  // The preset (or family) is the base, wherever it stands in the map.
  for (const auto& e : entries) {
    if (e.name == "preset" || e.name == "family") read_key(e.name, e.value, where(e.key));
  }
  for (const auto& e : entries) {
    if (e.name != "preset" && e.name != "family") read_key(e.name, e.value, where(e.key));
  }
}

void YamlModelSection::read_key(const std::string& key, const YAML::Node& value,
                                const std::string& where) {
  if (key == "preset") {
    const auto name = yaml_read_string(value, where, "model.preset");
    if (!name.empty()) {
      try {
        models::model_preset(name);
      } catch (const Error& e) {
        fail(where, ": key 'model.preset': ", e.what());
      }
    }
    preset_ = name;
  } else if (key == "family") {
    family_ = yaml_read_string(value, where, "model.family");
    TVIT_CHECK(family_ == "vit" || family_ == "swin" || family_.empty(), where,
               ": key 'model.family' expects 'vit' or 'swin', found '", family_, "'");
  } else if (key == "init_from") {
    init_from_ = yaml_read_string(value, where, "model.init_from");
  } else if (key == "init_strict") {
    init_strict_ = yaml_read<bool>(value, where, "model.init_strict", "true or false");
  } else if (auto setter = read_option(key, value, where)) {
    explicit_[key] = std::move(setter);
  } else {
    fail(where, ": unknown key 'model.", key, "' (model keys: ", joined(keys()), ")");
  }
  origins_[key] = where;
}

models::ModelOptions YamlModelSection::options() const {
  models::ModelOptions options;
  if (!preset_.empty()) {
    options = models::model_preset(preset_);
  } else if (family_ == "swin") {
    options = models::ThinkingSwinOptions();
  }
  if (!family_.empty()) {
    const bool swin = options.swin() != nullptr;
    TVIT_CHECK(swin == (family_ == "swin"), origin("family"), ": key 'model.family' is '", family_,
               "' but preset '", preset_, "' is a ", swin ? "Swin" : "ViT");
  }
  for (const auto& [key, assign] : explicit_) assign(options);
  return options;
}

std::string YamlModelSection::origin(const std::string& key) const {
  auto it = origins_.find(key);
  return it == origins_.end() ? "" : it->second;
}

void YamlModelSection::emit(YAML::Emitter& out, const std::string& preset,
                            const models::ModelOptions& options, const std::string& init_from,
                            bool init_strict) {
  const auto key = [&](const char* name) -> YAML::Emitter& {
    return out << YAML::Key << name << YAML::Value;
  };
  key("preset") << YAML::DoubleQuoted << preset;
  key("family") << (options.swin() ? "swin" : "vit");
  key("image_size") << options.image_size();
  key("in_channels") << options.in_channels();
  key("num_classes") << options.num_classes();
  if (const auto* o = options.vit()) {
    key("patch_size") << o->patch_size();
    key("head_dim") << o->head_dim();
    key("depth") << o->depth();
    key("mlp_ratio") << format_number(o->mlp_ratio());
    key("qkv_bias") << o->qkv_bias();
    key("norm_eps") << format_number(o->norm_eps());
    key("drop_path_rate") << format_number(o->drop_path_rate());
    key("stages") << YAML::Flow << o->stages();
    key("attention") << models::attention_backend_name(o->attention());
  } else {
    const auto* s = options.swin();
    key("patch_size") << s->patch_size();
    key("embed_dim") << s->embed_dim();
    key("depths") << YAML::Flow << s->depths();
    key("num_heads") << YAML::Flow << s->num_heads();
    key("window_size") << s->window_size();
    key("mlp_ratio") << format_number(s->mlp_ratio());
    key("qkv_bias") << s->qkv_bias();
    key("norm_eps") << format_number(s->norm_eps());
    key("drop_path_rate") << format_number(s->drop_path_rate());
    out << YAML::Key << "head_rounds" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& round : s->head_rounds()) out << YAML::Flow << round;
    out << YAML::EndSeq;
    key("attention") << models::attention_backend_name(s->attention());
  }
  key("recycling") << options.recycling();
  key("init_from") << YAML::DoubleQuoted << init_from;
  key("init_strict") << init_strict;
}

namespace {

YAML::Node load_yaml(const std::string& path) {
  util::check_is_file(path, "config");
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    fail("config '", path, "' line ", e.mark.line + 1, ": invalid YAML (", e.msg, ")");
  }
}

bool has_model_section(const YAML::Node& root) {
  return root.IsMap() && root["model"] && root["model"].IsMap();
}

}  // namespace

bool is_model_file(const std::string& path) {
  const auto root = load_yaml(path);
  return has_model_section(root) && root.size() == 1;
}

models::ModelOptions model_options_from_yaml(const std::string& path) {
  const auto root = load_yaml(path);
  TVIT_CHECK(has_model_section(root), "config '", path,
             "': expected a top-level 'model' section (a map)");
  YamlModelSection section;
  section.read_map(root["model"], [&](const YAML::Node& key) {
    return "'" + path + "' line " + std::to_string(key.Mark().line + 1);
  });
  auto options = section.options();
  try {
    options.validate();
  } catch (const Error& e) {
    fail("config '", path, "': ", e.what());
  }
  return options;
}

}  // namespace thinkingvit::io
