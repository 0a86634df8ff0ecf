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

#include "../io/yaml_model.h"
#include "thinkingvit/data/rand_augment.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"
#include "thinkingvit/util/limits.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::train {

namespace {

using io::format_number;
using io::yaml_read;

const std::vector<std::string> kDatasets = {"fashion-mnist", "mnist",        "cifar10",
                                            "cifar100",      "image-folder", "synthetic"};
const std::vector<std::string> kSamplingModes = {"all", "sandwich", "stochastic"};
const std::vector<std::string> kDtypes = {"fp32", "bf16"};
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

// ---- The table of settings outside the model section ----

struct Field {
  std::string key;  // "optimizer.lr"
  std::function<void(TrainConfig&, const YAML::Node&, const std::string& where)> read;
  std::function<void(YAML::Emitter&, const TrainConfig&)> write;
};

template <typename Get>
Field make_field(std::string key, Get get) {
  return {key,
          [key, get](TrainConfig& c, const YAML::Node& v, const std::string& where) {
            read_value(v, where, key, get(c));
          },
          [get](YAML::Emitter& out, const TrainConfig& c) { write_value(out, get(c)); }};
}

// The YAML key path is the member path: TVIT_FIELD(optimizer.lr) is `optimizer: {lr: ...}`.
#define TVIT_FIELD(path) \
  make_field(            \
      #path, [](auto& c) -> auto& { return c.path; })

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      TVIT_FIELD(data.dataset),
      TVIT_FIELD(data.root),
      TVIT_FIELD(data.train_dir),
      TVIT_FIELD(data.val_dir),
      TVIT_FIELD(data.class_list),
      TVIT_FIELD(data.synthetic_size),
      TVIT_FIELD(data.train_limit),
      TVIT_FIELD(data.val_limit),
      TVIT_FIELD(data.batch_size),
      TVIT_FIELD(data.eval_batch_size),
      TVIT_FIELD(data.num_workers),
      TVIT_FIELD(data.prefetch_batches),
      TVIT_FIELD(data.skip_corrupt),
      TVIT_FIELD(data.fast_decode),
      TVIT_FIELD(data.pin_memory),
      TVIT_FIELD(data.batch_dtype),
      TVIT_FIELD(data.repeated_aug),
      TVIT_FIELD(augment.train.size),
      TVIT_FIELD(augment.train.scale),
      TVIT_FIELD(augment.train.ratio),
      TVIT_FIELD(augment.train.hflip),
      TVIT_FIELD(augment.train.auto_augment),
      TVIT_FIELD(augment.train.random_erasing),
      TVIT_FIELD(augment.train.interpolation),
      TVIT_FIELD(augment.train.small_image),
      TVIT_FIELD(augment.train.padding),
      TVIT_FIELD(augment.train.mean),
      TVIT_FIELD(augment.train.std),
      TVIT_FIELD(augment.eval.size),
      TVIT_FIELD(augment.eval.crop_pct),
      TVIT_FIELD(augment.eval.interpolation),
      TVIT_FIELD(augment.eval.mean),
      TVIT_FIELD(augment.eval.std),
      TVIT_FIELD(augment.mix.mixup_alpha),
      TVIT_FIELD(augment.mix.cutmix_alpha),
      TVIT_FIELD(augment.mix.prob),
      TVIT_FIELD(augment.mix.switch_prob),
      TVIT_FIELD(augment.mix.label_smoothing),
      TVIT_FIELD(augment.mix.correct_lam),
      TVIT_FIELD(loss.stage_weights),
      TVIT_FIELD(optimizer.lr),
      TVIT_FIELD(optimizer.lr_base_batch),
      TVIT_FIELD(optimizer.weight_decay),
      TVIT_FIELD(optimizer.beta1),
      TVIT_FIELD(optimizer.beta2),
      TVIT_FIELD(optimizer.eps),
      TVIT_FIELD(optimizer.clip_grad),
      TVIT_FIELD(optimizer.accum_steps),
      TVIT_FIELD(schedule.epochs),
      TVIT_FIELD(schedule.warmup_epochs),
      TVIT_FIELD(schedule.warmup_lr),
      TVIT_FIELD(schedule.min_lr),
      TVIT_FIELD(schedule.cooldown_epochs),
      TVIT_FIELD(schedule.per_step),
      TVIT_FIELD(schedule.warmup_prefix),
      TVIT_FIELD(ema.enabled),
      TVIT_FIELD(ema.decay),
      TVIT_FIELD(sampling.mode),
      TVIT_FIELD(sampling.sandwich_k),
      TVIT_FIELD(sampling.weights),
      TVIT_FIELD(precision.dtype),
      TVIT_FIELD(precision.eval_dtype),
      TVIT_FIELD(precision.tf32),
      TVIT_FIELD(checkpoint.every_epochs),
      TVIT_FIELD(checkpoint.every_steps),
      TVIT_FIELD(checkpoint.keep_last),
      TVIT_FIELD(distributed.backend),
      TVIT_FIELD(distributed.timeout_s),
      TVIT_FIELD(distributed.bucket_mb),
      TVIT_FIELD(distributed.overlap),
      TVIT_FIELD(run.output_dir),
      TVIT_FIELD(run.seed),
      TVIT_FIELD(run.threads),
      TVIT_FIELD(run.log_every_steps),
      TVIT_FIELD(run.eval_every_epochs),
      TVIT_FIELD(run.device),
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

  void require_one_of(const std::string& key, const std::string& value,
                      const std::vector<std::string>& allowed) const {
    require(contains(allowed, value), key, "expects one of ", joined(allowed), "; found '", value,
            "'");
  }

  void require_probability(const std::string& key, double p) const {
    require(p >= 0 && p <= 1, key, "expects a probability in [0, 1], found ", format_number(p));
  }

  // What sets the number of stages: "model.stages [3, 6]" for a ViT.
  std::string stages_source() const {
    const auto* vit = config_.model.options.vit();
    return vit ? "model.stages " + shape_str(vit->stages()) : config_.model.options.architecture();
  }

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

    const auto& d = c.data;
    require_one_of("data.dataset", d.dataset, kDatasets);
    require_one_of("data.batch_dtype", d.batch_dtype, kBatchDtypes);
    require(d.dataset != "image-folder" || !d.root.empty(), "data.root",
            "must name the dataset folder (holding '", d.train_dir, "' and '", d.val_dir,
            "') for the image-folder dataset, found ''");
    require(d.synthetic_size >= 1 && d.synthetic_size <= data::kMaxSyntheticSize,
            "data.synthetic_size", "expects an integer in 1..", data::kMaxSyntheticSize, ", found ",
            d.synthetic_size);
    require(d.train_limit >= 0, "data.train_limit", "expects an integer >= 0 (0: all), found ",
            d.train_limit);
    require(d.val_limit >= 0, "data.val_limit", "expects an integer >= 0 (0: all), found ",
            d.val_limit);
    require(d.batch_size >= 1, "data.batch_size", "expects an integer >= 1, found ", d.batch_size);
    require(d.eval_batch_size >= 1, "data.eval_batch_size", "expects an integer >= 1, found ",
            d.eval_batch_size);
    // Threads beyond these fail to start or stall the machine; batches beyond these are memory.
    require(d.num_workers >= 0 && d.num_workers <= util::kMaxThreads, "data.num_workers",
            "expects an integer in 0..", util::kMaxThreads, ", found ", d.num_workers);
    require(d.prefetch_batches >= 1 && d.prefetch_batches <= 1024, "data.prefetch_batches",
            "expects an integer in 1..1024, found ", d.prefetch_batches);
    require(d.batch_size <= 1 << 20, "data.batch_size",
            "expects at most 1048576 images per batch, found ", d.batch_size);
    require(d.eval_batch_size <= 1 << 20, "data.eval_batch_size",
            "expects at most 1048576 images per batch, found ", d.eval_batch_size);
    require(d.repeated_aug >= 1, "data.repeated_aug", "expects an integer >= 1 (1: off), found ",
            d.repeated_aug);

    const auto& t = c.augment.train;
    require(t.size == model.image_size(), "augment.train.size", "expects the model's image size ",
            model.image_size(), " (model.image_size), found ", t.size);
    require(t.scale[0] > 0 && t.scale[0] <= t.scale[1] && t.scale[1] <= 1, "augment.train.scale",
            "expects [min, max] with 0 < min <= max <= 1, found ",
            list_text(std::vector<double>(t.scale.begin(), t.scale.end())));
    require(t.ratio[0] > 0 && t.ratio[0] <= t.ratio[1], "augment.train.ratio",
            "expects [min, max] with 0 < min <= max, found ",
            list_text(std::vector<double>(t.ratio.begin(), t.ratio.end())));
    require_probability("augment.train.hflip", t.hflip);
    if (!t.auto_augment.empty()) {
      try {
        data::parse_rand_augment(t.auto_augment, "key 'augment.train.auto_augment'");
      } catch (const Error& e) {
        fail(origin("augment.train.auto_augment"), ": ", e.what());
      }
    }
    require_probability("augment.train.random_erasing", t.random_erasing);
    require(t.padding >= 0, "augment.train.padding", "expects an integer >= 0, found ", t.padding);
    require_normalisation("augment.train", t.mean, t.std, model.in_channels());

    const auto& v = c.augment.eval;
    require(v.size == model.image_size(), "augment.eval.size", "expects the model's image size ",
            model.image_size(), " (model.image_size), found ", v.size);
    require(data::crop_pct_fits(v.size, v.crop_pct), "augment.eval.crop_pct",
            "expects a value in (0, 1] with size / crop_pct <= ", util::kMaxImageSize, ", found ",
            format_number(v.crop_pct));
    require_normalisation("augment.eval", v.mean, v.std, model.in_channels());

    const auto& m = c.augment.mix;
    require(m.mixup_alpha >= 0, "augment.mix.mixup_alpha", "expects a value >= 0 (0: off), found ",
            format_number(m.mixup_alpha));
    require(m.cutmix_alpha >= 0, "augment.mix.cutmix_alpha",
            "expects a value >= 0 (0: off), found ", format_number(m.cutmix_alpha));
    require_probability("augment.mix.prob", m.prob);
    require_probability("augment.mix.switch_prob", m.switch_prob);
    require(m.label_smoothing >= 0 && m.label_smoothing < 1, "augment.mix.label_smoothing",
            "expects a value in [0, 1), found ", format_number(m.label_smoothing));
    const bool mixing = (m.mixup_alpha > 0 || m.cutmix_alpha > 0) && m.prob > 0;
    // Mixup/CutMix pair sample b with sample B-1-b.
    require(!mixing || d.batch_size % 2 == 0, "data.batch_size",
            "must be even when Mixup/CutMix is on (augment.mix), found ", d.batch_size);

    require_stage_list("loss.stage_weights", c.loss.stage_weights, num_stages);

    const auto& o = c.optimizer;
    require(o.lr > 0, "optimizer.lr", "expects a value > 0, found ", format_number(o.lr));
    require(o.lr_base_batch > 0, "optimizer.lr_base_batch", "expects a value > 0, found ",
            format_number(o.lr_base_batch));
    require(o.weight_decay >= 0, "optimizer.weight_decay", "expects a value >= 0, found ",
            format_number(o.weight_decay));
    require(o.beta1 >= 0 && o.beta1 < 1, "optimizer.beta1", "expects a value in [0, 1), found ",
            format_number(o.beta1));
    require(o.beta2 >= 0 && o.beta2 < 1, "optimizer.beta2", "expects a value in [0, 1), found ",
            format_number(o.beta2));
    require(o.eps > 0, "optimizer.eps", "expects a value > 0, found ", format_number(o.eps));
    require(o.clip_grad >= 0, "optimizer.clip_grad", "expects a value >= 0 (0: off), found ",
            format_number(o.clip_grad));
    require(o.accum_steps >= 1, "optimizer.accum_steps", "expects an integer >= 1, found ",
            o.accum_steps);

    const auto& s = c.schedule;
    require(s.epochs >= 1, "schedule.epochs", "expects an integer >= 1, found ", s.epochs);
    require(s.warmup_epochs >= 0 && s.warmup_epochs <= s.epochs, "schedule.warmup_epochs",
            "expects a number in [0, schedule.epochs = ", s.epochs, "], found ", s.warmup_epochs);
    require(s.warmup_lr >= 0, "schedule.warmup_lr", "expects a value >= 0, found ",
            format_number(s.warmup_lr));
    require(s.min_lr >= 0, "schedule.min_lr", "expects a value >= 0, found ",
            format_number(s.min_lr));
    require(s.cooldown_epochs >= 0, "schedule.cooldown_epochs", "expects an integer >= 0, found ",
            s.cooldown_epochs);

    require(c.ema.decay > 0 && c.ema.decay < 1, "ema.decay", "expects a value in (0, 1), found ",
            format_number(c.ema.decay));

    const auto& p = c.sampling;
    require_one_of("sampling.mode", p.mode, kSamplingModes);
    require(p.sandwich_k >= 0 && (p.mode != "sandwich" || p.sandwich_k <= num_stages - 2),
            "sampling.sandwich_k", "expects an integer in [0, ",
            std::max<int64_t>(num_stages - 2, 0),
            "] (stages between the smallest and the largest), found ", p.sandwich_k);
    require_stage_list("sampling.weights", p.weights, num_stages);

    require_one_of("precision.dtype", c.precision.dtype, kDtypes);
    require_one_of("precision.eval_dtype", c.precision.eval_dtype, kDtypes);
    require(c.checkpoint.every_epochs >= 1, "checkpoint.every_epochs",
            "expects an integer >= 1, found ", c.checkpoint.every_epochs);
    require(c.checkpoint.every_steps >= 0, "checkpoint.every_steps",
            "expects an integer >= 0 (0: off), found ", c.checkpoint.every_steps);
    require(c.checkpoint.keep_last >= 1, "checkpoint.keep_last", "expects an integer >= 1, found ",
            c.checkpoint.keep_last);

    const auto& ds = c.distributed;
    require_one_of("distributed.backend", ds.backend, kBackends);
    require(ds.timeout_s > 0, "distributed.timeout_s", "expects seconds > 0, found ",
            format_number(ds.timeout_s));
    require(ds.bucket_mb > 0, "distributed.bucket_mb", "expects megabytes > 0, found ",
            format_number(ds.bucket_mb));

    const auto& r = c.run;
    require(!r.output_dir.empty(), "run.output_dir", "expects a folder, found nothing");
    require(r.threads >= 0 && r.threads <= util::kMaxThreads, "run.threads",
            "expects an integer in 0..", util::kMaxThreads, " (0: automatic), found ", r.threads);
    require(r.log_every_steps >= 1, "run.log_every_steps", "expects an integer >= 1, found ",
            r.log_every_steps);
    require(r.eval_every_epochs >= 1, "run.eval_every_epochs", "expects an integer >= 1, found ",
            r.eval_every_epochs);
    require_one_of("run.device", r.device, kDevices);
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
  }
  for (; !open.empty(); open.pop_back()) out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace thinkingvit::train
