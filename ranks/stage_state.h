// A stage's checkpoint state (parameters and optimizer state under global names, RNG states
// per chunk) as it travels between a stage and rank 0, and its conversions.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "storage/storage.h"

namespace arceus {

class StageModel;
struct GptConfig;

struct StageState {
  uint64_t global_step = 0;
  std::vector<NamedArray> parameters;
  std::vector<NamedArray> optimizer;  // "<parameter>:<state>" (exp_avg, exp_avg_sq, step, momentum_buffer)
  std::vector<NamedBytes> rng;        // "stage<c>": the generator of chunk c
};

// Byte layout: global step, parameters, optimizer arrays, RNG byte strings, each with sizes.
// unpack_state throws WireError naming the offset on a truncated message.
std::vector<uint8_t> pack_state(const StageState& state);
StageState unpack_state(const std::vector<uint8_t>& bytes);

// A hash of the parameters (names, shapes and every float's bits, in order): equal on two
// replicas of a stage exactly when they hold the same bits.
uint64_t parameter_hash(const StageState& state);

NamedArray to_named(const std::string& name, const at::Tensor& t);
at::Tensor from_named(const NamedArray& a);

// The whole GPT (every layer) with `parameters` loaded by global name, for sampling and
// `arceus generate`. Building a model reseeds torch's global generator (per-layer
// initialisation); its state is restored afterwards.
std::unique_ptr<StageModel> whole_gpt(const GptConfig& config, uint64_t seed, const std::vector<NamedArray>& parameters);

}  // namespace arceus
