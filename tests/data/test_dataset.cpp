#include "thinkingvit/data/dataset.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "../test_util.h"

namespace thinkingvit::data {
namespace {

using thinkingvit::testing::expect_error;
using thinkingvit::testing::TempDir;

namespace fs = std::filesystem;

using Bytes = std::vector<uint8_t>;

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put_u32_be(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

// Pixel (i, y, x) of the generated IDX images.
uint8_t idx_pixel(int i, int y, int x) { return static_cast<uint8_t>(37 * i + 11 * y + 3 * x + 1); }

Bytes idx_images(int count, int rows, int cols) {
  Bytes out;
  put_u32_be(out, 0x00000803);
  put_u32_be(out, count);
  put_u32_be(out, rows);
  put_u32_be(out, cols);
  for (int i = 0; i < count; ++i) {
    for (int y = 0; y < rows; ++y) {
      for (int x = 0; x < cols; ++x) out.push_back(idx_pixel(i, y, x));
    }
  }
  return out;
}

Bytes idx_labels(const std::vector<uint8_t>& labels) {
  Bytes out;
  put_u32_be(out, 0x00000801);
  put_u32_be(out, static_cast<uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

void expect_idx_samples(const Dataset& ds, int rows, int cols, const std::vector<int64_t>& labels) {
  ASSERT_EQ(ds.size(), static_cast<int64_t>(labels.size()));
  EXPECT_EQ(ds.channels(), 1);
  EXPECT_EQ(ds.labels(), labels);
  for (int i = 0; i < ds.size(); ++i) {
    const auto sample = ds.get(i);
    ASSERT_TRUE(sample.has_value());
    EXPECT_EQ(sample->label, labels[i]);
    ASSERT_EQ(sample->image.height, rows);
    ASSERT_EQ(sample->image.width, cols);
    ASSERT_EQ(sample->image.channels, 1);
    for (int y = 0; y < rows; ++y) {
      for (int x = 0; x < cols; ++x) {
        ASSERT_EQ(sample->image.at(y, x, 0), idx_pixel(i, y, x)) << i << " " << y << " " << x;
      }
    }
  }
}

TEST(DatasetIdx, RawRoundTrip) {
  TempDir dir;
  write_bytes(dir.file("img"), idx_images(3, 4, 5));
  write_bytes(dir.file("lbl"), idx_labels({2, 0, 7}));
  const auto ds = open_idx(dir.file("img"), dir.file("lbl"));
  expect_idx_samples(*ds, 4, 5, {2, 0, 7});
  EXPECT_EQ(ds->num_classes(), 8);
  EXPECT_EQ(ds->class_names().front(), "0");
  EXPECT_EQ(ds->class_names().back(), "7");
  EXPECT_EQ(ds->describe(), "idx: 3 images, 8 classes, 4x5x1");
  expect_error([&] { ds->get(3); }, {"index 3", "[0, 3)"});
  expect_error([&] { ds->get(-1); }, {"index -1"});
}

TEST(DatasetIdx, GzipRoundTrip) {
  TempDir dir;
  write_gzip(dir.file("img.gz"), idx_images(5, 3, 2));
  write_gzip(dir.file("lbl.gz"), idx_labels({1, 1, 0, 9, 4}));
  const auto ds = open_idx(dir.file("img.gz"), dir.file("lbl.gz"), "fashion-mnist");
  expect_idx_samples(*ds, 3, 2, {1, 1, 0, 9, 4});
  EXPECT_EQ(ds->num_classes(), 10);
  const auto names = ds->class_names();
  ASSERT_EQ(names.size(), 10u);
  EXPECT_EQ(names[0], "T-shirt/top");
  EXPECT_EQ(names[9], "Ankle boot");
}

TEST(DatasetIdx, MnistFolderTakesRawOrGzip) {
  TempDir dir;
  write_bytes(dir.file("train-images-idx3-ubyte"), idx_images(4, 2, 2));
  write_gzip(dir.file("train-labels-idx1-ubyte.gz"), idx_labels({3, 1, 2, 0}));
  write_gzip(dir.file("t10k-images-idx3-ubyte.gz"), idx_images(2, 2, 2));
  write_bytes(dir.file("t10k-labels-idx1-ubyte"), idx_labels({0, 1}));
  const auto train = open_mnist_folder(dir.path().string(), /*train=*/true, "mnist");
  expect_idx_samples(*train, 2, 2, {3, 1, 2, 0});
  EXPECT_EQ(train->num_classes(), 10);  // at least 10 for the MNIST layout
  EXPECT_EQ(train->class_names()[9], "9");
  EXPECT_EQ(train->describe(), "mnist train: 4 images, 10 classes, 2x2x1");
  const auto test = open_mnist_folder(dir.path().string(), /*train=*/false);
  expect_idx_samples(*test, 2, 2, {0, 1});
  EXPECT_EQ(test->describe(), "fashion-mnist test: 2 images, 10 classes, 2x2x1");
  EXPECT_EQ(test->class_names()[1], "Trouser");
}

TEST(DatasetIdx, MnistFolderMissing) {
  TempDir dir;
  expect_error([&] { open_mnist_folder(dir.file("nope"), true); },
               {dir.file("nope"), "not found", "train-images-idx3-ubyte"});
  write_bytes(dir.file("train-images-idx3-ubyte"), idx_images(1, 2, 2));
  expect_error([&] { open_mnist_folder(dir.path().string(), true); },
               {dir.path().string(), "train-labels-idx1-ubyte", ".gz", "found neither"});
  expect_error([&] { open_mnist_folder(dir.path().string(), false); }, {"t10k-images-idx3-ubyte"});
}

TEST(DatasetIdx, WrongMagic) {
  TempDir dir;
  write_bytes(dir.file("img"), idx_images(2, 2, 2));
  write_bytes(dir.file("lbl"), idx_labels({0, 1}));
  // Arguments swapped: each file is checked against the magic it should carry.
  expect_error([&] { open_idx(dir.file("lbl"), dir.file("img")); },
               {dir.file("lbl"), "expected magic 0x00000803", "found 0x00000801", "labels file"});
  Bytes text = {'h', 'e', 'l', 'l', 'o', '\n'};
  write_bytes(dir.file("text"), text);
  expect_error([&] { open_idx(dir.file("img"), dir.file("text")); },
               {dir.file("text"), "expected magic 0x00000801", "found 0x68656c6c"});
  write_bytes(dir.file("tiny"), {0, 0});
  expect_error([&] { open_idx(dir.file("tiny"), dir.file("lbl")); },
               {dir.file("tiny"), "found a file of 2 bytes"});
  expect_error([&] { open_idx(dir.file("missing"), dir.file("lbl")); },
               {dir.file("missing"), "not found"});
}

TEST(DatasetIdx, Truncated) {
  TempDir dir;
  Bytes images = idx_images(3, 4, 4);
  images.resize(images.size() - 5);
  write_bytes(dir.file("img"), images);
  write_bytes(dir.file("lbl"), idx_labels({0, 1, 2}));
  expect_error([&] { open_idx(dir.file("img"), dir.file("lbl")); },
               {dir.file("img"), "truncated", "3 x 4 x 4", "48 bytes", "found only 43"});

  // A gzip stream cut in the middle.
  write_gzip(dir.file("full.gz"), idx_images(50, 8, 8));
  Bytes gz = read_bytes(dir.file("full.gz"));
  gz.resize(gz.size() / 2);
  write_bytes(dir.file("cut.gz"), gz);
  expect_error([&] { open_idx(dir.file("cut.gz"), dir.file("lbl")); },
               {dir.file("cut.gz"), "truncated", "after decompression"});

  write_bytes(dir.file("img-ok"), idx_images(3, 4, 4));
  Bytes header_only = idx_labels({});
  header_only.resize(6);
  write_bytes(dir.file("short-header"), header_only);
  expect_error([&] { open_idx(dir.file("img-ok"), dir.file("short-header")); },
               {dir.file("short-header"), "truncated header"});

  Bytes longer = idx_labels({0, 1, 2});
  longer.push_back(5);
  write_bytes(dir.file("longer"), longer);
  expect_error([&] { open_idx(dir.file("img-ok"), dir.file("longer")); },
               {dir.file("longer"), "expected exactly 3 bytes", "found more"});
}

TEST(DatasetIdx, CountMismatchAndLabels) {
  TempDir dir;
  write_bytes(dir.file("img"), idx_images(3, 2, 2));
  write_bytes(dir.file("lbl"), idx_labels({0, 1}));
  expect_error([&] { open_idx(dir.file("img"), dir.file("lbl")); },
               {dir.file("img"), dir.file("lbl"), "3 images", "2 labels"});
  write_bytes(dir.file("lbl3"), idx_labels({0, 12, 1}));
  expect_error([&] { open_idx(dir.file("img"), dir.file("lbl3"), "fashion-mnist"); },
               {dir.file("lbl3"), "label 1", "0..9", "found 12"});
  EXPECT_EQ(open_idx(dir.file("img"), dir.file("lbl3"))->num_classes(), 13);
  write_bytes(dir.file("img0"), idx_images(0, 2, 2));
  write_bytes(dir.file("lbl0"), idx_labels({}));
  expect_error([&] { open_idx(dir.file("img0"), dir.file("lbl0")); }, {"found 0"});
}

// Debian's dataset-fashion-mnist, when installed.
TEST(DatasetIdx, FashionMnistDebian) {
  if (!fs::exists(kFashionMnistDir)) GTEST_SKIP() << kFashionMnistDir << " not installed";
  const auto train = open_mnist_folder(kFashionMnistDir, /*train=*/true);
  ASSERT_EQ(train->size(), 60000);
  EXPECT_EQ(train->num_classes(), 10);
  EXPECT_EQ(train->channels(), 1);
  EXPECT_EQ(train->describe(), "fashion-mnist train: 60000 images, 10 classes, 28x28x1");
  std::vector<int64_t> counts(10, 0);
  for (int64_t label : train->labels()) ++counts.at(label);
  EXPECT_EQ(counts[0], 6000);
  EXPECT_EQ(counts[9], 6000);
  const auto first = train->get(0);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->label, 9);  // an ankle boot
  EXPECT_EQ(first->image.height, 28);
  EXPECT_EQ(first->image.width, 28);
  int64_t sum = 0;
  for (uint8_t p : first->image.pixels) sum += p;
  EXPECT_EQ(sum, 76247);  // from Python's gzip module

  const auto test = open_mnist_folder(kFashionMnistDir, /*train=*/false);
  ASSERT_EQ(test->size(), 10000);
  const auto labels = test->labels();
  EXPECT_EQ(std::vector<int64_t>(labels.begin(), labels.begin() + 4),
            (std::vector<int64_t>{9, 2, 1, 1}));
  EXPECT_EQ(std::count(labels.begin(), labels.end(), 3), 1000);
}

// ---------------------------------------------------------------------------------------------

// Channel c of pixel (y, x) of CIFAR record i.
uint8_t cifar_value(int i, int c, int y, int x) {
  return static_cast<uint8_t>(17 * i + 100 * c + 7 * y + x);
}

Bytes cifar_records(int first, int count, const std::vector<std::vector<uint8_t>>& label_bytes) {
  Bytes out;
  for (int i = first; i < first + count; ++i) {
    const auto& labels = label_bytes[i - first];
    out.insert(out.end(), labels.begin(), labels.end());
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) out.push_back(cifar_value(i, c, y, x));
      }
    }
  }
  return out;
}

void expect_cifar_pixels(const Dataset& ds) {
  EXPECT_EQ(ds.channels(), 3);
  for (int i = 0; i < ds.size(); ++i) {
    const auto sample = ds.get(i);
    ASSERT_TRUE(sample.has_value());
    ASSERT_EQ(sample->image.height, 32);
    ASSERT_EQ(sample->image.width, 32);
    ASSERT_EQ(sample->image.channels, 3);
    for (int y = 0; y < 32; ++y) {
      for (int x = 0; x < 32; ++x) {
        for (int c = 0; c < 3; ++c) {
          ASSERT_EQ(sample->image.at(y, x, c), cifar_value(i, c, y, x));
        }
      }
    }
  }
  // HWC interleaved: the first bytes are R, G, B of pixel (0, 0), then of pixel (0, 1).
  const auto first = ds.get(0);
  EXPECT_EQ(first->image.pixels[0], cifar_value(0, 0, 0, 0));
  EXPECT_EQ(first->image.pixels[1], cifar_value(0, 1, 0, 0));
  EXPECT_EQ(first->image.pixels[3], cifar_value(0, 0, 0, 1));
  EXPECT_EQ(first->image.pixels[3 * 32], cifar_value(0, 0, 1, 0));
}

TEST(DatasetCifar, Cifar10Layout) {
  TempDir dir;
  write_bytes(dir.file("data_batch_1.bin"), cifar_records(0, 2, {{3}, {9}}));
  write_bytes(dir.file("data_batch_2.bin"), cifar_records(2, 1, {{0}}));
  const auto ds = open_cifar({dir.file("data_batch_1.bin"), dir.file("data_batch_2.bin")}, 10);
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->num_classes(), 10);
  EXPECT_EQ(ds->labels(), (std::vector<int64_t>{3, 9, 0}));
  EXPECT_EQ(ds->get(1)->label, 9);
  expect_cifar_pixels(*ds);
  EXPECT_EQ(ds->class_names()[0], "airplane");
  EXPECT_EQ(ds->class_names()[9], "truck");
  EXPECT_EQ(ds->describe(), "cifar10: 3 images from 2 files, 10 classes, 32x32x3");
  expect_error([&] { ds->get(3); }, {"cifar10", "index 3"});
}

TEST(DatasetCifar, Cifar100UsesFineLabel) {
  TempDir dir;
  write_bytes(dir.file("train.bin"), cifar_records(0, 2, {{3, 57}, {19, 99}}));
  const auto ds = open_cifar({dir.file("train.bin")}, 100);
  EXPECT_EQ(ds->num_classes(), 100);
  EXPECT_EQ(ds->labels(), (std::vector<int64_t>{57, 99}));
  expect_cifar_pixels(*ds);
  EXPECT_EQ(ds->class_names()[57], "57");

  std::ofstream names(dir.file("fine_label_names.txt"));
  for (int k = 0; k < 100; ++k) names << "class" << k << "\n";
  names.close();
  EXPECT_EQ(open_cifar({dir.file("train.bin")}, 100)->class_names()[57], "class57");
}

TEST(DatasetCifar, Errors) {
  TempDir dir;
  expect_error([&] { open_cifar({dir.file("data_batch_1.bin")}, 10); },
               {dir.file("data_batch_1.bin"), "not found"});
  expect_error([&] { open_cifar({}, 10); }, {"CIFAR-10", "found none"});
  write_bytes(dir.file("ok.bin"), cifar_records(0, 1, {{1}}));
  expect_error([&] { open_cifar({dir.file("ok.bin")}, 20); }, {"10 (CIFAR-10)", "found 20"});

  Bytes cut = cifar_records(0, 2, {{1}, {2}});
  cut.pop_back();
  write_bytes(dir.file("cut.bin"), cut);
  expect_error([&] { open_cifar({dir.file("cut.bin")}, 10); },
               {dir.file("cut.bin"), "multiple of 3073", "found 6145 bytes"});

  // CIFAR-100 records read as CIFAR-10: the size gives it away.
  write_bytes(dir.file("c100.bin"), cifar_records(0, 1, {{1, 2}}));
  expect_error([&] { open_cifar({dir.file("c100.bin")}, 10); },
               {"multiple of 3073", "found 3074", "CIFAR-100"});

  write_bytes(dir.file("label.bin"), cifar_records(0, 3, {{1}, {2}, {10}}));
  expect_error([&] { open_cifar({dir.file("label.bin")}, 10); },
               {dir.file("label.bin"), "record 2", "0..9", "found 10"});
  write_bytes(dir.file("label100.bin"), cifar_records(0, 1, {{1, 100}}));
  expect_error([&] { open_cifar({dir.file("label100.bin")}, 100); }, {"0..99", "found 100"});
}

// ---------------------------------------------------------------------------------------------

TEST(DatasetSynthetic, DeterministicAndOrderFree) {
  const auto a = make_synthetic(20, 5, 6, 3, 4, /*seed=*/11);
  const auto b = make_synthetic(20, 5, 6, 3, 4, /*seed=*/11);
  const auto c = make_synthetic(20, 5, 6, 3, 4, /*seed=*/12);
  EXPECT_EQ(a->describe(), "synthetic (seed 11): 20 images, 4 classes, 5x6x3");
  std::vector<Sample> forward;
  for (int i = 0; i < 20; ++i) forward.push_back(*a->get(i));
  const auto labels = a->labels();
  int differ = 0;
  for (int i = 19; i >= 0; --i) {  // other object, other order
    const auto s = b->get(i);
    EXPECT_EQ(s->image.pixels, forward[i].image.pixels);
    EXPECT_EQ(s->label, forward[i].label);
    EXPECT_EQ(labels[i], forward[i].label);
    EXPECT_GE(s->label, 0);
    EXPECT_LT(s->label, 4);
    ASSERT_EQ(s->image.pixels.size(), 5u * 6 * 3);
    if (c->get(i)->image.pixels != s->image.pixels) ++differ;
  }
  EXPECT_EQ(differ, 20);
  EXPECT_NE(forward[0].image.pixels, forward[1].image.pixels);
  EXPECT_EQ(a->get(7)->image.pixels, forward[7].image.pixels);  // again, after others
}

TEST(DatasetSynthetic, LabelsUniformAndPixelsSpread) {
  const auto ds = make_synthetic(4000, 2, 2, 1, 10, /*seed=*/3);
  std::vector<int64_t> counts(10, 0);
  for (int64_t label : ds->labels()) ++counts.at(label);
  for (int64_t n : counts) {
    EXPECT_GT(n, 300);
    EXPECT_LT(n, 500);
  }
  const auto big = make_synthetic(1, 64, 64, 3, 2, /*seed=*/3)->get(0);
  double mean = 0;
  for (uint8_t p : big->image.pixels) mean += p;
  mean /= static_cast<double>(big->image.pixels.size());
  EXPECT_NEAR(mean, 127.5, 3.0);
}

TEST(DatasetSynthetic, Errors) {
  expect_error([] { make_synthetic(0, 2, 2, 3, 10); }, {"size > 0", "found 0"});
  expect_error([] { make_synthetic(4, 2, 2, 2, 10); }, {"1 or 3 channels", "found 2"});
  expect_error([] { make_synthetic(4, 0, 2, 3, 10); }, {"0x2"});
  expect_error([] { make_synthetic(4, 2, 2, 3, 0); }, {"num_classes"});
}

TEST(DatasetSynthetic, ConcurrentGet) {
  const auto ds = make_synthetic(64, 8, 8, 3, 5, /*seed=*/9);
  std::vector<std::vector<uint8_t>> expected;
  for (int i = 0; i < 64; ++i) expected.push_back(ds->get(i)->image.pixels);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 63; i >= 0; --i) {
        if (ds->get((i + 16 * t) % 64)->image.pixels != expected[(i + 16 * t) % 64]) {
          ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

// ---------------------------------------------------------------------------------------------

TEST(DatasetImageFiles, ReducedDecodeFactor) {
  EXPECT_EQ(reduced_decode_factor(500, 375, 0), 1);
  EXPECT_EQ(reduced_decode_factor(500, 375, 248), 1);
  EXPECT_EQ(reduced_decode_factor(500, 496, 248), 2);
  EXPECT_EQ(reduced_decode_factor(2000, 1000, 248), 4);
  EXPECT_EQ(reduced_decode_factor(2000, 1984, 248), 8);
  EXPECT_EQ(reduced_decode_factor(5000, 4000, 248), 8);
  EXPECT_EQ(reduced_decode_factor(100, 100, -1), 1);
}

TEST(DatasetImageFiles, PeekSizeRejectsOtherBytes) {
  const Bytes text = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'};
  EXPECT_FALSE(peek_image_size(text.data(), text.size()).has_value());
  const Bytes jpeg_start = {0xFF, 0xD8, 0xFF, 0xE0, 0x00};
  EXPECT_FALSE(peek_image_size(jpeg_start.data(), jpeg_start.size()).has_value());
  EXPECT_FALSE(peek_image_size(nullptr, 0).has_value());
}

// A 24-bit BMP written byte by byte (stored bottom-up, BGR, rows padded to 4 bytes): an
// absolute check of the channel order that does not go through our own writer.
Bytes handmade_bmp(int height, int width,
                   const std::function<std::array<uint8_t, 3>(int, int)>& rgb) {
  const int row = (3 * width + 3) / 4 * 4;
  Bytes out;
  const auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  const auto u16 = [&](uint16_t v) {
    out.push_back(static_cast<uint8_t>(v));
    out.push_back(static_cast<uint8_t>(v >> 8));
  };
  out.push_back('B');
  out.push_back('M');
  u32(54 + row * height);
  u32(0);
  u32(54);
  u32(40);
  u32(width);
  u32(height);
  u16(1);
  u16(24);
  u32(0);
  u32(row * height);
  u32(2835);
  u32(2835);
  u32(0);
  u32(0);
  for (int y = height - 1; y >= 0; --y) {
    for (int x = 0; x < width; ++x) {
      const auto p = rgb(y, x);
      out.push_back(p[2]);
      out.push_back(p[1]);
      out.push_back(p[0]);
    }
    for (int pad = 3 * width; pad < row; ++pad) out.push_back(0);
  }
  return out;
}

std::array<uint8_t, 3> bmp_color(int y, int x) {
  return {static_cast<uint8_t>(200 + y), static_cast<uint8_t>(10 + x), static_cast<uint8_t>(30)};
}

TEST(DatasetImageFiles, PeekBmpHeader) {
  const Bytes bmp = handmade_bmp(3, 5, bmp_color);
  const auto size = peek_image_size(bmp.data(), bmp.size());
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(size->height, 3);
  EXPECT_EQ(size->width, 5);
}

// A one-byte file: enough for listing, which never decodes.
void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path.string()).put('x');
}

TEST(DatasetImageFolder, ListsClassesAndFilesSorted) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  touch(root / "dog" / "b.png");
  touch(root / "dog" / "a.JPG");
  touch(root / "dog" / "notes.txt");  // not an image
  touch(root / "cat" / "z.jpeg");
  touch(root / "cat" / "sub" / "c.webp");  // found recursively
  touch(root / "cat" / "B.bmp");
  fs::create_directories(root / "empty");  // a class with no images keeps its index
  touch(root / "stray.png");               // a file at the root is no class
  const auto ds = open_image_folder(root.string());
  EXPECT_EQ(ds->class_names(), (std::vector<std::string>{"cat", "dog", "empty"}));
  EXPECT_EQ(ds->num_classes(), 3);
  EXPECT_EQ(ds->size(), 5);
  EXPECT_EQ(ds->labels(), (std::vector<int64_t>{0, 0, 0, 1, 1}));
  EXPECT_EQ(ds->channels(), 3);
  const auto* folder = dynamic_cast<const ImageFolder*>(ds.get());
  ASSERT_NE(folder, nullptr);
  EXPECT_EQ(folder->path(0), (root / "cat" / "B.bmp").string());
  EXPECT_EQ(folder->path(1), (root / "cat" / "z.jpeg").string());
  EXPECT_EQ(folder->path(2), (root / "cat" / "sub" / "c.webp").string());
  EXPECT_EQ(folder->path(3), (root / "dog" / "a.JPG").string());
  EXPECT_EQ(folder->path(4), (root / "dog" / "b.png").string());
  EXPECT_EQ(ds->describe(), "image folder '" + root.string() + "': 5 images, 3 classes");
  expect_error([&] { folder->path(5); }, {"index 5"});
}

TEST(DatasetImageFolder, ClassList) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  for (const char* name : {"a", "b", "c", "unlisted"}) touch(root / name / "x.png");
  {
    std::ofstream list(dir.file("classes.txt"));
    list << "c\n\n  b \r\na\n";
  }
  const auto ds = open_image_folder(root.string(), dir.file("classes.txt"));
  EXPECT_EQ(ds->class_names(), (std::vector<std::string>{"c", "b", "a"}));
  EXPECT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->labels(), (std::vector<int64_t>{0, 1, 2}));
  const auto* folder = dynamic_cast<const ImageFolder*>(ds.get());
  EXPECT_EQ(folder->path(0), (root / "c" / "x.png").string());

  {
    std::ofstream list(dir.file("missing.txt"));
    list << "a\nzebra\n";
  }
  expect_error([&] { open_image_folder(root.string(), dir.file("missing.txt")); },
               {dir.file("missing.txt"), "line 2", (root / "zebra").string()});
  {
    std::ofstream list(dir.file("twice.txt"));
    list << "a\nb\na\n";
  }
  expect_error([&] { open_image_folder(root.string(), dir.file("twice.txt")); },
               {"line 3", "'a' is listed twice"});
  expect_error([&] { open_image_folder(root.string(), dir.file("nope.txt")); },
               {dir.file("nope.txt"), "cannot open"});
}

TEST(DatasetImageFolder, EmptyOrMissingRoot) {
  TempDir dir;
  expect_error([&] { open_image_folder(dir.file("missing")); },
               {dir.file("missing"), "not found", "root/<class>/<image>"});
  expect_error([&] { open_image_folder(dir.path().string()); },
               {dir.path().string(), "no class folders"});
  touch(dir.path() / "file.png");
  expect_error([&] { open_image_folder(dir.file("file.png")); }, {"not a directory"});
  touch(dir.path() / "cls" / "readme.txt");
  expect_error([&] { open_image_folder(dir.path().string()); },
               {dir.path().string(), "found none", ".jpg"});
  expect_error([&] { open_image_folder(""); }, {"no path"});
}

#ifdef THINKINGVIT_HAVE_OPENCV

// An RGB test card: distinct values per channel, position and image.
Image test_card(int height, int width, int seed) {
  Image image(height, width, 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      image.at(y, x, 0) = static_cast<uint8_t>(seed * 40 + 3 * y);
      image.at(y, x, 1) = static_cast<uint8_t>(5 * x + 2);
      image.at(y, x, 2) = static_cast<uint8_t>(255 - seed * 20 - x - y);
    }
  }
  return image;
}

TEST(DatasetImageFolder, DecodesRgbExactly) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  write_image_file((root / "a" / "card.png").string(), test_card(6, 7, 1));
  write_bytes((root / "b" / "hand.bmp").string(), handmade_bmp(3, 5, bmp_color));
  Image gray(4, 4, 1);
  for (size_t i = 0; i < gray.pixels.size(); ++i) gray.pixels[i] = static_cast<uint8_t>(16 * i);
  write_image_file((root / "b" / "gray.png").string(), gray);

  const auto ds = open_image_folder(root.string());
  ASSERT_EQ(ds->size(), 3);
  const auto card = ds->get(0);
  ASSERT_TRUE(card.has_value());
  EXPECT_EQ(card->label, 0);
  EXPECT_EQ(card->image.pixels, test_card(6, 7, 1).pixels);

  const auto grayed = ds->get(1);  // b/gray.png sorts before b/hand.bmp
  ASSERT_TRUE(grayed.has_value());
  EXPECT_EQ(grayed->label, 1);
  ASSERT_EQ(grayed->image.channels, 3);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      for (int c = 0; c < 3; ++c) EXPECT_EQ(grayed->image.at(y, x, c), gray.at(y, x, 0));
    }
  }

  const auto hand = ds->get(2);
  ASSERT_TRUE(hand.has_value());
  ASSERT_EQ(hand->image.height, 3);
  ASSERT_EQ(hand->image.width, 5);
  for (int y = 0; y < 3; ++y) {
    for (int x = 0; x < 5; ++x) {
      for (int c = 0; c < 3; ++c) EXPECT_EQ(hand->image.at(y, x, c), bmp_color(y, x)[c]);
    }
  }
}

TEST(DatasetImageFolder, JpegAndHeaders) {
  TempDir dir;
  Image flat(24, 40, 3);
  for (int y = 0; y < 24; ++y) {
    for (int x = 0; x < 40; ++x) {
      flat.at(y, x, 0) = 220;
      flat.at(y, x, 1) = 120;
      flat.at(y, x, 2) = 20;
    }
  }
  for (const char* name : {"f.jpg", "f.png", "f.bmp", "f.webp"}) {
    write_image_file(dir.file(name), flat);
    const Bytes bytes = read_bytes(dir.file(name));
    const auto size = peek_image_size(bytes.data(), bytes.size());
    ASSERT_TRUE(size.has_value()) << name;
    EXPECT_EQ(size->height, 24) << name;
    EXPECT_EQ(size->width, 40) << name;
  }
  const auto jpeg = decode_image_file(dir.file("f.jpg"));
  ASSERT_TRUE(jpeg.has_value());
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(jpeg->at(12, 20, c), flat.at(12, 20, c), 3) << c;
  const auto webp = decode_image_file(dir.file("f.webp"));
  ASSERT_TRUE(webp.has_value());
  EXPECT_NEAR(webp->at(12, 20, 0), 220, 6);
}

TEST(DatasetImageFolder, ReducedDecode) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  fs::create_directories(root / "k");
  write_image_file((root / "k" / "big.jpg").string(), test_card(48, 64, 2));
  write_image_file((root / "k" / "big.png").string(), test_card(48, 64, 2));
  const auto ds = open_image_folder(root.string());
  const auto* folder = dynamic_cast<const ImageFolder*>(ds.get());
  ASSERT_NE(folder, nullptr);
  const auto shape = [&](int64_t index, int min_side) {
    const auto s = folder->get_reduced(index, min_side);
    EXPECT_TRUE(s.has_value());
    return std::make_pair(s->image.height, s->image.width);
  };
  EXPECT_EQ(shape(0, 0), std::make_pair(48, 64));
  EXPECT_EQ(shape(0, 30), std::make_pair(48, 64));  // 48 < 2 * 30
  EXPECT_EQ(shape(0, 24), std::make_pair(24, 32));
  EXPECT_EQ(shape(0, 10), std::make_pair(12, 16));
  EXPECT_EQ(shape(0, 5), std::make_pair(6, 8));
  EXPECT_EQ(shape(0, 1), std::make_pair(6, 8));    // 8 is libjpeg's largest reduction
  EXPECT_EQ(shape(1, 5), std::make_pair(48, 64));  // PNG: always full size
  EXPECT_EQ(folder->get_reduced(0, 0)->image.pixels, ds->get(0)->image.pixels);
  // The reduced image averages blocks of the full one.
  const auto full = ds->get(0)->image;
  const auto half = folder->get_reduced(0, 24)->image;
  for (int c = 0; c < 3; ++c) {
    const double block =
        (full.at(20, 30, c) + full.at(20, 31, c) + full.at(21, 30, c) + full.at(21, 31, c)) / 4.0;
    EXPECT_NEAR(half.at(10, 15, c), block, 8) << c;
  }
}

TEST(DatasetImageFolder, CorruptFilesAreSkippedWithOneWarning) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  fs::create_directories(root / "k");
  // Large and textured enough that the cut falls inside the entropy-coded data.
  Image textured(96, 96, 3);
  std::mt19937 gen(5);
  for (auto& p : textured.pixels) p = static_cast<uint8_t>(gen());
  write_image_file(dir.file("real.jpg"), textured);
  Bytes real = read_bytes(dir.file("real.jpg"));
  write_bytes((root / "k" / "a_ok.jpg").string(), real);
  Bytes cut(real.begin(), real.begin() + static_cast<long>(real.size() * 2 / 3));
  write_bytes((root / "k" / "b_truncated.jpg").string(), cut);
  Bytes noise;
  for (int i = 0; i < 500; ++i) noise.push_back(static_cast<uint8_t>(gen()));
  write_bytes((root / "k" / "c_noise.jpg").string(), noise);
  write_bytes((root / "k" / "d_empty.png").string(), {});
  write_bytes((root / "k" / "e_header.jpg").string(), Bytes(real.begin(), real.begin() + 100));

  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(32);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("dataset-test", sink));
  const auto ds = open_image_folder(root.string());
  ASSERT_EQ(ds->size(), 5);
  EXPECT_TRUE(ds->get(0).has_value());
  for (int round = 0; round < 3; ++round) {
    for (int i = 1; i < 5; ++i) EXPECT_FALSE(ds->get(i).has_value()) << i;
  }
  spdlog::set_default_logger(previous);

  const auto messages = sink->last_formatted();
  ASSERT_EQ(messages.size(), 4u);  // once per file
  EXPECT_NE(messages[0].find("b_truncated.jpg"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("no end-of-image marker"), std::string::npos) << messages[0];
  EXPECT_NE(messages[1].find("c_noise.jpg"), std::string::npos) << messages[1];
  EXPECT_NE(messages[2].find("d_empty.png"), std::string::npos) << messages[2];
  EXPECT_NE(messages[3].find("e_header.jpg"), std::string::npos) << messages[3];
  EXPECT_NE(messages[3].find("truncated JPEG header"), std::string::npos) << messages[3];

  std::string why;
  EXPECT_FALSE(decode_image_file(dir.file("absent.jpg"), 0, &why).has_value());
  EXPECT_NE(why.find("cannot read"), std::string::npos) << why;
}

TEST(DatasetImageFolder, ConcurrentGet) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  for (int k = 0; k < 3; ++k) {
    fs::create_directories(root / std::to_string(k));
    for (int i = 0; i < 4; ++i) {
      write_image_file((root / std::to_string(k) / (std::to_string(i) + ".png")).string(),
                       test_card(9, 11, k + i));
    }
  }
  const auto ds = open_image_folder(root.string());
  std::vector<std::vector<uint8_t>> expected;
  for (int i = 0; i < ds->size(); ++i) expected.push_back(ds->get(i)->image.pixels);
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < ds->size(); ++i) {
          const int index = (i + 3 * t) % static_cast<int>(ds->size());
          if (ds->get(index)->image.pixels != expected[index]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(DatasetImageFolder, WriteErrors) {
  TempDir dir;
  expect_error([&] { write_image_file(dir.file("x.unknownext"), test_card(2, 2, 0)); },
               {dir.file("x.unknownext")});
  expect_error([&] { write_image_file(dir.file("no/such/dir/x.png"), test_card(2, 2, 0)); },
               {"no/such/dir/x.png"});
  expect_error([&] { write_image_file(dir.file("x.png"), Image(2, 2, 4)); }, {"4 channels"});
}

#else

TEST(DatasetImageFolder, WithoutOpenCvGetThrows) {
  TempDir dir;
  touch(dir.path() / "k" / "a.png");
  const auto ds = open_image_folder(dir.path().string());
  ASSERT_EQ(ds->size(), 1);
  expect_error([&] { ds->get(0); }, {"a.png", "OpenCV", "libopencv-dev"});
  expect_error([&] { write_image_file(dir.file("x.png"), Image(2, 2, 3)); }, {"OpenCV"});
}

#endif  // THINKINGVIT_HAVE_OPENCV

}  // namespace
}  // namespace thinkingvit::data
