// One generator per schedule. They only order actions; simulate() checks the result.
//
// All of them give every chunk the same backward order of micro-batches as its forward order,
// so no rank waits on an action that is later in another rank's list than the one it blocks
// (the simulation in the tests proves this for every S 1..8, v 1..4, M 1..32).
#include "ranks/schedule/generators.h"

#include <algorithm>
#include <string>

namespace arceus {
namespace {

Action act(ActionKind kind, int64_t chunk, int64_t micro_batch) {
  return Action{kind, static_cast<int32_t>(chunk), static_cast<int32_t>(micro_batch)};
}

void require_valid(const char* schedule, const PipelineShape& shape) {
  const auto fail = [&](const std::string& rule) {
    throw ScheduleError("[schedule] " + std::string(schedule) + " with " + to_string(shape) + ": " +
                        rule);
  };
  if (shape.ranks < 1) fail("S (stage ranks) must be at least 1");
  if (shape.chunks_per_rank < 1) fail("v (partition.chunks_per_rank) must be at least 1");
  if (shape.micro_batches < 1) fail("M (training.micro_batches) must be at least 1");
}

void require_one_chunk(const char* schedule, const PipelineShape& shape) {
  require_valid(schedule, shape);
  if (shape.chunks_per_rank != 1) {
    throw ScheduleError("[schedule] " + std::string(schedule) + " with " + to_string(shape) +
                        ": runs one chunk per stage rank (partition.chunks_per_rank must be 1)");
  }
}

// `warmup` forwards, then one forward and one backward alternately, then the remaining
// backwards. `forwards` and `backwards` have the same length.
Program one_forward_one_backward(const std::vector<Action>& forwards,
                                 const std::vector<Action>& backwards, int64_t warmup) {
  Program p;
  p.reserve(forwards.size() + backwards.size());
  const size_t w = static_cast<size_t>(std::clamp<int64_t>(warmup, 0, forwards.size()));
  size_t f = 0, b = 0;
  while (f < w) p.push_back(forwards[f++]);
  while (f < forwards.size()) {
    p.push_back(forwards[f++]);
    p.push_back(backwards[b++]);
  }
  while (b < backwards.size()) p.push_back(backwards[b++]);
  return p;
}

// Rank k of 1F1B with `warmup` forwards before the first backward. Plain 1F1B warms up
// min(S-1-k, M), so that at most S-k micro-batches are between their F and their B on rank k.
Program one_f_one_b_rank(const PipelineShape& shape, int64_t k, int64_t warmup) {
  std::vector<Action> forwards, backwards;
  for (int64_t m = 0; m < shape.micro_batches; ++m) {
    forwards.push_back(act(ActionKind::Forward, k, m));
    backwards.push_back(act(ActionKind::Backward, k, m));
  }
  return one_forward_one_backward(forwards, backwards, warmup);
}
Program one_f_one_b_rank(const PipelineShape& shape, int64_t k) { return one_f_one_b_rank(shape, k, warmup_1f1b(shape, k)); }

}  // namespace

int64_t warmup_1f1b(const PipelineShape& shape, int64_t k) { return shape.ranks - 1 - k; }
int64_t warmup_eager1f1b(const PipelineShape& shape, int64_t k) { return 2 * (shape.ranks - 1 - k) + 1; }

std::vector<Program> generate_sequential(const PipelineShape& shape) {
  require_one_chunk("sequential", shape);
  std::vector<Program> programs(static_cast<size_t>(shape.ranks));
  for (int64_t s = 0; s < shape.ranks; ++s) {
    for (int64_t m = 0; m < shape.micro_batches; ++m) {
      programs[s].push_back(act(ActionKind::Forward, s, m));
      programs[s].push_back(act(ActionKind::Backward, s, m));
    }
  }
  return programs;
}

std::vector<Program> generate_gpipe(const PipelineShape& shape) {
  require_one_chunk("gpipe", shape);
  std::vector<Program> programs(static_cast<size_t>(shape.ranks));
  for (int64_t s = 0; s < shape.ranks; ++s) {
    for (int64_t m = 0; m < shape.micro_batches; ++m) {
      programs[s].push_back(act(ActionKind::Forward, s, m));
    }
    for (int64_t m = 0; m < shape.micro_batches; ++m) {
      programs[s].push_back(act(ActionKind::Backward, s, m));
    }
  }
  return programs;
}

std::vector<Program> generate_1f1b(const PipelineShape& shape) {
  require_one_chunk("1f1b", shape);
  std::vector<Program> programs;
  for (int64_t k = 0; k < shape.ranks; ++k) programs.push_back(one_f_one_b_rank(shape, k));
  return programs;
}

// Eager 1F1B (Qi et al., "Pipeline Parallelism with Controllable Memory", 2024): rank k warms
// up with 2(S-1-k) + 1 forwards instead of S-1-k, so that each activation and gradient is
// sent one forward (or backward) before it is needed and its transfer overlaps with compute.
// The last rank, too, runs its next forward before each backward. This is what a link that
// needs about as long to carry a micro-batch as a stage needs to compute it asks for: plain
// 1F1B then waits for every transfer. Costs memory: rank k holds up to 2(S-k) micro-batches
// between their F and B, against S-k.
std::vector<Program> generate_eager1f1b(const PipelineShape& shape) {
  require_one_chunk("eager1f1b", shape);
  std::vector<Program> programs;
  for (int64_t k = 0; k < shape.ranks; ++k) programs.push_back(one_f_one_b_rank(shape, k, warmup_eager1f1b(shape, k)));
  return programs;
}

// Megatron-LM's interleaved 1F1B. The micro-batches are taken in rounds; within a round a rank
// runs the forwards of its chunks in ascending order, each chunk over all the round's micro-
// batches, and the backwards in the same way with the chunks descending. Rank r warms up with
// (S-1-r) + (v-1) * g forwards (g: the first round's size), then alternates one forward and
// one backward. With v = 1 this is exactly 1f1b.
//
// Rounds: M is split into max(1, M / S) rounds as equal as possible, the larger ones first, so
// every round has at least S micro-batches when M >= S (one round of M when M < S) and every
// M >= 1 works. Rounds of exactly S with a shorter last one (Megatron-LM's groups) deadlock
// some shapes under Megatron's warm-up (S=4, v=3, M=5) and, under the warm-up below, lose
// bubble (S=3, v=2, M=4: 0.29 instead of 0.2).
//
// Warm-up: Megatron-LM warms up 2(S-1-r) + (v-1)g forwards. In the validator's model (free
// messages, non-blocking sends, in-order ranks) (S-1-r) + (v-1)g reaches the same makespan,
// a bubble of (S-1)/(vM+S-1), with S-1-r fewer activations held.
std::vector<Program> generate_interleaved(const PipelineShape& shape) {
  require_valid("interleaved", shape);
  const int64_t S = shape.ranks, v = shape.chunks_per_rank, M = shape.micro_batches;
  const int64_t rounds = std::max<int64_t>(1, M / S);
  std::vector<int64_t> round_size(static_cast<size_t>(rounds), M / rounds);
  for (int64_t i = 0; i < M % rounds; ++i) round_size[i] += 1;

  std::vector<Program> programs;
  for (int64_t r = 0; r < S; ++r) {
    std::vector<Action> forwards, backwards;
    int64_t first = 0;
    for (const int64_t size : round_size) {
      for (int64_t i = 0; i < v; ++i) {
        for (int64_t m = first; m < first + size; ++m) {
          forwards.push_back(act(ActionKind::Forward, i * S + r, m));
          backwards.push_back(act(ActionKind::Backward, (v - 1 - i) * S + r, m));
        }
      }
      first += size;
    }
    programs.push_back(
        one_forward_one_backward(forwards, backwards, (S - 1 - r) + (v - 1) * round_size[0]));
  }
  return programs;
}

// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): rank k runs 1F1B's order
// with each B split into I (the input gradient, where B was: it is on the critical path) and
// W (the weight gradient), and defers W(m) until after I(m + k), W's left over at the end in
// order. The later ranks, whose warm-up is shorter, defer more: their W's fill the bubbles the
// shorter I leaves while the gradient travels back. With F = I = W the step takes
// 3M + (S-1) instead of 1F1B's 3(M + S-1).
//
// Memory: on rank k at most min(S-k, M) micro-batches are between their F and their I (as
// between F and B in 1F1B) and at most min(S, M) between their F and their W: 1F1B's peak
// (on rank 0), the paper's "same peak memory as 1F1B". Bounding F-to-W by S-k on every rank
// would force the last rank to F I W strictly and cost about twice the bubble.
std::vector<Program> generate_zb1p(const PipelineShape& shape) {
  require_one_chunk("zb1p", shape);
  std::vector<Program> programs;
  for (int64_t k = 0; k < shape.ranks; ++k) {
    Program p;
    int64_t inputs = 0, weights = 0;
    for (const Action& a : one_f_one_b_rank(shape, k)) {
      if (a.kind != ActionKind::Backward) {
        p.push_back(a);
        continue;
      }
      p.push_back(act(ActionKind::InputGrad, k, a.micro_batch));
      if (++inputs > k) p.push_back(act(ActionKind::WeightGrad, k, weights++));
    }
    while (weights < shape.micro_batches) p.push_back(act(ActionKind::WeightGrad, k, weights++));
    programs.push_back(std::move(p));
  }
  return programs;
}

// Looped BFS (torch.distributed.pipelining's ScheduleLoopedBFS): each rank runs every
// forward of its first chunk, then of its next chunk, ..., then the backwards chunk by chunk
// in reverse. Holds every micro-batch's activations of every chunk (like gpipe). Backwards
// take micro-batches in ascending order, like every schedule here (torch takes them in
// reverse), so weight gradients are summed in the reference's order.
std::vector<Program> generate_looped_bfs(const PipelineShape& shape) {
  require_valid("looped_bfs", shape);
  std::vector<Program> programs(static_cast<size_t>(shape.ranks));
  for (int64_t r = 0; r < shape.ranks; ++r) {
    const std::vector<int64_t> chunks = chunks_of_rank(r, shape);
    for (int64_t c : chunks)
      for (int64_t m = 0; m < shape.micro_batches; ++m) programs[size_t(r)].push_back(act(ActionKind::Forward, c, m));
    for (auto c = chunks.rbegin(); c != chunks.rend(); ++c)
      for (int64_t m = 0; m < shape.micro_batches; ++m) programs[size_t(r)].push_back(act(ActionKind::Backward, *c, m));
  }
  return programs;
}

}  // namespace arceus
