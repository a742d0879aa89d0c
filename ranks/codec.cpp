// Quantization codec (see codec.h for the wire layout).
//
// Implementation notes:
// * Deterministic rounding is round-half-away-from-zero (std::lround semantics), computed
//   exactly with truncation + a comparison of the fractional part, so it vectorises without
//   SSE4.1 and without calling into libm.
// * Stochastic rounding is floor(x/s + u) with u = k * 2^-24, k the top 24 bits of a
//   splitmix64-style hash of (mixed seed, element index). The index is the element's position
//   in the whole matrix (row * cols + col), so the result depends only on (seed, index, x).
//   x/s + u is evaluated in double (exact for |x/s| <= 127 and |x/s| >= 2^-29), so the only
//   bias is from u's 2^-24 grid.
// * The scale of a row is s = absmax / qmax in float32 (stored as-is); values are quantized as
//   x * (1/s) when s is a normal float, else (denormal s) as x / s.
// * 8/4 bits refuse rows containing NaN/Inf (CodecError names row and column); 16 and 32 bits
//   carry them through (bf16 keeps NaN as a quiet NaN of the same sign).
#include "ranks/codec.h"

#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

namespace arceus {

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

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

// Round-half-away-from-zero of t, |t| < 2^31, exact.
inline int32_t round_half_away(float t) {
  const float a = std::fabs(t);
  const int32_t i = static_cast<int32_t>(a);           // truncation (a >= 0: floor)
  const float frac = a - static_cast<float>(i);        // exact for a < 2^24
  const int32_t r = i + (frac >= 0.5f ? 1 : 0);
  return t < 0.0f ? -r : r;
}

inline int32_t clamp_q(int32_t q, int32_t qmax) {
  q = q > qmax ? qmax : q;
  return q < -qmax ? -qmax : q;
}

// Quantizes one row of n values into q[0..n). `scale_mul` is either 1/s (divide == false) or
// s (divide == true). `idx0` is the matrix index of x[0]; `key` the mixed seed.
template <bool kStochastic, bool kDivide>
void quantize_span(const float* x, int64_t n, float scale, int32_t qmax, uint64_t key,
                   uint64_t idx0, int8_t* q) {
  for (int64_t c = 0; c < n; ++c) {
    const float t = kDivide ? x[c] / scale : x[c] * scale;
    int32_t v;
    if (kStochastic) {
      const uint64_t h = mix64(key + (idx0 + static_cast<uint64_t>(c)) * kGolden);
      const double u = static_cast<double>(h >> 40) * (1.0 / 16777216.0);  // [0, 1)
      const double d = static_cast<double>(t) + u;
      const int32_t tr = static_cast<int32_t>(d);  // truncation toward zero
      v = tr - (d < static_cast<double>(tr) ? 1 : 0);  // floor
    } else {
      v = round_half_away(t);
    }
    q[c] = static_cast<int8_t>(clamp_q(v, qmax));
  }
}

void quantize_row(const float* x, int64_t n, float s, int32_t qmax, bool stochastic, uint64_t key,
                  uint64_t idx0, int8_t* q) {
  if (s == 0.0f) {
    std::memset(q, 0, static_cast<size_t>(n));
    return;
  }
  if (s >= FLT_MIN) {
    const float inv = 1.0f / s;
    if (stochastic) quantize_span<true, false>(x, n, inv, qmax, key, idx0, q);
    else quantize_span<false, false>(x, n, inv, qmax, key, idx0, q);
  } else {
    if (stochastic) quantize_span<true, true>(x, n, s, qmax, key, idx0, q);
    else quantize_span<false, true>(x, n, s, qmax, key, idx0, q);
  }
}

// Max |x| over a row via the magnitude bits (monotone for non-negative floats); a result
// >= 0x7F800000 means the row holds Inf or NaN.
inline uint32_t row_absmax_bits(const float* x, int64_t n) {
  uint32_t m = 0;
  for (int64_t c = 0; c < n; ++c) {
    const uint32_t a = float_bits(x[c]) & 0x7FFFFFFFu;
    m = a > m ? a : m;
  }
  return m;
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
  switch (bits) {
    case 32: return r * c * 4;
    case 16: return r * c * 2;
    case 8: return r * 4 + r * c;
    default: return r * 4 + r * ((c + 1) / 2);
  }
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
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = to_bf16(x[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
    return;
  }

  const int32_t qmax = qmax_of(bits);
  const uint64_t key = mix64(seed ^ 0xA0761D6478BD642Full);
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
      uint8_t* d = dr + c0 / 2;
      const int64_t pairs = len / 2;
      for (int64_t j = 0; j < pairs; ++j) {
        d[j] = static_cast<uint8_t>((static_cast<uint8_t>(buf[2 * j]) & 0x0Fu) |
                                    (static_cast<uint8_t>(buf[2 * j + 1]) << 4));
      }
      if (len & 1) d[pairs] = static_cast<uint8_t>(buf[len - 1]) & 0x0Fu;  // high nibble 0
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
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, in + 2 * i, 2);
      out[i] = bits_float(static_cast<uint32_t>(h) << 16);
    }
    return;
  }

  const uint8_t* data = in + static_cast<size_t>(rows) * sizeof(float);
  const size_t row_bytes = bits == 8 ? static_cast<size_t>(cols) : static_cast<size_t>(cols + 1) / 2;
  for (int64_t r = 0; r < rows; ++r) {
    float s;
    std::memcpy(&s, in + static_cast<size_t>(r) * sizeof(float), sizeof s);
    const uint8_t* dr = data + static_cast<size_t>(r) * row_bytes;
    float* o = out + r * cols;
    if (bits == 8) {
      const int8_t* q = reinterpret_cast<const int8_t*>(dr);
      for (int64_t c = 0; c < cols; ++c) o[c] = static_cast<float>(q[c]) * s;
      continue;
    }
    const int64_t pairs = cols / 2;
    for (int64_t j = 0; j < pairs; ++j) {
      const uint8_t b = dr[j];
      const int32_t lo = static_cast<int8_t>(static_cast<uint8_t>(b << 4)) >> 4;
      const int32_t hi = static_cast<int8_t>(b) >> 4;
      o[2 * j] = static_cast<float>(lo) * s;
      o[2 * j + 1] = static_cast<float>(hi) * s;
    }
    if (cols & 1) {
      const int32_t lo = static_cast<int8_t>(static_cast<uint8_t>(dr[pairs] << 4)) >> 4;
      o[cols - 1] = static_cast<float>(lo) * s;
    }
  }
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
