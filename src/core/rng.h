// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11), the generator cuRAND uses.
//
// A random word is a pure function of (seed, stream, index): no state to carry, any element can be
// computed independently, so a CUDA kernel produces the very same stream as this CPU code
// (thread i computes philox(counter = {i/4, stream}, key = seed) and takes word i%4).
// Counter layout: c0,c1 = 64-bit block index (little word first), c2,c3 = 64-bit stream id;
// key k0,k1 = 64-bit seed.
#pragma once

#include <array>
#include <cstdint>

namespace qaft {

using PhiloxBlock = std::array<uint32_t, 4>;

// One Philox4x32-10 block.
PhiloxBlock philox4x32_10(PhiloxBlock counter, std::array<uint32_t, 2> key);

class CounterRng {
 public:
  CounterRng(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}

  // The index-th 32-bit word of this (seed, stream).
  uint32_t u32(uint64_t index) const;
  // Uniform in [0, 1): the top 24 bits of u32(index) times 2^-24 (exact in fp32).
  float uniform(uint64_t index) const;
  // Standard normal by Box–Muller from words (2·index, 2·index + 1).
  float normal(uint64_t index) const;

  // Fill out[0..n) with u32/uniform/normal of indices [offset, offset + n).
  void fill_u32(uint32_t* out, int64_t n, uint64_t offset = 0) const;
  void fill_uniform(float* out, int64_t n, uint64_t offset = 0) const;
  void fill_normal(float* out, int64_t n, float mean, float stddev, uint64_t offset = 0) const;

  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }

 private:
  PhiloxBlock block(uint64_t block_index) const;
  uint64_t seed_;
  uint64_t stream_;
};

}  // namespace qaft
