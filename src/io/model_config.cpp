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

// The first family's definition of option key `name`, or nullptr.
const models::OptionKey* find_key(const std::string& name) {
  for (const auto* family : models::model_families()) {
    for (const auto& key : family->option_keys()) {
      if (key.name == name) return &key;
    }
  }
  return nullptr;
}

// `value` read as option `key`'s type; a wrong type or a value outside its choices is an Error.
models::OptionValue read_option(const models::OptionKey& key, const YAML::Node& value,
                                const std::string& where) {
  const auto path = "model." + key.name;
  switch (key.type) {
    case models::OptionType::kBool:
      return yaml_read<bool>(value, where, path, key.expects);
    case models::OptionType::kInteger:
      return yaml_read<int64_t>(value, where, path, key.expects);
    case models::OptionType::kNumber:
      return yaml_read<double>(value, where, path, key.expects);
    case models::OptionType::kIntegers:
      return yaml_read<std::vector<int64_t>>(value, where, path, key.expects);
    case models::OptionType::kIntegerLists:
      return yaml_read<std::vector<std::vector<int64_t>>>(value, where, path, key.expects);
    case models::OptionType::kText:
      break;
  }
  const auto text = value.IsScalar() ? value.Scalar() : "";
  const auto& choices = key.choices;
  if (!value.IsScalar() ||
      (!choices.empty() && std::find(choices.begin(), choices.end(), text) == choices.end())) {
    fail_type(where, value, path, key.expects);
  }
  return text;
}

// The families whose `model:` sections have key `name`, as "'vit'" or "'vit' or 'swin'".
std::string families_with(const std::string& name) {
  std::string out;
  for (const auto* family : models::model_families()) {
    const auto& keys = family->option_keys();
    if (std::any_of(keys.begin(), keys.end(), [&](const auto& k) { return k.name == name; })) {
      out += (out.empty() ? "'" : " or '") + family->name() + "'";
    }
  }
  return out;
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
    for (const auto* family : models::model_families()) {
      for (const auto& key : family->option_keys()) {
        if (std::find(k.begin(), k.end(), key.name) == k.end()) k.push_back(key.name);
      }
    }
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
    if (!family_.empty()) {
      try {
        models::model_family(family_);
      } catch (const Error& e) {
        fail(where, ": key 'model.family': ", e.what());
      }
    }
  } else if (key == "init_from") {
    init_from_ = yaml_read_string(value, where, "model.init_from");
  } else if (key == "init_strict") {
    init_strict_ = yaml_read<bool>(value, where, "model.init_strict", "true or false");
  } else if (const auto* option = find_key(key)) {
    explicit_[key] = read_option(*option, value, where);
  } else {
    fail(where, ": unknown key 'model.", key, "' (model keys: ", joined(keys()), ")");
  }
  origins_[key] = where;
}

models::ModelOptions YamlModelSection::options() const {
  models::ModelOptions options;
  if (!preset_.empty()) {
    options = models::model_preset(preset_);
  } else if (!family_.empty()) {
    options = models::ModelOptions(models::model_family(family_).defaults());
  }
  const auto& family = options.family();
  if (!family_.empty()) {
    TVIT_CHECK(family.name() == family_, origin("family"), ": key 'model.family' is '", family_,
               "' but preset '", preset_, "' is of family '", family.name(), "'");
  }
  for (const auto& [name, value] : explicit_) {
    const auto& keys = family.option_keys();
    const auto key = std::find_if(keys.begin(), keys.end(),
                                  [&name = name](const auto& k) { return k.name == name; });
    TVIT_CHECK(key != keys.end(), origin(name), ": key 'model.", name, "' is an option of family ",
               families_with(name), "; the model is '", options.architecture(), "' (family '",
               family.name(), "'; set model.family or a preset of the family)");
    key->set(options.family_options(), value);
  }
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
  key("family") << options.family().name();
  for (const auto& option : options.family().option_keys()) {
    out << YAML::Key << option.name << YAML::Value;
    std::visit(
        [&out](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, double>) {
            out << format_number(v);
          } else if constexpr (std::is_same_v<T, std::vector<std::vector<int64_t>>>) {
            out << YAML::Flow << YAML::BeginSeq;
            for (const auto& inner : v) out << YAML::Flow << inner;
            out << YAML::EndSeq;
          } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
            out << YAML::Flow << v;
          } else {
            out << v;
          }
        },
        option.get(options.family_options()));
  }
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
