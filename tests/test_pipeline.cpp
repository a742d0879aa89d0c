// The distributed path computes the same function as the reference, proven on the whole
// state (llm.c's test_gpt2 style): after a few training steps, every parameter tensor and
// every optimizer-state tensor of a pipelined run equals the one-stage reference run's, for
// every schedule in the registry, S = 1..4 stage ranks, v = 1..2 chunks per rank and M = 1..8
// micro-batches, on the MLP and on the GPT. The runs go through the real orchestrator, stage
// workers, executor and messages, over the in-process transport (threads), with 32-bit
// messages; the state is read back from the checkpoint each run writes.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "config/config.h"
#include "ranks/schedule/registry.h"
#include "ranks/trainer.h"
#include "storage/storage.h"

#ifndef TEST_CONFIG_DIR
#define TEST_CONFIG_DIR ""
#endif

namespace arceus {
namespace {

namespace fs = std::filesystem;

// Tensors are compared element by element; float32 sums taken in another order could differ
// in the last bits, so the bound is named, not zero. (Observed: 0, the same operations run in
// the same order.)
constexpr double kTolerance = 1e-6;

// A rank that waits this long for a message fails the run (a schedule that deadlocks fails
// in seconds, not at the CTest timeout; the validator rejects such lists before any run).
constexpr double kTimeoutSeconds = 30;

const char* kMlp = R"(
model_config:
  layer_sizes: [16, 24, 20, 16, 24, 20, 16, 24, 10]
dataset_config:
  name: synthetic
  batch_size: 24
  val_batch_size: 64
  synthetic: {train_size: 96, val_size: 64, features: 16, classes: 10, noise: 1.0}
training:
  epochs: 1
  max_steps: 3
  optimizer: sgd
  learning_rate: 0.1
  momentum: 0.9
  seed: 11
communication:
  quantization_bits: 32
output:
  metrics: false
)";

std::string gpt_config() {
  return std::string(R"(
model_config:
  type: transformer
  context: 8
  n_emb: 16
  n_heads: 2
  n_blocks: 6
  dropout: 0.0
dataset_config:
  name: text
  source: )") + (fs::path(TEST_CONFIG_DIR) / "e2e_hello.txt").string() + R"(
  windows_per_epoch: 48
  batch_size: 16
  val_batch_size: 16
training:
  epochs: 1
  max_steps: 2
  optimizer: adamw
  learning_rate: 0.003
  grad_clip: 0.5
  seed: 5
communication:
  quantization_bits: 32
output:
  metrics: false
  sample_tokens: 0
)";
}

struct Outcome {
  std::string error;  // empty when the run completed
  std::map<std::string, NamedArray> tensors;  // parameters and optimizer state by name
  std::vector<double> losses;
};

class Pipeline : public ::testing::Test {
 public:
  void SetUp() override {
    at::set_num_threads(1);
    dir_ = fs::temp_directory_path() / ("arceus-pipeline-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // One run of `yaml` with `sets` on `ranks` in-process ranks (1 + stage ranks).
  Outcome run(const std::string& yaml, int ranks, const std::vector<std::string>& sets) {
    std::string out = (dir_ / ("run" + std::to_string(count_++))).string();
    std::vector<Override> overrides;
    for (const auto& s : sets) {
      if (s.rfind("output.dir=", 0) == 0) out = s.substr(11);
      else overrides.push_back(parse_override(s));
    }
    overrides.push_back(parse_override("output.dir=" + out));
    Outcome r;
    try {
      const Config config = parse_config(yaml, overrides, "<test>");
      TrainOptions options;
      options.threads = "1";
      options.quiet = true;
      options.progress = "none";
      const JobResult result = run_in_process(ranks, config, options, nullptr, kTimeoutSeconds);
      if (result.state != RunState::Completed) {
        r.error = std::string(to_string(result.state)) + ": " + result.error;
        return r;
      }
      for (const auto& e : result.summary["epochs"])
        for (double l : e["step_losses"]) r.losses.push_back(l);
      const CheckpointData ck = read_checkpoint((fs::path(out) / "checkpoint.h5").string());
      for (const auto& a : ck.parameters) r.tensors[a.name] = a;
      for (const auto& a : ck.optimizer) r.tensors[a.name] = a;
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    return r;
  }

  fs::path dir_;
  int count_ = 0;
};

// Every tensor of `got` equals the reference's; returns a description of the first mismatch.
std::string compare(const Outcome& want, const Outcome& got) {
  if (!got.error.empty()) return "the run failed: " + got.error;
  if (got.tensors.size() != want.tensors.size())
    return std::to_string(got.tensors.size()) + " tensors, the reference has " + std::to_string(want.tensors.size());
  if (got.losses.size() != want.losses.size()) return "a different number of steps";
  for (size_t i = 0; i < want.losses.size(); ++i)
    if (std::abs(got.losses[i] - want.losses[i]) > kTolerance * (1 + std::abs(want.losses[i])))
      return "step " + std::to_string(i + 1) + " loss " + std::to_string(got.losses[i]) + ", reference " +
             std::to_string(want.losses[i]);
  for (const auto& [name, ref] : want.tensors) {
    auto it = got.tensors.find(name);
    if (it == got.tensors.end()) return "no tensor '" + name + "'";
    const NamedArray& a = it->second;
    if (a.shape != ref.shape || a.data.size() != ref.data.size()) return "tensor '" + name + "' has another shape";
    for (size_t i = 0; i < ref.data.size(); ++i) {
      const double err = std::abs(double(a.data[i]) - double(ref.data[i]));
      if (err > kTolerance * (1 + std::abs(double(ref.data[i])))) {
        return "tensor '" + name + "' element " + std::to_string(i) + ": " + std::to_string(a.data[i]) +
               ", reference " + std::to_string(ref.data[i]) + " (error " + std::to_string(err) + ")";
      }
    }
  }
  return "";
}

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
