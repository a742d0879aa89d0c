// Pipeline schedules as data. A schedule is one list of actions per stage rank; the runtime
// (ranks/executor.h) runs a rank's list in order with one handler per action kind, and the
// validator (ranks/schedule/simulate.h) checks all ranks' lists together before any training.
// Torch-free and MPI-free.
//
// Numbering (0-based everywhere): S stage ranks 0..S-1 (stage rank s is MPI rank s + 1), each
// owning v chunks ("virtual stages"); the model is split into S*v chunks 0..S*v-1 and chunk c
// lives on stage rank c % S (Megatron-LM's interleaved placement; with v = 1 chunk c is stage c).
// Activations go chunk c -> c+1, gradients c+1 -> c.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace arceus {

class ScheduleError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

enum class ActionKind : uint8_t {
  Forward = 'F',     // forward of (chunk, micro-batch); sends the activation to chunk + 1
  Backward = 'B',    // full backward: input gradient (sent to chunk - 1) and weight gradients
  InputGrad = 'I',   // backward for the input gradient only (sent to chunk - 1 at once)
  WeightGrad = 'W',  // backward for the weight gradients only (after the chunk's I)
};

struct Action {
  ActionKind kind;
  int32_t chunk;        // global chunk index 0..S*v-1
  int32_t micro_batch;  // 0..M-1
  bool operator==(const Action& o) const {
    return kind == o.kind && chunk == o.chunk && micro_batch == o.micro_batch;
  }
};

// "F3.1": kind, chunk, '.', micro-batch.
std::string to_string(const Action& a);

// One rank's actions in execution order.
using Program = std::vector<Action>;

struct PipelineShape {
  int64_t ranks = 1;            // S: stage ranks
  int64_t chunks_per_rank = 1;  // v
  int64_t micro_batches = 1;    // M
  int64_t chunks() const { return ranks * chunks_per_rank; }
};

// "S=3, v=2, M=8", for messages.
std::string to_string(const PipelineShape& shape);

inline int64_t rank_of_chunk(int64_t chunk, int64_t ranks) { return chunk % ranks; }
// The chunks of stage rank `rank`, ascending: rank, rank + S, rank + 2S, ...
std::vector<int64_t> chunks_of_rank(int64_t rank, const PipelineShape& shape);

}  // namespace arceus
