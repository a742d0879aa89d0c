// Who does what: the plan (the model's layers split into chunks), which stage holds which
// chunks, the rank of each stage, and each rank's role. Shared by the runtime and the REST
// shim. Torch-free.
//
// Numbering: stages are 1-based and stage s runs on rank s (rank 0 orchestrates); chunks are
// 0-based in model order and chunk c is held by stage c % S + 1 (with chunks_per_rank v > 1 a
// stage holds the non-contiguous chunks s-1, s-1+S, ...; with v = 1 chunk c is stage c + 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "partition/partition.h"

namespace arceus {

struct Placement {
  std::vector<LayerRange> chunks;  // S * v chunks covering the model in order
  int64_t stages = 1;              // S
  int64_t chunks_per_rank = 1;     // v
  // The transport rank of stage s at index s - 1; empty: stage s runs on rank s. (Devices that
  // joined a server take the stages after the world's ranks, on the ranks they were given.)
  std::vector<int> ranks;

  int64_t chunk_count() const { return static_cast<int64_t>(chunks.size()); }
  int64_t stage_of_chunk(int64_t chunk) const { return chunk % stages + 1; }
  int rank_of_stage(int64_t stage) const {
    return ranks.empty() ? static_cast<int>(stage) : ranks[static_cast<size_t>(stage - 1)];
  }
  // The stage a transport rank runs, 0 for none (rank 0, idle ranks).
  int64_t stage_of_rank(int rank) const;
  int rank_of_chunk(int64_t chunk) const { return rank_of_stage(stage_of_chunk(chunk)); }
  // The chunks of stage s, ascending.
  std::vector<int64_t> chunks_of_stage(int64_t stage) const;
  // Ranks 1..S.
  std::vector<int> stage_ranks() const;
  // "0-3" or, for several chunks, "0-1,4-5": the layers a stage holds.
  std::string layers_of_stage(int64_t stage) const;
  bool holds_layer(int64_t stage, int64_t layer) const;
};

// The placement of a job on a world of `world` ranks: rank 0 orchestrates, so world - 1 stage
// ranks (or partition.stages), each holding partition.chunks_per_rank chunks; the chunks come
// from partition.layers, or the `uniform` / `balanced` split of the model into S * v chunks.
// world = 1 is the reference run: one stage holding the whole model as one chunk, whatever
// the config's partition says. Throws PartitionError naming what does not fit. `vocab` (a
// GPT's vocabulary size) refines the balanced partition of a transformer; 0 = not known yet
// (a 256-character stand-in).
// `available`: the transport ranks that may hold stages, in stage order (empty: 1..world-1).
Placement make_placement(const Config& config, int world, int64_t vocab = 0, const std::vector<int>& available = {});

// The process rank that runs stage s in a world of `world` processes (the one-process world
// runs every stage inside rank 0), and the other way round: the stage a process rank runs
// (0 for rank 0 of a multi-process world and for idle ranks; the one-process world's rank 0
// reports stage 1).
inline int process_rank_of_stage(int64_t stage, int world) { return world == 1 ? 0 : static_cast<int>(stage); }
inline int64_t stage_of_process_rank(int rank, int world, int64_t stages) {
  if (world == 1) return 1;
  return rank >= 1 && rank <= stages ? rank : 0;
}

// "orchestrator", "stage" or "idle"; "orchestrator+stage" when the world is one process.
std::string role_of(int rank, int world, int64_t stages);

// Partition costs of the model's layers (a GPT's head cost depends on the vocabulary: 0 =
// a 256-character stand-in), and the number of layers.
std::vector<double> layer_costs(const Config& config, int64_t vocab);
int64_t model_layers(const Config& config);

}  // namespace arceus
