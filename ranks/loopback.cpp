#include "ranks/loopback.h"

#include <chrono>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "common/errors.h"

namespace arceus {

namespace {

// The broadcast travels as point-to-point messages on a tag no data message uses (data tags
// stay under 32768, see wire.h).
constexpr int kBroadcastTag = 1 << 20;

struct Slot {  // one posted receive
  int source = -1, tag = -1;
  size_t capacity = 0;
  bool done = false;
  std::vector<uint8_t> bytes;
  std::chrono::steady_clock::time_point posted = std::chrono::steady_clock::now();
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
