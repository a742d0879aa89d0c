// Schedules: every micro-batch forward once and backward once, forward first; the 1F1B
// warm-up and in-flight bound; micro-batch splitting.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "ranks/schedule.h"

namespace arceus {
namespace {

void expect_complete(const std::vector<PipeOp>& ops, int64_t m, const std::string& what) {
  ASSERT_EQ(ops.size(), static_cast<size_t>(2 * m)) << what;
  std::map<int64_t, int> f_at, b_at;
  for (size_t i = 0; i < ops.size(); ++i) {
    auto& where = ops[i].kind == PipeOp::Forward ? f_at : b_at;
    EXPECT_EQ(where.count(ops[i].micro_batch), 0u) << what << ": micro-batch " << ops[i].micro_batch << " twice";
    where[ops[i].micro_batch] = static_cast<int>(i);
  }
  for (int64_t i = 0; i < m; ++i) {
    ASSERT_TRUE(f_at.count(i) && b_at.count(i)) << what << ": micro-batch " << i << " missing";
    EXPECT_LT(f_at[i], b_at[i]) << what << ": backward of " << i << " before its forward";
  }
  // Backwards run in micro-batch order on every stage (the deadlock-freedom argument).
  int64_t last_b = -1;
  for (const auto& op : ops) {
    if (op.kind != PipeOp::Backward) continue;
    EXPECT_EQ(op.micro_batch, last_b + 1) << what;
    last_b = op.micro_batch;
  }
}

TEST(Schedule, EveryScheduleIsCompleteForManyShapes) {
  for (auto s : {Schedule::Sequential, Schedule::GPipe, Schedule::OneFOneB})
    for (int64_t stages = 1; stages <= 6; ++stages)
      for (int64_t stage = 0; stage < stages; ++stage)
        for (int64_t m : {1, 2, 3, 4, 7, 8, 16})
          expect_complete(make_schedule(s, stages, stage, m), m,
                          std::string(schedule_name(s)) + " S=" + std::to_string(stages) + " k=" +
                              std::to_string(stage) + " M=" + std::to_string(m));
}

TEST(Schedule, GPipeIsAllForwardsThenAllBackwards) {
  auto ops = make_schedule(Schedule::GPipe, 3, 1, 4);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(ops[i], (PipeOp{PipeOp::Forward, int64_t(i)}));
  for (size_t i = 4; i < 8; ++i) EXPECT_EQ(ops[i], (PipeOp{PipeOp::Backward, int64_t(i - 4)}));
}

TEST(Schedule, OneFOneBWarmupAndSteadyState) {
  // Stage 0 of 3 with M=4: two warm-up forwards, then F B F B, then drain B B.
  using K = PipeOp;
  std::vector<PipeOp> want{{K::Forward, 0}, {K::Forward, 1}, {K::Forward, 2}, {K::Backward, 0},
                           {K::Forward, 3}, {K::Backward, 1}, {K::Backward, 2}, {K::Backward, 3}};
  EXPECT_EQ(make_schedule(Schedule::OneFOneB, 3, 0, 4), want);
  // The last stage alternates from the start.
  std::vector<PipeOp> last{{K::Forward, 0}, {K::Backward, 0}, {K::Forward, 1}, {K::Backward, 1}};
  EXPECT_EQ(make_schedule(Schedule::OneFOneB, 3, 2, 2), last);
}

TEST(Schedule, OneFOneBBoundsActivationsInFlight) {
  for (int64_t stages = 1; stages <= 6; ++stages)
    for (int64_t stage = 0; stage < stages; ++stage)
      for (int64_t m : {1, 2, 5, 16}) {
        int64_t live = 0, peak = 0;
        for (const auto& op : make_schedule(Schedule::OneFOneB, stages, stage, m)) {
          live += op.kind == PipeOp::Forward ? 1 : -1;
          peak = std::max(peak, live);
        }
        EXPECT_LE(peak, std::min(m, stages - stage)) << "S=" << stages << " k=" << stage << " M=" << m;
      }
}

TEST(Schedule, SequentialAlternates) {
  auto ops = make_schedule(Schedule::Sequential, 2, 0, 3);
  for (size_t i = 0; i < ops.size(); ++i) {
    EXPECT_EQ(ops[i].kind, i % 2 == 0 ? PipeOp::Forward : PipeOp::Backward);
    EXPECT_EQ(ops[i].micro_batch, static_cast<int64_t>(i / 2));
  }
}

TEST(Schedule, ParseNames) {
  EXPECT_EQ(parse_schedule("1f1b"), Schedule::OneFOneB);
  EXPECT_EQ(parse_schedule("gpipe"), Schedule::GPipe);
  EXPECT_EQ(parse_schedule("sequential"), Schedule::Sequential);
  EXPECT_THROW(parse_schedule("pipedream"), std::invalid_argument);
  EXPECT_THROW(make_schedule(Schedule::GPipe, 2, 2, 4), std::invalid_argument);
}

TEST(Schedule, MicroBatchSizes) {
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

TEST(Schedule, TheoreticalBubble) {
  EXPECT_DOUBLE_EQ(theoretical_bubble(1, 4), 0.0);
  EXPECT_DOUBLE_EQ(theoretical_bubble(2, 4), 1.0 / 5.0);
  EXPECT_DOUBLE_EQ(theoretical_bubble(4, 16), 3.0 / 19.0);
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
