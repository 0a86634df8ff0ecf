#include "thinkingvit/models/elastic_model.h"

#include <torch/torch.h>

#include <limits>

#include "thinkingvit/models/thinking_swin.h"
#include "thinkingvit/models/thinking_vit.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::models {

std::vector<StageOutput> ElasticModel::forward_all(const at::Tensor& images) {
  std::vector<StageOutput> outputs;
  for (int64_t s = 0; s < num_stages(); ++s) {
    outputs.push_back(forward_stage(s, images, s > 0 ? outputs.back().tokens : at::Tensor()));
  }
  return outputs;
}

std::string recycle_projection_name(int64_t transition) {
  return transition == 0 ? "proj_layer" : "proj_layer" + std::to_string(transition + 1);
}

ElasticOutput ElasticModel::forward_elastic(const at::Tensor& images, double tau,
                                            EntropyRule rule) {
  const int64_t batch = images.size(0);
  const int64_t num_stages = this->num_stages();
  const auto device = images.device();
  ElasticOutput out;
  out.exit_stage = torch::full({batch}, num_stages - 1, torch::dtype(torch::kLong).device(device));
  out.entropy = torch::empty({batch}, torch::dtype(torch::kFloat).device(device));
  out.stage_entropy = torch::full({num_stages, batch}, std::numeric_limits<float>::quiet_NaN(),
                                  torch::dtype(torch::kFloat).device(device));

  auto active = torch::arange(batch, torch::dtype(torch::kLong).device(device));  // sample ids
  at::Tensor tokens;
  for (int64_t s = 0; s < num_stages && active.size(0) > 0; ++s) {
    const bool everyone = active.size(0) == batch;
    auto x = everyone ? images : images.index_select(0, active);
    auto stage_out = forward_stage(s, x, tokens);
    auto h = entropy(stage_out.logits, rule);  // A
    if (!out.logits.defined()) {
      out.logits = torch::empty({batch, stage_out.logits.size(1)}, stage_out.logits.options());
    }
    out.samples_per_stage.push_back(active.size(0));
    out.stage_entropy[s].index_copy_(0, active, h);

    // Decided samples keep this stage's answer; the last stage decides everyone left.
    auto stop = s + 1 == num_stages ? torch::ones_like(h, torch::kBool) : h < tau;  // A
    auto stop_idx = stop.nonzero().squeeze(1);
    auto done = active.index_select(0, stop_idx);
    out.logits.index_copy_(0, done, stage_out.logits.index_select(0, stop_idx));
    out.entropy.index_copy_(0, done, h.index_select(0, stop_idx));
    out.exit_stage.index_fill_(0, done, s);

    auto keep_idx = stop.logical_not().nonzero().squeeze(1);
    active = active.index_select(0, keep_idx);
    tokens = stage_out.tokens.index_select(0, keep_idx);
  }
  while (static_cast<int64_t>(out.samples_per_stage.size()) < num_stages) {
    out.samples_per_stage.push_back(0);
  }
  return out;
}

std::vector<std::string> ElasticModel::state_dict_names() const {
  std::vector<std::string> names;
  for (const auto& item : named_parameters(/*recurse=*/true)) names.push_back(item.key());
  for (const auto& item : named_buffers(/*recurse=*/true)) names.push_back(item.key());
  return names;
}

TensorLayout ElasticModel::tensor_layout(const std::string& name, int64_t ndim) const {
  (void)name;
  return {std::vector<bool>(ndim, false), false};
}

bool ElasticModel::decays(const std::string& name, const at::Tensor& param) const {
  return param.dim() > 1 && !util::ends_with(name, ".bias");
}

std::shared_ptr<ElasticModel> make_model(const ModelOptions& options) {
  options.validate();
  if (const auto* vit = options.vit()) return std::make_shared<ThinkingViTImpl>(*vit);
  if (const auto* swin = options.swin()) return std::make_shared<ThinkingSwinImpl>(*swin);
  fail("no model family for the architecture '", options.architecture(), "'");
}

}  // namespace thinkingvit::models
