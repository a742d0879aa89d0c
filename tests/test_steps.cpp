// How a step is cut and paced: micro-batch splitting and the learning-rate schedule.
#include <gtest/gtest.h>

#include <algorithm>

#include "ranks/steps.h"

namespace arceus {
namespace {

TEST(Steps, MicroBatchSizes) {
  EXPECT_EQ(micro_batch_sizes(256, 4), (std::vector<int64_t>{64, 64, 64, 64}));
  EXPECT_EQ(micro_batch_sizes(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(micro_batch_sizes(3, 8), (std::vector<int64_t>{1, 1, 1}));  // fewer rows than M
  EXPECT_EQ(micro_batch_sizes(96, 1), (std::vector<int64_t>{96}));
  for (int64_t rows = 1; rows < 300; rows += 7)
    for (int64_t m = 1; m <= 16; ++m) {
      auto s = micro_batch_sizes(rows, m);
      int64_t sum = 0;
      for (auto v : s) sum += v;
      EXPECT_EQ(sum, rows);
      EXPECT_LE(*std::max_element(s.begin(), s.end()) - *std::min_element(s.begin(), s.end()), 1);
    }
  EXPECT_THROW(micro_batch_sizes(0, 4), std::invalid_argument);
}

}  // namespace
}  // namespace arceus

TEST(LearningRate, ConstantWarmupAndCosine) {
  using arceus::learning_rate_at;
  // constant, no warm-up: always the base rate
  for (int64_t s : {0, 5, 99}) EXPECT_DOUBLE_EQ(learning_rate_at("constant", 1e-3, 0, 0, s, 100), 1e-3);
  // linear warm-up over 4 steps, then constant
  EXPECT_DOUBLE_EQ(learning_rate_at("constant", 1.0, 0, 4, 0, 100), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate_at("constant", 1.0, 0, 4, 3, 100), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate_at("constant", 1.0, 0, 4, 50, 100), 1.0);
  // cosine: base right after warm-up, the midpoint halfway, min_lr at the last step
  EXPECT_DOUBLE_EQ(learning_rate_at("cosine", 1.0, 0.1, 10, 10, 111), 1.0);
  EXPECT_NEAR(learning_rate_at("cosine", 1.0, 0.1, 10, 60, 111), 0.55, 1e-12);
  EXPECT_NEAR(learning_rate_at("cosine", 1.0, 0.1, 10, 110, 111), 0.1, 1e-12);
  // monotone non-increasing after warm-up, never below min_lr (also past the planned end)
  double prev = 2.0;
  for (int64_t s = 10; s < 130; ++s) {
    const double lr = learning_rate_at("cosine", 1.0, 0.1, 10, s, 111);
    EXPECT_LE(lr, prev + 1e-15) << s;
    EXPECT_GE(lr, 0.1 - 1e-15) << s;
    prev = lr;
  }
  EXPECT_THROW(learning_rate_at("linear", 1.0, 0, 0, 0, 10), std::invalid_argument);
}
