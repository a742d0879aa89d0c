// Quantization codec: layout, error bounds, rounding modes, errors.
#include "ranks/codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace arceus {
namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (float& v : x) v = dist(gen);
  return x;
}

std::vector<uint8_t> enc(const std::vector<float>& x, int64_t rows, int64_t cols, int bits,
                         bool stochastic = false, uint64_t seed = 0) {
  std::vector<uint8_t> out(encoded_size(rows, cols, bits));
  encode(x.data(), rows, cols, bits, stochastic, seed, out.data());
  return out;
}

std::vector<float> dec(const std::vector<uint8_t>& in, int64_t rows, int64_t cols, int bits) {
  std::vector<float> out(static_cast<size_t>(rows * cols));
  decode(in.data(), rows, cols, bits, out.data());
  return out;
}

float row_absmax(const std::vector<float>& x, int64_t r, int64_t cols) {
  float m = 0.0f;
  for (int64_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(x[static_cast<size_t>(r * cols + c)]));
  return m;
}

std::string hex(const std::vector<uint8_t>& b) {
  static const char* d = "0123456789ABCDEF";
  std::string s;
  for (uint8_t v : b) {
    s += d[v >> 4];
    s += d[v & 15];
    s += ' ';
  }
  return s;
}

// Matrix with the awkward rows: all zeros, one huge value, a single nonzero, tiny values.
std::vector<float> awkward_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> x = random_matrix(rows, cols, seed);
  auto row = [&](int64_t r) { return x.data() + r * cols; };
  if (rows > 1) std::fill(row(1), row(1) + cols, 0.0f);
  if (rows > 2) row(2)[cols / 2] = 1.0e6f;
  if (rows > 3) {
    std::fill(row(3), row(3) + cols, 0.0f);
    row(3)[cols - 1] = -3.0f;
  }
  if (rows > 4) for (int64_t c = 0; c < cols; ++c) row(4)[c] *= 1.0e-30f;
  if (rows > 5) for (int64_t c = 0; c < cols; ++c) row(5)[c] = 5.0f;  // constant row
  return x;
}

// Deterministic round trip stays within max_roundtrip_error of each row (plus float slack).
void check_roundtrip(int bits, int64_t rows, int64_t cols, uint32_t seed, bool stochastic) {
  const std::vector<float> x = awkward_matrix(rows, cols, seed);
  const std::vector<float> y = dec(enc(x, rows, cols, bits, stochastic, seed), rows, cols, bits);
  for (int64_t r = 0; r < rows; ++r) {
    const double absmax = row_absmax(x, r, cols);
    double bound = max_roundtrip_error(absmax, bits);
    if (stochastic) bound *= 2.0;  // stochastic rounding may move a whole step
    const double tol = bound + absmax * 1e-6;
    double worst = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
      const size_t i = static_cast<size_t>(r * cols + c);
      const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
      worst = std::max(worst, err);
      if (err > tol) {
        ADD_FAILURE() << "bits=" << bits << " stochastic=" << stochastic << " shape=[" << rows
                      << "," << cols << "] row " << r << " col " << c << ": reference " << x[i]
                      << ", actual " << y[i] << ", error " << err << " > bound " << tol;
        return;
      }
    }
    if (absmax == 0.0) {
      EXPECT_EQ(worst, 0.0) << "zero row " << r << " must decode to zeros";
    }
  }
}

TEST(CodecRoundTrip, EightBitWithinBound) {
  for (int64_t cols : {1, 2, 7, 64, 1000}) check_roundtrip(8, 6, cols, 11 + static_cast<uint32_t>(cols), false);
}

TEST(CodecRoundTrip, FourBitWithinBoundIncludingOddCols) {
  for (int64_t cols : {1, 2, 3, 7, 33, 1025, 2049}) check_roundtrip(4, 6, cols, 21 + static_cast<uint32_t>(cols), false);
}

TEST(CodecRoundTrip, StochasticWithinOneStep) {
  for (int bits : {8, 4})
    for (int64_t cols : {1, 5, 1001}) check_roundtrip(bits, 6, cols, 31 + static_cast<uint32_t>(cols), true);
}

TEST(CodecRoundTrip, Bf16WithinBound) {
  for (int64_t cols : {1, 3, 500}) check_roundtrip(16, 6, cols, 41 + static_cast<uint32_t>(cols), false);
}

TEST(CodecRoundTrip, Float32IsExactBitForBit) {
  std::vector<float> x = random_matrix(4, 9, 5);
  x[0] = std::numeric_limits<float>::quiet_NaN();
  x[1] = -std::numeric_limits<float>::infinity();
  x[2] = std::numeric_limits<float>::denorm_min();
  x[3] = -0.0f;
  const std::vector<uint8_t> e = enc(x, 4, 9, 32);
  ASSERT_EQ(e.size(), x.size() * 4);
  EXPECT_EQ(std::memcmp(e.data(), x.data(), e.size()), 0);
  const std::vector<float> y = dec(e, 4, 9, 32);
  EXPECT_EQ(std::memcmp(y.data(), x.data(), e.size()), 0);
}

TEST(CodecRoundTrip, DenormalScaleRow) {
  // absmax/127 is a denormal float: exercises the division path.
  std::vector<float> x = {1.0e-38f, -5.0e-39f, 2.5e-39f, 0.0f};
  const std::vector<float> y = dec(enc(x, 1, 4, 8), 1, 4, 8);
  const double bound = max_roundtrip_error(1.0e-38, 8) + 1.0e-42;
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], bound) << "element " << i;
}

TEST(CodecRoundTrip, EmptyMatrices) {
  for (int bits : {32, 16, 8, 4}) {
    EXPECT_EQ(encoded_size(0, 5, bits), 0u);
    std::vector<uint8_t> e = enc({}, 0, 5, bits);
    EXPECT_TRUE(e.empty());
    // rows with zero columns still carry their scales
    std::vector<uint8_t> e2(encoded_size(3, 0, bits), 0xAB);
    encode(nullptr, 3, 0, bits, false, 0, e2.data());
  }
}

TEST(CodecSize, EncodedSizes) {
  EXPECT_EQ(encoded_size(3, 5, 32), 60u);
  EXPECT_EQ(encoded_size(3, 5, 16), 30u);
  EXPECT_EQ(encoded_size(3, 5, 8), 12u + 15u);
  EXPECT_EQ(encoded_size(3, 5, 4), 12u + 9u);
  EXPECT_EQ(encoded_size(3, 4, 4), 12u + 6u);
  EXPECT_EQ(encoded_size(1, 1, 4), 4u + 1u);
  EXPECT_EQ(encoded_size(256, 1024, 32), 1048576u);
  EXPECT_EQ(encoded_size(256, 1024, 16), 524288u);
  EXPECT_EQ(encoded_size(256, 1024, 8), 1024u + 262144u);
  EXPECT_EQ(encoded_size(256, 1024, 4), 1024u + 131072u);
  EXPECT_THROW(encoded_size(-1, 4, 8), CodecError);
}

TEST(CodecSize, ShapesWhoseSizeOverflowsAreErrors) {
  const int64_t big = int64_t{1} << 62;
  for (int bits : {32, 16, 8, 4}) {
    SCOPED_TRACE(bits);
    EXPECT_THROW(encoded_size(big, 4, bits), CodecError);      // the bytes wrap to 0 unchecked
    EXPECT_THROW(encoded_size(1 << 20, big, bits), CodecError);
  }
  EXPECT_THROW(encoded_size(big, 0, 8), CodecError);  // no values, but 2^64 bytes of scales
  EXPECT_EQ(encoded_size(0, big, 8), 0u);
  try {
    encoded_size(big, 4, 8);
  } catch (const CodecError& e) {
    EXPECT_STREQ(e.what(), "[codec] matrix shape [4611686018427387904, 4] at 8 bits is too large: its size in bytes "
                           "overflows 64 bits");
  }
}

TEST(CodecSize, DecodeOfAReceivedPayloadChecksItsSize) {
  const std::vector<uint8_t> payload(encoded_size(2, 3, 8), 0);
  std::vector<float> out(6);
  EXPECT_NO_THROW(decode(payload.data(), payload.size(), 2, 3, 8, out.data()));
  try {
    decode(payload.data(), payload.size() - 1, 2, 3, 8, out.data());
    ADD_FAILURE() << "a short payload was decoded";
  } catch (const CodecError& e) {
    EXPECT_STREQ(e.what(), "[codec] payload of 13 bytes for a [2, 3] matrix at 8 bits, which takes 14");
  }
  EXPECT_THROW(decode(payload.data(), payload.size(), int64_t{1} << 62, 4, 8, out.data()), CodecError);
}

TEST(CodecLayout, FourBitPackingHandWorked) {
  // Row 0: absmax 7 -> s = 1; q = 7, -7, 4 (3.5 rounds away from zero), -1, 0.
  // Row 1: absmax 14 -> s = 2; x/s = -1.25, 0.245, 0.7, 7, -1.5 -> q = -1, 0, 1, 7, -2.
  const std::vector<float> x = {7.0f, -7.0f, 3.5f, -1.0f, 0.0f,   //
                                -2.5f, 0.49f, 1.4f, 14.0f, -3.0f};
  const std::vector<uint8_t> e = enc(x, 2, 5, 4);
  const std::vector<uint8_t> want = {
      0x00, 0x00, 0x80, 0x3F,  // scale row 0: 1.0f (little-endian)
      0x00, 0x00, 0x00, 0x40,  // scale row 1: 2.0f
      0x97, 0xF4, 0x00,        // (7 | -7<<4), (4 | -1<<4), (0 | pad)
      0x0F, 0x71, 0x0E,        // (-1 | 0<<4), (1 | 7<<4), (-2 | pad)
  };
  EXPECT_EQ(hex(e), hex(want));
  const std::vector<float> y = dec(e, 2, 5, 4);
  const std::vector<float> ywant = {7, -7, 4, -1, 0, -2, 0, 2, 14, -4};
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], ywant[i]) << "element " << i;
}

TEST(CodecLayout, FourBitDecodesMinusEightNibble) {
  // -8 is never produced by encode but a 0x8 nibble must still sign-extend.
  std::vector<uint8_t> e = {0x00, 0x00, 0x80, 0x3F, 0x78};
  const std::vector<float> y = dec(e, 1, 2, 4);
  EXPECT_EQ(y[0], -8.0f);
  EXPECT_EQ(y[1], 7.0f);
}

TEST(CodecLayout, EightBitHandWorked) {
  // absmax 127 -> s = 1; -63.5 rounds away from zero to -64; 0.4 -> 0; -0.5 -> -1.
  const std::vector<float> x = {127.0f, -63.5f, 0.4f, -0.5f};
  const std::vector<uint8_t> e = enc(x, 1, 4, 8);
  EXPECT_EQ(hex(e), hex({0x00, 0x00, 0x80, 0x3F, 0x7F, 0xC0, 0x00, 0xFF}));
}

TEST(CodecLayout, RoundHalfAwayFromZero) {
  const std::vector<float> x = {7.0f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 0.49999997f};
  const std::vector<float> y = dec(enc(x, 1, 8, 4), 1, 8, 4);
  const std::vector<float> want = {7, 1, -1, 2, -2, 3, -3, 0};
  for (size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], want[i]) << "x = " << x[i];
}

TEST(CodecLayout, Bf16RoundToNearestEvenAndSpecials) {
  const float one = 1.0f;
  const float half_ulp = std::ldexp(1.0f, -8);  // bf16 ulp at 1 is 2^-7
  const std::vector<float> x = {
      one + half_ulp,                       // tie -> even (1.0)
      one + 3 * half_ulp,                   // tie -> even (1 + 2^-6)
      one + half_ulp + std::ldexp(1.0f, -20),  // just above tie -> up
      -(one + half_ulp),
      std::numeric_limits<float>::infinity(),
      -std::numeric_limits<float>::infinity(),
      std::numeric_limits<float>::quiet_NaN(),
      -std::numeric_limits<float>::quiet_NaN(),
  };
  const std::vector<uint8_t> e = enc(x, 1, 8, 16);
  const std::vector<float> y = dec(e, 1, 8, 16);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], one + std::ldexp(1.0f, -6));
  EXPECT_EQ(y[2], one + std::ldexp(1.0f, -7));
  EXPECT_EQ(y[3], -1.0f);
  EXPECT_EQ(y[4], std::numeric_limits<float>::infinity());
  EXPECT_EQ(y[5], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(y[6]));
  EXPECT_TRUE(std::isnan(y[7]));
  EXPECT_FALSE(std::signbit(y[6]));
  EXPECT_TRUE(std::signbit(y[7]));
  // 1.0f encodes as 0x3F80, little-endian.
  const std::vector<uint8_t> e1 = enc({1.0f}, 1, 1, 16);
  EXPECT_EQ(hex(e1), hex({0x80, 0x3F}));
}

TEST(CodecLayout, Bf16NanWithLowPayloadStaysNan) {
  // A NaN whose payload sits only in the low 16 bits would truncate to Inf without care.
  uint32_t bits = 0x7F800001u;
  float nan;
  std::memcpy(&nan, &bits, 4);
  const std::vector<float> y = dec(enc({nan}, 1, 1, 16), 1, 1, 16);
  EXPECT_TRUE(std::isnan(y[0]));
}

// Mean of stochastic encodings of a constant: expected value is the value itself.
void check_unbiased(int bits, float value, float absmax_elem) {
  const int64_t cols = 4097;  // element 0 fixes the scale, the rest hold `value`
  std::vector<float> x(cols, value);
  x[0] = absmax_elem;
  const int seeds = 64;
  double sum = 0.0;
  for (int s = 0; s < seeds; ++s) {
    const std::vector<float> y = dec(enc(x, 1, cols, bits, true, 1000 + s), 1, cols, bits);
    for (int64_t c = 1; c < cols; ++c) sum += y[static_cast<size_t>(c)];
  }
  const double n = static_cast<double>(seeds) * (cols - 1);
  const double mean = sum / n;
  // Each sample is one of the two neighbouring grid points, step s: variance <= s^2 / 4.
  const double step = absmax_elem / ((1 << (bits - 1)) - 1);
  const double tol = 5.0 * std::sqrt(step * step / 4.0 / n);
  EXPECT_NEAR(mean, value, tol) << "bits=" << bits << " reference " << value << ", actual mean "
                                << mean << ", error " << std::fabs(mean - value) << ", samples " << n;
}

TEST(CodecStochastic, UnbiasedMean) {
  check_unbiased(4, 2.3f, 7.0f);
  check_unbiased(4, -2.3f, 7.0f);
  check_unbiased(4, 0.05f, 7.0f);
  check_unbiased(8, 10.7f, 127.0f);
  check_unbiased(8, -0.61f, 127.0f);
}

TEST(CodecStochastic, UnbiasedPerElementAcrossSeeds) {
  // The same element index over many seeds also averages to the value.
  const std::vector<float> x = {7.0f, 1.25f, -3.6f};
  const int seeds = 20000;
  double s1 = 0.0, s2 = 0.0;
  for (int s = 0; s < seeds; ++s) {
    const std::vector<float> y = dec(enc(x, 1, 3, 4, true, static_cast<uint64_t>(s)), 1, 3, 4);
    s1 += y[1];
    s2 += y[2];
  }
  const double tol = 5.0 * std::sqrt(0.25 / seeds);
  EXPECT_NEAR(s1 / seeds, 1.25, tol);
  EXPECT_NEAR(s2 / seeds, -3.6, tol);
}

TEST(CodecStochastic, ExactGridValuesStayExact) {
  // x/s an integer: floor(q + u) = q for every u.
  const std::vector<float> x = {7.0f, 3.0f, -2.0f, 0.0f, -7.0f};
  for (uint64_t seed : {0ull, 1ull, 99ull}) {
    const std::vector<float> y = dec(enc(x, 1, 5, 4, true, seed), 1, 5, 4);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], x[i]) << "seed " << seed;
  }
}

TEST(CodecStochastic, ReproducibleForSeedDifferentAcrossSeeds) {
  const int64_t rows = 8, cols = 301;
  const std::vector<float> x = random_matrix(rows, cols, 7);
  for (int bits : {8, 4}) {
    const auto a = enc(x, rows, cols, bits, true, 42);
    const auto b = enc(x, rows, cols, bits, true, 42);
    const auto c = enc(x, rows, cols, bits, true, 43);
    EXPECT_EQ(a, b) << "bits=" << bits;
    EXPECT_NE(a, c) << "bits=" << bits;
    EXPECT_NE(a, enc(x, rows, cols, bits, false, 42)) << "bits=" << bits;
    // Deterministic rounding ignores the seed.
    EXPECT_EQ(enc(x, rows, cols, bits, false, 1), enc(x, rows, cols, bits, false, 2));
  }
}

TEST(CodecStochastic, DependsOnlyOnSeedAndIndex) {
  // Changing one element (without changing the row's scale) changes only that element.
  const int64_t rows = 3, cols = 64;
  std::vector<float> x = random_matrix(rows, cols, 9);
  for (int64_t r = 0; r < rows; ++r) x[static_cast<size_t>(r * cols)] = 10.0f;  // fixes absmax
  std::vector<float> x2 = x;
  x2[5] = 0.123f;
  const auto a = dec(enc(x, rows, cols, 8, true, 5), rows, cols, 8);
  const auto b = dec(enc(x2, rows, cols, 8, true, 5), rows, cols, 8);
  for (size_t i = 0; i < a.size(); ++i) {
    if (i != 5) {
      EXPECT_EQ(a[i], b[i]) << "element " << i;
    }
  }
}

TEST(CodecStochastic, IdenticalRowsRoundIndependently) {
  // The counter is the matrix index, not the column: equal rows get different noise, and a
  // row's encoding depends on where it sits in the matrix.
  const int64_t rows = 4, cols = 257;
  std::vector<float> one = random_matrix(1, cols, 13);
  std::vector<float> x;
  for (int64_t r = 0; r < rows; ++r) x.insert(x.end(), one.begin(), one.end());
  for (int bits : {8, 4}) {
    const std::vector<uint8_t> e = enc(x, rows, cols, bits, true, 77);
    const size_t row_bytes = (e.size() - rows * 4) / rows;
    const uint8_t* d = e.data() + rows * 4;
    for (int64_t r = 1; r < rows; ++r) {
      EXPECT_NE(std::memcmp(d, d + r * row_bytes, row_bytes), 0) << "bits=" << bits << " row " << r;
    }
    const std::vector<uint8_t> alone = enc(one, 1, cols, bits, true, 77);
    EXPECT_EQ(std::memcmp(alone.data() + 4, d, row_bytes), 0) << "row 0 = the matrix alone";
  }
}

TEST(CodecErrors, BadBitsThrowNamingValueAndAllowedSet) {
  float x[2] = {1.0f, 2.0f};
  uint8_t buf[16];
  for (int bits : {0, 1, 2, 7, 12, 24, 64, -8}) {
    try {
      check_bits(bits);
      ADD_FAILURE() << "bits=" << bits << " accepted";
    } catch (const CodecError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("got " + std::to_string(bits)), std::string::npos) << m;
      EXPECT_NE(m.find("32, 16, 8, 4"), std::string::npos) << m;
    }
    EXPECT_THROW(encoded_size(1, 2, bits), CodecError);
    EXPECT_THROW(encode(x, 1, 2, bits, false, 0, buf), CodecError);
    EXPECT_THROW(decode(buf, 1, 2, bits, x), CodecError);
    EXPECT_THROW(max_roundtrip_error(1.0, bits), CodecError);
  }
  for (int bits : {32, 16, 8, 4}) EXPECT_NO_THROW(check_bits(bits));
}

TEST(CodecErrors, NonFiniteRowThrowsNamingTheRow) {
  const int64_t rows = 4, cols = 8;
  for (int bits : {8, 4}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      std::vector<float> x = random_matrix(rows, cols, 3);
      x[2 * cols + 5] = bad;
      std::vector<uint8_t> out(encoded_size(rows, cols, bits));
      for (bool stochastic : {false, true}) {
        try {
          encode(x.data(), rows, cols, bits, stochastic, 1, out.data());
          ADD_FAILURE() << "bits=" << bits << " accepted " << bad;
        } catch (const CodecError& e) {
          const std::string m = e.what();
          EXPECT_NE(m.find("row 2"), std::string::npos) << m;
          EXPECT_NE(m.find("column 5"), std::string::npos) << m;
        }
      }
    }
  }
  // 32 and 16 bits carry non-finite values through.
  std::vector<float> x = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_TRUE(std::isnan(dec(enc(x, 1, 2, 32), 1, 2, 32)[1]));
  EXPECT_TRUE(std::isnan(dec(enc(x, 1, 2, 16), 1, 2, 16)[1]));
}

TEST(CodecBound, MaxRoundtripErrorValues) {
  EXPECT_DOUBLE_EQ(max_roundtrip_error(127.0, 8), 0.5);
  EXPECT_DOUBLE_EQ(max_roundtrip_error(7.0, 4), 0.5);
  EXPECT_DOUBLE_EQ(max_roundtrip_error(1.0, 8), 1.0 / 254.0);
  EXPECT_DOUBLE_EQ(max_roundtrip_error(256.0, 16), 1.0);
  EXPECT_DOUBLE_EQ(max_roundtrip_error(3.0, 32), 0.0);
  EXPECT_DOUBLE_EQ(max_roundtrip_error(0.0, 4), 0.0);
  EXPECT_THROW(max_roundtrip_error(-1.0, 8), CodecError);
}

}  // namespace
}  // namespace arceus
