// `arceus serve`: the REST shim (see serve.h; docs/rest-api.md lists the endpoints).
//
// Contract between the two threads of rank 0:
// - the HTTP thread (cpp-httplib's pool) never calls MPI: it validates requests, records jobs
//   in ServeState (under ServeState::mu) and appends the ids of jobs to train to the queue;
// - the main thread (MPI_THREAD_FUNNELED) waits on ServeState::cv, pops one job at a time and
//   runs it with run_job; its JobObserver writes logs, steps and epochs into the job record
//   (under the same mutex) and reads the job's stop flag.
// One job trains at a time: the world is one pipeline.
#include "launcher/serve.h"

#include "launcher/blas.h"

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/utc.h"
#include "config/config.h"
#include "common/errors.h"
#include "config/config_json.h"
#include "datasets/lookup.h"
#include "partition/partition.h"
#include "launcher/assets.h"
#include "launcher/events.h"
#include "launcher/request_body.h"
#include "launcher/serve_states.h"
#include "launcher/rendezvous.h"
#include "ranks/inference.h"
#include "ranks/job.h"
#include "ranks/mpi_transport.h"
#include "ranks/placement.h"
#include "ranks/transport.h"
#include "ranks/trainer.h"

#ifndef ARCEUS_SOURCE_DIR
#define ARCEUS_SOURCE_DIR "."
#endif

namespace arceus {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxBodyBytes = 1 << 20;  // larger request bodies are refused with 413
constexpr time_t kKeepAliveSeconds = 2;    // bounds how long stop() waits for idle connections
// Request threads. A connection holds one while it is open: a keep-alive client between its
// requests (up to kKeepAliveSeconds idle), an event stream for its whole life (at most
// EventHub's 32), a client that sends its request slowly until it is complete or silent for
// kReadTimeoutSeconds. More connections than threads wait in the accept queue.
constexpr int kHttpThreads = 128;
constexpr time_t kReadTimeoutSeconds = 5;   // a connection silent this long is closed
constexpr int kListenBacklog = 256;         // connections waiting to be accepted
constexpr size_t kKeepAliveRequests = 1000;  // requests per keep-alive connection (the library's default: 5)
constexpr time_t kWriteTimeoutSeconds = 5;  // a client that reads nothing this long is dropped
constexpr int kEventWaitMillis = 250;      // an event stream checks for shutdown this often
constexpr int kEventPingMillis = 15000;    // and sends a comment line after this long without events
constexpr int64_t kMaxGenerateTokens = 2000;  // generate: characters per request
constexpr size_t kMaxPromptBytes = 4096;      // generate: prompt length

// The original's train endpoint: a body without epochs / learning_rate meant 10 epochs at 0.1.
constexpr int64_t kOriginalEpochs = 10;
constexpr double kOriginalLearningRate = 0.1;

// SIGINT/SIGTERM on rank 0: a graceful shutdown, polled by the main thread and the observer.
// SA_RESETHAND: a second signal ends the process the default way.
volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// ---------------------------------------------------------------------------------------------
// Small helpers (the text helpers are shared with the request bodies: launcher/request_body.h).

using rest::blank;
using rest::fixed;
using rest::HttpError;
using rest::join;
using rest::json_type;
using rest::lower;
using rest::resolve_path;

json or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

void send(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(2) + "\n", "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send(res, status, {{"error", message}});
}

// A job id from the path: a positive decimal integer, else 404.
int job_id_from(const std::string& text) {
  const bool digits = !text.empty() && text.size() <= 9 &&
                      std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
  const int id = digits ? std::stoi(text) : 0;
  if (id <= 0) throw HttpError(404, "[serve] unknown job id '" + text + "' (job ids are 1, 2, ...; GET /api/jobs lists them)");
  return id;
}

// Constant-time comparison of the Authorization header with the expected one.
bool same_secret(const std::string& given, const std::string& expected) {
  if (given.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ expected[i]);
  return diff == 0;
}

// ---------------------------------------------------------------------------------------------
// Jobs.

struct JobRecord {
  int id = 0;
  JobState state = JobState::Created;
  std::string format;             // "json" or "yaml": how the job body came
  Config config;                  // as created; output.dir filled in
  Config train_config;            // config + the train request's epochs / learning_rate
  std::vector<LayerRange> plan;   // from initialize (or train, for a transformer); then the trainer's
  int64_t replicas = 1;           // copies of the plan (partition.replicas), replica-major on the ranks
  json stage_parameters;          // per stage, from the trainer's summary once the job ran (else null)
  json train_request;             // {"epochs", "learning_rate"} once asked to train
  std::vector<std::string> logs;  // on_log lines and the server's own "[serve] ..." lines
  json steps = json::array();     // on_step entries
  json epochs = json::array();    // on_epoch entries (summary.json's epochs[])
  std::string error;              // failed: why; stopped: who stopped it
  std::string created_at, started_at, finished_at;
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
};

// One event to the job's watchers (caller holds the lock, so events leave in the order the
// job's lists grow).
void publish(JobRecord& job, const char* kind, const json& data) {
  if (job.events) job.events->publish(job.id, sse_frame(kind, data.dump()));
}
void publish_frame(JobRecord& job, const std::string& frame) {
  if (job.events) job.events->publish(job.id, frame);
}
json step_event(const json& step, size_t index) {
  json e = step;
  e["index"] = index;
  return e;
}
json state_event(const JobRecord& job) {
  return {{"state", to_string(job.state)}, {"error", job.error.empty() ? json(nullptr) : json(job.error)}};
}
// After every change of job.state; a final state ends the job's event streams.
void publish_state(JobRecord& job) {
  publish(job, "state", state_event(job));
  if (job.events && is_final(job.state)) job.events->end(job.id);
}

struct ServeState {
  std::mutex mu;
  std::condition_variable cv;
  std::map<int, std::shared_ptr<JobRecord>> jobs;
  int next_id = 1;
  std::deque<int> queue;             // ids waiting to train, in order
  int current = 0;                   // the job training now (0: none)
  std::vector<int> started;          // ids in the order they started training
  bool shutdown = false;             // asked to shut down (POST /api/shutdown or a signal)
  std::string shutdown_reason;
  std::atomic<bool> stopping{false};  // == shutdown, readable without the lock
  std::string broken;                // a job threw during training: the workers' state is unknown

  // Fixed at start.
  int world = 1;                     // the MPI world's ranks (without devices)
  std::vector<std::string> hosts;    // by rank: the world's, then each connected device's

  // Devices (`arceus device`) joining through MPI's dynamic-process calls.
  struct Device {
    int id = 0;
    std::string ip, port;  // the original's registration fields (the device's address and id)
    int job = 0;           // the job it takes a stage of
    int rank = -1;         // its rank once connected
    DeviceState state = DeviceState::Registered;
  };
  std::vector<Device> devices;
  std::deque<int> pending_accepts;   // devices registered, waiting for rank 0's accept
  int connecting = 0;                // the one device allowed to connect now (0: none): two
                                     // connects on one port at once would pair with the wrong accept
  int next_device = 1;
  int size = 1;                      // ranks of the current world (the world + connected devices)
  std::string rendezvous;            // the ompi-server URI handed to devices ("" = none join)
  std::vector<std::string> rendezvous_mca;
  std::string mpi_port;              // rank 0's MPI port devices connect to
  std::vector<fs::path> data_roots;
  std::string token;
  bool quiet = false;
  EventHub events;         // GET /api/jobs/<id>/events
  CheckpointModel models;  // predict / generate: the latest checkpoint's model, reused while unchanged
};

// The server's own line in a job's log (caller holds the lock); also printed on rank 0.
void note(JobRecord& job, const std::string& line) {
  job.logs.push_back("[serve] " + line);
  publish(job, "log", {{"index", job.logs.size() - 1}, {"line", job.logs.back()}});
  std::printf("[serve] job %d: %s\n", job.id, line.c_str());
  std::fflush(stdout);
}

// Records what run_job reports into the job (rank 0's main thread).
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
  bool stop_requested() override { return job_->stop.load() || state_.stopping.load() || g_signal != 0; }

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

// ---------------------------------------------------------------------------------------------
// JSON views.


int64_t mlp_layer_parameters(const Config& c, const LayerRange& r) {
  int64_t n = 0;
  const auto& s = c.model.layer_sizes;
  for (int64_t i = r.first; i < r.end(); ++i) n += s[size_t(i)] * s[size_t(i + 1)] + s[size_t(i + 1)];
  return n;
}

// A transformer's partition layers by the prefix of their parameters' names (models/gpt.h):
// 0 "embed", 1..n_blocks "blocks.<b>" (b from 0), n_blocks + 1 "head".
std::string rank_role(int rank, int world, size_t stages) { return role_of(rank, world, static_cast<int64_t>(stages)); }

// Where a job's stages may run, in stage order: the world's stage ranks (1..N-1), then the
// devices registered for it, in registration order (their ranks; a device not connected yet
// counts with the rank it will get). Empty: the one-process world alone (the reference run).
std::vector<int> job_stage_ranks(const ServeState& s, int job) {
  std::vector<int> ranks;
  for (int r = 1; r < s.world; ++r) ranks.push_back(r);
  int next = s.size;
  for (const auto& d : s.devices) {
    if (d.job != job || d.state == DeviceState::Unregistered) continue;
    ranks.push_back(d.rank >= 0 ? d.rank : next++);
  }
  return ranks;
}

// The host of a stage rank: the world's or a device's (its registered ip before it connects).
std::string host_of_rank(const ServeState& s, int rank) {
  if (rank >= 0 && static_cast<size_t>(rank) < s.hosts.size()) return s.hosts[size_t(rank)];
  int next = s.size;
  for (const auto& d : s.devices)
    if (d.rank < 0 && d.state == DeviceState::Registered && next++ == rank) return d.ip;
  return "?";
}

// The stages of a plan: {"stage" (1-based), "rank", "host", "layers" [first, last], ...}. An
// MLP's stage also has its "layer_sizes" and "parameters"; a transformer's its "layer_names"
// and "parameters" once the trainer reported them (`parameters`, per stage, else null: its
// embeddings and head depend on the text's vocabulary, known only when the data is read).
// With replicas, "replica_ranks" and "replica_hosts" give the stage's rank and host in each
// replica (replica-major slots: replica r's stage k on the job's slot r * S + k - 1).
json stages_json(const ServeState& s, const Config& c, const std::vector<LayerRange>& plan, int job,
                 const json& parameters = nullptr, int64_t replicas = 1) {
  json stages = json::array();
  const std::vector<int> ranks = job_stage_ranks(s, job);
  for (size_t k = 0; k < plan.size(); ++k) {
    const auto& r = plan[k];
    const int rank = k < ranks.size() ? ranks[k] : process_rank_of_stage(static_cast<int64_t>(k) + 1, s.world);
    json stage = {{"stage", k + 1}, {"rank", rank}, {"host", host_of_rank(s, rank)}, {"layers", {r.first, r.end() - 1}}};
    if (replicas > 1) {
      json rr = json::array(), hosts = json::array();
      for (int64_t replica = 0; replica < replicas; ++replica) {
        const size_t slot = size_t(replica) * plan.size() + k;
        const int q = slot < ranks.size() ? ranks[slot] : -1;
        rr.push_back(q);
        hosts.push_back(host_of_rank(s, q));
      }
      stage["replica_ranks"] = rr;
      stage["replica_hosts"] = hosts;
    }
    if (is_transformer(c)) {
      std::vector<std::string> names;
      for (int64_t i = r.first; i < r.end(); ++i) names.push_back(transformer_layer_name(c, i));
      stage["layer_names"] = names;
      stage["parameters"] = parameters.is_array() && parameters.size() == plan.size() ? parameters[k] : json(nullptr);
    } else {
      stage["layer_sizes"] =
          std::vector<int64_t>(c.model.layer_sizes.begin() + r.first, c.model.layer_sizes.begin() + r.end() + 1);
      stage["parameters"] = mlp_layer_parameters(c, r);
    }
    stages.push_back(stage);
  }
  return stages;
}

json final_json(const JobRecord& job) {
  if (job.epochs.empty()) return nullptr;
  const json& e = job.epochs.back();
  json f = {{"epoch", e.value("epoch", 0)},
            {"val_loss", e.value("val_loss", 0.0)},
            {"val_accuracy", e.value("val_accuracy", 0.0)},
            {"train_loss", e.value("train_loss", 0.0)},
            {"train_accuracy", e.value("train_accuracy", 0.0)}};
  // A transformer's epoch also has its throughput in characters and the text sampled after it.
  for (const char* key : {"tokens_per_second", "sample"})
    if (e.contains(key)) f[key] = e[key];
  return f;
}

const Config& effective_config(const JobRecord& job) { return job.train_request.is_null() ? job.config : job.train_config; }

// The original's job_id: a string ("1"). Paths take the same text.
json job_id_json(int id) { return std::to_string(id); }

// The original's `devices` of a job: the stages it runs on. Its plan's once initialized, else
// the world's stage ranks and its devices (1 in a one-process world without devices).
int64_t job_devices(const ServeState& s, const JobRecord& job) {
  if (!job.plan.empty()) return static_cast<int64_t>(job.plan.size()) * job.replicas;
  const size_t n = job_stage_ranks(s, job.id).size();
  return n == 0 ? 1 : static_cast<int64_t>(n);
}

// A job view (GET /api/jobs items, GET /api/jobs/<id> with `detail`): the original's fields
// (job_id, status, devices, model_config, dataset_config) and ours; `state` = `status` and
// `id` = job_id as a number, from before the original's names were adopted.
json job_json(const ServeState& s, const JobRecord& job, bool detail) {
  const Config& c = effective_config(job);
  const json config = config_json(c);  // the keys that apply to the job's model and data
  json j = {{"job_id", job_id_json(job.id)},
            {"id", job.id},
            {"status", to_string(job.state)},
            {"state", to_string(job.state)},
            {"devices", job_devices(s, job)},
            {"model_config", config["model_config"]},
            {"dataset_config", config["dataset_config"]},
            {"epochs", c.training.epochs},
            {"learning_rate", c.training.learning_rate},
            {"epochs_completed", job.epochs.size()},
            {"final", final_json(job)},
            {"error", or_null(job.error)},
            {"created_at", job.created_at},
            {"started_at", or_null(job.started_at)},
            {"finished_at", or_null(job.finished_at)}};
  if (!detail) return j;
  j["config"] = config;
  j["config_yaml"] = to_yaml(c);
  j["body_format"] = job.format;
  j["world_size"] = s.world;
  j["plan"] = job.plan.empty() ? json(nullptr) : stages_json(s, c, job.plan, job.id, job.stage_parameters, job.replicas);
  j["replicas"] = job.replicas;
  // The latest training step as the trainer reported it (epoch, step, steps, loss, accuracy,
  // samples_per_second, learning_rate, ...), with the job's epoch count.
  json progress = nullptr;
  if (!job.steps.empty()) {
    progress = job.steps.back();
    progress["epochs"] = c.training.epochs;
  }
  j["progress"] = progress;
  json latest = nullptr;
  if (!job.epochs.empty()) {
    latest = job.epochs.back();
    latest.erase("step_losses");
    latest.erase("timing");
  }
  j["latest_epoch"] = latest;
  j["train_request"] = job.train_request;
  j["seconds"] = job.state == JobState::Training ? std::chrono::duration<double>(Clock::now() - job.start_time).count()
                                         : job.seconds;
  j["output_dir"] = c.output.dir;
  j["summary_path"] = (fs::path(c.output.dir) / "summary.json").string();
  j["log_lines"] = job.logs.size();
  j["trainer_lock_wait"] = {{"total_s", job.lock_wait_total}, {"max_s", job.lock_wait_max}, {"events", job.lock_waits}};
  return j;
}

// Per-rank forward/backward TFLOPS of a job's latest epoch (the epoch JSON's timing[]).
json tflops_json(const JobRecord* job) {
  json out = {{"job_id", nullptr}, {"status", nullptr}, {"state", nullptr}, {"epoch", nullptr}, {"ranks", json::array()}};
  if (!job) return out;
  out["job_id"] = job_id_json(job->id);
  out["status"] = job->state;
  out["state"] = to_string(job->state);
  if (job->epochs.empty()) return out;
  const json& e = job->epochs.back();
  out["epoch"] = e.value("epoch", 0);
  for (const json& t : e.value("timing", json::array())) {
    out["ranks"].push_back({{"rank", t.value("rank", -1)},
                            {"host", t.value("host", "")},
                            {"stage", t.value("stage", -1)},
                            {"forward_tflops", t.value("forward_tflops", 0.0)},
                            {"backward_tflops", t.value("backward_tflops", 0.0)},
                            {"forward_s", t.value("forward_s", 0.0)},
                            {"backward_s", t.value("backward_s", 0.0)},
                            {"comm_wait_s", t.value("comm_wait_s", 0.0)},
                            {"gflops", t.value("gflops", 0.0)}});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The HTTP API (runs on httplib's threads; never calls MPI).

class Api {
 public:
  Api(ServeState& state, httplib::Server& server) : s_(state), server_(server) {}

  void install() {
    server_.set_payload_max_length(kMaxBodyBytes);
    server_.set_keep_alive_timeout(kKeepAliveSeconds);
    server_.set_keep_alive_max_count(kKeepAliveRequests);
    server_.set_read_timeout(kReadTimeoutSeconds, 0);
    server_.set_write_timeout(kWriteTimeoutSeconds, 0);
    // Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    // client's delayed ACK hold a small answer back ~40 ms.
    server_.set_tcp_nodelay(true);
    // Framework errors (unknown path, body too large, bad request line) in the same shape.
    server_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404) {
        send_error(res, 404, "[serve] no such endpoint: " + req.method + " " + req.path +
                                 " (the endpoints are listed in docs/rest-api.md)");
      } else if (res.status == 413 &&
                 lower(req.get_header_value("Content-Type")).find("x-www-form-urlencoded") != std::string::npos) {
        // httplib's own limit for form bodies: what `curl -d` sends without -H "Content-Type".
        send_error(res, 413, "[serve] request body too large for Content-Type application/x-www-form-urlencoded "
                             "(curl -d without -H): the limit is 8 KiB; send -H 'Content-Type: application/json' "
                             "(or application/yaml) for up to 1 MiB");
      } else if (res.status == 413) {
        send_error(res, 413, "[serve] request body too large: the limit is 1 MiB");
      } else {
        send_error(res, res.status, "[serve] bad request (HTTP " + std::to_string(res.status) + ")");
      }
    });
    server_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, 500, "[serve] internal error: " + what);
    });
    if (!s_.quiet) {
      server_.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        // The werkzeug access-log line the original printed.
        const std::time_t t = std::time(nullptr);
        std::tm tm{};
        localtime_r(&t, &tm);
        char when[64];
        std::strftime(when, sizeof(when), "%d/%b/%Y %H:%M:%S", &tm);
        std::printf("%s - - [%s] \"%s %s %s\" %d -\n", req.remote_addr.c_str(), when, req.method.c_str(),
                    req.path.c_str(), req.version.c_str(), res.status);
        std::fflush(stdout);
      });
    }

    // `curl -X POST URL` (the original's initialize command) sends neither Content-Length nor a
    // chunked body; httplib would wait for a body until the connection closes. Such a request
    // has an empty body: dispatch it here, through the same routes.
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.method != "POST" || req.has_header("Content-Length") || req.has_header("Transfer-Encoding"))
        return httplib::Server::HandlerResponse::Unhandled;
      httplib::Request copy = req;
      for (const auto& route : post_routes_) {
        if (std::regex_match(copy.path, copy.matches, route.first)) {
          route.second(copy, res);
          return httplib::Server::HandlerResponse::Handled;
        }
      }
      send_error(res, 404, "[serve] no such endpoint: POST " + req.path +
                               " (the endpoints are listed in docs/rest-api.md)");
      return httplib::Server::HandlerResponse::Handled;
    });

    get("/healthz", &Api::healthz);
    get("/api/jobs", &Api::list_jobs);
    post("/api/jobs", &Api::create_job);
    get(R"(/api/jobs/([^/]+))", &Api::get_job);
    get(R"(/api/jobs/([^/]+)/metrics)", &Api::metrics);
    get(R"(/api/jobs/([^/]+)/logs)", &Api::logs);
    post(R"(/api/jobs/([^/]+)/stop)", &Api::stop_job);
    post(R"(/api/network/initialize/([^/]+))", &Api::initialize);
    post(R"(/api/network/train/([^/]+))", &Api::train);
    get("/api/devices", &Api::devices);
    get("/api/devices/connect-info", &Api::connect_info);
    post("/api/devices/register", &Api::register_device);
    post(R"(/api/devices/([0-9]+)/connect)", &Api::device_connects);
    server_.Delete(R"(/api/devices/([^/]+))", wrap(&Api::unregister_device, true));
    get("/api/devices/teraflops", &Api::devices_teraflops);
    get("/api/teraflops", &Api::teraflops);
    get("/api/previous_teraflops", &Api::previous_teraflops);
    post("/api/shutdown", &Api::shutdown);
    // The dashboard (launcher/dashboard/, compiled in), its presets (the shipped configs), the
    // live events and the trained model answering.
    get("/", &Api::page);
    get(R"(/dashboard/([A-Za-z0-9_.-]+))", &Api::dashboard_file);
    get("/api/presets", &Api::presets);
    get(R"(/api/jobs/([^/]+)/events)", &Api::events);
    post(R"(/api/jobs/([^/]+)/predict)", &Api::predict);
    post(R"(/api/jobs/([^/]+)/generate)", &Api::generate);
  }

 private:
  using Method = void (Api::*)(const httplib::Request&, httplib::Response&);

  void get(const std::string& pattern, Method m) { server_.Get(pattern, wrap(m, false)); }
  void post(const std::string& pattern, Method m) {
    server_.Post(pattern, wrap(m, true));
    post_routes_.emplace_back(std::regex(pattern), wrap(m, true));
  }

  httplib::Server::Handler wrap(Method m, bool mutating) {
    return [this, m, mutating](const httplib::Request& req, httplib::Response& res) {
      try {
        if (mutating) check_token(req);
        (this->*m)(req, res);
      } catch (const HttpError& e) {
        if (e.status() == 401) res.set_header("WWW-Authenticate", "Bearer realm=\"arceus\"");
        send_error(res, e.status(), e.what());
      } catch (const std::exception& e) {
        send_error(res, 500, std::string("[serve] internal error: ") + e.what());
      }
    };
  }

  void check_token(const httplib::Request& req) const {
    if (s_.token.empty()) return;
    const std::string given = req.get_header_value("Authorization");
    if (given.empty()) {
      throw HttpError(401, "[serve] this server requires a token on POST requests: send 'Authorization: Bearer <token>' "
                           "(the --token / ARCEUS_TOKEN it was started with)");
    }
    if (!same_secret(given, "Bearer " + s_.token)) throw HttpError(401, "[serve] wrong token in the Authorization header");
  }

  std::shared_ptr<JobRecord> find_job(const std::string& id_text) const {  // caller holds the lock
    const int id = job_id_from(id_text);
    auto it = s_.jobs.find(id);
    if (it == s_.jobs.end()) {
      throw HttpError(404, "[serve] no job " + std::to_string(id) + " (jobs: " +
                               (s_.jobs.empty() ? std::string("none yet; POST /api/jobs creates one")
                                                : std::to_string(s_.jobs.begin()->first) + ".." +
                                                      std::to_string(s_.jobs.rbegin()->first)) +
                               ")");
    }
    return it->second;
  }

  // --- jobs ----------------------------------------------------------------------------------

  std::string data_roots_text() const { return rest::roots_text(s_.data_roots); }

  // Throws 400 unless `path` (the value of `key`), resolved, lies under an allowed data root.
  void check_allowed(const std::string& key, const std::string& path) const {
    rest::check_allowed(key, path, s_.data_roots);
  }

  // What a job will read must lie under an allowed data root: the text file of a transformer
  // (dataset_config.source), the IDX directory of MNIST / FashionMNIST (dataset_config.root).
  // A given source or root may not exist yet: that is the trainer's to say, when the job
  // starts. Without a root, the directory is looked up now as the trainer would (rank 0 is this
  // process: the same working directory) and set as the job's root, so that what was checked
  // is what is read; no directory holding the files is a 400 naming every place tried.
  void check_data_root(Config& c) const {
    auto& d = c.dataset;
    if (d.name == "synthetic") return;
    if (d.name == "text") return check_allowed("dataset_config.source", d.source);
    if (!d.root.empty()) return check_allowed("dataset_config.root", d.root);
    std::error_code ec;
    const fs::path cwd = fs::current_path(ec);
    try {
      d.root = dataset_root(d.name, "", ec ? std::string(".") : cwd.string());
    } catch (const std::exception& e) {
      throw HttpError(400, "[serve] dataset_config.root is not set and " + std::string(e.what()) +
                               " (the allowed data roots: " + data_roots_text() + ")");
    }
    check_allowed("dataset_config.root (not set; found by the lookup)", d.root);
  }

  void create_job(const httplib::Request& req, httplib::Response& res) {
    rest::JobBody body = rest::parse_job_body(req.body, req.get_header_value("Content-Type"));
    Config& config = body.config;
    check_data_root(config);
    // The original's JSON body has no training section; its train endpoint defaulted to 10
    // epochs at 0.1: such a job takes those as its own (a train body still overrides them). A
    // YAML body (a train config file) and a transformer job (the original's gpt/ settings) keep
    // the config defaults.
    const bool original_defaults = body.format == "json" && !body.has_training && !is_transformer(config);
    if (original_defaults) {
      config.training.epochs = kOriginalEpochs;
      config.training.learning_rate = kOriginalLearningRate;
    }
    std::lock_guard<std::mutex> lock(s_.mu);
    if (s_.shutdown) throw HttpError(503, "[serve] the server is shutting down");
    auto job = std::make_shared<JobRecord>();
    job->id = s_.next_id++;
    job->events = &s_.events;
    if (!body.sets_output_dir) config.output.dir = "runs/serve/job-" + std::to_string(job->id);
    job->config = config;
    job->format = body.format;
    job->created_at = utc_now();
    s_.jobs[job->id] = job;
    std::string model;
    if (is_transformer(config)) {
      const auto& m = config.model;
      model = "transformer (context " + std::to_string(m.context) + ", n_emb " + std::to_string(m.n_emb) + ", " +
              std::to_string(m.n_heads) + " heads, " + std::to_string(m.n_blocks) + " blocks) on text " +
              config.dataset.source;
    } else {
      std::string layers;
      for (auto w : config.model.layer_sizes) layers += (layers.empty() ? "" : ", ") + std::to_string(w);
      model = "MLP [" + layers + "] on " + config.dataset.name;
      if (!config.dataset.root.empty()) model += " from " + config.dataset.root;
    }
    note(*job, "created: " + model + ", output " + config.output.dir +
                   (original_defaults ? ", the original's train defaults (10 epochs, learning rate 0.1)" : ""));
    send(res, 201, {{"message", "Job created successfully"}, {"job_id", job_id_json(job->id)}, {"id", job->id}});
  }

  void list_jobs(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    json jobs = json::array();
    for (const auto& [id, job] : s_.jobs) jobs.push_back(job_json(s_, *job, false));
    send(res, 200, {{"jobs", jobs}});
  }

  void get_job(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    send(res, 200, job_json(s_, *find_job(req.matches[1]), true));
  }

  void metrics(const httplib::Request& req, httplib::Response& res) {
    // Copies under the lock (the steps as text), builds the answer outside it.
    std::string steps;
    json epochs = json::array(), rest;
    {
      std::lock_guard<std::mutex> lock(s_.mu);
      const auto job = find_job(req.matches[1]);
      steps = job->steps_text;
      epochs = job->epochs;
      rest = {{"job_id", job_id_json(job->id)}, {"status", to_string(job->state)}, {"state", to_string(job->state)}, {"final", final_json(*job)}};
    }
    uint64_t raw = 0, wire = 0;
    for (const json& e : epochs) {
      raw += e.value("bytes_raw", uint64_t{0});
      wire += e.value("bytes_wire", uint64_t{0});
    }
    rest["epochs"] = std::move(epochs);
    rest["bytes_raw"] = raw;
    rest["bytes_wire"] = wire;
    rest["wire_ratio"] = raw ? double(wire) / double(raw) : 1.0;
    std::string body = rest.dump();  // {"bytes_raw":...}: the steps go in first
    body.insert(1, "\"steps\":[" + steps + "],");
    res.status = 200;
    res.set_content(body + "\n", "application/json");
  }

  void logs(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    const auto job = find_job(req.matches[1]);
    size_t offset = 0;
    if (req.has_param("offset")) {
      const std::string v = req.get_param_value("offset");
      if (v.empty() || v.size() > 12 || !std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); }))
        throw HttpError(400, "[serve] offset: expected a non-negative integer, got '" + v + "'");
      offset = std::min<size_t>(std::stoull(v), job->logs.size());
    }
    const std::vector<std::string> lines(job->logs.begin() + static_cast<std::ptrdiff_t>(offset), job->logs.end());
    send(res, 200, {{"job_id", job_id_json(job->id)},
                    {"status", job->state},
                    {"state", to_string(job->state)},
                    {"offset", offset},
                    {"next_offset", job->logs.size()},
                    {"lines", lines}});
  }

  void stop_job(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    const auto job = find_job(req.matches[1]);
    if (job->state == JobState::Queued) {
      job->state = JobState::Stopped;
      job->error = "stopped by POST /api/jobs/" + std::to_string(job->id) + "/stop before it started";
      job->finished_at = utc_now();
      note(*job, "stopped while queued");
      publish_state(*job);
      send(res, 200, {{"message", "Job stopped (it had not started)"},
                      {"job_id", job_id_json(job->id)},
                      {"status", job->state},
                      {"state", to_string(job->state)}});
      return;
    }
    if (job->state != JobState::Training) {
      throw HttpError(409, "[serve] job " + std::to_string(job->id) + " is " + to_string(job->state) +
                               ": only a queued or training job can be stopped");
    }
    job->stop = true;
    note(*job, "stop requested: the job ends after the batches in flight");
    send(res, 202, {{"message", "Stop requested: the job stops after the batches in flight"},
                    {"job_id", job_id_json(job->id)},
                    {"status", job->state},
                    {"state", to_string(job->state)}});
  }

  // --- network ---------------------------------------------------------------------------------

  // Partitions the job's layers over the ranks (caller holds the lock): the job becomes
  // `initialized`, or stays as it was when the world cannot hold the plan (400). A transformer's
  // balanced plan may still change when the trainer has read the text (its vocabulary sizes
  // the head); the job's plan follows the trainer's once the job ran.
  void place(JobRecord& job, const std::string& what) {
    std::vector<LayerRange> plan;
    const std::vector<int> ranks = job_stage_ranks(s_, job.id);
    const int64_t layers = model_layers(job.config);
    if (job.config.partition.replicas == 1 && static_cast<int64_t>(ranks.size()) > layers &&
        static_cast<int64_t>(ranks.size()) > s_.world - 1) {
      throw HttpError(400, "[serve] job " + std::to_string(job.id) + " has " + std::to_string(ranks.size()) +
                               " stages (" + std::to_string(s_.world - 1) + " world rank(s) + " +
                               std::to_string(ranks.size() - size_t(s_.world - 1)) +
                               " device(s)) but the model has " + std::to_string(layers) +
                               " layers: at most one stage per layer (unregister a device: DELETE /api/devices/<port>)");
    }
    try {
      const Placement p = ranks.empty() ? make_placement(job.config, 1)
                                        : make_placement(job.config, static_cast<int>(ranks.size()) + 1, 0, ranks);
      if (p.chunks_per_rank > 1) {
        throw HttpError(400, "[serve] partition.chunks_per_rank = " + std::to_string(p.chunks_per_rank) +
                                 ": the REST shim places one chunk per stage; run multi-chunk schedules with arceus train");
      }
      plan = p.chunks;
      job.replicas = p.replicas;
    } catch (const HttpError&) {
      throw;
    } catch (const std::exception& e) {
      throw HttpError(400, e.what());
    }
    job.plan = plan;
    job.state = JobState::Initialized;
    std::string summary;
    for (size_t k = 0; k < plan.size() * size_t(job.replicas); ++k) {
      const int rank = k < ranks.size() ? ranks[k] : 0;
      const LayerRange& r = plan[k % plan.size()];
      summary += (k ? ", " : "") + std::string("rank ") + std::to_string(rank) + " layers " +
                 std::to_string(r.first) + "-" + std::to_string(r.end() - 1);
      if (job.replicas > 1) summary += " (replica " + std::to_string(k / plan.size()) + ")";
    }
    note(job, what + " on " + std::to_string(s_.world) + " rank(s) and " +
                  std::to_string(ranks.size() - (s_.world > 1 ? size_t(s_.world - 1) : 0)) + " device(s): " + summary);
    publish_state(job);
  }

  void initialize(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    const auto job = find_job(req.matches[1]);
    if (job->state != JobState::Created && job->state != JobState::Initialized) {
      throw HttpError(409, "[serve] job " + std::to_string(job->id) + " is " + to_string(job->state) +
                               ": initialize comes before training");
    }
    place(*job, "initialized");
    const std::vector<LayerRange>& plan = job->plan;
    json ranks = json::array();
    const std::vector<int> stage_ranks = job_stage_ranks(s_, job->id);
    if (stage_ranks.empty()) {  // one process, no device: rank 0 holds the whole model
      ranks.push_back({{"rank", 0}, {"host", s_.hosts[0]}, {"role", "orchestrator+stage"},
                       {"layers", {plan[0].first, plan[0].end() - 1}}});
    } else {
      ranks.push_back({{"rank", 0}, {"host", s_.hosts[0]}, {"role", "orchestrator"}, {"layers", nullptr}});
      for (int r = 1; r < s_.size; ++r) {
        json layers = nullptr;
        const auto it = std::find(stage_ranks.begin(), stage_ranks.end(), r);
        const size_t k = static_cast<size_t>(it - stage_ranks.begin());
        if (it != stage_ranks.end() && k < plan.size() * size_t(job->replicas))
          layers = {plan[k % plan.size()].first, plan[k % plan.size()].end() - 1};
        ranks.push_back({{"rank", r}, {"host", host_of_rank(s_, r)}, {"role", layers.is_null() ? "idle" : "stage"},
                         {"layers", layers}});
      }
    }
    send(res, 200, {{"message", "Network initialized successfully"},
                    {"job_id", job_id_json(job->id)},
                    {"status", job->state},
                    {"devices", job_devices(s_, *job)},
                    {"world_size", s_.world},
                    {"stages", stages_json(s_, job->config, plan, job->id, nullptr, job->replicas)},
                    {"replicas", job->replicas},
                    {"ranks", ranks}});
  }

  void train(const httplib::Request& req, httplib::Response& res) {
    // The body: {"epochs": N, "learning_rate": x}, both optional (an empty body keeps the job's).
    const std::vector<Override> overrides = rest::parse_train_body(req.body);

    std::lock_guard<std::mutex> lock(s_.mu);
    const auto job = find_job(req.matches[1]);
    const std::string id = std::to_string(job->id);
    // As in the original, a transformer job trains without initialize: train partitions it.
    const bool place_now = job->state == JobState::Created && is_transformer(job->config);
    if (job->state == JobState::Created && !place_now) {
      throw HttpError(409, "[serve] job " + id + " is not initialized: POST /api/network/initialize/" + id +
                               " first (it partitions the layers over the ranks)");
    }
    if (job->state == JobState::Queued || job->state == JobState::Training) {
      throw HttpError(409, "[serve] job " + id + " is already " + to_string(job->state));
    }
    if (job->state != JobState::Initialized && !place_now) {
      throw HttpError(409, "[serve] job " + id + " already ran (state " + to_string(job->state) +
                               "); create a new job (POST /api/jobs) to train again");
    }
    if (!s_.broken.empty()) throw HttpError(503, s_.broken);
    if (s_.shutdown) throw HttpError(503, "[serve] the server is shutting down");
    Config config;
    try {
      config = parse_config(to_yaml(job->config), overrides, "<train request>");
    } catch (const ConfigError& e) {
      throw HttpError(400, e.what());
    }
    check_data_root(config);  // again: a path may have become a symlink out since the job was created
    if (place_now) place(*job, "initialized by the train request (a transformer job needs no initialize)");
    std::vector<int> ahead;
    if (s_.current) ahead.push_back(s_.current);
    for (int q : s_.queue)
      if (s_.jobs.at(q)->state == JobState::Queued) ahead.push_back(q);
    job->train_config = config;
    job->train_request = {{"epochs", config.training.epochs}, {"learning_rate", config.training.learning_rate}};
    job->state = JobState::Queued;
    s_.queue.push_back(job->id);
    note(*job, "train requested: " + std::to_string(config.training.epochs) + " epoch(s), learning rate " +
                   json(config.training.learning_rate).dump() +
                   (ahead.empty() ? std::string() : ", queued behind job " + std::to_string(ahead.front())));
    publish_state(*job);
    s_.cv.notify_all();
    json reply = {{"message", ahead.empty() ? std::string("Training started")
                                            : "Training queued: job " + std::to_string(ahead.front()) +
                                                  " is using the ranks; this job starts when the jobs ahead end"},
                  {"job_id", job_id_json(job->id)},
                  {"epochs", config.training.epochs},
                  {"learning_rate", config.training.learning_rate}};
    if (!ahead.empty()) reply["queued_behind"] = ahead;
    send(res, 200, reply);
  }

  // The job whose layers the ranks hold: the training one, else the last initialized or run.
  std::shared_ptr<JobRecord> placed_job() const {
    if (s_.current) return s_.jobs.at(s_.current);
    std::shared_ptr<JobRecord> best;
    for (const auto& [id, job] : s_.jobs)
      if (!job->plan.empty()) best = job;
    return best;
  }

  void devices(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    const auto job = placed_job();
    const bool training = s_.current != 0;
    json devices = json::array();
    for (int r = 0; r < s_.world; ++r) {
      json layers = nullptr;
      std::string role = r == 0 ? (s_.size == 1 ? "orchestrator+stage" : "orchestrator") : "worker";
      bool busy = false;
      if (job) {
        const auto& plan = job->plan;
        const size_t slots = plan.size() * size_t(job->replicas);
        role = r == 0 && s_.size > 1 ? "orchestrator" : rank_role(r, s_.world, slots);
        // World rank r holds slot r - 1 (replica-major); a one-process world's stages are the devices'.
        const bool holds = !(s_.size > s_.world && s_.world == 1) && (s_.world == 1 ? r == 0 : r >= 1 && size_t(r) <= slots);
        if (holds) {
          const LayerRange& lr = plan[s_.world == 1 ? 0 : size_t(r - 1) % plan.size()];
          layers = {lr.first, lr.end() - 1};
        }
        busy = training && role != "idle";
      }
      devices.push_back({{"rank", r},
                         {"host", s_.hosts[size_t(r)]},
                         {"role", role},
                         {"layers", layers},
                         {"state", busy ? "training" : "idle"},
                         {"job_id", job ? json(job->id) : json(nullptr)}});
    }
    for (const auto& d : s_.devices) {
      devices.push_back({{"device_id", d.id},
                         {"ip", d.ip},
                         {"port", d.port},
                         {"host", d.ip},
                         {"rank", d.rank >= 0 ? json(d.rank) : json(nullptr)},
                         {"role", "device"},
                         {"job_id", job_id_json(d.job)},
                         {"state", d.state == DeviceState::Connected && s_.current == d.job ? "training" : to_string(d.state)}});
    }
    send(res, 200, {{"world_size", s_.world},
                    {"job_id", job ? json(job->id) : json(nullptr)},
                    {"training", training},
                    {"devices", devices}});
  }

  // What `arceus device` needs before it starts MPI: the rendezvous and the MCA parameters
  // that keep Open MPI on the server's network.
  void connect_info(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    if (s_.rendezvous.empty() || s_.mpi_port.empty()) {
      throw HttpError(409, "[serve] this server takes no devices: start it without mpirun (`arceus serve`), or "
                           "start ompi-server, run `mpirun --ompi-server file:F ...` and give arceus serve "
                           "the same --ompi-server file:F");
    }
    send(res, 200, {{"ompi_server", s_.rendezvous}, {"mpirun_mca", s_.rendezvous_mca}});
  }

  // The original's POST /api/devices/register {"ip", "port", "job_id"}: the device then
  // connects to rank 0's MPI port (in the reply), which accepts it between jobs.
  void register_device(const httplib::Request& req, httplib::Response& res) {
    const json body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) throw HttpError(400, "[serve] the register body must be a JSON object {\"ip\", \"port\", \"job_id\"}");
    auto field = [&](const char* key) -> std::string {
      if (!body.contains(key) || body[key].is_null())
        throw HttpError(400, std::string("[serve] register: field '") + key + "' is missing (expected {\"ip\", \"port\", \"job_id\"})");
      const json& v = body[key];
      if (v.is_string()) return v.get<std::string>();
      if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
      throw HttpError(400, std::string("[serve] register: field '") + key + "' is " + json_type(v) +
                               ", expected a string or an integer");
    };
    const std::string ip = field("ip"), port = field("port"), job_text = field("job_id");
    std::lock_guard<std::mutex> lock(s_.mu);
    const auto job = find_job(job_text);
    if (s_.rendezvous.empty() || s_.mpi_port.empty()) {
      throw HttpError(409, "[serve] this server takes no devices (GET /api/devices/connect-info says why)");
    }
    for (const auto& d : s_.devices) {
      if (d.job == job->id && d.ip == ip && d.port == port && d.state != DeviceState::Unregistered) {
        throw HttpError(409, "[serve] device " + ip + ":" + port + " is already registered to job " +
                                 std::to_string(job->id) + " (device " + std::to_string(d.id) + ")");
      }
    }
    if (job->state != JobState::Created && job->state != JobState::Initialized) {
      throw HttpError(409, "[serve] job " + std::to_string(job->id) + " is " + to_string(job->state) +
                               ": devices register before it trains");
    }
    ServeState::Device d;
    d.id = s_.next_device++;
    d.ip = ip;
    d.port = port;
    d.job = job->id;
    d.state = DeviceState::Registered;
    s_.devices.push_back(d);
    if (job->state == JobState::Initialized) place(*job, "re-initialized with device " + std::to_string(d.id));
    note(*job, "device " + std::to_string(d.id) + " (" + ip + ":" + port + ") registered");
    s_.cv.notify_all();
    send(res, 201, {{"message", "Device registered successfully"},
                    {"device_id", d.id},
                    {"job_id", job_id_json(job->id)},
                    {"mpi_port", s_.mpi_port}});
  }

  // POST /api/devices/<id>/connect: the device is about to call MPI_Comm_connect on the port;
  // rank 0 accepts it between jobs. (A registration alone, as the original's clients make,
  // never makes rank 0 wait on MPI for a device that does not come.)
  void device_connects(const httplib::Request& req, httplib::Response& res) {
    const int id = std::atoi(std::string(req.matches[1]).c_str());
    std::lock_guard<std::mutex> lock(s_.mu);
    for (auto& d : s_.devices) {
      if (d.id != id) continue;
      if (d.state != DeviceState::Registered || d.rank >= 0) {
        throw HttpError(409, "[serve] device " + std::to_string(id) + " is " + to_string(d.state) + ": it connects once, after registering");
      }
      if (s_.connecting != 0 && s_.connecting != id) {
        res.set_header("Retry-After", "1");
        throw HttpError(503, "[serve] device " + std::to_string(s_.connecting) +
                                 " is connecting: one device joins at a time, try again in a moment");
      }
      s_.connecting = id;
      if (std::find(s_.pending_accepts.begin(), s_.pending_accepts.end(), id) == s_.pending_accepts.end())
        s_.pending_accepts.push_back(id);
      s_.cv.notify_all();
      send(res, 202, {{"message", "Connect to mpi_port now: rank 0 accepts between jobs"}, {"device_id", id},
                      {"mpi_port", s_.mpi_port}});
      return;
    }
    throw HttpError(404, "[serve] no device " + std::to_string(id) + " (POST /api/devices/register first)");
  }

  // DELETE /api/devices/<port>: the device takes no stage of later jobs (it stays in the MPI
  // world, idle, until the server shuts down).
  void unregister_device(const httplib::Request& req, httplib::Response& res) {
    const std::string port = req.matches[1];
    std::lock_guard<std::mutex> lock(s_.mu);
    for (auto& d : s_.devices) {
      if (d.port != port || d.state == DeviceState::Unregistered) continue;
      if (s_.current == d.job) throw HttpError(409, "[serve] device " + std::to_string(d.id) + " is training job " + std::to_string(d.job));
      d.state = DeviceState::Unregistered;
      send(res, 200, {{"message", "Device unregistered successfully"}, {"device_id", d.id}});
      return;
    }
    throw HttpError(404, "[serve] no registered device with port '" + port + "' (GET /api/devices lists them)");
  }

  // "Current": the training job, else the last one that started; "previous": the one before.
  std::pair<const JobRecord*, const JobRecord*> current_and_previous() const {
    if (s_.started.empty()) return {nullptr, nullptr};
    const size_t n = s_.started.size();
    const JobRecord* cur = s_.jobs.at(s_.started[n - 1]).get();
    const JobRecord* prev = n >= 2 ? s_.jobs.at(s_.started[n - 2]).get() : nullptr;
    return {cur, prev};
  }

  void teraflops(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    send(res, 200, tflops_json(current_and_previous().first));
  }

  void previous_teraflops(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    send(res, 200, tflops_json(current_and_previous().second));
  }

  void devices_teraflops(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    const auto [cur, prev] = current_and_previous();
    const json c = tflops_json(cur), p = tflops_json(prev);
    auto find_rank = [](const json& t, int rank) -> json {
      for (const json& r : t["ranks"])
        if (r.value("rank", -1) == rank)
          return {{"forward_tflops", r["forward_tflops"]}, {"backward_tflops", r["backward_tflops"]}};
      return nullptr;
    };
    json devices = json::array();
    for (int r = 0; r < s_.world; ++r) {
      const json now = find_rank(c, r), before = find_rank(p, r);
      devices.push_back({{"rank", r},
                         {"host", s_.hosts[size_t(r)]},
                         {"forward_tflops", now.is_null() ? json(nullptr) : now["forward_tflops"]},
                         {"backward_tflops", now.is_null() ? json(nullptr) : now["backward_tflops"]},
                         {"previous", before}});
    }
    send(res, 200, {{"job_id", c["job_id"]},
                    {"epoch", c["epoch"]},
                    {"previous_job_id", p["job_id"]},
                    {"previous_epoch", p["epoch"]},
                    {"devices", devices}});
  }

  // --- server ----------------------------------------------------------------------------------

  void healthz(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    json queued = json::array();
    for (int q : s_.queue)
      if (s_.jobs.at(q)->state == JobState::Queued) queued.push_back(q);
    send(res, 200, {{"status", s_.shutdown ? "shutting down" : (s_.broken.empty() ? "ok" : "degraded")},
                    {"world_size", s_.world},
                    {"training", s_.current ? json(s_.current) : json(nullptr)},
                    {"queued", queued},
                    {"jobs", s_.jobs.size()},
                    {"error", or_null(s_.broken)}});
  }

  // --- dashboard -------------------------------------------------------------------------------

  static void send_asset(httplib::Response& res, const std::string& name) {
    const Asset* a = find_asset(name);
    if (!a) {
      const std::string_view dir = "launcher/dashboard/";
      std::string files;
      for (const Asset& f : assets())
        if (f.name.substr(0, dir.size()) == dir) files += (files.empty() ? "" : ", ") + std::string(f.name.substr(dir.size()));
      throw HttpError(404, "[serve] no such file: " + name + " (the dashboard has " + files + ")");
    }
    res.set_content(std::string(a->data), std::string(a->content_type).c_str());
    res.set_header("Cache-Control", "no-cache");
  }
  void page(const httplib::Request&, httplib::Response& res) { send_asset(res, "launcher/dashboard/index.html"); }
  void dashboard_file(const httplib::Request& req, httplib::Response& res) {
    send_asset(res, "launcher/dashboard/" + req.matches[1].str());
  }

  void presets(const httplib::Request&, httplib::Response& res) {
    json list = json::array();
    for (const Asset& a : assets()) {
      if (a.name.substr(0, 8) != "configs/") continue;
      list.push_back({{"name", std::string(a.name.substr(8))}, {"yaml", std::string(a.data)}});
    }
    send(res, 200, {{"presets", list}});
  }

  // GET /api/jobs/<id>/events[?since=K]: server-sent events. First the job's state, then its
  // steps from index K on (none without `since`), then every step, epoch, log line and state
  // change as it happens; the stream ends after the job's final state. Each client has its own
  // bounded queue (EventHub): the trainer never waits for a client.
  void events(const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<EventHub::Subscriber> sub;
    int id = 0;
    {
      std::lock_guard<std::mutex> lock(s_.mu);
      const auto job = find_job(req.matches[1]);
      id = job->id;
      size_t since = job->steps.size();
      if (req.has_param("since")) {
        const std::string v = req.get_param_value("since");
        if (v.empty() || v.size() > 12 || !std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); }))
          throw HttpError(400, "[serve] since: expected a non-negative integer (steps the client has), got '" + v + "'");
        since = std::min<size_t>(std::stoull(v), job->steps.size());
      }
      std::vector<std::string> replay = {sse_frame("state", state_event(*job).dump())};
      replay.insert(replay.end(), job->step_frames.begin() + static_cast<std::ptrdiff_t>(since), job->step_frames.end());
      sub = s_.events.subscribe(id, replay, is_final(job->state));
      if (!sub) {
        throw HttpError(503, "[serve] " + std::to_string(s_.events.max_subscribers()) +
                                 " event streams are open, the limit: poll GET /api/jobs/" + std::to_string(id) +
                                 "/metrics and /logs instead");
      }
    }
    res.set_header("Cache-Control", "no-cache");
    auto idle = std::make_shared<int>(0);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, sub, idle](size_t, httplib::DataSink& sink) {
          std::string frame;
          switch (sub->next(&frame, std::chrono::milliseconds(kEventWaitMillis))) {
            case EventHub::Next::Event:
              *idle = 0;
              return sink.write(frame.data(), frame.size());  // false: the client is gone
            case EventHub::Next::End:
              sink.done();
              return true;
            case EventHub::Next::Timeout:
              break;
          }
          if (s_.stopping) {
            sink.done();
            return true;
          }
          if (++*idle * kEventWaitMillis >= kEventPingMillis) {  // a comment line keeps proxies from timing out
            *idle = 0;
            static const std::string ping = ": ping\n\n";
            return sink.write(ping.data(), ping.size());
          }
          return true;
        },
        [this, sub, id](bool) { s_.events.unsubscribe(id, sub); });
  }

  // A job's id, config and latest checkpoint path.
  struct JobCheckpoint {
    int id = 0;
    Config config;
    std::string path;
  };
  JobCheckpoint job_checkpoint(const std::string& id_text) const {
    std::lock_guard<std::mutex> lock(s_.mu);
    const auto job = find_job(id_text);
    const Config& c = effective_config(*job);
    return {job->id, c, (fs::path(c.output.dir) / "checkpoint.h5").string()};
  }

  // Loads the checkpoint's model: 409 while the job has none yet.
  CheckpointModel::Info load_model(int id, const std::string& path) {
    try {
      return s_.models.load(path);
    } catch (const std::exception& e) {
      throw HttpError(409, "[serve] job " + std::to_string(id) + " has no usable checkpoint: " + e.what());
    }
  }

  // POST /api/jobs/<id>/predict: class probabilities from the job's latest checkpoint.
  void predict(const httplib::Request& req, httplib::Response& res) {
    const json body = rest::object_body(req.body, "predict", R"({"pixels": [[28 rows of 28 values in 0..1]]})");
    const JobCheckpoint ck = job_checkpoint(req.matches[1]);
    const int id = ck.id;
    if (is_transformer(ck.config)) {
      throw HttpError(400, "[serve] job " + std::to_string(id) + " is a transformer: POST /api/jobs/" + std::to_string(id) +
                               "/generate with {\"prompt\": ..., \"tokens\": N} instead");
    }
    if (!body.contains("pixels")) throw HttpError(400, "[serve] the predict body has no 'pixels'");
    const std::vector<double> input =
        rest::input_values(body["pixels"], ck.config.model.layer_sizes.front(), input_is_pixels(ck.config));
    const CheckpointModel::Info info = load_model(id, ck.path);
    Prediction p;
    try {
      p = s_.models.predict(ck.path, input);
    } catch (const std::invalid_argument& e) {
      throw HttpError(400, std::string("[serve] pixels: ") + e.what());
    }
    send(res, 200, {{"job_id", job_id_json(id)},
                    {"probabilities", p.probabilities},
                    {"class", p.label},
                    {"checkpoint", {{"path", ck.path}, {"epoch", info.epoch}, {"step", info.step}}}});
  }

  // POST /api/jobs/<id>/generate: text from the job's latest transformer checkpoint.
  void generate(const httplib::Request& req, httplib::Response& res) {
    const std::string example = R"({"prompt": "text", "tokens": 200, "temperature": 0.8, "seed": 1})";
    const json body = rest::object_body(req.body, "generate", example);
    const JobCheckpoint ck = job_checkpoint(req.matches[1]);
    const int id = ck.id;
    if (!is_transformer(ck.config)) {
      throw HttpError(400, "[serve] job " + std::to_string(id) + " is an MLP: POST /api/jobs/" + std::to_string(id) +
                               "/predict with {\"pixels\": ...} instead");
    }
    std::string prompt;
    if (body.contains("prompt")) {
      if (!body["prompt"].is_string()) throw HttpError(400, "[serve] prompt: expected a string, got " + json_type(body["prompt"]));
      prompt = body["prompt"].get<std::string>();
      if (prompt.size() > kMaxPromptBytes) {
        throw HttpError(400, "[serve] prompt: " + std::to_string(prompt.size()) + " bytes, more than the limit of " +
                                 std::to_string(kMaxPromptBytes));
      }
    }
    int64_t tokens = 200;
    if (body.contains("tokens")) {
      const json& t = body["tokens"];
      if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > kMaxGenerateTokens) {
        throw HttpError(400, "[serve] tokens = " + t.dump() + ": expected an integer in 1.." +
                                 std::to_string(kMaxGenerateTokens));
      }
      tokens = t.get<int64_t>();
    }
    double temperature = 0.8;
    if (body.contains("temperature")) {
      const json& t = body["temperature"];
      if (!t.is_number() || !(t.get<double>() >= 0.0 && t.get<double>() <= 10.0))
        throw HttpError(400, "[serve] temperature = " + t.dump() + ": expected a number in [0, 10] (0 = argmax)");
      temperature = t.get<double>();
    }
    uint64_t seed = 1;
    if (body.contains("seed")) {
      const json& t = body["seed"];
      if (!t.is_number_integer() || t.get<int64_t>() < 0)
        throw HttpError(400, "[serve] seed = " + t.dump() + ": expected a non-negative integer");
      seed = t.get<uint64_t>();
    }
    const CheckpointModel::Info info = load_model(id, ck.path);
    std::string text;
    try {
      text = s_.models.generate(ck.path, prompt, tokens, temperature, seed);
    } catch (const std::invalid_argument& e) {
      throw HttpError(400, std::string("[serve] prompt: ") + e.what());
    }
    send(res, 200, {{"job_id", job_id_json(id)},
                    {"prompt", prompt},
                    {"text", text},
                    {"tokens", tokens},
                    {"temperature", temperature},
                    {"seed", seed},
                    {"checkpoint", {{"path", ck.path}, {"epoch", info.epoch}, {"step", info.step}}}});
  }

  void shutdown(const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(s_.mu);
    if (!s_.shutdown) {
      s_.shutdown = true;
      s_.shutdown_reason = "POST /api/shutdown";
      s_.stopping = true;
      s_.cv.notify_all();
    }
    send(res, 200, {{"message", s_.current ? "Shutting down: job " + std::to_string(s_.current) +
                                                 " stops after the batches in flight, then every rank exits"
                                           : std::string("Shutting down: every rank exits")}});
  }

  ServeState& s_;
  httplib::Server& server_;
  std::vector<std::pair<std::regex, httplib::Server::Handler>> post_routes_;  // for body-less POSTs
};

// ---------------------------------------------------------------------------------------------
// Rank 0's main thread: the job queue.

// The worlds rank 0 trains on: the MPI world, then one per device that joined (each holds
// the previous one's ranks and the new device's). The last is current.
struct Worlds {
  MpiTransport& world;
  std::vector<std::unique_ptr<MpiTransport>> grown;
  MpiTransport& current() { return grown.empty() ? world : *grown.back(); }
};

// Accepts device `id` (registered, connecting to rank 0's port): every rank of the current
// world accepts with rank 0 and the worlds merge. Blocks until the device connects.
void accept_device(Worlds& w, ServeState& s, int id, double wait_limit) {
  std::string port, ip;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    port = s.mpi_port;
    for (const auto& d : s.devices)
      if (d.id == id) ip = d.ip;
  }
  broadcast_accept(w.current(), port);
  w.grown.push_back(w.current().accept(port));
  w.grown.back()->set_wait_limit(wait_limit);
  std::lock_guard<std::mutex> lock(s.mu);
  s.connecting = 0;
  for (auto& d : s.devices) {
    if (d.id != id) continue;
    d.rank = w.current().size() - 1;
    if (d.state == DeviceState::Registered) d.state = DeviceState::Connected;
    s.hosts.push_back(ip);
    s.size = w.current().size();
    std::printf("[serve] device %d (%s) joined as rank %d\n", d.id, ip.c_str(), d.rank);
    std::fflush(stdout);
  }
}

// Runs queued jobs one at a time until shutdown; accepts devices between jobs.
void run_queue(Worlds& w, ServeState& s, const TrainOptions& train, double device_timeout) {
  while (true) {
    std::shared_ptr<JobRecord> job;
    {
      std::unique_lock<std::mutex> lock(s.mu);
      while (true) {
        if (g_signal && !s.shutdown) {
          s.shutdown = true;
          s.shutdown_reason = g_signal == SIGINT ? "SIGINT" : "SIGTERM";
          s.stopping = true;
        }
        if (s.shutdown) return;
        if (!s.pending_accepts.empty()) {
          const int id = s.pending_accepts.front();
          s.pending_accepts.pop_front();
          lock.unlock();
          accept_device(w, s, id, device_timeout);
          lock.lock();
          continue;
        }
        while (!s.queue.empty() && !job) {
          auto candidate = s.jobs.at(s.queue.front());
          s.queue.pop_front();
          if (candidate->state == JobState::Queued) job = candidate;  // else stopped while queued
        }
        if (job) break;
        s.cv.wait_for(lock, std::chrono::milliseconds(100));  // also polls the signal flag
      }
      job->state = JobState::Training;
      job->started_at = utc_now();
      job->start_time = Clock::now();
      s.current = job->id;
      s.started.push_back(job->id);
      note(*job, "training started");
      publish_state(*job);
    }

    RecordingObserver observer(s, job);
    JobResult result;
    std::string broken;
    TrainOptions options = train;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      options.stage_ranks = job_stage_ranks(s, job->id);
    }
    try {
      // No stage rank at all (one process, no device): the reference run, in-process.
      Transport& on = options.stage_ranks.empty() ? static_cast<Transport&>(w.world) : w.current();
      result = run_job(on, job->train_config, options, &observer);
    } catch (const std::exception& e) {
      // Thrown during training: the workers may be waiting for messages of this job. The
      // server keeps answering, but no further job can run on these ranks.
      result.state = RunState::Failed;
      result.error = e.what();
      // A device that died is named: the rank of the transport's failed call.
      std::string who;
      if (const auto t = find_error<TransportError>(e); t && t->peer() >= 0) {
        std::lock_guard<std::mutex> lock(s.mu);
        for (const auto& d : s.devices)
          if (d.rank == t->peer()) who = "; device " + std::to_string(d.id) + " (" + d.ip + ":" + d.port + ")";
      }
      result.error += who;
      broken = "[serve] job " + std::to_string(job->id) + " failed during training (" + e.what() + who +
               "); the ranks may be out of step, so no further job can run: restart arceus serve";
    }

    std::lock_guard<std::mutex> lock(s.mu);
    job->state = job_state_of(result.state);
    job->error = result.error;
    job->finished_at = utc_now();
    job->seconds = std::chrono::duration<double>(Clock::now() - job->start_time).count();
    s.current = 0;
    if (!broken.empty()) s.broken = broken;
    // The plan the trainer used (a transformer's balanced plan is refined once the vocabulary
    // is known) and its parameters per stage.
    const json stages = result.summary.is_object() ? result.summary.value("stages", json()) : json();
    if (stages.is_array() && !stages.empty()) {
      std::vector<LayerRange> plan;
      json parameters = json::array();
      for (const json& st : stages) {
        const json layers = st.value("layers", json());
        if (!layers.is_array() || layers.size() != 2 || !layers[0].is_number_integer() ||
            !layers[1].is_number_integer())
          break;
        const int64_t first = layers[0].get<int64_t>(), last = layers[1].get<int64_t>();
        plan.push_back(LayerRange{first, last - first + 1});
        parameters.push_back(st.value("parameters", json()));
      }
      if (plan.size() == stages.size()) {
        job->plan = plan;
        job->stage_parameters = parameters;
      }
    }
    if (result.state == RunState::Stopped) {
      job->error = job->stop ? "stopped by POST /api/jobs/" + std::to_string(job->id) + "/stop"
                             : "stopped: the server shut down";
    }
    std::string line = to_string(result.state) + std::string(" in ") + fixed(job->seconds, 1) + " s";
    if (!job->epochs.empty()) {
      const json& e = job->epochs.back();
      line += " after " + std::to_string(job->epochs.size()) + " epoch(s), ";
      line += e.contains("tokens_per_second")
                  ? "val loss " + fixed(e.value("val_loss", 0.0), 4) + ", " +
                        fixed(e.value("tokens_per_second", 0.0), 0) + " tokens/s"
                  : "val accuracy " + fixed(100 * e.value("val_accuracy", 0.0), 2) + "%";
    }
    if (!job->error.empty()) line += ": " + job->error;
    note(*job, line);
    publish_state(*job);
  }
}

}  // namespace

std::vector<std::string> default_data_roots() {
  std::vector<std::string> roots = {(fs::path(ARCEUS_SOURCE_DIR) / "data").string()};
  // The working directory's data/: where torchvision, and so the original, kept MNIST.
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  if (!ec && resolve_path((cwd / "data").string()) != resolve_path(roots.front())) roots.push_back((cwd / "data").string());
  roots.push_back("/usr/share/datasets");
  roots.push_back("/usr/share/common-licenses");
  return roots;
}

CLI::App* add_serve_command(CLI::App& app, ServeOptions& serve, TrainOptions& train) {
  auto* cmd = app.add_subcommand(
      "serve", "Serve the original's REST API (default 127.0.0.1:4000): rank 0 answers HTTP and runs the jobs "
               "one at a time, ranks 1..N-1 own the layers. See docs/rest-api.md");
  cmd->add_option("--port", serve.port, "TCP port to listen on (0: any free port, printed at start)")
      ->default_val(4000)
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--host", serve.host,
                  "Address to listen on: 127.0.0.1 (default) is this machine only; 0.0.0.0 every interface")
      ->default_val("127.0.0.1");
  cmd->add_option("--device-timeout", serve.device_timeout,
                  "Seconds a rank waits for a message of a world that devices joined before it fails the job "
                  "(a device that died leaves MPI waiting)")
      ->default_val(120)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ompi-server", serve.ompi_server,
                  "Open MPI rendezvous for devices (URI or file:F) when you run mpirun yourself with the same "
                  "--ompi-server; without mpirun, arceus serve starts one itself");
  cmd->add_option("--token", serve.token,
                  "Require 'Authorization: Bearer TOKEN' on every POST request (default: $ARCEUS_TOKEN; "
                  "neither set: no token)")
      ->envname("ARCEUS_TOKEN");
  cmd->add_option("--data-root", serve.data_roots,
                  "A directory a job's dataset_config.root or .source may lie under (repeatable; replaces the "
                  "defaults: the project's data/, the working directory's data/, /usr/share/datasets and "
                  "/usr/share/common-licenses)")
      ->allow_extra_args(false);
  cmd->add_option("--threads", train.threads,
                  "LibTorch/BLAS threads per stage rank: 'auto' divides a host's cores among the stage ranks "
                  "it runs, or a positive integer")
      ->default_val("auto")
      ->check(arceus::check_threads_option);
  cmd->add_flag("--quiet", train.quiet, "No live progress lines, timing tables or access log on rank 0's output");
  return cmd;
}

int run_serve(MpiTransport& comm, const ServeOptions& options, const TrainOptions& train) {
  // Collective: every rank, once, before the workers start waiting for jobs.
  const std::vector<std::string> hosts = comm.all_hosts();
  if (comm.rank() != 0) {
    // A Ctrl-C on mpirun reaches every rank; rank 0 alone decides when the workers end (it
    // stops the job in flight, then sends the shutdown), so the workers ignore it.
    std::signal(SIGINT, SIG_IGN);
    std::signal(SIGTERM, SIG_IGN);
    std::vector<std::unique_ptr<MpiTransport>> grown;  // one world per device that joined
    AcceptHook grow = [&](Transport& current, const std::string& port) -> Transport& {
      grown.push_back(static_cast<MpiTransport&>(current).accept(port));
      grown.back()->set_wait_limit(options.device_timeout);
      return *grown.back();
    };
    return worker_loop(comm, train, /*serve=*/true, grow);
  }

  ServeState state;
  state.world = comm.size();
  state.size = comm.size();
  state.hosts = hosts;
  const Rendezvous rendezvous = server_rendezvous(options.host, options.ompi_server);
  if (!rendezvous.uri.empty()) {
    try {
      state.mpi_port = MpiTransport::open_port();
      state.rendezvous = rendezvous.uri;
      state.rendezvous_mca = rendezvous.mca;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[serve] devices cannot join (MPI_Open_port failed: %s)\n", e.what());
    }
  }
  Worlds worlds{comm, {}};
  state.token = options.token;
  state.quiet = train.quiet;
  for (const auto& r : options.data_roots.empty() ? default_data_roots() : options.data_roots)
    state.data_roots.push_back(resolve_path(r));

  install_signal_handlers();
  httplib::Server server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  // The library listens with a backlog of 5 (compiled in): 50 dashboards reconnecting at once
  // would see SYNs dropped and wait a second for the retry. Linux lets listen() be called again
  // on the bound socket to raise it.
  int listen_fd = -1;
  server.set_socket_options([&listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd = sock;
  });
  Api api(state, server);
  api.install();
  int port = options.port;
  bool bound = false;
  if (port == 0) {
    port = server.bind_to_any_port(options.host);
    bound = port > 0;
  } else {
    bound = server.bind_to_port(options.host, port);
  }
  if (bound && listen_fd >= 0) ::listen(listen_fd, kListenBacklog);
  if (!bound) {
    std::fprintf(stderr, "error: [serve] cannot listen on %s:%d (address in use or not available here); choose "
                 "another --port or --host\n", options.host.c_str(), options.port);
    shutdown_workers(comm);
    return 1;
  }
  std::thread http([&server, &state] {
    server.listen_after_bind();
    std::lock_guard<std::mutex> lock(state.mu);
    if (!state.shutdown) {  // not asked to stop: end the ranks rather than serve nothing
      state.shutdown = true;
      state.shutdown_reason = "the HTTP server stopped unexpectedly";
      state.stopping = true;
      state.cv.notify_all();
    }
  });

  const int pid = static_cast<int>(getpid());
  std::printf("arceus serve: listening on http://%s:%d (rank 0, pid %d; stop with POST /api/shutdown or kill -TERM %d)\n",
              options.host.c_str(), port, pid, pid);
  std::printf("  %d rank%s: rank 0 on %s: orchestrator and HTTP\n", state.world, state.world == 1 ? "" : "s",
              hosts[0].c_str());
  for (int r = 1; r < state.world; ++r) std::printf("  rank %d on %s: waiting for jobs\n", r, hosts[size_t(r)].c_str());
  std::vector<std::string> roots;
  for (const auto& r : state.data_roots) roots.push_back(r.string());
  std::printf("  data roots: %s\n", join(roots).c_str());
  std::printf("  token: %s\n", state.token.empty() ? "none (any local client may POST; set --token or ARCEUS_TOKEN)"
                                                    : "required on POST (Authorization: Bearer ...)");
  std::printf("  blas: %s\n", train.blas.c_str());
  std::printf("  devices: %s\n", state.mpi_port.empty()
                                     ? "none can join (no ompi-server: see GET /api/devices/connect-info)"
                                     : "arceus device --api-url http://HOST:PORT --job-id ID joins a job");
  std::fflush(stdout);

  run_queue(worlds, state, train, options.device_timeout);

  {
    std::lock_guard<std::mutex> lock(state.mu);
    std::printf("arceus serve: shutting down (%s)\n", state.shutdown_reason.c_str());
    for (int id : state.queue) {
      auto& job = *state.jobs.at(id);
      if (job.state != JobState::Queued) continue;
      job.state = JobState::Stopped;
      job.error = "stopped: the server shut down before the job started";
      job.finished_at = utc_now();
    }
    state.queue.clear();
  }
  std::fflush(stdout);
  if (!state.broken.empty()) {
    // The workers are not waiting for a broadcast: end the world the hard way.
    std::fprintf(stderr, "%s\n", state.broken.c_str());
    state.events.close();
    server.stop();
    http.join();
    worlds.current().abort(1);
  }
  shutdown_workers(worlds.current());
  state.events.close();
  server.stop();
  http.join();
  std::printf("arceus serve: stopped\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace arceus
