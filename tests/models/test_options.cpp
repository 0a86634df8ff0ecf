#include <gtest/gtest.h>

#include "../test_util.h"
#include "thinkingvit/models/vit/options.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::testing {

TEST(Options, PresetsHaveThePapersShapes) {
  const auto tiny = models::preset("deit_tiny_patch16_224");
  EXPECT_EQ(tiny.embed_dim(), 192);
  EXPECT_EQ(tiny.num_tokens(), 197);
  EXPECT_EQ(tiny.num_stages(), 1);
  const auto tvit = models::preset("thinkingvit_3h_6h");
  EXPECT_EQ(tvit.stages(), (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(tvit.embed_dim(), 384);
  EXPECT_EQ(tvit.stage_width(0), 192);
  EXPECT_EQ(tvit.hidden_width(tvit.stage_width(0)), 768);
  EXPECT_EQ(models::preset("thinkingvit_3h_6h_12h").embed_dim(), 768);
  EXPECT_EQ(models::preset("thinkingvit_mnist_2h_4h").in_channels(), 1);
  for (const auto& name : models::preset_names()) EXPECT_NO_THROW(models::preset(name).validate());
}

TEST(Options, UnknownPresetNamesTheChoices) {
  expect_error([] { models::preset("deit_huge"); },
               {"unknown preset 'deit_huge'", "deit_tiny_patch16_224", "thinkingvit_3h_6h"});
}

TEST(Options, RejectsBadArchitectures) {
  expect_error(
      [] {
        tiny_options({2, 2}).validate();
      },
      {"'stages'", "strictly increasing", "[2, 2]"});
  expect_error([] { tiny_options({3, 1}).validate(); }, {"strictly increasing", "[3, 1]"});
  expect_error([] { tiny_options().image_size(10).validate(); },
               {"'image_size'", "10", "not divisible", "4"});
  expect_error([] { models::ThinkingViT(tiny_options({})); }, {"'stages'", "at least one"});
}

TEST(Options, ParsesStageLists) {
  EXPECT_EQ(models::parse_stages("3,6", "--stages"), (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(models::parse_stages("[2, 3, 6]", "--stages"), (std::vector<int64_t>{2, 3, 6}));
  EXPECT_EQ(models::parse_stages("3-6", "--stages"), (std::vector<int64_t>{3, 6}));
  expect_error([] { models::parse_stages("3,x", "--stages"); }, {"--stages", "'3,x'"});
  expect_error([] { models::parse_stages("", "--stages"); }, {"--stages"});
}

}  // namespace thinkingvit::testing
