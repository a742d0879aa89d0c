// Event-driven: events (a message ready to send, a message arrived, a rank free) are handled in
// time order, so each link queue serves its messages in the order they were sent. Two steps
// are simulated; the second step's length is the steady state (the first starts with an
// empty pipeline and idle links, as every step does after the flush, but the labels of the
// next batch are then already in flight).
#include "planner/simulate_links.h"

#include <algorithm>
#include <optional>
#include <queue>

#include "ranks/schedule/dataflow.h"

namespace arceus::plan {
namespace {

enum EventType { kArrival = 0, kSend = 1, kFree = 2 };

struct Event {
  double t;
  int type;
  uint64_t seq;
  int64_t rank;     // kFree
  int64_t step;     // kArrival / kSend: the message of that step
  Message msg;
  bool operator>(const Event& o) const {
    if (t != o.t) return t > o.t;
    if (type != o.type) return type > o.type;
    return seq > o.seq;
  }
};

constexpr int kSteps = 2;

class Sim {
 public:
  Sim(const std::vector<Program>& programs, const PipelineShape& shape, const StepCosts& costs, const LinkModel& links)
      : p_(programs), shape_(shape), c_(costs), l_(links) {}

  LinkSimulation run() {
    const int64_t S = shape_.ranks, C = shape_.chunks(), M = shape_.micro_batches;
    arrived_.assign(kSteps, std::vector<std::vector<std::vector<double>>>(
                                4, std::vector<std::vector<double>>(size_t(C), std::vector<double>(size_t(M), -1))));
    next_.assign(size_t(S), 0);
    step_.assign(size_t(S), 0);
    waiting_.assign(size_t(S), false);
    end_.assign(size_t(S), std::vector<double>(kSteps, 0));
    held_.assign(size_t(S), 0);
    out_.busy.assign(size_t(S), 0);
    out_.peak_held_bytes.assign(size_t(S), 0);
    out_.up_busy.assign(size_t(l_.hosts), 0);
    out_.down_busy.assign(size_t(l_.hosts), 0);
    pair_.assign(size_t(l_.hosts * l_.hosts), 0);
    up_free_.assign(size_t(l_.hosts), 0);
    down_free_.assign(size_t(l_.hosts), 0);
    done_in_step_.assign(kSteps, 0);

    for (int64_t s = 0; s < std::min<int64_t>(2, kSteps); ++s) send_labels(s, 0.0);
    for (int64_t r = 0; r < S; ++r) push_free(r, 0.0);
    while (!q_.empty()) {
      const Event e = q_.top();
      q_.pop();
      if (e.type == kSend) {
        send(e);
      } else if (e.type == kArrival) {
        arrive(e);
      } else {
        free(e.rank, e.t);
      }
    }
    if (std::any_of(step_.begin(), step_.end(), [](int64_t s) { return s < kSteps; })) {
      out_.ok = false;
      out_.error = "the simulation stalled (a schedule whose messages never arrive)";
      return out_;
    }
    std::vector<double> step_end(kSteps, 0);
    for (int64_t s = 0; s < kSteps; ++s) {
      for (int64_t r = 0; r < S; ++r) {
        step_end[size_t(s)] = std::max(step_end[size_t(s)], end_[size_t(r)][size_t(s)] + opt(r));
      }
    }
    out_.step_seconds = kSteps > 1 ? step_end[kSteps - 1] - step_end[kSteps - 2] : step_end[0];
    if (out_.step_seconds <= 0) out_.step_seconds = step_end[kSteps - 1];
    for (auto& b : out_.busy) b /= kSteps;
    for (auto& b : out_.up_busy) b /= kSteps;
    for (auto& b : out_.down_busy) b /= kSteps;
    for (int64_t a = 0; a < l_.hosts; ++a) {
      for (int64_t b = 0; b < l_.hosts; ++b) {
        const double v = pair_[size_t(a * l_.hosts + b)] / kSteps;
        if (v > out_.pair_busy) {
          out_.pair_busy = v;
          out_.pair_from = a;
          out_.pair_to = b;
        }
      }
    }
    out_.ok = true;
    return out_;
  }

 private:
  double opt(int64_t r) const { return c_.optimizer_s.empty() ? 0.0 : c_.optimizer_s[size_t(r)]; }
  int64_t rank_of(int64_t chunk) const { return chunk % shape_.ranks; }
  int64_t host_of(int64_t rank) const { return l_.host_of_rank[size_t(rank)]; }

  void push(Event e) {
    e.seq = seq_++;
    q_.push(e);
  }
  void push_free(int64_t r, double t) { push(Event{t, kFree, 0, r, 0, Message{}}); }

  // Rank 0's labels of step s (its inputs to chunk 0 are not modelled: rank 0 sends them a
  // batch ahead, so they are never late).
  void send_labels(int64_t s, double t) {
    if (c_.label_bytes.empty()) return;
    for (int64_t m = 0; m < shape_.micro_batches; ++m) {
      for (const Message& msg : orchestrator_sends(m, shape_)) {
        if (msg.flow == Flow::Labels) push(Event{t, kSend, 0, -1, s, msg});
      }
    }
  }

  double bytes_of(const Message& m) const {
    if (m.flow == Flow::Labels) return c_.label_bytes[size_t(m.micro_batch)];
    const auto& t = m.flow == Flow::Activation ? c_.act_bytes : c_.grad_bytes;
    return t[size_t(m.boundary())][size_t(m.micro_batch)];
  }

  // Hosts of a message's sender and receiver (rank 0 is on host 0).
  std::pair<int64_t, int64_t> ends(const Message& m) const {
    return {m.from == kOrchestrator ? 0 : host_of(rank_of(m.from)), host_of(rank_of(m.to))};
  }

  // arrived_'s slot of a message: [step][flow][boundary (0 for labels)][micro-batch].
  double& arrival(int64_t s, const Message& m) {
    return arrived_[size_t(s)][size_t(m.flow)][size_t(std::max<int64_t>(0, m.boundary()))][size_t(m.micro_batch)];
  }

  void send(const Event& e) {
    const double bytes = bytes_of(e.msg);
    const auto [from, to] = ends(e.msg);
    double arrival;
    const double copy = bytes / l_.shm_bytes_per_second;
    if (from == to) {
      arrival = e.t + l_.latency_s + copy;
    } else {
      const double wire = l_.bits_per_second > 0 ? bytes * l_.framing * 8.0 / l_.bits_per_second : 0.0;
      const double dur = std::max(wire, copy);
      const double start = std::max({e.t, up_free_[size_t(from)], down_free_[size_t(to)]});
      up_free_[size_t(from)] = down_free_[size_t(to)] = start + dur;
      out_.up_busy[size_t(from)] += dur;
      out_.down_busy[size_t(to)] += dur;
      pair_[size_t(from * l_.hosts + to)] += dur;
      arrival = start + dur + l_.latency_s;
    }
    Event a = e;
    a.t = arrival;
    a.type = kArrival;
    push(a);
  }

  void arrive(const Event& e) {
    arrival(e.step, e.msg) = e.t;
    // The receiver, if it waits for exactly this message.
    const int64_t r = rank_of(e.msg.to);
    if (waiting_[size_t(r)] && step_[size_t(r)] == e.step) {
      waiting_[size_t(r)] = false;
      push_free(r, e.t);
    }
  }

  bool have(int64_t s, const Message& m) { return arrival(s, m) >= 0; }

  // Rank r is free at t: runs its next action if its messages are in (else waits for them).
  void free(int64_t r, double t) {
    const Program& p = p_[size_t(r)];
    const int64_t C = shape_.chunks();
    int64_t& s = step_[size_t(r)];
    size_t& i = next_[size_t(r)];
    if (s >= kSteps) return;
    if (i == p.size()) {  // the step's last action is done: the optimizer, then the next step
      end_[size_t(r)][size_t(s)] = t;
      ++done_in_step_[size_t(s)];
      const int64_t ended = s;
      ++s;
      i = 0;
      if (r == 0 && s + 1 < kSteps) send_labels(s + 1, t);
      if (c_.clip_round_trip) {
        if (done_in_step_[size_t(ended)] == shape_.ranks) {
          double last = 0;
          for (int64_t k = 0; k < shape_.ranks; ++k) last = std::max(last, end_[size_t(k)][size_t(ended)]);
          const double go = last + 2 * l_.latency_s;
          if (s < kSteps) {
            for (int64_t k = 0; k < shape_.ranks; ++k) push_free(k, go + opt(k));
          }
        }
        return;
      }
      if (s < kSteps) push_free(r, t + opt(r));
      return;
    }
    const Action& a = p[i];
    const int64_t c = a.chunk, m = a.micro_batch;
    double dur = 0;
    // The messages the action consumes (dataflow.h): wait for each one that crosses ranks, and
    // decode it.
    for (const Message& msg : consumes(a, shape_)) {
      if (msg.flow == Flow::Input || is_local(msg, shape_)) continue;
      if (msg.flow == Flow::Labels && c_.label_bytes.empty()) continue;
      if (!have(s, msg)) {
        waiting_[size_t(r)] = true;
        return;
      }
      if (msg.flow == Flow::Activation) dur += c_.act_decode[size_t(msg.boundary())][size_t(m)];
      if (msg.flow == Flow::Gradient) dur += c_.grad_decode[size_t(msg.boundary())][size_t(m)];
    }
    switch (a.kind) {
      case ActionKind::Forward:
        dur += c_.f[size_t(c)][size_t(m)];
        held_[size_t(r)] += c_.held_bytes[size_t(c)][size_t(m)];
        out_.peak_held_bytes[size_t(r)] = std::max(out_.peak_held_bytes[size_t(r)], held_[size_t(r)]);
        break;
      case ActionKind::Backward:
        dur += c_.b[size_t(c)][size_t(m)];
        held_[size_t(r)] -= c_.held_bytes[size_t(c)][size_t(m)];
        break;
      case ActionKind::InputGrad: dur += c_.i[size_t(c)][size_t(m)]; break;
      case ActionKind::WeightGrad:
        dur += c_.w[size_t(c)][size_t(m)];
        held_[size_t(r)] -= c_.held_bytes[size_t(c)][size_t(m)];
        break;
    }
    // The message it sends, encoded on this rank first.
    std::optional<Message> out = sends(a, shape_);
    if (out && is_local(*out, shape_)) out.reset();
    if (out) {
      const auto& encode = out->flow == Flow::Activation ? c_.act_encode : c_.grad_encode;
      dur += encode[size_t(out->boundary())][size_t(m)];
    }
    out_.busy[size_t(r)] += dur;
    ++i;
    if (out) push(Event{t + dur, kSend, 0, -1, s, *out});
    push_free(r, t + dur);
  }

  const std::vector<Program>& p_;
  const PipelineShape& shape_;
  const StepCosts& c_;
  const LinkModel& l_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> q_;
  uint64_t seq_ = 0;
  // [step][flow][boundary][micro-batch]: arrival time, -1 before.
  std::vector<std::vector<std::vector<std::vector<double>>>> arrived_;
  std::vector<size_t> next_;
  std::vector<int64_t> step_;
  std::vector<bool> waiting_;
  std::vector<std::vector<double>> end_;
  std::vector<double> held_;
  std::vector<double> pair_, up_free_, down_free_;
  std::vector<int64_t> done_in_step_;
  LinkSimulation out_;
};

}  // namespace

LinkSimulation simulate_links(const std::vector<Program>& programs, const PipelineShape& shape,
                              const StepCosts& costs, const LinkModel& links) {
  return Sim(programs, shape, costs, links).run();
}

}  // namespace arceus::plan
