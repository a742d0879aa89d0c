// Stage partitioning: uniform rule, balanced DP (property test vs brute force), explicit plans.
#include "partition/partition.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/errors.h"

namespace arceus {
namespace {

std::string show(const std::vector<LayerRange>& plan) {
  std::ostringstream os;
  for (const LayerRange& r : plan) os << "[" << r.first << "," << r.end() << ")";
  return os.str();
}

// Every layer exactly once, contiguous, in order, no empty stage.
void expect_valid_plan(const std::vector<LayerRange>& plan, int64_t layers, int64_t stages,
                       const std::string& ctx) {
  ASSERT_EQ(static_cast<int64_t>(plan.size()), stages) << ctx << " plan " << show(plan);
  int64_t next = 0;
  for (size_t s = 0; s < plan.size(); ++s) {
    EXPECT_EQ(plan[s].first, next) << ctx << " stage " << s << " plan " << show(plan);
    EXPECT_GE(plan[s].count, 1) << ctx << " empty stage " << s << " plan " << show(plan);
    next = plan[s].end();
  }
  EXPECT_EQ(next, layers) << ctx << " plan " << show(plan);
}

template <class F>
std::string error_of(F&& f) {
  return test::error_message<PartitionError>(f, "<no PartitionError>");
}

// Smallest largest-stage cost over all contiguous splits into `stages` non-empty parts.
double brute_force_optimum(const std::vector<double>& costs, int64_t stages) {
  const int64_t L = static_cast<int64_t>(costs.size());
  double best = std::numeric_limits<double>::infinity();
  // Cut masks over the L-1 gaps with exactly stages-1 bits set.
  for (uint32_t mask = 0; mask < (1u << (L - 1)); ++mask) {
    if (__builtin_popcount(mask) != stages - 1) continue;
    std::vector<LayerRange> plan;
    int64_t first = 0;
    for (int64_t g = 0; g < L - 1; ++g) {
      if (mask & (1u << g)) {
        plan.push_back({first, g + 1 - first});
        first = g + 1;
      }
    }
    plan.push_back({first, L - first});
    best = std::min(best, max_stage_cost(costs, plan));
  }
  return best;
}

TEST(PartitionUniform, SizesForAllSmallCases) {
  for (int64_t L = 1; L <= 40; ++L) {
    for (int64_t S = 1; S <= L; ++S) {
      const std::string ctx = "L=" + std::to_string(L) + " S=" + std::to_string(S);
      const std::vector<LayerRange> plan = uniform_partition(L, S);
      expect_valid_plan(plan, L, S, ctx);
      for (int64_t s = 0; s < S && s < static_cast<int64_t>(plan.size()); ++s) {
        const int64_t want = L / S + (s < L % S ? 1 : 0);
        EXPECT_EQ(plan[static_cast<size_t>(s)].count, want) << ctx << " stage " << s;
      }
    }
  }
}

TEST(PartitionUniform, Examples) {
  EXPECT_EQ(uniform_partition(3, 1), (std::vector<LayerRange>{{0, 3}}));
  EXPECT_EQ(uniform_partition(3, 3), (std::vector<LayerRange>{{0, 1}, {1, 1}, {2, 1}}));
  EXPECT_EQ(uniform_partition(7, 3), (std::vector<LayerRange>{{0, 3}, {3, 2}, {5, 2}}));
}

TEST(PartitionUniform, ErrorsHaveExactMessage) {
  EXPECT_EQ(error_of([] { uniform_partition(3, 4); }),
            "[partition] 4 stages but the model has 3 layers (stages must be 1..3)");
  EXPECT_EQ(error_of([] { uniform_partition(3, 0); }),
            "[partition] 0 stages but the model has 3 layers (stages must be 1..3)");
  EXPECT_EQ(error_of([] { uniform_partition(5, -2); }),
            "[partition] -2 stages but the model has 5 layers (stages must be 1..5)");
  EXPECT_NE(error_of([] { uniform_partition(0, 1); }).find("0 layers"), std::string::npos);
}

TEST(PartitionBalanced, ErrorsLikeUniform) {
  EXPECT_EQ(error_of([] { balanced_partition({1, 2, 3}, 4); }),
            "[partition] 4 stages but the model has 3 layers (stages must be 1..3)");
  EXPECT_EQ(error_of([] { balanced_partition({1, 2, 3}, 0); }),
            "[partition] 0 stages but the model has 3 layers (stages must be 1..3)");
  const std::string neg = error_of([] { balanced_partition({1, 2, -1}, 2); });
  EXPECT_NE(neg.find("layer 2 has cost -1"), std::string::npos) << neg;
  const std::string nan =
      error_of([] { balanced_partition({1, std::numeric_limits<double>::quiet_NaN()}, 1); });
  EXPECT_NE(nan.find("layer 1 has cost"), std::string::npos) << nan;
  const std::string inf =
      error_of([] { balanced_partition({std::numeric_limits<double>::infinity(), 1}, 1); });
  EXPECT_NE(inf.find("layer 0 has cost"), std::string::npos) << inf;
}

TEST(PartitionBalanced, HandExamples) {
  EXPECT_EQ(show(balanced_partition({1, 2, 3, 4, 5}, 2)), "[0,3)[3,5)");
  // The heavy layer must sit alone; the first stage must take two layers for that.
  EXPECT_EQ(show(balanced_partition({1, 1, 100, 1, 1}, 3)), "[0,2)[2,3)[3,5)");
  // Ties keep earlier stages smaller.
  EXPECT_EQ(show(balanced_partition({1, 1, 1, 1, 1}, 2)), "[0,2)[2,5)");
  EXPECT_EQ(show(balanced_partition({0, 0, 0, 0}, 3)), "[0,1)[1,2)[2,4)");
  EXPECT_EQ(show(balanced_partition({5}, 1)), "[0,1)");
  EXPECT_EQ(show(balanced_partition({3, 1, 1, 1}, 4)), "[0,1)[1,2)[2,3)[3,4)");
}

TEST(PartitionBalanced, PropertyVsUniformAndBruteForce) {
  std::mt19937_64 gen(20240611);
  std::uniform_int_distribution<int64_t> layers_dist(1, 24);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  int brute_checked = 0;
  for (int t = 0; t < 2000; ++t) {
    const int64_t L = layers_dist(gen);
    const int64_t S = std::uniform_int_distribution<int64_t>(1, L)(gen);
    std::vector<double> costs(static_cast<size_t>(L));
    const int kind = t % 4;
    for (double& c : costs) {
      if (kind == 0) c = unit(gen);                                   // uniform
      else if (kind == 1) c = std::exp(8.0 * unit(gen));              // heavy-tailed
      else if (kind == 2) c = std::floor(4.0 * unit(gen));            // many ties and zeros
      else c = unit(gen) < 0.1 ? 1000.0 * unit(gen) : unit(gen);      // a few huge layers
    }
    std::ostringstream ctx;
    ctx << "case " << t << " L=" << L << " S=" << S << " costs=";
    for (double c : costs) ctx << c << " ";
    const std::vector<LayerRange> plan = balanced_partition(costs, S);
    expect_valid_plan(plan, L, S, ctx.str());
    if (::testing::Test::HasFailure()) return;
    const double bal = max_stage_cost(costs, plan);
    const double uni = max_stage_cost(costs, uniform_partition(L, S));
    EXPECT_LE(bal, uni * (1.0 + 1e-9)) << ctx.str() << " balanced " << show(plan);
    if (L <= 10) {
      ++brute_checked;
      const double opt = brute_force_optimum(costs, S);
      EXPECT_NEAR(bal, opt, 1e-12 * std::max(1.0, opt))
          << ctx.str() << " balanced " << show(plan) << " reference " << opt << ", actual " << bal
          << ", error " << std::fabs(bal - opt);
    }
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_GT(brute_checked, 500);
}

TEST(PartitionExplicit, Accepts) {
  EXPECT_EQ(explicit_partition({{0, 1}, {2}}, 3), (std::vector<LayerRange>{{0, 2}, {2, 1}}));
  EXPECT_EQ(explicit_partition({{0}, {1}, {2, 3, 4}}, 5),
            (std::vector<LayerRange>{{0, 1}, {1, 1}, {2, 3}}));
  EXPECT_EQ(explicit_partition({{0, 1, 2}}, 3), (std::vector<LayerRange>{{0, 3}}));
}

void expect_reject(const std::vector<std::vector<int64_t>>& layers, int64_t n,
                   std::vector<std::string> parts) {
  const std::string m = error_of([&] { explicit_partition(layers, n); });
  EXPECT_EQ(m.rfind("[partition] ", 0), 0u) << m;
  for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "want '" << p << "' in: " << m;
}

TEST(PartitionExplicit, RejectsWithStageAndLayer) {
  expect_reject({{0, 1}, {5}}, 3, {"stage 1", "layer 5", "out of range", "0..2"});
  expect_reject({{-1, 0}, {1}}, 2, {"stage 0", "layer -1", "out of range"});
  expect_reject({{0, 1}, {1, 2}}, 3, {"stage 1", "layer 1", "duplicated", "stage 0"});
  expect_reject({{0, 0}, {1}}, 2, {"stage 0", "layer 0", "duplicated"});
  expect_reject({{0, 1}, {2}}, 4, {"layer 3", "missing", "stage 1"});
  expect_reject({{0}, {2}}, 3, {"layer 1", "missing", "stage 1", "layer 2"});
  expect_reject({{0, 2}, {1}}, 3, {"stage 0", "layer 2", "contiguous and in order"});
  expect_reject({{1}, {0}}, 2, {"stage 0", "layer 1", "contiguous and in order"});
  expect_reject({{0, 1}, {}, {2}}, 3, {"stage 1", "empty"});
  expect_reject({}, 3, {"no stages"});
  expect_reject({{0}}, 0, {"0 layers"});
}

TEST(PartitionCosts, StageCostsAndMax) {
  const std::vector<double> costs = {1, 2, 3, 4};
  const std::vector<LayerRange> plan = {{0, 3}, {3, 1}};
  EXPECT_EQ(stage_costs(costs, plan), (std::vector<double>{6, 4}));
  EXPECT_EQ(max_stage_cost(costs, plan), 6.0);
  EXPECT_THROW(stage_costs(costs, {{2, 3}}), PartitionError);
}

TEST(PartitionCosts, MlpLayerCostsByHand) {
  // [4,3,2] at 8 bits, 100 FLOP/byte:
  //   layer 0 (no input gradient): 4*4*3 = 48 FLOPs + 2*3 values * 1 byte * 100 = 600 -> 648
  //   layer 1 (last: sends nothing): 6*3*2 = 36 FLOPs                             -> 36
  EXPECT_EQ(mlp_layer_costs({4, 3, 2}, 8, 100.0), (std::vector<double>{648, 36}));
  EXPECT_EQ(mlp_layer_costs({4, 3, 2}, 32, 0.0), (std::vector<double>{48, 36}));
  EXPECT_EQ(mlp_layer_costs({4, 3, 2}, 4, 10.0), (std::vector<double>{48 + 30, 36}));
  // 784-128-64-10 at bf16 with the default ratio:
  //   4*784*128 = 401408 + 2*128*2 bytes*100 = 51200 -> 452608
  //   6*128*64  = 49152  + 2*64*2 bytes*100  = 25600 -> 74752
  //   6*64*10   = 3840 (last)                        -> 3840
  EXPECT_EQ(mlp_layer_costs({784, 128, 64, 10}, 16), (std::vector<double>{452608, 74752, 3840}));
  EXPECT_THROW(mlp_layer_costs({4, 3}, 7), PartitionError);
  EXPECT_THROW(mlp_layer_costs({4}, 8), PartitionError);
  EXPECT_THROW(mlp_layer_costs({4, 0, 2}, 8), PartitionError);
  EXPECT_THROW(mlp_layer_costs({4, 2}, 8, -1.0), PartitionError);
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

// Interleaved chunks are balanced per stage (the sum of a stage's chunks), not per chunk:
// 6 equal layers and a tiny head over 2 stages x 2 chunks. The per-chunk optimum can load one
// stage with 4 layers and the other with 3; the per-stage search finds 3.x / 3.
TEST(Partition, ChunkPartitionBalancesStages) {
  const std::vector<double> costs{1, 1, 1, 1, 1, 1, 0.01};
  const auto plan = balanced_chunk_partition(costs, 2, 2);
  ASSERT_EQ(plan.size(), 4u);
  int64_t next = 0;
  for (const auto& r : plan) {
    EXPECT_EQ(r.first, next);
    EXPECT_GE(r.count, 1);
    next = r.end();
  }
  EXPECT_EQ(next, 7);
  const auto chunk = stage_costs(costs, plan);
  EXPECT_NEAR(std::max(chunk[0] + chunk[2], chunk[1] + chunk[3]), 3.01, 1e-9);
  // v = 1 is the plain balanced partition.
  EXPECT_EQ(balanced_chunk_partition(costs, 3, 1), balanced_partition(costs, 3));
  // Every layer one chunk: the only plan.
  EXPECT_EQ(balanced_chunk_partition({1, 2, 3, 4}, 2, 2), uniform_partition(4, 4));
  EXPECT_THROW(balanced_chunk_partition({1, 2, 3}, 2, 2), PartitionError);  // 4 chunks, 3 layers
}

}  // namespace
}  // namespace arceus
