#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "../test_util.h"
#include "thinkingvit/data/sampler.h"

namespace thinkingvit::testing {

TEST(Sampler, ShufflesPerEpochFromTheSeed) {
  data::SamplerOptions o;
  o.seed = 42;
  auto a = data::epoch_indices(100, 0, o), b = data::epoch_indices(100, 0, o),
       c = data::epoch_indices(100, 1, o);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(sorted[i], i);
  o.shuffle = false;
  EXPECT_EQ(data::epoch_indices(5, 3, o), (std::vector<int64_t>{0, 1, 2, 3, 4}));
}

TEST(Sampler, RanksGetDisjointEqualShares) {
  for (int64_t n : {12, 10}) {
    std::map<int64_t, int> seen;
    size_t share = 0;
    for (int rank = 0; rank < 4; ++rank) {
      data::SamplerOptions o;
      o.rank = rank;
      o.world_size = 4;
      o.seed = 1;
      auto mine = data::epoch_indices(n, 2, o);
      if (rank == 0) share = mine.size();
      EXPECT_EQ(mine.size(), share);
      for (auto i : mine) ++seen[i];
    }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), n);  // every index visited
    int total = 0;
    for (const auto& [i, count] : seen) total += count;
    EXPECT_EQ(total, 4 * static_cast<int>(share));
    if (n == 12) {
      for (const auto& [i, count] : seen) EXPECT_EQ(count, 1) << i;  // disjoint
    }
  }
}

TEST(Sampler, RepeatedAugmentationSpreadsThreeCopiesOverRanks) {
  std::map<int64_t, int> seen;
  for (int rank = 0; rank < 3; ++rank) {
    data::SamplerOptions o;
    o.rank = rank;
    o.world_size = 3;
    o.repeats = 3;
    o.repeats_truncate = false;
    auto mine = data::epoch_indices(12, 0, o);
    EXPECT_EQ(mine.size(), 12u);
    EXPECT_EQ(std::set<int64_t>(mine.begin(), mine.end()).size(),
              12u);  // each copy on another rank
    for (auto i : mine) ++seen[i];
  }
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(seen[i], 3);
  data::SamplerOptions deit;
  deit.repeats = 3;
  deit.world_size = 2;
  EXPECT_EQ(data::epoch_indices(600, 0, deit).size(), 256u);  // floor(600/256)*256/2
}

TEST(Sampler, RejectsBadSettings) {
  data::SamplerOptions o;
  o.rank = 2;
  o.world_size = 2;
  expect_error([&] { data::epoch_indices(10, 0, o); }, {"rank 2", "world size 2"});
  expect_error([] { data::epoch_indices(0, 0, data::SamplerOptions{}); }, {"empty"});
}

}  // namespace thinkingvit::testing
