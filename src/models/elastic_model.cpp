#include "thinkingvit/models/elastic_model.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <sstream>

#include "thinkingvit/util/cuda_graph.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::models {

std::vector<StageOutput> ElasticModel::forward_all(const at::Tensor& images) {
  std::vector<StageOutput> outputs;
  for (int64_t s = 0; s < num_stages(); ++s) {
    outputs.push_back(run_stage(s, images, s > 0 ? outputs.back().tokens : at::Tensor()));
  }
  return outputs;
}

// One captured stage: its static inputs, the outputs the graph leaves, and the graph.
struct ElasticModel::StageGraph {
  at::Tensor images, prev;
  StageOutput out;
  std::unique_ptr<compat::CapturedCall> call;
};

void ElasticModel::set_cuda_graph_sizes(std::vector<int64_t> sizes) {
  for (const auto size : sizes) TVIT_CHECK(size > 0, "CUDA graph sizes must be > 0, found ", size);
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  graph_sizes_ = std::move(sizes);
  drop_graphs();
}

void ElasticModel::release_weight_cache() {
  drop_graphs();
  drop_weight_cache();
}

void ElasticModel::drop_graphs() {
  graphs_.clear();  // the pools go with their last graph
  graph_pools_.clear();
  graph_inputs_.clear();
}

std::vector<int64_t> default_cuda_graph_sizes(int64_t batch, int64_t smallest) {
  TVIT_CHECK(batch > 0 && smallest > 0, "CUDA graph sizes: batch and smallest size must be > 0");
  std::vector<int64_t> sizes{batch};
  for (int64_t p = 1; p < batch; p *= 2)
    if (p >= smallest) sizes.push_back(p);
  std::sort(sizes.begin(), sizes.end());
  return sizes;
}

StageOutput ElasticModel::run_stage(int64_t stage, const at::Tensor& images,
                                    const at::Tensor& prev_tokens) {
  if (graph_sizes_.empty() || !images.is_cuda() || at::GradMode::is_enabled()) {
    return forward_stage(stage, images, prev_tokens);
  }
  const int64_t batch = images.size(0);
  const auto size = std::lower_bound(graph_sizes_.begin(), graph_sizes_.end(), batch);
  if (size == graph_sizes_.end()) return forward_stage(stage, images, prev_tokens);
  // Graphs read the weights (and the families' weight caches) as they were at capture.
  auto signature = parameter_signature();
  if (signature != graph_signature_) {
    drop_graphs();
    graph_signature_ = std::move(signature);
  }
  const auto device_type = images.device().type();
  const bool autocast = at::autocast::is_autocast_enabled(device_type);
  std::ostringstream pool_key, key;
  pool_key << images.device() << "/"
           << (autocast ? c10::toString(at::autocast::get_autocast_dtype(device_type)) : "off");
  key << stage << "/" << *size << "/" << pool_key.str() << "/" << images.sizes().slice(1)
      << images.scalar_type();
  if (prev_tokens.defined())
    key << "/" << prev_tokens.sizes().slice(1) << prev_tokens.scalar_type();
  const auto name = key.str();
  auto found = graphs_.find(name);
  // A graph's inputs: `size` rows, the first ones this call's, the rest zeros; one buffer for
  // every graph of that shape (each is filled right before its replay).
  const auto padded = [this, size](const at::Tensor& t) {
    auto shape = t.sizes().vec();
    shape[0] = *size;
    std::ostringstream input_key;
    input_key << t.device() << "/" << c10::IntArrayRef(shape) << t.scalar_type();
    auto& buffer = graph_inputs_[input_key.str()];
    if (!buffer.defined()) buffer = torch::zeros(shape, t.options());
    return buffer;
  };
  const auto fill = [batch, size](at::Tensor& buffer, const at::Tensor& t) {
    buffer.narrow(0, 0, batch).copy_(t);
    if (batch < *size) buffer.narrow(0, batch, *size - batch).zero_();
  };
  if (found == graphs_.end()) {
    auto g = std::make_shared<StageGraph>();
    g->images = padded(images);
    if (prev_tokens.defined()) g->prev = padded(prev_tokens);
    auto* raw = g.get();
    g->call = std::make_unique<compat::CapturedCall>(
        [this, stage, raw] { raw->out = forward_stage(stage, raw->images, raw->prev); },
        images.device(), /*warmup=*/2, &graph_pools_[pool_key.str()]);
    found = graphs_.emplace(name, std::move(g)).first;  // kept only once captured
  }
  auto& graph = found->second;
  fill(graph->images, images);
  if (prev_tokens.defined()) fill(graph->prev, prev_tokens);
  graph->call->replay();
  // The graph's outputs are overwritten by its next replay: hand out copies.
  return {graph->out.logits.narrow(0, 0, batch).clone(),
          graph->out.tokens.narrow(0, 0, batch).clone()};
}

std::vector<int64_t> ElasticModel::parameter_signature() const {
  std::vector<int64_t> signature;
  for (const auto& p : parameters()) {
    signature.push_back(reinterpret_cast<int64_t>(p.data_ptr()));
    signature.push_back(static_cast<int64_t>(p._version()));
    signature.push_back(static_cast<int64_t>(p.scalar_type()));
  }
  return signature;
}

std::string recycle_projection_name(int64_t transition) {
  return transition == 0 ? "proj_layer" : "proj_layer" + std::to_string(transition + 1);
}

ElasticOutput ElasticModel::forward_elastic(const at::Tensor& images, double tau, EntropyRule rule,
                                            int64_t stages) {
  const int64_t batch = images.size(0);
  const int64_t num_stages = this->num_stages();
  TVIT_CHECK(stages == -1 || (stages >= 1 && stages <= num_stages),
             "elastic inference: stages must be -1 (all) or in [1, ", num_stages, "], found ",
             stages);
  const int64_t last = stages == -1 ? num_stages - 1 : stages - 1;
  const auto device = images.device();
  ElasticOutput out;
  out.exit_stage = torch::full({batch}, last, torch::dtype(torch::kLong).device(device));
  out.entropy = torch::empty({batch}, torch::dtype(torch::kFloat).device(device));
  out.stage_entropy = torch::full({num_stages, batch}, std::numeric_limits<float>::quiet_NaN(),
                                  torch::dtype(torch::kFloat).device(device));

  auto active = torch::arange(batch, torch::dtype(torch::kLong).device(device));  // sample ids
  at::Tensor tokens;
  for (int64_t s = 0; s <= last && active.size(0) > 0; ++s) {
    const bool everyone = active.size(0) == batch;
    auto x = everyone ? images : images.index_select(0, active);
    auto stage_out = run_stage(s, x, tokens);
    auto h = entropy(stage_out.logits, rule);  // A
    if (!out.logits.defined()) {
      out.logits = torch::empty({batch, stage_out.logits.size(1)}, stage_out.logits.options());
    }
    out.samples_per_stage.push_back(active.size(0));
    out.stage_entropy[s].index_copy_(0, active, h);

    // Decided samples keep this stage's answer; the last stage decides everyone left.
    auto stop = s == last ? torch::ones_like(h, torch::kBool) : h < tau;  // A
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
  return options.family_options().make_model();
}

}  // namespace thinkingvit::models
