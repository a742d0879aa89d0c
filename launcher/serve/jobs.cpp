// The REST shim's jobs (see jobs.h).
#include "launcher/serve/jobs.h"

#include <algorithm>
#include <stdexcept>
#include <cctype>
#include <cstdio>

#include "common/utc.h"
#include "launcher/request_body.h"
#include "launcher/serve/events.h"

namespace arceus::serve {

using json = nlohmann::json;
using rest::HttpError;

const char* to_string(JobState s) {
  switch (s) {
    case JobState::Created: return "created";
    case JobState::Initialized: return "initialized";
    case JobState::Queued: return "queued";
    case JobState::Training: return "training";
    case JobState::Recovering: return "recovering";
    case JobState::Completed: return "completed";
    case JobState::Failed: return "failed";
    case JobState::Stopped: return "stopped";
  }
  return "?";
}

const char* to_string(JobEvent e) {
  switch (e) {
    case JobEvent::Initialize: return "initialize";
    case JobEvent::Register: return "register";
    case JobEvent::Train: return "train";
    case JobEvent::Start: return "start";
    case JobEvent::Stop: return "stop";
    case JobEvent::Complete: return "complete";
    case JobEvent::Fail: return "fail";
    case JobEvent::Halt: return "halt";
    case JobEvent::DeviceLost: return "device lost";
    case JobEvent::Resume: return "resume";
  }
  return "?";
}

JobEvent end_of_run(RunState r) {
  switch (r) {
    case RunState::Completed: return JobEvent::Complete;
    case RunState::Stopped: return JobEvent::Halt;
    case RunState::Failed:
    case RunState::Running: break;
  }
  return JobEvent::Fail;
}

bool legal(JobState from, JobEvent event, JobState* to) {
  for (const JobTransition& t : kJobTransitions) {
    if (t.from != from || t.event != event) continue;
    if (to) *to = t.to;
    return true;
  }
  return false;
}

namespace {

// Why `event` does not apply to the job in its state, and what the client can do instead:
// "[serve] job <id> is <state>..." and the request's name (initialize, register, train, stop).
std::string refusal(const JobRecord& job, JobEvent event) {
  const std::string id = std::to_string(job.id);
  const std::string head = "[serve] job " + id + " is " + to_string(job.state);
  switch (event) {
    case JobEvent::Initialize: return head + ": initialize applies to a created or initialized job, before it trains";
    case JobEvent::Register: return head + ": a device may register to a created or initialized job only, before it trains";
    case JobEvent::Train:
      if (job.state == JobState::Created) {
        return head + ", not initialized: POST /api/network/initialize/" + id +
               " first (it partitions the layers over the ranks), then train";
      }
      if (!is_final(job.state)) return head + ": train was already asked (a job trains once)";
      return head + ": train does not apply, the job already ran; create a new job (POST /api/jobs) to train again";
    case JobEvent::Stop: return head + ": stop applies only to a queued, training or recovering job";
    case JobEvent::Start:
    case JobEvent::Complete:
    case JobEvent::Fail:
    case JobEvent::Halt:
    case JobEvent::DeviceLost:
    case JobEvent::Resume: break;
  }
  // The queue loop's own moves: refused only when the server is wrong.
  return head + ": '" + to_string(event) + "' does not apply (an internal error of the server)";
}

}  // namespace

void require(const JobRecord& job, JobEvent event) {
  if (!legal(job.state, event)) throw HttpError(409, refusal(job, event));
}

JobState transition(JobRecord& job, JobEvent event) {
  JobState to = job.state;
  if (!legal(job.state, event, &to)) throw HttpError(409, refusal(job, event));
  const JobState from = job.state;
  job.state = to;
  if (to == from) return to;
  if (to == JobState::Training && from == JobState::Queued) {  // not again when it resumes
    job.started_at = utc_now();
    job.start_time = Clock::now();
  }
  if (is_final(to)) {
    job.finished_at = utc_now();
    if (from == JobState::Training || from == JobState::Recovering)
      job.seconds = std::chrono::duration<double>(Clock::now() - job.start_time).count();
  }
  return to;
}

void note(JobRecord& job, const std::string& line) {
  job.logs.push_back("[serve] " + line);
  publish(job, "log", {{"index", job.logs.size() - 1}, {"line", job.logs.back()}});
  std::printf("[serve] job %d: %s\n", job.id, line.c_str());
  std::fflush(stdout);
}

void publish(JobRecord& job, const char* kind, const json& data) {
  if (job.events) job.events->publish(job.id, sse_frame(kind, data.dump()));
}

void publish_frame(JobRecord& job, const std::string& frame) {
  if (job.events) job.events->publish(job.id, frame);
}

json state_event(const JobRecord& job) {
  return {{"state", to_string(job.state)}, {"error", job.error.empty() ? json(nullptr) : json(job.error)}};
}

void publish_state(JobRecord& job) {
  publish(job, "state", state_event(job));
  if (job.events && is_final(job.state)) job.events->end(job.id);
}

json step_event(const json& step, size_t index) {
  json e = step;
  e["index"] = index;
  return e;
}

// ---------------------------------------------------------------------------------------------
// The table and the queue.

std::shared_ptr<JobRecord> Jobs::add(EventHub* events) {
  auto job = std::make_shared<JobRecord>();
  job->id = next_id_++;
  job->events = events;
  job->created_at = utc_now();
  all_[job->id] = job;
  return job;
}

std::shared_ptr<JobRecord> Jobs::restore(int id, EventHub* events) {
  if (id < 1 || all_.count(id)) throw std::runtime_error("id " + std::to_string(id) + " is not a new positive id");
  auto job = std::make_shared<JobRecord>();
  job->id = id;
  job->events = events;
  all_[id] = job;
  next_id_ = std::max(next_id_, id + 1);
  return job;
}

std::shared_ptr<JobRecord> Jobs::find(const std::string& text) const {
  const bool digits = !text.empty() && text.size() <= 9 &&
                      std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
  const int id = digits ? std::stoi(text) : 0;
  if (id <= 0) throw HttpError(404, "[serve] unknown job id '" + text + "' (job ids are 1, 2, ...; GET /api/jobs lists them)");
  const auto it = all_.find(id);
  if (it == all_.end()) {
    throw HttpError(404, "[serve] no job " + std::to_string(id) + " (jobs: " +
                             (all_.empty() ? std::string("none yet; POST /api/jobs creates one")
                                           : std::to_string(all_.begin()->first) + ".." +
                                                 std::to_string(all_.rbegin()->first)) +
                             ")");
  }
  return it->second;
}

std::vector<int> Jobs::queued() const {
  std::vector<int> ids;
  for (int q : queue_)
    if (all_.at(q)->state == JobState::Queued) ids.push_back(q);
  return ids;
}

std::vector<int> Jobs::ahead() const {
  std::vector<int> ids;
  if (current_) ids.push_back(current_);
  for (int q : queued()) ids.push_back(q);
  return ids;
}

std::shared_ptr<JobRecord> Jobs::next_queued() {
  while (!queue_.empty()) {
    auto candidate = all_.at(queue_.front());
    queue_.pop_front();
    if (candidate->state == JobState::Queued) return candidate;  // else stopped while queued
  }
  return nullptr;
}

std::vector<std::shared_ptr<JobRecord>> Jobs::drain() {
  std::vector<std::shared_ptr<JobRecord>> jobs;
  while (auto job = next_queued()) jobs.push_back(job);
  return jobs;
}

std::pair<const JobRecord*, const JobRecord*> Jobs::current_and_previous() const {
  if (started_.empty()) return {nullptr, nullptr};
  const size_t n = started_.size();
  const JobRecord* cur = all_.at(started_[n - 1]).get();
  const JobRecord* prev = n >= 2 ? all_.at(started_[n - 2]).get() : nullptr;
  return {cur, prev};
}

std::shared_ptr<JobRecord> Jobs::placed() const {
  if (current_) return all_.at(current_);
  std::shared_ptr<JobRecord> best;
  for (const auto& [id, job] : all_)
    if (!job->plan.empty()) best = job;
  return best;
}

}  // namespace arceus::serve
