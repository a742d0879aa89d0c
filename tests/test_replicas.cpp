// Replicas (data parallelism beside the pipeline) compute the reference's function: after a
// few steps every parameter and optimizer tensor of a run with R replicas of S stages equals
// the one-process reference's within the tolerance of float sums taken in another order, for
// every schedule, R 1..3 x S 1..3 (R*S <= 6) and several M, on the MLP (SGD with momentum, and
// AdamW with clipping) and the GPT (AdamW with clipping), at 32 bits. Each run's checkpoint
// also checks that every replica of a stage holds the same bits (rank 0 compares their hashes;
// a difference fails the run). Over the in-process transport, whose groups sum as MPI does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <utility>

#include "ranks/schedule/registry.h"
#include "support/pipeline_runs.h"

namespace arceus {
namespace {

using namespace test;

class Replicas : public Pipeline {};

// The reference of M is the one-process run with the same M; a replica splits its share into
// M micro-batches of its own, so the gradient sums are taken in another order than the
// reference's (hence kTolerance, not equality).
void expect_replicas_match(Replicas& t, const std::string& yaml, int64_t layers, const std::vector<int>& ms,
                           const std::vector<std::string>& extra = {}) {
  int compared = 0;
  for (int m : ms) {
    std::vector<std::string> base = extra;
    base.push_back("training.micro_batches=" + std::to_string(m));
    std::vector<std::string> ref_sets = base;
    ref_sets.push_back("training.schedule=sequential");
    const Outcome ref = t.run(yaml, 2, ref_sets);
    ASSERT_TRUE(ref.error.empty()) << ref.error;
    for (const ScheduleInfo& s : schedules()) {
      for (int R = 1; R <= 3; ++R) {
        for (int S = 1; S <= 3 && R * S <= 6; ++S) {
          for (int v = 1; v <= (s.multi_chunk ? 2 : 1); ++v) {
            if (S * v > layers || (R == 1 && S > 1)) continue;  // R = 1 pipelines: test_pipeline.cpp
            std::vector<std::string> sets = base;
            for (const std::string& k : {"training.schedule=" + s.name, "partition.chunks_per_rank=" + std::to_string(v),
                                         "partition.replicas=" + std::to_string(R),
                                         "partition.stages=" + std::to_string(S)})
              sets.push_back(k);
            const Outcome got = t.run(yaml, R * S + 1, sets);
            EXPECT_EQ(compare(ref, got), "") << s.name << " R=" << R << " S=" << S << " v=" << v << " M=" << m;
            ++compared;
          }
        }
      }
    }
  }
  std::printf("[  result  ] %d runs with replicas, every parameter and optimizer tensor within %g of the reference\n",
              compared, kTolerance);
}

TEST_F(Replicas, MlpEveryScheduleEqualsTheReference) { expect_replicas_match(*this, kMlp, 8, {1, 3, 4}); }

TEST_F(Replicas, MlpAdamWithClippingEqualsTheReference) {
  expect_replicas_match(*this, kMlp, 8, {2},
                        {"training.optimizer=adamw", "training.learning_rate=0.01", "training.momentum=0",
                         "training.grad_clip=0.5"});
}

TEST_F(Replicas, GptEveryScheduleEqualsTheReference) { expect_replicas_match(*this, gpt_config(), 8, {1, 4}); }

// A batch whose rows do not split evenly: shares 9, 8, 7 of 24 (and an epoch's last batch of 3
// rows over 3 replicas with M = 2: one row each), still the reference's sums, since each
// replica's loss is scaled by the whole batch's rows and the gradients are summed.
TEST_F(Replicas, UnequalSharesAreExact) {
  const std::string yaml = std::string(kMlp) + "\n";
  for (const std::vector<std::string>& shape :
       {std::vector<std::string>{"dataset_config.batch_size=23"}, {"dataset_config.batch_size=31", "training.max_steps=4"}}) {
    std::vector<std::string> ref_sets = shape, sets = shape;
    for (const char* k : {"training.micro_batches=2", "training.schedule=sequential"}) ref_sets.push_back(k), sets.push_back(k);
    sets.push_back("partition.replicas=3");
    sets.push_back("partition.stages=1");
    const Outcome ref = run(yaml, 2, ref_sets);
    ASSERT_TRUE(ref.error.empty()) << ref.error;
    EXPECT_EQ(compare(ref, run(yaml, 4, sets)), "") << shape[0];
  }
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

using namespace test;

// The largest |a - b| over every parameter (not optimizer state), and the largest |b|.
std::pair<double, double> max_parameter_difference(const Outcome& a, const Outcome& b) {
  double diff = 0, scale = 0;
  for (const auto& [name, x] : a.tensors) {
    if (name.find(':') != std::string::npos) continue;
    const NamedArray& y = b.tensors.at(name);
    for (size_t i = 0; i < x.data.size(); ++i) {
      diff = std::max(diff, std::abs(double(x.data[i]) - double(y.data[i])));
      scale = std::max(scale, std::abs(double(y.data[i])));
    }
  }
  return {diff, scale};
}

class CompressedSync : public Pipeline {};

// 16, 8 and 4-bit gradient sums (the ring with error feedback) stay close to the 32-bit sum
// after a few steps; the bound per width is named (ggml-style), well above what was observed.
TEST_F(CompressedSync, WithinTheBoundOfEachWidth) {
  const std::vector<std::string> base = {"training.micro_batches=2", "partition.replicas=3", "partition.stages=1",
                                         "training.max_steps=6"};
  std::vector<std::string> sets = base;
  sets.push_back("communication.gradient_bits=32");
  const Outcome exact = run(kMlp, 4, sets);
  ASSERT_TRUE(exact.error.empty()) << exact.error;
  for (const auto& [bits, bound] : std::vector<std::pair<int, double>>{{16, 5e-4}, {8, 2e-3}, {4, 3e-2}}) {
    sets = base;
    sets.push_back("communication.gradient_bits=" + std::to_string(bits));
    const Outcome got = run(kMlp, 4, sets);
    ASSERT_TRUE(got.error.empty()) << got.error;
    const auto [diff, scale] = max_parameter_difference(got, exact);
    std::printf("[  result  ] gradient_bits %d: largest parameter difference from 32 bits %.3g (largest parameter %.3g)\n",
                bits, diff, scale);
    EXPECT_LE(diff, bound) << bits << " bits";
    EXPECT_GT(diff, 0.0) << bits << " bits: not compressed at all?";
  }
}

}  // namespace
}  // namespace arceus
