#include "launcher/serve/events.h"

#include <algorithm>

namespace arceus {

std::string sse_frame(const std::string& kind, const std::string& data) {
  return "event: " + kind + "\ndata: " + data + "\n\n";
}

void EventHub::Subscriber::push(const std::string& frame) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) return;
    if (queue_.size() >= limit_) {  // drop-oldest: the newest state is what a watcher wants
      queue_.pop_front();
      ++dropped_;
    }
    queue_.push_back(frame);
  }
  cv_.notify_one();
}

EventHub::Next EventHub::Subscriber::next(std::string* out, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, wait, [this] { return !queue_.empty() || ended_; });
  if (queue_.empty()) return ended_ ? Next::End : Next::Timeout;
  out->clear();
  if (dropped_ != reported_) {
    *out = sse_frame("dropped", "{\"count\":" + std::to_string(dropped_ - reported_) + "}");
    reported_ = dropped_;
  }
  *out += queue_.front();
  queue_.pop_front();
  return Next::Event;
}

size_t EventHub::Subscriber::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_;
}

std::shared_ptr<EventHub::Subscriber> EventHub::subscribe(int job, const std::vector<std::string>& replay, bool ended) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || open_locked() >= max_subscribers_) return nullptr;
  std::shared_ptr<Subscriber> s(new Subscriber(per_client_));
  // The replay may exceed the limit (it is what the client asked for); later pushes then drop
  // its oldest frames one by one.
  for (const auto& f : replay) s->queue_.push_back(f);
  open_.push_back(s);
  if (ended) {
    s->ended_ = true;
  } else {
    subs_[job].push_back(s);
  }
  return s;
}

void EventHub::unsubscribe(int job, const std::shared_ptr<Subscriber>& s) {
  std::lock_guard<std::mutex> lock(mu_);
  open_.erase(std::remove_if(open_.begin(), open_.end(), [](const auto& w) { return w.expired(); }), open_.end());
  auto it = subs_.find(job);
  if (it == subs_.end()) return;
  auto& v = it->second;
  v.erase(std::remove(v.begin(), v.end(), s), v.end());
  if (v.empty()) subs_.erase(it);
}

void EventHub::publish(int job, const std::string& frame) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(job);
  if (it == subs_.end()) return;
  for (auto& s : it->second) s->push(frame);
}

void EventHub::end(int job) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = subs_.find(job);
  if (it == subs_.end()) return;
  for (auto& s : it->second) {
    {
      std::lock_guard<std::mutex> l(s->mu_);
      s->ended_ = true;
    }
    s->cv_.notify_all();
  }
  subs_.erase(it);
}

void EventHub::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  for (auto& [job, v] : subs_) {
    for (auto& s : v) {
      {
        std::lock_guard<std::mutex> l(s->mu_);
        s->ended_ = true;
        s->queue_.clear();
      }
      s->cv_.notify_all();
    }
  }
  subs_.clear();
}

size_t EventHub::open_locked() const {
  size_t n = 0;
  for (const auto& w : open_) n += w.expired() ? 0 : 1;
  return n;
}

size_t EventHub::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_locked();
}

}  // namespace arceus
