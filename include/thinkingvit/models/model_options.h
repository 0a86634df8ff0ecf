#pragma once
// The architecture of an elastic model, whichever family it belongs to. Everything above
// models/ holds a ModelOptions and asks it what every family answers (input size, classes,
// stages, MACs, parameters); a family's own options are reached through vit() or swin() only
// where one of its own keys is set.

#include <c10/core/Device.h>

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

// What running a model takes in memory, in bytes of float32.
struct MemoryEstimate {
  double weights = 0;      // the parameters times `copies`
  double activations = 0;  // of one batch through every stage
  double total() const { return weights + activations; }
};

// `copies`: 1 to run the model; 5 to train it (weights, gradients, two AdamW moments, EMA), 4
// without EMA. Activations are estimated from the layer shapes for `batch` images. Training:
// what autograd keeps for backward, per block and image (8 + 2·mlp_ratio)·N·D + 2·h·N² floats
// for a ViT stage of width D and h heads over N tokens (a Swin block: N·(8·C + 2·hidden) +
// 2·h·N_padded·window²), summed over every block of every stage. Inference: the largest block's
// working set, (5 + mlp_ratio)·N·D + 2·h·N² (Swin: N·(5·C + hidden) + 2·h·N_padded·window²).
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
