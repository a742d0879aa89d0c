// Whole jobs in this process for the equivalence tests (test_pipeline.cpp, test_replicas.cpp):
// a run of a config on N in-process ranks, its parameters and optimizer state read back from
// its checkpoint, and the comparison with the reference that names the first mismatch.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"
#include "ranks/trainer.h"
#include "storage/storage.h"

#ifndef TEST_CONFIG_DIR
#define TEST_CONFIG_DIR ""
#endif

namespace arceus::test {

namespace fs = std::filesystem;

// Tensors are compared element by element; float32 sums taken in another order could differ
// in the last bits, so the bound is named, not zero. (Observed: 0, the same operations run in
// the same order.)
inline constexpr double kTolerance = 1e-6;

// A rank that waits this long for a message fails the run (a schedule that deadlocks fails
// in seconds, not at the CTest timeout; the validator rejects such lists before any run).
inline constexpr double kTimeoutSeconds = 30;

inline const char* kMlp = R"(
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

inline std::string gpt_config() {
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
  nlohmann::json summary;  // what summary.json holds
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
      r.summary = result.summary;
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
inline std::string compare(const Outcome& want, const Outcome& got) {
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

}  // namespace arceus::test
