// The REST shim's jobs: their states, the one table of legal moves between them, the job
// records and the queue of jobs to train. MPI- and httplib-free.
//
// A job's state changes only in transition(), which looks the move up in kJobTransitions; a
// request the table has no move for is refused with 409, naming the job, its state and the
// request. The server's lock (ServeState::mu) guards every record and the queue.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "partition/partition.h"
#include "ranks/run_state.h"

namespace arceus {

class EventHub;

namespace serve {

using Clock = std::chrono::steady_clock;

// created -> initialized -> queued -> training -> completed | failed | stopped; queued ->
// stopped (stopped while waiting). A transformer's train from created initializes it first.
// A job on devices that loses one goes training -> recovering -> training (it resumes from its
// last checkpoint on the devices left), or -> failed (none left, or training.on_device_loss:
// fail), or -> stopped (it had been asked to stop). Recovering lasts while the queue loop
// holds the lock: requests see the job training, then recovered or ended.
enum class JobState { Created, Initialized, Queued, Training, Recovering, Completed, Failed, Stopped };

const char* to_string(JobState s);
// JSON (nlohmann finds this by ADL): the text, never the enum's number.
inline void to_json(nlohmann::json& j, JobState s) { j = to_string(s); }
inline bool is_final(JobState s) { return s == JobState::Completed || s == JobState::Failed || s == JobState::Stopped; }

// What may move a job: the requests of clients (initialize, register, train, stop) and the
// ends of its run, reported by the queue loop.
enum class JobEvent {
  Initialize,  // POST /api/network/initialize/<id>, or a device registering to an initialized job
  Register,    // POST /api/devices/register (a device takes a stage of the job)
  Train,       // POST /api/network/train/<id>
  Start,       // the queue loop takes the job
  Stop,        // POST /api/jobs/<id>/stop, or the server shutting down with the job queued
  Complete,    // the run ended: RunState::Completed
  Fail,        //                RunState::Failed
  Halt,        //                RunState::Stopped
  DeviceLost,  // a device of the job stopped answering (or its MPI process ended) mid-run
  Resume,      // the job runs again on the devices left
};
const char* to_string(JobEvent e);

// The event a finished run reports (RunState::Running: none, Fail).
JobEvent end_of_run(RunState r);

// Every legal move: (state, event) -> state. A pair that is not here is refused.
struct JobTransition {
  JobState from;
  JobEvent event;
  JobState to;
};
inline constexpr JobTransition kJobTransitions[] = {
    {JobState::Created, JobEvent::Initialize, JobState::Initialized},
    {JobState::Initialized, JobEvent::Initialize, JobState::Initialized},  // again (a device joined the plan)
    {JobState::Created, JobEvent::Register, JobState::Created},
    {JobState::Initialized, JobEvent::Register, JobState::Initialized},  // re-initialized with the device
    {JobState::Initialized, JobEvent::Train, JobState::Queued},
    {JobState::Queued, JobEvent::Start, JobState::Training},
    {JobState::Queued, JobEvent::Stop, JobState::Stopped},      // before it started
    {JobState::Training, JobEvent::Stop, JobState::Training},   // it ends after the batches in flight
    {JobState::Training, JobEvent::Complete, JobState::Completed},
    {JobState::Training, JobEvent::Fail, JobState::Failed},
    {JobState::Training, JobEvent::Halt, JobState::Stopped},
    {JobState::Training, JobEvent::DeviceLost, JobState::Recovering},
    {JobState::Recovering, JobEvent::Resume, JobState::Training},
    {JobState::Recovering, JobEvent::Fail, JobState::Failed},    // no device left, or on_device_loss: fail
    {JobState::Recovering, JobEvent::Halt, JobState::Stopped},   // asked to stop before the loss
};

// The table's answer: whether `event` applies in `from`, and the state it leads to.
bool legal(JobState from, JobEvent event, JobState* to = nullptr);

struct JobRecord {
  int id = 0;
  JobState state = JobState::Created;  // changed by transition() only
  std::string format;                  // "json" or "yaml": how the job body came
  Config config;                       // as created; output.dir filled in
  Config train_config;                 // config + the train request's epochs / learning_rate
  std::vector<LayerRange> plan;        // from initialize (or train, for a transformer); then the trainer's
  int64_t replicas = 1;                // copies of the plan (partition.replicas), replica-major on the ranks
  nlohmann::json stage_parameters;     // per stage, from the trainer's summary once the job ran (else null)
  nlohmann::json train_request;        // {"epochs", "learning_rate"} once asked to train
  std::vector<std::string> logs;       // on_log lines and the server's own "[serve] ..." lines
  nlohmann::json steps = nlohmann::json::array();   // on_step entries
  nlohmann::json epochs = nlohmann::json::array();  // on_epoch entries (summary.json's epochs[])
  std::string error;                   // failed: why; stopped: who stopped it
  // Every device lost mid-run and what followed: {"device_id", "host", "at", "step", "why",
  // then "resumed_from_step", "steps_redone", "devices_left", "seconds_to_resume"} (GET
  // /api/jobs/<id> and summary.json's "device_losses").
  nlohmann::json losses = nlohmann::json::array();
  bool on_devices = false;  // placed on devices: it never falls back to the world's ranks
  int restored = 0;  // times a server restart interrupted it and took it up again (persist.h)
  std::string created_at, started_at, finished_at;  // started_at, finished_at: set by transition()
  Clock::time_point start_time;
  double seconds = 0;
  std::atomic<bool> stop{false};  // POST /api/jobs/<id>/stop
  EventHub* events = nullptr;     // the server's: steps, epochs, log lines and states go out as they happen
  // The steps again, serialized by the trainer's thread outside the lock, so that requests copy
  // text under it instead of building JSON: `steps` as JSON text without the brackets (GET
  // .../metrics) and each step's SSE frame (the replay of GET .../events).
  std::string steps_text;
  std::vector<std::string> step_frames;
  // How long the trainer's thread waited for the server's lock (held by request handlers).
  double lock_wait_total = 0, lock_wait_max = 0;
  int64_t lock_waits = 0;

  bool transformer() const { return is_transformer(config); }
};

// 409 unless the table has a move for (job.state, event): the message names the job, its
// state and what was asked. Requests check this before their other work, so a refused
// request changes nothing.
void require(const JobRecord& job, JobEvent event);

// The only place a job's state changes (caller holds the lock): require(), then the table's
// state; entering training stamps started_at and start_time, entering a final state
// finished_at (and seconds, from training). Returns the new state. The caller then notes why
// (note) and tells the watchers (publish_state), in that order.
JobState transition(JobRecord& job, JobEvent event);

// The server's own line in a job's log (caller holds the lock); also printed on rank 0.
void note(JobRecord& job, const std::string& line);

// One event to the job's watchers (caller holds the lock, so events leave in the order the
// job's lists grow).
void publish(JobRecord& job, const char* kind, const nlohmann::json& data);
void publish_frame(JobRecord& job, const std::string& frame);
// {"state", "error"}: the event after each change of state, and the first of every stream.
nlohmann::json state_event(const JobRecord& job);
// After every change of job.state; a final state ends the job's event streams.
void publish_state(JobRecord& job);
// A step as its SSE event carries it: the step with its index.
nlohmann::json step_event(const nlohmann::json& step, size_t index);

// The job table and the queue of jobs to train (caller holds the server's lock).
class Jobs {
 public:
  // A new job numbered next (1, 2, ...), created now.
  std::shared_ptr<JobRecord> add(EventHub* events);
  // A job of the saved table (persist.h), numbered `id`; later jobs are numbered after it.
  std::shared_ptr<JobRecord> restore(int id, EventHub* events);
  // The job of a path's id text: 404 for text that is no id or an id without a job.
  std::shared_ptr<JobRecord> find(const std::string& id_text) const;
  std::shared_ptr<JobRecord> at(int id) const { return all_.at(id); }
  const std::map<int, std::shared_ptr<JobRecord>>& all() const { return all_; }
  size_t size() const { return all_.size(); }

  // The queue: jobs asked to train, in order. A job stopped while queued stays in it until
  // next_queued() skips it.
  void enqueue(int id) { queue_.push_back(id); }
  std::vector<int> queued() const;  // the ids still queued
  std::vector<int> ahead() const;   // the training job, then the queued ones
  // Pops jobs until a queued one (nullptr: none). The caller moves it on (Start).
  std::shared_ptr<JobRecord> next_queued();
  // Takes every job off the queue (shutdown), returning those still queued.
  std::vector<std::shared_ptr<JobRecord>> drain();

  // The job training now (0: none) and the jobs in the order they started training.
  int current() const { return current_; }
  void set_current(int id) {
    current_ = id;
    if (id) started_.push_back(id);
  }
  const std::vector<int>& started() const { return started_; }  // in the order they started
  // "Current": the training job, else the last one that started; "previous": the one before.
  std::pair<const JobRecord*, const JobRecord*> current_and_previous() const;
  // The job whose layers the ranks hold: the training one, else the last initialized or run.
  std::shared_ptr<JobRecord> placed() const;

 private:
  std::map<int, std::shared_ptr<JobRecord>> all_;
  int next_id_ = 1;
  std::deque<int> queue_;
  int current_ = 0;
  std::vector<int> started_;
};

}  // namespace serve
}  // namespace arceus
