#include "thinkingvit/models/family.h"

#include <algorithm>
#include <sstream>

#include "thinkingvit/util/error.h"

// The families CMakeLists.txt lists (THINKINGVIT_MODEL_FAMILIES), one
// THINKINGVIT_MODEL_FAMILY(name) line each; each family defines models::<name>::family().
#define THINKINGVIT_MODEL_FAMILY(name)  \
  namespace thinkingvit::models::name { \
  const ModelFamily& family();          \
  }
#include "thinkingvit_model_families.inc"
#undef THINKINGVIT_MODEL_FAMILY

namespace thinkingvit::models {

namespace {

template <typename T>
void write_list(std::ostringstream& out, const std::vector<T>& values) {
  out << "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out << ", ";
    if constexpr (std::is_same_v<T, int64_t>) {
      out << values[i];
    } else {
      write_list(out, values[i]);
    }
  }
  out << "]";
}

// Keys two families share must mean the same: one type (a table error otherwise).
std::vector<const ModelFamily*> checked(std::vector<const ModelFamily*> families) {
  std::map<std::string, std::pair<OptionType, std::string>> seen;
  for (const auto* family : families) {
    for (const auto& key : family->option_keys()) {
      const auto [it, fresh] = seen.emplace(key.name, std::make_pair(key.type, family->name()));
      TVIT_CHECK(fresh || it->second.first == key.type, "model families: key 'model.", key.name,
                 "' has one type in family '", it->second.second, "' and another in '",
                 family->name(), "'");
    }
  }
  return families;
}

}  // namespace

std::string option_text(const OptionValue& value) {
  std::ostringstream out;
  std::visit(
      [&out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          out << (v ? "true" : "false");
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>> ||
                             std::is_same_v<T, std::vector<std::vector<int64_t>>>) {
          write_list(out, v);
        } else {
          out << v;
        }
      },
      value);
  return out.str();
}

const std::vector<const ModelFamily*>& model_families() {
  static const std::vector<const ModelFamily*> families = checked({
#define THINKINGVIT_MODEL_FAMILY(name) &name::family(),
#include "thinkingvit_model_families.inc"
#undef THINKINGVIT_MODEL_FAMILY
  });
  return families;
}

const ModelFamily& default_model_family() { return *model_families().front(); }

const ModelFamily& model_family(const std::string& name) {
  std::string known;
  for (const auto* family : model_families()) {
    if (family->name() == name) return *family;
    known += (known.empty() ? "'" : ", '") + family->name() + "'";
  }
  fail("unknown model family '", name, "'; expected one of ", known);
}

const ModelFamily* preset_family(const std::string& name) {
  for (const auto* family : model_families()) {
    const auto names = family->preset_names();
    if (std::find(names.begin(), names.end(), name) != names.end()) return family;
  }
  return nullptr;
}

const ModelFamily& config_family(const std::string& json) {
  for (const auto* family : model_families()) {
    if (family != &default_model_family() && family->claims_config(json)) return *family;
  }
  return default_model_family();
}

const ModelFamily& state_family(const TensorMap& tensors) {
  for (const auto* family : model_families()) {
    if (family != &default_model_family() && family->claims_state(tensors)) return *family;
  }
  return default_model_family();
}

}  // namespace thinkingvit::models
