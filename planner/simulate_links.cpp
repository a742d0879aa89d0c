// Event-driven: events (a message ready to send, a message arrived, a rank free, and for
// replicas a bucket full, a ring hop leaving, arriving, a bucket summed) are handled in time
// order, so each link queue serves its messages in the order they were sent. Two steps are
// simulated; the second step's length is the steady state (the first starts with an empty
// pipeline and idle links, as every step does after the flush, but the inputs and labels of
// the next batch are then already in flight).
#include "planner/simulate_links.h"

#include <algorithm>
#include <optional>
#include <queue>

#include "ranks/schedule/dataflow.h"

namespace arceus::plan {
namespace {

enum EventType { kArrival = 0, kSend = 1, kFree = 2, kSyncReady = 3, kSyncSend = 4, kSyncArrival = 5, kSyncDone = 6 };

struct Event {
  double t;
  int type;
  uint64_t seq;
  int64_t rank;     // kFree and the sync events: the worker rank
  int64_t step;     // the message's (or the sums') step
  Message msg;      // kArrival / kSend
  int64_t replica = 0;  // kArrival / kSend: the pipeline the message belongs to
  size_t bucket = 0;    // sync events
  int64_t hop = 0;      // kSyncSend / kSyncArrival
  bool operator>(const Event& o) const {
    if (t != o.t) return t > o.t;
    if (type != o.type) return type > o.type;
    return seq > o.seq;
  }
};

// Steps simulated: 2 for a pipeline alone (the second is the steady state). Replicas take 4,
// the step measured over the last two: rank 0's inputs to replicas on other hosts leave a batch
// ahead through one link, so the first steps find them delivered sooner than later steps do.
int64_t steps_for(int64_t replicas) { return replicas > 1 ? 4 : 2; }

// One member of a stage's gradient sum: where its ring is in the current step.
struct Member {
  size_t next = 0;            // the bucket it rings (or will ring) next
  bool ringing = false;       // that bucket's ring has begun here
  int64_t hop = -1;           // the hop it has sent and waits for from the previous member (-1: none)
  std::vector<double> ready;  // per bucket: when it is full, -1 not yet
  std::vector<int64_t> fills_left;
  double actions_end = -1;    // its last action of the step ended
  double done = -1;           // every bucket summed
};

class Sim {
 public:
  Sim(const std::vector<PipelineRun>& replicas, const std::vector<std::vector<SyncBucket>>& sync, const LinkModel& links)
      : reps_(replicas),
        sync_(sync),
        l_(links),
        S_(replicas.front().shape.ranks),
        R_(int64_t(replicas.size())),
        kSteps(steps_for(R_)) {}

  LinkSimulation run() {
    const int64_t K = R_ * S_;
    arrived_.resize(size_t(R_));
    for (int64_t r = 0; r < R_; ++r) {
      const int64_t C = reps_[size_t(r)].shape.chunks(), M = reps_[size_t(r)].shape.micro_batches;
      arrived_[size_t(r)].assign(kSteps, std::vector<std::vector<std::vector<double>>>(
                                             4, std::vector<std::vector<double>>(size_t(C), std::vector<double>(size_t(M), -1))));
    }
    next_.assign(size_t(K), 0);
    step_.assign(size_t(K), 0);
    waiting_.assign(size_t(K), false);
    end_.assign(size_t(K), std::vector<double>(kSteps, 0));
    held_.assign(size_t(K), 0);
    out_.busy.assign(size_t(K), 0);
    out_.peak_held_bytes.assign(size_t(K), 0);
    out_.sync_bytes_out.assign(size_t(K), 0);
    out_.sync_wait.assign(size_t(K), 0);
    out_.up_busy.assign(size_t(l_.hosts), 0);
    out_.down_busy.assign(size_t(l_.hosts), 0);
    pair_.assign(size_t(l_.hosts * l_.hosts), 0);
    up_free_.assign(size_t(l_.hosts), 0);
    down_free_.assign(size_t(l_.hosts), 0);
    done_in_step_.assign(kSteps, 0);
    prepare_sync();

    for (int64_t s = 0; s < std::min<int64_t>(2, kSteps); ++s) send_feed(s, 0.0);
    for (int64_t k = 0; k < K; ++k) push_free(k, 0.0);
    while (!q_.empty()) {
      const Event e = q_.top();
      q_.pop();
      switch (e.type) {
        case kSend: send(e); break;
        case kArrival: arrive(e); break;
        case kFree: free(e.rank, e.t); break;
        case kSyncReady: sync_ready(e); break;
        case kSyncSend: sync_send(e); break;
        case kSyncArrival: sync_arrive(e); break;
        case kSyncDone: sync_done(e); break;
      }
    }
    if (std::any_of(step_.begin(), step_.end(), [this](int64_t s) { return s < kSteps; })) {
      out_.ok = false;
      out_.error = "the simulation stalled (a schedule whose messages never arrive)";
      return out_;
    }
    std::vector<double> step_end(kSteps, 0);
    for (int64_t s = 0; s < kSteps; ++s) {
      for (int64_t k = 0; k < K; ++k) {
        step_end[size_t(s)] = std::max(step_end[size_t(s)], end_[size_t(k)][size_t(s)] + opt(k));
      }
    }
    out_.step_seconds = kSteps > 2 ? (step_end[size_t(kSteps - 1)] - step_end[1]) / double(kSteps - 2)
                                   : step_end[kSteps - 1] - step_end[kSteps - 2];
    if (out_.step_seconds <= 0) out_.step_seconds = step_end[kSteps - 1];
    for (auto& b : out_.busy) b /= kSteps;
    for (auto& b : out_.up_busy) b /= kSteps;
    for (auto& b : out_.down_busy) b /= kSteps;
    // A link direction busier per step than the simulated step bounds it: in the steady state
    // it carries every step's bytes (the simulated steps may still be draining a start-up
    // backlog, as rank 0's link with replicas on other hosts is).
    for (size_t h = 0; h < out_.up_busy.size(); ++h) {
      out_.step_seconds = std::max({out_.step_seconds, out_.up_busy[h], out_.down_busy[h]});
    }
    for (auto& b : out_.sync_bytes_out) b /= kSteps;
    for (auto& b : out_.sync_wait) b /= kSteps;
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
  const PipelineRun& rep(int64_t k) const { return reps_[size_t(k / S_)]; }
  const StepCosts& costs(int64_t k) const { return rep(k).costs; }
  double opt(int64_t k) const {
    const StepCosts& c = costs(k);
    return c.optimizer_s.empty() ? 0.0 : c.optimizer_s[size_t(k % S_)];
  }
  // The worker rank of a chunk of replica r.
  int64_t worker(int64_t r, int64_t chunk) const { return r * S_ + chunk % S_; }
  int64_t host_of(int64_t k) const { return l_.host_of_rank[size_t(k)]; }
  bool has_sync(int64_t k) const { return !sync_.empty() && !sync_[size_t(k)].empty(); }

  void push(Event e) {
    e.seq = seq_++;
    q_.push(e);
  }
  void push_free(int64_t k, double t) { push(Event{t, kFree, 0, k, 0, Message{}}); }

  // An input crosses a link (and is simulated) when its replica's first stage is not on rank
  // 0's host.
  bool input_modelled(int64_t r) const {
    return !reps_[size_t(r)].costs.input_bytes.empty() && host_of(worker(r, 0)) != 0;
  }

  // Rank 0's inputs and labels of step s, in the orchestrator's order.
  void send_feed(int64_t s, double t) {
    for (int64_t r = 0; r < R_; ++r) {
      const PipelineRun& p = reps_[size_t(r)];
      const bool labels = !p.costs.label_bytes.empty(), inputs = input_modelled(r);
      if (!labels && !inputs) continue;
      for (int64_t m = 0; m < p.shape.micro_batches; ++m) {
        for (const Message& msg : orchestrator_sends(m, p.shape)) {
          if ((msg.flow == Flow::Labels && labels) || (msg.flow == Flow::Input && inputs)) {
            Event e{t, kSend, 0, -1, s, msg};
            e.replica = r;
            push(e);
          }
        }
      }
    }
  }

  double bytes_of(int64_t r, const Message& m) const {
    const StepCosts& c = reps_[size_t(r)].costs;
    if (m.flow == Flow::Labels) return c.label_bytes[size_t(m.micro_batch)];
    if (m.flow == Flow::Input) return c.input_bytes[size_t(m.micro_batch)];
    const auto& t = m.flow == Flow::Activation ? c.act_bytes : c.grad_bytes;
    return t[size_t(m.boundary())][size_t(m.micro_batch)];
  }

  // arrived_'s slot of a message: [replica][step][flow][boundary (0 for rank 0's)][micro-batch].
  double& arrival(int64_t r, int64_t s, const Message& m) {
    return arrived_[size_t(r)][size_t(s)][size_t(m.flow)][size_t(std::max<int64_t>(0, m.boundary()))]
                   [size_t(m.micro_batch)];
  }

  // `bytes` leave host `from` for host `to` at t: when they arrive.
  double transfer(int64_t from, int64_t to, double bytes, double t) {
    const double copy = bytes / l_.shm_bytes_per_second;
    if (from == to) return t + l_.latency_s + copy;
    const double wire = l_.bits_per_second > 0 ? bytes * l_.framing * 8.0 / l_.bits_per_second : 0.0;
    const double dur = std::max(wire, copy);
    const double start = std::max({t, up_free_[size_t(from)], down_free_[size_t(to)]});
    up_free_[size_t(from)] = down_free_[size_t(to)] = start + dur;
    out_.up_busy[size_t(from)] += dur;
    out_.down_busy[size_t(to)] += dur;
    pair_[size_t(from * l_.hosts + to)] += dur;
    return start + dur + l_.latency_s;
  }

  void send(const Event& e) {
    const int64_t from = e.msg.from == kOrchestrator ? 0 : host_of(worker(e.replica, e.msg.from));
    const int64_t to = host_of(worker(e.replica, e.msg.to));
    Event a = e;
    a.t = transfer(from, to, bytes_of(e.replica, e.msg), e.t);
    a.type = kArrival;
    push(a);
  }

  void arrive(const Event& e) {
    arrival(e.replica, e.step, e.msg) = e.t;
    // The receiver, if it waits for exactly this message.
    const int64_t k = worker(e.replica, e.msg.to);
    if (waiting_[size_t(k)] && step_[size_t(k)] == e.step) {
      waiting_[size_t(k)] = false;
      push_free(k, e.t);
    }
  }

  bool have(int64_t r, int64_t s, const Message& m) { return arrival(r, s, m) >= 0; }

  // Rank k is free at t: runs its next action if its messages are in (else waits for them).
  void free(int64_t k, double t) {
    const int64_t r = k / S_;
    const PipelineRun& p = reps_[size_t(r)];
    const Program& prog = p.programs[size_t(k % S_)];
    const PipelineShape& shape = p.shape;
    const StepCosts& c = p.costs;
    int64_t& s = step_[size_t(k)];
    size_t& i = next_[size_t(k)];
    if (s >= kSteps) return;
    if (i == prog.size()) {  // the step's last action is done: its sums, the optimizer, the next step
      if (has_sync(k)) {
        Member& m = members_[size_t(k)];
        m.actions_end = t;
        if (m.done < 0) return;  // sync_done ends the step
      }
      end_step(k, t);
      return;
    }
    const Action& a = prog[i];
    const int64_t ch = a.chunk, mb = a.micro_batch;
    double dur = 0;
    // The messages the action consumes (dataflow.h): wait for each one that crosses ranks, and
    // decode it.
    for (const Message& msg : consumes(a, shape)) {
      if (msg.flow == Flow::Input && !input_modelled(r)) continue;
      if (msg.flow != Flow::Input && is_local(msg, shape)) continue;
      if (msg.flow == Flow::Labels && c.label_bytes.empty()) continue;
      if (!have(r, s, msg)) {
        waiting_[size_t(k)] = true;
        return;
      }
      if (msg.flow == Flow::Activation) dur += c.act_decode[size_t(msg.boundary())][size_t(mb)];
      if (msg.flow == Flow::Gradient) dur += c.grad_decode[size_t(msg.boundary())][size_t(mb)];
    }
    const double before_compute = dur;
    double work = 0;
    switch (a.kind) {
      case ActionKind::Forward:
        work = c.f[size_t(ch)][size_t(mb)];
        dur += work;
        held_[size_t(k)] += c.held_bytes[size_t(ch)][size_t(mb)];
        out_.peak_held_bytes[size_t(k)] = std::max(out_.peak_held_bytes[size_t(k)], held_[size_t(k)]);
        break;
      case ActionKind::Backward:
        work = c.b[size_t(ch)][size_t(mb)];
        dur += work;
        held_[size_t(k)] -= c.held_bytes[size_t(ch)][size_t(mb)];
        break;
      case ActionKind::InputGrad:
        work = c.i[size_t(ch)][size_t(mb)];
        dur += work;
        break;
      case ActionKind::WeightGrad:
        work = c.w[size_t(ch)][size_t(mb)];
        dur += work;
        held_[size_t(k)] -= c.held_bytes[size_t(ch)][size_t(mb)];
        break;
    }
    if (has_sync(k) && last_weight_grad_[size_t(k)][size_t(ch / S_)] == i) fill_buckets(k, ch, t + before_compute, work);
    // The message it sends, encoded on this rank first.
    std::optional<Message> out = sends(a, shape);
    if (out && is_local(*out, shape)) out.reset();
    if (out) {
      const auto& encode = out->flow == Flow::Activation ? c.act_encode : c.grad_encode;
      dur += encode[size_t(out->boundary())][size_t(mb)];
    }
    out_.busy[size_t(k)] += dur;
    ++i;
    if (out) {
      Event e{t + dur, kSend, 0, -1, s, *out};
      e.replica = r;
      push(e);
    }
    push_free(k, t + dur);
  }

  // Rank k's step is over at t (actions and sums): the optimizer, then the next step.
  void end_step(int64_t k, double t) {
    int64_t& s = step_[size_t(k)];
    end_[size_t(k)][size_t(s)] = t;
    ++done_in_step_[size_t(s)];
    const int64_t ended = s;
    ++s;
    next_[size_t(k)] = 0;
    if (has_sync(k)) reset_member(k);
    if (k == 0 && s + 1 < kSteps) send_feed(s + 1, t);
    if (reps_.front().costs.clip_round_trip) {
      const int64_t K = R_ * S_;
      if (done_in_step_[size_t(ended)] == K) {
        double last = 0;
        for (int64_t j = 0; j < K; ++j) last = std::max(last, end_[size_t(j)][size_t(ended)]);
        const double go = last + 2 * l_.latency_s;
        if (s < kSteps) {
          for (int64_t j = 0; j < K; ++j) push_free(j, go + opt(j));
        }
      }
      return;
    }
    if (s < kSteps) push_free(k, t + opt(k));
  }

  // --- the replicas' gradient sums ------------------------------------------------------------

  void prepare_sync() {
    if (sync_.empty()) return;
    const int64_t K = R_ * S_;
    members_.assign(size_t(K), Member{});
    last_weight_grad_.assign(size_t(K), {});
    sync_arrived_.assign(kSteps, std::vector<std::vector<std::vector<double>>>(size_t(K)));
    for (int64_t k = 0; k < K; ++k) {
      if (!has_sync(k)) continue;
      const PipelineRun& p = rep(k);
      // the index in the rank's program of each local chunk's last B or W
      auto& last = last_weight_grad_[size_t(k)];
      last.assign(size_t(p.shape.chunks_per_rank), size_t(-1));
      const Program& prog = p.programs[size_t(k % S_)];
      for (size_t i = 0; i < prog.size(); ++i) {
        if (prog[i].kind == ActionKind::Backward || prog[i].kind == ActionKind::WeightGrad) {
          last[size_t(prog[i].chunk / S_)] = i;
        }
      }
      for (auto& per_step : sync_arrived_) {
        per_step[size_t(k)].assign(sync_[size_t(k)].size(), std::vector<double>(size_t(2 * (R_ - 1)), -1));
      }
      reset_member(k);
    }
  }

  void reset_member(int64_t k) {
    Member& m = members_[size_t(k)];
    const auto& buckets = sync_[size_t(k)];
    m = Member{};
    m.ready.assign(buckets.size(), -1);
    for (const SyncBucket& b : buckets) m.fills_left.push_back(int64_t(b.fills.size()));
  }

  int64_t ring_next(int64_t k) const { return ((k / S_ + 1) % R_) * S_ + k % S_; }
  int64_t hops() const { return 2 * (R_ - 1); }

  // Rank k's last weight-gradient backward of chunk `chunk` computes from t for `work` seconds:
  // the buckets it completes are full at their fraction of it.
  void fill_buckets(int64_t k, int64_t chunk, double t, double work) {
    Member& m = members_[size_t(k)];
    const auto& buckets = sync_[size_t(k)];
    for (size_t b = 0; b < buckets.size(); ++b) {
      for (const auto& [c, fraction] : buckets[b].fills) {
        if (c != chunk) continue;
        m.ready[b] = std::max(m.ready[b], t + fraction * work);
        if (--m.fills_left[b] == 0) {
          Event e{m.ready[b], kSyncReady, 0, k, step_[size_t(k)], Message{}};
          e.bucket = b;
          push(e);
        }
      }
    }
  }

  void sync_ready(const Event& e) { try_begin(e.rank, e.t); }

  // Begins the next bucket's ring when it is full and the previous one is done here.
  void try_begin(int64_t k, double t) {
    Member& m = members_[size_t(k)];
    const auto& buckets = sync_[size_t(k)];
    if (m.ringing || m.next >= buckets.size() || m.fills_left[m.next] > 0 || m.ready[m.next] > t) return;
    m.ringing = true;
    m.hop = -1;
    const double cost = buckets[m.next].send_s[0];
    out_.busy[size_t(k)] += cost;
    Event s{t + cost, kSyncSend, 0, k, step_[size_t(k)], Message{}};
    s.bucket = m.next;
    s.hop = 0;
    push(s);
  }

  void sync_send(const Event& e) {
    const int64_t k = e.rank, to = ring_next(k);
    const double bytes = sync_[size_t(k)][e.bucket].hop_bytes;
    out_.sync_bytes_out[size_t(k)] += bytes;
    Event a = e;
    a.t = transfer(host_of(k), host_of(to), bytes, e.t);
    a.type = kSyncArrival;
    a.rank = to;
    push(a);
    members_[size_t(k)].hop = e.hop;
    try_receive(k, e.t);
  }

  void sync_arrive(const Event& e) {
    sync_arrived_[size_t(e.step)][size_t(e.rank)][e.bucket][size_t(e.hop)] = e.t;
    if (step_[size_t(e.rank)] == e.step) try_receive(e.rank, e.t);
  }

  // The hop rank k has sent is in from the previous member: its codec work, then the next hop
  // (or the bucket is summed).
  void try_receive(int64_t k, double t) {
    Member& m = members_[size_t(k)];
    if (!m.ringing || m.hop < 0) return;
    const int64_t s = step_[size_t(k)], h = m.hop;
    if (sync_arrived_[size_t(s)][size_t(k)][m.next][size_t(h)] < 0) return;
    const SyncBucket& b = sync_[size_t(k)][m.next];
    m.hop = -1;
    double cost = b.receive_s;
    Event e{0, kSyncSend, 0, k, s, Message{}};
    e.bucket = m.next;
    if (h + 1 < hops()) {
      cost += b.send_s[size_t(h + 1)];
      e.hop = h + 1;
    } else {
      e.type = kSyncDone;
    }
    out_.busy[size_t(k)] += cost;
    e.t = t + cost;
    push(e);
  }

  void sync_done(const Event& e) {
    const int64_t k = e.rank;
    Member& m = members_[size_t(k)];
    m.ringing = false;
    ++m.next;
    if (m.next < sync_[size_t(k)].size()) {
      try_begin(k, e.t);
      return;
    }
    m.done = e.t;
    if (m.actions_end >= 0) {  // the rank waited for its sums since its last action
      out_.sync_wait[size_t(k)] += e.t - m.actions_end;
      end_step(k, e.t);
    }
  }

  const std::vector<PipelineRun>& reps_;
  const std::vector<std::vector<SyncBucket>>& sync_;
  const LinkModel& l_;
  const int64_t S_, R_;
  const int64_t kSteps;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> q_;
  uint64_t seq_ = 0;
  // [replica][step][flow][boundary][micro-batch]: arrival time, -1 before.
  std::vector<std::vector<std::vector<std::vector<std::vector<double>>>>> arrived_;
  std::vector<size_t> next_;
  std::vector<int64_t> step_;
  std::vector<bool> waiting_;
  std::vector<std::vector<double>> end_;
  std::vector<double> held_;
  std::vector<double> pair_, up_free_, down_free_;
  std::vector<int64_t> done_in_step_;
  // replicas
  std::vector<Member> members_;
  std::vector<std::vector<size_t>> last_weight_grad_;                         // [rank][local chunk]: program index
  std::vector<std::vector<std::vector<std::vector<double>>>> sync_arrived_;  // [step][rank][bucket][hop]
  LinkSimulation out_;
};

}  // namespace

LinkSimulation simulate_links(const std::vector<PipelineRun>& replicas,
                              const std::vector<std::vector<SyncBucket>>& sync, const LinkModel& links) {
  if (replicas.empty()) {
    LinkSimulation out;
    out.error = "no pipeline to simulate";
    return out;
  }
  return Sim(replicas, sync, links).run();
}

LinkSimulation simulate_links(const std::vector<Program>& programs, const PipelineShape& shape,
                              const StepCosts& costs, const LinkModel& links) {
  return simulate_links(std::vector<PipelineRun>{PipelineRun{programs, shape, costs}}, {}, links);
}

}  // namespace arceus::plan
