#pragma once
// A model family (a DeiT-style ViT, a Swin, ...) as a plug-in. A family lives in its own folders,
// src/models/<name>/ and include/thinkingvit/models/<name>/, and supplies one ModelFamily: its
// presets, the keys of its `model:` section, how to read its architecture from a config.json or
// from tensors, how to adapt a checkpoint to its modules; and FamilyOptions, the options of one
// model behind the face every caller uses (sizes, stages, MACs, parameters, memory, the model
// itself, its config.json). The registry holds the families CMakeLists.txt lists in
// THINKINGVIT_MODEL_FAMILIES, the first being the default. Nothing outside a family's folders
// branches on a family or names one (tests/layers/check_layers.py checks it); adding one is
// described in docs/development.md.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "thinkingvit/models/layers.h"
#include "thinkingvit/models/macs.h"

namespace thinkingvit::models {

class ElasticModel;
class ModelFamily;

// Tensors by name, as a state dict or a safetensors file holds them.
using TensorMap = std::map<std::string, at::Tensor>;

// The options of one model of some family.
class FamilyOptions {
 public:
  virtual ~FamilyOptions() = default;
  virtual std::unique_ptr<FamilyOptions> clone() const = 0;
  virtual const ModelFamily& family() const = 0;

  virtual int64_t image_size() const = 0;
  virtual int64_t in_channels() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual void set_num_classes(int64_t value) = 0;
  virtual int64_t num_stages() const = 0;
  // Whether stage i > 0 recycles the tokens of stage i - 1.
  virtual bool recycling() const = 0;
  virtual void set_recycling(bool value) = 0;

  // The heads stage `stage` runs, as tables print them ("3"; "3-3-6-12" per level). `stage` is in
  // range (ModelOptions checks).
  virtual std::string stage_heads(int64_t stage) const = 0;
  virtual MacBreakdown stage_macs(int64_t stage) const = 0;
  virtual int64_t stage_parameter_count(int64_t stage) const = 0;
  virtual int64_t parameter_count() const = 0;
  // Floats of activations per image: what autograd keeps for backward through every stage
  // (training), or the largest block's working set (inference). See estimate_memory.
  virtual double activation_floats(bool training) const = 0;

  // Throws thinkingvit::Error naming the offending option.
  virtual void validate() const = 0;
  // "stages=[3, 6] image=224 ..." for logs; equal texts mean equal options.
  virtual std::string describe() const = 0;

  // A freshly initialised model of these (validated) options.
  virtual std::shared_ptr<ElasticModel> make_model() const = 0;
  // The timm-style config.json of a weights folder (a JSON object, without label_names), the
  // schema ModelFamily::options_from_config reads back.
  virtual std::string config_json() const = 0;
  // Entries the family adds to a safetensors file's metadata (the released "thinking_stages").
  virtual std::map<std::string, std::string> weights_metadata() const { return {}; }
};

// The options of family type T, and the delegations every family's options share; a family
// derives its FamilyOptions from this (ModelOptions::as<T>() finds T through it).
template <typename T>
class FamilyOptionsOf : public FamilyOptions {
 public:
  explicit FamilyOptionsOf(T options) : options_(std::move(options)) {}
  const T& options() const { return options_; }
  T& options() { return options_; }

  int64_t image_size() const override { return options_.image_size(); }
  int64_t in_channels() const override { return options_.in_channels(); }
  int64_t num_classes() const override { return options_.num_classes(); }
  void set_num_classes(int64_t value) override { options_.num_classes(value); }
  int64_t num_stages() const override { return options_.num_stages(); }
  bool recycling() const override { return options_.recycling(); }
  void set_recycling(bool value) override { options_.recycling(value); }
  void validate() const override { options_.validate(); }
  std::string describe() const override { return options_.describe(); }

 protected:
  T options_;
};

// The value of one `model:` key.
using OptionValue = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>,
                                 std::vector<std::vector<int64_t>>>;
enum class OptionType { kBool, kInteger, kNumber, kText, kIntegers, kIntegerLists };

// One key of a family's `model:` section. A key two families share has one type and meaning.
struct OptionKey {
  std::string name;                  // "depth" for model.depth
  OptionType type;                   // the alternative of OptionValue it holds
  std::string expects;               // for errors: "an integer", "a list of head counts"
  std::vector<std::string> choices;  // kText: the accepted values (empty: any)
  std::function<OptionValue(const FamilyOptions&)> get;
  std::function<void(FamilyOptions&, const OptionValue&)> set;
};

template <typename T>
constexpr OptionType option_type() {
  if constexpr (std::is_same_v<T, bool>) return OptionType::kBool;
  if constexpr (std::is_same_v<T, int64_t>) return OptionType::kInteger;
  if constexpr (std::is_same_v<T, double>) return OptionType::kNumber;
  if constexpr (std::is_same_v<T, std::string>) return OptionType::kText;
  if constexpr (std::is_same_v<T, std::vector<int64_t>>) return OptionType::kIntegers;
  return OptionType::kIntegerLists;
}

// The family options type T inside a FamilyOptions of that family.
template <typename T>
const T& options_of(const FamilyOptions& o) {
  return static_cast<const FamilyOptionsOf<T>&>(o).options();
}
template <typename T>
T& options_of(FamilyOptions& o) {
  return static_cast<FamilyOptionsOf<T>&>(o).options();
}

// The key `name` of type `type`, read and written through the TORCH_ARG accessor of the same
// name of family options type `Options`.
#define THINKINGVIT_OPTION_KEY(Options, type, name, expects)                                \
  ::thinkingvit::models::OptionKey {                                                        \
#name, ::thinkingvit::models::option_type<type>(), expects, {},                           \
        [](const ::thinkingvit::models::FamilyOptions& o) -> ::thinkingvit::models::OptionValue { \
          return ::thinkingvit::models::options_of<Options>(o).name();                        \
        },                                                                                    \
        [](::thinkingvit::models::FamilyOptions& o, const ::thinkingvit::models::OptionValue& v) { \
          ::thinkingvit::models::options_of<Options>(o).name(std::get<type>(v));              \
        } \
  }

// model.attention (fused | explicit | small) of family options type `Options`.
template <typename Options>
OptionKey attention_option_key() {
  return {"attention",
          OptionType::kText,
          "'fused', 'explicit' or 'small'",
          {"fused", "explicit", "small"},
          [](const FamilyOptions& o) -> OptionValue {
            return std::string(attention_backend_name(options_of<Options>(o).attention()));
          },
          [](FamilyOptions& o, const OptionValue& v) {
            options_of<Options>(o).attention(*attention_backend_from(std::get<std::string>(v)));
          }};
}

// `value` as YAML flow text: "3", "[3, 6]", "[[3, 6], [6, 12]]", "fused".
std::string option_text(const OptionValue& value);

class ModelFamily {
 public:
  virtual ~ModelFamily() = default;
  // The `model.family` value ("vit") and config.json's "architecture" ("thinkingvit").
  virtual std::string name() const = 0;
  virtual std::string architecture() const = 0;

  virtual std::vector<std::string> preset_names() const = 0;
  // `name` is one of preset_names().
  virtual std::unique_ptr<FamilyOptions> preset(const std::string& name) const = 0;
  // The options of `model.family: <name>` without a preset.
  virtual std::unique_ptr<FamilyOptions> defaults() const = 0;

  // Every key of the `model:` section the family reads, in the order a saved config writes them;
  // set() takes values of the key's type and throws thinkingvit::Error on a value it refuses.
  virtual const std::vector<OptionKey>& option_keys() const = 0;
  // The key whose value sets the number of stages ("stages"), for error messages.
  virtual std::string stages_key() const = 0;

  // Whether a weights folder's config.json (parsed JSON text, an object) describes this family.
  // The default family reads any config.json no other family claims.
  virtual bool claims_config(const std::string& json) const = 0;
  // The options it describes (validated), shapes taken from `tensors` (read from `source`) where
  // it leaves them out. Errors name `path` and the key.
  virtual std::unique_ptr<FamilyOptions> options_from_config(const std::string& json,
                                                             const TensorMap& tensors,
                                                             const std::string& source,
                                                             const std::string& path) const = 0;
  // Whether checkpoint tensors are of this family's layout; the default family reads any state
  // no other family claims, and names the tensor it misses.
  virtual bool claims_state(const TensorMap& tensors) const = 0;
  // The architecture the tensors' shapes give; `head_dim` where the width alone cannot tell the
  // heads.
  virtual std::unique_ptr<FamilyOptions> options_from_state(const TensorMap& tensors,
                                                            const std::string& source,
                                                            int64_t head_dim) const = 0;
  // A checkpoint as this family's modules name its tensors (old layouts renamed, buffers the
  // model does not keep dropped).
  virtual TensorMap adapt_checkpoint(const TensorMap& tensors) const { return tensors; }
};

// The registered families, the default first.
const std::vector<const ModelFamily*>& model_families();
const ModelFamily& default_model_family();
// The family named `name` (ModelFamily::name()); an Error listing the names otherwise.
const ModelFamily& model_family(const std::string& name);
// The family whose preset `name` is, or nullptr.
const ModelFamily* preset_family(const std::string& name);
// The family claiming a config.json / a state (the default one when none does).
const ModelFamily& config_family(const std::string& json);
const ModelFamily& state_family(const TensorMap& tensors);

}  // namespace thinkingvit::models
