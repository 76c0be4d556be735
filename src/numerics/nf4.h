// NF4 (4-bit NormalFloat) block quantization and QLoRA double quantization, bit-compatible with
// bitsandbytes (formats.md §5.1–5.2), for the frozen base weights of QLoRA fine-tuning.
//
// Layout of a quantized tensor of n elements (flattened row-major):
//   packed  uint8[ceil(n/2)]    byte k = (q[2k] << 4) | q[2k+1]: EVEN element in the HIGH nibble.
//                               An odd n is padded with index 7 (code 0.0) in the last low nibble,
//                               as bitsandbytes pads the scaled tensor with 0.0 before encoding.
//   absmax  fp32[cdiv(n, bs)]   max|x| of each block of `blocksize` consecutive elements; the
//                               last, partial block has its own.
//   value   x̂ = quant_map[q] * absmax[block]   (one fp32 multiply; bf16 output rounds it RNE)
// Double quantization (QLoRA `compress_statistics`) stores absmax itself in 8 bits:
//   offset = mean(absmax); absmax - offset is quantized in blocks of 256 against the signed
//   dynamic map (nf4_dynamic_map()); absmax ≈ nested_map[code] * absmax2[block / 256] + offset.
// Memory: 0.5 byte/param + 4/blocksize (fp32 absmax) or, double-quantized,
//   0.5 + 1/blocksize + 4/(blocksize*256) byte/param (+ 4 bytes offset) = 0.5159 at blocksize 64.
//
// Encoding follows bitsandbytes' CUDA dQuantizeNF4: a binary decision tree over the 15 thresholds
// below with strict `>`, so a value exactly on a threshold takes the LOWER index (as torch's
// bucketize(right=False) and argmin do). Each threshold is the midpoint of two adjacent codes.
//
// Non-finite input: a block containing NaN or ±inf gets absmax = NaN and all its codes = 7 (0.0),
// so it dequantizes to NaN everywhere (bitsandbytes would give NaN/garbage codes; we never form an
// integer from a NaN). An all-zero block gets absmax 0 and codes 7: it dequantizes to exact +0.0.
// The reciprocal uses max(absmax, 1e-38) (the torch path's clamp), so blocks with absmax < 1e-38
// (subnormal) are scaled by 1e38 rather than overflowing.
//
// Library functions are single-threaded; callers parallelize over row ranges (nf4_dequantize_rows).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qaft {

inline constexpr int kNf4DefaultBlocksize = 64;  // bitsandbytes Params4bit default
inline constexpr int kNf4MinBlocksize = 32;
inline constexpr int kNf4MaxBlocksize = 4096;
inline constexpr int kNf4NestedBlocksize = 256;  // bitsandbytes' blocksize for double quantization
inline constexpr int kNf4ZeroIndex = 7;  // index of code 0.0 (padding, zero blocks, NaN blocks)
inline constexpr float kNf4MinAbsmax = 1e-38f;  // clamp of absmax before taking its reciprocal

// The 16 NF4 code values, index → value, exactly formats.md §5.1 (each is an exact fp32 value).
inline constexpr std::array<float, 16> kNf4Code = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// Decision thresholds of dQuantizeNF4 (formats.md §5.2), sorted: kNf4Threshold[i] separates index i
// (u <= t) from index i+1 (u > t). Each is the midpoint of two adjacent codes: the decimal below is
// the exact midpoint (c_i + c_{i+1}) / 2 (a double) to 17 digits, and, like the CUDA source, we
// parse it as a float literal. Four midpoints lie exactly halfway between two floats; there the
// literal rounds to the side its decimal lies on, which is not always round-to-even of the exact
// midpoint — we keep CUDA's values (the tests check all of this).
inline constexpr std::array<float, 15> kNf4Threshold = {
    -0.8480964004993439f,    // 0 | 1
    -0.6106329262256622f,    // 1 | 2
    -0.4599952697753906f,    // 2 | 3
    -0.33967943489551544f,   // 3 | 4
    -0.23460740596055984f,   // 4 | 5
    -0.13791173323988914f,   // 5 | 6
    -0.045525018125772476f,  // 6 | 7
    0.03979014977812767f,    // 7 | 8
    0.1202552504837513f,     // 8 | 9
    0.2035212516784668f,     // 9 | 10
    0.2920137718319893f,     // 10 | 11
    0.3893125355243683f,     // 11 | 12
    0.5016634166240692f,     // 12 | 13
    0.6427869200706482f,     // 13 | 14
    0.8614784181118011f,     // 14 | 15
};

// Index of a normalized value u (nominally in [-1, 1]) by the dQuantizeNF4 decision tree; ties go
// to the lower index. NaN compares false everywhere and yields 0 (callers guard NaN before this).
inline uint8_t nf4_encode(float u) {
  const std::array<float, 15>& t = kNf4Threshold;
  if (u > t[7]) {
    if (u > t[11]) {
      if (u > t[13]) return u > t[14] ? 15 : 14;
      return u > t[12] ? 13 : 12;
    }
    if (u > t[9]) return u > t[10] ? 11 : 10;
    return u > t[8] ? 9 : 8;
  }
  if (u > t[3]) {
    if (u > t[5]) return u > t[6] ? 7 : 6;
    return u > t[4] ? 5 : 4;
  }
  if (u > t[1]) return u > t[2] ? 3 : 2;
  return u > t[0] ? 1 : 0;
}

// Throws qaft::Error (kInvalidArgument) unless blocksize is a power of two in [32, 4096].
void nf4_check_blocksize(int blocksize);
// Number of absmax blocks for n elements: cdiv(n, blocksize).
int64_t nf4_num_blocks(int64_t n, int blocksize);
// Bytes of packed codes for n elements: ceil(n / 2).
int64_t nf4_packed_bytes(int64_t n);

// Quantizes x[0..n) blockwise. x: [n]; packed: [ceil(n/2)]; absmax: [cdiv(n, blocksize)].
void nf4_quantize(const float* x, int64_t n, int blocksize, uint8_t* packed, float* absmax);

// Dequantizes n elements: out[i] = quant_map[q_i] * absmax[i / blocksize]. packed: [ceil(n/2)];
// absmax: [cdiv(n, blocksize)]; quant_map: [16] (defaults to kNf4Code; files carry their own);
// out: [n]. AVX-512 when available (bit-identical to the scalar loop).
void nf4_dequantize(const uint8_t* packed, const float* absmax, int64_t n, int blocksize,
                    float* out, const float* quant_map = kNf4Code.data());
// Same with bf16 output (uint16 bit patterns, fp32 product rounded to nearest even; NaN -> 0x7FFF).
void nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, int64_t n, int blocksize,
                         uint16_t* out, const float* quant_map = kNf4Code.data());

// ---- Double quantization (QLoRA compress_statistics) --------------------------------------------

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted
// fp32 values: 0, 1.0, and for each decade i = 0..6 the 2^i midpoints of
// torch.linspace(0.1, 1, 2^i + 1) scaled by ±10^(i-6). Generated once, reproducing current
// PyTorch's float32 CPU linspace (see nf4.cpp for the exact arithmetic and which PyTorch builds
// differ by one ulp in some entries).
const std::array<float, 256>& nf4_dynamic_map();

// Index of the entry of a sorted 256-entry map nearest to u (fp32 |u - map[k]|, ties to the lower
// index, as torch.argmin). NaN yields the entry nearest 0.
uint8_t nf4_nested_encode(float u, const float* map /*[256], sorted ascending*/);

// The 8-bit representation of a vector of absmax values.
struct Nf4NestedAbsmax {
  // [nblocks] index into the nested map, one per NF4 block
  std::vector<uint8_t> codes;
  // [cdiv(nblocks, nested_blocksize)] max|absmax - offset| of each nested block
  std::vector<float> absmax2;
  // mean(absmax) in fp32, subtracted before quantizing and added back after
  float offset = 0.0f;
  // absmax entries per nested block
  int nested_blocksize = kNf4NestedBlocksize;
};

// Quantizes absmax[0..nblocks) (finite: it comes from nf4_quantize) with the dynamic map: offset =
// mean (double accumulator, rounded to fp32), v = absmax - offset, per nested block absmax2 =
// max|v|, code = nearest entry to clamp(v * (1/max(absmax2, 1e-38)), -1, 1). A NaN absmax makes the
// offset NaN, hence every reconstructed absmax NaN (the tensor was already poisoned).
// absmax: [nblocks]; nested_blocksize: power of two in [32, 4096].
Nf4NestedAbsmax nf4_double_quantize_absmax(const float* absmax, int64_t nblocks,
                                           int nested_blocksize = kNf4NestedBlocksize,
                                           const float* nested_map = nf4_dynamic_map().data());
// Reconstructs absmax of blocks [block_begin, block_end):
//   out[j] = nested_map[code] * absmax2 + offset
// as two fp32 operations (product rounded, then sum), like bitsandbytes.
// out: [block_end - block_begin].
void nf4_double_dequantize_absmax(const Nf4NestedAbsmax& q, int64_t block_begin, int64_t block_end,
                                  float* out, const float* nested_map = nf4_dynamic_map().data());

// ---- Tensors ------------------------------------------------------------------------------------

// A 2-D NF4-quantized weight [rows, cols] (a Linear weight [out, in]), elements flattened
// row-major, blocks running across row boundaries as in bitsandbytes.
struct Nf4Tensor {
  int64_t rows = 0;                      // outer dimension (out features)
  int64_t cols = 0;                      // inner dimension (in features)
  int blocksize = kNf4DefaultBlocksize;  // consecutive flattened elements sharing one absmax
  std::vector<uint8_t> packed;           // [ceil(rows*cols/2)] codes, even element in high nibble
  bool double_quant = false;             // statistics stored in `nested` instead of `absmax`
  std::vector<float> absmax;  // [num_blocks()] fp32 per-block max|x| (empty if double_quant)
  Nf4NestedAbsmax nested;     // 8-bit absmax when double_quant (empty otherwise)
  std::array<float, 16> quant_map = kNf4Code;             // value of each 4-bit index
  std::array<float, 256> nested_map = nf4_dynamic_map();  // value of each nested 8-bit index

  int64_t numel() const { return rows * cols; }
  int64_t num_blocks() const;
  // Bytes of packed codes plus statistics (absmax, or codes + absmax2 + offset); the two maps are
  // per-tensor constants and not counted.
  size_t storage_bytes() const;
  double bytes_per_param() const;
};

// Throws qaft::Error unless the sizes of t's arrays agree with its shape and block sizes (for
// tensors assembled from a file).
void nf4_check_tensor(const Nf4Tensor& t);

// Quantizes a row-major [rows, cols] fp32 weight. x: [rows, cols].
Nf4Tensor nf4_quantize_tensor(const float* x, int64_t rows, int64_t cols, bool double_quant,
                              int blocksize = kNf4DefaultBlocksize);
// Whole tensor. out: [rows, cols].
void nf4_dequantize_tensor(const Nf4Tensor& t, float* out);
void nf4_dequantize_tensor_bf16(const Nf4Tensor& t, uint16_t* out);
// Rows [row_begin, row_end) (e.g. one thread's share when packing a GEMM operand).
// out: [row_end - row_begin, cols].
void nf4_dequantize_rows(const Nf4Tensor& t, int64_t row_begin, int64_t row_end, float* out);
void nf4_dequantize_rows_bf16(const Nf4Tensor& t, int64_t row_begin, int64_t row_end,
                              uint16_t* out);
// The fp32 absmax of blocks [block_begin, block_end), reconstructed when double-quantized.
// out: [block_end - block_begin].
void nf4_tensor_absmax(const Nf4Tensor& t, int64_t block_begin, int64_t block_end, float* out);

namespace detail {
// Element range [begin, end) of a flattened NF4 tensor; 0 <= begin <= end. absmax points at the
// statistics of block begin / blocksize: absmax[(i / blocksize) - begin / blocksize] scales element
// i. out: [end - begin]. The scalar and AVX-512 versions give bit-identical results; the AVX-512
// ones may be called only when cpu_features().has_avx512_codecs().
void nf4_dequantize_range_scalar(const uint8_t* packed, const float* absmax, int64_t begin,
                                 int64_t end, int blocksize, const float* quant_map, float* out);
void nf4_dequantize_range_bf16_scalar(const uint8_t* packed, const float* absmax, int64_t begin,
                                      int64_t end, int blocksize, const float* quant_map,
                                      uint16_t* out);
void nf4_dequantize_range_avx512(const uint8_t* packed, const float* absmax, int64_t begin,
                                 int64_t end, int blocksize, const float* quant_map, float* out);
void nf4_dequantize_range_bf16_avx512(const uint8_t* packed, const float* absmax, int64_t begin,
                                      int64_t end, int blocksize, const float* quant_map,
                                      uint16_t* out);
// Dispatching versions (AVX-512 when the CPU has it, else scalar).
void nf4_dequantize_range(const uint8_t* packed, const float* absmax, int64_t begin, int64_t end,
                          int blocksize, const float* quant_map, float* out);
void nf4_dequantize_range_bf16(const uint8_t* packed, const float* absmax, int64_t begin,
                               int64_t end, int blocksize, const float* quant_map, uint16_t* out);
}  // namespace detail

}  // namespace qaft
