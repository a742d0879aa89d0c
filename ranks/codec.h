// Quantization codec for activations and gradients (no torch, no MPI).
//
// A message carries a [rows, cols] float32 matrix. Encodings:
//   32: raw float32, rows*cols*4 bytes.
//   16: bfloat16 (round to nearest even), rows*cols*2 bytes.
//    8: rows float32 scales, then rows*cols int8 values.
//    4: rows float32 scales, then per row ceil(cols/2) bytes, two signed 4-bit values per
//       byte (element 2j in the low nibble, 2j+1 in the high nibble).
// Per row: s = max|x| / (2^(b-1) - 1) (s = 0 for an all-zero row), q = round(x / s) clamped
// to [-(2^(b-1)-1), 2^(b-1)-1], x' = q * s. Stochastic rounding uses floor(x/s + u),
// u ~ U[0,1) from a counter-based generator seeded by `seed`, so it is unbiased and
// reproducible for a given seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>

namespace arceus {

class CodecError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws CodecError unless bits is 32, 16, 8 or 4.
void check_bits(int bits);

// Bytes of the encoded payload. CodecError when it, or the decoded rows * cols floats, would
// not fit in 64 bits.
size_t encoded_size(int64_t rows, int64_t cols, int bits);

// out must have encoded_size(rows, cols, bits) bytes.
void encode(const float* x, int64_t rows, int64_t cols, int bits, bool stochastic, uint64_t seed,
            uint8_t* out);

// in has encoded_size(rows, cols, bits) bytes; out has rows*cols floats.
void decode(const uint8_t* in, int64_t rows, int64_t cols, int bits, float* out);
// A received payload of in_bytes: CodecError unless in_bytes == encoded_size(rows, cols, bits),
// so that no shape, however it came, makes decode read past the buffer.
void decode(const uint8_t* in, size_t in_bytes, int64_t rows, int64_t cols, int bits, float* out);

// Largest absolute error of a deterministic round trip for a row whose max |x| is absmax:
// half a quantization step for 8/4 bits, bf16's relative 2^-8 for 16, 0 for 32.
double max_roundtrip_error(double absmax, int bits);

}  // namespace arceus
