#include "ranks/schedule/registry.h"

#include "ranks/schedule/generators.h"
#include "ranks/schedule/simulate.h"

namespace arceus {

const std::vector<ScheduleInfo>& schedules() {
  // name, summary, multi_chunk, split_backward, generate, planned (or why not), warm-up without
  // a flush (or why it cannot run without one)
  static const std::vector<ScheduleInfo> kSchedules = {
      {"sequential", "one micro-batch in the pipeline at a time: F0 B0 F1 B1 ...", false, false,
       generate_sequential, false, "one micro-batch in flight: never faster than 1f1b on the same shape", nullptr,
       "one micro-batch in flight: nothing to overlap at a step's end (use 1f1b)"},
      {"gpipe", "all forwards, then all backwards (every micro-batch's activations held)", false,
       false, generate_gpipe, true, "", nullptr,
       "every forward before any backward: without a flush it would hold two steps' activations (use 1f1b)"},
      {"1f1b", "warm-up forwards, then one forward one backward (at most S-k held on rank k)",
       false, false, generate_1f1b, true, "", warmup_1f1b, ""},
      {"eager1f1b", "1F1B warming up 2(S-1-k)+1 forwards, so transfers overlap with compute (up to 2(S-k) held)",
       false, false, generate_eager1f1b, true, "", warmup_eager1f1b, ""},
      {"interleaved", "Megatron-LM's interleaved 1F1B over v chunks per rank (bubble about 1/v)",
       true, false, generate_interleaved, true, "", nullptr,
       "several chunks per rank: a stream over rounds of chunks is not built"},
      {"zb1p", "zero-bubble ZB-H1: B split into I and W, the W's filling 1F1B's bubbles", false,
       true, generate_zb1p, true, "", nullptr,
       "its deferred W's would run after the next step's forwards and need a third weight version"},
      {"looped_bfs", "every forward of a rank's chunks chunk by chunk, then the backwards in reverse", true,
       false, generate_looped_bfs, false,
       "interleaved's compute and messages with every micro-batch's activations held: never ranked above it",
       nullptr, "several chunks per rank, every forward before any backward"},
  };
  return kSchedules;
}

std::string schedule_names() {
  std::string names;
  for (const ScheduleInfo& s : schedules()) names += (names.empty() ? "" : ", ") + s.name;
  return names;
}

std::vector<std::string> planned_schedule_names() {
  std::vector<std::string> names;
  for (const ScheduleInfo& s : schedules()) {
    if (s.planned) names.push_back(s.name);
  }
  return names;
}

std::string streamed_schedule_names() {
  std::string names;
  for (const ScheduleInfo& s : schedules()) {
    if (s.stream_warmup) names += (names.empty() ? "" : ", ") + s.name;
  }
  return names;
}

const ScheduleInfo& find_schedule(const std::string& name) {
  for (const ScheduleInfo& s : schedules()) {
    if (s.name == name) return s;
  }
  throw ScheduleError("[schedule] unknown schedule '" + name + "' (expected " + schedule_names() +
                      ")");
}

namespace {

std::string multi_chunk_names() {
  std::string names;
  for (const ScheduleInfo& s : schedules()) {
    if (s.multi_chunk) names += (names.empty() ? "" : ", ") + s.name;
  }
  return names.empty() ? "none" : names;
}

}  // namespace

std::vector<Program> training_programs(const std::string& name, const PipelineShape& shape) {
  const ScheduleInfo& info = find_schedule(name);
  const std::string where = "[schedule] " + name + " with " + to_string(shape) + ": ";
  if (shape.ranks < 1) throw ScheduleError(where + "S (stage ranks) must be at least 1");
  if (shape.micro_batches < 1) {
    throw ScheduleError(where + "M (training.micro_batches) must be at least 1");
  }
  if (shape.chunks_per_rank < 1) {
    throw ScheduleError(where + "partition.chunks_per_rank must be at least 1, got " +
                        std::to_string(shape.chunks_per_rank));
  }
  if (shape.chunks_per_rank > 1 && !info.multi_chunk) {
    throw ScheduleError(where + "partition.chunks_per_rank = " +
                        std::to_string(shape.chunks_per_rank) + " needs a multi-chunk schedule (" +
                        multi_chunk_names() + "); " + name + " runs one chunk per stage rank");
  }
  std::vector<Program> programs = info.generate(shape);
  const Simulation sim = simulate(programs, shape, ActionCosts{}, /*training=*/true);
  if (!sim.ok) throw ScheduleError(where + sim.error + "\n" + sim.grid);
  return programs;
}

std::vector<Program> forward_programs(const PipelineShape& shape) {
  if (shape.ranks < 1 || shape.chunks_per_rank < 1 || shape.micro_batches < 1) {
    throw ScheduleError("[schedule] forward with " + to_string(shape) +
                        ": S, v and M must be at least 1");
  }
  std::vector<Program> programs(static_cast<size_t>(shape.ranks));
  for (int64_t r = 0; r < shape.ranks; ++r) {
    for (const int64_t c : chunks_of_rank(r, shape)) {
      for (int64_t m = 0; m < shape.micro_batches; ++m) {
        programs[r].push_back(
            Action{ActionKind::Forward, static_cast<int32_t>(c), static_cast<int32_t>(m)});
      }
    }
  }
  return programs;
}

}  // namespace arceus
