// RandAugment: every op against PIL (tests/fixtures/augment_golden.safetensors, written by
// scripts/make_augment_golden.py with Pillow 9.4 calling PIL as timm does), closed forms,
// timm's level-to-argument maps, policy strings and the sampling of ops.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "../test_util.h"
#include "thinkingvit/data/rand_augment.h"
#include "thinkingvit/io/safetensors.h"

namespace thinkingvit::testing {
namespace {

using data::AffineFilter;
using data::AugmentOp;
using data::Image;
namespace ops = data::ops;

const std::vector<uint8_t> kFill = {124, 116, 104};

// A deterministic RGB (or gray) image with gradients and noise.
Image test_image(int h, int w, int c, uint64_t seed = 3) {
  Image img(h, w, c);
  data::Rng rng(seed);
  std::uniform_int_distribution<int> noise(0, 40);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int ch = 0; ch < c; ++ch) {
        img.at(y, x, ch) = static_cast<uint8_t>((x * 9 + y * 5 + ch * 70 + noise(rng)) % 256);
      }
    }
  }
  return img;
}

struct Diff {
  int max_abs = 0;     // largest |a - b| over all values
  int64_t differ = 0;  // values that differ at all
  int64_t total = 0;
};

Diff compare(const Image& a, const Image& b) {
  Diff d;
  EXPECT_EQ(a.height, b.height);
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.channels, b.channels);
  if (a.pixels.size() != b.pixels.size()) {
    d.max_abs = 256;
    return d;
  }
  d.total = static_cast<int64_t>(a.pixels.size());
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int diff = std::abs(static_cast<int>(a.pixels[i]) - static_cast<int>(b.pixels[i]));
    d.max_abs = std::max(d.max_abs, diff);
    d.differ += diff != 0;
  }
  return d;
}

bool same(const Image& a, const Image& b) {
  return a.height == b.height && a.width == b.width && a.channels == b.channels &&
         a.pixels == b.pixels;
}

AffineFilter filter_from(const std::string& name) {
  if (name == "nearest") return AffineFilter::kNearest;
  if (name == "bilinear") return AffineFilter::kBilinear;
  return AffineFilter::kBicubic;
}

// ---------------------------------------------------------------------------------------
// Golden: PIL 9.4 as timm calls it

class RandAugmentGolden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    file_ = new io::SafetensorsFile(io::read_safetensors(fixture("augment_golden.safetensors")));
  }
  static void TearDownTestSuite() {
    delete file_;
    file_ = nullptr;
  }
  static io::SafetensorsFile* file_;
};
io::SafetensorsFile* RandAugmentGolden::file_ = nullptr;

// Runs the C++ op named in the fixture's metadata.
Image run_case(const std::string& op, const Image& in, const std::string& filter_name,
               const std::string& arg_text) {
  const double arg = arg_text == "-" ? 0.0 : std::stod(arg_text);
  const auto filter = filter_from(filter_name);
  if (op == "autocontrast") return ops::auto_contrast(in);
  if (op == "equalize") return ops::equalize(in);
  if (op == "invert") return ops::invert(in);
  if (op == "posterize") return ops::posterize(in, static_cast<int>(arg));
  if (op == "solarize") return ops::solarize(in, static_cast<int>(arg));
  if (op == "solarize_add") return ops::solarize_add(in, static_cast<int>(arg));
  if (op == "color") return ops::color(in, arg);
  if (op == "contrast") return ops::contrast(in, arg);
  if (op == "brightness") return ops::brightness(in, arg);
  if (op == "sharpness") return ops::sharpness(in, arg);
  // Gray images get the same RGB fill: the C++ side uses its PIL luma, as the script does.
  if (op == "rotate") return ops::rotate(in, arg, kFill, filter);
  if (op == "shear_x") return ops::shear_x(in, arg, kFill, filter);
  if (op == "shear_y") return ops::shear_y(in, arg, kFill, filter);
  if (op == "translate_x") return ops::translate_x(in, arg, kFill, filter);
  if (op == "translate_y") return ops::translate_y(in, arg, kFill, filter);
  ADD_FAILURE() << "unknown op in fixture: " << op;
  return in;
}

// Pixel-wise ops, integer translations, nearest-neighbour geometry and quarter turns must be
// bit exact everywhere. Interpolated geometry (bilinear, bicubic) evaluates PIL's double
// formulas in the same order, so it is bit exact too where the arithmetic is Pillow's own
// (x86-64 without fused multiply-add); elsewhere FMA contraction and libm cos/sin may move a
// value across an integer: there at most 1 grey level on at most 1% of the values.
#if defined(__x86_64__) && !defined(__FMA__)
constexpr int kGeometryMaxDiff = 0;
constexpr double kGeometryMaxShare = 0.0;
#else
constexpr int kGeometryMaxDiff = 1;
constexpr double kGeometryMaxShare = 0.01;
#endif

TEST_F(RandAugmentGolden, EveryOpMatchesPil) {
  ASSERT_EQ(file_->metadata.at("fill.rgb"), "124 116 104");
  int cases = 0;
  for (const auto& [key, description] : file_->metadata) {
    if (key == "fill.rgb" || key == "fill.gray" || key == "pillow") continue;
    std::istringstream in(description);
    std::string op, image, filter, arg;
    in >> op >> image >> filter >> arg;
    SCOPED_TRACE(key + " (" + description + ")");
    const Image input = to_image(file_->tensors.at("input." + image));
    const Image expected = to_image(file_->tensors.at(key));
    const Image actual = run_case(op, input, filter, arg);
    const Diff d = compare(actual, expected);
    const bool interpolated = filter == "bilinear" || filter == "bicubic";
    const bool integer_shift = (op == "translate_x" || op == "translate_y") &&
                               std::stod(arg) == std::floor(std::stod(arg));
    const bool quarter_turn = op == "rotate" && std::fmod(std::stod(arg), 90.0) == 0.0;
    if (!interpolated || integer_shift || (quarter_turn && input.height == input.width) ||
        (op == "rotate" && std::fmod(std::stod(arg), 180.0) == 0.0)) {
      EXPECT_EQ(d.max_abs, 0) << d.differ << " of " << d.total << " values differ";
    } else {
      EXPECT_LE(d.max_abs, kGeometryMaxDiff) << d.differ << " of " << d.total << " values differ";
      EXPECT_LE(d.differ, kGeometryMaxShare * d.total) << "max diff " << d.max_abs;
    }
    ++cases;
  }
  EXPECT_GE(cases, 140);
}

TEST_F(RandAugmentGolden, GrayFillIsTheLumaOfTheRgbFill) {
  const Image gray = to_image(file_->tensors.at("input.gray"));
  const int luma = std::stoi(file_->metadata.at("fill.gray"));
  // Shifting everything out of the image leaves only the fill.
  const Image out = ops::translate_x(gray, 1000.0, kFill);
  EXPECT_TRUE(same(out, Image(gray.height, gray.width, 1, static_cast<uint8_t>(luma))));
  // One value is used as is, for gray and RGB alike.
  EXPECT_TRUE(same(ops::translate_y(gray, -1000.0, {7}), Image(gray.height, gray.width, 1, 7)));
  const Image rgb = to_image(file_->tensors.at("input.rgb"));
  EXPECT_TRUE(same(ops::translate_y(rgb, 1000.0, {7}), Image(rgb.height, rgb.width, 3, 7)));
  EXPECT_TRUE(same(ops::translate_y(rgb, 1000.0, {}), Image(rgb.height, rgb.width, 3, 0)));
}

// ---------------------------------------------------------------------------------------
// Closed forms

TEST(RandAugmentOps, IdentitiesAndInverses) {
  for (int c : {1, 3}) {
    SCOPED_TRACE(c);
    const Image img = test_image(19, 26, c);
    EXPECT_TRUE(same(ops::invert(ops::invert(img)), img));
    EXPECT_TRUE(same(ops::posterize(img, 8), img));
    EXPECT_TRUE(same(ops::posterize(img, 0), Image(19, 26, c, 0)));
    EXPECT_TRUE(same(ops::solarize(img, 256), img));
    EXPECT_TRUE(same(ops::solarize(img, 0), ops::invert(img)));
    EXPECT_TRUE(same(ops::solarize_add(img, 0), img));
    EXPECT_TRUE(same(ops::brightness(img, 1.0), img));
    EXPECT_TRUE(same(ops::brightness(img, 0.0), Image(19, 26, c, 0)));
    EXPECT_TRUE(same(ops::color(img, 1.0), img));
    EXPECT_TRUE(same(ops::contrast(img, 1.0), img));
    EXPECT_TRUE(same(ops::sharpness(img, 1.0), img));
    EXPECT_TRUE(same(ops::rotate(img, 0.0, kFill), img));
    EXPECT_TRUE(same(ops::rotate(img, 360.0, kFill), img));
    EXPECT_TRUE(same(ops::rotate(ops::rotate(img, 180.0, kFill), -180.0, kFill), img));
    for (auto f : {AffineFilter::kNearest, AffineFilter::kBilinear, AffineFilter::kBicubic}) {
      EXPECT_TRUE(same(ops::translate_x(img, 0.0, kFill, f), img));
      EXPECT_TRUE(same(ops::shear_y(img, 0.0, kFill, f), img));
    }
  }
}

TEST(RandAugmentOps, ColorIsIdentityOnGrayAndSharpnessOnTinyImages) {
  const Image gray = test_image(9, 7, 1);
  for (double f : {0.1, 0.5, 1.9}) EXPECT_TRUE(same(ops::color(gray, f), gray)) << f;
  // PIL's 3x3 filter copies images smaller than the kernel, so blending changes nothing.
  const Image tiny = test_image(2, 5, 3);
  for (double f : {0.1, 1.9}) EXPECT_TRUE(same(ops::sharpness(tiny, f), tiny)) << f;
}

TEST(RandAugmentOps, IntegerTranslationIsAnExactShift) {
  const Image img = test_image(11, 13, 3);
  const Image out = ops::translate_x(img, 3.0, kFill);    // output x samples input x + 3
  const Image down = ops::translate_y(img, -2.0, kFill);  // output y samples input y - 2
  for (int y = 0; y < 11; ++y) {
    for (int x = 0; x < 13; ++x) {
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(out.at(y, x, c), x + 3 < 13 ? img.at(y, x + 3, c) : kFill[c]);
        EXPECT_EQ(down.at(y, x, c), y >= 2 ? img.at(y - 2, x, c) : kFill[c]);
      }
    }
  }
}

TEST(RandAugmentOps, AutoContrastStretchesEachChannel) {
  Image img(1, 3, 3);
  img.pixels = {10, 0, 7, 60, 128, 7, 110, 255, 7};  // R 10..110, G full, B constant
  const Image out = ops::auto_contrast(img);
  EXPECT_EQ(out.pixels, (std::vector<uint8_t>{0, 0, 7, 127, 128, 7, 255, 255, 7}));
}

TEST(RandAugmentOps, BadInputsThrow) {
  Image two(4, 4, 2);
  expect_error([&] { ops::invert(two); }, {"invert", "2 channels"});
  Image torn(4, 4, 3);
  torn.pixels.resize(5);
  expect_error([&] { ops::equalize(torn); }, {"equalize", "5 bytes"});
  const Image rgb = test_image(4, 4, 3);
  expect_error([&] { ops::rotate(rgb, 10.0, {1, 2}); }, {"fill has 2 values"});
  expect_error([&] { ops::blend(rgb, test_image(4, 5, 3), 0.5); }, {"blend", "differ in size"});
  expect_error([&] { ops::rotate(rgb, std::nan(""), kFill); }, {"rotate", "finite"});
}

// ---------------------------------------------------------------------------------------
// timm's catalogue and level-to-argument maps

TEST(RandAugmentLevels, OpSetsAreTimms) {
  std::vector<std::string> inc, plain;
  for (auto op : data::rand_augment_op_set(true)) inc.push_back(data::op_name(op));
  for (auto op : data::rand_augment_op_set(false)) plain.push_back(data::op_name(op));
  EXPECT_EQ(inc, (std::vector<std::string>{"AutoContrast", "Equalize", "Invert", "Rotate",
                                           "PosterizeIncreasing", "SolarizeIncreasing",
                                           "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                                           "BrightnessIncreasing", "SharpnessIncreasing", "ShearX",
                                           "ShearY", "TranslateXRel", "TranslateYRel"}));
  EXPECT_EQ(plain, (std::vector<std::string>{"AutoContrast", "Equalize", "Invert", "Rotate",
                                             "Posterize", "Solarize", "SolarizeAdd", "Color",
                                             "Contrast", "Brightness", "Sharpness", "ShearX",
                                             "ShearY", "TranslateXRel", "TranslateYRel"}));
}

TEST(RandAugmentLevels, MatchTimmsFormulas) {
  using data::op_argument;
  // m = 9: level 0.9.
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kRotate, 9, false), 27.0);
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kRotate, 9, true), -27.0);
  EXPECT_EQ(op_argument(AugmentOp::kPosterize, 9, false), 3);            // int(3.6)
  EXPECT_EQ(op_argument(AugmentOp::kPosterizeIncreasing, 9, false), 1);  // 4 - int(3.6)
  EXPECT_EQ(op_argument(AugmentOp::kSolarize, 9, false), 230);           // int(230.4)
  EXPECT_EQ(op_argument(AugmentOp::kSolarizeIncreasing, 9, false), 26);  // 256 - 230
  EXPECT_EQ(op_argument(AugmentOp::kSolarizeAdd, 9, false), 99);         // int(99.000..01)
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kColor, 9, false), 0.9 * 1.8 + 0.1);
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kSharpnessIncreasing, 9, false), 1.81);
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kContrastIncreasing, 9, true), 1.0 - 0.9 * 0.9);
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kShearY, 9, true), -0.27);
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kTranslateXRel, 9, false), 0.9 * 0.45);
  // Ends of the range, and magnitudes above 10 (allowed by mmax) hit timm's clamps.
  EXPECT_EQ(op_argument(AugmentOp::kPosterizeIncreasing, 10, false), 0);
  EXPECT_EQ(op_argument(AugmentOp::kSolarizeIncreasing, 10, false), 0);
  EXPECT_EQ(op_argument(AugmentOp::kSolarizeIncreasing, 0, false), 256);
  EXPECT_EQ(op_argument(AugmentOp::kSolarizeIncreasing, 12, false), 0);
  EXPECT_EQ(op_argument(AugmentOp::kSolarizeAdd, 12, false), 128);
  EXPECT_DOUBLE_EQ(op_argument(AugmentOp::kBrightnessIncreasing, 12, true), 0.1);
  // Only the signed ops take the coin.
  EXPECT_TRUE(data::op_is_signed(AugmentOp::kTranslateYRel));
  EXPECT_TRUE(data::op_is_signed(AugmentOp::kColorIncreasing));
  EXPECT_FALSE(data::op_is_signed(AugmentOp::kColor));
  EXPECT_FALSE(data::op_is_signed(AugmentOp::kSolarizeAdd));
}

TEST(RandAugmentLevels, TranslationsAreAFractionOfTheSize) {
  const Image img = test_image(10, 20, 3);
  const double pct = data::op_argument(AugmentOp::kTranslateXRel, 5, true);  // -0.225
  EXPECT_TRUE(
      same(data::apply_op(img, AugmentOp::kTranslateXRel, pct, kFill, AffineFilter::kBicubic),
           ops::translate_x(img, -0.225 * 20, kFill)));
  EXPECT_TRUE(
      same(data::apply_op(img, AugmentOp::kTranslateYRel, pct, kFill, AffineFilter::kBicubic),
           ops::translate_y(img, -0.225 * 10, kFill)));
}

// ---------------------------------------------------------------------------------------
// Policy strings

TEST(RandAugmentParse, ValidPolicies) {
  auto p = data::parse_rand_augment("rand-m9-mstd0.5-inc1", "test");
  EXPECT_EQ(p.num_ops, 2);
  EXPECT_DOUBLE_EQ(p.magnitude, 9.0);
  EXPECT_DOUBLE_EQ(p.magnitude_std, 0.5);
  EXPECT_DOUBLE_EQ(p.magnitude_max, 10.0);
  EXPECT_TRUE(p.increasing);
  EXPECT_DOUBLE_EQ(p.prob, 0.5);
  EXPECT_EQ(p.fill, kFill);

  p = data::parse_rand_augment("rand-n3-inc0-mmax20-p0.7-m12.5", "test");
  EXPECT_EQ(p.num_ops, 3);
  EXPECT_FALSE(p.increasing);
  EXPECT_DOUBLE_EQ(p.magnitude_max, 20.0);
  EXPECT_DOUBLE_EQ(p.prob, 0.7);
  EXPECT_DOUBLE_EQ(p.magnitude, 12.5);
  EXPECT_DOUBLE_EQ(p.magnitude_std, 0.0);

  p = data::parse_rand_augment("rand", "test");  // timm's defaults: m 10, n 2
  EXPECT_DOUBLE_EQ(p.magnitude, 10.0);
  EXPECT_EQ(p.num_ops, 2);
  EXPECT_EQ(data::parse_rand_augment("rand-n0", "test").num_ops, 0);
  // timm: mstd above 100 means uniform sampling in [0, m].
  EXPECT_TRUE(std::isinf(data::parse_rand_augment("rand-mstd101", "test").magnitude_std));
}

TEST(RandAugmentParse, InvalidPoliciesNameTheSection) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"rand-x9", "'x9'"},       {"auto-m9", "start with 'rand'"},
      {"rand-m", "'m'"},         {"rand-m9-", "''"},
      {"rand-mx", "'mx'"},       {"rand-m9-m8", "given twice"},
      {"rand-n1.5", "'n1.5'"},   {"rand-inc2", "'inc2'"},
      {"rand-p1.5", "'p1.5'"},   {"rand-m9..1", "'m9..1'"},
      {"rand-mmax0", "'mmax0'"}, {"rand-tweights", "'tweights'"},
      {"", "start with 'rand'"}};
  for (const auto& [policy, fragment] : bad) {
    const std::string& text = policy;  // a plain reference: the lambda captures it
    SCOPED_TRACE(text);
    expect_error([&] { data::parse_rand_augment(text, "--aa"); },
                 {"--aa", "'" + text + "'", fragment});
  }
}

// ---------------------------------------------------------------------------------------
// Sampling

TEST(RandAugmentSampling, SameSeedSameImage) {
  const Image img = test_image(24, 24, 3);
  auto policy = data::parse_rand_augment("rand-m9-mstd0.5-inc1", "test");
  int changed = 0;
  for (int64_t i = 0; i < 20; ++i) {
    auto rng1 = data::sample_rng(7, 0, i), rng2 = data::sample_rng(7, 0, i);
    const Image a = data::rand_augment(img, policy, rng1);
    EXPECT_TRUE(same(a, data::rand_augment(img, policy, rng2))) << i;
    changed += !same(a, img);
  }
  EXPECT_GE(changed, 10);  // 2 ops at p 0.5: about 3 in 4 images change
}

TEST(RandAugmentSampling, ProbZeroOrNoOpsChangesNothing) {
  const Image img = test_image(16, 20, 3);
  auto policy = data::parse_rand_augment("rand-m9-mstd0.5-inc1-p0", "test");
  auto none = data::parse_rand_augment("rand-m9-n0", "test");
  for (int64_t i = 0; i < 50; ++i) {
    auto rng = data::sample_rng(1, 2, i);
    EXPECT_TRUE(same(data::rand_augment(img, policy, rng), img));
    EXPECT_TRUE(same(data::rand_augment(img, none, rng), img));
  }
}

// With p 1, one op and no magnitude noise the output is one of the op set's 30 candidates
// (15 ops, two signs), and over many seeds every op shows up.
TEST(RandAugmentSampling, OneOpIsOneOfTheCandidates) {
  const Image img = test_image(12, 14, 3);
  for (bool increasing : {true, false}) {
    SCOPED_TRACE(increasing);
    data::RandAugmentPolicy policy;
    policy.num_ops = 1;
    policy.prob = 1.0;
    policy.magnitude = 7.0;
    policy.increasing = increasing;
    const auto op_set = data::rand_augment_op_set(increasing);
    std::vector<Image> candidates;
    for (auto op : op_set) {
      for (bool negate : {false, true}) {
        candidates.push_back(data::apply_op(img, op, data::op_argument(op, 7.0, negate), kFill,
                                            AffineFilter::kBicubic));
      }
    }
    std::set<size_t> hit;
    for (int64_t i = 0; i < 300; ++i) {
      auto rng = data::sample_rng(11, 0, i);
      const Image out = data::rand_augment(img, policy, rng);
      size_t found = candidates.size();
      for (size_t k = 0; k < candidates.size() && found == candidates.size(); ++k) {
        if (same(out, candidates[k])) found = k;
      }
      ASSERT_LT(found, candidates.size()) << "sample " << i << " is no candidate";
      hit.insert(found / 2);
    }
    EXPECT_EQ(hit.size(), op_set.size());
  }
}

TEST(RandAugmentSampling, MagnitudeIsClippedToMmax) {
  const Image img = test_image(12, 12, 3);
  const auto high = data::parse_rand_augment("rand-m15-inc1", "test");  // clipped to mmax 10
  const auto top = data::parse_rand_augment("rand-m10-inc1", "test");
  for (int64_t i = 0; i < 30; ++i) {
    auto r1 = data::sample_rng(5, 1, i), r2 = data::sample_rng(5, 1, i);
    EXPECT_TRUE(same(data::rand_augment(img, high, r1), data::rand_augment(img, top, r2))) << i;
  }
}

TEST(RandAugmentSampling, GrayImagesAndNoisyMagnitudes) {
  const Image gray = test_image(20, 18, 1);
  for (const char* text : {"rand-m9-mstd0.5-inc1", "rand-m9-mstd101", "rand-m30-mmax30-n4-p1"}) {
    SCOPED_TRACE(text);
    const auto policy = data::parse_rand_augment(text, "test");
    for (int64_t i = 0; i < 40; ++i) {
      auto rng = data::sample_rng(3, 0, i);
      const Image out = data::rand_augment(gray, policy, rng);
      EXPECT_EQ(out.channels, 1);
      EXPECT_EQ(out.pixels.size(), gray.pixels.size());
    }
  }
}

TEST(RandAugmentSampling, BadPoliciesThrow) {
  const Image img = test_image(8, 8, 3);
  data::Rng rng(1);
  data::RandAugmentPolicy p;
  p.prob = 1.5;
  expect_error([&] { data::rand_augment(img, p, rng); }, {"prob", "1.5"});
  p = {};
  p.num_ops = -1;
  expect_error([&] { data::rand_augment(img, p, rng); }, {"num_ops"});
  p = {};
  p.filters.clear();
  expect_error([&] { data::rand_augment(img, p, rng); }, {"filter"});
}

}  // namespace
}  // namespace thinkingvit::testing
