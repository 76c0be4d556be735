#include "core/rng.h"

#include <cmath>
#include <numbers>

namespace qaft {
namespace {
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}
}  // namespace

PhiloxBlock philox4x32_10(PhiloxBlock c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k[0] += kPhiloxW0;
      k[1] += kPhiloxW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kPhiloxM0, c[0], hi0, lo0);
    mulhilo(kPhiloxM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

PhiloxBlock CounterRng::block(uint64_t b) const {
  return philox4x32_10({static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32),
                        static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)},
                       {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)});
}

uint32_t CounterRng::u32(uint64_t index) const { return block(index / 4)[index % 4]; }

float CounterRng::uniform(uint64_t index) const {
  return static_cast<float>(u32(index) >> 8) * 0x1p-24f;
}

float CounterRng::normal(uint64_t index) const {
  // u1 in (0, 1] so that log(u1) is finite.
  float u1 = static_cast<float>((u32(2 * index) >> 8) + 1) * 0x1p-24f;
  float u2 = uniform(2 * index + 1);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(2.0f * std::numbers::pi_v<float> * u2);
}

void CounterRng::fill_u32(uint32_t* out, int64_t n, uint64_t offset) const {
  for (int64_t i = 0; i < n; ++i) out[i] = u32(offset + static_cast<uint64_t>(i));
}

void CounterRng::fill_uniform(float* out, int64_t n, uint64_t offset) const {
  for (int64_t i = 0; i < n; ++i) out[i] = uniform(offset + static_cast<uint64_t>(i));
}

void CounterRng::fill_normal(float* out, int64_t n, float mean, float stddev, uint64_t offset) const {
  for (int64_t i = 0; i < n; ++i) out[i] = mean + stddev * normal(offset + static_cast<uint64_t>(i));
}

}  // namespace qaft
