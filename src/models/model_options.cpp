#include "thinkingvit/models/model_options.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "thinkingvit/models/thinking_vit.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

ModelOptions::ModelOptions(ThinkingViTOptions vit) : options_(std::move(vit)) {}
ModelOptions::ModelOptions(ThinkingSwinOptions swin) : options_(std::move(swin)) {}

std::string ModelOptions::architecture() const {
  return std::visit([](const auto& o) { return std::string(o.kArchitecture); }, options_);
}

int64_t ModelOptions::image_size() const {
  return std::visit([](const auto& o) { return o.image_size(); }, options_);
}
int64_t ModelOptions::in_channels() const {
  return std::visit([](const auto& o) { return o.in_channels(); }, options_);
}
int64_t ModelOptions::num_classes() const {
  return std::visit([](const auto& o) { return o.num_classes(); }, options_);
}
int64_t ModelOptions::num_stages() const {
  return std::visit([](const auto& o) { return o.num_stages(); }, options_);
}
bool ModelOptions::recycling() const {
  return std::visit([](const auto& o) { return o.recycling(); }, options_);
}
ModelOptions& ModelOptions::num_classes(int64_t value) {
  std::visit([value](auto& o) { o.num_classes(value); }, options_);
  return *this;
}
ModelOptions& ModelOptions::recycling(bool value) {
  std::visit([value](auto& o) { o.recycling(value); }, options_);
  return *this;
}
void ModelOptions::validate() const {
  std::visit([](const auto& o) { o.validate(); }, options_);
  const auto n = static_cast<double>(parameter_count());
  TVIT_CHECK(n <= kMaxParameters, "model options: the model would have ", n,
             " parameters, beyond the supported ", kMaxParameters, " (", describe(), ")");
}

namespace {

// Floats of activations per image (see estimate_memory).
double vit_activations(const ThinkingViTOptions& o, bool training) {
  const double n = static_cast<double>(o.num_tokens()), r = o.mlp_ratio();
  double sum = 0, largest = 0;
  for (const auto heads : o.stages()) {
    const double d = static_cast<double>(heads * o.head_dim()), h = static_cast<double>(heads);
    sum += static_cast<double>(o.depth()) * ((8 + 2 * r) * n * d + 2 * h * n * n);
    largest = std::max(largest, (5 + r) * n * d + 2 * h * n * n);
  }
  return training ? sum : largest;
}

double swin_activations(const ThinkingSwinOptions& o, bool training) {
  double sum = 0, largest = 0;
  for (int64_t stage = 0; stage < o.num_stages(); ++stage) {
    for (int64_t level = 0; level < o.num_levels(); ++level) {
      const double res = static_cast<double>(o.resolution(level));
      const double window = static_cast<double>(o.window(level));
      const double padded = std::pow(std::ceil(res / window) * window, 2.0);
      const double n = res * res, c = static_cast<double>(o.round_width(stage, level));
      const double hidden = static_cast<double>(o.round_hidden(stage, level));
      const double attention =
          2 * static_cast<double>(o.round_heads(stage, level)) * padded * window * window;
      sum += static_cast<double>(o.depths()[level]) * (n * (8 * c + 2 * hidden) + attention);
      largest = std::max(largest, n * (5 * c + hidden) + attention);
    }
  }
  return training ? sum : largest;
}

}  // namespace

MemoryEstimate estimate_memory(const ModelOptions& options, int copies, int64_t batch,
                               bool training) {
  MemoryEstimate m;
  m.weights = static_cast<double>(options.parameter_count()) * 4.0 * copies;
  const double per_image = options.swin() ? swin_activations(*options.swin(), training)
                                          : vit_activations(*options.vit(), training);
  m.activations = per_image * 4.0 * static_cast<double>(batch);
  return m;
}

namespace {

std::string gib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return text;
}

}  // namespace

void check_fits_in_memory(const ModelOptions& options, int copies, const std::string& what,
                          int64_t batch, bool training, const c10::Device& device) {
  const double available = compat::device_memory_bytes(device);
  if (available <= 0) return;  // unknown: nothing to compare with
  const auto need = estimate_memory(options, copies, batch, training);
  if (need.total() <= available) return;
  const std::string weights = copies == 1   ? "weights "
                              : copies == 4 ? "weights, gradients and AdamW moments "
                                            : "weights, gradients, AdamW moments and EMA ";
  fail(what, ": the model has ", options.parameter_count(), " parameters; ",
       training ? "training" : "running", " it",
       batch > 0 ? " on batches of " + std::to_string(batch) : std::string(), " needs about ",
       gib(need.total()), " (", weights, gib(need.weights),
       batch > 0 ? ", activations " + gib(need.activations) : std::string(), "), more than the ",
       gib(available), " of ", device.is_cuda() ? "GPU " + device.str() : "this machine", " (",
       options.describe(), ")");
}

std::string ModelOptions::describe() const {
  return std::visit([](const auto& o) { return o.describe(); }, options_);
}

namespace {

void check_stage(const ModelOptions& o, int64_t stage) {
  TVIT_CHECK(stage >= 0 && stage < o.num_stages(), "stage ", stage, " out of range: the model has ",
             o.num_stages(), " stage(s)");
}

}  // namespace

std::string ModelOptions::stage_heads(int64_t stage) const {
  check_stage(*this, stage);
  if (const auto* o = swin()) {
    std::string out;
    for (auto h : o->head_rounds()[stage]) out += (out.empty() ? "" : "-") + std::to_string(h);
    return out;
  }
  return std::to_string(vit()->stages()[stage]);
}

MacBreakdown ModelOptions::stage_macs(int64_t stage) const {
  check_stage(*this, stage);
  if (const auto* o = swin()) return swin_stage_macs(*o, stage);
  return breakdown(models::stage_macs(*vit(), stage));
}

int64_t ModelOptions::stage_parameter_count(int64_t stage) const {
  check_stage(*this, stage);
  if (const auto* o = swin()) return swin_stage_parameter_count(*o, stage);
  return models::stage_parameter_count(*vit(), stage);
}

int64_t ModelOptions::parameter_count() const {
  if (const auto* o = swin()) return swin_parameter_count(*o);
  return total_parameter_count(*vit());
}

double expected_macs(const ModelOptions& options, const std::vector<double>& reach,
                     MacConvention convention, bool with_uncounted) {
  TVIT_CHECK(static_cast<int64_t>(reach.size()) == options.num_stages(),
             "expected one share per stage (", options.num_stages(), "), found ", reach.size());
  double total = 0.0;
  for (int64_t s = 0; s < options.num_stages(); ++s) {
    const auto m = options.stage_macs(s);
    const auto cost = m.total(convention) + (with_uncounted ? m.uncounted() : 0);
    total += reach[s] * static_cast<double>(cost);
  }
  return total;
}

ModelOptions model_preset(const std::string& name) {
  const auto names = model_preset_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    fail("unknown preset '", name, "'; expected one of: ", known);
  }
  if (is_swin_preset(name)) return swin_preset(name);
  return preset(name);
}

std::vector<std::string> model_preset_names() {
  auto names = preset_names();
  const auto& swin = swin_preset_names();
  names.insert(names.end(), swin.begin(), swin.end());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace thinkingvit::models
