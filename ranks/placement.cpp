#include "ranks/placement.h"

#include <tuple>
#include <utility>

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
  for (int64_t replica = 0; replica < replicas; ++replica)
    for (int64_t s = 1; s <= stages; ++s) r.push_back(rank_of_stage(s, replica));
  return r;
}

std::vector<int> Placement::stage_group(int64_t stage) const {
  std::vector<int> r;
  for (int64_t replica = 0; replica < replicas; ++replica) r.push_back(rank_of_stage(stage, replica));
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

Placement::Slot Placement::slot_of_rank(int rank) const {
  for (int64_t replica = 0; replica < replicas; ++replica)
    for (int64_t s = 1; s <= stages; ++s)
      if (rank_of_stage(s, replica) == rank) return {replica, s};
  return {};
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

namespace {

std::string plural(int64_t n, const std::string& noun) { return std::to_string(n) + " " + noun + (n == 1 ? "" : "s"); }

// R and S from the config and the worker ranks (`owners`); S from an explicit placement when
// `explicit_stages` > 0. PartitionError naming every number that does not fit.
std::pair<int64_t, int64_t> replicas_and_stages(const Config& c, int world, int64_t owners, int64_t explicit_stages) {
  const int64_t asked_r = c.partition.replicas, asked_s = explicit_stages > 0 ? explicit_stages : c.partition.stages;
  int64_t r = asked_r, s = asked_s;
  if (s == 0 && r == 0) {  // both auto: data parallelism, one stage per replica
    s = 1;
    r = owners;
  } else if (s == 0) {
    s = owners / r;
    if (s == 0) {
      throw PartitionError("[partition] " + plural(r, "replica") + " need at least " + std::to_string(r) +
                           " worker ranks (rank 0 + " + std::to_string(r) + "); mpirun -np " + std::to_string(world) +
                           " gave " + std::to_string(owners));
    }
  } else if (r == 0) {
    r = owners / s;
    if (r == 0) r = 1;  // reported below: S alone does not fit
  }
  if (r * s > owners) {
    const std::string what = r == 1 ? plural(s, "stage") : plural(r, "replica") + " x " + plural(s, "stage");
    throw PartitionError("[partition] " + what + " need " + std::to_string(r * s + 1) + " ranks (rank 0 + " +
                         std::to_string(r * s) + " workers); mpirun -np " + std::to_string(world) + " gave " +
                         std::to_string(owners) + (owners == 1 ? " worker" : " workers"));
  }
  return {r, s};
}

}  // namespace

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
      std::tie(p.replicas, p.stages) = replicas_and_stages(c, world, owners, static_cast<int64_t>(p.chunks.size()));
    } else {
      std::tie(p.replicas, p.stages) = replicas_and_stages(c, world, owners, 0);
      const int64_t stages = p.stages;
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
    if (c.partition.stages == 0 && c.partition.replicas == 1 && c.partition.layers.empty() && v == 1 &&
        owners > layers) {
      throw PartitionError(std::string(e.what()) + "; mpirun -np " + std::to_string(world) +
                           " gives rank 0 (orchestrator) + " + std::to_string(owners) +
                           " stage ranks: use -np " + std::to_string(layers + 1) +
                           " or fewer, set partition.stages to leave ranks idle, or partition.replicas to use "
                           "them as copies of the pipeline");
    }
    throw;
  }
  if (!available.empty()) p.ranks.assign(available.begin(), available.begin() + p.workers());
  return p;
}

std::string role_of(int rank, int world, int64_t workers) {
  if (world == 1) return "orchestrator+stage";
  if (rank == 0) return "orchestrator";
  return rank <= workers ? "stage" : "idle";
}

}  // namespace arceus
