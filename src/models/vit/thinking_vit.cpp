#include "thinkingvit/models/vit/thinking_vit.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <functional>
#include <limits>
#include <unordered_set>

#include "thinkingvit/models/vit/sliced_ops.h"
#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::models {

namespace {

// timm's trunc_normal_(std=.02) with absolute bounds +-2.
void trunc_normal_(at::Tensor& t, double std) {
  torch::NoGradGuard no_grad;
  t.normal_(0.0, std).clamp_(-2.0, 2.0);
}

void init_linear(torch::nn::Linear& linear) {
  trunc_normal_(linear->weight, 0.02);
  if (linear->bias.defined()) {
    torch::NoGradGuard no_grad;
    linear->bias.zero_();
  }
}

torch::nn::LayerNorm layer_norm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

}  // namespace

// ---- building blocks (registration only; the maths is in sliced_ops) ----

AttentionImpl::AttentionImpl(int64_t dim, bool qkv_bias) : dim_(dim), qkv_bias_(qkv_bias) {
  reset();
}
void AttentionImpl::reset() {
  qkv = register_module(
      "qkv", torch::nn::Linear(torch::nn::LinearOptions(dim_, 3 * dim_).bias(qkv_bias_)));
  proj = register_module("proj", torch::nn::Linear(dim_, dim_));
  reset_parameters();
}
void AttentionImpl::reset_parameters() {
  init_linear(qkv);
  init_linear(proj);
}

MlpImpl::MlpImpl(int64_t dim, int64_t hidden) : dim_(dim), hidden_(hidden) { reset(); }
void MlpImpl::reset() {
  fc1 = register_module("fc1", torch::nn::Linear(dim_, hidden_));
  fc2 = register_module("fc2", torch::nn::Linear(hidden_, dim_));
  reset_parameters();
}
void MlpImpl::reset_parameters() {
  init_linear(fc1);
  init_linear(fc2);
}

BlockImpl::BlockImpl(int64_t dim, int64_t hidden, bool qkv_bias, double eps)
    : dim_(dim), hidden_(hidden), qkv_bias_(qkv_bias), eps_(eps) {
  reset();
}
void BlockImpl::reset() {
  norm1 = register_module("norm1", layer_norm(dim_, eps_));
  attn = register_module("attn", Attention(dim_, qkv_bias_));
  norm2 = register_module("norm2", layer_norm(dim_, eps_));
  mlp = register_module("mlp", Mlp(dim_, hidden_));
}

PatchEmbedImpl::PatchEmbedImpl(int64_t in_channels, int64_t dim, int64_t patch_size)
    : in_channels_(in_channels), dim_(dim), patch_size_(patch_size) {
  reset();
}
void PatchEmbedImpl::reset() {
  proj = register_module(
      "proj", torch::nn::Conv2d(
                  torch::nn::Conv2dOptions(in_channels_, dim_, patch_size_).stride(patch_size_)));
}

// ---- the model ----

ThinkingViTImpl::ThinkingViTImpl(ThinkingViTOptions options)
    : options_(std::move(options)), model_options_(options_) {
  options_.validate();
  reset();
}

void ThinkingViTImpl::reset() {
  const int64_t dim = options_.embed_dim();
  patch_embed = register_module("patch_embed",
                                PatchEmbed(options_.in_channels(), dim, options_.patch_size()));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, dim}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, options_.num_tokens(), dim}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  block_list_.clear();
  for (int64_t i = 0; i < options_.depth(); ++i) {
    Block block(dim, options_.hidden_width(dim), options_.qkv_bias(), options_.norm_eps());
    blocks->push_back(block);
    block_list_.push_back(block);
  }
  norm = register_module("norm", layer_norm(dim, options_.norm_eps()));
  head = register_module("head", torch::nn::Linear(dim, options_.num_classes()));
  alpha = nullptr;
  proj_layers.clear();
  if (options_.num_stages() > 1) {
    alpha = register_module("alpha", torch::nn::ParameterList());
    for (int64_t t = 0; t + 1 < options_.num_stages(); ++t) {
      alpha->append(torch::zeros({1}).requires_grad_());  // append keeps requires_grad as given
      proj_layers.push_back(register_module(recycle_projection_name(t),
                                            torch::nn::Linear(options_.stage_width(t), dim)));
    }
  }
  reset_parameters();
  drop_weight_cache();
}

void ThinkingViTImpl::reset_parameters() {
  trunc_normal_(cls_token, 0.02);
  trunc_normal_(pos_embed, 0.02);
  for (auto& block : block_list_) {
    block->attn->reset_parameters();
    block->mlp->reset_parameters();
  }
  init_linear(head);
}

void ThinkingViTImpl::pretty_print(std::ostream& stream) const {
  stream << "thinkingvit::ThinkingViT(" << options_.describe() << ")";
}

StageWeights ThinkingViTImpl::gather_stage_weights(int64_t stage, bool contiguous) const {
  const int64_t dim = options_.embed_dim();
  const int64_t k = options_.stage_width(stage);
  const int64_t hidden = options_.hidden_width(k);
  auto take = [contiguous](at::Tensor t) { return contiguous ? t.contiguous() : t; };
  // Leading slices: rows [0, rows) and columns [0, cols) of an out x in weight.
  auto lead = [&](const at::Tensor& t, int64_t rows, int64_t cols = -1) {
    auto s = t.slice(/*dim=*/0, 0, rows);
    return take(cols < 0 ? s : s.slice(/*dim=*/1, 0, cols));
  };
  StageWeights w;
  w.width = k;
  w.heads = options_.stages()[stage];
  w.patch_w = lead(patch_embed->proj->weight, k);
  w.patch_b = lead(patch_embed->proj->bias, k);
  w.cls_token = take(cls_token.slice(/*dim=*/2, 0, k));  // 1 x 1 x k
  w.pos_embed = take(pos_embed.slice(/*dim=*/2, 0, k));  // 1 x N x k
  for (const auto& block : block_list_) {
    BlockWeights b;
    b.norm1_w = lead(block->norm1->weight, k);
    b.norm1_b = lead(block->norm1->bias, k);
    b.qkv_w = take(qkv_leading_rows(block->attn->qkv->weight, dim, k).slice(/*dim=*/1, 0, k));
    if (block->attn->qkv->bias.defined()) {
      b.qkv_b = take(qkv_leading_rows(block->attn->qkv->bias, dim, k));
    }
    b.proj_w = lead(block->attn->proj->weight, k, k);
    b.proj_b = lead(block->attn->proj->bias, k);
    b.norm2_w = lead(block->norm2->weight, k);
    b.norm2_b = lead(block->norm2->bias, k);
    b.fc1_w = lead(block->mlp->fc1->weight, hidden, k);
    b.fc1_b = lead(block->mlp->fc1->bias, hidden);
    b.fc2_w = lead(block->mlp->fc2->weight, k, hidden);
    b.fc2_b = lead(block->mlp->fc2->bias, k);
    w.blocks.push_back(std::move(b));
  }
  w.norm_w = lead(norm->weight, k);
  w.norm_b = lead(norm->bias, k);
  w.head_w = take(head->weight.slice(/*dim=*/1, 0, k));  // shared head, sliced on its input
  w.head_b = head->bias;
  if (stage > 0) {
    // Only the first k channels of the k_prev -> D projection feed this stage.
    const auto& proj = proj_layers[stage - 1];
    w.recycle_w = lead(proj->weight, k);
    w.recycle_b = lead(proj->bias, k);
    w.alpha = alpha->at(stage - 1);
  }
  return w;
}

namespace {

void for_each_tensor(const StageWeights& w, const std::function<void(const at::Tensor&)>& f) {
  for (const auto* t : {&w.patch_w, &w.patch_b, &w.cls_token, &w.pos_embed, &w.norm_w, &w.norm_b,
                        &w.head_w, &w.head_b, &w.recycle_w, &w.recycle_b, &w.alpha})
    f(*t);
  for (const auto& b : w.blocks) {
    for (const auto* t : {&b.norm1_w, &b.norm1_b, &b.qkv_w, &b.qkv_b, &b.proj_w, &b.proj_b,
                          &b.norm2_w, &b.norm2_b, &b.fc1_w, &b.fc1_b, &b.fc2_w, &b.fc2_b})
      f(*t);
  }
}

}  // namespace

int64_t ThinkingViTImpl::weight_cache_bytes() const {
  // Storages the cache owns: not the parameters' own (a full-width slice stays a view).
  std::unordered_set<const void*> seen;
  for (const auto& p : parameters()) seen.insert(p.storage().data());
  int64_t bytes = 0;
  const auto count = [&](const at::Tensor& t) {
    if (t.defined() && seen.insert(t.storage().data()).second) {
      bytes += static_cast<int64_t>(t.storage().nbytes());
    }
  };
  for (const auto& w : cached_weights_) for_each_tensor(w, count);
  for (const auto& [dtype, stages] : cached_autocast_weights_) {
    for (const auto& w : stages) for_each_tensor(w, count);
  }
  return bytes;
}

void ThinkingViTImpl::drop_weight_cache() {
  cached_weights_.clear();
  cached_autocast_weights_.clear();
  cache_signature_.clear();
}

StageWeights ThinkingViTImpl::stage_weights(int64_t stage) {
  TVIT_CHECK(stage >= 0 && stage < options_.num_stages(), "stage ", stage,
             " out of range: the model has ", options_.num_stages(), " stage(s)");
  if (at::GradMode::is_enabled() || !weight_cache_) {
    return gather_stage_weights(stage, /*contiguous=*/false);
  }
  auto signature = parameter_signature();
  if (signature != cache_signature_) {
    cached_weights_.clear();
    cached_weights_.resize(options_.num_stages());
    cached_autocast_weights_.clear();
    cache_signature_ = std::move(signature);
  }
  auto& cached = cached_weights_[stage];
  if (cached.width == 0) cached = gather_stage_weights(stage, /*contiguous=*/true);
  const auto device_type = cls_token.device().type();
  if (!at::autocast::is_autocast_enabled(device_type)) return cached;
  const auto dtype = at::autocast::get_autocast_dtype(device_type);
  auto& per_stage = cached_autocast_weights_[dtype];
  if (per_stage.empty()) per_stage.resize(options_.num_stages());
  auto& cast = per_stage[stage];
  if (cast.width == 0) {
    // What autocast would cast on every call: the operands of convolution and linear layers.
    // LayerNorm (run in float32 by autocast), the class token and position embedding stay.
    cast = cached;
    auto to = [dtype](at::Tensor& t) {
      if (t.defined()) t = t.to(dtype);
    };
    for (auto* t : {&cast.patch_w, &cast.patch_b, &cast.head_w, &cast.head_b, &cast.recycle_w,
                    &cast.recycle_b})
      to(*t);
    for (auto& b : cast.blocks) {
      for (auto* t :
           {&b.qkv_w, &b.qkv_b, &b.proj_w, &b.proj_b, &b.fc1_w, &b.fc1_b, &b.fc2_w, &b.fc2_b})
        to(*t);
    }
  }
  return cast;
}

StageOutput ThinkingViTImpl::forward_stage(int64_t stage, const at::Tensor& images,
                                           const at::Tensor& prev_tokens) {
  const auto w = stage_weights(stage);
  TVIT_CHECK(images.dim() == 4 && images.size(1) == options_.in_channels() &&
                 images.size(2) == options_.image_size() && images.size(3) == options_.image_size(),
             "images: expected B x ", options_.in_channels(), " x ", options_.image_size(), " x ",
             options_.image_size(), ", found ", shape_str(images.sizes().vec()));
  auto x = embed_tokens(w, images, options_.patch_size());  // B x N x k
  if (stage > 0 && options_.recycling()) {
    TVIT_CHECK(prev_tokens.defined(), "stage ", stage, " needs the tokens of stage ", stage - 1);
    // Token Recycling: E_fused = alpha * Proj(z_prev) + E(x), on every token including CLS.
    x = x + w.alpha * at::linear(prev_tokens, w.recycle_w, w.recycle_b);
  }
  const int64_t depth = options_.depth();
  for (int64_t i = 0; i < depth; ++i) {
    const double rate =
        depth > 1 ? options_.drop_path_rate() * static_cast<double>(i) / (depth - 1) : 0.0;
    x = block_forward(x, w.blocks[i], w.heads, options_.norm_eps(), options_.attention(), rate,
                      is_training());
  }
  auto z = at::layer_norm(x, {w.width}, w.norm_w, w.norm_b, options_.norm_eps());  // B x N x k
  auto logits = at::linear(z.select(/*dim=*/1, 0), w.head_w, w.head_b);            // B x K
  return {logits, z};
}

TensorLayout ThinkingViTImpl::tensor_layout(const std::string& name, int64_t ndim) const {
  const bool qkv =
      util::ends_with(name, "attn.qkv.weight") || util::ends_with(name, "attn.qkv.bias");
  if (name == "cls_token" || name == "pos_embed") return {{false, false, true}, false};
  if (name == "patch_embed.proj.weight") return {{true, false, false, false}, false};
  if (name == "head.weight") return {{false, true}, false};
  if (name == "head.bias" || util::starts_with(name, "alpha.")) {
    return {std::vector<bool>(ndim, false), false};
  }
  return {std::vector<bool>(ndim, true), qkv};
}

bool ThinkingViTImpl::decays(const std::string& name, const at::Tensor& param) const {
  return ElasticModel::decays(name, param) && name != "pos_embed" && name != "cls_token" &&
         !util::starts_with(name, "alpha.");
}

// ---- parameter counts ----

int64_t stage_parameter_count(const ThinkingViTOptions& o, int64_t stage) {
  const int64_t k = o.stage_width(stage), hidden = o.hidden_width(k);
  const int64_t c = o.in_channels(), p = o.patch_size();
  int64_t n = k * c * p * p + k;                                      // patch embed
  n += k + o.num_tokens() * k;                                        // cls + pos
  const int64_t per_block = 2 * 2 * k                                 // norm1, norm2
                            + 3 * k * k + (o.qkv_bias() ? 3 * k : 0)  // qkv
                            + k * k + k                               // proj
                            + hidden * k + hidden + k * hidden + k;   // mlp
  n += o.depth() * per_block;
  n += 2 * k;                                                // final norm
  n += o.num_classes() * k + o.num_classes();                // head
  if (stage > 0) n += o.stage_width(stage - 1) * k + k + 1;  // recycling proj (sliced) + alpha
  return n;
}

int64_t total_parameter_count(const ThinkingViTOptions& o) {
  const int64_t last = o.num_stages() - 1;
  int64_t n = stage_parameter_count(o, last);
  if (last > 0) n -= o.stage_width(last - 1) * o.embed_dim() + o.embed_dim() + 1;
  for (int64_t t = 0; t < last; ++t) {
    n += o.stage_width(t) * o.embed_dim() + o.embed_dim() + 1;  // full k_t -> D proj + alpha
  }
  return n;
}

}  // namespace thinkingvit::models
