#include "thinkingvit/models/model_options.h"

#include <algorithm>
#include <cstdio>

#include "thinkingvit/models/layers.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

ModelOptions::ModelOptions() : options_(default_model_family().defaults()) {}
ModelOptions::ModelOptions(std::unique_ptr<FamilyOptions> options) : options_(std::move(options)) {
  TVIT_CHECK(options_ != nullptr, "model options: no family options");
}
ModelOptions::ModelOptions(const ModelOptions& other) : options_(other.options_->clone()) {}
ModelOptions& ModelOptions::operator=(const ModelOptions& other) {
  if (this != &other) options_ = other.options_->clone();
  return *this;
}
ModelOptions::~ModelOptions() = default;

std::string ModelOptions::architecture() const { return family().architecture(); }

ModelOptions& ModelOptions::num_classes(int64_t value) {
  options_->set_num_classes(value);
  return *this;
}
ModelOptions& ModelOptions::recycling(bool value) {
  options_->set_recycling(value);
  return *this;
}
void ModelOptions::validate() const {
  options_->validate();
  const auto n = static_cast<double>(parameter_count());
  TVIT_CHECK(n <= kMaxParameters, "model options: the model would have ", n,
             " parameters, beyond the supported ", kMaxParameters, " (", describe(), ")");
}

std::string ModelOptions::stages_source() const {
  const auto key = family().stages_key();
  for (const auto& option : family().option_keys()) {
    if (option.name == key) return "model." + key + " " + option_text(option.get(*options_));
  }
  return architecture();
}

MemoryEstimate estimate_memory(const ModelOptions& options, int copies, int64_t batch,
                               bool training) {
  MemoryEstimate m;
  m.weights = static_cast<double>(options.parameter_count()) * 4.0 * copies;
  const double per_image = options.family_options().activation_floats(training);
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

namespace {

void check_stage(const ModelOptions& o, int64_t stage) {
  TVIT_CHECK(stage >= 0 && stage < o.num_stages(), "stage ", stage, " out of range: the model has ",
             o.num_stages(), " stage(s)");
}

}  // namespace

std::string ModelOptions::stage_heads(int64_t stage) const {
  check_stage(*this, stage);
  return options_->stage_heads(stage);
}

MacBreakdown ModelOptions::stage_macs(int64_t stage) const {
  check_stage(*this, stage);
  return options_->stage_macs(stage);
}

int64_t ModelOptions::stage_parameter_count(int64_t stage) const {
  check_stage(*this, stage);
  return options_->stage_parameter_count(stage);
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
  const auto* family = preset_family(name);
  if (family == nullptr) {
    std::string known;
    for (const auto& n : model_preset_names()) known += (known.empty() ? "" : ", ") + n;
    fail("unknown preset '", name, "'; expected one of: ", known);
  }
  return ModelOptions(family->preset(name));
}

std::vector<std::string> model_preset_names() {
  std::vector<std::string> names;
  for (const auto* family : model_families()) {
    const auto own = family->preset_names();
    names.insert(names.end(), own.begin(), own.end());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace thinkingvit::models
