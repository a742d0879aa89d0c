#include "ranks/transport.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

namespace arceus {

namespace {

// Spin a little (latency), then sleep with a doubling back-off (CPU). A wait that has
// already lasted kLongWaitMicros (a stage waiting out a transfer or a bubble, rank 0 waiting
// for a step) sleeps kLongSleepMicros at a time: on a host with a fraction of a core, every
// wake-up is quota the computing rank beside it needs.
class Backoff {
 public:
  void pause(std::chrono::steady_clock::time_point start) {
    if (spins_ < 64) {
      ++spins_;
      std::this_thread::yield();
      return;
    }
    if (sleep_us_ == Transport::kMaxSleepMicros &&
        std::chrono::steady_clock::now() - start > std::chrono::microseconds(Transport::kLongWaitMicros)) {
      std::this_thread::sleep_for(std::chrono::microseconds(Transport::kLongSleepMicros));
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    sleep_us_ = std::min(sleep_us_ * 2, Transport::kMaxSleepMicros);
  }

 private:
  int spins_ = 0;
  int sleep_us_ = 10;
};

}  // namespace

Request::Request(Request&& other) noexcept { *this = std::move(other); }

Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    release();
    impl_ = std::move(other.impl_);
    active_ = other.active_;
    is_recv_ = other.is_recv_;
    peer_ = other.peer_;
    tag_ = other.tag_;
    received_ = other.received_;
    buffer_ = std::move(other.buffer_);
    other.active_ = false;
  }
  return *this;
}

void Request::release() noexcept {
  if (active_ && std::uncaught_exceptions() == 0) {
    std::fprintf(stderr, "[transport] a pending request (peer %d, tag %d) was destroyed before completion\n",
                 peer_, tag_);
    std::abort();
  }
  impl_.reset();
  active_ = false;
}

Request::~Request() { release(); }

Request Transport::make_request(std::shared_ptr<void> impl, std::vector<uint8_t> buffer, int peer, int tag,
                                bool is_recv) {
  Request r;
  r.impl_ = std::move(impl);
  r.buffer_ = std::move(buffer);
  r.peer_ = peer;
  r.tag_ = tag;
  r.is_recv_ = is_recv;
  r.active_ = true;
  return r;
}

void Transport::wait(Request& r, Pace pace) {
  if (!r.active_) return;
  if (test(r)) return;
  const auto start = std::chrono::steady_clock::now();
  Backoff backoff;
  while (!test(r)) {
    if (pace == Pace::Busy) {
      // Yield for the first kBusySpinMicros (a sum between ranks with a core each is done by
      // then), then test every ~20 us: often enough that the bytes keep moving, seldom enough not
      // to burn a fractional core's quota (a 0.45-core host throttled by a yield loop ran the
      // replicas' sums at 0.43x of one host on a 1 Gbit/s link; sleeping from the start halved
      // 2 one-core hosts' rate on an unlimited one).
      if (std::chrono::steady_clock::now() - start < std::chrono::microseconds(kBusySpinMicros)) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
    } else {
      backoff.pause(start);
    }
    if (wait_limit_ > 0) {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > wait_limit_) {
        throw TransportError("[transport] rank " + std::to_string(rank_) + " waited " + std::to_string(int(waited)) +
                             " s for a message " + (r.is_recv_ ? "from" : "to") + " rank " + std::to_string(r.peer_) +
                             " (tag " + std::to_string(r.tag_) + "): the peer is gone or stuck",
                             r.peer_, r.tag_, r.is_recv_ ? "receive" : "send");
      }
    }
  }
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void Transport::wait_all(std::vector<Request>& requests) {
  for (auto& r : requests) wait(r);
}

}  // namespace arceus
