// The schedules by name. Adding a schedule over the existing action kinds is one generator
// function (generators.cpp) and one line in the registry (registry.cpp); nothing else in the
// code names a schedule.
#pragma once

#include <string>
#include <vector>

#include "ranks/schedule/action.h"

namespace arceus {

struct ScheduleInfo {
  std::string name;     // as written in training.schedule
  std::string summary;  // one line for docs and error messages
  bool multi_chunk;     // accepts partition.chunks_per_rank > 1 (otherwise v must be 1)
  bool split_backward;  // uses I and W instead of B
  // One Program per stage rank (index = stage rank). Throws ScheduleError for a shape the
  // schedule does not support, naming the schedule, S, v, M and the rule.
  std::vector<Program> (*generate)(const PipelineShape& shape);
  // Searched by `arceus plan` (planner/); when not, why (its --schedules help says so).
  bool planned;
  const char* not_planned_because;
  // Runs with training.pipeline_flush false (stream.h): its warm-up on stage rank `rank` over
  // a stream of steps; nullptr when it cannot, and why.
  int64_t (*stream_warmup)(const PipelineShape& shape, int64_t rank);
  const char* not_streamed_because;
};

const std::vector<ScheduleInfo>& schedules();
// Throws ScheduleError "unknown schedule 'x' (expected sequential, gpipe, ...)".
const ScheduleInfo& find_schedule(const std::string& name);
// "sequential, gpipe, 1f1b, ..." in registry order.
std::string schedule_names();
// The names of the schedules `arceus plan` searches, in registry order.
std::vector<std::string> planned_schedule_names();
// "1f1b, eager1f1b": the schedules that run without a flush.
std::string streamed_schedule_names();

// The schedule's programs for `shape`, validated by simulate(): throws ScheduleError
// "[schedule] <name> with S=.., v=.., M=..: <what is wrong>" followed by the step-by-rank grid.
std::vector<Program> training_programs(const std::string& name, const PipelineShape& shape);

// Evaluation (forward only): every rank runs F of its chunks in ascending chunk order, micro-
// batches 0..M-1 within each chunk. Always valid.
std::vector<Program> forward_programs(const PipelineShape& shape);

}  // namespace arceus
