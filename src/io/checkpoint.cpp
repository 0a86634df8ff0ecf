#include "thinkingvit/io/checkpoint.h"

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "swin_schema.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::io {

namespace fs = std::filesystem;

std::string to_string(TensorStatus status) {
  switch (status) {
    case TensorStatus::kLoaded:
      return "loaded";
    case TensorStatus::kCropped:
      return "cropped";
    case TensorStatus::kEmbedded:
      return "embedded";
    case TensorStatus::kMissing:
      return "missing";
    case TensorStatus::kUnexpected:
      return "unexpected";
  }
  return "?";
}

int64_t LoadReport::count(TensorStatus status) const {
  return std::count_if(tensors.begin(), tensors.end(),
                       [status](const TensorReport& t) { return t.status == status; });
}

bool LoadReport::exact() const {
  return count(TensorStatus::kLoaded) == static_cast<int64_t>(tensors.size());
}

std::string LoadReport::summary() const {
  std::string out;
  for (auto s : {TensorStatus::kLoaded, TensorStatus::kCropped, TensorStatus::kEmbedded,
                 TensorStatus::kMissing, TensorStatus::kUnexpected}) {
    out += (out.empty() ? "" : ", ") + to_string(s) + " " + std::to_string(count(s));
  }
  return out;
}

namespace {

at::Tensor split_qkv(const at::Tensor& t) {
  auto shape = t.sizes().vec();
  shape[0] /= 3;
  shape.insert(shape.begin(), 3);
  return t.view(shape);  // 3D x ... -> 3 x D x ...
}

struct Plan {
  std::string name;
  at::Tensor file, model;
  TensorStatus status;
  bool stacked_qkv;
};

}  // namespace

LoadReport load_state_dict(models::ElasticModel& model, const TensorMap& file_tensors,
                           const std::string& source, const LoadOptions& options) {
  const TensorMap tensors =
      model.model_options().swin() ? swin::adapt_checkpoint(file_tensors) : file_tensors;
  const std::string where = "checkpoint '" + source + "'";
  LoadReport report;
  report.source = source;
  std::vector<Plan> plans;
  auto params = model.named_parameters(/*recurse=*/true);
  auto buffers = model.named_buffers(/*recurse=*/true);
  std::map<std::string, at::Tensor> targets;
  for (const auto& item : params) targets[item.key()] = item.value();
  for (const auto& item : buffers) targets[item.key()] = item.value();

  for (const auto& item : targets) {
    const std::string& name = item.first;  // a plain reference: the lambdas below capture it
    const at::Tensor& target = item.second;
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      report.tensors.push_back({name, TensorStatus::kMissing, {}, target.sizes().vec()});
      continue;
    }
    const auto& file = it->second;
    const auto fshape = file.sizes().vec(), mshape = target.sizes().vec();
    TVIT_CHECK(at::isFloatingType(file.scalar_type()), where, ": tensor '", name, "' has dtype ",
               c10::toString(file.scalar_type()), ", expected a floating type (F32, F16, BF16)");
    auto mismatch = [&](const std::string& why) {
      fail(where, ": tensor '", name, "' has shape ", shape_str(fshape), ", model expects ",
           shape_str(mshape), " (", why, ")");
    };
    if (fshape.size() != mshape.size()) mismatch("different number of dimensions");
    const auto layout = model.tensor_layout(name, static_cast<int64_t>(mshape.size()));
    const auto& widths = layout.nested;
    bool larger = false, smaller = false;
    for (size_t d = 0; d < fshape.size(); ++d) {
      if (fshape[d] == mshape[d]) continue;
      if (!widths[d]) mismatch("dimension " + std::to_string(d) + " cannot be adapted");
      (fshape[d] > mshape[d] ? larger : smaller) = true;
    }
    if (layout.stacked_qkv && fshape[0] % 3 != 0) mismatch("qkv rows must be a multiple of 3");
    if (larger && smaller) mismatch("larger in some dimensions and smaller in others");
    TensorStatus status = TensorStatus::kLoaded;
    if (larger) {
      if (!options.allow_crop) mismatch("cropping is switched off");
      status = TensorStatus::kCropped;
    } else if (smaller) {
      if (!options.allow_embed) mismatch("embedding is switched off");
      status = TensorStatus::kEmbedded;
    }
    report.tensors.push_back({name, status, fshape, mshape});
    plans.push_back({name, file, target, status, layout.stacked_qkv});
  }
  for (const auto& [name, file] : tensors) {
    if (!targets.count(name)) {
      report.tensors.push_back({name, TensorStatus::kUnexpected, file.sizes().vec(), {}});
    }
  }

  for (const auto& t : report.tensors) {
    const bool inexact = t.status != TensorStatus::kLoaded;
    if (options.strict && inexact) {
      fail(where, ": tensor '", t.name, "' is ", to_string(t.status),
           t.file_shape.empty() ? "" : " (file " + shape_str(t.file_shape) + ")",
           t.model_shape.empty() ? "" : " (model " + shape_str(t.model_shape) + ")",
           "; --strict requires an exact load");
    }
    if (t.status == TensorStatus::kMissing && !options.allow_missing) {
      fail(where, ": tensor '", t.name, "' ", shape_str(t.model_shape),
           " is missing from the file (", report.summary(), ")");
    }
  }

  torch::NoGradGuard no_grad;
  for (auto& plan : plans) {
    auto src = plan.file.to(plan.model.device(), plan.model.scalar_type());
    auto dst = plan.model;
    if (plan.status != TensorStatus::kLoaded && plan.stacked_qkv) {
      src = split_qkv(src);
      dst = split_qkv(dst);
    }
    for (int64_t d = 0; d < dst.dim(); ++d) {  // the common leading slice
      const int64_t n = std::min(src.size(d), dst.size(d));
      src = src.slice(d, 0, n);
      dst = dst.slice(d, 0, n);
    }
    dst.copy_(src);
  }
  return report;
}

TensorMap state_dict(const models::ElasticModel& model) {
  TensorMap out;
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    out[item.key()] = item.value().detach().to(at::kCPU, at::kFloat).contiguous().clone();
  }
  for (const auto& item : model.named_buffers(/*recurse=*/true)) {
    out[item.key()] = item.value().detach().to(at::kCPU).contiguous().clone();
  }
  return out;
}

void save_weights(const models::ElasticModel& model, const std::string& path,
                  std::map<std::string, std::string> metadata) {
  metadata.emplace("format", "pt");
  metadata.emplace("architecture", model.model_options().architecture());
  if (const auto* vit = model.model_options().vit()) {
    metadata.emplace("thinking_stages", shape_str(vit->stages()));
  }
  write_safetensors(path, state_dict(model), metadata);
}

namespace {

void strip_prefix(TensorMap& tensors, const std::string& prefix) {
  if (tensors.empty()) return;
  for (const auto& [name, unused] : tensors) {
    if (!util::starts_with(name, prefix)) return;
  }
  TensorMap stripped;
  for (auto& [name, t] : tensors) stripped[name.substr(prefix.size())] = t;
  tensors = std::move(stripped);
}

const at::Tensor& require(const TensorMap& tensors, const std::string& name,
                          const std::string& source, int64_t ndim) {
  auto it = tensors.find(name);
  TVIT_CHECK(it != tensors.end(), "checkpoint '", source, "': tensor '", name,
             "' is missing; cannot deduce the architecture (pass --preset or --config)");
  TVIT_CHECK(it->second.dim() == ndim, "checkpoint '", source, "': tensor '", name, "' has shape ",
             shape_str(it->second.sizes().vec()), ", expected ", ndim, " dimensions");
  return it->second;
}

// A DeiT-style ThinkingViT from timm-named tensors: width, depth, patch, channels, classes,
// image size, and the stages from the recycling projections.
models::ThinkingViTOptions vit_options_from_state(const TensorMap& tensors,
                                                  const std::string& source, int64_t head_dim) {
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
    auto it = tensors.find(models::recycle_projection_name(t) + ".weight");
    if (it == tensors.end()) break;
    const int64_t k = it->second.size(1);
    TVIT_CHECK(k % head_dim == 0, where, ": ", it->first, " takes width ", k,
               ", not a multiple of head_dim ", head_dim);
    stages.push_back(k / head_dim);
  }
  stages.push_back(dim / head_dim);
  auto options = models::ThinkingViTOptions()
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

// The architecture of a Hugging Face style folder: shapes from the tensors, overridden by a
// timm-style config.json (num_classes; model_args: thinking_stages, img_size, patch_size,
// in_chans, depth, mlp_ratio, qkv_bias, num_heads).
// More heads than any ViT has: a larger count in config.json is a broken file.
constexpr int64_t kMaxHeads = 1024;

models::ModelOptions options_from_config_json(const TensorMap& tensors, const std::string& source,
                                              const std::string& path) {
  nlohmann::json config;
  std::error_code error;
  TVIT_CHECK(!fs::is_directory(path, error), "'", path, "': is a directory, expected a JSON file");
  try {
    std::ifstream in(path);
    TVIT_CHECK(in, "cannot open '", path, "'");
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("'", path, "' is not valid JSON (", e.what(), ")");
  }
  // The structure first, so that a broken config.json is reported as such, not as a shape
  // mismatch in the weights it was meant to describe.
  TVIT_CHECK(config.is_object(), "'", path, "': expected a JSON object, found ", config.dump());
  if (swin::is_swin_config(config)) return swin::options_from_config(config, path);
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
  auto options = vit_options_from_state(tensors, source, head_dim);
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

// timm's optional "label_names": one string per class.
std::vector<std::string> label_names_from_config_json(const std::string& path,
                                                      int64_t num_classes) {
  std::ifstream in(path);
  const auto config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object() || !config.contains("label_names")) return {};
  const auto& names = config["label_names"];
  TVIT_CHECK(names.is_array() && static_cast<int64_t>(names.size()) == num_classes, "'", path,
             "': label_names must be a list of ", num_classes, " strings (one per class), found ",
             names.is_array() ? std::to_string(names.size()) + " entries" : names.dump());
  std::vector<std::string> out;
  for (const auto& n : names) {
    TVIT_CHECK(n.is_string(), "'", path, "': label_names must hold strings, found ", n.dump());
    out.push_back(n.get<std::string>());
  }
  return out;
}

}  // namespace

std::string config_json(const models::ModelOptions& options,
                        const std::vector<std::string>& label_names) {
  if (const auto* swin = options.swin()) {
    auto j = swin::config_json(*swin);
    if (!label_names.empty()) j["label_names"] = label_names;
    return j.dump(2) + "\n";
  }
  const auto& o = *options.vit();
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
  if (!label_names.empty()) j["label_names"] = label_names;
  return j.dump(2) + "\n";
}

models::ModelOptions options_from_state(const TensorMap& tensors, const std::string& source,
                                        int64_t head_dim) {
  if (swin::is_swin_state(tensors)) return swin::options_from_state(tensors, source);
  return vit_options_from_state(tensors, source, head_dim);
}

WeightsSource read_weights(const std::string& path) {
  WeightsSource source;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    source.path = (fs::path(path) / "model.safetensors").string();
    const auto config = (fs::path(path) / "config.json").string();
    TVIT_CHECK(fs::exists(source.path), "weights folder '", path,
               "': expected model.safetensors inside, found none");
    source.tensors = read_safetensors(source.path).tensors;
    strip_prefix(source.tensors, "module.");
    if (fs::exists(config)) {
      source.options = options_from_config_json(source.tensors, source.path, config);
      source.label_names = label_names_from_config_json(config, source.options->num_classes());
    }
    return source;
  }
  TVIT_CHECK(fs::exists(path, ec), "weights '", path, "': no such file or folder");
  source.path = path;
  source.tensors = read_safetensors(path).tensors;
  strip_prefix(source.tensors, "module.");
  return source;
}

}  // namespace thinkingvit::io
