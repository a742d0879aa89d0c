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

#include "ranks/placement.h"
#include "ranks/schedule/registry.h"
#include "support/pipeline_runs.h"

namespace arceus {
namespace {

using namespace test;

class Replicas : public Pipeline {};

Config placement_config(const std::vector<std::string>& sets) {
  std::vector<Override> o;
  for (const auto& s : sets) o.push_back(parse_override(s));
  return parse_config(kMlp, o, "<test>");
}

// The layout, replica-major: replica r's stage s on rank 1 + r*S + (s-1); 'auto' on either side.
TEST(ReplicaPlacement, LayoutAndAuto) {
  Placement p = make_placement(placement_config({"partition.replicas=2", "partition.stages=3"}), 8);
  EXPECT_EQ(p.replicas, 2);
  EXPECT_EQ(p.stages, 3);
  EXPECT_EQ(p.stage_ranks(), (std::vector<int>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(p.rank_of_stage(2, 1), 5);
  EXPECT_EQ(p.rank_of_chunk(2, 1), 6);
  EXPECT_EQ(p.stage_group(3), (std::vector<int>{3, 6}));
  EXPECT_EQ(p.slot_of_rank(5).replica, 1);
  EXPECT_EQ(p.slot_of_rank(5).stage, 2);
  EXPECT_EQ(p.slot_of_rank(7).stage, 0) << "rank 7 is idle";
  EXPECT_EQ(role_of(7, 8, p.workers()), "idle");
  // replicas 2, stages auto: S = (world - 1) / R.
  p = make_placement(placement_config({"partition.replicas=2"}), 3);
  EXPECT_EQ(p.replicas * 10 + p.stages, 21);
  // stages 2, replicas auto: R = (world - 1) / S.
  p = make_placement(placement_config({"partition.replicas=auto", "partition.stages=2"}), 8);
  EXPECT_EQ(p.replicas * 10 + p.stages, 32);
  // Both auto: data parallelism, one stage per replica.
  p = make_placement(placement_config({"partition.replicas=auto"}), 5);
  EXPECT_EQ(p.replicas * 10 + p.stages, 41);
  // The default (replicas 1, stages auto): a pipeline over every worker, as before replicas.
  p = make_placement(placement_config({}), 4);
  EXPECT_EQ(p.replicas * 10 + p.stages, 13);
  EXPECT_EQ(p.stage_ranks(), (std::vector<int>{1, 2, 3}));
}

TEST(ReplicaPlacement, ErrorsNameEveryNumber) {
  auto error_of = [](const std::vector<std::string>& sets, int world) -> std::string {
    try {
      make_placement(placement_config(sets), world);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of({"partition.replicas=2", "partition.stages=2"}, 4),
            "[partition] 2 replicas x 2 stages need 5 ranks (rank 0 + 4 workers); mpirun -np 4 gave 3 workers");
  EXPECT_EQ(error_of({"partition.replicas=3"}, 3),
            "[partition] 3 replicas need at least 3 worker ranks (rank 0 + 3); mpirun -np 3 gave 2");
  EXPECT_NE(error_of({"partition.replicas=2", "partition.stages=9"}, 19).find("9 stages"), std::string::npos);
}

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

// dataset_config.feed local: the first stages read their own copy (the same synthetic set) and
// rank 0 sends row indices; the same function as the reference.
TEST_F(Replicas, LocalFeedEqualsTheReference) {
  const Outcome ref = run(kMlp, 2, {"training.micro_batches=2", "training.schedule=sequential"});
  ASSERT_TRUE(ref.error.empty()) << ref.error;
  for (const auto& [R, S] : std::vector<std::pair<int, int>>{{2, 1}, {2, 2}, {1, 3}}) {
    const Outcome got = run(kMlp, R * S + 1,
                            {"training.micro_batches=2", "training.schedule=1f1b", "dataset_config.feed=local",
                             "partition.replicas=" + std::to_string(R), "partition.stages=" + std::to_string(S)});
    EXPECT_EQ(compare(ref, got), "") << "R=" << R << " S=" << S;
  }
}

// A checkpoint is by layer name and holds replica 0's state: a run resumes on another number
// of replicas or stages (R 2 -> 1 -> 3, then R 2 x S 2 -> S 1) and ends where an uninterrupted
// run ends.
TEST_F(Replicas, ResumeAcrossShapes) {
  const std::string yaml = std::string(kMlp) + "\n";
  const std::vector<std::string> common = {"training.micro_batches=2", "training.schedule=1f1b"};
  auto with = [&](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  struct Leg {
    int replicas, stages;
  };
  for (const std::vector<Leg>& legs : {std::vector<Leg>{{2, 1}, {1, 1}, {3, 1}}, std::vector<Leg>{{2, 2}, {1, 1}}}) {
    const int epochs = static_cast<int>(legs.size());
    const Outcome straight = run(yaml, 2, with(common, {"training.epochs=" + std::to_string(epochs)}));
    ASSERT_TRUE(straight.error.empty()) << straight.error;
    const std::string out = (dir_ / ("shapes" + std::to_string(count_++))).string();
    Outcome last;
    nlohmann::json first_epoch;
    std::string path;
    for (int e = 1; e <= epochs; ++e) {
      const Leg& leg = legs[size_t(e - 1)];
      path += (path.empty() ? "" : " -> ") + std::to_string(leg.replicas) + "x" + std::to_string(leg.stages);
      last = run(yaml, leg.replicas * leg.stages + 1,
                 with(common, {"training.epochs=" + std::to_string(e), "output.dir=" + out, "resume=true",
                               "partition.replicas=" + std::to_string(leg.replicas),
                               "partition.stages=" + std::to_string(leg.stages)}));
      ASSERT_TRUE(last.error.empty()) << path << ": " << last.error;
      // It resumed: the earlier epochs are the first run's, timings and all (a run from scratch
      // would have measured its own).
      if (e == 1) first_epoch = last.summary["epochs"][0];
      EXPECT_EQ(last.summary["epochs"][0], first_epoch) << path;
    }
    Outcome want = straight;
    want.losses = {};
    last.losses = {};
    EXPECT_EQ(compare(want, last), "") << path;
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

namespace arceus {
namespace {

using namespace test;

class Diloco : public Pipeline {};

// DiLoCo with one inner step, outer learning rate 1 and no outer momentum averages the
// replicas' steps: for plain SGD exactly what summing the gradients every step gives.
TEST_F(Diloco, OneInnerStepEqualsSynchronousReplicas) {
  for (const auto& [R, S] : std::vector<std::pair<int, int>>{{2, 1}, {2, 2}, {3, 1}}) {
    std::vector<std::string> base = {"training.momentum=0", "training.micro_batches=2", "training.schedule=1f1b",
                                     "partition.replicas=" + std::to_string(R), "partition.stages=" + std::to_string(S)};
    const Outcome step = run(kMlp, R * S + 1, base);
    ASSERT_TRUE(step.error.empty()) << step.error;
    for (const char* k : {"training.sync=diloco", "diloco.inner_steps=1", "diloco.outer_learning_rate=1",
                          "diloco.outer_momentum=0"})
      base.push_back(k);
    const Outcome diloco = run(kMlp, R * S + 1, base);
    Outcome want = step;
    // The DiLoCo checkpoint also holds its (zero) outer momentum.
    for (const auto& [name, a] : diloco.tensors)
      if (name.find(":diloco_momentum") != std::string::npos) want.tensors[name] = a;
    EXPECT_EQ(compare(want, diloco), "") << "R=" << R << " S=" << S;
  }
}

// A checkpoint ends a round and holds every replica's inner optimizer state and the outer
// momentum: a run resumed from it ends where an uninterrupted run ends, every tensor.
TEST_F(Diloco, ResumeEqualsAnUninterruptedRun) {
  const std::vector<std::string> base = {"training.micro_batches=2", "training.sync=diloco", "diloco.inner_steps=2",
                                         "diloco.outer_learning_rate=0.7", "diloco.outer_momentum=0.9",
                                         "partition.replicas=2", "partition.stages=1"};
  auto with = [&](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const Outcome straight = run(kMlp, 3, with(base, {"training.epochs=2"}));
  ASSERT_TRUE(straight.error.empty()) << straight.error;
  EXPECT_TRUE(straight.tensors.count("layers.0.weight:momentum_buffer@replica1")) << "replica 1's inner state";
  const std::string out = (dir_ / ("diloco-resume" + std::to_string(count_++))).string();
  const Outcome a = run(kMlp, 3, with(base, {"training.epochs=1", "output.dir=" + out}));
  ASSERT_TRUE(a.error.empty()) << a.error;
  const Outcome b = run(kMlp, 3, with(base, {"training.epochs=2", "output.dir=" + out, "resume=true"}));
  ASSERT_TRUE(b.error.empty()) << b.error;
  Outcome want = straight, got = b;
  want.losses = {};
  got.losses = {};
  EXPECT_EQ(compare(want, got), "");
  // And not by accident: the replicas' inner states differ (their data differ).
  const auto& m0 = straight.tensors.at("layers.0.weight:momentum_buffer").data;
  const auto& m1 = straight.tensors.at("layers.0.weight:momentum_buffer@replica1").data;
  EXPECT_NE(m0, m1);
}

// DiLoCo needs replicas; its keys need training.sync diloco.
TEST_F(Diloco, NeedsReplicasAndItsKeysItsMode) {
  const Outcome one = run(kMlp, 2, {"training.sync=diloco"});
  EXPECT_NE(one.error.find("training.sync is 'diloco'"), std::string::npos) << one.error;
  EXPECT_NE(one.error.find("partition.replicas"), std::string::npos) << one.error;
  const Outcome keys = run(kMlp, 3, {"partition.replicas=2", "diloco.inner_steps=5"});
  EXPECT_NE(keys.error.find("diloco.inner_steps: is a DiLoCo setting, but training.sync is 'step'"), std::string::npos)
      << keys.error;
}

}  // namespace
}  // namespace arceus
