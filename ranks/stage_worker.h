// A stage rank: its chunks of the model, one optimizer over them, and its control loop.
// Rank 0 drives it with Control messages (train or evaluate a batch, send a checkpoint,
// report the epoch's statistics, stop); each batch runs the schedule's program for this stage
// through the executor, whose handlers are the chunks' forward, backward, and split backward
// (input gradient I, weight gradient W).
#pragma once

#include <cstdint>

#include "ranks/job.h"
#include "ranks/transport.h"

namespace arceus {

// Runs `slot` (its replica and 1-based stage) of `job` on `transport` until rank 0 sends Stop.
// With job.resume it first receives its state (parameters, optimizer, RNG) from rank 0.
// `replicas`: the stage's group over the replicas (nullptr with one replica), whose gradients
// it sums every step (grad_sync.h).
void run_stage(const Job& job, Placement::Slot slot, Transport& transport, Group* replicas = nullptr);

// Ranks beyond the stages: wait (yielding) for Stop.
void run_idle(Transport& transport);

}  // namespace arceus
