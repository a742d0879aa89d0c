// A character-level GPT (decoder-only transformer) as pipeline layers.
//
// "Layers" for partitioning (gpt_layer_count = n_blocks + 2):
//   0                embeddings: token (vocab x n_emb) + position (context x n_emb)
//   1 .. n_blocks    pre-LayerNorm blocks: x += Drop(Proj(CausalMHA(LN1(x)))); x += Drop(MLP(LN2(x)))
//                    (MLP = Linear(n_emb, 4 n_emb), GELU, Linear(4 n_emb, n_emb); attention
//                    weights are dropped out too)
//   n_blocks + 1     head: final LayerNorm + Linear(n_emb, vocab) -> logits
//
// A slice [first, end) is any contiguous range of these. Tensors between slices:
//   first slice input   int64 token ids [B, T], 1 <= T <= context (int32 is accepted too)
//   between slices      float32 [B, T, n_emb]
//   last slice output   float32 logits [B, T, vocab] (targets: the ids shifted by one, [B, T])
// For the StageModel width accessors: in_features() is n_emb, except on the first slice where it
// is `context` (token ids per sequence: the width of the row the orchestrator sends);
// out_features() is n_emb, except on the slice holding the head where it is vocab_size (the
// logits per position: the "classes"). forward_flops_per_sample() counts one sequence of
// `context` tokens (a "sample" is a sequence, not a token).
//
// Weights: before building layer i's modules, torch::manual_seed(seed * 1000003 + i), then
// Linear and Embedding weights ~ N(0, 0.02), biases 0, LayerNorm 1 and 0 (GPT-2's init): the same
// seed gives the same weights whatever the partition. Parameter names are global
// ("embed.token.weight", "blocks.<b>.attn.qkv.weight", "head.linear.bias", ...; block b is
// layer b + 1) and gpt_layer_of maps each back to its layer.
//
// Dropout acts only in training mode (module().train(); torch modules start in training
// mode), never after module().eval(); with dropout 0 forward is deterministic.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/stage_model.h"

namespace arceus {

struct CharVocab;  // datasets/text.h

struct GptConfig {
  int64_t vocab_size = 0;
  int64_t context = 128;  // longest sequence (position embeddings)
  int64_t n_emb = 128;
  int64_t n_heads = 4;    // head size = n_emb / n_heads
  int64_t n_blocks = 3;
  double dropout = 0.1;
};

// std::invalid_argument naming the field when the config is unusable (vocab_size, context,
// n_emb, n_heads < 1; n_emb not a multiple of n_heads; n_blocks < 0; dropout outside [0, 1)).
void validate_gpt_config(const GptConfig& config);

// n_blocks + 2: embeddings, the blocks, the head.
int64_t gpt_layer_count(const GptConfig& config);

// The layer a parameter (or checkpoint tensor) belongs to: "embed.*" -> 0, "blocks.<b>.*" ->
// b + 1, "head.*" -> n_blocks + 1. Anything after the layer prefix is ignored, so optimizer
// state names such as "blocks.1.mlp.fc.weight:exp_avg" work too. std::invalid_argument for
// other names or a block index outside [0, n_blocks).
int64_t gpt_layer_of(const std::string& name, const GptConfig& config);

// Every parameter of the whole model, name and shape, in the order named_parameters() lists
// them: what a checkpoint of this config must hold (rank 0 can check one without building the
// model).
std::vector<std::pair<std::string, std::vector<int64_t>>> gpt_parameter_shapes(const GptConfig& config);

// Layers [range.first, range.end()) of the GPT (see above). std::invalid_argument for a bad
// config or a range that is not a non-empty slice of [0, gpt_layer_count).
std::unique_ptr<StageModel> make_gpt_slice(const GptConfig& config, LayerRange range, uint64_t seed);

// Forward FLOPs of one layer for one sequence of `context` tokens (T = context, C = n_emb,
// V = vocab_size): embeddings T*C (the position add); block 4*T*C*C*2 (Q, K, V, projection)
// + 2*T*T*C*2 (scores and weighted sum) + 2*T*C*4C*2 (MLP); head T*C*V*2. LayerNorm, softmax,
// GELU and residual adds are not counted.
double gpt_layer_forward_flops(const GptConfig& config, int64_t layer);

// Partition cost per layer and per sequence, in FLOP-equivalents like mlp_layer_costs:
// forward + backward FLOPs (backward = 2x forward for blocks and the head; the embeddings only
// accumulate their gradient, 2*T*C) plus the bytes the layer's output costs on the wire
// (T*C activations forward and T*C gradients back at `bits`; none after the head) times
// flops_per_byte. With a large vocabulary the head outweighs a block (T*C*V*6 vs
// ~T*C*(72C + 12T)). PartitionError for bits not in {32, 16, 8, 4} or a bad flops_per_byte;
// std::invalid_argument for a bad config.
std::vector<double> gpt_layer_costs(const GptConfig& config, int bits, double flops_per_byte = 100.0);

// Inverted dropout as the GPT uses it in training: each element is zeroed with probability
// q / 65536, q = round(p * 65536) (0.100006 for p = 0.1), and the others are scaled by
// 65536 / (65536 - q), so the expectation is exactly x. The mask comes from one 64-bit seed
// drawn from torch's default CPU generator per call, expanded by splitmix64 over 16-bit lanes
// (4 elements per 64-bit word, in parallel, independent of the thread count): ~4x cheaper
// than at::dropout's per-element Bernoulli draws on this CPU, and still reproducible from
// (and saved with) torch's generator state. Differentiable through the multiplication.
at::Tensor gpt_dropout(const at::Tensor& x, double p);

// Samples `tokens` characters after `prompt` from a model holding every layer
// (make_gpt_slice(config, {0, gpt_layer_count(config)}, seed)): the sequence is cropped to the
// last `context` tokens before each step; temperature > 0 samples from softmax(logits /
// temperature) with an at::Generator seeded by `seed`; temperature 0 takes the argmax. An empty
// prompt starts from token id 0 (the smallest code point of the vocabulary, usually '\n').
// Returns only the generated text (`tokens` code points from the vocabulary). Runs in eval mode
// without autograd and restores the module's training mode. std::invalid_argument when the
// model is not a whole GPT, its vocabulary size differs from `vocab`'s, a prompt character is
// not in the vocabulary, tokens < 0 or temperature < 0.
std::string gpt_generate(StageModel& whole_model, const CharVocab& vocab, const std::string& prompt,
                         int64_t tokens, double temperature, uint64_t seed);

}  // namespace arceus
