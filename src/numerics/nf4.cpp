// NF4 quantization, scalar dequantization, QLoRA double quantization and Nf4Tensor (see nf4.h for
// the format). The AVX-512 dequantization loops live in nf4_avx512.cpp; this file chooses between
// them.
#include "numerics/nf4.h"

#include "core/cpu_features.h"
#include "core/error.h"
#include "numerics/bf16.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <limits>

namespace qaft {
namespace {

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_block_size(int blocksize, const char* what) {
  QAFT_CHECK(blocksize >= kNf4MinBlocksize && blocksize <= kNf4MaxBlocksize &&
                 std::has_single_bit(static_cast<unsigned>(blocksize)),
             "NF4 {} {} is invalid: it must be a power of two in [{}, {}] (bitsandbytes uses 64)",
             what, blocksize, kNf4MinBlocksize, kNf4MaxBlocksize);
}

// Two zero codes in one byte: what a block holding NaN or ±inf is filled with.
constexpr uint8_t kZeroPair = (kNf4ZeroIndex << 4) | kNf4ZeroIndex;

// Quantizes one block x[0..len) (len even, or odd for the very last block). packed: [ceil(len/2)].
void quantize_block(const float* x, int64_t len, uint8_t* packed, float* absmax) {
  float m = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < len; ++i) {
    const float a = std::fabs(x[i]);
    finite &= a <= FLT_MAX;  // false for inf and NaN
    m = a > m ? a : m;
  }
  if (!finite) {
    *absmax = std::numeric_limits<float>::quiet_NaN();
    std::fill(packed, packed + cdiv(len, 2), kZeroPair);
    return;
  }
  *absmax = m;
  // u = x * (1/absmax) as bitsandbytes' torch path; clamping u to [-1, 1] cannot change the index
  // (the tree is monotone and its outermost thresholds lie inside (-1, 1)), so it is skipped.
  const float inv = 1.0f / std::max(m, kNf4MinAbsmax);
  int64_t i = 0;
  for (; i + 1 < len; i += 2) {
    packed[i / 2] =
        static_cast<uint8_t>((nf4_encode(x[i] * inv) << 4) | nf4_encode(x[i + 1] * inv));
  }
  if (i < len) packed[i / 2] = static_cast<uint8_t>((nf4_encode(x[i] * inv) << 4) | kNf4ZeroIndex);
}

// out[k] = convert(quant_map[q] * scale) for elements [begin, end); see
// detail::nf4_dequantize_range_*. Per block the 16 possible outputs are computed once (the same
// fp32 product and conversion as element by element, so results are unchanged); each byte then
// costs two table loads.
template <typename Out, typename Convert>
void dequantize_range_scalar(const uint8_t* packed, const float* absmax, int64_t begin, int64_t end,
                             int blocksize, const float* quant_map, Out* out, Convert convert) {
  const int shift = std::countr_zero(static_cast<unsigned>(blocksize));  // blocksize = 2^shift
  const int64_t block0 = begin >> shift;
  Out lut[16];
  int64_t i = begin;
  while (i < end) {
    const int64_t block = i >> shift;
    const float s = absmax[block - block0];
    for (int k = 0; k < 16; ++k) lut[k] = convert(quant_map[k] * s);
    const int64_t stop = std::min(end, (block + 1) << shift);
    if (i & 1) {  // only possible for the first element of the range
      out[i - begin] = lut[packed[i >> 1] & 0xF];
      ++i;
    }
    for (; i + 1 < stop; i += 2) {
      const uint8_t byte = packed[i >> 1];
      out[i - begin] = lut[byte >> 4];
      out[i + 1 - begin] = lut[byte & 0xF];
    }
    if (i < stop) {  // the last element of the range, in a high nibble
      out[i - begin] = lut[packed[i >> 1] >> 4];
      ++i;
    }
  }
}

void check_range_args(const uint8_t* packed, const float* absmax, int64_t n, int blocksize,
                      const void* out, const float* quant_map) {
  check_block_size(blocksize, "blocksize");
  QAFT_CHECK(n >= 0, "NF4 element count {} is negative", n);
  QAFT_CHECK(n == 0 || (packed && absmax && out),
             "NF4 dequantize of {} elements given a null pointer", n);
  QAFT_CHECK(quant_map != nullptr, "NF4 dequantize given a null quant_map");
}

// ---- bitsandbytes' signed dynamic map -----------------------------------------------------------
//
// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) builds, for i = 0..6,
//   boundaries = torch.linspace(0.1, 1, 2^i + 1)          (float32)
//   means      = (boundaries[:-1] + boundaries[1:]) / 2.0  (float32)
//   data      += 10^(i-6) * means, and the negations       (float32 products: the Python float
//                                                          scalar is cast to float32 first)
// then appends 0 and 1.0 and sorts: 127 negatives, 0, 127 positives, 1.0.
//
// The only delicate part is torch.linspace in float32. Current PyTorch computes, on the CPU,
//   step = (end - start) / (steps - 1)
//   v[k] = k < steps / 2 ? start + step * k : end - step * (steps - 1 - k)
// in float, and its AVX2/AVX-512 kernel builds (used on x86 machines with AVX2; likewise aarch64)
// contract each into one fused multiply-add. We reproduce exactly that with fmaf. Checked against
// this machine's PyTorch 1.13 where it runs that scalar code (decades i <= 4: all entries with
// |v| < 1e-2 bit-identical). Other builds differ in the last bit: a non-FMA build (ATen "default"
// CPU capability) in 42 entries, and PyTorch 1.13's vectorized linspace in others. Such ulp-level
// differences do not matter for accuracy, and a loaded file brings its own `nested_quant_map`
// (Nf4Tensor::nested_map), which dequantization uses.
std::array<float, 256> make_dynamic_map() {
  static constexpr double kDecade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
  std::array<float, 256> map{};
  size_t k = 0;
  for (int i = 0; i < 7; ++i) {
    const int steps = (1 << i) + 1;
    const float start = 0.1f;
    const float end = 1.0f;
    const float step = (end - start) / static_cast<float>(steps - 1);
    const int halfway = steps / 2;
    float boundary[65];
    for (int j = 0; j < steps; ++j) {
      boundary[j] = j < halfway ? std::fma(step, static_cast<float>(j), start)
                                : std::fma(-step, static_cast<float>(steps - 1 - j), end);
    }
    const float scale = static_cast<float>(kDecade[i]);
    for (int j = 0; j + 1 < steps; ++j) {
      const float mean = (boundary[j] + boundary[j + 1]) / 2.0f;
      const float v = scale * mean;
      map[k++] = v;
      map[k++] = -v;
    }
  }
  map[k++] = 0.0f;
  map[k++] = 1.0f;
  if (k != map.size())
    QAFT_FAIL(ErrorKind::kInternal, "", "dynamic map has {} entries, not 256", k);
  std::sort(map.begin(), map.end());
  return map;
}

}  // namespace

void nf4_check_blocksize(int blocksize) { check_block_size(blocksize, "blocksize"); }

int64_t nf4_num_blocks(int64_t n, int blocksize) {
  nf4_check_blocksize(blocksize);
  QAFT_CHECK(n >= 0, "NF4 element count {} is negative", n);
  return cdiv(n, blocksize);
}

int64_t nf4_packed_bytes(int64_t n) {
  QAFT_CHECK(n >= 0, "NF4 element count {} is negative", n);
  return cdiv(n, 2);
}

void nf4_quantize(const float* x, int64_t n, int blocksize, uint8_t* packed, float* absmax) {
  nf4_check_blocksize(blocksize);
  QAFT_CHECK(n >= 0, "NF4 element count {} is negative", n);
  if (n == 0) return;
  QAFT_CHECK(x && packed && absmax, "NF4 quantize of {} elements given a null pointer", n);
  const int64_t blocks = cdiv(n, blocksize);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * blocksize;  // even: blocks never split a byte
    quantize_block(x + i0, std::min<int64_t>(blocksize, n - i0), packed + i0 / 2, absmax + b);
  }
}

void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int blocksize,
                    float* out, const float* quant_map) {
  check_range_args(packed, absmax, n, blocksize, out, quant_map);
  if (n > 0) detail::nf4_dequantize_range(packed, absmax, 0, n, blocksize, quant_map, out);
}

void nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, int64_t n, int blocksize,
                         uint16_t* out, const float* quant_map) {
  check_range_args(packed, absmax, n, blocksize, out, quant_map);
  if (n > 0) detail::nf4_dequantize_range_bf16(packed, absmax, 0, n, blocksize, quant_map, out);
}

namespace detail {

void nf4_dequantize_range_scalar(const uint8_t* packed, const float* absmax, int64_t begin,
                                 int64_t end, int blocksize, const float* quant_map, float* out) {
  dequantize_range_scalar(packed, absmax, begin, end, blocksize, quant_map, out,
                          [](float v) { return v; });
}

void nf4_dequantize_range_bf16_scalar(const uint8_t* packed, const float* absmax, int64_t begin,
                                      int64_t end, int blocksize, const float* quant_map,
                                      uint16_t* out) {
  dequantize_range_scalar(packed, absmax, begin, end, blocksize, quant_map, out,
                          [](float v) { return bf16_from_float(v); });
}

void nf4_dequantize_range(const uint8_t* packed, const float* absmax, int64_t begin, int64_t end,
                          int blocksize, const float* quant_map, float* out) {
  if (cpu_features().has_avx512_codecs()) {
    nf4_dequantize_range_avx512(packed, absmax, begin, end, blocksize, quant_map, out);
  } else {
    nf4_dequantize_range_scalar(packed, absmax, begin, end, blocksize, quant_map, out);
  }
}

void nf4_dequantize_range_bf16(const uint8_t* packed, const float* absmax, int64_t begin,
                               int64_t end, int blocksize, const float* quant_map, uint16_t* out) {
  if (cpu_features().has_avx512_codecs()) {
    nf4_dequantize_range_bf16_avx512(packed, absmax, begin, end, blocksize, quant_map, out);
  } else {
    nf4_dequantize_range_bf16_scalar(packed, absmax, begin, end, blocksize, quant_map, out);
  }
}

}  // namespace detail

// ---- Double quantization ------------------------------------------------------------------------

const std::array<float, 256>& nf4_dynamic_map() {
  static const std::array<float, 256> map = make_dynamic_map();
  return map;
}

uint8_t nf4_nested_encode(float u, const float* map) {
  QAFT_CHECK(map != nullptr, "NF4 nested encode given a null map");
  if (std::isnan(u)) u = 0.0f;
  const int hi = static_cast<int>(std::lower_bound(map, map + 256, u) - map);  // first map[k] >= u
  if (hi == 0) return 0;
  if (hi == 256) return 255;
  const float d_lo = std::fabs(u - map[hi - 1]);
  const float d_hi = std::fabs(u - map[hi]);
  int best = d_lo <= d_hi ? hi - 1 : hi;
  const float d = std::min(d_lo, d_hi);
  // argmin returns the first minimum: lower entries whose rounded distance ties also win.
  while (best > 0 && std::fabs(u - map[best - 1]) == d) --best;
  return static_cast<uint8_t>(best);
}

Nf4NestedAbsmax nf4_double_quantize_absmax(const float* absmax, int64_t nblocks,
                                           int nested_blocksize, const float* nested_map) {
  check_block_size(nested_blocksize, "nested blocksize");
  QAFT_CHECK(nblocks >= 0, "NF4 absmax count {} is negative", nblocks);
  QAFT_CHECK(nblocks == 0 || absmax, "NF4 double quantization of {} absmax given a null pointer",
             nblocks);
  QAFT_CHECK(nested_map != nullptr, "NF4 double quantization given a null nested map");
  Nf4NestedAbsmax q;
  q.nested_blocksize = nested_blocksize;
  if (nblocks == 0) return q;
  double sum = 0.0;
  for (int64_t i = 0; i < nblocks; ++i) sum += absmax[i];
  q.offset = static_cast<float>(sum / static_cast<double>(nblocks));
  q.codes.resize(static_cast<size_t>(nblocks));
  q.absmax2.resize(static_cast<size_t>(cdiv(nblocks, nested_blocksize)));
  for (size_t b = 0; b < q.absmax2.size(); ++b) {
    const int64_t i0 = static_cast<int64_t>(b) * nested_blocksize;
    const int64_t i1 = std::min<int64_t>(nblocks, i0 + nested_blocksize);
    float m = 0.0f;
    bool nan = false;
    for (int64_t i = i0; i < i1; ++i) {
      const float v = absmax[i] - q.offset;
      nan |= std::isnan(v);
      m = std::max(m, std::fabs(v));
    }
    q.absmax2[b] = nan ? std::numeric_limits<float>::quiet_NaN() : m;
    const float inv = 1.0f / std::max(m, kNf4MinAbsmax);
    for (int64_t i = i0; i < i1; ++i) {
      const float u = std::clamp((absmax[i] - q.offset) * inv, -1.0f, 1.0f);
      q.codes[static_cast<size_t>(i)] = nf4_nested_encode(u, nested_map);
    }
  }
  return q;
}

void nf4_double_dequantize_absmax(const Nf4NestedAbsmax& q, int64_t block_begin, int64_t block_end,
                                  float* out, const float* nested_map) {
  const auto nblocks = static_cast<int64_t>(q.codes.size());
  QAFT_CHECK(0 <= block_begin && block_begin <= block_end && block_end <= nblocks,
             "NF4 absmax range [{}, {}) is outside [0, {})", block_begin, block_end, nblocks);
  check_block_size(q.nested_blocksize, "nested blocksize");
  QAFT_CHECK(static_cast<int64_t>(q.absmax2.size()) == cdiv(nblocks, q.nested_blocksize),
             "NF4 nested absmax has {} entries; {} codes in blocks of {} need {}", q.absmax2.size(),
             nblocks, q.nested_blocksize, cdiv(nblocks, q.nested_blocksize));
  QAFT_CHECK(block_begin == block_end || (out && nested_map),
             "NF4 absmax dequantize given a null pointer");
  // Two fp32 roundings, as bitsandbytes (dequantize_blockwise, then + offset). Kept as two
  // statements; note that a build with FMA enabled for this file (-march=native) may contract them.
  int64_t i = block_begin;
  while (i < block_end) {
    const int64_t nested = i / q.nested_blocksize;
    const float absmax2 = q.absmax2[static_cast<size_t>(nested)];
    const int64_t stop = std::min(block_end, (nested + 1) * q.nested_blocksize);
    for (; i < stop; ++i) {
      const float scaled = nested_map[q.codes[static_cast<size_t>(i)]] * absmax2;
      out[i - block_begin] = scaled + q.offset;
    }
  }
}

// ---- Nf4Tensor ----------------------------------------------------------------------------------

int64_t Nf4Tensor::num_blocks() const { return nf4_num_blocks(numel(), blocksize); }

size_t Nf4Tensor::storage_bytes() const {
  size_t bytes = packed.size();
  if (double_quant) {
    bytes += nested.codes.size() + nested.absmax2.size() * sizeof(float) + sizeof(nested.offset);
  } else {
    bytes += absmax.size() * sizeof(float);
  }
  return bytes;
}

double Nf4Tensor::bytes_per_param() const {
  return numel() == 0 ? 0.0 : static_cast<double>(storage_bytes()) / static_cast<double>(numel());
}

void nf4_check_tensor(const Nf4Tensor& t) {
  QAFT_CHECK(t.rows >= 0 && t.cols >= 0, "NF4 tensor shape [{}, {}] is negative", t.rows, t.cols);
  QAFT_CHECK(t.cols == 0 || t.rows <= std::numeric_limits<int64_t>::max() / t.cols,
             "NF4 tensor shape [{}, {}] overflows int64", t.rows, t.cols);
  check_block_size(t.blocksize, "blocksize");
  const int64_t n = t.numel();
  const int64_t blocks = cdiv(n, t.blocksize);
  QAFT_CHECK(static_cast<int64_t>(t.packed.size()) == cdiv(n, 2),
             "NF4 tensor [{}, {}] has {} packed bytes, expected {}", t.rows, t.cols,
             t.packed.size(), cdiv(n, 2));
  if (t.double_quant) {
    QAFT_CHECK(static_cast<int64_t>(t.nested.codes.size()) == blocks,
               "NF4 tensor [{}, {}] has {} nested absmax codes, expected {} (blocksize {})", t.rows,
               t.cols, t.nested.codes.size(), blocks, t.blocksize);
    check_block_size(t.nested.nested_blocksize, "nested blocksize");
    QAFT_CHECK(
        static_cast<int64_t>(t.nested.absmax2.size()) == cdiv(blocks, t.nested.nested_blocksize),
        "NF4 tensor [{}, {}] has {} nested absmax scales, expected {}", t.rows, t.cols,
        t.nested.absmax2.size(), cdiv(blocks, t.nested.nested_blocksize));
  } else {
    QAFT_CHECK(static_cast<int64_t>(t.absmax.size()) == blocks,
               "NF4 tensor [{}, {}] has {} absmax values, expected {} (blocksize {})", t.rows,
               t.cols, t.absmax.size(), blocks, t.blocksize);
  }
}

Nf4Tensor nf4_quantize_tensor(const float* x, int64_t rows, int64_t cols, bool double_quant,
                              int blocksize) {
  Nf4Tensor t;
  t.rows = rows;
  t.cols = cols;
  t.blocksize = blocksize;
  QAFT_CHECK(rows >= 0 && cols >= 0, "NF4 tensor shape [{}, {}] is negative", rows, cols);
  QAFT_CHECK(cols == 0 || rows <= std::numeric_limits<int64_t>::max() / cols,
             "NF4 tensor shape [{}, {}] overflows int64", rows, cols);
  const int64_t n = rows * cols;
  const int64_t blocks = nf4_num_blocks(n, blocksize);
  t.packed.resize(static_cast<size_t>(cdiv(n, 2)));
  t.absmax.resize(static_cast<size_t>(blocks));
  nf4_quantize(x, n, blocksize, t.packed.data(), t.absmax.data());
  if (double_quant) {
    t.double_quant = true;
    t.nested = nf4_double_quantize_absmax(t.absmax.data(), blocks, kNf4NestedBlocksize,
                                          t.nested_map.data());
    t.absmax = {};
  }
  return t;
}

void nf4_tensor_absmax(const Nf4Tensor& t, int64_t block_begin, int64_t block_end, float* out) {
  nf4_check_tensor(t);
  const int64_t blocks = t.num_blocks();
  QAFT_CHECK(0 <= block_begin && block_begin <= block_end && block_end <= blocks,
             "NF4 absmax range [{}, {}) is outside [0, {})", block_begin, block_end, blocks);
  if (t.double_quant) {
    nf4_double_dequantize_absmax(t.nested, block_begin, block_end, out, t.nested_map.data());
  } else if (block_end > block_begin) {
    std::copy(t.absmax.begin() + block_begin, t.absmax.begin() + block_end, out);
  }
}

namespace {

// Shared by the fp32 and bf16 row functions: validates, gathers the absmax of the touched blocks
// and calls `range(absmax, begin, end)`.
template <typename Range>
void dequantize_rows(const Nf4Tensor& t, int64_t row_begin, int64_t row_end, const void* out,
                     Range range) {
  nf4_check_tensor(t);
  QAFT_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= t.rows,
             "NF4 row range [{}, {}) is outside [0, {})", row_begin, row_end, t.rows);
  const int64_t begin = row_begin * t.cols;
  const int64_t end = row_end * t.cols;
  if (begin == end) return;
  QAFT_CHECK(out != nullptr, "NF4 dequantize given a null output");
  const int64_t block0 = begin / t.blocksize;
  if (!t.double_quant) {
    range(t.absmax.data() + block0, begin, end);
    return;
  }
  std::vector<float> absmax(static_cast<size_t>(cdiv(end, t.blocksize) - block0));
  nf4_double_dequantize_absmax(t.nested, block0, cdiv(end, t.blocksize), absmax.data(),
                               t.nested_map.data());
  range(absmax.data(), begin, end);
}

}  // namespace

void nf4_dequantize_rows(const Nf4Tensor& t, int64_t row_begin, int64_t row_end, float* out) {
  dequantize_rows(t, row_begin, row_end, out, [&](const float* absmax, int64_t begin, int64_t end) {
    detail::nf4_dequantize_range(t.packed.data(), absmax, begin, end, t.blocksize,
                                 t.quant_map.data(), out);
  });
}

void nf4_dequantize_rows_bf16(const Nf4Tensor& t, int64_t row_begin, int64_t row_end,
                              uint16_t* out) {
  dequantize_rows(t, row_begin, row_end, out, [&](const float* absmax, int64_t begin, int64_t end) {
    detail::nf4_dequantize_range_bf16(t.packed.data(), absmax, begin, end, t.blocksize,
                                      t.quant_map.data(), out);
  });
}

void nf4_dequantize_tensor(const Nf4Tensor& t, float* out) {
  nf4_dequantize_rows(t, 0, t.rows, out);
}

void nf4_dequantize_tensor_bf16(const Nf4Tensor& t, uint16_t* out) {
  nf4_dequantize_rows_bf16(t, 0, t.rows, out);
}

}  // namespace qaft
