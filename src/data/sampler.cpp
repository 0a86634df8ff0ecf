#include "thinkingvit/data/sampler.h"

#include <numeric>

#include "thinkingvit/data/image.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::data {

std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  auto rng = sample_rng(seed, epoch, /*index=*/-1);
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
    const auto j = std::uniform_int_distribution<int64_t>(0, i)(rng);
    std::swap(order[i], order[j]);
  }
  return order;
}

std::vector<int64_t> epoch_indices(int64_t n, int64_t epoch, const SamplerOptions& o) {
  TVIT_CHECK(n > 0, "sampler: the dataset is empty");
  TVIT_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "sampler: rank ", o.rank,
             " is outside world size ", o.world_size);
  TVIT_CHECK(o.repeats >= 1, "sampler: repeats must be >= 1, found ", o.repeats);
  std::vector<int64_t> order;
  if (o.shuffle) {
    order = permutation(n, o.seed, epoch);
  } else {
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
  }
  if (o.repeats > 1) {  // [a, a, a, b, b, b, ...]
    std::vector<int64_t> repeated;
    repeated.reserve(order.size() * o.repeats);
    for (auto i : order) repeated.insert(repeated.end(), o.repeats, i);
    order = std::move(repeated);
  }
  const int64_t total = static_cast<int64_t>(order.size());
  const int64_t per_rank = (total + o.world_size - 1) / o.world_size;
  for (int64_t i = 0; static_cast<int64_t>(order.size()) < per_rank * o.world_size; ++i) {
    order.push_back(order[i % total]);  // pad by wrapping around
  }
  std::vector<int64_t> mine;
  mine.reserve(per_rank);
  for (int64_t i = o.rank; i < per_rank * o.world_size; i += o.world_size) mine.push_back(order[i]);
  if (o.repeats > 1 && o.repeats_truncate) {
    const int64_t keep = n / 256 * 256 / o.world_size;
    if (keep > 0 && keep < static_cast<int64_t>(mine.size())) mine.resize(keep);
  }
  return mine;
}

}  // namespace thinkingvit::data
