// Who does what: the plan (the model's layers split into chunks), which stage holds which
// chunks, the rank of each (replica, stage), and each rank's role. Shared by the runtime and the
// REST shim. Torch-free.
//
// Numbering: stages are 1-based, replicas 0-based, chunks 0-based in model order. Chunk c is
// held by stage c % S + 1 (with chunks_per_rank v > 1 a stage holds the non-contiguous chunks
// s-1, s-1+S, ...; with v = 1 chunk c is stage c + 1).
//
// Rank layout, replica-major: rank 0 orchestrates; replica r's stage s runs on rank
// 1 + r*S + (s-1). So replica 0 is ranks 1..S (with R = 1 exactly today's stage s on rank s),
// replica 1 is ranks S+1..2S, and so on; ranks after 1 + R*S are idle. A hostfile listing one
// slot per host puts one (replica, stage) per host in that order; with `slots=S` per host a
// whole replica's pipeline shares a host (its messages over shared memory, the replicas'
// gradient sync over the network).
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
  int64_t replicas = 1;            // R: copies of the pipeline, each on its own S ranks
  // The transport rank of (replica r, stage s) at index r*S + s-1; empty: rank 1 + r*S + s-1.
  // (Devices that joined a server take the slots after the world's ranks, on the ranks they
  // were given.)
  std::vector<int> ranks;

  // (replica, stage) of a worker; stage 0 for no stage (rank 0, idle ranks).
  struct Slot {
    int64_t replica = 0;
    int64_t stage = 0;
  };

  int64_t chunk_count() const { return static_cast<int64_t>(chunks.size()); }
  int64_t workers() const { return replicas * stages; }
  int64_t stage_of_chunk(int64_t chunk) const { return chunk % stages + 1; }
  int rank_of_stage(int64_t stage, int64_t replica = 0) const {
    const int64_t slot = replica * stages + stage - 1;
    return ranks.empty() ? static_cast<int>(1 + slot) : ranks[static_cast<size_t>(slot)];
  }
  int rank_of_chunk(int64_t chunk, int64_t replica = 0) const { return rank_of_stage(stage_of_chunk(chunk), replica); }
  // The slot a transport rank runs ({0, 0} for none: rank 0, idle ranks).
  Slot slot_of_rank(int rank) const;
  // The stage a transport rank runs, 0 for none.
  int64_t stage_of_rank(int rank) const { return slot_of_rank(rank).stage; }
  // The chunks of stage s, ascending.
  std::vector<int64_t> chunks_of_stage(int64_t stage) const;
  // Every worker rank, replica-major: replica 0's stages 1..S, then replica 1's, ...
  std::vector<int> stage_ranks() const;
  // The ranks of stage s in replicas 0..R-1 (its gradient-sync group).
  std::vector<int> stage_group(int64_t stage) const;
  // "0-3" or, for several chunks, "0-1,4-5": the layers a stage holds.
  std::string layers_of_stage(int64_t stage) const;
  bool holds_layer(int64_t stage, int64_t layer) const;
};

// The placement of a job on a world of `world` ranks: rank 0 orchestrates, so world - 1 worker
// ranks, R * S of them holding stages (R = partition.replicas, S = partition.stages; with one of
// them 'auto' it is what the world allows once the other is fixed, with both 'auto' S = 1 and
// R = world - 1; with replicas 1 and stages auto, S = world - 1 as before replicas), each holding
// partition.chunks_per_rank chunks; the chunks come from partition.layers, or the `uniform` /
// `balanced` split of the model into S * v chunks. world = 1 is the reference run: one stage
// holding the whole model as one chunk, whatever the config's partition says. Throws
// PartitionError naming every number that does not fit. `vocab` (a GPT's vocabulary size)
// refines the balanced partition of a transformer; 0 = not known yet (a 256-character
// stand-in). `available`: the transport ranks that may hold stages, in slot order (empty:
// 1..world-1).
Placement make_placement(const Config& config, int world, int64_t vocab = 0, const std::vector<int>& available = {});

// The process rank that runs stage s in a world of `world` processes (the one-process world
// runs every stage inside rank 0), and the other way round: the stage a process rank runs
// (0 for rank 0 of a multi-process world and for idle ranks; the one-process world's rank 0
// reports stage 1). Replica 0 only; Placement knows the others.
inline int process_rank_of_stage(int64_t stage, int world) { return world == 1 ? 0 : static_cast<int>(stage); }
inline int64_t stage_of_process_rank(int rank, int world, int64_t stages) {
  if (world == 1) return 1;
  return rank >= 1 && rank <= stages ? rank : 0;
}

// "orchestrator", "stage" or "idle"; "orchestrator+stage" when the world is one process.
// `workers`: the ranks holding stages (R * S).
std::string role_of(int rank, int world, int64_t workers);

// Partition costs of the model's layers (a GPT's head cost depends on the vocabulary: 0 =
// a 256-character stand-in), and the number of layers.
std::vector<double> layer_costs(const Config& config, int64_t vocab);
int64_t model_layers(const Config& config);

}  // namespace arceus
