// The queue loop on rank 0's main thread (see runner.h).
#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <memory>
#include <mutex>

#include "common/errors.h"
#include "common/atomic_file.h"
#include "common/utc.h"
#include "launcher/request_body.h"
#include "launcher/serve/handlers.h"
#include "launcher/serve/persist.h"
#include "launcher/serve/runner.h"
#include "launcher/serve/state.h"
#include "ranks/transport.h"

namespace arceus::serve {

using json = nlohmann::json;

namespace {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Records what the runner reports into the job (rank 0's main thread).
class RecordingObserver : public JobObserver {
 public:
  RecordingObserver(ServeState& state, std::shared_ptr<JobRecord> job) : state_(state), job_(std::move(job)) {}

  // Only this thread appends to the job's lists, so it reads their sizes without the lock and
  // serializes outside it; under the lock it only appends.
  void on_log(const std::string& line) override {
    const std::string frame = sse_frame("log", json{{"index", job_->logs.size()}, {"line", line}}.dump());
    std::unique_lock<std::mutex> lock = locked();
    job_->logs.push_back(line);
    publish_frame(*job_, frame);
  }
  void on_step(const json& step) override {
    const size_t index = job_->steps.size();
    const std::string text = step.dump();
    const std::string frame = sse_frame("step", step_event(step, index).dump());
    std::unique_lock<std::mutex> lock = locked();
    job_->steps.push_back(step);
    if (index) job_->steps_text += ',';
    job_->steps_text += text;
    job_->step_frames.push_back(frame);
    publish_frame(*job_, frame);
  }
  void on_epoch(const json& epoch) override {
    const std::string frame = sse_frame("epoch", epoch.dump());
    std::unique_lock<std::mutex> lock = locked();
    job_->epochs.push_back(epoch);
    publish_frame(*job_, frame);
  }
  bool stop_requested() override {
    return job_->stop.load() || state_.stopping.load() || state_.signal_received() != 0;
  }

 private:
  // The server's lock, timing the wait (GET /api/jobs/<id> shows it: `trainer_lock_wait`).
  std::unique_lock<std::mutex> locked() {
    const auto t0 = Clock::now();
    std::unique_lock<std::mutex> lock(state_.mu);
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    job_->lock_wait_total += waited;
    job_->lock_wait_max = std::max(job_->lock_wait_max, waited);
    ++job_->lock_waits;
    return lock;
  }
  ServeState& state_;
  std::shared_ptr<JobRecord> job_;
};

// Waits for the next queued job; nullptr at shutdown. Returns with the job moved to training
// (caller holds no lock).
std::shared_ptr<JobRecord> next_job(ServeState& s) {
  std::unique_lock<std::mutex> lock(s.mu);
  std::shared_ptr<JobRecord> job;
  while (true) {
    if (const int sig = s.signal_received()) s.request_shutdown(sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (s.shutdown) return nullptr;
    for (int id : s.devices.expire_idle(s.heartbeat_timeout)) {
      std::printf("[serve] device %d is gone: %s\n", id, s.devices.find(id)->why.c_str());
      std::fflush(stdout);
    }
    if ((job = s.jobs.next_queued())) break;
    s.cv.wait_for(lock, std::chrono::milliseconds(100));  // also polls the signal flag
  }
  transition(*job, JobEvent::Start);
  s.jobs.set_current(job->id);
  note(*job, "training started");
  publish_state(*job);
  save_jobs(s);
  return job;
}

// The plan the trainer used (a transformer's balanced plan is refined once the vocabulary is
// known) and its parameters per stage, from its summary.
void take_plan(JobRecord& job, const json& summary) {
  const json stages = summary.is_object() ? summary.value("stages", json()) : json();
  if (!stages.is_array() || stages.empty()) return;
  std::vector<LayerRange> plan;
  json parameters = json::array();
  for (const json& st : stages) {
    const json layers = st.value("layers", json());
    if (!layers.is_array() || layers.size() != 2 || !layers[0].is_number_integer() || !layers[1].is_number_integer())
      return;
    const int64_t first = layers[0].get<int64_t>(), last = layers[1].get<int64_t>();
    plan.push_back(LayerRange{first, last - first + 1});
    parameters.push_back(st.value("parameters", json()));
  }
  job.plan = plan;
  job.stage_parameters = parameters;
}

// The job's run ended (caller holds the lock): its final state, why, its plan, its last line.
void record_end(ServeState& s, JobRecord& job, const JobResult& result) {
  transition(job, end_of_run(result.state));
  job.error = result.error;
  s.jobs.set_current(0);
  take_plan(job, result.summary);
  if (result.state == RunState::Stopped) {
    job.error = job.stop ? "stopped by POST /api/jobs/" + std::to_string(job.id) + "/stop"
                         : "stopped: the server shut down";
  }
  std::string line = to_string(job.state) + std::string(" in ") + rest::fixed(job.seconds, 1) + " s";
  if (!job.epochs.empty()) {
    const json& e = job.epochs.back();
    line += " after " + std::to_string(job.epochs.size()) + " epoch(s), ";
    line += e.contains("tokens_per_second")
                ? "val loss " + rest::fixed(e.value("val_loss", 0.0), 4) + ", " +
                      rest::fixed(e.value("tokens_per_second", 0.0), 0) + " tokens/s"
                : "val accuracy " + rest::fixed(100 * e.value("val_accuracy", 0.0), 2) + "%";
  }
  if (!job.error.empty()) line += ": " + job.error;
  if (!job.losses.empty()) {
    // summary.json (the trainer's, of the run that ended) records every loss and resume too.
    line += "; " + std::to_string(job.losses.size()) + " device(s) lost on the way";
    const std::string path = (std::filesystem::path(job.train_config.output.dir) / "summary.json").string();
    json summary = json::parse(read_text_file(path), nullptr, false);
    if (summary.is_object()) {
      summary["device_losses"] = job.losses;
      try {
        write_atomically(path, summary.dump(2) + "\n");
      } catch (const std::exception& e) {
        line += " (" + path + " not updated: " + e.what() + ")";
      }
    }
  }
  note(job, line);
  publish_state(job);
  save_jobs(s);
}

// A step's number since the job began: (epoch - 1) * steps + step.
int64_t global_step_of(const json& step) {
  return (step.value("epoch", int64_t(1)) - 1) * step.value("steps", int64_t(0)) + step.value("step", int64_t(0));
}

// A job on devices, run until it ends: each device lost mid-run moves it to recovering, then
// it resumes from its last checkpoint on the devices left (re-planned), or fails.
JobResult run_on_devices(ServeState& s, JobRunner& runner, JobRecord& job, RecordingObserver& observer,
                         const TrainOptions& train) {
  TrainOptions options = train;
  options.stage_ranks.clear();  // ranks 1..K of the job's own world
  while (true) {
    std::vector<int> devices;
    Config config;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      devices = s.devices.of_job(job.id);
      config = job.train_config;
    }
    if (devices.empty()) {
      // Its devices went while it waited (silent while idle, or unregistered): it fails, naming
      // them, rather than running on the world's ranks it was not placed on.
      std::lock_guard<std::mutex> lock(s.mu);
      std::string gone;
      for (const auto& d : s.devices.all())
        if (d.job == job.id) gone += (gone.empty() ? "" : "; ") + Devices::name(d) + ": " + to_string(d.state) + (d.why.empty() ? "" : " (" + d.why + ")");
      JobResult failed;
      failed.state = RunState::Failed;
      failed.error = "no device of job " + std::to_string(job.id) + " is left" + (gone.empty() ? "" : ": " + gone);
      return failed;
    }
    const size_t steps_before = job.steps.size();
    DeviceRun run = runner.run_on_devices(s, devices, config, options, observer);
    std::unique_lock<std::mutex> lock(s.mu);
    if (!job.losses.empty() && job.losses.back().value("resumed_from_step", json()).is_null() &&
        job.steps.size() > steps_before) {
      // The first step after a resume says where the checkpoint left the job.
      json& loss = job.losses.back();
      const int64_t resumed = global_step_of(job.steps[steps_before]) - 1;
      loss["resumed_from_step"] = resumed;
      loss["steps_redone"] = std::max<int64_t>(0, loss.value("step", int64_t(0)) - resumed);
    }
    if (!run.lost) return run.result;
    Device* d = s.devices.find(run.lost);
    const std::string who = d ? Devices::name(*d) : "device " + std::to_string(run.lost);
    const std::string host = d ? d->ip : "?";
    if (d && is_live(d->state)) {
      d->state = DeviceState::Gone;
      d->why = run.why;
    }
    const int64_t step = job.steps.empty() ? 0 : global_step_of(job.steps.back());
    job.losses.push_back({{"device_id", run.lost}, {"host", host}, {"at", utc_now()}, {"step", step},
                          {"why", run.why}, {"resumed_from_step", nullptr}, {"steps_redone", nullptr}});
    const auto lost_at = Clock::now();
    transition(job, JobEvent::DeviceLost);
    note(job, who + " on " + host + " lost at step " + std::to_string(step) + ": " + run.why);
    publish_state(job);
    save_jobs(s);
    const std::vector<int> left = s.devices.of_job(job.id);
    JobResult failed;
    failed.state = RunState::Failed;
    if (job.stop || s.stopping) {
      failed.state = RunState::Stopped;
      return failed;
    }
    if (job.train_config.training.on_device_loss == "fail") {
      failed.error = who + " was lost at step " + std::to_string(step) + " (" + run.why +
                     ") and training.on_device_loss is fail";
      return failed;
    }
    if (left.empty()) {
      failed.error = who + " was lost at step " + std::to_string(step) + " (" + run.why + ") and no device is left";
      return failed;
    }
    try {
      handlers::replan(s, job, "re-planned after the loss of " + who);
    } catch (const std::exception& e) {
      failed.error = who + " was lost at step " + std::to_string(step) + "; the devices left cannot take the job: " +
                     e.what();
      return failed;
    }
    job.train_config.resume = true;  // from <output.dir>/checkpoint.h5 when there is one, else step 0
    const std::filesystem::path dir = job.train_config.output.dir;
    const bool checkpoint = std::filesystem::exists(dir / "checkpoint.h5");
    if (checkpoint) {
      // The checkpoint the run resumes from stays as resumed-from-<n>.h5 (a hard link: the
      // next checkpoint replaces checkpoint.h5 by a rename, so this costs no copy).
      const std::filesystem::path kept = dir / ("resumed-from-" + std::to_string(job.losses.size()) + ".h5");
      std::error_code ec;
      std::filesystem::remove(kept, ec);
      std::filesystem::create_hard_link(dir / "checkpoint.h5", kept, ec);
      if (ec) std::filesystem::copy_file(dir / "checkpoint.h5", kept, ec);
      if (!ec) job.losses.back()["checkpoint"] = kept.string();
    }
    job.losses.back()["devices_left"] = left.size();
    job.losses.back()["seconds_to_resume"] = std::chrono::duration<double>(Clock::now() - lost_at).count();
    transition(job, JobEvent::Resume);
    note(job, std::string("resuming ") + (checkpoint ? "from its last checkpoint" : "from step 0 (no checkpoint yet)") +
                  " on " + std::to_string(left.size()) + " device(s)");
    publish_state(job);
    save_jobs(s);
  }
}

}  // namespace

void run_queue(ServeState& s, JobRunner& runner, const TrainOptions& train) {
  while (const std::shared_ptr<JobRecord> job = next_job(s)) {
    RecordingObserver observer(s, job);
    TrainOptions options = train;
    bool on_devices = false;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      options.stage_ranks = s.devices.stage_ranks(job->id);
      on_devices = job->on_devices || s.devices.on_devices(job->id);
    }
    JobResult result;
    std::string broken;
    try {
      result = on_devices ? run_on_devices(s, runner, *job, observer, options) : runner.run(job->train_config, options, observer);
    } catch (const std::exception& e) {
      // Thrown during training on the world: its ranks may be waiting for messages of this job.
      // The server keeps answering, but no further job can run on these ranks.
      result.state = RunState::Failed;
      result.error = e.what();
      broken = "[serve] job " + std::to_string(job->id) + " failed during training (" + e.what() +
               "); the ranks may be out of step, so no further job can run: restart arceus serve";
    }
    std::lock_guard<std::mutex> lock(s.mu);
    if (!broken.empty()) s.broken = broken;
    record_end(s, *job, result);
  }
}

void dismiss_devices(ServeState& s, double seconds) {
  const auto t0 = Clock::now();
  std::unique_lock<std::mutex> lock(s.mu);
  std::vector<int> told;
  for (const auto& d : s.devices.all()) {
    if (!is_live(d.state)) continue;
    Device* live = s.devices.find(d.id);
    live->state = DeviceState::Left;
    live->why = "the server shut down";
    if (live->heard) told.push_back(d.id);
  }
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    bool all_heard = true;
    for (int id : told) all_heard = all_heard && s.devices.find(id)->last_seen > t0;
    if (all_heard) return;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    lock.lock();
  }
}

void stop_queued(ServeState& s) {
  std::lock_guard<std::mutex> lock(s.mu);
  for (const auto& job : s.jobs.drain()) {
    transition(*job, JobEvent::Stop);
    job->error = "stopped: the server shut down before the job started";
  }
}

}  // namespace arceus::serve
