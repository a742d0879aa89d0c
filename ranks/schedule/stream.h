// A pipeline that does not flush at every optimizer step (training.pipeline_flush: false;
// PipeDream-2BW, Narayanan et al., ICML 2021). Torch-free and MPI-free.
//
// The steps' micro-batches form one stream, and each stage rank runs its 1F1B rule over the
// stream rather than over one step: forward while at most `warmup` micro-batches are between
// their F and their B, otherwise backward. Step t+1's first forwards therefore start while
// step t's last backwards are still on their way back, and the link is never idle at a step
// boundary.
//
// Weights (the mathematics this changes, stated in docs/schedules.md): step t's forwards and
// backwards all use one version V_t (weight stashing: a backward uses the weights its forward
// used), and V_{t+1} = V_t - U(g_{t-1}): the update from step t-1's gradient, applied when
// step t+1 starts on a rank (2BW's W(t+1) = W(t) - lr * grad f(W(t-1))). So a rank holds two
// versions: the rule lets step t+1's first forward start only after every backward of step
// t-1 on that rank. A flush (any control but a training step: evaluation, checkpoint, epoch
// end, stop) drains the stream and applies every pending update in order.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "ranks/schedule/action.h"

namespace arceus {

struct StreamAction {
  enum class Kind : uint8_t {
    Forward,   // F of (step, micro_batch)
    Backward,  // B of (step, micro_batch)
    NeedStep,  // the rule wants the next step's first forward: say whether there is one
    Done,      // closed and drained
  };
  Kind kind;
  int64_t step = 0;  // steps counted from the stream's first (0-based)
  int64_t micro_batch = 0;
};

class StreamSchedule {
 public:
  // `warmup`: forwards before the first backward, as the schedule's one-step rule on this rank.
  explicit StreamSchedule(int64_t warmup);
  void add_step(int64_t micro_batches);  // the next step, with its micro-batch count (>= 1)
  void close();                          // no more steps: drain what is in flight
  StreamAction next() const;             // what to run now
  void done(const StreamAction& a);      // `a` (F or B, as next() said) ran
  int64_t steps() const { return static_cast<int64_t>(counts_.size()); }
  // All backwards of `step` ran.
  bool finished(int64_t step) const { return b_step_ > step; }

 private:
  int64_t warmup_;
  std::vector<int64_t> counts_;  // micro-batches of each known step
  int64_t f_step_ = 0, f_mb_ = 0, b_step_ = 0, b_mb_ = 0;
  int64_t in_flight_ = 0;
  bool closed_ = false;
};

// The schedules that can run without a flush: their warm-up on stage rank k (0-based).
// Throws ScheduleError naming the schedule and why it cannot (registry.h: `stream_warmup`).
int64_t stream_warmup(const std::string& schedule, const PipelineShape& shape, int64_t rank);

// Every rank's actions over `steps` (micro-batches per step) without a flush, as one program
// per rank whose micro-batch numbers run on across steps (step t's micro-batch m is
// sum(steps[0..t)) + m), validated by simulate() like any schedule's, and checked for the two
// weight versions: on every rank step t+1's first forward comes after step t-1's last
// backward. Throws ScheduleError "[schedule] <name> without flush, S=.., steps [..]: ...".
std::vector<Program> stream_programs(const std::string& schedule, int64_t ranks, const std::vector<int64_t>& steps);

}  // namespace arceus
