#pragma once
// A model with nested stages: what training, evaluation, sweeps, benchmarks and the commands
// need from one, whatever its family. Stage 0 runs from the image alone; stage i > 0 may also
// take the tokens stage i - 1 produced (Token Recycling). Elastic inference stops a sample at
// the first stage whose prediction entropy is below a threshold.

#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "thinkingvit/models/entropy.h"
#include "thinkingvit/models/model_options.h"

namespace thinkingvit::models {

// What a stage produces: B x K logits and the tokens after the final norm (B x N x k), which the
// next stage recycles.
struct StageOutput {
  at::Tensor logits;
  at::Tensor tokens;
};

// Result of elastic inference over a batch of B samples and S stages.
struct ElasticOutput {
  at::Tensor logits;         // B x K, from the stage each sample stopped at
  at::Tensor exit_stage;     // B, int64, 0-based
  at::Tensor entropy;        // B, float32, entropy at the exit stage
  at::Tensor stage_entropy;  // S x B, float32, NaN where a stage did not run on a sample
  std::vector<int64_t> samples_per_stage;  // how many samples each stage processed
};

// How a checkpoint tensor of another width fits the model's tensor of the same name.
struct TensorLayout {
  std::vector<bool> nested;  // per dimension: a channel width nesting may crop or extend
  bool stacked_qkv = false;  // dim 0 stacks q, k and v: each third is adapted on its own
};

class ElasticModel : public torch::nn::Module {
 public:
  using torch::nn::Module::Module;

  virtual const ModelOptions& model_options() const = 0;
  int64_t num_stages() const { return model_options().num_stages(); }

  // Runs stage `stage` on B x C x H x W images; `prev_tokens` are the previous stage's tokens
  // (required for stage > 0 when the model recycles).
  virtual StageOutput forward_stage(int64_t stage, const at::Tensor& images,
                                    const at::Tensor& prev_tokens = {}) = 0;
  // What forward_all and forward_elastic run a stage with: a CUDA graph's replay where one
  // applies (see set_cuda_graph_sizes), else forward_stage.
  StageOutput run_stage(int64_t stage, const at::Tensor& images,
                        const at::Tensor& prev_tokens = {});
  // Every stage on every sample, each recycling the previous one (training, evaluation).
  std::vector<StageOutput> forward_all(const at::Tensor& images);
  // Progressive inference: stage 0 on the batch, each later stage only on the samples whose
  // entropy is not below tau (gather, run, scatter back). A sample stops when H < tau. Only
  // the first `stages` stages run (-1: all), the last of them deciding everyone left (a
  // compute budget); samples_per_stage and stage_entropy still cover every stage.
  ElasticOutput forward_elastic(const at::Tensor& images, double tau,
                                EntropyRule rule = EntropyRule::kTop10, int64_t stages = -1);

  MacBreakdown stage_macs(int64_t stage) const { return model_options().stage_macs(stage); }
  int64_t stage_parameter_count(int64_t stage) const {
    return model_options().stage_parameter_count(stage);
  }

  // The names of the state dict: parameters, then buffers, as the released checkpoints name them.
  std::vector<std::string> state_dict_names() const;
  // How loading adapts a checkpoint tensor of another width; by default nothing is nested and
  // only exact shapes load.
  virtual TensorLayout tensor_layout(const std::string& name, int64_t ndim) const;
  // Whether AdamW decays a parameter: by default every weight of two or more dimensions that is
  // not a bias.
  virtual bool decays(const std::string& name, const at::Tensor& param) const;
  // Inference-time caches of gathered weights, where a family keeps any (off for measurements).
  virtual void set_weight_cache(bool enabled) { (void)enabled; }
  // The bytes those caches hold now.
  virtual int64_t weight_cache_bytes() const { return 0; }
  // Frees them and drops the CUDA graphs, which read the cached tensors; the next no-grad
  // forward gathers (and captures) again.
  void release_weight_cache();

  // CUDA graphs for stage forwards without gradients on a GPU: run_stage captures a stage at a
  // batch size from `sizes` on first use (per autocast dtype) and replays it afterwards. A batch
  // runs on the smallest captured size that holds it, zero-padded (samples never mix in a
  // stage), or eagerly when none does; so elastic inference's shrinking sub-batches replay too.
  // Any change to a parameter (an optimizer step, a load) drops the graphs, which are then
  // captured again. Empty `sizes` (the default): off. Sizes must be > 0. The graphs of one
  // device and dtype share one memory pool, and those of one input shape one input buffer.
  void set_cuda_graph_sizes(std::vector<int64_t> sizes);
  const std::vector<int64_t>& cuda_graph_sizes() const { return graph_sizes_; }
  // Graphs captured so far (for tests and logs).
  size_t cuda_graph_count() const { return graphs_.size(); }
  size_t cuda_graph_pool_count() const { return graph_pools_.size(); }

 protected:
  // Every parameter's storage, version and dtype: changes whenever a parameter is written, moved
  // or replaced, so that anything cached from the weights knows to refresh.
  std::vector<int64_t> parameter_signature() const;
  // The family's part of release_weight_cache().
  virtual void drop_weight_cache() {}

 private:
  struct StageGraph;
  void drop_graphs();
  std::vector<int64_t> graph_sizes_;
  std::map<std::string, std::shared_ptr<StageGraph>> graphs_;
  // One memory pool per device and autocast dtype, shared by all its stages and sizes (they
  // replay one at a time and their outputs are copied at once), and one padded input buffer per
  // shape and dtype, shared by the graphs that take it.
  std::map<std::string, std::pair<unsigned long long, unsigned long long>>
      graph_pools_;  // compat::GraphPool
  std::map<std::string, at::Tensor> graph_inputs_;
  std::vector<int64_t> graph_signature_;
};

// The capture sizes for batches of up to `batch` samples: `batch` and every power of two below
// it down to `smallest` (elastic sub-batches then pad by less than 2x).
std::vector<int64_t> default_cuda_graph_sizes(int64_t batch, int64_t smallest = 8);

// Name of the recycling projection feeding stage `transition + 1` ("proj_layer", "proj_layer2",
// ...), as the released checkpoints of every family name it.
std::string recycle_projection_name(int64_t transition);

// A freshly initialised model of the family and shape `options` describe.
std::shared_ptr<ElasticModel> make_model(const ModelOptions& options);

}  // namespace thinkingvit::models
