// The distributed path computes the same function as the reference, proven on the whole
// state (llm.c's test_gpt2 style): after a few training steps, every parameter tensor and
// every optimizer-state tensor of a pipelined run equals the one-stage reference run's, for
// every schedule in the registry, S = 1..4 stage ranks, v = 1..2 chunks per rank and M = 1..8
// micro-batches, on the MLP and on the GPT. The runs go through the real orchestrator, stage
// workers, executor and messages, over the in-process transport (threads), with 32-bit
// messages; the state is read back from the checkpoint each run writes.
#include <gtest/gtest.h>

#include "ranks/schedule/registry.h"
#include "support/pipeline_runs.h"

namespace arceus {
namespace {

using namespace test;

// Runs every schedule x S x v x M against the reference of the same M (the same micro-batch
// split, so the same gradient sums) and counts the comparisons.
void expect_every_schedule_matches(Pipeline& t, const std::string& yaml, int64_t layers, const std::vector<int>& ms,
                                   int max_stages) {
  int compared = 0;
  for (int m : ms) {
    const std::string mset = "training.micro_batches=" + std::to_string(m);
    const Outcome ref = t.run(yaml, 2, {mset, "training.schedule=sequential"});
    ASSERT_TRUE(ref.error.empty()) << ref.error;
    ASSERT_FALSE(ref.tensors.empty());
    for (const ScheduleInfo& s : schedules()) {
      for (int stages = 1; stages <= max_stages; ++stages) {
        for (int v = 1; v <= (s.multi_chunk ? 2 : 1); ++v) {
          if (stages * v > layers) continue;
          const std::string what = s.name + " S=" + std::to_string(stages) + " v=" + std::to_string(v) + " M=" +
                                   std::to_string(m);
          const Outcome got = t.run(yaml, stages + 1,
                                {mset, "training.schedule=" + s.name, "partition.chunks_per_rank=" + std::to_string(v)});
          const std::string diff = compare(ref, got);
          EXPECT_EQ(diff, "") << what;
          ++compared;
        }
      }
    }
  }
  std::printf("[  result  ] %d pipelined runs, every parameter and optimizer tensor within %g of the reference\n",
              compared, kTolerance);
}

TEST_F(Pipeline, MlpEveryScheduleEqualsTheReference) {
  expect_every_schedule_matches(*this, kMlp, 8, {1, 2, 3, 4, 5, 6, 7, 8}, 4);
}

TEST_F(Pipeline, GptEveryScheduleEqualsTheReference) {
  expect_every_schedule_matches(*this, gpt_config(), 8, {1, 2, 4, 8}, 4);
}

// The split backward (I then W) gives the full backward's gradients even where a chunk holds
// several layers (its inner boundaries) and where chunks of one rank hand over in memory.
TEST_F(Pipeline, SplitBackwardEqualsFullBackwardWithManyLayersPerChunk) {
  const Outcome full = run(kMlp, 3, {"training.micro_batches=4", "training.schedule=1f1b"});
  const Outcome split = run(kMlp, 3, {"training.micro_batches=4", "training.schedule=zb1p"});
  ASSERT_TRUE(full.error.empty()) << full.error;
  EXPECT_EQ(compare(full, split), "");
  const Outcome one_rank_two_chunks =
      run(kMlp, 2, {"training.micro_batches=4", "training.schedule=interleaved", "partition.chunks_per_rank=2"});
  EXPECT_EQ(compare(full, one_rank_two_chunks), "");
}

// A checkpoint is by global layer name: a job checkpointed interleaved resumes sequential on
// another placement, and the other way round.
TEST_F(Pipeline, InterleavedCheckpointResumesSequentialAndBack) {
  const std::string yaml = std::string(kMlp) + "\n";
  const auto two_epochs = std::vector<std::string>{"training.epochs=2", "training.micro_batches=4"};
  auto with = [&](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const Outcome straight = run(yaml, 2, with(two_epochs, {"training.schedule=sequential"}));
  ASSERT_TRUE(straight.error.empty()) << straight.error;
  for (const auto& [first, second] : std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>{
           {{"training.schedule=interleaved", "partition.chunks_per_rank=2"}, {"training.schedule=sequential"}},
           {{"training.schedule=sequential"}, {"training.schedule=interleaved", "partition.chunks_per_rank=2"}}}) {
    const std::string out = (dir_ / ("resume" + std::to_string(count_++))).string();
    const Outcome a = run(yaml, 3, with({"training.epochs=1", "training.micro_batches=4", "output.dir=" + out}, first));
    ASSERT_TRUE(a.error.empty()) << a.error;
    const Outcome b = run(yaml, 3, with(with(two_epochs, {"output.dir=" + out, "resume=true"}), second));
    ASSERT_TRUE(b.error.empty()) << b.error;
    // The resumed run recorded only its own epoch's losses; compare the tensors.
    Outcome want = straight;
    want.losses = {};
    Outcome got = b;
    got.losses = {};
    EXPECT_EQ(compare(want, got), "") << first[0] << " then " << second[0];
  }
}

// A schedule the validator rejects is an error before training, naming the schedule.
TEST_F(Pipeline, UnsupportedShapeIsASetupError) {
  const Outcome r = run(kMlp, 3, {"training.schedule=interleaved", "partition.chunks_per_rank=8"});
  EXPECT_NE(r.error.find("chunks"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace arceus
