// The message rule of a pipeline, written once. Every reader of a schedule's action lists asks
// here which messages an action consumes and which it sends: the validator (simulate.cpp, for
// its dependencies), the planner's link simulation (planner/simulate_links.cpp), the stage
// worker (the receives it posts, the sends of F, B and I) and the orchestrator (rank 0's inputs
// and labels). Torch-free and MPI-free.
//
// The rule, with chunks 0..C-1 and micro-batch m:
//   F(c, m) consumes the input of m from rank 0 (c = 0) or the activation from chunk c-1, and
//           the labels of m from rank 0 (c = C-1); it sends its activation to chunk c+1 (c < C-1).
//   B(c, m) and I(c, m) consume the gradient of chunk c's output from chunk c+1 (c < C-1); they
//           send the gradient of chunk c's input to chunk c-1 (c > 0).
//   W(c, m) consumes and sends nothing.
// A message between two chunks of the same stage rank (S = 1 with v > 1) is handed over in
// memory (local), never over the transport. Receives are posted when a batch starts and sends
// leave at the end of the action that produces them, so a program needs no send or receive
// actions of its own (torch.distributed.pipelining adds them to its lists because its runtime
// posts receives lazily).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "ranks/schedule/action.h"

namespace arceus {

enum class Flow : uint8_t {
  Input,       // rank 0 -> chunk 0: the micro-batch's inputs
  Labels,      // rank 0 -> chunk C-1: the micro-batch's targets
  Activation,  // chunk c -> c+1: chunk c's output
  Gradient,    // chunk c+1 -> c: the gradient of chunk c's output
};

constexpr int64_t kOrchestrator = -1;  // Message::from of rank 0's messages

struct Message {
  Flow flow;
  int64_t from;         // the sending chunk, or kOrchestrator
  int64_t to;           // the receiving chunk
  int64_t micro_batch;
  // The chunk whose output (activation or gradient) sizes the message: its rows are the micro-
  // batch's rows (times a transformer's context) and its width that chunk's output width. -1 for
  // rank 0's messages: an input is sized by the model's input, labels by the rows alone.
  int64_t boundary() const {
    if (flow == Flow::Activation) return from;
    if (flow == Flow::Gradient) return to;
    return -1;
  }
  bool operator==(const Message& o) const {
    return flow == o.flow && from == o.from && to == o.to && micro_batch == o.micro_batch;
  }
};

// Both ends on one stage rank: handed over in memory.
inline bool is_local(const Message& m, const PipelineShape& shape) {
  return m.from != kOrchestrator && rank_of_chunk(m.from, shape.ranks) == rank_of_chunk(m.to, shape.ranks);
}

// What `a` consumes, in the order a handler takes them (input or activation, then labels).
std::vector<Message> consumes(const Action& a, const PipelineShape& shape);
// What `a` sends when it is done (at most one message).
std::optional<Message> sends(const Action& a, const PipelineShape& shape);
// Rank 0's messages of one micro-batch: the input to chunk 0, then the labels to chunk C-1.
std::vector<Message> orchestrator_sends(int64_t micro_batch, const PipelineShape& shape);

// The kinds of action that send a message between chunks: F sends activations; B or I (a
// schedule's backward is one or the other) send gradients. Empty for rank 0's messages.
std::vector<ActionKind> producers(const Message& m);
// The action of the same chunk and micro-batch that `a` needs first: F before B or I, I before W.
std::optional<Action> same_chunk_prerequisite(const Action& a);

}  // namespace arceus
