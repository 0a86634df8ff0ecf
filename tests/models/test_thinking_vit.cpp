#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "../test_util.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/models/layers.h"
#include "thinkingvit/models/vit/thinking_vit.h"
#include "thinkingvit/util/device.h"

namespace thinkingvit::testing {

namespace {

// Copies into `small` the leading slices of `big`, written out independently of the library:
// qkv rows are the first k rows of each of the q, k and v blocks.
void copy_leading_slices(models::ThinkingViT& big, models::ThinkingViT& small) {
  torch::NoGradGuard no_grad;
  const int64_t dim = big->options().embed_dim();
  auto big_params = big->named_parameters();
  for (auto& item : small->named_parameters()) {
    const auto& name = item.key();
    auto& dst = item.value();
    auto src = big_params[name];
    if (name.find("attn.qkv") != std::string::npos) {
      const int64_t k = dst.size(0) / 3;
      src = torch::cat(
          {src.slice(0, 0, k), src.slice(0, dim, dim + k), src.slice(0, 2 * dim, 2 * dim + k)});
    }
    if (name == "head.weight") {
      src = src.slice(1, 0, dst.size(1));
    } else if (name == "cls_token" || name == "pos_embed") {
      src = src.slice(2, 0, dst.size(2));
    } else {
      for (int64_t d = 0; d < dst.dim(); ++d) src = src.slice(d, 0, dst.size(d));
    }
    ASSERT_EQ(src.sizes(), dst.sizes()) << name;
    dst.copy_(src);
  }
}

}  // namespace

TEST(ThinkingViT, FirstStageIsTheStandaloneViTOfItsSlices) {
  auto model = tiny_model();
  models::ThinkingViT standalone(tiny_options({1}));
  copy_leading_slices(model, standalone);
  standalone->eval();
  auto images = tiny_images(4);
  torch::NoGradGuard no_grad;
  auto nested = model->forward_stage(0, images);
  auto plain = standalone->forward_stage(0, images);
  EXPECT_TRUE(torch::allclose(nested.logits, plain.logits, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(nested.tokens, plain.tokens, 1e-5, 1e-6));
  EXPECT_EQ(nested.tokens.sizes(), (std::vector<int64_t>{4, 5, 4}));
}

TEST(ThinkingViT, WithZeroAlphaEveryStageIsAStandaloneViT) {
  auto model = tiny_model({1, 2, 3}, /*seed=*/2, /*alpha=*/0.0);
  auto images = tiny_images(3);
  torch::NoGradGuard no_grad;
  auto outputs = model->forward_all(images);
  for (int64_t s = 1; s < 3; ++s) {
    models::ThinkingViT standalone(tiny_options({s + 1}));
    copy_leading_slices(model, standalone);
    standalone->eval();
    auto plain = standalone->forward_stage(0, images);
    EXPECT_TRUE(torch::allclose(outputs[s].logits, plain.logits, 1e-5, 1e-6)) << "stage " << s;
  }
}

TEST(ThinkingViT, TokenRecyclingMatchesAHandComputation) {
  // With the residual branches of stage 1 zeroed, its blocks are the identity, so
  // tokens = LN(E(x) + alpha * Proj(z_0)) and logits = head(tokens[:, 0]).
  auto model = tiny_model({1, 2}, /*seed=*/3, /*alpha=*/0.75);
  const int64_t k = 8, k0 = 4, dim = 8;
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      const auto& n = item.key();
      if (n.find("attn.proj") != std::string::npos || n.find("mlp.fc2") != std::string::npos) {
        item.value().zero_();
      }
    }
  }
  auto images = tiny_images(2);
  torch::NoGradGuard no_grad;
  auto z0 = model->forward_stage(0, images).tokens;  // B x N x 4
  auto out = model->forward_stage(1, images, z0);
  auto p = model->named_parameters();
  // Patch embedding by explicit patch extraction: B x 3 x 2 x 4 x 2 x 4 -> B x 4 x 48.
  auto patches = images.view({2, 3, 2, 4, 2, 4}).permute({0, 2, 4, 1, 3, 5}).reshape({2, 4, 48});
  auto conv_w = p["patch_embed.proj.weight"].slice(0, 0, k).reshape({k, 48});
  auto emb = torch::matmul(patches, conv_w.t()) + p["patch_embed.proj.bias"].slice(0, 0, k);
  auto x = torch::cat({p["cls_token"].slice(2, 0, k).expand({2, 1, k}), emb}, 1) +
           p["pos_embed"].slice(2, 0, k);
  auto proj = torch::matmul(z0, p["proj_layer.weight"].t()) + p["proj_layer.bias"];  // B x N x D
  ASSERT_EQ(proj.size(2), dim);
  x = x + 0.75 * proj.slice(2, 0, k);
  auto mean = x.mean(-1, true), var = x.var(-1, /*unbiased=*/false, true);
  auto tokens = (x - mean) / torch::sqrt(var + 1e-6) * p["norm.weight"].slice(0, 0, k) +
                p["norm.bias"].slice(0, 0, k);
  auto logits =
      torch::matmul(tokens.select(1, 0), p["head.weight"].slice(1, 0, k).t()) + p["head.bias"];
  EXPECT_TRUE(torch::allclose(out.tokens, tokens, 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(out.logits, logits, 1e-4, 1e-5));
  (void)k0;
}

TEST(ThinkingViT, FusedAndExplicitAttentionAgree) {
  torch::manual_seed(5);
  auto q = torch::randn({2, 3, 5, 4}), k = torch::randn({2, 3, 5, 4}),
       v = torch::randn({2, 3, 5, 4});
  EXPECT_TRUE(torch::allclose(models::fused_attention(q, k, v), models::explicit_attention(q, k, v),
                              1e-5, 1e-6));
  auto fused = tiny_model();
  auto options = tiny_options();
  options.attention(models::AttentionBackend::kExplicit);
  models::ThinkingViT explicit_model(options);
  explicit_model->eval();
  {
    torch::NoGradGuard no_grad;
    auto src = fused->named_parameters();
    for (auto& item : explicit_model->named_parameters()) item.value().copy_(src[item.key()]);
  }
  auto images = tiny_images(3);
  torch::NoGradGuard no_grad;
  auto a = fused->forward_all(images), b = explicit_model->forward_all(images);
  for (size_t s = 0; s < a.size(); ++s) {
    EXPECT_TRUE(torch::allclose(a[s].logits, b[s].logits, 1e-5, 1e-6)) << "stage " << s;
  }
}

TEST(ThinkingViT, EveryParameterReceivesAGradient) {
  auto options = tiny_options({1, 3});  // the last stage spans the whole width
  options.drop_path_rate(0.1);
  models::ThinkingViT model(options);
  randomize(model, 4, /*alpha=*/0.5);
  model->train();
  auto outputs = model->forward_all(tiny_images(4));
  auto loss = torch::zeros({});
  for (const auto& o : outputs)
    loss = loss + o.logits.logsumexp(1).mean() - o.logits.select(1, 0).mean();
  loss.backward();
  for (const auto& item : model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
  }
}

TEST(ThinkingViT, SaveThenLoadGivesIdenticalLogits) {
  TempDir dir;
  auto model = tiny_model();
  io::save_weights(*model, dir.file("w.safetensors"));
  auto other = tiny_model({1, 2, 3}, /*seed=*/99);
  auto report = io::load_state_dict(*other, io::read_safetensors(dir.file("w.safetensors")).tensors,
                                    "w.safetensors", io::LoadOptions{/*strict=*/true});
  EXPECT_TRUE(report.exact());
  auto images = tiny_images(3);
  torch::NoGradGuard no_grad;
  auto a = model->forward_all(images), b = other->forward_all(images);
  for (size_t s = 0; s < a.size(); ++s) EXPECT_TRUE(torch::equal(a[s].logits, b[s].logits));
}

TEST(ThinkingViT, ElasticInferenceEqualsComputeAllThenSelect) {
  auto model = tiny_model({1, 2, 3}, /*seed=*/6, /*alpha=*/0.3);
  auto images = tiny_images(24, /*seed=*/8);
  torch::NoGradGuard no_grad;
  auto all = model->forward_all(images);
  std::vector<at::Tensor> h;
  for (const auto& o : all) h.push_back(models::entropy(o.logits));
  for (double tau : {0.0, 0.8, 1.2, 1.6, 2.0, 2.4}) {
    auto out = model->forward_elastic(images, tau);
    std::vector<int64_t> reached(3, 0);
    for (int64_t b = 0; b < 24; ++b) {
      int64_t stage = 0;
      while (stage < 2 && !(h[stage][b].item<float>() < tau)) ++stage;
      for (int64_t s = 0; s <= stage; ++s) ++reached[s];
      ASSERT_EQ(out.exit_stage[b].item<int64_t>(), stage) << "tau " << tau << " sample " << b;
      EXPECT_TRUE(torch::allclose(out.logits[b], all[stage].logits[b], 1e-5, 1e-5));
      EXPECT_NEAR(out.entropy[b].item<float>(), h[stage][b].item<float>(), 1e-5);
      for (int64_t s = 0; s < 3; ++s) {
        EXPECT_EQ(std::isnan(out.stage_entropy[s][b].item<float>()), s > stage);
      }
    }
    EXPECT_EQ(out.samples_per_stage, reached) << "tau " << tau;
  }
  // tau = 0 sends everything to the last stage; tau above ln 10 stops everything at stage 0.
  EXPECT_EQ(model->forward_elastic(images, 0.0).samples_per_stage,
            (std::vector<int64_t>{24, 24, 24}));
  EXPECT_EQ(model->forward_elastic(images, 2.31).samples_per_stage,
            (std::vector<int64_t>{24, 0, 0}));
}

TEST(ThinkingViT, EvalCacheFollowsWeightChanges) {
  auto model = tiny_model();
  auto images = tiny_images(2);
  auto with_grad = [&] { return model->forward_all(images).back().logits.detach(); };
  auto no_grad = [&] {
    torch::NoGradGuard guard;
    return model->forward_all(images).back().logits;
  };
  EXPECT_TRUE(torch::allclose(with_grad(), no_grad(), 1e-5, 1e-6));
  const auto before = no_grad();
  {
    torch::NoGradGuard guard;
    model->named_parameters()["blocks.1.attn.qkv.weight"].add_(0.5);  // in place
  }
  const auto after = no_grad();
  EXPECT_FALSE(torch::allclose(before, after));
  EXPECT_TRUE(torch::allclose(with_grad(), after, 1e-5, 1e-6));
}

TEST(ThinkingViT, WeightCacheHoldsTheStageCopiesUntilReleased) {
  auto model = tiny_model();
  const auto& o = model->options();
  const int64_t k = o.stage_width(0);
  auto images = tiny_images(2);
  auto stage0 = [&] {
    torch::NoGradGuard guard;
    return model->forward_stage(0, images).logits;
  };
  model->forward_stage(0, images);  // with gradients: views, nothing cached
  EXPECT_EQ(model->weight_cache_bytes(), 0);
  const auto before = stage0();
  // Copies of the leading slices that are not contiguous in their parameter: the matrices cut on
  // their input side, the q/k/v rows and the position embedding (leading rows, 1-D slices and
  // the class token are views, the head's bias is shared whole).
  const int64_t hidden = o.hidden_width(k);
  const int64_t copied =
      o.depth() * (4 * k * k + 3 * k + 2 * hidden * k) + o.num_classes() * k + o.num_tokens() * k;
  ASSERT_TRUE(o.qkv_bias());
  EXPECT_EQ(model->weight_cache_bytes(), 4 * copied);
  {
    compat::AutocastGuard autocast(c10::kCPU, at::kBFloat16, true);
    stage0();
  }
  // bf16 casts of the matmul and convolution operands: every parameter of stage 0 but the
  // LayerNorms, the class token and the position embedding.
  const int64_t layer_norms = 2 * 2 * k * o.depth() + 2 * k;
  const int64_t tokens = k + o.num_tokens() * k;
  EXPECT_EQ(model->weight_cache_bytes(),
            4 * copied + 2 * (model->stage_parameter_count(0) - layer_norms - tokens));
  model->release_weight_cache();
  EXPECT_EQ(model->weight_cache_bytes(), 0);
  EXPECT_TRUE(torch::equal(stage0(), before));  // gathered again
}

TEST(ThinkingViT, StateDictNamesMatchTheReleasedCheckpoint) {
  models::ThinkingViT model(models::preset("thinkingvit_3h_6h"));
  auto state = io::state_dict(*model);
  EXPECT_EQ(state.size(), 155u);
  int64_t n = 0;
  for (const auto& [name, t] : state) n += t.numel();
  EXPECT_EQ(n, 22124777);
  auto shape = [&](const std::string& name) { return state.at(name).sizes().vec(); };
  EXPECT_EQ(shape("cls_token"), (std::vector<int64_t>{1, 1, 384}));
  EXPECT_EQ(shape("pos_embed"), (std::vector<int64_t>{1, 197, 384}));
  EXPECT_EQ(shape("patch_embed.proj.weight"), (std::vector<int64_t>{384, 3, 16, 16}));
  EXPECT_EQ(shape("blocks.11.attn.qkv.weight"), (std::vector<int64_t>{1152, 384}));
  EXPECT_EQ(shape("blocks.0.mlp.fc1.weight"), (std::vector<int64_t>{1536, 384}));
  EXPECT_EQ(shape("head.weight"), (std::vector<int64_t>{1000, 384}));
  EXPECT_EQ(shape("alpha.0"), (std::vector<int64_t>{1}));
  EXPECT_EQ(shape("proj_layer.weight"), (std::vector<int64_t>{384, 192}));
  EXPECT_EQ(shape("proj_layer.bias"), (std::vector<int64_t>{384}));
  EXPECT_EQ(state.at("alpha.0").item<float>(), 0.0f);  // recycling starts switched off
  models::ThinkingViT three(models::preset("thinkingvit_3h_6h_12h"));
  auto s3 = io::state_dict(*three);
  EXPECT_EQ(s3.at("proj_layer2.weight").sizes().vec(), (std::vector<int64_t>{768, 384}));
  EXPECT_TRUE(s3.count("alpha.1"));
  EXPECT_EQ(io::state_dict(*models::ThinkingViT(models::preset("deit_tiny_patch16_224"))).size(),
            152u);
}

TEST(ThinkingViT, RejectsWrongImageShapes) {
  auto model = tiny_model();
  torch::NoGradGuard no_grad;
  expect_error(
      [&] {
        model->forward_stage(0, torch::randn({2, 3, 16, 16}));
      },
      {"images", "B x 3 x 8 x 8", "[2, 3, 16, 16]"});
  expect_error([&] { model->forward_stage(1, tiny_images(2)); }, {"stage 1 needs the tokens"});
}

}  // namespace thinkingvit::testing
