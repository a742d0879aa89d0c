// The BLAS the trainer runs on: OpenBLAS (not the reference BLAS), with a kernel the CPU
// supports, and matrix products that match float64. main() re-executes like the launcher.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "launcher/blas.h"

namespace arceus {
namespace {

std::string flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) return line;
  return "";
}

TEST(Blas, IsOpenBlasNotReference) {
  const BlasInfo info = blas_info();
  std::printf("BLAS in use: %s\n", info.describe().c_str());
  EXPECT_TRUE(info.is_openblas()) << info.describe();
  EXPECT_EQ(info.library.find("/blas/libblas"), std::string::npos) << "reference BLAS loaded: " << info.library;
}

TEST(Blas, KernelMatchesCpu) {
  const std::string want = preferred_openblas_core(flags());
  const BlasInfo info = blas_info();
  if (want.empty()) GTEST_SKIP() << "CPU has neither AVX2+FMA nor AVX-512: OpenBLAS's own detection is kept";
  // OpenBLAS may name an equivalent core (e.g. Zen for Haswell's kernels, Cooperlake for SkylakeX).
  EXPECT_NE(info.core, "Prescott") << "generic kernel on a CPU that supports " << want;
  EXPECT_NE(info.core, "Core2") << "generic kernel on a CPU that supports " << want;
}

TEST(Blas, PreferredCoreFromFlags) {
  EXPECT_EQ(preferred_openblas_core("fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512dq"), "SkylakeX");
  EXPECT_EQ(preferred_openblas_core("fpu sse2 avx avx2 fma"), "Haswell");
  EXPECT_EQ(preferred_openblas_core("fpu sse2 avx"), "");
  EXPECT_EQ(preferred_openblas_core("avx2 avx512f"), "");  // no FMA: leave it to OpenBLAS
}

TEST(Blas, MatmulMatchesFloat64) {
  at::manual_seed(11);
  for (auto [m, k, n] : {std::tuple{256, 784, 128}, {64, 1024, 1024}, {3, 5, 7}, {1000, 64, 10}}) {
    at::Tensor a = at::randn({m, k}), b = at::randn({k, n});
    at::Tensor got = at::mm(a, b).to(at::kDouble);
    at::Tensor want = at::mm(a.to(at::kDouble), b.to(at::kDouble));
    const double rel = ((got - want).norm() / want.norm()).item<double>();
    EXPECT_LT(rel, 1e-6) << m << "x" << k << " * " << k << "x" << n << ": relative error " << rel;
    // Transposed layout goes through the other GEMM path.
    at::Tensor got_t = at::mm(b.t().contiguous().t(), at::eye(n)).to(at::kDouble);
    EXPECT_LT(((got_t - b.to(at::kDouble)).abs().max()).item<double>(), 1e-6);
  }
}

}  // namespace
}  // namespace arceus

int main(int argc, char** argv) {
  arceus::ensure_blas(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
