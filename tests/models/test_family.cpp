// The model-family registry and the face every family's options share.

#include <gtest/gtest.h>

#include <set>

#include "../test_util.h"
#include "thinkingvit/io/checkpoint.h"
#include "thinkingvit/models/model_options.h"
#include "thinkingvit/models/swin/options.h"
#include "thinkingvit/models/vit/options.h"

namespace thinkingvit::testing {

TEST(ModelFamily, TheRegistryHoldsEachFamilyOnceWithTheDefaultFirst) {
  const auto& families = models::model_families();
  ASSERT_EQ(families.size(), 2u);
  EXPECT_EQ(&models::default_model_family(), families.front());
  EXPECT_EQ(models::default_model_family().name(), "vit");
  EXPECT_EQ(&models::model_family("swin"), families[1]);
  EXPECT_EQ(models::ModelOptions().family().name(), "vit");  // the default family's defaults
  expect_error([] { models::model_family("resnet"); },
               {"unknown model family 'resnet'", "'vit', 'swin'"});
  // Every preset belongs to exactly one family, the one model_preset builds it in.
  std::set<std::string> seen;
  for (const auto* family : families) {
    for (const auto& name : family->preset_names()) {
      EXPECT_TRUE(seen.insert(name).second) << name;
      EXPECT_EQ(models::preset_family(name), family) << name;
      EXPECT_EQ(&models::model_preset(name).family(), family) << name;
    }
  }
  EXPECT_EQ(seen.size(), models::model_preset_names().size());
  EXPECT_EQ(models::preset_family("deit_huge"), nullptr);
}

TEST(ModelFamily, EveryOptionKeyReadsBackWhatItWrites) {
  for (const auto* family : models::model_families()) {
    for (const auto& name : family->preset_names()) {
      const auto preset = family->preset(name);
      auto copy = family->defaults();
      for (const auto& key : family->option_keys()) key.set(*copy, key.get(*preset));
      EXPECT_EQ(copy->describe(), preset->describe()) << family->name() << " " << name;
    }
    // The key that sets the stages exists and is a list.
    const auto& keys = family->option_keys();
    const auto stages = std::find_if(keys.begin(), keys.end(),
                                     [&](const auto& k) { return k.name == family->stages_key(); });
    ASSERT_NE(stages, keys.end()) << family->name();
    EXPECT_TRUE(stages->type == models::OptionType::kIntegers ||
                stages->type == models::OptionType::kIntegerLists);
  }
}

TEST(ModelFamily, OptionTextIsYamlFlow) {
  EXPECT_EQ(models::option_text(true), "true");
  EXPECT_EQ(models::option_text(int64_t{224}), "224");
  EXPECT_EQ(models::option_text(std::string("fused")), "fused");
  EXPECT_EQ(models::option_text(std::vector<int64_t>{3, 6}), "[3, 6]");
  EXPECT_EQ(models::option_text(std::vector<std::vector<int64_t>>{{1, 2}, {3}}), "[[1, 2], [3]]");
  EXPECT_EQ(models::ModelOptions(models::preset("thinkingvit_3h_6h")).stages_source(),
            "model.stages [3, 6]");
  EXPECT_EQ(models::model_preset("thinkingvit_swin_s").stages_source(),
            "model.head_rounds [[3, 3, 6, 12], [3, 6, 12, 24]]");
}

TEST(ModelFamily, ModelOptionsCopyTheirFamilyOptionsAndKnowTheirType) {
  models::ModelOptions a = models::preset("thinkingvit_3h_6h");
  models::ModelOptions b = a;
  b.as<models::ThinkingViTOptions>()->depth(3);  // a copy, not a shared pointer
  EXPECT_EQ(a.as<models::ThinkingViTOptions>()->depth(), 12);
  EXPECT_FALSE(a == b);
  b = a;
  EXPECT_TRUE(a == b);
  EXPECT_EQ(a.as<models::ThinkingSwinOptions>(), nullptr);
  const auto swin = models::model_preset("thinkingvit_swin_s");
  EXPECT_NE(swin.as<models::ThinkingSwinOptions>(), nullptr);
  EXPECT_FALSE(swin == a);
  EXPECT_EQ(a.stage_heads(1), "6");
  EXPECT_EQ(swin.stage_heads(0), "3-3-6-12");
}

TEST(ModelFamily, ConfigsAndStatesGoToTheFamilyThatClaimsThem) {
  const auto swin = models::model_preset("thinkingvit_swin_s");
  const auto vit = models::ModelOptions(models::preset("thinkingvit_3h_6h"));
  EXPECT_EQ(&models::config_family(swin.family_options().config_json()), &swin.family());
  EXPECT_EQ(&models::config_family(vit.family_options().config_json()), &vit.family());
  EXPECT_EQ(&models::config_family("{}"), &models::default_model_family());  // nobody claims it
  const auto tiny_swin = models::make_model(models::model_preset("thinkingvit_swin_cifar"));
  EXPECT_EQ(&models::state_family(io::state_dict(*tiny_swin)), &models::model_family("swin"));
  EXPECT_EQ(&models::state_family({}), &models::default_model_family());
}

}  // namespace thinkingvit::testing
