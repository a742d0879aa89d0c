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

}  // namespace arceus
