// Server-sent events of `arceus serve` (GET /api/jobs/<id>/events): each job's steps, epochs,
// log lines and state changes, fanned out to every browser watching it.
//
// The trainer's thread publishes; it never waits on a client. Each subscriber has a bounded
// queue: when a client reads more slowly than training produces, its oldest events are
// dropped and counted (the client is told, and refetches GET .../metrics), so a slow or
// vanished client costs the publisher one lock and a deque push per event, whatever it does.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace arceus {

// One SSE frame: "event: <kind>\ndata: <data>\n\n" (data is one line of JSON).
std::string sse_frame(const std::string& kind, const std::string& data);

class EventHub {
 public:
  // What a subscriber gets from next().
  enum class Next { Event, Timeout, End };

  class Subscriber {
   public:
    // Waits up to `wait` for the next frame. Event: `out` holds it (and, first, a "dropped"
    // frame when events were dropped since the last call). End: the job reached a final state
    // and every frame before that was delivered, or the hub closed.
    Next next(std::string* out, std::chrono::milliseconds wait);
    size_t dropped() const;

   private:
    friend class EventHub;
    explicit Subscriber(size_t limit) : limit_(limit) {}
    void push(const std::string& frame);  // caller holds hub's lock
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::string> queue_;
    size_t limit_;
    size_t dropped_ = 0, reported_ = 0;
    bool ended_ = false;
  };

  // `per_client` frames are kept per subscriber; `max_subscribers` streams at once.
  explicit EventHub(size_t per_client = 4096, size_t max_subscribers = 32)
      : per_client_(per_client), max_subscribers_(max_subscribers) {}

  // A subscriber of `job` whose queue starts with `replay` (frames the caller built from the
  // job's history under the same lock that orders publish(), so nothing is missed or doubled);
  // `ended`: the job is already final, the stream ends after the replay. nullptr when
  // max_subscribers streams are open.
  std::shared_ptr<Subscriber> subscribe(int job, const std::vector<std::string>& replay, bool ended);
  void unsubscribe(int job, const std::shared_ptr<Subscriber>& s);

  void publish(int job, const std::string& frame);
  // The job reached a final state: its subscribers end once they have read what was published.
  void end(int job);
  // Shutdown: every subscriber ends now.
  void close();

  // Streams open now (subscribers still held by a request).
  size_t subscribers() const;
  size_t max_subscribers() const { return max_subscribers_; }

 private:
  size_t open_locked() const;
  mutable std::mutex mu_;
  std::map<int, std::vector<std::shared_ptr<Subscriber>>> subs_;  // live subscribers by job
  std::vector<std::weak_ptr<Subscriber>> open_;                    // every stream not yet released
  size_t per_client_, max_subscribers_;
  bool closed_ = false;
};

}  // namespace arceus
