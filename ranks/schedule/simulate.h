// The cross-rank validator: simulates all ranks' programs together.
#pragma once

#include <string>
#include <vector>

#include "ranks/schedule/action.h"

namespace arceus {

// Relative cost of one action of each kind on one chunk (a micro-batch): from the cost
// model, a backward is two forwards, split evenly between I and W.
struct ActionCosts {
  double forward = 1.0;
  double backward = 2.0;
  double input_grad = 1.0;
  double weight_grad = 1.0;
  // Per chunk (index = chunk): its actions cost the kind's cost times this (e.g. the
  // partition cost model's estimate of the chunk's layers, relative to their mean). Empty:
  // every chunk 1.
  std::vector<double> chunk_scale;
};

struct Simulation {
  bool ok = false;
  std::string error;        // what is wrong, when !ok (first problem found)
  std::string grid;         // step-by-rank grid; the stalled / offending action marked
  double makespan = 0;      // simulated time of the whole step (costs above, messages free)
  std::vector<double> busy; // per stage rank: the sum of its actions' costs
  double bubble = 0;        // mean over ranks of 1 - busy / makespan
};

// Runs every rank's program in order, an action starting when its rank is free and its
// dependencies are done: its own chunk's prerequisite and the producers of the messages it
// consumes, by the rule in dataflow.h (F(c, m) after F(c-1, m); B/I(c, m) after F(c, m) and
// B/I(c+1, m); W(c, m) after I(c, m)).
// Checks: each action is on the rank that owns its chunk, chunk and micro-batch in range;
// every (chunk, micro-batch) has exactly one F and, when `training`, exactly one B or exactly
// one I and one W (never both B and I/W); no deadlock (ranks waiting on each other); when not
// `training`, only F. The weight gradients are complete before the optimizer step because
// the step runs after a rank's whole program.
Simulation simulate(const std::vector<Program>& programs, const PipelineShape& shape,
                    const ActionCosts& costs, bool training);

}  // namespace arceus
