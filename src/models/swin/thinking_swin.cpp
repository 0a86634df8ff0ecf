#include "thinkingvit/models/swin/thinking_swin.h"

#include <torch/torch.h>

#include "thinkingvit/models/cpu_kernels.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::models {

namespace {

using ModulePtr = std::shared_ptr<torch::nn::Module>;

// An empty module that only groups children under a name ("layers.0.blocks.1.attn").
ModulePtr child(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::nn::LayerNorm layer_norm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

// Rows [0, rows) and columns [0, cols) of a weight; the whole tensor when they already cover it.
at::Tensor lead(const at::Tensor& t, int64_t rows, int64_t cols = -1) {
  auto s = rows < t.size(0) ? t.narrow(0, 0, rows) : t;
  return cols < 0 || cols >= t.size(1) ? s : s.narrow(1, 0, cols);
}

}  // namespace

ThinkingSwinImpl::ThinkingSwinImpl(ThinkingSwinOptions options)
    : options_(std::move(options)), model_options_(options_) {
  options_.validate();
  const auto& o = options_;
  const double eps = o.norm_eps();
  // Patch embedding: conv, then LayerNorm (PyTorch's default inits, as timm's Swin keeps them).
  auto patch_embed = child(*this, "patch_embed");
  auto conv = patch_embed->register_module(
      "proj",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels(), o.level_dim(0), o.patch_size())
                            .stride(o.patch_size())));
  auto patch_norm = patch_embed->register_module("norm", layer_norm(o.level_dim(0), eps));
  patch_w_ = conv->weight;
  patch_b_ = conv->bias;
  patch_norm_w_ = patch_norm->weight;
  patch_norm_b_ = patch_norm->bias;

  auto layers = child(*this, "layers");
  blocks_.resize(o.num_levels());
  merges_.resize(o.num_levels());
  for (int64_t i = 0; i < o.num_levels(); ++i) {
    const int64_t dim = o.level_dim(i), ws = o.window(i);
    const auto hidden = static_cast<int64_t>(static_cast<double>(dim) * o.mlp_ratio());
    auto level = child(*layers, std::to_string(i));
    if (i > 0) {
      auto down = child(*level, "downsample");
      const int64_t in = 4 * o.level_dim(i - 1);
      auto norm = down->register_module("norm", layer_norm(in, eps));
      auto reduction = down->register_module(
          "reduction", torch::nn::Linear(torch::nn::LinearOptions(in, dim).bias(false)));
      merges_[i] = {norm->weight, norm->bias, reduction->weight};
    }
    auto level_blocks = child(*level, "blocks");
    for (int64_t j = 0; j < o.depths()[i]; ++j) {
      auto block = child(*level_blocks, std::to_string(j));
      auto norm1 = block->register_module("norm1", layer_norm(dim, eps));
      auto attn = child(*block, "attn");
      auto table =
          attn->register_parameter("relative_position_bias_table",
                                   torch::zeros({(2 * ws - 1) * (2 * ws - 1), o.num_heads()[i]}));
      {
        torch::NoGradGuard no_grad;  // timm: trunc_normal_(std=.02), bounds +-2
        table.normal_(0.0, 0.02).clamp_(-2.0, 2.0);
      }
      auto qkv = attn->register_module(
          "qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(o.qkv_bias())));
      auto proj = attn->register_module("proj", torch::nn::Linear(dim, dim));
      auto norm2 = block->register_module("norm2", layer_norm(dim, eps));
      auto mlp = child(*block, "mlp");
      auto fc1 = mlp->register_module("fc1", torch::nn::Linear(dim, hidden));
      auto fc2 = mlp->register_module("fc2", torch::nn::Linear(hidden, dim));
      blocks_[i].push_back({norm1->weight, norm1->bias, qkv->weight, qkv->bias, table, proj->weight,
                            proj->bias, norm2->weight, norm2->bias, fc1->weight, fc1->bias,
                            fc2->weight, fc2->bias});
    }
    geometry_cpu_.push_back({relative_position_index(ws), at::Tensor()});
    bool shifted = false;
    for (int64_t j = 0; j < o.depths()[i]; ++j) shifted = shifted || o.shift(i, j) > 0;
    if (shifted) {
      geometry_cpu_.back().mask =
          shift_attention_mask(o.resolution(i), o.resolution(i), ws, o.window_size() / 2);
    }
  }
  const int64_t last = o.level_dim(o.num_levels() - 1);
  auto norm = register_module("norm", layer_norm(last, eps));
  norm_w_ = norm->weight;
  norm_b_ = norm->bias;
  auto head = child(*this, "head");
  auto fc = head->register_module("fc", torch::nn::Linear(last, o.num_classes()));
  head_w_ = fc->weight;
  head_b_ = fc->bias;

  if (o.num_stages() > 1) {
    auto alpha = register_module("alpha", torch::nn::ParameterList());
    const int64_t s = o.upsample_factor();
    for (int64_t t = 0; t + 1 < o.num_stages(); ++t) {
      alpha->append(torch::zeros({1}).requires_grad_());
      const int64_t c_in = o.round_width(t, o.num_levels() - 1), c_out = o.round_width(t + 1, 0);
      auto projector = child(*this, recycle_projection_name(t));
      auto up = projector->register_module(
          "upsample",
          torch::nn::ConvTranspose2d(
              torch::nn::ConvTranspose2dOptions(c_in, c_in, s).stride(s).groups(c_in).bias(false)));
      auto proj = projector->register_module("proj", torch::nn::Conv2d(c_in, c_out, 1));
      projectors_.push_back({alpha->at(t), up->weight, proj->weight, proj->bias});
    }
  }
  geometry_device_ = geometry_cpu_;
}

void ThinkingSwinImpl::pretty_print(std::ostream& stream) const {
  stream << "thinkingvit::ThinkingSwin(" << options_.describe() << ")";
}

bool ThinkingSwinImpl::decays(const std::string& name, const at::Tensor& param) const {
  return ElasticModel::decays(name, param) &&
         !util::ends_with(name, "relative_position_bias_table");
}

const ThinkingSwinImpl::Geometry& ThinkingSwinImpl::geometry(int64_t level,
                                                             const c10::Device& device) {
  if (device != geometry_on_) {
    for (size_t i = 0; i < geometry_cpu_.size(); ++i) {
      const auto& g = geometry_cpu_[i];
      geometry_device_[i] = {g.index.to(device), g.mask.defined() ? g.mask.to(device) : g.mask};
    }
    geometry_on_ = device;
  }
  return geometry_device_[level];
}

BlockWeights ThinkingSwinImpl::block_weights(int64_t stage, int64_t level, int64_t block) const {
  const auto& b = blocks_.at(level).at(block);
  const int64_t k = options_.round_width(stage, level);
  const int64_t heads = options_.round_heads(stage, level);
  const int64_t hidden = options_.round_hidden(stage, level);
  BlockWeights w;
  w.norm1_w = lead(b.norm1_w, k);
  w.norm1_b = lead(b.norm1_b, k);
  w.qkv_w = lead(b.qkv_w, 3 * k, k);  // the first 3k rows of the fused q|k|v weight
  if (b.qkv_b.defined()) w.qkv_b = lead(b.qkv_b, 3 * k);
  w.bias_table = heads < b.bias_table.size(1) ? b.bias_table.narrow(1, 0, heads) : b.bias_table;
  w.proj_w = lead(b.proj_w, k, k);
  w.proj_b = lead(b.proj_b, k);
  w.norm2_w = lead(b.norm2_w, k);
  w.norm2_b = lead(b.norm2_b, k);
  w.fc1_w = lead(b.fc1_w, hidden, k);
  w.fc1_b = lead(b.fc1_b, hidden);
  w.fc2_w = lead(b.fc2_w, k, hidden);
  w.fc2_b = lead(b.fc2_b, k);
  return w;
}

at::Tensor ThinkingSwinImpl::project(int64_t transition, const at::Tensor& tokens) const {
  const auto& p = projectors_.at(transition);
  const int64_t res = options_.resolution(options_.num_levels() - 1);
  const int64_t c_in = p.upsample_w.size(0), s = options_.upsample_factor();
  TVIT_CHECK(tokens.dim() == 3 && tokens.size(1) == res * res && tokens.size(2) == c_in, "round ",
             transition + 1, " recycles tokens of shape [B, ", res * res, ", ", c_in, "], found ",
             shape_str(tokens.sizes().vec()));
  // The upsampling is a depthwise transposed convolution whose kernel equals its stride: token
  // (i, j) becomes the s x s block z[b, i, j, c] * w[c, u, v]; the 1 x 1 projection P then
  // sums over c. Both together are one GEMM of the tokens with s² c_out rows W2[u, v, o, c] =
  // w[c, u, v] * P[o, c], and a shuffle of its output: no B x G x G x c_in intermediate, and
  // LibTorch's grouped conv_transpose2d, which falls back to a slow CPU kernel in bf16 (~140 ms
  // for Swin-T at batch 4, a third of the round), is not called. Equal to the two convolutions up
  // to the order of the sums.
  const int64_t batch = tokens.size(0), c_out = p.proj_w.size(0);
  const auto w = p.upsample_w.reshape({c_in, s, s}).permute({1, 2, 0}).unsqueeze(2);  // s s 1 c
  const auto w2 = (w * p.proj_w.reshape({1, 1, c_out, c_in})).reshape({s * s * c_out, c_in});
  const auto b2 = p.proj_b.repeat({s * s});
  return cpu::dense(tokens, w2, b2)                // B x res² x s² c_out
      .view({batch, res, res, s, s, c_out})        // b i j u v o
      .permute({0, 1, 3, 2, 4, 5})                 // b i u j v o
      .reshape({batch, res * s, res * s, c_out});  // B x G x G x c_out
}

StageOutput ThinkingSwinImpl::forward_stage(int64_t stage, const at::Tensor& images,
                                            const at::Tensor& prev_tokens) {
  const auto& o = options_;
  TVIT_CHECK(stage >= 0 && stage < o.num_stages(), "stage ", stage, " out of range: the model has ",
             o.num_stages(), " round(s)");
  TVIT_CHECK(images.dim() == 4 && images.size(1) == o.in_channels() &&
                 images.size(2) == o.image_size() && images.size(3) == o.image_size(),
             "images: expected B x ", o.in_channels(), " x ", o.image_size(), " x ", o.image_size(),
             ", found ", shape_str(images.sizes().vec()));
  const double eps = o.norm_eps();
  // The patch embedding and its norm run at full width; the round takes its leading channels.
  auto x = at::conv2d(images, patch_w_, patch_b_, {o.patch_size(), o.patch_size()})
               .permute({0, 2, 3, 1});
  x = at::layer_norm(x, {o.level_dim(0)}, patch_norm_w_, patch_norm_b_, eps);
  const int64_t k0 = o.round_width(stage, 0);
  if (k0 < o.level_dim(0)) x = x.narrow(3, 0, k0);
  if (stage > 0 && o.recycling()) {
    TVIT_CHECK(prev_tokens.defined(), "round ", stage, " needs the tokens of round ", stage - 1);
    x = x + projectors_[stage - 1].alpha * project(stage - 1, prev_tokens);
  }
  int64_t total_blocks = 0, block_index = 0;
  for (auto d : o.depths()) total_blocks += d;
  for (int64_t i = 0; i < o.num_levels(); ++i) {
    if (i > 0) {
      const auto& m = merges_[i];
      const int64_t k_in = o.round_width(stage, i - 1), k = o.round_width(stage, i);
      x = patch_merging(x, lead(m.norm_w, 4 * k_in), lead(m.norm_b, 4 * k_in),
                        lead(m.reduction_w, k, 4 * k_in), eps);
    }
    const auto& g = geometry(i, images.device());
    for (int64_t j = 0; j < o.depths()[i]; ++j, ++block_index) {
      const double rate = total_blocks > 1 ? o.drop_path_rate() * static_cast<double>(block_index) /
                                                 static_cast<double>(total_blocks - 1)
                                           : 0.0;
      const int64_t shift = o.shift(i, j);
      x = swin_block_forward(x, block_weights(stage, i, j), o.round_heads(stage, i), o.window(i),
                             shift, g.index, shift > 0 ? g.mask : at::Tensor(), eps, o.attention(),
                             rate, is_training());
    }
  }
  const int64_t k = o.round_width(stage, o.num_levels() - 1);
  auto z = at::layer_norm(x, {k}, lead(norm_w_, k), lead(norm_b_, k), eps);  // B x R x R x k
  auto logits = at::linear(z.mean({1, 2}), lead(head_w_, head_w_.size(0), k), head_b_);
  return {logits, z.flatten(1, 2)};
}

}  // namespace thinkingvit::models
