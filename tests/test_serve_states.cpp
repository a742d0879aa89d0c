// The REST shim's job state machine, in-process: no mpirun, no socket. Requests go through the
// shim's routing table (serve::dispatch, what the HTTP server calls) and the queue loop runs on
// a thread with a JobRunner of the test's: a fake whose runs end when the test says, or
// run_in_process over the loopback transport (the real orchestrator and stages as threads).
//
// Checked: every legal move of the table, driven through the routes (created -> initialized
// -> queued -> training -> completed | failed | stopped; a transformer from created to queued;
// queued -> stopped; a stop while training), and every request a state does not allow,
// answered 409 with an error naming the state, the job left as it was.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "launcher/request_body.h"
#include "launcher/serve/routes.h"
#include "launcher/serve/persist.h"
#include "launcher/serve/runner.h"
#include "launcher/serve/state.h"
#include "ranks/transport.h"
#include "support/files.h"

#ifndef TEST_CONFIG_DIR
#define TEST_CONFIG_DIR "tests/configs"
#endif

namespace arceus::serve {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kWait = 30s;  // every wait of a test is bounded by this

// The serve tests' synthetic job: 2 layers, 1024 samples in batches of 64 (16 steps per epoch).
const char* kSyntheticJob =
    R"({"model_config":{"layer_sizes":[32,48,10]},"dataset_config":{"name":"synthetic","batch_size":64,)"
    R"("synthetic":{"train_size":1024,"val_size":256,"features":32,"classes":10}},"training":{"momentum":0.9}})";

// The original's transformer job, tiny.
std::string transformer_job() {
  return json{{"model_config", {{"type", "transformer"}, {"context", 16}, {"n_emb", 32}, {"n_heads", 4}, {"n_blocks", 2}}},
              {"dataset_config", {{"source", std::string(TEST_CONFIG_DIR) + "/e2e_hello.txt"}, {"windows_per_epoch", 160},
                                  {"batch_size", 16}}},
              {"training", {{"epochs", 1}}}}
      .dump();
}

// A runner whose runs wait until the test ends them (or the job is asked to stop).
class FakeRunner : public JobRunner {
 public:
  FakeRunner() = default;

  JobResult run(const Config& config, const TrainOptions& options, JobObserver& observer) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++started_;
    cv_.notify_all();
    while (!outcome_) {
      if (observer.stop_requested()) {
        JobResult stopped;
        stopped.state = RunState::Stopped;
        return stopped;
      }
      cv_.wait_for(lock, 5ms);
    }
    const Outcome o = *outcome_;
    outcome_.reset();
    if (o.throws) throw TransportError("[test] no message from rank 1", /*peer=*/1);
    observer.on_epoch({{"epoch", 1}, {"val_loss", 0.5}, {"val_accuracy", 0.75}});
    return o.result;
  }
  // A job on devices: recorded, then as run() unless the test said to lose a device.
  DeviceRun run_on_devices(ServeState&, const std::vector<int>& devices, const Config& config,
                           const TrainOptions& options, JobObserver& observer) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      device_runs_.push_back(devices);
      resumed_.push_back(config.resume);
    }
    DeviceRun run;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++started_;
      cv_.notify_all();
      while (!outcome_ && !lose_) cv_.wait_for(lock, 5ms);
      if (lose_) {
        run.lost = lose_;
        run.why = "[test] no heartbeat";
        lose_ = 0;
        return run;
      }
      --started_;  // run() counts it again
    }
    run.result = this->run(config, options, observer);
    return run;
  }
  // The device run in progress loses device `id`.
  void lose(int id) {
    std::lock_guard<std::mutex> lock(mu_);
    lose_ = id;
    cv_.notify_all();
  }
  std::vector<std::vector<int>> device_runs() {
    std::lock_guard<std::mutex> lock(mu_);
    return device_runs_;
  }
  std::vector<bool> resumed() {
    std::lock_guard<std::mutex> lock(mu_);
    return resumed_;
  }

  // Waits until `n` runs have started.
  bool wait_started(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWait, [&] { return started_ >= n; });
  }
  int started() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  // Ends the run in progress with `state` (and `error`), or by throwing as a broken world does.
  void end(RunState state, const std::string& error = "") {
    std::lock_guard<std::mutex> lock(mu_);
    Outcome o;
    o.result.state = state;
    o.result.error = error;
    outcome_ = o;
    cv_.notify_all();
  }
  void end_by_throwing() {
    std::lock_guard<std::mutex> lock(mu_);
    Outcome o;
    o.throws = true;
    outcome_ = o;
    cv_.notify_all();
  }

 private:
  struct Outcome {
    JobResult result;
    bool throws = false;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  int started_ = 0;
  std::optional<Outcome> outcome_;
  std::vector<std::vector<int>> device_runs_;
  std::vector<bool> resumed_;
  int lose_ = 0;
};

// The whole job in this process over the loopback transport: rank 0 and one thread per stage
// rank of the job, through the real orchestrator and stage workers.
class LoopbackRunner : public JobRunner {
 public:
  JobResult run(const Config& config, const TrainOptions& options, JobObserver& observer) override {
    return run_in_process(static_cast<int>(options.stage_ranks.size()) + 1, config, options, &observer, 60);
  }
};

// The shim without its HTTP server: routes called directly, the queue loop on a thread. Its
// output root is a fresh directory of its own (TempDir), removed with it.
class Shim {
 public:
  explicit Shim(JobRunner& runner, int world = 1) : state_(world, std::vector<std::string>(size_t(world), "test-host")) {
    state_.data_roots = {rest::resolve_path(TEST_CONFIG_DIR)};
    state_.output_root = rest::resolve_for_writing(output_root_.str()).path;
    state_.output_root_arg = output_root_.str();
    // As if an ompi-server were running, so that devices may register.
    state_.rendezvous = "test-rendezvous";
    TrainOptions train;
    train.quiet = true;
    loop_ = std::thread([this, &runner, train] { run_queue(state_, runner, train); });
  }
  ~Shim() {
    {
      std::lock_guard<std::mutex> lock(state_.mu);
      state_.token.clear();  // a test may have set one: the shutdown below needs none
    }
    call("POST", "/api/shutdown");
    loop_.join();
    stop_queued(state_);
    state_.events.close();
  }

  Response call(const std::string& method, const std::string& path, const std::string& body = "",
                const std::map<std::string, std::string>& headers = {}) {
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.headers["content-type"] = "application/json";
    for (const auto& [name, value] : headers) r.headers[name] = value;
    return dispatch(state_, r);
  }
  json view(int id) { return call("GET", "/api/jobs/" + std::to_string(id)).json_body(); }
  std::string state_of(int id) { return view(id).value("state", "?"); }
  // Waits (bounded) until job `id` is in `state`.
  ::testing::AssertionResult reaches(int id, const std::string& state) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string now;
    while (std::chrono::steady_clock::now() - t0 < kWait) {
      if ((now = state_of(id)) == state) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(2ms);
    }
    return ::testing::AssertionFailure() << "job " << id << " is " << now << ", not " << state;
  }
  int create(const std::string& body = kSyntheticJob) {
    const Response r = call("POST", "/api/jobs", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json_body().value("id", 0);
  }
  Response initialize(int id) { return call("POST", "/api/network/initialize/" + std::to_string(id)); }
  // A new MLP job, initialized and trained until `runner` has it as its `nth` run: its id, or 0
  // (with the failed expectation reported) when a step of that fails.
  int training_job(FakeRunner& runner, int nth) {
    const int id = create();
    const bool ok = initialize(id).status == 200 && train(id).status == 200 && runner.wait_started(nth);
    EXPECT_TRUE(ok) << "job " << id << " did not reach the runner as its run " << nth;
    return ok ? id : 0;
  }
  Response train(int id) { return call("POST", "/api/network/train/" + std::to_string(id), R"({"epochs": 1})"); }
  Response stop(int id) { return call("POST", "/api/jobs/" + std::to_string(id) + "/stop"); }
  Response register_device(int id, int port) {
    return call("POST", "/api/devices/register",
                json{{"ip", "10.0.0.9"}, {"port", port}, {"job_id", std::to_string(id)}}.dump());
  }
  std::vector<std::string> logs(int id) {
    return call("GET", "/api/jobs/" + std::to_string(id) + "/logs").json_body()["lines"].get<std::vector<std::string>>();
  }
  ServeState& state() { return state_; }
  const fs::path& output_root() const { return output_root_.path(); }  // as given to the state

 private:
  test::TempDir output_root_{"arceus-serve-states-"};
  ServeState state_;
  std::thread loop_;
};

bool logged(const std::vector<std::string>& lines, const std::string& text) {
  for (const auto& l : lines)
    if (l.find(text) != std::string::npos) return true;
  return false;
}

// The "state" events of a stream, until it ends (bounded).
std::vector<std::string> states_of_stream(EventHub::Subscriber& sub) {
  std::vector<std::string> states;
  const auto t0 = std::chrono::steady_clock::now();
  std::string frame;
  while (std::chrono::steady_clock::now() - t0 < kWait) {
    const EventHub::Next next = sub.next(&frame, 50ms);
    if (next == EventHub::Next::End) return states;
    if (next != EventHub::Next::Event || frame.rfind("event: state\n", 0) != 0) continue;
    const size_t data = frame.find("data: ");
    states.push_back(json::parse(frame.substr(data + 6))["state"].get<std::string>());
  }
  states.push_back("(the stream did not end)");
  return states;
}

// ---------------------------------------------------------------------------------------------
// The table.

// The moves the issue lists, written out here independently of kJobTransitions.
const std::set<std::tuple<JobState, JobEvent, JobState>> kExpected = {
    {JobState::Created, JobEvent::Initialize, JobState::Initialized},
    {JobState::Initialized, JobEvent::Initialize, JobState::Initialized},
    {JobState::Created, JobEvent::Register, JobState::Created},
    {JobState::Initialized, JobEvent::Register, JobState::Initialized},
    {JobState::Initialized, JobEvent::Train, JobState::Queued},
    {JobState::Queued, JobEvent::Start, JobState::Training},
    {JobState::Queued, JobEvent::Stop, JobState::Stopped},
    {JobState::Training, JobEvent::Stop, JobState::Training},
    {JobState::Training, JobEvent::Complete, JobState::Completed},
    {JobState::Training, JobEvent::Fail, JobState::Failed},
    {JobState::Training, JobEvent::Halt, JobState::Stopped},
    {JobState::Training, JobEvent::DeviceLost, JobState::Recovering},
    {JobState::Recovering, JobEvent::Resume, JobState::Training},
    {JobState::Recovering, JobEvent::Fail, JobState::Failed},
    {JobState::Recovering, JobEvent::Halt, JobState::Stopped},
};
const JobState kStates[] = {JobState::Created,    JobState::Initialized, JobState::Queued,  JobState::Training,
                            JobState::Recovering, JobState::Completed,   JobState::Failed,  JobState::Stopped};
const JobEvent kEvents[] = {JobEvent::Initialize, JobEvent::Register, JobEvent::Train, JobEvent::Start,
                            JobEvent::Stop,       JobEvent::Complete, JobEvent::Fail,  JobEvent::Halt,
                            JobEvent::DeviceLost, JobEvent::Resume};

TEST(ServeStates, TheTableHoldsExactlyTheLegalMoves) {
  for (JobState from : kStates) {
    for (JobEvent e : kEvents) {
      JobState to = from;
      const bool is_legal = legal(from, e, &to);
      bool expected = false;
      for (const auto& [f, ev, t] : kExpected) {
        if (f != from || ev != e) continue;
        expected = true;
        EXPECT_EQ(to, t) << to_string(from) << " + " << to_string(e);
      }
      EXPECT_EQ(is_legal, expected) << to_string(from) << " + " << to_string(e);
      if (is_final(from)) {
        EXPECT_FALSE(is_legal) << "a final state accepts nothing: " << to_string(from) << " + " << to_string(e);
      }
    }
  }
}

// transition() is the table's: an illegal move throws 409 and leaves the record as it was.
TEST(ServeStates, TransitionRefusesWhatTheTableLacks) {
  JobRecord job;
  job.id = 7;
  EXPECT_EQ(transition(job, JobEvent::Initialize), JobState::Initialized);
  EXPECT_EQ(transition(job, JobEvent::Train), JobState::Queued);
  try {
    transition(job, JobEvent::Complete);
    ADD_FAILURE() << "queued + complete was accepted";
  } catch (const rest::HttpError& e) {
    EXPECT_EQ(e.status(), 409);
    EXPECT_EQ(std::string(e.what()), "[serve] job 7 is queued: 'complete' does not apply (an internal error of the server)");
  }
  EXPECT_EQ(job.state, JobState::Queued);
  EXPECT_TRUE(job.started_at.empty() && job.finished_at.empty());
  EXPECT_EQ(transition(job, JobEvent::Start), JobState::Training);
  EXPECT_FALSE(job.started_at.empty()) << "entering training stamps started_at";
  EXPECT_EQ(transition(job, JobEvent::Complete), JobState::Completed);
  EXPECT_FALSE(job.finished_at.empty()) << "entering a final state stamps finished_at";
}

// ---------------------------------------------------------------------------------------------
// The routing table: dispatch finds the handler and its captures, the token guards what
// changes things, and a path no route serves is a 404 naming it.

TEST(ServeStates, DispatchRoutesRequests) {
  std::vector<std::string> params;
  const Route* r = match("GET", "/api/jobs/12/metrics", &params);
  ASSERT_NE(r, nullptr);
  EXPECT_STREQ(r->pattern, R"(/api/jobs/([^/]+)/metrics)");
  EXPECT_EQ(params, std::vector<std::string>({"12"}));
  ASSERT_NE(r = match("POST", "/api/devices/3/heartbeat", &params), nullptr);
  EXPECT_TRUE(r->mutating);
  EXPECT_EQ(params, std::vector<std::string>({"3"}));
  ASSERT_NE(r = match("GET", "/api/devices/connect-info", &params), nullptr);
  EXPECT_TRUE(params.empty()) << "the fixed path, not a device's";
  EXPECT_EQ(match("GET", "/api/network/train/1", &params), nullptr) << "train is a POST";
  EXPECT_EQ(match("POST", "/api/jobs/1/2/stop", &params), nullptr) << "an id has no slash";

  FakeRunner runner;
  Shim shim(runner);
  // The original's answer when no session has run yet.
  const Response none = shim.call("GET", "/api/previous_teraflops");
  EXPECT_EQ(none.status, 404) << none.body;
  EXPECT_EQ(none.json_body(), json({{"error", "No previous training sessions found"}}));
  Response res = shim.call("GET", "/healthz");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.json_body()["status"], "ok");
  EXPECT_EQ(res.json_body()["jobs"], 0);

  res = shim.call("GET", "/api/nothing");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(res.json_body()["error"],
            "[serve] no such endpoint: GET /api/nothing (the endpoints are listed in docs/rest-api.md)");
  res = shim.call("DELETE", "/api/jobs/1");
  EXPECT_EQ(res.status, 404) << res.body;
  res = shim.call("GET", "/api/jobs/abc");
  EXPECT_EQ(res.status, 404) << res.body;
  EXPECT_NE(res.json_body()["error"].get<std::string>().find("unknown job id 'abc'"), std::string::npos) << res.body;
  res = shim.call("GET", "/api/jobs/9");
  EXPECT_EQ(res.status, 404) << res.body;

  res = shim.call("POST", "/api/jobs", "{\"model_config\": ");
  EXPECT_EQ(res.status, 400) << "a malformed body: " << res.body;
  EXPECT_EQ(shim.call("GET", "/api/jobs").json_body()["jobs"].size(), 0u) << "and no job made of it";
  const int id = shim.create();
  EXPECT_EQ(id, 1);
  res = shim.call("GET", "/api/jobs");
  ASSERT_EQ(res.status, 200);
  ASSERT_EQ(res.json_body()["jobs"].size(), 1u);
  EXPECT_EQ(res.json_body()["jobs"][0]["state"], "created");
  Request logs;  // as http.cpp hands it on: the query apart from the path
  logs.method = "GET";
  logs.path = "/api/jobs/1/logs";
  logs.query["offset"] = "x";
  res = dispatch(shim.state(), logs);
  EXPECT_EQ(res.status, 400) << res.body;
  EXPECT_NE(res.json_body()["error"].get<std::string>().find("offset: expected a non-negative integer"), std::string::npos)
      << res.body;
  res = shim.call("GET", "/dashboard/app.js");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.content_type, "text/javascript; charset=utf-8");

  // With a token: GETs as before, POSTs only with it (401 with WWW-Authenticate otherwise).
  {
    std::lock_guard<std::mutex> lock(shim.state().mu);
    shim.state().token = "s3cret";
  }
  EXPECT_EQ(shim.call("GET", "/api/jobs/1").status, 200);
  res = shim.initialize(id);
  EXPECT_EQ(res.status, 401) << res.body;
  ASSERT_EQ(res.headers.size(), 1u);
  EXPECT_EQ(res.headers[0].first, "WWW-Authenticate");
  res = shim.call("POST", "/api/network/initialize/1", "", {{"authorization", "Bearer wrong!"}});
  EXPECT_EQ(res.status, 401) << res.body;
  EXPECT_EQ(res.json_body()["error"], "[serve] wrong token in the Authorization header");
  EXPECT_EQ(shim.state_of(id), "created") << "a refused request changes nothing";
  res = shim.call("POST", "/api/network/initialize/1", "", {{"authorization", "Bearer s3cret"}});
  EXPECT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(shim.state_of(id), "initialized");
}

// ---------------------------------------------------------------------------------------------
// Every legal move, through the routes.

// created -> initialized -> initialized (again) -> queued -> training -> completed; the event
// stream carries each state once, in order, and ends after the final one.
TEST(ServeStates, MlpJobCompletes) {
  FakeRunner runner;
  Shim shim(runner);
  const int id = shim.create();
  EXPECT_EQ(shim.state_of(id), "created");
  Response events = shim.call("GET", "/api/jobs/" + std::to_string(id) + "/events");
  ASSERT_EQ(events.status, 200) << events.body;
  ASSERT_TRUE(events.events);

  ASSERT_EQ(shim.initialize(id).status, 200);
  EXPECT_EQ(shim.state_of(id), "initialized");
  ASSERT_EQ(shim.initialize(id).status, 200) << "initialize again re-plans";
  EXPECT_EQ(shim.state_of(id), "initialized");

  const Response r = shim.train(id);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["message"], "Training started");
  ASSERT_TRUE(runner.wait_started(1));
  ASSERT_TRUE(shim.reaches(id, "training"));
  EXPECT_FALSE(shim.view(id)["started_at"].is_null());

  runner.end(RunState::Completed);
  ASSERT_TRUE(shim.reaches(id, "completed"));
  const json job = shim.view(id);
  EXPECT_FALSE(job["finished_at"].is_null());
  EXPECT_EQ(job["epochs_completed"], 1);
  EXPECT_TRUE(logged(shim.logs(id), "training started"));
  EXPECT_TRUE(logged(shim.logs(id), "completed in"));

  const std::vector<std::string> expected = {"created", "initialized", "initialized", "queued", "training", "completed"};
  EXPECT_EQ(states_of_stream(*events.events), expected);
  shim.state().events.unsubscribe(id, events.events);
}

// A transformer trains without initialize: created -> queued in one request (placed on the
// way: its log says so), then as any job.
TEST(ServeStates, TransformerGoesFromCreatedToQueued) {
  FakeRunner runner;
  Shim shim(runner);
  const int blocker = shim.training_job(runner, 1);  // holds the runner, so that the transformer stays queued
  ASSERT_NE(blocker, 0);

  const int id = shim.create(transformer_job());
  EXPECT_EQ(shim.state_of(id), "created");
  const Response r = shim.call("POST", "/api/network/train/" + std::to_string(id), "{}");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["queued_behind"], json({blocker}));
  EXPECT_EQ(shim.state_of(id), "queued");
  EXPECT_TRUE(logged(shim.logs(id), "initialized by the train request")) << "placed on the way";
  EXPECT_FALSE(shim.view(id)["plan"].is_null());

  runner.end(RunState::Completed);
  ASSERT_TRUE(runner.wait_started(2));
  ASSERT_TRUE(shim.reaches(id, "training"));
  runner.end(RunState::Completed);
  ASSERT_TRUE(shim.reaches(id, "completed"));
}

// queued -> stopped: the runner never sees the job.
TEST(ServeStates, QueuedJobStopsWithoutRunning) {
  FakeRunner runner;
  Shim shim(runner);
  const int first = shim.create(), second = shim.create();
  ASSERT_EQ(shim.initialize(first).status, 200);
  ASSERT_EQ(shim.initialize(second).status, 200);
  ASSERT_EQ(shim.train(first).status, 200);
  ASSERT_TRUE(runner.wait_started(1));
  ASSERT_EQ(shim.train(second).status, 200);
  EXPECT_EQ(shim.state_of(second), "queued");

  const Response r = shim.stop(second);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(shim.state_of(second), "stopped");
  EXPECT_NE(shim.view(second)["error"].get<std::string>().find("before it started"), std::string::npos);

  runner.end(RunState::Completed);
  ASSERT_TRUE(shim.reaches(first, "completed"));
  std::this_thread::sleep_for(300ms);  // the loop would have taken the second job by now
  EXPECT_EQ(runner.started(), 1) << "a job stopped while queued never runs";
  EXPECT_EQ(shim.state_of(second), "stopped");
}

// training -> (stop requested: still training) -> stopped, by the client.
TEST(ServeStates, TrainingJobStopsWhenAsked) {
  FakeRunner runner;
  Shim shim(runner);
  const int id = shim.training_job(runner, 1);
  ASSERT_NE(id, 0);
  ASSERT_TRUE(shim.reaches(id, "training"));
  const Response r = shim.stop(id);
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.json_body()["state"], "training") << "it ends after the batches in flight";
  ASSERT_TRUE(shim.reaches(id, "stopped"));
  EXPECT_EQ(shim.view(id)["error"], "stopped by POST /api/jobs/" + std::to_string(id) + "/stop");
}

// training -> failed, two ways: a failed result (the server stays healthy) and a throw (the
// ranks may be out of step: the server refuses further training, 503).
TEST(ServeStates, TrainingJobFails) {
  FakeRunner runner;
  Shim shim(runner);
  const int id = shim.training_job(runner, 1);
  ASSERT_NE(id, 0);
  runner.end(RunState::Failed, "[test] the data went missing");
  ASSERT_TRUE(shim.reaches(id, "failed"));
  EXPECT_EQ(shim.view(id)["error"], "[test] the data went missing");
  EXPECT_EQ(shim.call("GET", "/healthz").json_body()["status"], "ok");

  const int broken = shim.training_job(runner, 2);
  ASSERT_NE(broken, 0);
  runner.end_by_throwing();
  ASSERT_TRUE(shim.reaches(broken, "failed"));
  EXPECT_NE(shim.view(broken)["error"].get<std::string>().find("no message from rank 1"), std::string::npos);
  EXPECT_EQ(shim.call("GET", "/healthz").json_body()["status"], "degraded");
  const int next = shim.create();
  ASSERT_EQ(shim.initialize(next).status, 200);
  const Response r = shim.train(next);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.json_body()["error"].get<std::string>().find("restart arceus serve"), std::string::npos) << r.body;
  EXPECT_EQ(shim.state_of(next), "initialized");
}

// A device registers (created and initialized jobs take it; one stage per layer at most), and
// its heartbeat answers what to do; an idle device leaves on DELETE.
TEST(ServeStates, DevicesRegisterAndHeartbeat) {
  FakeRunner runner;
  Shim shim(runner, 2);
  const int id = shim.create();
  ASSERT_EQ(shim.register_device(id, 5001).status, 201);
  EXPECT_EQ(shim.state_of(id), "created") << "registering does not move the job";
  ASSERT_EQ(shim.register_device(id, 5002).status, 201);
  ASSERT_EQ(shim.initialize(id).status, 200);
  EXPECT_EQ(shim.view(id)["plan"].size(), 2u) << "the two devices (the world's rank 1 takes no stage of a job on devices)";
  const Response r = shim.register_device(id, 5003);
  EXPECT_EQ(r.status, 400) << "3 stages for 2 layers: " << r.body;
  EXPECT_NE(r.body.find("3 device(s)"), std::string::npos) << r.body;
  EXPECT_EQ(shim.state_of(id), "initialized");

  json beat = shim.call("POST", "/api/devices/1/heartbeat", R"({"worker": "none"})").json_body();
  EXPECT_EQ(beat["action"], "wait") << beat;
  EXPECT_EQ(beat["job_state"], "initialized") << beat;
  EXPECT_EQ(shim.call("POST", "/api/devices/1/heartbeat", R"({"worker": "maybe"})").status, 400);
  EXPECT_EQ(shim.call("POST", "/api/devices/9/heartbeat", R"({"worker": "none"})").status, 404);

  // 5003 was refused, so DELETE takes the idle 5002 out: its agent is told to leave.
  ASSERT_EQ(shim.call("DELETE", "/api/devices/5002").status, 200);
  beat = shim.call("POST", "/api/devices/2/heartbeat", R"({"worker": "none"})").json_body();
  EXPECT_EQ(beat["action"], "leave") << beat;
  EXPECT_EQ(shim.view(id)["plan"].size(), 1u) << "placed again without it";
  json device;
  const json all = shim.call("GET", "/api/devices").json_body();  // kept: the loop reads into it
  for (const json& d : all["devices"])
    if (d.value("device_id", 0) == 2) device = d;
  EXPECT_EQ(device["state"], "left") << device;
}

// A job on two devices loses one mid-run: it goes training -> recovering -> training on the
// device left (resume: true, re-planned on one stage), completes, and records the loss. The
// lost device is told to leave; DELETE of a device of a training job is refused.
TEST(ServeStates, DeviceJobRecoversOnTheDeviceLeft) {
  FakeRunner runner;
  Shim shim(runner);
  const int id = shim.create();
  ASSERT_EQ(shim.register_device(id, 5001).status, 201);
  ASSERT_EQ(shim.register_device(id, 5002).status, 201);
  ASSERT_EQ(shim.initialize(id).status, 200);
  ASSERT_EQ(shim.train(id).status, 200);
  ASSERT_TRUE(runner.wait_started(1));
  EXPECT_EQ(shim.call("DELETE", "/api/devices/5001").status, 409) << "a device of a training job stays";
  Response events = shim.call("GET", "/api/jobs/" + std::to_string(id) + "/events");
  runner.lose(2);
  ASSERT_TRUE(runner.wait_started(2));
  ASSERT_TRUE(shim.reaches(id, "training"));
  runner.end(RunState::Completed);
  ASSERT_TRUE(shim.reaches(id, "completed"));
  EXPECT_EQ(runner.device_runs(), (std::vector<std::vector<int>>{{1, 2}, {1}}));
  EXPECT_EQ(runner.resumed(), (std::vector<bool>{false, true})) << "the second run resumes from the checkpoint";
  const json view = shim.view(id);
  ASSERT_EQ(view["device_losses"].size(), 1u) << view;
  EXPECT_EQ(view["device_losses"][0]["device_id"], 2) << view;
  EXPECT_EQ(view["device_losses"][0]["why"], "[test] no heartbeat") << view;
  EXPECT_EQ(view["device_losses"][0]["devices_left"], 1) << view;
  EXPECT_EQ(view["plan"].size(), 1u) << "re-planned on the device left";
  EXPECT_TRUE(logged(shim.logs(id), "device 2 (10.0.0.9:5002) on 10.0.0.9 lost at step 0: [test] no heartbeat"));
  EXPECT_TRUE(logged(shim.logs(id), "resuming from step 0 (no checkpoint yet) on 1 device(s)"));
  EXPECT_EQ(states_of_stream(*events.events), (std::vector<std::string>{"training", "recovering", "training", "completed"}));
  shim.state().events.unsubscribe(id, events.events);
  const json beat = shim.call("POST", "/api/devices/2/heartbeat", R"({"worker": "none"})").json_body();
  EXPECT_EQ(beat["action"], "leave") << beat;
}

// With training.on_device_loss: fail, or when no device is left, the loss fails the job, naming
// the device; the server stays healthy and the next job runs.
TEST(ServeStates, DeviceLossFailsTheJobWhenNothingIsLeftOrAsked) {
  FakeRunner runner;
  Shim shim(runner);
  json job = json::parse(kSyntheticJob);
  job["training"]["on_device_loss"] = "fail";
  const int first = shim.create(job.dump());
  ASSERT_EQ(shim.register_device(first, 5001).status, 201);
  ASSERT_EQ(shim.register_device(first, 5002).status, 201);
  ASSERT_EQ(shim.initialize(first).status, 200);
  ASSERT_EQ(shim.train(first).status, 200);
  ASSERT_TRUE(runner.wait_started(1));
  runner.lose(1);
  ASSERT_TRUE(shim.reaches(first, "failed"));
  EXPECT_NE(shim.view(first)["error"].get<std::string>().find("device 1 (10.0.0.9:5001) was lost at step 0"),
            std::string::npos)
      << shim.view(first);
  EXPECT_NE(shim.view(first)["error"].get<std::string>().find("on_device_loss is fail"), std::string::npos);

  const int second = shim.create();
  ASSERT_EQ(shim.register_device(second, 5003).status, 201);
  ASSERT_EQ(shim.initialize(second).status, 200);
  ASSERT_EQ(shim.train(second).status, 200);
  ASSERT_TRUE(runner.wait_started(2));
  runner.lose(3);
  ASSERT_TRUE(shim.reaches(second, "failed"));
  EXPECT_NE(shim.view(second)["error"].get<std::string>().find("no device is left"), std::string::npos);
  EXPECT_EQ(shim.call("GET", "/healthz").json_body()["status"], "ok");

  // A job placed on a device that goes (silent while idle) before it trains fails, naming it:
  // it never falls back to the world's ranks.
  const int orphan = shim.create();
  ASSERT_EQ(shim.register_device(orphan, 5004).status, 201);
  ASSERT_EQ(shim.initialize(orphan).status, 200);
  {
    std::lock_guard<std::mutex> lock(shim.state().mu);
    Device* d = shim.state().devices.find(4);
    ASSERT_NE(d, nullptr);
    d->state = DeviceState::Gone;
    d->why = "[test] silent while idle";
  }
  ASSERT_EQ(shim.train(orphan).status, 200);
  ASSERT_TRUE(shim.reaches(orphan, "failed"));
  EXPECT_NE(shim.view(orphan)["error"].get<std::string>().find("no device of job " + std::to_string(orphan) +
                                                               " is left: device 4 (10.0.0.9:5004): gone ([test] silent while idle)"),
            std::string::npos)
      << shim.view(orphan);
  EXPECT_EQ(runner.started(), 2) << "nothing ran";

  // Device 2 (idle again, its job over) is registered for a new job by its ip and port.
  const int third = shim.create();
  const Response again = shim.register_device(third, 5002);
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(again.json_body()["device_id"], 2);
  ASSERT_EQ(shim.initialize(third).status, 200);
  ASSERT_EQ(shim.train(third).status, 200);
  ASSERT_TRUE(runner.wait_started(3));
  runner.end(RunState::Completed);
  ASSERT_TRUE(shim.reaches(third, "completed"));
  EXPECT_EQ(shim.view(third)["devices"], 1) << "the original's count: its registered device";
  EXPECT_EQ(runner.device_runs().back(), std::vector<int>({2}));
}

// The job table on disk: saved at every change; a server started on it lists the jobs as they
// ended and queues the interrupted one again, to resume from its checkpoint.
TEST(ServeStates, JobTableIsSavedAndRestored) {
  test::TempDir dir;
  const std::string file = (dir.path() / "jobs.json").string();
  const std::string interrupted = (dir.path() / "interrupted.json").string();
  {
    FakeRunner runner;
    Shim shim(runner);
    {
      std::lock_guard<std::mutex> lock(shim.state().mu);
      shim.state().jobs_file = file;
    }
    const int done = shim.training_job(runner, 1);
    runner.end(RunState::Completed);
    ASSERT_TRUE(shim.reaches(done, "completed"));
    const int running = shim.training_job(runner, 2);
    ASSERT_TRUE(shim.reaches(running, "training"));
    std::filesystem::copy_file(file, interrupted);  // as a server killed now leaves it
    const int fresh = shim.create();
    ASSERT_EQ(shim.initialize(fresh).status, 200);
    runner.end(RunState::Completed);
    ASSERT_TRUE(shim.reaches(running, "completed"));
  }
  ServeState st(1, {"test-host"});
  st.jobs_file = interrupted;
  const std::string line = restore_jobs(st);
  EXPECT_NE(line.find("restored 2 job(s)"), std::string::npos) << line;
  ASSERT_EQ(st.jobs.size(), 2u);
  EXPECT_EQ(st.jobs.at(1)->state, JobState::Completed);
  EXPECT_EQ(st.jobs.at(1)->epochs.size(), 1u) << "its epochs, as they were";
  EXPECT_EQ(st.jobs.at(2)->state, JobState::Queued);
  EXPECT_TRUE(st.jobs.at(2)->train_config.resume) << "it resumes from its last checkpoint";
  EXPECT_EQ(st.jobs.at(2)->restored, 1);
  EXPECT_EQ(st.jobs.queued(), std::vector<int>({2}));
  EXPECT_EQ(st.jobs.add(nullptr)->id, 3) << "new jobs are numbered after the restored ones";

  // The table written after the third job was created and placed has it too, initialized.
  ServeState later(1, {"test-host"});
  later.jobs_file = file;
  restore_jobs(later);
  ASSERT_EQ(later.jobs.size(), 3u);
  EXPECT_EQ(later.jobs.at(2)->state, JobState::Completed);
  EXPECT_EQ(later.jobs.at(3)->state, JobState::Initialized);
  EXPECT_EQ(later.jobs.at(3)->plan.size(), 1u);

  // A file that is not a job table stops the server with a message naming it.
  test::write_text(dir.path() / "bad.json", R"({"format": 1, "jobs": [{"id": 1, "state": "dancing", "config": ""}]})");
  ServeState bad(1, {"test-host"});
  bad.jobs_file = (dir.path() / "bad.json").string();
  try {
    restore_jobs(bad);
    ADD_FAILURE() << "a bad table was restored";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("state 'dancing' is not a job state"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Every illegal request: 409 naming the state, the job unchanged.

enum class Ask { Initialize, Register, Train, Stop };
const char* name_of(Ask a) {
  switch (a) {
    case Ask::Initialize: return "initialize";
    case Ask::Register: return "register";
    case Ask::Train: return "train";
    case Ask::Stop: return "stop";
  }
  return "?";
}
JobEvent event_of(Ask a) {
  switch (a) {
    case Ask::Initialize: return JobEvent::Initialize;
    case Ask::Register: return JobEvent::Register;
    case Ask::Train: return JobEvent::Train;
    case Ask::Stop: return JobEvent::Stop;
  }
  return JobEvent::Initialize;
}

// A fresh shim with job `id` brought to `state` through the routes (a queued job waits behind
// another that holds the runner).
int job_in(Shim& shim, FakeRunner& runner, JobState state) {
  int runs = 0;
  if (state == JobState::Queued) {
    const int blocker = shim.create();
    EXPECT_EQ(shim.initialize(blocker).status, 200);
    EXPECT_EQ(shim.train(blocker).status, 200);
    EXPECT_TRUE(runner.wait_started(++runs));
  }
  const int id = shim.create();
  if (state == JobState::Created) return id;
  EXPECT_EQ(shim.initialize(id).status, 200);
  if (state == JobState::Initialized) return id;
  EXPECT_EQ(shim.train(id).status, 200);
  if (state == JobState::Queued) return id;
  EXPECT_TRUE(runner.wait_started(++runs));
  EXPECT_TRUE(shim.reaches(id, "training"));
  if (state == JobState::Training) return id;
  if (state == JobState::Stopped) {
    EXPECT_EQ(shim.stop(id).status, 202);
  } else {
    runner.end(state == JobState::Completed ? RunState::Completed : RunState::Failed, "[test] failed on purpose");
  }
  EXPECT_TRUE(shim.reaches(id, to_string(state)));
  return id;
}

TEST(ServeStates, EveryIllegalRequestIs409NamingJobStateAndRequest) {
  int refused = 0, accepted = 0;
  for (JobState state : kStates) {
    // Recovering lasts while the queue loop holds the lock: no request ever sees it (the
    // recovery tests above watch it go by in the event stream).
    if (state == JobState::Recovering) continue;
    for (Ask ask : {Ask::Initialize, Ask::Register, Ask::Train, Ask::Stop}) {
      SCOPED_TRACE(std::string(name_of(ask)) + " a " + to_string(state) + " job");
      FakeRunner runner;
      Shim shim(runner);
      const int id = job_in(shim, runner, state);
      ASSERT_EQ(shim.state_of(id), to_string(state));
      const size_t log_lines = shim.logs(id).size();
      const size_t devices = shim.call("GET", "/api/devices").json_body()["devices"].size();
      const std::string path = std::to_string(id);
      Response r;
      switch (ask) {
        case Ask::Initialize: r = shim.initialize(id); break;
        case Ask::Register: r = shim.register_device(id, 6000); break;
        case Ask::Train: r = shim.call("POST", "/api/network/train/" + path, "{}"); break;
        case Ask::Stop: r = shim.stop(id); break;
      }
      if (legal(state, event_of(ask))) {
        EXPECT_NE(r.status, 409) << r.body;
        ++accepted;
        continue;
      }
      ++refused;
      EXPECT_EQ(r.status, 409) << r.body;
      const std::string error = r.json_body().value("error", "");
      EXPECT_NE(error.find(std::string("job ") + path), std::string::npos) << error;
      EXPECT_EQ(error.rfind("[serve] job " + path + " is " + to_string(state), 0), 0u)
          << "the error names the job and its state: " << error;
      EXPECT_NE(error.find(name_of(ask)), std::string::npos) << "the error names the request: " << error;
      EXPECT_EQ(shim.state_of(id), to_string(state)) << "a refused request changes nothing";
      EXPECT_EQ(shim.logs(id).size(), log_lines) << "nor logs anything";
      EXPECT_EQ(shim.call("GET", "/api/devices").json_body()["devices"].size(), devices) << "nor adds a device";
    }
  }
  // 7 states x 4 requests: initialize and register (created, initialized), train
  // (initialized), stop (queued, training) are legal; the other 21 are refused.
  EXPECT_EQ(accepted, 7);
  EXPECT_EQ(refused, 21);
}

// A transformer's train from created is legal (it places the job first); an MLP's is not.
TEST(ServeStates, OnlyATransformerTrainsFromCreated) {
  FakeRunner runner;
  Shim shim(runner);
  const int mlp = shim.create();
  const Response r = shim.call("POST", "/api/network/train/" + std::to_string(mlp), "{}");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.json_body()["error"].get<std::string>().find("is created, not initialized"), std::string::npos) << r.body;
  const int gpt = shim.create(transformer_job());
  EXPECT_EQ(shim.call("POST", "/api/network/train/" + std::to_string(gpt), "{}").status, 200);
}

// ---------------------------------------------------------------------------------------------
// The output root: where a job may write, and read its checkpoint back.

std::string job_writing_to(const std::string& dir) {
  json body = json::parse(kSyntheticJob);
  body["output"] = {{"dir", dir}};
  return body.dump();
}
std::string error_of(const Response& r) { return r.json_body().value("error", ""); }

TEST(ServeStates, OutputDirMustLieInsideTheOutputRoot) {
  FakeRunner runner;
  Shim shim(runner);
  const fs::path root = shim.state().output_root;
  const fs::path outside = root.parent_path() / (root.filename().string() + "-outside");
  // Outside (absolute, '..', relative to the working directory, in YAML): 400 naming the value
  // and the root, and no job.
  for (const std::string& dir : {(outside / "run").string(), (root / "../elsewhere").string(), std::string("runs/x")}) {
    const Response r = shim.call("POST", "/api/jobs", job_writing_to(dir));
    EXPECT_EQ(r.status, 400) << dir << ": " << r.body;
    EXPECT_NE(error_of(r).find("output.dir = '" + dir + "'"), std::string::npos) << error_of(r);
    EXPECT_NE(error_of(r).find("outside the output root (" + root.string() + ")"), std::string::npos) << error_of(r);
  }
  const Response yaml = shim.call("POST", "/api/jobs", "dataset_config: {name: synthetic}\noutput:\n  dir: " + outside.string() + "\n",
                                  {{"content-type", "application/yaml"}});
  EXPECT_EQ(yaml.status, 400) << yaml.body;
  EXPECT_NE(error_of(yaml).find("output.dir = '" + outside.string() + "'"), std::string::npos) << yaml.body;
  const Response itself = shim.call("POST", "/api/jobs", job_writing_to(root.string()));
  EXPECT_EQ(itself.status, 400) << itself.body;
  EXPECT_NE(error_of(itself).find("is the output root itself"), std::string::npos) << itself.body;
  EXPECT_EQ(shim.call("GET", "/api/jobs").json_body()["jobs"].size(), 0u) << "no job was created";
  EXPECT_FALSE(fs::exists(outside)) << "nothing was made there";

  // Inside: accepted as given; without output.dir, <root>/job-<id>.
  const std::string mine = (root / "mine/run").string();
  const int given = shim.create(job_writing_to(mine));
  EXPECT_EQ(shim.view(given)["output_dir"], mine);
  const int by_default = shim.create();
  EXPECT_EQ(shim.view(by_default)["output_dir"], (shim.output_root() / ("job-" + std::to_string(by_default))).string());

  // A symlink planted where the next job's default directory will be: that job is refused.
  fs::create_directories(outside);
  fs::create_directory_symlink(outside, root / ("job-" + std::to_string(by_default + 1)));
  const Response planted = shim.call("POST", "/api/jobs", kSyntheticJob);
  EXPECT_EQ(planted.status, 400) << planted.body;
  EXPECT_NE(error_of(planted).find("output.dir (not set: the default)"), std::string::npos) << planted.body;
  EXPECT_NE(error_of(planted).find("(" + outside.string() + ") is outside the output root"), std::string::npos)
      << planted.body;
  fs::remove_all(outside);
}

// A directory checked at creation may become a symlink out later: train, predict and generate
// resolve it again.
TEST(ServeStates, OutputDirIsCheckedAgainWhenUsed) {
  FakeRunner runner;
  Shim shim(runner);
  const fs::path root = shim.state().output_root;
  const fs::path outside = root.parent_path() / (root.filename().string() + "-outside");
  fs::create_directories(outside);
  const std::string dir = (root / "moved").string();
  const int mlp = shim.create(job_writing_to(dir));
  json gpt_body = json::parse(transformer_job());
  gpt_body["output"] = {{"dir", (root / "gpt").string()}};
  const int gpt = shim.create(gpt_body.dump());
  ASSERT_EQ(shim.initialize(mlp).status, 200);
  const std::string predict = "/api/jobs/" + std::to_string(mlp) + "/predict";
  const std::string generate = "/api/jobs/" + std::to_string(gpt) + "/generate";
  const std::string pixels = json{{"pixels", std::vector<double>(32, 0.5)}}.dump();

  // Inside, no checkpoint yet: predict and generate get as far as loading it (409).
  EXPECT_EQ(shim.call("POST", predict, pixels).status, 409);
  EXPECT_EQ(shim.call("POST", generate, "{}").status, 409);

  // The directories become symlinks out: train, predict and generate refuse, naming both.
  fs::create_directory_symlink(outside, root / "moved");
  fs::create_directory_symlink(outside, root / "gpt");
  for (const auto& [what, r] : {std::pair{"train", shim.train(mlp)}, std::pair{"predict", shim.call("POST", predict, pixels)},
                                std::pair{"generate", shim.call("POST", generate, "{}")}}) {
    EXPECT_EQ(r.status, 400) << what << ": " << r.body;
    EXPECT_NE(error_of(r).find("outside the output root (" + root.string() + ")"), std::string::npos) << what << ": " << r.body;
    EXPECT_NE(error_of(r).find("(" + outside.string() + ")"), std::string::npos) << what << ": " << r.body;
  }
  EXPECT_EQ(shim.state_of(mlp), "initialized") << "the refused train changed nothing";
  EXPECT_EQ(runner.started(), 0);

  // A real directory again, but its checkpoint.h5 a symlink to a file outside: predict refuses.
  fs::remove(root / "moved");
  fs::create_directories(root / "moved");
  std::ofstream(outside / "checkpoint.h5") << "not yours";
  fs::create_symlink(outside / "checkpoint.h5", root / "moved/checkpoint.h5");
  const Response link = shim.call("POST", predict, pixels);
  EXPECT_EQ(link.status, 400) << link.body;
  EXPECT_NE(error_of(link).find("job " + std::to_string(mlp) + "'s checkpoint"), std::string::npos) << link.body;

  // Inside again: train is accepted.
  fs::remove(root / "moved/checkpoint.h5");
  EXPECT_EQ(shim.train(mlp).status, 200);
  EXPECT_TRUE(runner.wait_started(1));
  runner.end(RunState::Completed);
  EXPECT_TRUE(shim.reaches(mlp, "completed"));
  fs::remove_all(outside);
}

// ---------------------------------------------------------------------------------------------
// The real trainer behind the routes: a job on 2 stages over the loopback transport.

TEST(ServeStates, LoopbackRunnerTrainsAJobToCompletion) {
  LoopbackRunner runner;
  Shim shim(runner, 3);  // rank 0 and stage ranks 1, 2
  const fs::path out = shim.output_root() / "loopback";
  json body = json::parse(kSyntheticJob);
  body["output"] = {{"dir", out.string()}};
  const int id = shim.create(body.dump());
  const Response init = shim.initialize(id);
  ASSERT_EQ(init.status, 200) << init.body;
  ASSERT_EQ(init.json_body()["stages"].size(), 2u);
  ASSERT_EQ(shim.train(id).status, 200);
  ASSERT_TRUE(shim.reaches(id, "completed")) << shim.view(id).dump(2);
  const json job = shim.view(id);
  EXPECT_EQ(job["epochs_completed"], 1);
  EXPECT_GT(job["final"]["val_accuracy"].get<double>(), 0.2) << "chance is 0.1";
  const json metrics = shim.call("GET", "/api/jobs/" + std::to_string(id) + "/metrics").json_body();
  EXPECT_EQ(metrics["steps"].size(), 16u);
  EXPECT_TRUE(fs::exists(out / "summary.json"));
}

}  // namespace
}  // namespace arceus::serve
