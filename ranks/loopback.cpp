#include "ranks/loopback.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <exception>
#include <mutex>
#include <thread>

#include "common/errors.h"

namespace arceus {

namespace {

// The broadcast travels as point-to-point messages on a tag no data message uses (data tags
// stay under 32768, see wire.h).
constexpr int kBroadcastTag = 1 << 20;

// A group's allreduce: every member's floats, summed in member order once the last arrives
// (so every member gets the same bits, as MPI's does).
struct Collective {
  std::vector<std::vector<uint8_t>> parts;  // by member index
  size_t arrived = 0, taken = 0;
  std::vector<uint8_t> sum;  // set when every part arrived
  bool ready = false;
};

struct Slot {  // one posted receive, or one member's part of a collective
  int source = -1, tag = -1;
  size_t capacity = 0;
  bool done = false;
  std::vector<uint8_t> bytes;
  std::chrono::steady_clock::time_point posted = std::chrono::steady_clock::now();
  std::shared_ptr<Collective> collective;
};

// One Transport::split: every rank's (color, key).
struct SplitRound {
  std::vector<std::pair<int, int>> entries;
  int arrived = 0;
};

struct Message {
  int source = -1, tag = -1;
  std::vector<uint8_t> bytes;
};

struct Mailbox {
  std::deque<Message> unexpected;             // arrived before their receive was posted
  std::deque<std::shared_ptr<Slot>> posted;   // receives waiting, in posting order
};

std::string truncated(int rank, int source, int tag, size_t got, size_t capacity) {
  return "[loopback] rank " + std::to_string(rank) + ": message from rank " + std::to_string(source) + " (tag " +
         std::to_string(tag) + ") has " + std::to_string(got) + " bytes, the receive posted " +
         std::to_string(capacity);
}

}  // namespace

struct LoopbackWorld {
  std::mutex mutex;
  std::vector<Mailbox> boxes;
  std::string failure;  // set once a rank failed
  double timeout_seconds = 0;
  std::vector<int64_t> split_calls;                // per rank: its splits so far
  std::map<int64_t, SplitRound> splits;            // by round
  std::map<std::pair<int64_t, uint64_t>, std::shared_ptr<Collective>> collectives;  // (group, sequence)
};

LoopbackTransport::LoopbackTransport(std::shared_ptr<LoopbackWorld> world, int rank, int size, std::string host)
    : world_(std::move(world)) {
  rank_ = rank;
  size_ = size;
  host_ = std::move(host);
  node_ranks_.clear();
  for (int r = 0; r < size; ++r) node_ranks_.push_back(r);
}

Request LoopbackTransport::isend(std::vector<uint8_t> bytes, int dest, int tag) {
  if (dest < 0 || dest >= size_) {
    throw TransportError("[loopback] rank " + std::to_string(rank_) + " sends to rank " + std::to_string(dest) +
                         " of a world of " + std::to_string(size_));
  }
  std::lock_guard<std::mutex> lock(world_->mutex);
  if (!world_->failure.empty()) throw TransportError("[loopback] another rank failed: " + world_->failure, -1, -1, "", /*secondary=*/true);
  Mailbox& box = world_->boxes[static_cast<size_t>(dest)];
  for (auto it = box.posted.begin(); it != box.posted.end(); ++it) {
    Slot& slot = **it;
    if (slot.source != rank_ || slot.tag != tag) continue;
    if (bytes.size() > slot.capacity) throw TransportError(truncated(dest, rank_, tag, bytes.size(), slot.capacity));
    slot.bytes = std::move(bytes);
    slot.done = true;
    box.posted.erase(it);
    Request r = make_request(nullptr, {}, dest, tag, false);
    complete(r, 0);
    return r;
  }
  box.unexpected.push_back({rank_, tag, std::move(bytes)});
  Request r = make_request(nullptr, {}, dest, tag, false);
  complete(r, 0);
  return r;
}

Request LoopbackTransport::irecv(size_t bytes, int source, int tag) {
  auto slot = std::make_shared<Slot>();
  slot->source = source;
  slot->tag = tag;
  slot->capacity = bytes;
  std::lock_guard<std::mutex> lock(world_->mutex);
  if (!world_->failure.empty()) throw TransportError("[loopback] another rank failed: " + world_->failure, -1, -1, "", /*secondary=*/true);
  Mailbox& box = world_->boxes[static_cast<size_t>(rank_)];
  for (auto it = box.unexpected.begin(); it != box.unexpected.end(); ++it) {
    if (it->source != source || it->tag != tag) continue;
    if (it->bytes.size() > bytes) throw TransportError(truncated(rank_, source, tag, it->bytes.size(), bytes));
    slot->bytes = std::move(it->bytes);
    slot->done = true;
    box.unexpected.erase(it);
    break;
  }
  if (!slot->done) box.posted.push_back(slot);
  return make_request(slot, {}, source, tag, true);
}

bool LoopbackTransport::test(Request& r) {
  if (!is_active(r)) return true;
  Slot* slot = impl_of<Slot>(r);
  std::lock_guard<std::mutex> lock(world_->mutex);
  if (slot->collective && !slot->done && slot->collective->ready) {
    slot->bytes = slot->collective->sum;
    slot->done = true;
    slot->collective.reset();
  }
  if (!slot->done) {
    if (!world_->failure.empty()) throw TransportError("[loopback] another rank failed: " + world_->failure, -1, -1, "", /*secondary=*/true);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - slot->posted).count();
    if (world_->timeout_seconds > 0 && waited > world_->timeout_seconds) {
      throw TransportError("[loopback] rank " + std::to_string(rank_) + " waited " + std::to_string(int(waited)) +
                           " s for a message from rank " + std::to_string(r.peer()) + " (tag " +
                           std::to_string(r.tag()) + "): nothing was sent",
                           r.peer(), r.tag(), "receive");
    }
    return false;
  }
  const size_t n = slot->bytes.size();
  auto& buf = buffer_of(r);
  buf = std::move(slot->bytes);
  complete(r, n);
  return true;
}

void LoopbackTransport::broadcast(std::vector<uint8_t>& bytes, int root) {
  if (size_ == 1) return;
  if (rank_ == root) {
    for (int r = 0; r < size_; ++r)
      if (r != root) isend(bytes, r, kBroadcastTag);
    return;
  }
  // The size is not known in advance: take the message as it is queued.
  Request req = irecv(SIZE_MAX, root, kBroadcastTag);
  wait(req);
  bytes.assign(req.buffer().begin(), req.buffer().begin() + static_cast<std::ptrdiff_t>(req.received_bytes()));
}

class LoopbackGroup final : public Group {
 public:
  LoopbackGroup(LoopbackTransport& transport, int64_t id, std::vector<int> members) : transport_(transport), id_(id) {
    members_ = std::move(members);
    rank_ = static_cast<int>(std::find(members_.begin(), members_.end(), transport.rank()) - members_.begin());
  }

  Request iallreduce_sum(std::vector<uint8_t> floats) override {
    if (floats.size() % sizeof(float) != 0) {
      throw TransportError("[loopback] allreduce of " + std::to_string(floats.size()) +
                           " bytes: not a whole number of floats");
    }
    LoopbackWorld& w = *transport_.world_;
    auto slot = std::make_shared<Slot>();
    std::lock_guard<std::mutex> lock(w.mutex);
    if (!w.failure.empty()) {
      throw TransportError("[loopback] another rank failed: " + w.failure, -1, -1, "", /*secondary=*/true);
    }
    auto& c = w.collectives[{id_, sequence_++}];
    if (!c) {
      c = std::make_shared<Collective>();
      c->parts.resize(members_.size());
    }
    for (const auto& part : c->parts) {
      if (!part.empty() && part.size() != floats.size()) {
        throw TransportError("[loopback] allreduce: member " + std::to_string(rank_) + " gives " +
                             std::to_string(floats.size()) + " bytes, another member " + std::to_string(part.size()));
      }
    }
    c->parts[static_cast<size_t>(rank_)] = std::move(floats);
    if (++c->arrived == c->parts.size()) {
      const size_t n = c->parts[0].size() / sizeof(float);
      std::vector<float> sum(n), part(n);
      std::memcpy(sum.data(), c->parts[0].data(), n * sizeof(float));
      for (size_t m = 1; m < c->parts.size(); ++m) {
        std::memcpy(part.data(), c->parts[m].data(), n * sizeof(float));
        for (size_t i = 0; i < n; ++i) sum[i] += part[i];
      }
      c->sum.resize(n * sizeof(float));
      std::memcpy(c->sum.data(), sum.data(), n * sizeof(float));
      c->parts.clear();
      c->ready = true;
      w.collectives.erase({id_, sequence_ - 1});  // the members' slots keep it alive
    }
    slot->collective = c;
    return LoopbackTransport::make_request(slot, {}, -1, -1, false);
  }

 private:
  LoopbackTransport& transport_;
  int64_t id_;
  uint64_t sequence_ = 0;
};

std::unique_ptr<Group> LoopbackTransport::split(int color, int key) {
  LoopbackWorld& w = *world_;
  int64_t round = 0;
  {
    std::lock_guard<std::mutex> lock(w.mutex);
    round = w.split_calls[static_cast<size_t>(rank_)]++;
    SplitRound& s = w.splits[round];
    if (s.entries.empty()) s.entries.assign(static_cast<size_t>(size_), {-1, 0});
    s.entries[static_cast<size_t>(rank_)] = {color, key};
    ++s.arrived;
  }
  // Every rank calls split (it is collective): wait for all of them, as MPI_Comm_split does.
  std::vector<std::pair<int, int>> entries;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(w.mutex);
      if (!w.failure.empty()) {
        throw TransportError("[loopback] another rank failed: " + w.failure, -1, -1, "", /*secondary=*/true);
      }
      const SplitRound& s = w.splits[round];
      if (s.arrived == size_) {
        entries = s.entries;
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  if (color < 0) return nullptr;
  std::vector<std::pair<int, int>> order;  // (key, rank) of the ranks of my color
  for (int r = 0; r < size_; ++r) {
    if (entries[static_cast<size_t>(r)].first == color) order.push_back({entries[static_cast<size_t>(r)].second, r});
  }
  std::sort(order.begin(), order.end());
  std::vector<int> members;
  for (const auto& [k, r] : order) members.push_back(r);
  return std::make_unique<LoopbackGroup>(*this, round * 65536 + color, std::move(members));
}

std::vector<std::string> LoopbackTransport::all_hosts() { return std::vector<std::string>(size_t(size_), host_); }

void LoopbackTransport::fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(world_->mutex);
  if (world_->failure.empty()) world_->failure = "rank " + std::to_string(rank_) + ": " + why;
}

void LoopbackTransport::abort(int code) {
  fail("aborted with code " + std::to_string(code));
  throw TransportError("[loopback] rank " + std::to_string(rank_) + " aborted the world (code " +
                       std::to_string(code) + ")");
}

std::vector<std::unique_ptr<LoopbackTransport>> loopback_world(int size, const std::string& host,
                                                               double timeout_seconds) {
  auto world = std::make_shared<LoopbackWorld>();
  world->boxes.resize(static_cast<size_t>(size));
  world->split_calls.assign(static_cast<size_t>(size), 0);
  world->timeout_seconds = timeout_seconds;
  std::vector<std::unique_ptr<LoopbackTransport>> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(std::make_unique<LoopbackTransport>(world, r, size, host));
  return ranks;
}

void run_loopback(int size, const std::function<void(Transport&)>& body, double timeout_seconds,
                  const std::string& host) {
  auto ranks = loopback_world(size, host, timeout_seconds);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(size));
  auto run = [&](int r) {
    try {
      body(*ranks[static_cast<size_t>(r)]);
    } catch (const std::exception& e) {
      errors[static_cast<size_t>(r)] = std::current_exception();
      ranks[static_cast<size_t>(r)]->fail(e.what());
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < size; ++r) threads.emplace_back(run, r);
  run(0);
  for (auto& t : threads) t.join();
  // The first failure is the cause; the others are "another rank failed".
  std::exception_ptr first;
  for (auto& e : errors) {
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      const auto t = find_error<TransportError>(x);
      if (t && t->secondary()) {
        if (!first) first = e;
        continue;
      }
      std::rethrow_exception(e);
    } catch (...) {
      std::rethrow_exception(e);
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace arceus
