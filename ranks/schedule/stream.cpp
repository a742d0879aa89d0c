#include "ranks/schedule/stream.h"

#include <algorithm>

#include "ranks/schedule/registry.h"
#include "ranks/schedule/simulate.h"

namespace arceus {

StreamSchedule::StreamSchedule(int64_t warmup) : warmup_(std::max<int64_t>(0, warmup)) {}

void StreamSchedule::add_step(int64_t micro_batches) {
  if (closed_) throw ScheduleError("[schedule] a step added to a closed stream");
  if (micro_batches < 1) throw ScheduleError("[schedule] a step of the stream needs at least 1 micro-batch");
  counts_.push_back(micro_batches);
}

void StreamSchedule::close() { closed_ = true; }

StreamAction StreamSchedule::next() const {
  using K = StreamAction::Kind;
  // A forward of step f needs V_f, which exists once step f-2's gradient is complete here.
  const bool may_forward = in_flight_ <= warmup_ && b_step_ >= f_step_ - 1;
  if (may_forward) {
    if (f_step_ < steps()) return {K::Forward, f_step_, f_mb_};
    if (!closed_) return {K::NeedStep, f_step_, 0};
  }
  if (in_flight_ > 0) return {K::Backward, b_step_, b_mb_};
  return {K::Done, f_step_, 0};
}

void StreamSchedule::done(const StreamAction& a) {
  using K = StreamAction::Kind;
  if (a.kind == K::Forward) {
    ++in_flight_;
    if (++f_mb_ == counts_[size_t(f_step_)]) f_mb_ = 0, ++f_step_;
  } else if (a.kind == K::Backward) {
    --in_flight_;
    if (++b_mb_ == counts_[size_t(b_step_)]) b_mb_ = 0, ++b_step_;
  }
}

int64_t stream_warmup(const std::string& schedule, const PipelineShape& shape, int64_t rank) {
  const ScheduleInfo& info = find_schedule(schedule);
  if (!info.stream_warmup) {
    throw ScheduleError("[schedule] " + schedule + " cannot run with training.pipeline_flush false: " +
                        info.not_streamed_because + " (it can: " + streamed_schedule_names() + ")");
  }
  return info.stream_warmup(shape, rank);
}

std::vector<Program> stream_programs(const std::string& schedule, int64_t ranks, const std::vector<int64_t>& steps) {
  std::string where = "[schedule] " + schedule + " without flush, S=" + std::to_string(ranks) + ", steps [";
  for (size_t t = 0; t < steps.size(); ++t) where += (t ? "," : "") + std::to_string(steps[t]);
  where += "]: ";
  if (ranks < 1) throw ScheduleError(where + "S (stage ranks) must be at least 1");
  std::vector<int64_t> first{0};  // the stream's micro-batch number of each step's first
  for (int64_t m : steps) {
    if (m < 1) throw ScheduleError(where + "every step needs at least 1 micro-batch");
    first.push_back(first.back() + m);
  }
  const PipelineShape shape{ranks, 1, std::max<int64_t>(1, first.back())};
  std::vector<Program> programs(static_cast<size_t>(ranks));
  for (int64_t k = 0; k < ranks; ++k) {
    StreamSchedule rule(stream_warmup(schedule, PipelineShape{ranks, 1, steps.empty() ? 1 : steps[0]}, k));
    size_t given = 0;
    // The last backward of each step so far, as a position in this rank's program.
    std::vector<int64_t> last_backward(steps.size(), -1);
    for (;;) {
      const StreamAction a = rule.next();
      if (a.kind == StreamAction::Kind::Done) break;
      if (a.kind == StreamAction::Kind::NeedStep) {
        if (given < steps.size()) rule.add_step(steps[given++]);
        else rule.close();
        continue;
      }
      const bool fwd = a.kind == StreamAction::Kind::Forward;
      if (fwd && a.micro_batch == 0 && a.step >= 2 && last_backward[size_t(a.step - 2)] < 0) {
        throw ScheduleError(where + "rank " + std::to_string(k) + " starts step " + std::to_string(a.step) +
                            " before step " + std::to_string(a.step - 2) +
                            "'s backwards are done: it would need a third weight version");
      }
      programs[size_t(k)].push_back(Action{fwd ? ActionKind::Forward : ActionKind::Backward, int32_t(k),
                                           int32_t(first[size_t(a.step)] + a.micro_batch)});
      if (!fwd && a.micro_batch == steps[size_t(a.step)] - 1)
        last_backward[size_t(a.step)] = int64_t(programs[size_t(k)].size()) - 1;
      rule.done(a);
    }
  }
  if (steps.empty()) return programs;
  const Simulation sim = simulate(programs, shape, ActionCosts{}, /*training=*/true);
  if (!sim.ok) throw ScheduleError(where + sim.error + "\n" + sim.grid);
  return programs;
}

}  // namespace arceus
