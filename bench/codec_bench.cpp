// Throughput of the activation codec (ranks/codec.h), single-threaded.
//
// Cases: encode (deterministic and stochastic rounding) and decode at 16, 8 and 4 bits on
// [rows, cols] float32 matrices of N(0, 1) values, the shapes a stage sends:
//   256x1024   micro-batch of 256 tokens, hidden 1024 (1 MiB of floats, fits L2)
//   64x4096    few wide rows, e.g. an MLP's 4*hidden activations (1 MiB)
//   1024x1024  a larger micro-batch (4 MiB, beyond one core's L2)
// Bytes processed is the float32 input (encode) or output (decode) size, rows*cols*4, so the
// reported bytes_per_second is GB/s of float data per core whatever the bit width.
// 16 bits has no stochastic mode (bf16 is always round-to-nearest-even), so it has no
// encode/sto case.
//
//   build/bench/codec_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ranks/codec.h"

namespace {

struct Shape {
  int64_t rows, cols;
};

constexpr Shape kShapes[] = {{256, 1024}, {64, 4096}, {1024, 1024}};
constexpr int kBits[] = {16, 8, 4};

std::vector<float> normal_matrix(const Shape& sh) {
  std::mt19937 gen(12345);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(sh.rows * sh.cols));
  for (float& v : x) v = dist(gen);
  return x;
}

void bm_encode(benchmark::State& state, Shape sh, int bits, bool stochastic) {
  const std::vector<float> x = normal_matrix(sh);
  std::vector<uint8_t> out(arceus::encoded_size(sh.rows, sh.cols, bits));
  uint64_t seed = 1;
  for (auto _ : state) {
    arceus::encode(x.data(), sh.rows, sh.cols, bits, stochastic, seed++, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * sh.rows * sh.cols * 4);
}

void bm_decode(benchmark::State& state, Shape sh, int bits) {
  const std::vector<float> x = normal_matrix(sh);
  std::vector<uint8_t> in(arceus::encoded_size(sh.rows, sh.cols, bits));
  arceus::encode(x.data(), sh.rows, sh.cols, bits, false, 0, in.data());
  std::vector<float> out(x.size());
  for (auto _ : state) {
    arceus::decode(in.data(), sh.rows, sh.cols, bits, out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * sh.rows * sh.cols * 4);
}

// Names read "encode/8/det/256x1024", "decode/4/1024x1024".
int register_all() {
  for (int bits : kBits) {
    for (const Shape& sh : kShapes) {
      const std::string dims = std::to_string(sh.rows) + "x" + std::to_string(sh.cols);
      const std::string b = std::to_string(bits);
      benchmark::RegisterBenchmark(("encode/" + b + "/det/" + dims).c_str(), bm_encode, sh, bits,
                                   false);
      if (bits != 16) {
        benchmark::RegisterBenchmark(("encode/" + b + "/sto/" + dims).c_str(), bm_encode, sh, bits,
                                     true);
      }
      benchmark::RegisterBenchmark(("decode/" + b + "/" + dims).c_str(), bm_decode, sh, bits);
    }
  }
  return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
