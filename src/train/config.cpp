#include "thinkingvit/train/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <sstream>
#include <type_traits>

#include "../io/yaml_model.h"
#include "thinkingvit/data/rand_augment.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "thinkingvit/util/limits.h"
#include "thinkingvit/util/precision.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::train {

namespace {

using io::format_number;
using io::yaml_read;

const std::vector<std::string> kDatasets = {"fashion-mnist", "mnist",        "cifar10",
                                            "cifar100",      "image-folder", "synthetic"};
const std::vector<std::string> kSamplingModes = {"all", "sandwich", "stochastic"};
const std::vector<std::string> kDevices = {"auto", "cpu", "cuda"};
const std::vector<std::string> kBackends = {"auto", "gloo", "nccl"};
const std::vector<std::string> kBatchDtypes = {"auto", "uint8", "float32"};

std::string joined(const std::vector<std::string>& names, const char* separator = ", ") {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : separator) + name;
  return out;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

template <typename T>
std::string list_text(const std::vector<T>& values) {
  std::vector<std::string> items;
  for (const auto& v : values) items.push_back(format_number(v));
  return "[" + joined(items) + "]";
}

const char* interpolation_name(data::Interpolation interpolation) {
  switch (interpolation) {
    case data::Interpolation::kNearest:
      return "nearest";
    case data::Interpolation::kBilinear:
      return "bilinear";
    case data::Interpolation::kBicubic:
      return "bicubic";
  }
  return "bicubic";
}

// ---- One value: read with a type check, written so that reading it back gives the same ----

void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                int64_t& out) {
  out = yaml_read<int64_t>(v, where, key, "an integer");
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key, int& out) {
  out = yaml_read<int>(v, where, key, "an integer");
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                uint64_t& out) {
  // yaml-cpp would wrap a negative value around.
  if (!v.IsScalar() || v.Scalar().rfind('-', 0) == 0) {
    io::fail_type(where, v, key, "a non-negative integer");
  }
  out = yaml_read<uint64_t>(v, where, key, "a non-negative integer");
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                double& out) {
  out = yaml_read<double>(v, where, key, "a number");
  if (!std::isfinite(out)) io::fail_type(where, v, key, "a finite number");
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key, bool& out) {
  out = yaml_read<bool>(v, where, key, "true or false");
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                std::string& out) {
  out = io::yaml_read_string(v, where, key);
}
template <typename T>
void read_list(const YAML::Node& v, const std::string& where, const std::string& key,
               std::vector<T>& out) {
  if (v.IsNull()) {
    out.clear();
    return;
  }
  out = yaml_read<std::vector<T>>(v, where, key, "a list of numbers");
  for (const auto x : out) {
    if (!std::isfinite(x)) io::fail_type(where, v, key, "a list of finite numbers");
  }
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                std::vector<double>& out) {
  read_list(v, where, key, out);
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                std::vector<float>& out) {
  read_list(v, where, key, out);
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                std::array<double, 2>& out) {
  std::vector<double> values;
  if (v.IsSequence()) read_list(v, where, key, values);
  if (values.size() != 2) io::fail_type(where, v, key, "a list of two numbers");
  out = {values[0], values[1]};
}
void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                data::Interpolation& out) {
  const auto text = v.IsScalar() ? v.Scalar() : "";
  try {
    out = data::parse_interpolation(text, key);
  } catch (const Error&) {
    io::fail_type(where, v, key, "bicubic, bilinear or nearest");
  }
}

void read_value(const YAML::Node& v, const std::string& where, const std::string& key,
                util::Precision& out) {
  const auto text = v.IsScalar() ? v.Scalar() : io::yaml_show(v);
  if (text != "fp32" && text != "bf16") {
    fail(where, ": key '", key, "' expects one of fp32, bf16; found '", text, "'");
  }
  out = util::parse_precision(text, key);
}

template <typename T>
void write_value(YAML::Emitter& out, const T& v) {
  out << v;  // integers and bool
}
void write_value(YAML::Emitter& out, const double& v) { out << format_number(v); }
void write_value(YAML::Emitter& out, const std::string& v) { out << YAML::DoubleQuoted << v; }
template <typename T>
void write_list(YAML::Emitter& out, const T& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto v : values) out << format_number(v);
  out << YAML::EndSeq;
}
void write_value(YAML::Emitter& out, const std::vector<double>& v) { write_list(out, v); }
void write_value(YAML::Emitter& out, const std::vector<float>& v) { write_list(out, v); }
void write_value(YAML::Emitter& out, const std::array<double, 2>& v) { write_list(out, v); }
void write_value(YAML::Emitter& out, const data::Interpolation& v) { out << interpolation_name(v); }
void write_value(YAML::Emitter& out, const util::Precision& v) { out << util::to_string(v); }

// ---- What one key's value must be ----

// A rule on one key's value: its wording, in errors ("key 'k' expects <expects>, found v") and
// in the reference (docs/config.md), and its test: `number` for numeric keys, `one_of` or
// `non_empty` for text keys.
struct Check {
  std::string expects;
  std::function<bool(double)> number = {};
  std::vector<std::string> one_of = {};
  bool non_empty = false;
};

std::string noted(std::string text, const std::string& note) {
  return note.empty() ? text : text + " (" + note + ")";
}
Check int_at_least(int64_t min, const std::string& note = "") {
  return {noted("an integer >= " + std::to_string(min), note),
          [min](double v) { return v >= min; }};
}
Check int_in(int64_t lo, int64_t hi, const std::string& note = "") {
  return {noted("an integer in " + std::to_string(lo) + ".." + std::to_string(hi), note),
          [lo, hi](double v) { return v >= lo && v <= hi; }};
}
Check at_most(int64_t max, const std::string& unit) {
  return {"at most " + std::to_string(max) + " " + unit, [max](double v) { return v <= max; }};
}
Check value_at_least(double min, const std::string& note = "") {
  return {noted("a value >= " + format_number(min), note), [min](double v) { return v >= min; }};
}
Check above(double min, const std::string& what = "a value") {
  return {what + " > " + format_number(min), [min](double v) { return v > min; }};
}
// [lo, hi), (lo, hi) ...
Check value_in(double lo, double hi, bool lo_closed, bool hi_closed) {
  return {
      std::string("a value in ") + (lo_closed ? "[" : "(") + format_number(lo) + ", " +
          format_number(hi) + (hi_closed ? "]" : ")"),
      [=](double v) { return (lo_closed ? v >= lo : v > lo) && (hi_closed ? v <= hi : v < hi); }};
}
Check probability() {
  return {"a probability in [0, 1]", [](double v) { return v >= 0 && v <= 1; }};
}
Check one_of(const std::vector<std::string>& allowed) {
  Check c;
  c.expects = "one of " + joined(allowed);
  c.one_of = allowed;
  return c;
}
Check non_empty(const std::string& what) {
  Check c;
  c.expects = what;
  c.non_empty = true;
  return c;
}

// The first rule that `value` breaks, as the words after "key 'k' " ("" when none).
template <typename T>
std::string broken_rule(const std::vector<Check>& checks, const T& value) {
  for (const auto& check : checks) {
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
      if (check.number && !check.number(static_cast<double>(value))) {
        const std::string found = std::is_integral_v<T> ? std::to_string(value)
                                                        : format_number(static_cast<double>(value));
        return "expects " + check.expects + ", found " + found;
      }
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!check.one_of.empty() && !contains(check.one_of, value))
        return "expects " + check.expects + "; found '" + value + "'";
      if (check.non_empty && value.empty()) return "expects " + check.expects + ", found nothing";
    } else if constexpr (std::is_same_v<T, util::Precision>) {
      if (!check.one_of.empty() && !contains(check.one_of, util::to_string(value)))
        return "expects " + check.expects + "; found '" + util::to_string(value) + "'";
    }
  }
  return "";
}

// ---- The table of settings outside the model section ----

// Whether a key changes what a run computes (kTrajectory: a resume must keep it) or only how
// and where it runs (kSetting: workers, logging, checkpoints, evaluation).
enum class Affects { kTrajectory, kSetting };

struct Field {
  std::string key;  // "optimizer.lr"
  std::string doc;
  Affects affects = Affects::kSetting;
  std::vector<Check> checks;
  std::function<void(TrainConfig&, const YAML::Node&, const std::string& where)> read;
  std::function<void(YAML::Emitter&, const TrainConfig&)> write;
  // The rule the configuration's value breaks, as the words after "key 'k' " ("" when none).
  std::function<std::string(const TrainConfig&)> broken;
};

template <typename Get>
Field make_field(std::string key, Get get, Affects affects, std::string doc,
                 std::vector<Check> checks = {}) {
  using T = std::decay_t<decltype(get(std::declval<TrainConfig&>()))>;
  constexpr bool kNumber = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;
  constexpr bool kText = std::is_same_v<T, std::string>;
  constexpr bool kNamed = kText || std::is_same_v<T, util::Precision>;
  for (const auto& check : checks) {  // a rule the key's type cannot hold is a table error
    TVIT_CHECK((!check.number || kNumber) && (check.one_of.empty() || kNamed) &&
                   (!check.non_empty || kText),
               "configuration table: the rule '", check.expects, "' does not fit key '", key, "'");
  }
  Field f{key, std::move(doc), affects, std::move(checks), {}, {}, {}};
  f.read = [key, get](TrainConfig& c, const YAML::Node& v, const std::string& where) {
    read_value(v, where, key, get(c));
  };
  f.write = [get](YAML::Emitter& out, const TrainConfig& c) {
    write_value(out, get(const_cast<TrainConfig&>(c)));
  };
  f.broken = [get, checks = f.checks](const TrainConfig& c) {
    return broken_rule(checks, get(const_cast<TrainConfig&>(c)));
  };
  return f;
}

// The YAML key path is the member path: TVIT_FIELD(optimizer.lr, ...) is `optimizer: {lr: ...}`.
#define TVIT_FIELD(path, ...) \
  make_field(                 \
      #path, [](auto& c) -> auto& { return c.path; }, __VA_ARGS__)
constexpr auto kTrajectory = Affects::kTrajectory;
constexpr auto kSetting = Affects::kSetting;

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      TVIT_FIELD(data.dataset, kTrajectory, "the dataset", {one_of(kDatasets)}),
      TVIT_FIELD(data.root, kSetting, "its folder (fashion-mnist: Debian's location when empty)"),
      TVIT_FIELD(data.train_dir, kSetting, "image-folder: the training sub-folder"),
      TVIT_FIELD(data.val_dir, kSetting, "image-folder: the validation sub-folder"),
      TVIT_FIELD(data.class_list, kTrajectory,
                 "image-folder: a file naming one class folder per line"),
      TVIT_FIELD(data.synthetic_size, kTrajectory, "synthetic: images per split",
                 {int_in(1, data::kMaxSyntheticSize)}),
      TVIT_FIELD(data.train_limit, kTrajectory, "train on the first N images only",
                 {int_at_least(0, "0: all")}),
      TVIT_FIELD(data.val_limit, kSetting, "validate on the first N images only",
                 {int_at_least(0, "0: all")}),
      TVIT_FIELD(data.batch_size, kTrajectory, "images per process and step",
                 {int_at_least(1), at_most(1 << 20, "images per batch")}),
      TVIT_FIELD(data.eval_batch_size, kSetting, "images per validation / eval batch",
                 {int_at_least(1), at_most(1 << 20, "images per batch")}),
      TVIT_FIELD(data.num_workers, kSetting, "loader threads per process",
                 {int_in(0, util::kMaxThreads)}),
      TVIT_FIELD(data.prefetch_batches, kSetting,
                 "batches built ahead of the step (never fewer than num_workers)",
                 {int_in(1, 1024)}),
      TVIT_FIELD(data.skip_corrupt, kSetting,
                 "replace an unreadable image by the next one (else stop)"),
      TVIT_FIELD(data.fast_decode, kSetting,
                 "eval: DCT-scaled JPEG decoding (faster, pixels differ)"),
      TVIT_FIELD(data.pin_memory, kSetting, "page-locked batches on a GPU"),
      TVIT_FIELD(data.batch_dtype, kSetting,
                 "uint8: pixels to the device, normalised and erased there; auto: uint8 on a GPU",
                 {one_of(kBatchDtypes)}),
      TVIT_FIELD(data.repeated_aug, kTrajectory, "DeiT's repeated augmentation copies",
                 {int_at_least(1, "1: off")}),
      TVIT_FIELD(augment.train.size, kTrajectory, "training crop side (the model's image size)"),
      TVIT_FIELD(augment.train.scale, kTrajectory, "RandomResizedCrop area range [min, max]"),
      TVIT_FIELD(augment.train.ratio, kTrajectory, "RandomResizedCrop aspect range [min, max]"),
      TVIT_FIELD(augment.train.hflip, kTrajectory, "horizontal flip probability", {probability()}),
      TVIT_FIELD(augment.train.auto_augment, kTrajectory, "timm RandAugment policy ('': off)"),
      TVIT_FIELD(augment.train.random_erasing, kTrajectory, "random erasing probability",
                 {probability()}),
      TVIT_FIELD(augment.train.interpolation, kTrajectory, "bicubic | bilinear | nearest"),
      TVIT_FIELD(augment.train.small_image, kTrajectory,
                 "pad-and-crop instead of RandomResizedCrop"),
      TVIT_FIELD(augment.train.padding, kTrajectory, "small_image: padding", {int_at_least(0)}),
      TVIT_FIELD(augment.train.mean, kTrajectory, "normalisation mean per channel"),
      TVIT_FIELD(augment.train.std, kTrajectory, "normalisation std per channel"),
      TVIT_FIELD(augment.eval.size, kSetting, "eval crop side (the model's image size)"),
      TVIT_FIELD(augment.eval.crop_pct, kSetting,
                 "centre crop fraction: resize to size / crop_pct"),
      TVIT_FIELD(augment.eval.interpolation, kSetting, "bicubic | bilinear | nearest"),
      TVIT_FIELD(augment.eval.mean, kSetting, "normalisation mean per channel"),
      TVIT_FIELD(augment.eval.std, kSetting, "normalisation std per channel"),
      TVIT_FIELD(augment.mix.mixup_alpha, kTrajectory, "Mixup's Beta parameter",
                 {value_at_least(0, "0: off")}),
      TVIT_FIELD(augment.mix.cutmix_alpha, kTrajectory, "CutMix's Beta parameter",
                 {value_at_least(0, "0: off")}),
      TVIT_FIELD(augment.mix.prob, kTrajectory, "probability of mixing a batch", {probability()}),
      TVIT_FIELD(augment.mix.switch_prob, kTrajectory, "CutMix instead of Mixup when both are on",
                 {probability()}),
      TVIT_FIELD(augment.mix.label_smoothing, kTrajectory, "label smoothing of the soft targets",
                 {value_in(0, 1, true, false)}),
      TVIT_FIELD(augment.mix.correct_lam, kTrajectory, "lambda from the CutMix box after clipping"),
      TVIT_FIELD(loss.stage_weights, kTrajectory,
                 "each stage's loss weight (empty: 1 / stages each)"),
      TVIT_FIELD(optimizer.lr, kTrajectory,
                 "base learning rate for a global batch of lr_base_batch", {above(0)}),
      TVIT_FIELD(optimizer.lr_base_batch, kTrajectory,
                 "lr scales with global batch / lr_base_batch", {above(0)}),
      TVIT_FIELD(optimizer.weight_decay, kTrajectory, "AdamW weight decay (decayed group)",
                 {value_at_least(0)}),
      TVIT_FIELD(optimizer.beta1, kTrajectory, "AdamW beta1", {value_in(0, 1, true, false)}),
      TVIT_FIELD(optimizer.beta2, kTrajectory, "AdamW beta2", {value_in(0, 1, true, false)}),
      TVIT_FIELD(optimizer.eps, kTrajectory, "AdamW epsilon", {above(0)}),
      TVIT_FIELD(optimizer.clip_grad, kTrajectory, "gradient norm clip",
                 {value_at_least(0, "0: off")}),
      TVIT_FIELD(optimizer.accum_steps, kTrajectory, "batches per optimizer step",
                 {int_at_least(1)}),
      TVIT_FIELD(schedule.epochs, kTrajectory, "epochs of the cosine (then cooldown_epochs more)",
                 {int_at_least(1)}),
      TVIT_FIELD(schedule.warmup_epochs, kTrajectory, "linear warm-up (fractional with per_step)"),
      TVIT_FIELD(schedule.warmup_lr, kTrajectory, "warm-up's first learning rate",
                 {value_at_least(0)}),
      TVIT_FIELD(schedule.min_lr, kTrajectory, "the cosine's last learning rate",
                 {value_at_least(0)}),
      TVIT_FIELD(schedule.cooldown_epochs, kTrajectory, "epochs at min_lr after the cosine",
                 {int_at_least(0)}),
      TVIT_FIELD(schedule.per_step, kTrajectory, "the learning rate per step (false: per epoch)"),
      TVIT_FIELD(schedule.warmup_prefix, kTrajectory, "the cosine starts after the warm-up (Swin)"),
      TVIT_FIELD(ema.enabled, kTrajectory, "keep an EMA of the weights"),
      TVIT_FIELD(ema.decay, kTrajectory, "EMA decay per step", {value_in(0, 1, false, false)}),
      TVIT_FIELD(sampling.mode, kTrajectory, "the stages a step trains", {one_of(kSamplingModes)}),
      TVIT_FIELD(sampling.sandwich_k, kTrajectory,
                 "sandwich: random stages between smallest and largest"),
      TVIT_FIELD(sampling.weights, kTrajectory,
                 "stochastic: each stage's probability (empty: uniform)"),
      TVIT_FIELD(precision.dtype, kTrajectory, "training arithmetic (bf16: autocast)",
                 {one_of({"fp32", "bf16"})}),
      TVIT_FIELD(precision.eval_dtype, kSetting, "validation, eval and sweep arithmetic",
                 {one_of({"fp32", "bf16"})}),
      TVIT_FIELD(precision.tf32, kTrajectory, "fp32 matmuls and convolutions in TF32 on CUDA"),
      TVIT_FIELD(checkpoint.every_epochs, kSetting, "a checkpoint every N epochs (and the last)",
                 {int_at_least(1)}),
      TVIT_FIELD(checkpoint.every_steps, kSetting, "also every N optimizer steps, mid-epoch",
                 {int_at_least(0, "0: off")}),
      TVIT_FIELD(checkpoint.keep_last, kSetting, "checkpoint folders kept", {int_at_least(1)}),
      TVIT_FIELD(distributed.backend, kSetting, "auto: nccl on CUDA, gloo on the CPU",
                 {one_of(kBackends)}),
      TVIT_FIELD(distributed.timeout_s, kSetting, "a silent rank fails the others after this",
                 {above(0, "seconds")}),
      TVIT_FIELD(distributed.bucket_mb, kSetting, "gradient all-reduce bucket size",
                 {above(0, "megabytes")}),
      TVIT_FIELD(distributed.overlap, kSetting,
                 "all-reduce buckets during backward (false: after)"),
      TVIT_FIELD(run.output_dir, kSetting, "the run folder", {non_empty("a folder")}),
      TVIT_FIELD(run.seed, kTrajectory, "every random draw derives from it"),
      TVIT_FIELD(run.threads, kSetting, "intra-op threads per process",
                 {int_in(0, util::kMaxThreads, "0: automatic")}),
      TVIT_FIELD(run.log_every_steps, kSetting, "a step line every N steps", {int_at_least(1)}),
      TVIT_FIELD(run.eval_every_epochs, kSetting, "validation (and best/) every N epochs",
                 {int_at_least(1)}),
      TVIT_FIELD(run.device, kSetting, "auto | cpu | cuda", {one_of(kDevices)}),
  };
  return table;
}

#undef TVIT_FIELD

const Field* find_field(const std::string& key) {
  for (const auto& f : fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

std::string parent_of(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? "" : key.substr(0, dot);
}

// Sections ("data", "augment", "augment.train", ...) and their direct keys, in table order.
const std::map<std::string, std::vector<std::string>>& section_keys() {
  static const auto table = [] {
    std::map<std::string, std::vector<std::string>> children;
    const auto add = [&](const std::string& parent, const std::string& name) {
      auto& list = children[parent];
      if (!contains(list, name)) list.push_back(name);
    };
    add("", "model");
    children["model"] = io::YamlModelSection::keys();
    for (const auto& f : fields()) {
      for (auto key = f.key; !key.empty(); key = parent_of(key)) {
        const auto parent = parent_of(key);
        add(parent, parent.empty() ? key : key.substr(parent.size() + 1));
      }
    }
    return children;
  }();
  return table;
}

bool is_section(const std::string& path) { return section_keys().count(path) > 0; }

[[noreturn]] void fail_unknown(const std::string& where, const std::string& path) {
  TVIT_CHECK(path != "sampling.recycling", where,
             ": key 'sampling.recycling' has moved to 'model.recycling' (it is part of the model "
             "and saved with its weights)");
  const auto parent = parent_of(path);
  if (parent.empty()) {
    fail(where, ": unknown section '", path, "' (sections: ", joined(section_keys().at("")), ")");
  }
  if (!is_section(parent)) fail_unknown(where, parent);
  fail(where, ": unknown key '", path, "' (keys of '", parent,
       "': ", joined(section_keys().at(parent)), ")");
}

// ---- Reading a file and --set overrides over the defaults ----

class Loader {
 public:
  explicit Loader(std::string name) : name_(std::move(name)) {}

  void read_file(const YAML::Node& root) {
    if (root.IsNull()) return;
    TVIT_CHECK(root.IsMap(), "config '", name_, "' line ", root.Mark().line + 1,
               ": expected a map of sections (model, data, ...), found '", io::yaml_show(root),
               "'");
    const io::YamlWhere where = [this](const YAML::Node& key) {
      return "config '" + name_ + "' line " + std::to_string(key.Mark().line + 1);
    };
    read_map("", root, where);
  }

  // "section.key=value", the value in YAML syntax.
  void apply_override(const std::string& text) {
    const auto where = "--set " + text;
    const auto eq = text.find('=');
    TVIT_CHECK(eq != std::string::npos, where,
               ": expected section.key=value, e.g. --set optimizer.lr=1e-3");
    const auto path = util::trim(text.substr(0, eq));
    TVIT_CHECK(!path.empty(), where, ": expected a key path before '='");
    YAML::Node value;
    try {
      value = YAML::Load(text.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      fail(where, ": the value is not valid YAML (", e.msg, ")");
    }
    apply(path, value, [&where](const YAML::Node&) { return where; });
  }

  TrainConfig finish() {
    config_.model.preset = model_.preset();
    config_.model.options = model_.options();
    config_.model.init_from = model_.init_from();
    config_.model.init_strict = model_.init_strict();
    check();
    return config_;
  }

 private:
  void read_map(const std::string& section, const YAML::Node& map, const io::YamlWhere& where) {
    for (const auto& e : io::yaml_entries(map, where, section)) {
      apply(section.empty() ? e.name : section + "." + e.name, e.value, where, e.key);
    }
  }

  // `key` is the node that names `path` in a file (for the line); null for a --set.
  void apply(const std::string& path, const YAML::Node& value, const io::YamlWhere& where,
             const YAML::Node& key = YAML::Node()) {
    const auto here = where(key);
    if (is_section(path)) {  // "model" included
      if (value.IsNull()) return;
      if (!value.IsMap()) io::fail_type(here, value, path, "a map of settings");
      origins_[path] = here;
      if (path == "model") {
        model_.read_map(value, where);
      } else {
        read_map(path, value, where);
      }
    } else if (parent_of(path) == "model") {
      const auto name = path.substr(6);
      if (!contains(io::YamlModelSection::keys(), name)) fail_unknown(here, path);
      model_.read_key(name, value, here);
    } else if (const auto* field = find_field(path)) {
      field->read(config_, value, here);
      origins_[path] = here;
    } else {
      fail_unknown(here, path);
    }
  }

  // Where the value of `key` came from, for the checks that run after everything is read.
  std::string origin(const std::string& key) const {
    auto it = origins_.find(key);
    return it == origins_.end() ? "" : it->second;
  }

  // "config 'x.yaml' line 3: key 'schedule.epochs' expects ...", or for a value nobody set
  // "config 'x.yaml': key 'augment.train.mean' (default value) expects ...".
  template <typename... Args>
  void require(bool ok, const std::string& key, const Args&... what) const {
    if (ok) return;
    const auto where = origin(key);
    if (where.empty()) fail("config '", name_, "': key '", key, "' (default value) ", what...);
    fail(where, ": key '", key, "' ", what...);
  }

  // What sets the number of stages: "model.stages [3, 6]".
  std::string stages_source() const { return config_.model.options.stages_source(); }

  void require_stage_list(const std::string& key, const std::vector<double>& values,
                          int64_t num_stages) const {
    if (values.empty()) return;
    require(static_cast<int64_t>(values.size()) == num_stages, key, "expects one value per stage (",
            num_stages, " for ", stages_source(), "), found ", list_text(values));
    const bool non_negative =
        std::all_of(values.begin(), values.end(), [](double v) { return v >= 0; });
    const double sum = std::accumulate(values.begin(), values.end(), 0.0);
    require(non_negative && sum > 0, key, "expects non-negative values with a positive sum, found ",
            list_text(values));
  }

  void require_normalisation(const std::string& section, const std::vector<float>& mean,
                             const std::vector<float>& std, int64_t channels) const {
    require(static_cast<int64_t>(mean.size()) == channels, section + ".mean",
            "expects one value per channel (model.in_channels = ", channels, "), found ",
            list_text(mean));
    require(static_cast<int64_t>(std.size()) == channels, section + ".std",
            "expects one value per channel (model.in_channels = ", channels, "), found ",
            list_text(std));
    require(std::all_of(std.begin(), std.end(), [](float s) { return s > 0; }), section + ".std",
            "expects positive values, found ", list_text(std));
  }

  void check() const {
    const auto& c = config_;
    const auto& model = c.model.options;
    try {
      model.validate();
    } catch (const Error& e) {
      // validate() quotes the options involved ("model option 'image_size': 224 is not
      // divisible by 'patch_size' 15"): name the first one that was given explicitly.
      const std::string message = e.what();
      std::string where;
      for (size_t open = message.find('\''); open != std::string::npos && where.empty();) {
        const auto close = message.find('\'', open + 1);
        if (close == std::string::npos) break;
        where = model_.origin(message.substr(open + 1, close - open - 1));
        open = message.find('\'', close + 1);
      }
      if (where.empty()) where = model_.origin("preset");
      if (where.empty()) where = origin("model");
      if (where.empty()) where = "config '" + name_ + "'";
      fail(where, ": ", message);
    }
    const int64_t num_stages = model.num_stages();
    // Each key's own rules (the table), then the rules that span keys.
    for (const auto& field : fields()) {
      const auto broken = field.broken(c);
      require(broken.empty(), field.key, broken);
    }

    const auto& d = c.data;
    require(d.dataset != "image-folder" || !d.root.empty(), "data.root",
            "must name the dataset folder (holding '", d.train_dir, "' and '", d.val_dir,
            "') for the image-folder dataset, found ''");

    const auto& t = c.augment.train;
    require(t.size == model.image_size(), "augment.train.size", "expects the model's image size ",
            model.image_size(), " (model.image_size), found ", t.size);
    require(t.scale[0] > 0 && t.scale[0] <= t.scale[1] && t.scale[1] <= 1, "augment.train.scale",
            "expects [min, max] with 0 < min <= max <= 1, found ",
            list_text(std::vector<double>(t.scale.begin(), t.scale.end())));
    require(t.ratio[0] > 0 && t.ratio[0] <= t.ratio[1], "augment.train.ratio",
            "expects [min, max] with 0 < min <= max, found ",
            list_text(std::vector<double>(t.ratio.begin(), t.ratio.end())));
    if (!t.auto_augment.empty()) {
      try {
        data::parse_rand_augment(t.auto_augment, "key 'augment.train.auto_augment'");
      } catch (const Error& e) {
        fail(origin("augment.train.auto_augment"), ": ", e.what());
      }
    }
    require_normalisation("augment.train", t.mean, t.std, model.in_channels());

    const auto& v = c.augment.eval;
    require(v.size == model.image_size(), "augment.eval.size", "expects the model's image size ",
            model.image_size(), " (model.image_size), found ", v.size);
    require(data::crop_pct_fits(v.size, v.crop_pct), "augment.eval.crop_pct",
            "expects a value in (0, 1] with size / crop_pct <= ", util::kMaxImageSize, ", found ",
            format_number(v.crop_pct));
    require_normalisation("augment.eval", v.mean, v.std, model.in_channels());

    const auto& m = c.augment.mix;
    const bool mixing = (m.mixup_alpha > 0 || m.cutmix_alpha > 0) && m.prob > 0;
    // Mixup/CutMix pair sample b with sample B-1-b.
    require(!mixing || d.batch_size % 2 == 0, "data.batch_size",
            "must be even when Mixup/CutMix is on (augment.mix), found ", d.batch_size);

    require_stage_list("loss.stage_weights", c.loss.stage_weights, num_stages);

    const auto& s = c.schedule;
    require(s.warmup_epochs >= 0 && s.warmup_epochs <= s.epochs, "schedule.warmup_epochs",
            "expects a number in [0, schedule.epochs = ", s.epochs, "], found ", s.warmup_epochs);

    const auto& p = c.sampling;
    require(p.sandwich_k >= 0 && (p.mode != "sandwich" || p.sandwich_k <= num_stages - 2),
            "sampling.sandwich_k", "expects an integer in [0, ",
            std::max<int64_t>(num_stages - 2, 0),
            "] (stages between the smallest and the largest), found ", p.sandwich_k);
    require_stage_list("sampling.weights", p.weights, num_stages);
  }

  std::string name_;
  TrainConfig config_;
  io::YamlModelSection model_;
  std::map<std::string, std::string> origins_;  // key or section path -> where it was last set
};

}  // namespace

TrainConfig config_from_yaml_text(const std::string& text, const std::string& name,
                                  const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("config '", name, "' line ", e.mark.line + 1, ": invalid YAML (", e.msg, ")");
  }
  Loader loader(name);
  loader.read_file(root);
  for (const auto& set : overrides) loader.apply_override(set);
  return loader.finish();
}

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  util::check_is_file(path, "config");
  std::ifstream in(path, std::ios::binary);
  TVIT_CHECK(in, "config '", path, "': cannot open the file for reading");
  std::ostringstream text;
  text << in.rdbuf();
  return config_from_yaml_text(text.str(), path, overrides);
}

TrainConfig load_training_config(const std::string& path,
                                 const std::vector<std::string>& overrides) {
  util::check_is_file(path, "config");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception&) {
    return load_config(path, overrides);  // which names the missing file or the YAML error
  }
  std::vector<std::string> missing;
  for (const char* section : {"model", "data"}) {
    if (!root.IsMap() || !root[section]) missing.push_back(section);
  }
  TVIT_CHECK(missing.empty(), "config '", path, "': a training configuration names its model and ",
             "data, but section", missing.size() > 1 ? "s " : " ", joined(missing),
             missing.size() > 1 ? " are" : " is", " missing (see configs/ for complete examples)");
  return load_config(path, overrides);
}

std::string to_yaml(const TrainConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  io::YamlModelSection::emit(out, config.model.preset, config.model.options, config.model.init_from,
                             config.model.init_strict);
  out << YAML::EndMap;
  std::vector<std::string> open;  // the sections currently open, outermost first
  for (const auto& field : fields()) {
    std::vector<std::string> parts;
    std::stringstream path(field.key);
    for (std::string part; std::getline(path, part, '.');) parts.push_back(part);
    const auto name = parts.back();
    parts.pop_back();
    size_t common = 0;
    while (common < open.size() && common < parts.size() && open[common] == parts[common]) {
      ++common;
    }
    for (; open.size() > common; open.pop_back()) out << YAML::EndMap;
    for (; open.size() < parts.size(); open.push_back(parts[open.size()])) {
      out << YAML::Key << parts[open.size()] << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << name << YAML::Value;
    field.write(out, config);
    if (field.key == "schedule.cooldown_epochs" && config.schedule.cooldown_epochs > 0) {
      // The released recipe's cooldown comes on top of `epochs`: say what the run trains.
      out << YAML::Comment(
          "the run trains epochs + cooldown_epochs = " +
          std::to_string(config.schedule.epochs + config.schedule.cooldown_epochs) + " epochs");
    }
  }
  for (; !open.empty(); open.pop_back()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

namespace {

std::string value_text(const Field& field, const TrainConfig& config) {
  YAML::Emitter out;
  field.write(out, config);
  return out.c_str();
}

std::string model_text(const TrainConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  io::YamlModelSection::emit(out, config.model.preset, config.model.options, config.model.init_from,
                             config.model.init_strict);
  out << YAML::EndMap;
  return out.c_str();
}

}  // namespace

std::vector<std::string> trajectory_keys() {
  std::vector<std::string> keys;
  for (const auto& key : io::YamlModelSection::keys()) keys.push_back("model." + key);
  for (const auto& field : fields()) {
    if (field.affects == Affects::kTrajectory) keys.push_back(field.key);
  }
  return keys;
}

std::vector<std::string> trajectory_differences(const TrainConfig& a, const TrainConfig& b) {
  std::vector<std::string> keys;
  if (model_text(a) != model_text(b)) keys.push_back("model");
  for (const auto& field : fields()) {
    if (field.affects == Affects::kTrajectory && value_text(field, a) != value_text(field, b))
      keys.push_back(field.key);
  }
  return keys;
}

std::string config_reference() {
  const TrainConfig defaults;
  std::ostringstream out;
  out << "| key | default | expects | resume | what it is |\n|---|---|---|---|---|\n";
  for (const auto& field : fields()) {
    std::string expects;
    for (const auto& check : field.checks) expects += (expects.empty() ? "" : "; ") + check.expects;
    auto value = value_text(field, defaults);
    if (value.empty() || value == "\"\"") value = "''";
    out << "| `" << field.key << "` | `" << value << "` | " << (expects.empty() ? "-" : expects)
        << " | " << (field.affects == Affects::kTrajectory ? "same" : "free") << " | " << field.doc
        << " |\n";
  }
  return out.str();
}

}  // namespace thinkingvit::train
