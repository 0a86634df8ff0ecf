#pragma once
// Which dataset indices a rank visits in an epoch: per-epoch shuffling from a seed,
// distributed sharding (torch DistributedSampler) and DeiT's repeated-augmentation sampler.

#include <cstdint>
#include <vector>

namespace thinkingvit::data {

struct SamplerOptions {
  bool shuffle = true;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  // Repeated augmentation (DeiT RASampler): each index appears `repeats` times per epoch,
  // the copies spread over ranks. 1: off.
  int repeats = 1;
  // RASampler visits only floor(N / 256) * 256 / world samples per rank, as DeiT does.
  bool repeats_truncate = true;
};

// The rank's indices for `epoch`. Every rank gets the same number; without repeats the ranks'
// shares are disjoint and cover every index (padding repeats the first indices so that N
// divides evenly, as DistributedSampler does). Deterministic in (seed, epoch).
std::vector<int64_t> epoch_indices(int64_t dataset_size, int64_t epoch,
                                   const SamplerOptions& options);

// A permutation of [0, n) from (seed, epoch), independent of the LibTorch version.
std::vector<int64_t> permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace thinkingvit::data
