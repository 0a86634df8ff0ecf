// The elastic-model interface as the layers above models/ see it: built from ModelOptions by
// make_model, driven through ElasticModel& only.

#include <gtest/gtest.h>

#include "../test_util.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/vit/thinking_vit.h"
#include "thinkingvit/util/async_copy.h"
#include "thinkingvit/util/cuda_graph.h"

namespace thinkingvit::testing {

TEST(ElasticModel, MakeModelBuildsTheFamilyTheOptionsName) {
  const models::ModelOptions options = models::model_preset("thinkingvit_mnist_2h_4h");
  EXPECT_EQ(options.architecture(), "thinkingvit");
  const auto model = models::make_model(options);
  ASSERT_NE(dynamic_cast<models::ThinkingViTImpl*>(model.get()), nullptr);
  EXPECT_EQ(model->num_stages(), 2);
  EXPECT_EQ(model->model_options(), options);
  EXPECT_EQ(options.stage_heads(0), "2");
  EXPECT_EQ(options.stage_heads(1), "4");
  expect_error([&] { options.stage_heads(2); }, {"stage 2 out of range", "2 stage(s)"});
}

TEST(ElasticModel, CountsAgreeWithTheModelItBuilds) {
  const models::ModelOptions options = models::model_preset("thinkingvit_mnist_2h_4h");
  const auto model = models::make_model(options);
  int64_t numel = 0;
  for (const auto& p : model->parameters()) numel += p.numel();
  EXPECT_EQ(options.parameter_count(), numel);
  const auto& vit = *options.as<models::ThinkingViTOptions>();
  EXPECT_EQ(model->stage_parameter_count(1), models::stage_parameter_count(vit, 1));
  for (int64_t s = 0; s < 2; ++s) {
    const auto breakdown = model->stage_macs(s);
    const auto direct = models::stage_macs(vit, s);
    EXPECT_EQ(breakdown.total(models::MacConvention::kReleased),
              direct.total(models::MacConvention::kReleased));
    EXPECT_EQ(breakdown.total(models::MacConvention::kFvcore),
              direct.total(models::MacConvention::kFvcore));
    EXPECT_EQ(breakdown.uncounted(), direct.recycle);
  }
  // Half the images reach stage 1: stage 0 for all, stage 1 for half, recycling only on request.
  const double s0 =
      static_cast<double>(model->stage_macs(0).total(models::MacConvention::kReleased));
  const double s1 =
      static_cast<double>(model->stage_macs(1).total(models::MacConvention::kReleased));
  const double r1 = static_cast<double>(model->stage_macs(1).uncounted());
  EXPECT_DOUBLE_EQ(models::expected_macs(options, {1.0, 0.5}, models::MacConvention::kReleased),
                   s0 + 0.5 * s1);
  EXPECT_DOUBLE_EQ(
      models::expected_macs(options, {1.0, 0.5}, models::MacConvention::kReleased, true),
      s0 + 0.5 * (s1 + r1));
  expect_error([&] { models::expected_macs(options, {1.0}, models::MacConvention::kReleased); },
               {"one share per stage (2)", "found 1"});
}

TEST(ElasticModel, StateDictNamesAndWeightDecayFollowDeit) {
  const auto model = models::make_model(models::model_preset("thinkingvit_mnist_2h_4h"));
  const auto names = model->state_dict_names();
  for (const char* name :
       {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.5.attn.qkv.weight",
        "norm.bias", "head.weight", "alpha.0", "proj_layer.weight"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  auto params = model->named_parameters();
  EXPECT_TRUE(model->decays("blocks.0.attn.qkv.weight", params["blocks.0.attn.qkv.weight"]));
  EXPECT_TRUE(model->decays("proj_layer.weight", params["proj_layer.weight"]));
  for (const char* name :
       {"cls_token", "pos_embed", "alpha.0", "blocks.0.attn.qkv.bias", "blocks.0.norm1.weight"}) {
    EXPECT_FALSE(model->decays(name, params[name])) << name;
  }
  // Nesting: widths crop and embed, the classes and the token count do not.
  EXPECT_EQ(model->tensor_layout("head.weight", 2).nested, (std::vector<bool>{false, true}));
  EXPECT_EQ(model->tensor_layout("pos_embed", 3).nested, (std::vector<bool>{false, false, true}));
  EXPECT_TRUE(model->tensor_layout("blocks.0.attn.qkv.weight", 2).stacked_qkv);
}

TEST(ElasticModel, ElasticForwardThroughTheInterfaceMatchesEveryStage) {
  torch::manual_seed(3);
  const auto model = models::make_model(models::model_preset("thinkingvit_mnist_2h_4h"));
  model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({5, 1, 28, 28});
  const auto all = model->forward_all(x);
  const auto h0 = models::entropy(all[0].logits);
  // A threshold between the samples' stage-0 entropies: some stop, some go on.
  const double tau = h0.median().item<double>();
  const auto out = model->forward_elastic(x, tau);
  for (int64_t b = 0; b < 5; ++b) {
    const int64_t want = h0[b].item<double>() < tau ? 0 : 1;
    EXPECT_EQ(out.exit_stage[b].item<int64_t>(), want) << b;
    EXPECT_TRUE(close_scaled(out.logits[b], all[want].logits[b], 1e-5)) << b;
  }
  EXPECT_EQ(out.samples_per_stage[0], 5);
  EXPECT_EQ(out.samples_per_stage[1], (h0 >= tau).sum().item<int64_t>());
}

}  // namespace thinkingvit::testing

namespace thinkingvit::testing {

// Sizes from files are checked before anything is allocated; the error names the option.
TEST(ModelBounds, AbsurdSizesAreRefusedByName) {
  const auto vit = [](auto set) {
    auto o = models::preset("deit_tiny_patch16_224");
    set(o);
    return models::ModelOptions(o);
  };
  expect_error([&] { vit([](auto& o) { o.num_classes(1000000000000); }).validate(); },
               {"'num_classes'", "beyond the supported"});
  expect_error([&] { vit([](auto& o) { o.depth(1000000000); }).validate(); },
               {"'depth'", "beyond the supported"});
  expect_error([&] { vit([](auto& o) { o.mlp_ratio(1e9); }).validate(); },
               {"'mlp_ratio'", "beyond the supported"});
  expect_error([&] { vit([](auto& o) { o.image_size(100000); }).validate(); },
               {"'image_size'", "beyond the supported"});
  // Each option within its bound, together too costly to count in int64.
  expect_error([&] { vit([](auto& o) { o.head_dim(4096).stages({1024}); }).validate(); },
               {"beyond the supported"});
  const auto swin = [](auto set) {
    auto o = models::swin_preset("thinkingvit_swin_s");
    set(o);
    return models::ModelOptions(o);
  };
  expect_error([&] { swin([](auto& o) { o.embed_dim(6000000); }).validate(); },
               {"'embed_dim'", "beyond the supported"});
  expect_error([&] { swin([](auto& o) {
                       o.depths({2, 2, 100000000, 2});
                     }).validate(); },
               {"'depths'", "beyond the supported"});
  expect_error([&] { swin([](auto& o) { o.mlp_ratio(1e30); }).validate(); },
               {"'mlp_ratio'", "beyond the supported"});
  // The shift mask a 16384 px image with patch 1 and window 256 would need.
  expect_error(
      [&] { swin([](auto& o) { o.image_size(16384).patch_size(2).window_size(256); }).validate(); },
      {"shift mask would hold"});
}

TEST(ModelBounds, AModelTooLargeForThisMachineIsRefusedWithTheFigure) {
  // 80 billion parameters: 1.6 TB to train, beyond any machine this suite runs on.
  auto o = models::preset("deit_tiny_patch16_224");
  o.depth(1024).head_dim(64).stages({40});
  const models::ModelOptions options(o);
  options.validate();
  expect_error([&] { models::check_fits_in_memory(options, 5, "model", 0, true); },
               {"model: the model has", "training it needs about", "GiB (weights, gradients, AdamW",
                "more than the", "of this machine"});
  // A small model fits.
  models::check_fits_in_memory(models::model_preset("thinkingvit_mnist_2h_4h"), 5, "model");
}

// The activation estimate is the closed form the header states.
TEST(ModelBounds, ActivationsFollowTheStatedFormula) {
  // Tiny ViT: 5 tokens, depth 2, head_dim 4, stages 1 and 2 heads (widths 4, 8), MLP ratio 4.
  const models::ModelOptions vit(tiny_options({1, 2}));
  // Training: 2 blocks x [(8 + 8) * 5 * D + 2 * h * 25] per stage
  //   = 2 * (320 + 50) + 2 * (640 + 100).
  auto m = models::estimate_memory(vit, 5, 3, /*training=*/true);
  EXPECT_DOUBLE_EQ(m.activations, 3 * 4.0 * 2220);
  EXPECT_DOUBLE_EQ(m.weights, 5 * 4.0 * static_cast<double>(vit.parameter_count()));
  // Inference: the largest block, (5 + 4) * 5 * 8 + 2 * 2 * 25 = 460 floats.
  EXPECT_DOUBLE_EQ(models::estimate_memory(vit, 1, 3, false).activations, 3 * 4.0 * 460);
  // Tiny Swin: 8x8 tokens then 4x4, window 4 (padded = tokens), widths per round (4, 8) and
  // (8, 16), heads (1, 2) and (2, 4), hidden 4 C, depths 2 and 1. A block keeps
  // N (8 C + 2 * 4 C) + 2 h N 16 floats: round 0 2 * 6144 + 3072, round 1 2 * 12288 + 6144.
  const models::ModelOptions swin(tiny_swin_options());
  swin.validate();
  EXPECT_DOUBLE_EQ(models::estimate_memory(swin, 1, 2, true).activations, 2 * 4.0 * 46080);
  // Inference: the widest level-0 block, 9 * 64 * 8 + 2 * 2 * 64 * 16.
  EXPECT_DOUBLE_EQ(models::estimate_memory(swin, 1, 2, false).activations, 2 * 4.0 * 8704);
  // A 4096-pixel ViT's attention alone (65,537 tokens) cannot fit on this machine.
  auto big = tiny_options({1, 2});
  big.image_size(4096).patch_size(16);
  expect_error([&] { models::check_fits_in_memory(big, 1, "model", 1, false); },
               {"running it on batches of 1 needs about", "activations", "GiB", "of this machine"});
}

// CUDA graph sizes: the batch and the powers of two below it; on the CPU, run_stage is the
// eager forward whatever the sizes.
TEST(ElasticModel, CudaGraphSizesAndTheCpuFallback) {
  EXPECT_EQ(models::default_cuda_graph_sizes(256), (std::vector<int64_t>{8, 16, 32, 64, 128, 256}));
  EXPECT_EQ(models::default_cuda_graph_sizes(100), (std::vector<int64_t>{8, 16, 32, 64, 100}));
  EXPECT_EQ(models::default_cuda_graph_sizes(4), (std::vector<int64_t>{4}));
  EXPECT_EQ(models::default_cuda_graph_sizes(6, 2), (std::vector<int64_t>{2, 4, 6}));
  expect_error([] { models::default_cuda_graph_sizes(0); }, {"must be > 0"});
  auto model = tiny_model();
  expect_error([&] { model->set_cuda_graph_sizes({4, 0}); }, {"CUDA graph sizes", "> 0", "0"});
  model->set_cuda_graph_sizes({8, 2, 8});
  EXPECT_EQ(model->cuda_graph_sizes(), (std::vector<int64_t>{2, 8}));
  torch::NoGradGuard no_grad;
  const auto images = tiny_images(3);
  const auto eager = model->forward_stage(0, images);
  const auto run = model->run_stage(0, images);
  EXPECT_TRUE(torch::equal(run.logits, eager.logits));
  EXPECT_TRUE(torch::equal(run.tokens, eager.tokens));
  model->forward_elastic(images, 1.0);
  EXPECT_EQ(model->cuda_graph_count(), 0u);
  expect_error([] { compat::CapturedCall([] {}, c10::Device(c10::kCPU)); }, {"CUDA graphs", "cpu"});
}

TEST(ElasticModel, UploadAndReadbackOnTheCpuHandBackTheTensor) {
  // The CPU side of the input copy stream and of the deferred loss read-back (tests/cuda checks
  // the streams): no copy, no wait.
  const auto t = torch::arange(6, torch::kFloat);
  compat::Upload upload(t, c10::Device(c10::kCPU));
  EXPECT_EQ(upload.take().data_ptr(), t.data_ptr());
  compat::Readback empty;
  EXPECT_FALSE(empty.defined());
  compat::Readback back(t * 2);
  ASSERT_TRUE(back.defined());
  EXPECT_TRUE(torch::equal(back.get(), t * 2));
}

}  // namespace thinkingvit::testing
