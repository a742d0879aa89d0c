// The queue loop on rank 0's main thread (see runner.h).
#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <mutex>

#include "common/errors.h"
#include "launcher/request_body.h"
#include "launcher/serve/runner.h"
#include "launcher/serve/state.h"
#include "ranks/transport.h"

namespace arceus::serve {

using json = nlohmann::json;

namespace {

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

// Waits for the next queued job, accepting devices meanwhile; nullptr at shutdown. Returns
// with the job moved to training (caller holds no lock).
std::shared_ptr<JobRecord> next_job(ServeState& s, JobRunner& runner) {
  std::unique_lock<std::mutex> lock(s.mu);
  std::shared_ptr<JobRecord> job;
  while (true) {
    if (const int sig = s.signal_received()) s.request_shutdown(sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (s.shutdown) return nullptr;
    if (const int id = s.devices.next_accept()) {
      const std::string port = s.mpi_port;
      lock.unlock();
      const int rank = runner.accept_device(port);
      lock.lock();
      s.devices.joined(id, rank);
      continue;
    }
    if ((job = s.jobs.next_queued())) break;
    s.cv.wait_for(lock, std::chrono::milliseconds(100));  // also polls the signal flag
  }
  transition(*job, JobEvent::Start);
  s.jobs.set_current(job->id);
  note(*job, "training started");
  publish_state(*job);
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
  note(job, line);
  publish_state(job);
}

}  // namespace

void run_queue(ServeState& s, JobRunner& runner, const TrainOptions& train) {
  while (const std::shared_ptr<JobRecord> job = next_job(s, runner)) {
    RecordingObserver observer(s, job);
    TrainOptions options = train;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      options.stage_ranks = s.devices.stage_ranks(job->id);
    }
    JobResult result;
    std::string broken;
    try {
      result = runner.run(job->train_config, options, observer);
    } catch (const std::exception& e) {
      // Thrown during training: the workers may be waiting for messages of this job. The
      // server keeps answering, but no further job can run on these ranks.
      result.state = RunState::Failed;
      result.error = e.what();
      // A device that died is named: the rank of the transport's failed call.
      std::string who;
      if (const auto t = find_error<TransportError>(e)) {
        std::lock_guard<std::mutex> lock(s.mu);
        who = s.devices.device_at(t->peer());
      }
      result.error += who;
      broken = "[serve] job " + std::to_string(job->id) + " failed during training (" + e.what() + who +
               "); the ranks may be out of step, so no further job can run: restart arceus serve";
    }
    std::lock_guard<std::mutex> lock(s.mu);
    if (!broken.empty()) s.broken = broken;
    record_end(s, *job, result);
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
