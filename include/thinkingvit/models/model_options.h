#pragma once
// The architecture of an elastic model, whichever family it belongs to. Everything above
// models/ holds a ModelOptions and asks it what every family answers (input size, classes,
// stages, MACs, parameters); a family's own options are reached through vit() or swin() only
// where one of its own keys is set.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "thinkingvit/models/macs.h"
#include "thinkingvit/models/swin_options.h"
#include "thinkingvit/models/vit_options.h"

namespace thinkingvit::models {

class ModelOptions {
 public:
  ModelOptions() = default;                // a ThinkingViTOptions() with its defaults
  ModelOptions(ThinkingViTOptions vit);    // NOLINT(google-explicit-constructor)
  ModelOptions(ThinkingSwinOptions swin);  // NOLINT(google-explicit-constructor)

  // The family: "thinkingvit" (DeiT-style ViT) or "thinkingvit_swin".
  std::string architecture() const;

  int64_t image_size() const;
  int64_t in_channels() const;
  int64_t num_classes() const;
  int64_t num_stages() const;
  // Whether stage i > 0 recycles the tokens of stage i - 1 (saved with the weights).
  bool recycling() const;
  ModelOptions& num_classes(int64_t value);
  ModelOptions& recycling(bool value);

  // The heads stage `stage` runs: "3" for a ViT stage, "3-3-6-12" (per level) for a Swin round;
  // tables print it in their "heads" column.
  std::string stage_heads(int64_t stage) const;
  // Per-stage MACs of one image by layer kind, and the parameters a stage uses.
  MacBreakdown stage_macs(int64_t stage) const;
  int64_t stage_parameter_count(int64_t stage) const;
  int64_t parameter_count() const;

  // Throws thinkingvit::Error naming the offending option.
  void validate() const;
  std::string describe() const;

  // The family's own options; nullptr when the model is of another family.
  const ThinkingViTOptions* vit() const { return std::get_if<ThinkingViTOptions>(&options_); }
  ThinkingViTOptions* vit() { return std::get_if<ThinkingViTOptions>(&options_); }
  const ThinkingSwinOptions* swin() const { return std::get_if<ThinkingSwinOptions>(&options_); }
  ThinkingSwinOptions* swin() { return std::get_if<ThinkingSwinOptions>(&options_); }

  bool operator==(const ModelOptions& other) const { return describe() == other.describe(); }

 private:
  std::variant<ThinkingViTOptions, ThinkingSwinOptions> options_;
};

// Average MACs per image when a share `reach[i]` of the images runs stage i (reach[0] = 1):
// every image pays for every stage it ran. `with_uncounted` adds the terms neither convention
// counts (the recycling projections).
double expected_macs(const ModelOptions& options, const std::vector<double>& reach,
                     MacConvention convention, bool with_uncounted = false);

// Refuses, naming `what` and the figures, a model whose float32 parameters times `copies` (1 to
// run it; 5 to train it: weights, gradients, two AdamW moments, EMA) exceed the physical memory.
// Activations are not counted.
void check_fits_in_memory(const ModelOptions& options, int copies, const std::string& what);

// Every named architecture of every family, and the names in sorted order.
ModelOptions model_preset(const std::string& name);
std::vector<std::string> model_preset_names();

}  // namespace thinkingvit::models
