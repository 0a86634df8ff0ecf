#pragma once
// Private to the library: reading YAML values with one-line errors, and the one parser of the
// `model:` section, shared by io::model_options_from_yaml and train::load_config. yaml-cpp stays
// out of the public headers.

#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "thinkingvit/models/model_options.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::io {

// Where a key of a file is, as the start of an error message: "config 'x.yaml' line 12". Values
// from the command line are placed by text instead: "--set optimizer.lr=abc".
using YamlWhere = std::function<std::string(const YAML::Node& key)>;

// A node as one line of flow-style YAML ("ten", "[1, 2]", "{a: 1}"), for error messages.
std::string yaml_show(const YAML::Node& node);

// The shortest decimal text that reads back as exactly `value` ("0.0005", "1e-06").
std::string format_number(double value);
std::string format_number(float value);

// "<where>: key '<key>' expects <expects>, found '<node>'".
[[noreturn]] void fail_type(const std::string& where, const YAML::Node& node,
                            const std::string& key, const std::string& expects);

// node.as<T>() with the error above on a wrong type.
template <typename T>
T yaml_read(const YAML::Node& node, const std::string& where, const std::string& key,
            const std::string& expects) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
  }
  fail_type(where, node, key, expects);
}

// A string value; a null value (`key:` with nothing after it) is the empty string.
std::string yaml_read_string(const YAML::Node& node, const std::string& where,
                             const std::string& key);

// The entries of a map in file order. A key that is not a plain name, or that appears twice, is an
// Error naming where(key) and the key's path under `section` ("" for the top level).
struct YamlEntry {
  std::string name;
  YAML::Node key, value;
};
std::vector<YamlEntry> yaml_entries(const YAML::Node& map, const YamlWhere& where,
                                    const std::string& section);

// The `model:` section of a configuration: an optional `preset` (or `family`) as the base, then
// any key of the family's option table (models::ModelFamily::option_keys), plus init_from and
// init_strict for training. It is assembled from a file's map and from single keys (`--set
// model.depth=3`); the preset is the base whatever the order, so a later preset keeps the keys
// given explicitly.
class YamlModelSection {
 public:
  // Every key of the section, `preset` first.
  static const std::vector<std::string>& keys();

  // Reads a whole `model:` map. Unknown keys, duplicates and wrong types are Errors naming
  // where(key) and 'model.<key>'.
  void read_map(const YAML::Node& model, const YamlWhere& where);
  // Reads one key of the section; `where` places it in error messages.
  void read_key(const std::string& key, const YAML::Node& value, const std::string& where);

  const std::string& preset() const { return preset_; }
  // The preset (or the default options) with the explicit keys applied; not validated.
  models::ModelOptions options() const;
  const std::string& init_from() const { return init_from_; }
  bool init_strict() const { return init_strict_; }
  // Where the last value of `key` came from, or "" when it was never given.
  std::string origin(const std::string& key) const;

  // The section as explicit YAML keys (the preset, every option, init_from, init_strict) inside
  // the caller's open map, so that reading it back gives the same options whatever the preset.
  static void emit(YAML::Emitter& out, const std::string& preset,
                   const models::ModelOptions& options, const std::string& init_from,
                   bool init_strict);

 private:
  std::string preset_;
  std::string family_;  // a ModelFamily::name(), or "" (the preset's, or the default family)
  // Option key -> its value, type-checked when read, applied to the family's options in options().
  std::map<std::string, models::OptionValue> explicit_;
  std::string init_from_;
  bool init_strict_ = false;
  std::map<std::string, std::string> origins_;
};

}  // namespace thinkingvit::io
