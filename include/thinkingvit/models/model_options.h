#pragma once
// The architecture of an elastic model, whichever family it belongs to. Everything outside the
// families holds a ModelOptions and asks it what every family answers (input size, classes,
// stages, MACs, parameters, the model itself); a family's own options type is reached through
// as<T>() by code that knows the family (its own folder, tests).

#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "thinkingvit/models/family.h"
#include "thinkingvit/models/macs.h"

namespace thinkingvit::models {

class ModelOptions {
 public:
  ModelOptions();  // the default family's defaults
  explicit ModelOptions(std::unique_ptr<FamilyOptions> options);
  // From a family's own options type (ThinkingViTOptions, ...): any T with a
  // make_family_options(T).
  template <typename T, typename = decltype(make_family_options(std::declval<T>()))>
  ModelOptions(T options)  // NOLINT(google-explicit-constructor)
      : options_(make_family_options(std::move(options))) {}
  ModelOptions(const ModelOptions& other);
  ModelOptions& operator=(const ModelOptions& other);
  ~ModelOptions();

  const ModelFamily& family() const { return options_->family(); }
  // config.json's "architecture" of the family ("thinkingvit", "thinkingvit_swin").
  std::string architecture() const;

  int64_t image_size() const { return options_->image_size(); }
  int64_t in_channels() const { return options_->in_channels(); }
  int64_t num_classes() const { return options_->num_classes(); }
  int64_t num_stages() const { return options_->num_stages(); }
  // Whether stage i > 0 recycles the tokens of stage i - 1 (saved with the weights).
  bool recycling() const { return options_->recycling(); }
  ModelOptions& num_classes(int64_t value);
  ModelOptions& recycling(bool value);

  // The heads stage `stage` runs ("3"; "3-3-6-12" for a family of several levels), as tables
  // print them in their "heads" column.
  std::string stage_heads(int64_t stage) const;
  // Per-stage MACs of one image by layer kind, and the parameters a stage uses.
  MacBreakdown stage_macs(int64_t stage) const;
  int64_t stage_parameter_count(int64_t stage) const;
  int64_t parameter_count() const { return options_->parameter_count(); }
  // "model.stages [3, 6]": the key that sets the number of stages, and its value.
  std::string stages_source() const;

  // Throws thinkingvit::Error naming the offending option.
  void validate() const;
  std::string describe() const { return options_->describe(); }

  const FamilyOptions& family_options() const { return *options_; }
  FamilyOptions& family_options() { return *options_; }
  // The family's own options, or nullptr when the model is of another family.
  template <typename T>
  const T* as() const {
    const auto* of = dynamic_cast<const FamilyOptionsOf<T>*>(options_.get());
    return of ? &of->options() : nullptr;
  }
  template <typename T>
  T* as() {
    auto* of = dynamic_cast<FamilyOptionsOf<T>*>(options_.get());
    return of ? &of->options() : nullptr;
  }

  bool operator==(const ModelOptions& other) const {
    return &family() == &other.family() && describe() == other.describe();
  }

 private:
  std::unique_ptr<FamilyOptions> options_;
};

// Average MACs per image when a share `reach[i]` of the images runs stage i (reach[0] = 1):
// every image pays for every stage it ran. `with_uncounted` adds the terms neither convention
// counts (the recycling projections).
double expected_macs(const ModelOptions& options, const std::vector<double>& reach,
                     MacConvention convention, bool with_uncounted = false);

// What running a model takes in memory, in bytes of float32.
struct MemoryEstimate {
  double weights = 0;      // the parameters times `copies`
  double activations = 0;  // of one batch through every stage
  double total() const { return weights + activations; }
};

// `copies`: 1 to run the model; 5 to train it (weights, gradients, two AdamW moments, EMA), 4
// without EMA. Activations are estimated from the layer shapes for `batch` images
// (FamilyOptions::activation_floats; each family documents its formula).
MemoryEstimate estimate_memory(const ModelOptions& options, int copies, int64_t batch,
                               bool training);

// Refuses, naming `what` and the figures, a model and batch whose estimate_memory exceeds the
// memory of `device` (its GPU's; this machine's physical memory for the CPU). Batch 0: the
// weights alone.
void check_fits_in_memory(const ModelOptions& options, int copies, const std::string& what,
                          int64_t batch = 0, bool training = false,
                          const c10::Device& device = c10::Device(c10::kCPU));

// Every named architecture of every family, and the names in sorted order.
ModelOptions model_preset(const std::string& name);
std::vector<std::string> model_preset_names();

}  // namespace thinkingvit::models
