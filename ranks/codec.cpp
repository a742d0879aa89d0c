// Quantization codec (see codec.h for the wire layout).
//
// Implementation notes:
// * Deterministic rounding is round-half-away-from-zero (std::lround semantics), computed as
//   trunc(t + copysign(0.49999997f, t)), exact for |t| <= 128, so it vectorises without SSE4.1
//   and without calling into libm.
// * Stochastic rounding is floor(x/s + u) with u = k * 2^-24, k the top 24 bits of a
//   counter-based hash of the element index keyed by splitmix64(seed) (two rounds of a
//   32-bit integer hash, so it vectorises). The index is the element's position in the whole
//   matrix (row * cols + col), so the result depends only on (seed, index, x). It is computed
//   as floor(t) + (u >= 1 - frac(t)), which is exact for |t| >= 1; the bias is below 2^-23 of
//   a step (u's grid, and rounding of 1 - frac for |t| < 1).
// * t = x/s is clamped to [-qmax, qmax] before rounding (it can exceed qmax by an ulp).
// * The scale of a row is s = absmax / qmax in float32 (stored as-is); values are quantized as
//   x * (1/s) when s is a normal float, else (denormal s) as x / s.
// * 8/4 bits refuse rows containing NaN/Inf (CodecError names row and column); 16 and 32 bits
//   carry them through (bf16 keeps NaN as a quiet NaN of the same sign).
#include "ranks/codec.h"

#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "common/splitmix.h"

namespace arceus {

namespace {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void check_dims(int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0) {
    throw CodecError("[codec] bad matrix shape [" + std::to_string(rows) + ", " +
                     std::to_string(cols) + "] (rows and cols must be >= 0)");
  }
}

// Two rounds of a 32-bit integer hash ("lowbias32", Wellons) keyed by k1, k2: a bijection of
// the element's low index bits for a fixed key, cheap enough to vectorise (32-bit multiplies).
inline uint32_t hash32(uint32_t x, uint32_t k1, uint32_t k2) {
  x ^= k1;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  x += k2;
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Hot loops are compiled twice on x86-64 ELF targets with GCC/Clang: an AVX2 clone picked at
// load time (ifunc) when the CPU has it, and the baseline (SSE2) version otherwise. Define
// ARCEUS_CODEC_PORTABLE to build the baseline only.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__ELF__) && !defined(ARCEUS_CODEC_PORTABLE)
#define ARCEUS_HOT __attribute__((target_clones("avx2", "default")))
#else
#define ARCEUS_HOT
#endif
#if defined(__GNUC__)
#define ARCEUS_INLINE inline __attribute__((always_inline))
#else
#define ARCEUS_INLINE inline
#endif

// Quantizes n values into q[0..n). `scale` is 1/s (kDivide == false) or s (kDivide == true);
// qf = qmax as float. `lo0` is the low 32 bits of x[0]'s matrix index (the caller never lets a
// span cross a 2^32 boundary and folds the high bits into k1/k2).
// Every step is branch-free float/int32 arithmetic so the loop vectorises even with SSE2.
template <bool kStochastic, bool kDivide>
ARCEUS_INLINE void quantize_span(const float* __restrict x, int64_t n, float scale, float qf,
                                 uint32_t k1, uint32_t k2, uint32_t lo0, int8_t* __restrict q) {
  // The hash input gets its own 32-bit induction variable: derived from the 64-bit `c`, GCC
  // vectorised it as 64-bit lanes narrowed every iteration (about 15% slower with AVX2).
  uint32_t idx = lo0;
  for (int64_t c = 0; c < n; ++c, ++idx) {
    float t = kDivide ? x[c] / scale : x[c] * scale;
    t = t < -qf ? -qf : t;  // |t| may exceed qmax by an ulp or two; clamp so no q leaves range
    t = t > qf ? qf : t;
    int32_t v;
    if (kStochastic) {
      // floor(t + u) = floor(t) + (u >= 1 - frac(t)), u = k * 2^-24 with k from the hash.
      const uint32_t h = hash32(idx, k1, k2);
      const float u = static_cast<float>(static_cast<int32_t>(h >> 8)) * (1.0f / 16777216.0f);
      const int32_t tr = static_cast<int32_t>(t);                     // toward zero
      const int32_t fl = tr - (t < static_cast<float>(tr) ? 1 : 0);  // floor
      const float frac = t - static_cast<float>(fl);                  // [0, 1)
      v = fl + (u >= 1.0f - frac ? 1 : 0);
    } else {
      // Round half away from zero: trunc(t + copysign(0.5 - 2^-25, t)). Adding the largest
      // float below 0.5 (not 0.5 itself, which turns 0.49999997 into 1) matches std::lround for
      // every float with |t| <= 128 (checked exhaustively).
      v = static_cast<int32_t>(t + std::copysign(0.49999997f, t));
    }
    q[c] = static_cast<int8_t>(v);
  }
}

ARCEUS_HOT void quantize_det_mul(const float* x, int64_t n, float inv, float qf, int8_t* q) {
  quantize_span<false, false>(x, n, inv, qf, 0, 0, 0, q);
}
ARCEUS_HOT void quantize_det_div(const float* x, int64_t n, float s, float qf, int8_t* q) {
  quantize_span<false, true>(x, n, s, qf, 0, 0, 0, q);
}
ARCEUS_HOT void quantize_sto_mul(const float* x, int64_t n, float inv, float qf, uint32_t k1,
                                 uint32_t k2, uint32_t lo0, int8_t* q) {
  quantize_span<true, false>(x, n, inv, qf, k1, k2, lo0, q);
}
ARCEUS_HOT void quantize_sto_div(const float* x, int64_t n, float s, float qf, uint32_t k1,
                                 uint32_t k2, uint32_t lo0, int8_t* q) {
  quantize_span<true, true>(x, n, s, qf, k1, k2, lo0, q);
}

// x / s is computed as x * (1/s) unless s is denormal (then 1/s could overflow).
void quantize_det(const float* x, int64_t n, float s, float qf, int8_t* q) {
  if (s >= FLT_MIN) quantize_det_mul(x, n, 1.0f / s, qf, q);
  else quantize_det_div(x, n, s, qf, q);
}
void quantize_sto(const float* x, int64_t n, float s, float qf, uint32_t k1, uint32_t k2,
                  uint32_t lo0, int8_t* q) {
  if (s >= FLT_MIN) quantize_sto_mul(x, n, 1.0f / s, qf, k1, k2, lo0, q);
  else quantize_sto_div(x, n, s, qf, k1, k2, lo0, q);
}

// One row (or part of one) whose first element has matrix index idx0.
void quantize_row(const float* x, int64_t n, float s, int32_t qmax, bool stochastic, uint64_t key,
                  uint64_t idx0, int8_t* q) {
  if (s == 0.0f) {
    std::memset(q, 0, static_cast<size_t>(n));
    return;
  }
  const float qf = static_cast<float>(qmax);
  if (!stochastic) {
    quantize_det(x, n, s, qf, q);
    return;
  }
  while (n > 0) {  // split at 2^32 index boundaries; the high index bits select the keys
    const uint64_t hk = splitmix64_mix(key + (idx0 >> 32) * kSplitmixGamma);
    const uint32_t lo0 = static_cast<uint32_t>(idx0);
    const uint64_t room = (uint64_t{1} << 32) - lo0;
    const int64_t len = static_cast<uint64_t>(n) < room ? n : static_cast<int64_t>(room);
    quantize_sto(x, len, s, qf, static_cast<uint32_t>(hk), static_cast<uint32_t>(hk >> 32), lo0, q);
    x += len;
    q += len;
    n -= len;
    idx0 += static_cast<uint64_t>(len);
  }
}

// Max |x| over a row via the magnitude bits (monotone for non-negative floats, and they fit
// int32 so SSE2's signed compares apply); a result >= 0x7F800000 means Inf or NaN in the row.
// 16 independent lanes so the reduction is not one serial dependency chain.
ARCEUS_HOT uint32_t row_absmax_bits(const float* x, int64_t n) {
  constexpr int64_t kLanes = 16;
  int32_t acc[kLanes] = {};
  int64_t c = 0;
  for (; c + kLanes <= n; c += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) {
      const int32_t a = static_cast<int32_t>(float_bits(x[c + k]) & 0x7FFFFFFFu);
      acc[k] = a > acc[k] ? a : acc[k];
    }
  }
  int32_t m = 0;
  for (; c < n; ++c) {
    const int32_t a = static_cast<int32_t>(float_bits(x[c]) & 0x7FFFFFFFu);
    m = a > m ? a : m;
  }
  for (int64_t k = 0; k < kLanes; ++k) m = acc[k] > m ? acc[k] : m;
  return static_cast<uint32_t>(m);
}

[[noreturn]] void throw_non_finite(const float* x, int64_t row, int64_t cols, int bits) {
  int64_t col = 0;
  while (col < cols && std::isfinite(x[col])) ++col;
  const float v = col < cols ? x[col] : 0.0f;
  throw CodecError("[codec] row " + std::to_string(row) + " has a non-finite value (" +
                   (std::isnan(v) ? std::string("NaN") : std::string(v > 0 ? "+Inf" : "-Inf")) +
                   " at column " + std::to_string(col) + "); cannot quantize to " +
                   std::to_string(bits) + " bits (diverged training?)");
}

inline uint16_t to_bf16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t rne = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x0040u;  // keep sign and top payload, force quiet
  const bool is_nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  return static_cast<uint16_t>(is_nan ? nan : rne);
}

ARCEUS_HOT void encode_bf16(const float* __restrict x, size_t n, uint8_t* __restrict out) {
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = to_bf16(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

ARCEUS_HOT void decode_bf16(const uint8_t* __restrict in, size_t n, float* __restrict out) {
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    out[i] = bits_float(static_cast<uint32_t>(h) << 16);
  }
}

// Packs q[0..len) two per byte, element 2j in the low nibble; an odd tail leaves the high
// nibble 0.
ARCEUS_HOT void pack4(const int8_t* __restrict q, int64_t len, uint8_t* __restrict d) {
  const int64_t pairs = len / 2;
  for (int64_t j = 0; j < pairs; ++j) {
    d[j] = static_cast<uint8_t>((static_cast<uint8_t>(q[2 * j]) & 0x0Fu) |
                                (static_cast<uint8_t>(q[2 * j + 1]) << 4));
  }
  if (len & 1) d[pairs] = static_cast<uint8_t>(q[len - 1]) & 0x0Fu;
}

ARCEUS_HOT void dequant8_row(const int8_t* __restrict q, int64_t cols, float s,
                             float* __restrict o) {
  for (int64_t c = 0; c < cols; ++c) o[c] = static_cast<float>(q[c]) * s;
}

// Sign-extends the nibbles: low = (int8)(b << 4) >> 4, high = (int8)b >> 4.
ARCEUS_HOT void dequant4_row(const uint8_t* __restrict d, int64_t cols, float s,
                             float* __restrict o) {
  const int64_t pairs = cols / 2;
  for (int64_t j = 0; j < pairs; ++j) {
    const uint8_t b = d[j];
    const int32_t lo = static_cast<int8_t>(static_cast<uint8_t>(b << 4)) >> 4;
    const int32_t hi = static_cast<int8_t>(b) >> 4;
    o[2 * j] = static_cast<float>(lo) * s;
    o[2 * j + 1] = static_cast<float>(hi) * s;
  }
  if (cols & 1) {
    const int32_t lo = static_cast<int8_t>(static_cast<uint8_t>(d[pairs] << 4)) >> 4;
    o[cols - 1] = static_cast<float>(lo) * s;
  }
}

inline int32_t qmax_of(int bits) { return (1 << (bits - 1)) - 1; }

constexpr int64_t kChunk = 1024;  // 4-bit: elements quantized per stack buffer

}  // namespace

void check_bits(int bits) {
  if (bits != 32 && bits != 16 && bits != 8 && bits != 4) {
    throw CodecError("[codec] bits must be one of 32, 16, 8, 4 (got " + std::to_string(bits) +
                     ")");
  }
}

size_t encoded_size(int64_t rows, int64_t cols, int bits) {
  check_bits(bits);
  check_dims(rows, cols);
  const size_t r = static_cast<size_t>(rows), c = static_cast<size_t>(cols);
  // The decoded floats must be addressable too (rows * cols * 4 bytes), whatever the encoding.
  size_t floats = 0, size = 0;
  bool overflow = __builtin_mul_overflow(r, c, &floats) || __builtin_mul_overflow(floats, sizeof(float), &floats);
  if (!overflow) {
    switch (bits) {
      case 32: size = floats; break;
      case 16: size = floats / 2; break;
      case 8: overflow = __builtin_mul_overflow(r, 4 + c, &size); break;  // scales, then int8 values
      default: overflow = __builtin_mul_overflow(r, 4 + (c + 1) / 2, &size); break;
    }
  }
  if (overflow) {
    throw CodecError("[codec] matrix shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "] at " +
                     std::to_string(bits) + " bits is too large: its size in bytes overflows 64 bits");
  }
  return size;
}

void encode(const float* x, int64_t rows, int64_t cols, int bits, bool stochastic, uint64_t seed,
            uint8_t* out) {
  check_bits(bits);
  check_dims(rows, cols);
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  if (bits == 32) {
    if (n) std::memcpy(out, x, n * sizeof(float));
    return;
  }
  if (bits == 16) {
    encode_bf16(x, n, out);
    return;
  }

  const int32_t qmax = qmax_of(bits);
  const uint64_t key = splitmix64_mix(seed ^ 0xA0761D6478BD642Full);
  uint8_t* data = out + static_cast<size_t>(rows) * sizeof(float);
  const size_t row_bytes = bits == 8 ? static_cast<size_t>(cols) : static_cast<size_t>(cols + 1) / 2;
  int8_t buf[kChunk];

  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    const uint32_t mb = row_absmax_bits(xr, cols);
    if (mb >= 0x7F800000u) throw_non_finite(xr, r, cols, bits);
    const float s = bits_float(mb) / static_cast<float>(qmax);
    std::memcpy(out + static_cast<size_t>(r) * sizeof(float), &s, sizeof s);
    uint8_t* dr = data + static_cast<size_t>(r) * row_bytes;
    const uint64_t idx0 = static_cast<uint64_t>(r) * static_cast<uint64_t>(cols);

    if (bits == 8) {
      quantize_row(xr, cols, s, qmax, stochastic, key, idx0, reinterpret_cast<int8_t*>(dr));
      continue;
    }
    // 4 bits: quantize an even-sized chunk into buf, then pack pairs (low nibble first).
    for (int64_t c0 = 0; c0 < cols; c0 += kChunk) {
      const int64_t len = cols - c0 < kChunk ? cols - c0 : kChunk;
      quantize_row(xr + c0, len, s, qmax, stochastic, key, idx0 + static_cast<uint64_t>(c0), buf);
      pack4(buf, len, dr + c0 / 2);  // kChunk is even, so chunks start on a byte
    }
  }
}

void decode(const uint8_t* in, int64_t rows, int64_t cols, int bits, float* out) {
  check_bits(bits);
  check_dims(rows, cols);
  const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  if (bits == 32) {
    if (n) std::memcpy(out, in, n * sizeof(float));
    return;
  }
  if (bits == 16) {
    decode_bf16(in, n, out);
    return;
  }

  const uint8_t* data = in + static_cast<size_t>(rows) * sizeof(float);
  const size_t row_bytes = bits == 8 ? static_cast<size_t>(cols) : static_cast<size_t>(cols + 1) / 2;
  for (int64_t r = 0; r < rows; ++r) {
    float s;
    std::memcpy(&s, in + static_cast<size_t>(r) * sizeof(float), sizeof s);
    const uint8_t* dr = data + static_cast<size_t>(r) * row_bytes;
    float* o = out + r * cols;
    if (bits == 8) dequant8_row(reinterpret_cast<const int8_t*>(dr), cols, s, o);
    else dequant4_row(dr, cols, s, o);
  }
}

void decode(const uint8_t* in, size_t in_bytes, int64_t rows, int64_t cols, int bits, float* out) {
  const size_t need = encoded_size(rows, cols, bits);
  if (in_bytes != need) {
    throw CodecError("[codec] payload of " + std::to_string(in_bytes) + " bytes for a [" + std::to_string(rows) +
                     ", " + std::to_string(cols) + "] matrix at " + std::to_string(bits) + " bits, which takes " +
                     std::to_string(need));
  }
  decode(in, rows, cols, bits, out);
}

double max_roundtrip_error(double absmax, int bits) {
  check_bits(bits);
  if (!(absmax >= 0.0)) {
    throw CodecError("[codec] max_roundtrip_error: absmax must be >= 0 (got " +
                     std::to_string(absmax) + ")");
  }
  switch (bits) {
    case 32: return 0.0;
    case 16: return absmax * (1.0 / 256.0);
    default: return absmax / static_cast<double>(qmax_of(bits)) / 2.0;
  }
}

}  // namespace arceus
