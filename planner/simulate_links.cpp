// Event-driven: events (a message ready to send, a message arrived, a rank free) are handled in
// time order, so each link queue serves its messages in the order they were sent. Two steps
// are simulated; the second step's length is the steady state (the first starts with an
// empty pipeline and idle links, as every step does after the flush, but the labels of the
// next batch are then already in flight).
#include "planner/simulate_links.h"

#include <algorithm>
#include <queue>

namespace arceus::plan {
namespace {

enum EventType { kArrival = 0, kSend = 1, kFree = 2 };
enum MsgType { kAct = 0, kGrad = 1, kLabel = 2 };

struct Event {
  double t;
  int type;
  uint64_t seq;
  int64_t rank;                  // kFree
  int msg;                       // kArrival / kSend: MsgType
  int64_t step, boundary, mb;    // message identity
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
                                3, std::vector<std::vector<double>>(size_t(C), std::vector<double>(size_t(M), -1))));
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
  void push_free(int64_t r, double t) { push(Event{t, kFree, 0, r, 0, 0, 0, 0}); }

  void send_labels(int64_t s, double t) {
    if (c_.label_bytes.empty()) return;
    for (int64_t m = 0; m < shape_.micro_batches; ++m) push(Event{t, kSend, 0, -1, kLabel, s, 0, m});
  }

  double bytes_of(const Event& e) const {
    if (e.msg == kLabel) return c_.label_bytes[size_t(e.mb)];
    const auto& t = e.msg == kAct ? c_.act_bytes : c_.grad_bytes;
    return t[size_t(e.boundary)][size_t(e.mb)];
  }

  // Hosts of a message's sender and receiver.
  std::pair<int64_t, int64_t> ends(const Event& e) const {
    const int64_t last = shape_.chunks() - 1;
    if (e.msg == kLabel) return {0, host_of(rank_of(last))};
    const int64_t a = host_of(rank_of(e.boundary)), b = host_of(rank_of(e.boundary + 1));
    return e.msg == kAct ? std::make_pair(a, b) : std::make_pair(b, a);
  }

  void send(const Event& e) {
    const double bytes = bytes_of(e);
    const auto [from, to] = ends(e);
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
    arrived_[size_t(e.step)][size_t(e.msg)][size_t(e.boundary)][size_t(e.mb)] = e.t;
    // The receiver, if it waits for exactly this message.
    int64_t r;
    if (e.msg == kLabel) {
      r = rank_of(shape_.chunks() - 1);
    } else {
      r = e.msg == kAct ? rank_of(e.boundary + 1) : rank_of(e.boundary);
    }
    if (waiting_[size_t(r)] && step_[size_t(r)] == e.step) {
      waiting_[size_t(r)] = false;
      push_free(r, e.t);
    }
  }

  bool have(int64_t s, int msg, int64_t boundary, int64_t m) const {
    return arrived_[size_t(s)][size_t(msg)][size_t(boundary)][size_t(m)] >= 0;
  }

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
    bool sends = false;
    int msg = kAct;
    int64_t boundary = 0;
    switch (a.kind) {
      case ActionKind::Forward:
        if (c > 0 && rank_of(c - 1) != r) {
          if (!have(s, kAct, c - 1, m)) { waiting_[size_t(r)] = true; return; }
          dur += c_.act_decode[size_t(c - 1)][size_t(m)];
        }
        if (c == C - 1 && !c_.label_bytes.empty() && !have(s, kLabel, 0, m)) { waiting_[size_t(r)] = true; return; }
        dur += c_.f[size_t(c)][size_t(m)];
        if (c + 1 < C && rank_of(c + 1) != r) {
          dur += c_.act_encode[size_t(c)][size_t(m)];
          sends = true;
          msg = kAct;
          boundary = c;
        }
        held_[size_t(r)] += c_.held_bytes[size_t(c)][size_t(m)];
        out_.peak_held_bytes[size_t(r)] = std::max(out_.peak_held_bytes[size_t(r)], held_[size_t(r)]);
        break;
      case ActionKind::Backward:
      case ActionKind::InputGrad:
        if (c + 1 < C && rank_of(c + 1) != r) {
          if (!have(s, kGrad, c, m)) { waiting_[size_t(r)] = true; return; }
          dur += c_.grad_decode[size_t(c)][size_t(m)];
        }
        dur += a.kind == ActionKind::Backward ? c_.b[size_t(c)][size_t(m)] : c_.i[size_t(c)][size_t(m)];
        if (c > 0 && rank_of(c - 1) != r) {
          dur += c_.grad_encode[size_t(c - 1)][size_t(m)];
          sends = true;
          msg = kGrad;
          boundary = c - 1;
        }
        if (a.kind == ActionKind::Backward) held_[size_t(r)] -= c_.held_bytes[size_t(c)][size_t(m)];
        break;
      case ActionKind::WeightGrad:
        dur += c_.w[size_t(c)][size_t(m)];
        held_[size_t(r)] -= c_.held_bytes[size_t(c)][size_t(m)];
        break;
    }
    out_.busy[size_t(r)] += dur;
    ++i;
    if (sends) push(Event{t + dur, kSend, 0, -1, msg, s, boundary, m});
    push_free(r, t + dur);
  }

  const std::vector<Program>& p_;
  const PipelineShape& shape_;
  const StepCosts& c_;
  const LinkModel& l_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> q_;
  uint64_t seq_ = 0;
  // [step][msg type][boundary][micro-batch]: arrival time, -1 before.
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
