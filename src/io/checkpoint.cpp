#include "thinkingvit/io/checkpoint.h"

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>

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
  const TensorMap tensors = model.model_options().family().adapt_checkpoint(file_tensors);
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
  for (auto& entry : model.model_options().family_options().weights_metadata()) {
    metadata.insert(std::move(entry));
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
  const auto text = config.dump();
  return models::ModelOptions(
      models::config_family(text).options_from_config(text, tensors, source, path));
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
  auto j = nlohmann::json::parse(options.family_options().config_json());
  if (!label_names.empty()) j["label_names"] = label_names;
  return j.dump(2) + "\n";
}

models::ModelOptions options_from_state(const TensorMap& tensors, const std::string& source,
                                        int64_t head_dim) {
  return models::ModelOptions(
      models::state_family(tensors).options_from_state(tensors, source, head_dim));
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
