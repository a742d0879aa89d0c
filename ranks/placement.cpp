#include "ranks/placement.h"

#include "models/gpt.h"
#include "ranks/job.h"

namespace arceus {

std::vector<int64_t> Placement::chunks_of_stage(int64_t stage) const {
  std::vector<int64_t> out;
  for (int64_t c = stage - 1; c < chunk_count(); c += stages) out.push_back(c);
  return out;
}

std::vector<int> Placement::stage_ranks() const {
  std::vector<int> r;
  for (int64_t s = 1; s <= stages; ++s) r.push_back(rank_of_stage(s));
  return r;
}

std::string Placement::layers_of_stage(int64_t stage) const {
  std::string s;
  for (int64_t c : chunks_of_stage(stage)) {
    const LayerRange& r = chunks[static_cast<size_t>(c)];
    s += (s.empty() ? "" : ",") + std::to_string(r.first) + "-" + std::to_string(r.end() - 1);
  }
  return s;
}

int64_t Placement::stage_of_rank(int rank) const {
  for (int64_t s = 1; s <= stages; ++s)
    if (rank_of_stage(s) == rank) return s;
  return 0;
}

bool Placement::holds_layer(int64_t stage, int64_t layer) const {
  for (int64_t c : chunks_of_stage(stage)) {
    const LayerRange& r = chunks[static_cast<size_t>(c)];
    if (layer >= r.first && layer < r.end()) return true;
  }
  return false;
}

int64_t model_layers(const Config& c) {
  return c.model.type == "transformer" ? c.model.n_blocks + 2 : static_cast<int64_t>(c.model.layer_sizes.size()) - 1;
}

std::vector<double> layer_costs(const Config& c, int64_t vocab) {
  if (c.model.type != "transformer") return mlp_layer_costs(c.model.layer_sizes, c.communication.quantization_bits);
  return gpt_layer_costs(gpt_config_of(c, vocab > 0 ? vocab : 256), c.communication.quantization_bits);
}

Placement make_placement(const Config& c, int world, int64_t vocab, const std::vector<int>& available) {
  const int64_t layers = model_layers(c);
  Placement p;
  if (world == 1) {  // the reference run: one stage, one chunk, whatever the config says
    p.chunks = {LayerRange{0, layers}};
    return p;
  }
  const int64_t owners = available.empty() ? world - 1 : static_cast<int64_t>(available.size());  // rank 0 orchestrates
  const int64_t v = c.partition.chunks_per_rank;
  p.chunks_per_rank = v;
  try {
    if (!c.partition.layers.empty()) {
      p.chunks = explicit_partition(c.partition.layers, layers);
      p.stages = static_cast<int64_t>(p.chunks.size());
    } else {
      const int64_t stages = c.partition.stages > 0 ? c.partition.stages : owners;
      if (stages > owners) {
        throw PartitionError("[partition] partition.stages = " + std::to_string(stages) + " needs " +
                             std::to_string(stages + 1) + " ranks (rank 0 orchestrates), but the world has " +
                             std::to_string(world));
      }
      p.stages = stages;
      if (stages * v > layers) {
        throw PartitionError("[partition] " + std::to_string(stages) + " stages x partition.chunks_per_rank = " +
                             std::to_string(v) + " need " + std::to_string(stages * v) +
                             " chunks of at least one layer, but the model has " + std::to_string(layers) +
                             " layers");
      }
      p.chunks = c.partition.method == "balanced" ? balanced_chunk_partition(layer_costs(c, vocab), stages, v)
                                                  : uniform_partition(layers, stages * v);
    }
  } catch (const PartitionError& e) {
    if (c.partition.stages == 0 && c.partition.layers.empty() && v == 1 && owners > layers) {
      throw PartitionError(std::string(e.what()) + "; mpirun -np " + std::to_string(world) +
                           " gives rank 0 (orchestrator) + " + std::to_string(owners) +
                           " stage ranks: use -np " + std::to_string(layers + 1) +
                           " or fewer, or set partition.stages to leave ranks idle");
    }
    throw;
  }
  if (p.stages > owners) {
    throw PartitionError("[partition] the explicit placement has " + std::to_string(p.stages) +
                         " stages but the world has " + std::to_string(world) + " ranks (at most " +
                         std::to_string(owners) + " stages)");
  }
  if (!available.empty()) p.ranks.assign(available.begin(), available.begin() + p.stages);
  return p;
}

std::string role_of(int rank, int world, int64_t stages) {
  if (world == 1) return "orchestrator+stage";
  if (rank == 0) return "orchestrator";
  return rank <= stages ? "stage" : "idle";
}

}  // namespace arceus
