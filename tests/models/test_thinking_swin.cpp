// ThinkingViT on Swin against an independent PyTorch reference (scripts/make_swin_golden.py,
// checked against the released code), hand computations of the window geometry, and the
// released MAC and parameter figures.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "../test_util.h"
#include "../train/tiny_config.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/io/model_config.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/models/swin/thinking_swin.h"
#include "thinkingvit/train/trainer.h"

namespace thinkingvit::testing {

namespace {

// The tiny golden model as its Hugging Face folder: config.json (from the fixture's metadata,
// the export's own format) and model.safetensors.
std::string swin_folder(const TempDir& dir) {
  const auto file = io::read_safetensors(fixture("swin_tiny_weights.safetensors"));
  const auto folder = dir.path() / "swin_tiny";
  std::filesystem::create_directories(folder);
  std::ofstream(folder / "config.json") << file.metadata.at("config");
  std::filesystem::copy_file(fixture("swin_tiny_weights.safetensors"),
                             folder / "model.safetensors");
  return folder.string();
}

std::shared_ptr<models::ElasticModel> load_golden_model(const std::string& folder,
                                                        models::AttentionBackend backend) {
  auto weights = io::read_weights(folder);
  EXPECT_TRUE(weights.options.has_value());
  auto options = *weights.options;
  options.as<models::ThinkingSwinOptions>()->attention(backend);
  auto model = models::make_model(options);
  io::LoadOptions strict;
  strict.strict = true;
  const auto report = io::load_state_dict(*model, weights.tensors, weights.path, strict);
  EXPECT_TRUE(report.exact()) << report.summary();
  model->eval();
  return model;
}

int64_t swin_total(const std::string& preset, int64_t stage) {
  return models::model_preset(preset).stage_macs(stage).total(models::MacConvention::kReleased);
}

}  // namespace

TEST(SwinGeometry, WindowPartitionByHand) {
  // 4x4 grid, window 2: window 0 holds tokens 0, 1, 4, 5; window 1 holds 2, 3, 6, 7; ...
  const auto grid = torch::arange(16, torch::kLong).view({1, 4, 4, 1});
  const auto w = models::window_partition(grid, 2).view({4, 4});
  const auto want =
      torch::tensor({0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}, torch::kLong)
          .view({4, 4});
  EXPECT_TRUE(torch::equal(w, want)) << w;
  EXPECT_TRUE(
      torch::equal(models::window_reverse(models::window_partition(grid, 2), 2, 4, 4), grid));
}

TEST(SwinGeometry, RelativePositionIndexByHand) {
  // Tokens (0,0), (0,1), (1,0), (1,1); index = (dy + 1) * 3 + (dx + 1).
  const auto want =
      torch::tensor({4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4}, torch::kLong).view({4, 4});
  EXPECT_TRUE(torch::equal(models::relative_position_index(2), want));
}

TEST(SwinGeometry, ShiftMaskByHand) {
  // 4x4 grid, window 2, shift 1: regions per axis [0, 2), [2, 3), [3, 4).
  const auto mask = models::shift_attention_mask(4, 4, 2, 1);
  ASSERT_EQ(mask.sizes().vec(), (std::vector<int64_t>{4, 4, 4}));
  EXPECT_EQ(mask[0].abs().sum().item<float>(), 0.0f);  // top-left window: one region
  // Top-right window: tokens (0,2), (0,3), (1,2), (1,3) -> regions 1, 2, 1, 2.
  const auto tr =
      torch::tensor({0, -100, 0, -100, -100, 0, -100, 0, 0, -100, 0, -100, -100, 0, -100, 0},
                    torch::kFloat)
          .view({4, 4});
  EXPECT_TRUE(torch::equal(mask[1], tr)) << mask[1];
  // Bottom-right window: four regions, every token alone.
  EXPECT_TRUE(torch::equal(mask[3], (1 - torch::eye(4)) * -100.0f)) << mask[3];
}

TEST(SwinGeometry, MatchesTheReference) {
  const auto g = io::read_safetensors(fixture("swin_tiny_golden.safetensors")).tensors;
  EXPECT_TRUE(torch::equal(models::relative_position_index(4), g.at("rel_pos_index.w4")));
  EXPECT_TRUE(torch::equal(models::shift_attention_mask(8, 8, 4, 2), g.at("attn_mask.stage0")));
  // 6x6 padded to 8x8: regions on the padded grid.
  EXPECT_TRUE(torch::equal(models::shift_attention_mask(6, 6, 4, 2), g.at("attn_mask.pad6_w4_s2")));
  const auto grid = torch::arange(64, torch::kLong).view({1, 8, 8, 1});
  EXPECT_TRUE(torch::equal(models::window_partition(grid, 4).view({4, 16}),
                           g.at("window_partition.8x8_w4")));
}

TEST(ThinkingSwin, ConfigJsonOfTheExportReadsBack) {
  TempDir dir;
  const auto weights = io::read_weights(swin_folder(dir));
  ASSERT_TRUE(weights.options.has_value());
  const auto* o = weights.options->as<models::ThinkingSwinOptions>();
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(weights.options->architecture(), "thinkingvit_swin");
  EXPECT_EQ(o->image_size(), 16);
  EXPECT_EQ(o->patch_size(), 2);
  EXPECT_EQ(o->embed_dim(), 6);
  EXPECT_EQ(o->depths(), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(o->num_heads(), (std::vector<int64_t>{2, 4, 8}));
  EXPECT_EQ(o->window_size(), 4);
  EXPECT_EQ(o->num_classes(), 16);
  EXPECT_EQ(o->head_rounds(), (std::vector<std::vector<int64_t>>{{1, 2, 4}, {2, 4, 8}}));
  // Ours written, then read: the same options.
  const auto again = dir.file("again.json");
  std::ofstream(again) << io::config_json(*weights.options, {});
  std::filesystem::create_directories(dir.path() / "ours");
  std::filesystem::rename(again, dir.path() / "ours" / "config.json");
  std::filesystem::copy_file(weights.path, dir.path() / "ours" / "model.safetensors");
  EXPECT_EQ(*io::read_weights((dir.path() / "ours").string()).options, *weights.options);
}

TEST(ThinkingSwin, StateDictNamesAreTheExports) {
  TempDir dir;
  const auto weights = io::read_weights(swin_folder(dir));
  const auto model = models::make_model(*weights.options);
  const auto names = model->state_dict_names();
  std::set<std::string> ours(names.begin(), names.end()), theirs;
  for (const auto& [name, t] : weights.tensors) theirs.insert(name);
  EXPECT_EQ(ours, theirs);
  // Swin-S: the 333 tensors of the released folder, a few shapes spelled out.
  const auto swin_s = models::make_model(models::model_preset("thinkingvit_swin_s"));
  auto params = swin_s->named_parameters();
  EXPECT_EQ(swin_s->state_dict_names().size(), 333u);
  EXPECT_EQ(params["layers.3.downsample.reduction.weight"].sizes().vec(),
            (std::vector<int64_t>{768, 1536}));
  EXPECT_EQ(params["layers.2.blocks.17.attn.relative_position_bias_table"].sizes().vec(),
            (std::vector<int64_t>{169, 12}));
  EXPECT_EQ(params["proj_layer.upsample.weight"].sizes().vec(),
            (std::vector<int64_t>{384, 1, 8, 8}));
  EXPECT_EQ(params["proj_layer.proj.weight"].sizes().vec(), (std::vector<int64_t>{96, 384, 1, 1}));
  EXPECT_EQ(params["head.fc.weight"].sizes().vec(), (std::vector<int64_t>{1000, 768}));
  EXPECT_EQ(params.find("layers.0.downsample.norm.weight"), nullptr);
  int64_t numel = 0;
  for (const auto& p : swin_s->parameters()) numel += p.numel();
  EXPECT_EQ(numel, 49667795);
}

TEST(ThinkingSwin, MacsAndParametersAreTheReleasedFigures) {
  EXPECT_EQ(swin_total("thinkingvit_swin_s", 0), 2817590784);
  EXPECT_EQ(swin_total("thinkingvit_swin_s", 1), 8857684992);
  const auto s = models::model_preset("thinkingvit_swin_s");
  EXPECT_DOUBLE_EQ(models::expected_macs(s, {1.0, 1.0}, models::MacConvention::kReleased),
                   11675275776.0);
  EXPECT_EQ(s.parameter_count(), 49667795);
  // The projector belongs to round 2: 1,204,224 + 115,605,504.
  const auto round2 = s.stage_macs(1);
  int64_t projector = -1;
  for (const auto& t : round2.terms) {
    if (t.name == "token projector") projector = t.macs;
  }
  EXPECT_EQ(projector, 116809728);
  EXPECT_EQ(swin_total("thinkingvit_swin_t", 0), 1732886016);
  EXPECT_EQ(swin_total("thinkingvit_swin_t", 1), 4607376384);
  EXPECT_EQ(models::model_preset("thinkingvit_swin_t").parameter_count(), 28349891);
  EXPECT_EQ(swin_total("thinkingvit_swin_b", 0), 4938532864);
  EXPECT_EQ(swin_total("thinkingvit_swin_b", 1), 15638073344);
  EXPECT_EQ(models::model_preset("thinkingvit_swin_b").parameter_count(), 87866657);
}

class SwinGolden : public ::testing::TestWithParam<models::AttentionBackend> {};

TEST_P(SwinGolden, RoundsEntropiesAndExitsMatchTheReference) {
  TempDir dir;
  const auto model = load_golden_model(swin_folder(dir), GetParam());
  const auto g = io::read_safetensors(fixture("swin_tiny_golden.safetensors")).tensors;
  torch::NoGradGuard no_grad;
  const auto images = g.at("images");
  const auto all = model->forward_all(images);
  ASSERT_EQ(all.size(), 2u);
  for (int64_t r = 0; r < 2; ++r) {
    const auto s = std::to_string(r);
    EXPECT_TRUE(close_scaled(all[r].logits, g.at("logits." + s), 1e-4)) << "round " << r;
    EXPECT_TRUE(close_scaled(all[r].tokens, g.at("tokens." + s), 1e-4)) << "round " << r;
    EXPECT_TRUE(close_scaled(models::entropy(all[r].logits), g.at("entropy_top10." + s), 1e-4))
        << "round " << r;
  }
  const auto taus = g.at("thresholds");
  for (int64_t t = 0; t < taus.size(0); ++t) {
    const double tau = taus[t].item<double>();
    const auto out = model->forward_elastic(images, tau);
    EXPECT_TRUE(torch::equal(out.exit_stage, g.at("exit_round")[t])) << "tau " << tau;
    EXPECT_TRUE(close_scaled(out.logits, g.at("elastic_logits")[t], 1e-4)) << "tau " << tau;
    // Round 2 ran only on the images that needed it.
    EXPECT_EQ(out.samples_per_stage[1], g.at("exit_round")[t].sum().item<int64_t>());
  }
}

TEST_P(SwinGolden, APaddedShiftedBlockMatchesTheReference) {
  TempDir dir;
  const auto model = load_golden_model(swin_folder(dir), GetParam());
  const auto* swin = dynamic_cast<models::ThinkingSwinImpl*>(model.get());
  ASSERT_NE(swin, nullptr);
  const auto g = io::read_safetensors(fixture("swin_tiny_golden.safetensors")).tensors;
  torch::NoGradGuard no_grad;
  // layers.0.blocks.1 at full width on a 6x6 grid: window 4, shift 2, padded to 8x8.
  const auto out = models::swin_block_forward(g.at("pad_block.input"), swin->block_weights(1, 0, 1),
                                              2, 4, 2, models::relative_position_index(4),
                                              models::shift_attention_mask(6, 6, 4, 2), 1e-5,
                                              GetParam(), 0.0, false);
  EXPECT_TRUE(close_scaled(out, g.at("pad_block.output"), 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Backends, SwinGolden,
                         ::testing::Values(models::AttentionBackend::kFused,
                                           models::AttentionBackend::kExplicit),
                         [](const auto& info) {
                           return std::string(models::attention_backend_name(info.param));
                         });

TEST(ThinkingSwin, FusedAndExplicitAttentionGiveTheSameGradients) {
  torch::manual_seed(5);
  auto options = models::model_preset("thinkingvit_swin_cifar");
  const auto x = torch::randn({2, 3, 32, 32});
  std::vector<std::map<std::string, at::Tensor>> grads;
  for (auto backend : {models::AttentionBackend::kFused, models::AttentionBackend::kExplicit}) {
    torch::manual_seed(6);
    options.as<models::ThinkingSwinOptions>()->attention(backend);
    auto model = models::make_model(options);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->named_parameters()) {
        if (p.key().rfind("alpha", 0) == 0) p.value().fill_(0.5);  // the projector gets gradients
      }
    }
    const auto out = model->forward_all(x);
    (out[0].logits.square().mean() + out[1].logits.square().mean()).backward();
    std::map<std::string, at::Tensor> g;
    for (const auto& p : model->named_parameters()) g[p.key()] = p.value().grad().clone();
    grads.push_back(g);
  }
  for (const auto& [name, g] : grads[0]) {
    EXPECT_TRUE(close_scaled(g, grads[1].at(name), 1e-3)) << name;
  }
  EXPECT_GT(
      grads[0].at("layers.0.blocks.1.attn.relative_position_bias_table").abs().sum().item<double>(),
      0);
  EXPECT_GT(grads[0].at("proj_layer.upsample.weight").abs().sum().item<double>(), 0);
}

TEST(ThinkingSwin, TimmWeightsStartTrainingWithoutRecycling) {
  // A plain Swin's tensors, in the old Microsoft layout with its buffers, into a two-round model:
  // everything but alpha and the projector loads; alpha stays 0, so round 2 is the plain Swin.
  torch::manual_seed(7);
  auto plain_options = models::model_preset("thinkingvit_swin_cifar");
  plain_options.as<models::ThinkingSwinOptions>()->head_rounds(
      {plain_options.as<models::ThinkingSwinOptions>()->num_heads()});
  const auto plain = models::make_model(plain_options);
  plain->eval();
  io::TensorMap old_layout;
  for (const auto& [name, t] : io::state_dict(*plain)) {
    std::string key = name;
    if (key.rfind("head.fc.", 0) == 0) key = "head." + key.substr(8);
    const auto pos = key.find(".downsample.");
    if (pos != std::string::npos) {  // layers.i.downsample -> layers.(i-1).downsample
      const int level = std::stoi(key.substr(7, pos - 7));
      key = "layers." + std::to_string(level - 1) + key.substr(pos);
    }
    old_layout[key] = t;
  }
  old_layout["layers.0.blocks.0.attn.relative_position_index"] = models::relative_position_index(4);
  const auto model = models::make_model(models::model_preset("thinkingvit_swin_cifar"));
  io::LoadOptions init;
  init.allow_missing = true;
  const auto loaded = io::load_state_dict(*model, old_layout, "timm", init);
  EXPECT_EQ(loaded.count(io::TensorStatus::kUnexpected), 0) << loaded.summary();
  EXPECT_EQ(loaded.count(io::TensorStatus::kMissing), 4) << loaded.summary();  // alpha, projector
  model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 32, 32});
  EXPECT_TRUE(close_scaled(model->forward_all(x)[1].logits, plain->forward_all(x)[0].logits, 1e-5));
}

TEST(ThinkingSwin, ASmallSwinTrainsAFewSteps) {
  TempDir dir;
  auto c = tiny_config(dir.file("run"));
  c.model.options = tiny_swin_options().drop_path_rate(0.1);
  c.schedule.epochs = 2;
  const auto history = train::train(c);
  ASSERT_EQ(history.size(), 2u);
  for (const auto& e : history) {
    for (double l : e.stage_loss) EXPECT_TRUE(std::isfinite(l));
  }
  // config.yaml reads back as the same Swin.
  EXPECT_EQ(train::load_config((dir.path() / "run" / "config.yaml").string()).model.options,
            c.model.options);
  // The weights it saved load back into the model config.json names.
  const auto weights = io::read_weights((dir.path() / "run" / "best").string());
  ASSERT_TRUE(weights.options && weights.options->as<models::ThinkingSwinOptions>());
  const auto model = models::make_model(*weights.options);
  io::LoadOptions strict;
  strict.strict = true;
  EXPECT_TRUE(io::load_state_dict(*model, weights.tensors, weights.path, strict).exact());
}

TEST(ThinkingSwin, YamlModelSectionSetsSwinKeys) {
  TempDir dir;
  std::ofstream(dir.file("a.yaml"))
      << "model:\n  depths: [2, 2, 1]\n  preset: thinkingvit_swin_cifar\n"
         "  head_rounds: [[1, 2, 4], [2, 4, 8]]\n";
  const auto c = io::model_options_from_yaml(dir.file("a.yaml"));
  ASSERT_NE(c.as<models::ThinkingSwinOptions>(), nullptr);
  EXPECT_EQ(c.as<models::ThinkingSwinOptions>()->depths(), (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(c.as<models::ThinkingSwinOptions>()->image_size(), 32);
  std::ofstream(dir.file("b.yaml")) << "model:\n  family: swin\n  embed_dim: 192\n";
  EXPECT_EQ(io::model_options_from_yaml(dir.file("b.yaml"))
                .as<models::ThinkingSwinOptions>()
                ->embed_dim(),
            192);
  std::ofstream(dir.file("c.yaml")) << "model:\n  preset: thinkingvit_swin_cifar\n  depth: 3\n";
  expect_error([&] { io::model_options_from_yaml(dir.file("c.yaml")); },
               {"line 3", "'model.depth' is an option of family 'vit'", "thinkingvit_swin"});
  std::ofstream(dir.file("d.yaml")) << "model:\n  window_size: 4\n";
  expect_error([&] { io::model_options_from_yaml(dir.file("d.yaml")); },
               {"line 2", "'model.window_size' is an option of family 'swin'", "set model.family"});
  std::ofstream(dir.file("e.yaml")) << "model:\n  preset: thinkingvit_swin_cifar\n"
                                       "  head_rounds: [[1, 2, 9], [2, 4, 8]]\n";
  expect_error([&] { io::model_options_from_yaml(dir.file("e.yaml")); },
               {"e.yaml", "head_rounds", "round 0 level 2 uses 9 heads, expected 1..8"});
}

}  // namespace thinkingvit::testing
