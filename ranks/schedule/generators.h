// The schedule generators, one function per schedule; registry.cpp lists them by name.
// Each returns one Program per stage rank (index = stage rank) and throws ScheduleError for a
// shape it does not support, naming the schedule, the shape and the rule.
#pragma once

#include <vector>

#include "ranks/schedule/action.h"

namespace arceus {

std::vector<Program> generate_sequential(const PipelineShape& shape);
std::vector<Program> generate_gpipe(const PipelineShape& shape);
std::vector<Program> generate_1f1b(const PipelineShape& shape);
std::vector<Program> generate_eager1f1b(const PipelineShape& shape);
std::vector<Program> generate_interleaved(const PipelineShape& shape);
std::vector<Program> generate_zb1p(const PipelineShape& shape);
std::vector<Program> generate_looped_bfs(const PipelineShape& shape);

// The forwards before the first backward on stage rank k, of one step and of a stream of
// steps without a flush (stream.h): 1F1B's S-1-k and eager 1F1B's 2(S-1-k)+1.
int64_t warmup_1f1b(const PipelineShape& shape, int64_t k);
int64_t warmup_eager1f1b(const PipelineShape& shape, int64_t k);

}  // namespace arceus
