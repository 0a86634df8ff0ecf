#include <gtest/gtest.h>

#include "../test_util.h"
#include "thinkingvit/models/macs.h"

namespace thinkingvit::testing {

using models::MacConvention;

int64_t macs(const std::string& preset, int64_t stage, MacConvention c) {
  return models::stage_macs(models::preset(preset), stage).total(c);
}

TEST(Macs, ReleasedConventionIsExact) {
  EXPECT_EQ(macs("deit_tiny_patch16_224", 0, MacConvention::kReleased), 1253683200);
  EXPECT_EQ(macs("deit_small_patch16_224", 0, MacConvention::kReleased), 4598882304);
  EXPECT_EQ(macs("deit_base_patch16_224", 0, MacConvention::kReleased), 17563828224);
  EXPECT_EQ(macs("thinkingvit_2h_3h", 0, MacConvention::kReleased), 603398144);
  // Stage i of a ThinkingViT costs what the standalone ViT of its width costs.
  EXPECT_EQ(macs("thinkingvit_3h_6h", 0, MacConvention::kReleased), 1253683200);
  EXPECT_EQ(macs("thinkingvit_3h_6h", 1, MacConvention::kReleased), 4598882304);
}

TEST(Macs, FvcoreConventionAddsLayerNorm) {
  EXPECT_EQ(macs("deit_tiny_patch16_224", 0, MacConvention::kFvcore), 1258411200);
  EXPECT_EQ(macs("deit_small_patch16_224", 0, MacConvention::kFvcore), 4608338304);
  EXPECT_EQ(macs("deit_base_patch16_224", 0, MacConvention::kFvcore), 17582740224);
}

TEST(Macs, BreakdownOfDeitTiny) {
  const auto m = models::stage_macs(models::preset("deit_tiny_patch16_224"), 0);
  EXPECT_EQ(m.patch_embed, 196LL * 192 * 3 * 16 * 16);
  EXPECT_EQ(m.qkv, 12LL * 197 * 192 * 576);
  EXPECT_EQ(m.attention, 12LL * 2 * 197 * 197 * 192);
  EXPECT_EQ(m.proj, 12LL * 197 * 192 * 192);
  EXPECT_EQ(m.mlp, 12LL * 2 * 197 * 192 * 768);
  EXPECT_EQ(m.head, 192LL * 1000);
  EXPECT_EQ(m.recycle, 0);
}

TEST(Macs, ThinkingViTAtAnyThreshold) {
  const auto o = models::preset("thinkingvit_3h_6h");
  EXPECT_EQ(models::stage_macs(o, 1).recycle, 197LL * 192 * 384);  // 0.0145 G, shown apart
  const double all = models::expected_macs(o, {1.0, 1.0}, MacConvention::kReleased);
  EXPECT_DOUBLE_EQ(all, 1253683200.0 + 4598882304.0);
  EXPECT_NEAR(all / 1e9, 5.85, 0.005);
  EXPECT_DOUBLE_EQ(models::expected_macs(o, {1.0, 1.0}, MacConvention::kReleased, true),
                   all + 197.0 * 192 * 384);
  // Released table, tau = 0.5: 20361 of 50000 images stop at stage 1 -> 3.9768 GMACs with
  // the rounded constants 1.25 and 4.60.
  const double reach = 1.0 - 20361.0 / 50000.0;
  const double exact = models::expected_macs(o, {1.0, reach}, MacConvention::kReleased);
  EXPECT_DOUBLE_EQ(exact, 1253683200.0 + reach * 4598882304.0);
  EXPECT_NEAR(exact / 1e9, 3.9768, 0.005);
  EXPECT_DOUBLE_EQ(models::expected_macs(o, {1.0, 0.0}, MacConvention::kReleased), 1253683200.0);
}

TEST(Macs, ParameterCounts) {
  EXPECT_EQ(models::total_parameter_count(models::preset("deit_tiny_patch16_224")), 5717416);
  EXPECT_EQ(models::total_parameter_count(models::preset("deit_small_patch16_224")), 22050664);
  EXPECT_EQ(models::total_parameter_count(models::preset("deit_base_patch16_224")), 86567656);
  const auto o = models::preset("thinkingvit_3h_6h");
  EXPECT_EQ(models::total_parameter_count(o), 22124777);
  EXPECT_EQ(models::stage_parameter_count(o, 0), 5717416);  // stage 1 is DeiT-Tiny
  // The analytic count equals the registered parameters of a real model.
  for (const auto& opts : {o, tiny_options(), models::preset("thinkingvit_mnist_2h_4h")}) {
    models::ThinkingViT model(opts);
    int64_t n = 0;
    for (const auto& p : model->parameters()) n += p.numel();
    EXPECT_EQ(n, models::total_parameter_count(opts)) << opts.describe();
  }
}

}  // namespace thinkingvit::testing
