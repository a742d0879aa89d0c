// A contiguous slice of a model's layers, as one pipeline stage runs it.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "partition/partition.h"

namespace torch::nn {
class Module;
}

namespace arceus {

// The parameterized operations of one forward pass: (output, parameters) in order.
struct WeightOps {
  std::vector<std::pair<at::Tensor, std::vector<at::Tensor>>> ops;
};

class StageModel {
 public:
  virtual ~StageModel() = default;
  // MLP: x [rows, in_features()] -> [rows, out_features()] (logits when the slice ends the
  // model). GPT slices take token ids or [rows, T, n_emb]: see models/gpt.h. With `ops`, every
  // parameterized operation of the pass (a Linear, a LayerNorm, the embeddings) appends its
  // output and the parameters it used, in order: a split backward takes the gradients of
  // these outputs first (I), then each operation's weight gradients from its own output (W),
  // so no input gradient is computed twice.
  virtual at::Tensor forward(const at::Tensor& x, WeightOps* ops = nullptr) = 0;
  // Trainable tensors with their global names (e.g. "layers.2.weight"), the same names
  // whatever the partition, so checkpoints are partition-independent.
  virtual std::vector<std::pair<std::string, at::Tensor>> named_parameters() = 0;
  virtual torch::nn::Module& module() = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // FLOPs of one sample's forward pass through this slice (backward counted as 2x).
  virtual double forward_flops_per_sample() const = 0;
  virtual LayerRange layers() const = 0;
  int64_t parameter_count();
};

// Layers [range.first, range.end()) of the MLP `layer_sizes`: Linear, with ReLU after every
// layer but the model's last. Layer i is initialised from a generator seeded by (seed, i),
// so the same seed gives the same weights whatever the partition. Model construction seeds
// torch's global generator: the factories serialise it (construction_mutex), so ranks that are
// threads of one process build their slices safely.
std::mutex& construction_mutex();
std::unique_ptr<StageModel> make_mlp_slice(const std::vector<int64_t>& layer_sizes, LayerRange range,
                                           uint64_t seed);

}  // namespace arceus
