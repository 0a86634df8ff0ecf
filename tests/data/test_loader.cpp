#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../test_util.h"
#include "thinkingvit/data/loader.h"

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <numeric>
#include <set>

namespace thinkingvit::testing {

namespace {

// Sample i is a 4x4 gray image filled with i, label i % 3; listed indices are unreadable.
class CountingDataset : public data::Dataset {
 public:
  CountingDataset(int64_t n, std::set<int64_t> corrupt) : n_(n), corrupt_(std::move(corrupt)) {}
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return 3; }
  int channels() const override { return 1; }
  std::optional<data::Sample> get(int64_t i) const override {
    if (corrupt_.count(i)) return std::nullopt;
    return data::Sample{data::Image(4, 4, 1, static_cast<uint8_t>(i)), i % 3};
  }
  std::vector<int64_t> labels() const override {
    std::vector<int64_t> l;
    for (int64_t i = 0; i < n_; ++i) l.push_back(i % 3);
    return l;
  }
  std::vector<std::string> class_names() const override { return {"0", "1", "2"}; }
  std::string describe() const override { return "counting"; }

 private:
  int64_t n_;
  std::set<int64_t> corrupt_;
};

// Pixel value / 255 plus noise drawn from the sample's generator, and a random flip.
data::SampleTransform noisy_transform() {
  data::SampleTransform t;
  t.channels = 1;
  t.size = 4;
  t.apply = [](const data::Image& img, data::Rng& rng, data::SampleOut dst) {
    std::normal_distribution<float> noise(0.0f, 1.0f);
    auto x = std::uniform_int_distribution<int>(0, 1)(rng) ? data::hflip(img) : img;
    for (size_t i = 0; i < x.pixels.size(); ++i) dst.floats[i] = x.pixels[i] / 255.0f + noise(rng);
  };
  return t;
}

std::vector<data::Batch> epoch(data::DataLoader& loader, int64_t e, std::vector<int64_t> indices) {
  loader.start_epoch(e, std::move(indices));
  std::vector<data::Batch> out;
  while (auto b = loader.next()) out.push_back(std::move(*b));
  return out;
}

std::vector<int64_t> range(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

TEST(Loader, SameBatchesForAnyNumberOfWorkers) {
  auto dataset = std::make_shared<CountingDataset>(23, std::set<int64_t>{});
  std::vector<std::vector<data::Batch>> runs;
  for (int workers : {0, 1, 4}) {
    data::LoaderOptions o;
    o.batch_size = 5;
    o.num_workers = workers;
    o.seed = 9;
    data::DataLoader loader(dataset, noisy_transform(), o);
    runs.push_back(epoch(loader, 3, range(23)));
  }
  ASSERT_EQ(runs[0].size(), 5u);  // 23 / 5 rounded up
  EXPECT_EQ(runs[0].back().images.size(0), 3);
  for (size_t r = 1; r < runs.size(); ++r) {
    for (size_t b = 0; b < runs[0].size(); ++b) {
      EXPECT_TRUE(torch::equal(runs[0][b].images, runs[r][b].images))
          << "run " << r << " batch " << b;
      EXPECT_TRUE(torch::equal(runs[0][b].labels, runs[r][b].labels));
    }
  }
  EXPECT_EQ(runs[0][1].indices, (std::vector<int64_t>{5, 6, 7, 8, 9}));
  EXPECT_EQ(runs[0][1].labels[2].item<int64_t>(), 7 % 3);
}

// Every worker builds a batch at once, however few batches prefetch_batches asks for: each get()
// waits (at most 5 s) until `workers` of them run together, and the most seen at once is counted.
TEST(Loader, EveryWorkerIsBusyWhateverPrefetchSays) {
  class Gathering : public CountingDataset {
   public:
    explicit Gathering(int want) : CountingDataset(24, {}), want_(want) {}
    std::optional<data::Sample> get(int64_t i) const override {
      std::unique_lock<std::mutex> lock(mutex_);
      most_ = std::max(most_, ++active_);
      cv_.notify_all();
      cv_.wait_for(lock, std::chrono::seconds(5), [&] { return most_ >= want_; });
      --active_;
      lock.unlock();
      return CountingDataset::get(i);
    }
    int most() const {
      std::lock_guard<std::mutex> lock(mutex_);
      return most_;
    }

   private:
    int want_;
    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;
    mutable int active_ = 0, most_ = 0;
  };
  const int workers = 6;
  auto dataset = std::make_shared<Gathering>(workers);
  data::LoaderOptions o;
  o.batch_size = 2;
  o.num_workers = workers;
  o.prefetch_batches = 2;
  data::DataLoader loader(dataset, noisy_transform(), o);
  const auto batches = epoch(loader, 0, range(24));
  EXPECT_EQ(batches.size(), 12u);
  EXPECT_EQ(dataset->most(), workers);
}

// A resumed epoch starts at a later batch: the batches from there are the whole epoch's.
TEST(Loader, AnEpochStartedAtALaterBatchGivesTheSameBatches) {
  auto dataset = std::make_shared<CountingDataset>(23, std::set<int64_t>{4, 17});
  data::LoaderOptions o;
  o.batch_size = 5;
  o.num_workers = 2;
  o.seed = 9;
  data::DataLoader loader(dataset, noisy_transform(), o);
  const auto whole = epoch(loader, 3, range(23));
  loader.start_epoch(3, range(23), 2);
  EXPECT_EQ(loader.num_batches(), 5);
  for (size_t b = 2; b < whole.size(); ++b) {
    auto batch = loader.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_EQ(batch->number, static_cast<int64_t>(b));
    EXPECT_EQ(batch->indices, whole[b].indices);
    EXPECT_TRUE(torch::equal(batch->images, whole[b].images)) << "batch " << b;
  }
  EXPECT_FALSE(loader.next().has_value());
  expect_error([&] { loader.start_epoch(3, range(23), 6); }, {"first batch 6", "5 batches"});
}

TEST(Loader, EpochsDifferAndDropLast) {
  auto dataset = std::make_shared<CountingDataset>(10, std::set<int64_t>{});
  data::LoaderOptions o;
  o.batch_size = 4;
  o.drop_last = true;
  data::DataLoader loader(dataset, noisy_transform(), o);
  auto e0 = epoch(loader, 0, range(10));
  auto e1 = epoch(loader, 1, range(10));
  ASSERT_EQ(e0.size(), 2u);
  EXPECT_FALSE(torch::equal(e0[0].images, e1[0].images));  // fresh randomness per epoch
  // A new epoch started mid-way drops the old one's batches.
  loader.start_epoch(0, range(10));
  ASSERT_TRUE(loader.next().has_value());
  auto again = epoch(loader, 0, range(10));
  ASSERT_EQ(again.size(), 2u);
  EXPECT_TRUE(torch::equal(again[0].images, e0[0].images));
}

TEST(Loader, CorruptSamplesAreSkippedAndCounted) {
  auto dataset = std::make_shared<CountingDataset>(8, std::set<int64_t>{2, 3});
  data::LoaderOptions o;
  o.batch_size = 4;
  o.num_workers = 2;
  data::DataLoader loader(dataset, noisy_transform(), o);
  auto batches = epoch(loader, 0, range(8));
  EXPECT_EQ(batches[0].indices, (std::vector<int64_t>{0, 1, 4, 4}));  // 2 and 3 -> next readable
  EXPECT_EQ(loader.skipped(), 3);  // position 2 met 2 and 3, position 3 met 3
  o.skip_corrupt = false;
  data::DataLoader strict(dataset, noisy_transform(), o);
  strict.start_epoch(0, range(8));
  expect_error([&] { strict.next(); }, {"sample 2 is unreadable", "skip_corrupt"});
}

}  // namespace thinkingvit::testing

namespace thinkingvit::testing {

// Rank r of W with offset r / stride W draws the randomness of global position r + W * p.
TEST(Loader, GlobalPositionsAcrossRanks) {
  auto dataset = std::make_shared<CountingDataset>(8, std::set<int64_t>{});
  data::LoaderOptions single;
  single.batch_size = 8;
  single.num_workers = 0;
  data::DataLoader one(dataset, noisy_transform(), single);
  const auto whole = epoch(one, 3, range(8))[0].images;
  for (int rank = 0; rank < 2; ++rank) {
    auto o = single;
    o.batch_size = 4;
    o.position_offset = rank;
    o.position_stride = 2;
    data::DataLoader part(dataset, noisy_transform(), o);
    const auto mine = epoch(part, 3, {rank, rank + 2, rank + 4, rank + 6})[0].images;
    EXPECT_TRUE(torch::equal(mine, whole.slice(0, rank, 8, 2))) << "rank " << rank;
  }
}

namespace {

// Sample i: an RGB (or gray) image of its own size with a pattern of its own, label i % 3.
class PatternDataset : public data::Dataset {
 public:
  PatternDataset(int64_t n, int channels) : n_(n), channels_(channels) {}
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return 3; }
  int channels() const override { return channels_; }
  std::optional<data::Sample> get(int64_t i) const override {
    data::Image image(30 + 7 * static_cast<int>(i % 5), 41 - 3 * static_cast<int>(i % 4),
                      channels_);
    for (size_t p = 0; p < image.pixels.size(); ++p)
      image.pixels[p] = static_cast<uint8_t>((p * (5 + i) + p / 37 + 13 * i) % 256);
    return data::Sample{std::move(image), i % 3};
  }
  std::vector<int64_t> labels() const override {
    std::vector<int64_t> l;
    for (int64_t i = 0; i < n_; ++i) l.push_back(i % 3);
    return l;
  }
  std::vector<std::string> class_names() const override { return {"0", "1", "2"}; }
  std::string describe() const override { return "patterns"; }

 private:
  int64_t n_;
  int channels_;
};

// A uint8 batch normalised and erased where it is taken (here the CPU, as on a GPU) holds the
// float batch's values: the same boxes, the same noise in them, the same normalisation.
void expect_uint8_batches_equal_float_batches(const data::SampleTransform& transform,
                                              int channels, bool expect_erasing) {
  auto dataset = std::make_shared<PatternDataset>(13, channels);
  const auto run = [&](bool planar) {
    data::LoaderOptions o;
    o.batch_size = 5;
    o.num_workers = 2;
    o.seed = 3;
    o.uint8_batches = planar;
    data::DataLoader loader(dataset, transform, o);
    return epoch(loader, 1, range(13));
  };
  const auto floats = run(false), pixels = run(true);
  ASSERT_EQ(floats.size(), 3u);
  ASSERT_EQ(pixels.size(), 3u);
  int64_t erased = 0;
  for (size_t b = 0; b < floats.size(); ++b) {
    const auto& batch = pixels[b];
    ASSERT_EQ(batch.images.scalar_type(), at::kByte);
    ASSERT_EQ(batch.images.sizes(), floats[b].images.sizes());
    EXPECT_TRUE(torch::equal(batch.labels, floats[b].labels));
    if (batch.erase_boxes.defined()) {
      const auto boxes = batch.erase_boxes;
      ASSERT_EQ(boxes.sizes(), (at::IntArrayRef{batch.images.size(0), 4}));
      const auto areas = boxes.select(1, 2) * boxes.select(1, 3);
      EXPECT_EQ(batch.erase_noise.numel(), channels * areas.sum().item<int64_t>());
      erased += (boxes.select(1, 2) > 0).sum().item<int64_t>();
    }
    const auto finished = data::BatchUpload(batch, at::kCPU).take();
    ASSERT_EQ(finished.scalar_type(), at::kFloat);
    const auto& expected = floats[b].images;
    const double scale = expected.abs().max().item<double>();
    EXPECT_LE((finished - expected).abs().max().item<double>(), 1e-6 * scale) << "batch " << b;
    // A float batch is taken as it is.
    EXPECT_TRUE(data::BatchUpload(floats[b], at::kCPU).take().is_same(expected));
  }
  if (expect_erasing) {
    EXPECT_GE(erased, 5);  // with probability 1, nearly every sample is erased
  } else {
    EXPECT_EQ(erased, 0);
  }
}

}  // namespace

TEST(Loader, Uint8TrainBatchesEqualFloatBatchesOnceFinished) {
  data::TrainTransformOptions t;
  t.size = 24;
  t.random_erasing = 1.0;
  expect_uint8_batches_equal_float_batches(data::make_train_transform(t, 3), 3, true);
}

TEST(Loader, Uint8SmallGrayBatchesEqualFloatBatchesOnceFinished) {
  data::TrainTransformOptions t;
  t.size = 28;
  t.small_image = true;
  t.auto_augment = "";
  t.random_erasing = 0.5;
  t.mean = {0.286f};
  t.std = {0.353f};
  expect_uint8_batches_equal_float_batches(data::make_train_transform(t, 1), 1, true);
}

TEST(Loader, Uint8EvalBatchesEqualFloatBatchesOnceFinished) {
  data::EvalTransformOptions e;
  e.size = 20;
  expect_uint8_batches_equal_float_batches(data::make_eval_transform(e, 3), 3, false);
}

TEST(Loader, Uint8BatchesNeedTheTransformsNormalisation) {
  auto t = noisy_transform();  // no mean / std: it writes floats of its own
  data::LoaderOptions o;
  o.uint8_batches = true;
  expect_error([&] { data::DataLoader(std::make_shared<CountingDataset>(4, std::set<int64_t>{}), t, o); },
               {"uint8 batches need the transform's 1 mean and std values, found 0 and 0"});
}

#ifdef THINKINGVIT_HAVE_OPENCV
// With reduced_decode an image folder's JPEGs are decoded at a reduced scale for the eval
// transform, exactly as get_reduced does; without it, at full size.
TEST(Loader, ReducedDecodeUsesTheTransformsMinimumSide) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "a");
  data::Image image(96, 128, 3);
  for (size_t i = 0; i < image.pixels.size(); ++i)
    image.pixels[i] = static_cast<uint8_t>((i * 7) % 251);
  data::write_image_file(dir.file("a/x.jpg"), image);
  auto folder = std::make_shared<data::ImageFolder>(dir.path().string());
  data::EvalTransformOptions e;
  e.size = 16;
  e.crop_pct = 1.0;
  const auto transform = data::make_eval_transform(e, 3);
  ASSERT_EQ(transform.decode_min_side, 16);
  ASSERT_EQ(data::reduced_decode_factor(96, 128, 16), 4);
  auto run = [&](bool reduced) {
    data::LoaderOptions o;
    o.batch_size = 1;
    o.num_workers = 1;
    o.reduced_decode = reduced;
    data::DataLoader loader(folder, transform, o);
    return epoch(loader, 0, {0})[0].images;
  };
  auto expect = [&](const data::Image& decoded) {
    auto out = torch::empty({1, 3, 16, 16});
    data::Rng rng(0);
    transform.apply(decoded, rng, out.data_ptr<float>());
    return out;
  };
  const auto reduced = folder->get_reduced(0, 16)->image;
  EXPECT_EQ(reduced.height, 24);
  EXPECT_TRUE(torch::equal(run(true), expect(reduced)));
  EXPECT_TRUE(torch::equal(run(false), expect(folder->get(0)->image)));
  EXPECT_FALSE(torch::equal(run(true), run(false)));
}

// The train transform crops first, so the loader decodes only each crop's part of a JPEG; the
// batches equal full decoding + transform.apply with each position's generator.
TEST(Loader, TrainBatchesFromCropPartsEqualFullDecoding) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "a");
  std::filesystem::create_directories(dir.path() / "b");
  const std::pair<int, int> sizes[] = {{150, 203}, {203, 150}, {64, 64}, {97, 131}};
  for (int i = 0; i < 4; ++i) {
    data::Image image(sizes[i].first, sizes[i].second, 3);
    for (size_t p = 0; p < image.pixels.size(); ++p)
      image.pixels[p] = static_cast<uint8_t>((p * (7 + i) + p / 301) % 251);
    data::write_image_file(dir.file(std::string(i % 2 ? "b/" : "a/") + std::to_string(i) + ".jpg"),
                           image);
  }
  data::write_image_file(dir.file("b/z.png"), data::Image(40, 50, 3, 77));
  auto folder = std::make_shared<data::ImageFolder>(dir.path().string());
  data::TrainTransformOptions t;
  t.size = 24;
  const auto transform = data::make_train_transform(t, 3);
  ASSERT_TRUE(transform.crop_box && transform.apply_cropped);
  data::LoaderOptions o;
  o.batch_size = 5;
  o.num_workers = 2;
  o.seed = 11;
  data::DataLoader loader(folder, transform, o);
  const std::vector<int64_t> order = {4, 2, 0, 3, 1};
  const auto got = epoch(loader, 2, order)[0].images;
  auto expected = torch::empty({5, 3, 24, 24});
  for (int64_t p = 0; p < 5; ++p) {
    auto rng = data::sample_rng(11, 2, p);
    transform.apply(folder->get(order[p])->image, rng, expected[p].data_ptr<float>());
  }
  EXPECT_TRUE(torch::equal(got, expected));
}
#endif  // THINKINGVIT_HAVE_OPENCV

}  // namespace thinkingvit::testing
