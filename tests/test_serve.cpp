// End-to-end tests of `arceus serve`: start `mpirun -np N arceus serve --port 0` (the server
// prints the port it got), drive it with cpp-httplib's client the way the original's curl
// commands do, then shut it down and check that mpirun exits 0 and no rank is left behind.
//
// Every wait is bounded: a server that does not come up, a job that does not finish, or an
// mpirun that does not exit is a failure, and every process of the run is killed. Paths come
// from CMake (ARCEUS_BIN, MPIEXEC) and may be overridden with ARCEUS_E2E_BIN and
// ARCEUS_E2E_MPIEXEC. Without an mpirun every test is skipped, saying so.
#include "support/process.h"
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "storage/storage.h"
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <cmath>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef TEST_CONFIG_DIR
#define TEST_CONFIG_DIR "tests/configs"
#endif

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace arceus::test;  // arceus_bin(), mpiexec(), spawn(), descendants(), ...

// The issue's synthetic job: 2 layers, 1024 samples in batches of 64 (16 steps per epoch).
const char* kSyntheticJob =
    R"({"model_config":{"layer_sizes":[32,48,10]},"dataset_config":{"name":"synthetic","batch_size":64,)"
    R"("synthetic":{"train_size":1024,"val_size":256,"features":32,"classes":10}},"training":{"momentum":0.9}})";
constexpr int kSyntheticSteps = 16;

// The original README's commands (FashionMNIST).
const char* kFashionJob =
    R"({"model_config":{"layer_sizes":[784,128,64,10]},"dataset_config":{"name":"FashionMNIST","batch_size":256,)"
    R"("val_batch_size":1000,"normalize":{"mean":[0.2860],"std":[0.3530]}}})";

// The original's transformer job ({"model_config": {"type": "transformer"}, "dataset_config":
// {"source": ...}}) with the keys of tests/configs/e2e_gpt.yaml that make it tiny: 4 layers
// (embeddings, 2 blocks, head), 160 windows of 16 characters per epoch in batches of 16 (10
// steps), 1 epoch, a 20-character sample; warm-up, cosine and clipping so that the steps'
// learning rates and the epoch's gradient norm show.
std::string tiny_gpt_job(const std::string& source) {
  json body = {{"model_config", {{"type", "transformer"}, {"context", 16}, {"n_emb", 32}, {"n_heads", 4}, {"n_blocks", 2},
                                 {"dropout", 0}}},
               {"dataset_config", {{"source", source}, {"windows_per_epoch", 160}, {"batch_size", 16},
                                   {"val_batch_size", 16}}},
               {"training", {{"epochs", 1}, {"optimizer", "adamw"}, {"learning_rate", 0.003}, {"lr_schedule", "cosine"},
                             {"warmup_steps", 4}, {"grad_clip", 1.0}, {"micro_batches", 2}, {"schedule", "1f1b"}}},
               {"output", {{"sample_tokens", 20}}}};
  return body.dump();
}
constexpr int kTinyGptSteps = 10;
const std::string kHelloText = std::string(TEST_CONFIG_DIR) + "/e2e_hello.txt";

// The seed README's commands, byte for byte: the job body (`curl -d '...'` sends it as it
// stands, newlines and indentation included) and the train body.
const char* kSeedJob = R"({
       "model_config": {
         "layer_sizes": [784, 128, 64, 10]
       },
       "dataset_config": {
         "name": "MNIST",
         "batch_size": 256,
         "val_batch_size": 1000,
         "normalize": {
           "mean": [0.1307],
           "std": [0.3081]
         }
       }
     })";
const char* kSeedTrain = R"({"epochs": 10, "learning_rate": 0.1})";

// Fashion-MNIST's IDX files (the same four names as MNIST's) stand in for MNIST's.
const char* const kFashionDir = "/usr/share/datasets/fashion-mnist";
const char* const kIdxFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                                 "t10k-labels-idx1-ubyte.gz"};

// ---------------------------------------------------------------------------------------
// Processes.

// A port that was free a moment ago (for the test that passes an explicit --port).
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  const int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// One `mpirun -np N arceus serve ...`, in its own process group, output to a log file, run in
// a fresh working directory (jobs write runs/serve/job-<id> there).
class Server {
 public:
  Server() = default;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // The work directory (runs, serve.log) is removed unless the test failed, then kept and named.
  ~Server() {
    kill_all();
    if (work_.empty()) return;
    if (::testing::Test::HasFailure()) {
      std::printf("[  kept    ] server directory of this failed test: %s\n", work_.c_str());
    } else {
      std::error_code ec;
      fs::remove_all(work_, ec);
    }
  }

  // Starts the server and waits (bounded) until it printed its address and /healthz answers.
  ::testing::AssertionResult start(int np, std::vector<std::string> extra = {}, double timeout = 90,
                                   const std::vector<std::pair<std::string, std::string>>& env = {}) {
    np_ = np;
    work_ = fs::temp_directory_path() / ("arceus-serve-test-" + std::to_string(getpid()) + "-" + std::to_string(++count_));
    fs::remove_all(work_);
    fs::create_directories(work_);
    log_ = work_ / "serve.log";
    // np 0: no mpirun at all (the original's `python -m api.server`): arceus serve starts its
    // ompi-server and runs itself under mpirun -np 1.
    std::vector<std::string> args = np > 0 ? std::vector<std::string>{mpiexec(), "-np", std::to_string(np),
                                                                       "--allow-run-as-root", "--oversubscribe",
                                                                       arceus_bin(), "serve"}
                                           : std::vector<std::string>{arceus_bin(), "serve"};
    args.insert(args.begin(), prefix_.begin(), prefix_.end());
    if (std::find(extra.begin(), extra.end(), "--port") == extra.end()) {
      args.push_back("--port");
      args.push_back("0");
    }
    args.insert(args.end(), extra.begin(), extra.end());
    for (const auto& a : args) command_ += (command_.empty() ? "" : " ") + a;

    pid_ = spawn(args, log_, work_, env);
    if (pid_ < 0) return ::testing::AssertionFailure() << "fork: " << std::strerror(errno);

    const auto t0 = Clock::now();
    const std::regex listening(R"(listening on http://([^:\s]+):(\d+) \(rank 0, pid (\d+))");
    while (seconds_since(t0) < timeout) {
      if (exited()) return ::testing::AssertionFailure() << "the server exited with " << exit_code_ << describe();
      std::smatch m;
      const std::string out = output();
      if (port_ == 0 && std::regex_search(out, m, listening)) {
        port_ = std::stoi(m[2]);
        rank0_pid_ = static_cast<pid_t>(std::stol(m[3]));
      }
      if (port_ != 0) {
        httplib::Client c("127.0.0.1", port_);
        c.set_connection_timeout(1);
        if (auto r = c.Get("/healthz"); r && r->status == 200) {
          observe();
          std::printf("[  serve   ] np=%d port %d up after %.1f s: %s\n", np, port_, seconds_since(t0), command_.c_str());
          std::fflush(stdout);
          return ::testing::AssertionSuccess();
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return ::testing::AssertionFailure() << "the server did not answer /healthz within " << timeout << " s"
                                         << describe();
  }

  // Waits (bounded) for mpirun to exit; kills everything on timeout. Also checks that every
  // process of the run is gone.
  ::testing::AssertionResult wait_exit(double timeout, int expected_code = 0) {
    observe();
    const auto t0 = Clock::now();
    while (!exited() && seconds_since(t0) < timeout) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!exited()) {
      kill_all();
      return ::testing::AssertionFailure() << "mpirun did not exit within " << timeout << " s (killed)" << describe();
    }
    const double took = seconds_since(t0);
    if (const std::vector<pid_t> left = survivors(seen_, 5); !left.empty()) {
      kill_all();
      return ::testing::AssertionFailure() << "processes left after mpirun exited: " << left.size() << describe();
    }
    std::printf("[  serve   ] mpirun exited %d, %.1f s after the request\n", exit_code_, took);
    if (exit_code_ != expected_code)
      return ::testing::AssertionFailure() << "mpirun exited " << exit_code_ << ", expected " << expected_code
                                           << describe();
    return ::testing::AssertionSuccess();
  }

  // POST /api/shutdown, then mpirun must exit 0.
  ::testing::AssertionResult shutdown(double timeout = 60, const std::string& token = "") {
    httplib::Client c = client();
    httplib::Headers h;
    if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
    auto r = c.Post("/api/shutdown", h, "", "application/json");
    if (!r || r->status != 200)
      return ::testing::AssertionFailure() << "POST /api/shutdown: " << (r ? std::to_string(r->status) + " " + r->body : "no answer")
                                           << describe();
    return wait_exit(timeout, 0);
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(5);
    c.set_read_timeout(60);
    return c;
  }

  int port() const { return port_; }
  pid_t rank0_pid() const { return rank0_pid_; }
  // Run the server under this command, e.g. {arceus, "run", "--"} (before start()).
  void under(std::vector<std::string> prefix) { prefix_ = std::move(prefix); }
  const fs::path& work() const { return work_; }
  std::string output() const { return read_text(log_); }

  std::string describe() const {
    const std::string out = output();
    constexpr size_t kTail = 5000;
    return "\n  command: " + command_ + "\n  output" + (out.size() > kTail ? " (tail)" : "") + ":\n" +
           (out.size() > kTail ? out.substr(out.size() - kTail) : out);
  }

 private:
  bool exited() {
    if (pid_ <= 0) return true;
    if (exit_code_ != -1) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return true;
    }
    return false;
  }

  void observe() {
    if (pid_ > 0 && exit_code_ == -1)
      for (const auto& [p, start] : descendants(pid_)) seen_.emplace(p, start);
  }

  void kill_all() {
    if (pid_ <= 0) return;
    observe();
    if (!exited()) {
      kill(-pid_, SIGKILL);
      kill_running(seen_);
      int status = 0;
      waitpid(pid_, &status, 0);
      exit_code_ = 137;
    }
    kill_running(seen_);
  }

  static inline int count_ = 0;
  int np_ = 0;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  int port_ = 0;
  pid_t rank0_pid_ = 0;
  std::vector<std::string> prefix_;
  fs::path work_, log_;
  std::string command_;
  Processes seen_;
};

// ---------------------------------------------------------------------------------------
// HTTP.

struct Reply {
  int status = 0;  // 0: no answer
  json body;
  std::string text;
};

Reply reply_of(const httplib::Result& r) {
  Reply out;
  if (!r) {
    out.text = "no answer (" + httplib::to_string(r.error()) + ")";
    return out;
  }
  out.status = r->status;
  out.text = r->body;
  try {
    out.body = json::parse(r->body);
  } catch (const std::exception&) {
  }
  return out;
}

Reply get(const Server& s, const std::string& path) { return reply_of(s.client().Get(path)); }

Reply post(const Server& s, const std::string& path, const std::string& body,
           const std::string& type = "application/json", const std::string& token = "") {
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  return reply_of(s.client().Post(path, h, body, type));
}

// A request written by hand: `curl -X POST URL` sends no Content-Length at all.
Reply raw_request(int port, const std::string& request) {
  Reply out;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    out.text = "cannot connect";
    return out;
  }
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = write(fd, request.data() + sent, request.size() - sent);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string data;
  char buf[4096];
  size_t need = std::string::npos;
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    const size_t end = data.find("\r\n\r\n");
    if (end != std::string::npos && need == std::string::npos) {
      std::smatch m;
      const std::string head = data.substr(0, end);
      if (std::regex_search(head, m, std::regex(R"(content-length:\s*(\d+))", std::regex::icase)))
        need = end + 4 + std::stoul(m[1]);
    }
    if (need != std::string::npos && data.size() >= need) break;
  }
  close(fd);
  std::smatch m;
  if (std::regex_search(data, m, std::regex(R"(^HTTP/1\.\d (\d{3}))"))) out.status = std::stoi(m[1]);
  const size_t end = data.find("\r\n\r\n");
  out.text = end == std::string::npos ? data : data.substr(end + 4);
  try {
    out.body = json::parse(out.text);
  } catch (const std::exception&) {
  }
  return out;
}

// `curl -X POST http://localhost:PORT/PATH` exactly: no body, no Content-Length.
Reply curl_post_no_body(const Server& s, const std::string& path) {
  return raw_request(s.port(), "POST " + path + " HTTP/1.1\r\nHost: localhost:" + std::to_string(s.port()) +
                                   "\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n");
}

std::string show(const Reply& r) { return std::to_string(r.status) + " " + r.text; }

std::string error_of(const Reply& r) { return r.body.is_object() ? r.body.value("error", std::string()) : std::string(); }

// Polls GET /api/jobs/<id> until its state is one of `states` (bounded).
json wait_state(const Server& s, int id, const std::set<std::string>& states, double timeout) {
  const auto t0 = Clock::now();
  json last;
  while (seconds_since(t0) < timeout) {
    const Reply r = get(s, "/api/jobs/" + std::to_string(id));
    if (r.status == 200) {
      last = r.body;
      if (states.count(last.value("state", ""))) return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "job " << id << " did not reach the expected state within " << timeout << " s; last: " << last.dump()
                << s.describe();
  return last;
}

bool healthy(const Server& s) {
  const Reply r = get(s, "/healthz");
  return r.status == 200 && r.body.value("status", "") == "ok";
}

#define SKIP_WITHOUT_MPI()                                                                        \
  do {                                                                                            \
    if (mpiexec().empty()) GTEST_SKIP() << "no mpirun found by CMake (set ARCEUS_E2E_MPIEXEC)";  \
    if (arceus_bin().empty() || !fs::exists(arceus_bin())) GTEST_SKIP() << "no arceus binary: " << arceus_bin(); \
  } while (0)

// The id of a created job: job_id is a string, as in the original ("1"); `id` is the number.
// 0 (and a failure) when the reply has no such pair.
int job_id_of(const Reply& r) {
  if (!r.body.is_object() || !r.body.contains("job_id") || !r.body["job_id"].is_string() ||
      !r.body.contains("id") || !r.body["id"].is_number_integer()) {
    ADD_FAILURE() << "expected a string job_id and a numeric id: " << show(r);
    return 0;
  }
  const int id = r.body["id"].get<int>();
  EXPECT_EQ(r.body["job_id"], std::to_string(id)) << show(r);
  return id;
}

// Creates the synthetic job and initializes it; returns its id.
int create_initialized(const Server& s, const std::string& body = kSyntheticJob) {
  const Reply c = post(s, "/api/jobs", body);
  EXPECT_EQ(c.status, 201) << show(c);
  const int id = job_id_of(c);
  const Reply i = curl_post_no_body(s, "/api/network/initialize/" + std::to_string(id));
  EXPECT_EQ(i.status, 200) << show(i);
  return id;
}

// ---------------------------------------------------------------------------------------
// Tests.

// The issue's curl workflow on a synthetic job, every read endpoint, then a YAML job so that
// /api/previous_teraflops has the first job's numbers.
// A job with partition.replicas on np 3: 2 replicas of one stage, the plan's stage names its
// rank in each replica, and the job trains to completion.
TEST(Serve, ReplicasJobTrains) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3));
  json body = json::parse(kSyntheticJob);
  body["partition"] = {{"replicas", 2}};
  Reply r = post(s, "/api/jobs", body.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  r = curl_post_no_body(s, "/api/network/initialize/1");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["replicas"], 2) << show(r);
  ASSERT_EQ(r.body["stages"].size(), 1u) << show(r);
  EXPECT_EQ(r.body["stages"][0]["replica_ranks"], json({1, 2})) << show(r);
  EXPECT_EQ(r.body["devices"], 2) << show(r);
  r = post(s, "/api/network/train/1", R"({"epochs": 1})");
  ASSERT_EQ(r.status, 200) << show(r);
  const json job = wait_state(s, 1, {"completed", "failed", "stopped"}, 120);
  ASSERT_EQ(job["state"], "completed") << job.dump(2);
  EXPECT_EQ(job["replicas"], 2) << job.dump(2);
  EXPECT_EQ(job["plan"][0]["replica_ranks"], json({1, 2})) << job.dump(2);
}

TEST(Serve, CurlWorkflowSynthetic) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3));

  Reply r = post(s, "/api/jobs", kSyntheticJob);
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(r.body["job_id"], "1") << show(r);
  EXPECT_EQ(job_id_of(r), 1);
  EXPECT_TRUE(r.body.contains("message"));

  r = get(s, "/api/jobs");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_EQ(r.body["jobs"].size(), 1u);
  EXPECT_EQ(r.body["jobs"][0]["state"], "created");

  // Training before initialize: 409, as in the original.
  r = post(s, "/api/network/train/1", R"({"epochs": 2, "learning_rate": 0.1})");
  EXPECT_EQ(r.status, 409) << show(r);
  EXPECT_NE(error_of(r).find("initialize"), std::string::npos) << show(r);

  // `curl -X POST .../initialize/1`: no body at all.
  r = curl_post_no_body(s, "/api/network/initialize/1");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_EQ(r.body["stages"].size(), 2u) << show(r);
  EXPECT_EQ(r.body["stages"][0]["rank"], 1);
  EXPECT_EQ(r.body["stages"][0]["layers"], json({0, 0}));
  EXPECT_EQ(r.body["stages"][1]["rank"], 2);
  EXPECT_EQ(r.body["stages"][1]["layers"], json({1, 1}));
  EXPECT_EQ(get(s, "/api/jobs/1").body["state"], "initialized");

  const auto t0 = Clock::now();
  r = post(s, "/api/network/train/1", R"({"epochs": 2, "learning_rate": 0.1})");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["message"], "Training started");
  EXPECT_EQ(r.body["epochs"], 2);
  EXPECT_DOUBLE_EQ(r.body["learning_rate"].get<double>(), 0.1);

  // Training twice: 409 (whether it is still queued, training or done).
  r = post(s, "/api/network/train/1", R"({"epochs": 2})");
  EXPECT_EQ(r.status, 409) << show(r);

  json job = wait_state(s, 1, {"completed", "failed", "stopped"}, 120);
  std::printf("[  serve   ] job 1 %s after %.1f s\n", job.value("state", "?").c_str(), seconds_since(t0));
  ASSERT_EQ(job["state"], "completed") << job.dump(2);
  EXPECT_EQ(job["epochs_completed"], 2);
  ASSERT_TRUE(job["final"].is_object()) << job.dump(2);
  EXPECT_GT(job["final"]["val_accuracy"].get<double>(), 0.2) << "chance is 0.1";
  EXPECT_EQ(job["config"]["training"]["learning_rate"], 0.1);
  EXPECT_EQ(job["config"]["training"]["momentum"], 0.9);
  EXPECT_EQ(job["output_dir"], "runs/serve/job-1");
  EXPECT_TRUE(fs::exists(s.work() / "runs/serve/job-1/summary.json"));

  r = post(s, "/api/network/train/1", R"({"epochs": 2})");
  EXPECT_EQ(r.status, 409) << show(r);

  r = get(s, "/api/jobs/1/metrics");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["steps"].size(), 2u * kSyntheticSteps);
  ASSERT_EQ(r.body["epochs"].size(), 2u);
  for (const auto& step : r.body["steps"]) {
    EXPECT_TRUE(step.contains("loss") && step.contains("accuracy")) << step.dump();
  }
  for (const auto& e : r.body["epochs"]) {
    EXPECT_TRUE(e.contains("val_accuracy") && e.contains("train_loss")) << e.dump();
    EXPECT_EQ(e["timing"].size(), 3u) << "one timing entry per rank";
  }
  EXPECT_GT(r.body["bytes_wire"].get<double>(), 0);
  EXPECT_LT(r.body["bytes_wire"].get<double>(), r.body["bytes_raw"].get<double>()) << "8-bit messages";

  r = get(s, "/api/jobs/1/logs");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_FALSE(r.body["lines"].empty());
  bool epoch_line = false;
  for (const auto& l : r.body["lines"]) epoch_line |= l.get<std::string>().rfind("epoch 2/2", 0) == 0;
  EXPECT_TRUE(epoch_line) << r.body.dump(2);

  r = get(s, "/api/devices");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_EQ(r.body["devices"].size(), 3u) << show(r);
  for (int k = 0; k < 3; ++k) {
    const auto& d = r.body["devices"][size_t(k)];
    EXPECT_EQ(d["rank"], k);
    EXPECT_FALSE(d["host"].get<std::string>().empty());
    EXPECT_EQ(d["state"], "idle");
  }
  EXPECT_EQ(r.body["devices"][1]["layers"], json({0, 0}));
  EXPECT_EQ(r.body["devices"][2]["layers"], json({1, 1}));

  r = get(s, "/api/teraflops");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["job_id"], "1");
  ASSERT_EQ(r.body["ranks"].size(), 3u) << show(r);
  for (const auto& t : r.body["ranks"]) {
    EXPECT_TRUE(t["forward_tflops"].is_number() && t["backward_tflops"].is_number()) << t.dump();
    if (t["rank"] != 0) {
      EXPECT_GT(t["forward_tflops"].get<double>(), 0) << t.dump();
    }
  }
  // The original's previous_teraflops: one entry per earlier session (job 1 is over), keyed by
  // device; ours (?job=previous): the job before the current one, none yet.
  r = get(s, "/api/previous_teraflops");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_TRUE(r.body.is_array() && r.body.size() == 1u) << show(r);
  for (const char* device : {"1", "2"}) {
    const json& t = r.body[0][device];
    EXPECT_GT(t.value("forward_tflops", 0.0), 0) << show(r);
    EXPECT_NEAR(t.value("total_tflops", 0.0), t.value("forward_tflops", 0.0) + t.value("backward_tflops", 0.0), 1e-12);
  }
  r = get(s, "/api/previous_teraflops?job=previous");
  EXPECT_TRUE(r.body["job_id"].is_null()) << "no previous job yet: " << show(r);

  // A YAML body: the same document as a `train` config file; its own output.dir is kept (it
  // lies inside the default output root, runs/serve of the working directory).
  const fs::path yaml_out = s.work() / "runs/serve/yaml-job";
  const std::string yaml = "# a train config file\nmodel_config:\n  layer_sizes: [32, 48, 10]\ndataset_config:\n"
                           "  name: synthetic\n  batch_size: 64\n  synthetic: {train_size: 1024, val_size: 256, "
                           "features: 32, classes: 10}\ntraining:\n  epochs: 1\n  momentum: 0.9\noutput:\n  dir: " +
                           yaml_out.string() + "\n";
  r = post(s, "/api/jobs", yaml, "application/yaml");
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(r.body["job_id"], "2");
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/2").status, 200);
  r = curl_post_no_body(s, "/api/network/train/2");  // no body: the job's own epochs (1)
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["epochs"], 1);
  job = wait_state(s, 2, {"completed", "failed", "stopped"}, 120);
  ASSERT_EQ(job["state"], "completed") << job.dump(2);
  EXPECT_EQ(job["body_format"], "yaml");
  EXPECT_TRUE(fs::exists(yaml_out / "summary.json"));

  r = get(s, "/api/teraflops");
  EXPECT_EQ(r.body["job_id"], "2") << show(r);
  r = get(s, "/api/previous_teraflops?job=previous");
  EXPECT_EQ(r.body["job_id"], "1") << show(r);
  EXPECT_EQ(r.body["ranks"].size(), 3u) << show(r);
  EXPECT_EQ(get(s, "/api/previous_teraflops").body.size(), 2u) << "both sessions";
  r = get(s, "/api/devices/teraflops");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_EQ(r.body["devices"].size(), 3u) << show(r);
  EXPECT_TRUE(r.body["devices"][1]["forward_tflops"].is_number()) << show(r);
  EXPECT_TRUE(r.body["devices"][1]["previous"].is_object()) << show(r);

  EXPECT_EQ(get(s, "/api/jobs").body["jobs"].size(), 2u);
  ASSERT_TRUE(s.shutdown());
}

// Every bad request is a 4xx with {"error": message}, and the server keeps serving.
TEST(Serve, BadRequestsAreRefusedAndTheServerKeepsServing) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3));

  struct Case {
    std::string what, method, path, body, type;
    int status;
    std::string needle;  // in the error message
  };
  const std::string big((size_t{1} << 20) + 1024, ' ');  // the limit is 1 MiB
  const std::string form(9000, ' ');                     // curl -d without -H: httplib's 8 KiB form limit
  const std::string deep = R"({"model_config": {"layer_sizes": )" + std::string(100000, '[') + std::string(100000, ']') + "}}";
  const std::vector<Case> cases = {
      {"malformed JSON", "POST", "/api/jobs", R"({"model_config": {"layer_sizes": [784, 10]})", "application/json", 400,
       "malformed JSON"},
      {"not an object", "POST", "/api/jobs", "[1, 2, 3]", "application/json", 400, "JSON object"},
      {"empty body", "POST", "/api/jobs", "", "application/json", 400, "empty request body"},
      {"misspelt key", "POST", "/api/jobs", R"({"model_config": {"layer_size": [32, 10]}})", "application/json", 400,
       "model_config.layer_size"},
      {"wrong type", "POST", "/api/jobs", R"({"model_config": {"layer_sizes": "wide"}})", "application/json", 400,
       "model_config.layer_sizes"},
      {"bad value", "POST", "/api/jobs", R"({"dataset_config": {"name": "synthetic", "batch_size": 0}})",
       "application/json", 400, "dataset_config.batch_size"},
      {"unknown section", "POST", "/api/jobs", R"({"trainig": {"epochs": 1}})", "application/json", 400, "trainig"},
      {"bad YAML", "POST", "/api/jobs", "model_config:\n  layer_sizes: [32, 10\n", "application/yaml", 400, "YAML"},
      // The original's transformer body: its relative source lies under the server's working
      // directory, which is no data root.
      {"transformer source outside (JSON)", "POST", "/api/jobs",
       R"({"model_config": {"type": "transformer"}, "dataset_config": {"source": "gpt/data.txt"}})", "application/json",
       400, "dataset_config.source = 'gpt/data.txt'"},
      {"transformer source outside (YAML)", "POST", "/api/jobs",
       "model_config:\n  type: transformer\ndataset_config:\n  source: /etc/hostname\n", "application/yaml", 400,
       "dataset_config.source = '/etc/hostname' is outside the allowed data roots"},
      {"transformer source escaping with ..", "POST", "/api/jobs",
       R"({"model_config": {"type": "transformer"}, "dataset_config": {"source": "/usr/share/common-licenses/../../../etc/hostname"}})",
       "application/json", 400, "(/etc/hostname) is outside the allowed data roots"},
      {"transformer without source", "POST", "/api/jobs", R"({"model_config": {"type": "transformer"}})",
       "application/json", 400, "dataset_config.source"},
      {"transformer with layer_sizes", "POST", "/api/jobs",
       R"({"model_config": {"type": "transformer", "layer_sizes": [32, 10]}, "dataset_config": {"source": "/usr/share/common-licenses/GPL-3"}})",
       "application/json", 400, "model_config.layer_sizes"},
      {"MLP with a transformer key", "POST", "/api/jobs",
       R"({"model_config": {"layer_sizes": [32, 10], "n_heads": 4}, "dataset_config": {"name": "synthetic"}})",
       "application/json", 400, "model_config.n_heads"},
      {"MLP with a text key", "POST", "/api/jobs",
       R"({"model_config": {"layer_sizes": [32, 10]}, "dataset_config": {"name": "synthetic", "source": "/usr/share/common-licenses/GPL-3"}})",
       "application/json", 400, "dataset_config.source"},
      {"data root outside", "POST", "/api/jobs", R"({"dataset_config": {"name": "FashionMNIST", "root": "/etc"}})",
       "application/json", 400, "outside the allowed data roots"},
      {"data root escaping with ..", "POST", "/api/jobs",
       R"({"dataset_config": {"name": "FashionMNIST", "root": "/usr/share/datasets/../../../tmp"}})", "application/json",
       400, "outside the allowed data roots"},
      {"MNIST without a root, none in the working directory", "POST", "/api/jobs", R"({"dataset_config": {"name": "MNIST"}})",
       "application/json", 400, "dataset_config.root is not set and [data] MNIST: no directory holds its four IDX files"},
      {"a torchvision name this build cannot read", "POST", "/api/jobs",
       R"({"model_config": {"layer_sizes": [3072, 10]}, "dataset_config": {"name": "CIFAR10"}})", "application/json", 400,
       "dataset_config.name = 'CIFAR10' is not available: this build reads MNIST, FashionMNIST, synthetic, text"},
      {"a torchvision name in YAML", "POST", "/api/jobs", "dataset_config:\n  name: SVHN\n", "application/yaml", 400,
       "dataset_config.name = 'SVHN' is not available"},
      {"a known name in the wrong case: the parser's suggestion", "POST", "/api/jobs",
       R"({"dataset_config": {"name": "mnist"}})", "application/json", 400, "did you mean 'MNIST'"},
      {"body over 1 MiB", "POST", "/api/jobs", big, "application/json", 413, "1 MiB"},
      {"form body over 8 KiB", "POST", "/api/jobs", "{}" + form, "application/x-www-form-urlencoded", 413,
       "Content-Type: application/json"},
      {"nested 100000 deep", "POST", "/api/jobs", deep, "application/json", 400, "nests more than"},
      {"YAML not a map", "POST", "/api/jobs", "just some text\n", "application/yaml", 400, "expected a map"},
      {"unknown job", "GET", "/api/jobs/42", "", "", 404, "no job 42"},
      {"job id not a number", "GET", "/api/jobs/abc", "", "", 404, "abc"},
      {"unknown job metrics", "GET", "/api/jobs/42/metrics", "", "", 404, "no job 42"},
      {"unknown job logs", "GET", "/api/jobs/42/logs", "", "", 404, "no job 42"},
      {"initialize unknown job", "POST", "/api/network/initialize/42", "", "application/json", 404, "no job 42"},
      {"train unknown job", "POST", "/api/network/train/42", "{}", "application/json", 404, "no job 42"},
      {"stop unknown job", "POST", "/api/jobs/42/stop", "", "application/json", 404, "no job 42"},
      {"unknown endpoint", "GET", "/api/nothing", "", "", 404, "no such endpoint"},
  };
  for (const auto& c : cases) {
    const Reply r = c.method == "GET" ? get(s, c.path) : post(s, c.path, c.body, c.type);
    EXPECT_EQ(r.status, c.status) << c.what << ": " << show(r).substr(0, 500);
    EXPECT_NE(error_of(r).find(c.needle), std::string::npos)
        << c.what << ": expected '" << c.needle << "' in the error, got " << show(r).substr(0, 500);
    EXPECT_TRUE(healthy(s)) << "after " << c.what;
  }
  EXPECT_EQ(get(s, "/api/jobs").body["jobs"].size(), 0u) << "no job was created by a bad request";

  // FashionMNIST's default root is allowed (created, not trained here).
  Reply r = post(s, "/api/jobs", kFashionJob);
  EXPECT_EQ(r.status, 201) << show(r);
  // So is the shipped transformer config's text, /usr/share/common-licenses/GPL-3 (its YAML as
  // the body). Its output.dir, runs/gpt-char, is outside the default output root (runs/serve):
  // 400 naming both (resolved); the same body writing inside the root is created.
  std::string gpt_char = read_text(fs::path(TEST_CONFIG_DIR) / "../../configs/gpt_char.yaml");
  r = post(s, "/api/jobs", gpt_char, "application/yaml");
  EXPECT_EQ(r.status, 400) << show(r);
  const fs::path work = fs::canonical(s.work());
  EXPECT_NE(error_of(r).find("output.dir = 'runs/gpt-char' (" + (work / "runs/gpt-char").string() +
                             ") is outside the output root (" + (work / "runs/serve").string() + ")"),
            std::string::npos)
      << show(r);
  const size_t dir_at = gpt_char.find("dir: runs/gpt-char");
  ASSERT_NE(dir_at, std::string::npos) << gpt_char;
  gpt_char.replace(dir_at, 18, "dir: runs/serve/gpt-char");
  r = post(s, "/api/jobs", gpt_char, "application/yaml");
  EXPECT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(get(s, "/api/jobs/" + std::to_string(job_id_of(r))).body["output_dir"], "runs/serve/gpt-char");

  // More stage ranks than layers: initialize refuses with the partition's message.
  r = post(s, "/api/jobs", R"({"model_config":{"layer_sizes":[32,10]},"dataset_config":{"name":"synthetic","synthetic":{"features":32}}})");
  ASSERT_EQ(r.status, 201) << show(r);
  r = curl_post_no_body(s, "/api/network/initialize/" + std::to_string(job_id_of(r)));
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_NE(error_of(r).find("[partition]"), std::string::npos) << show(r);

  // A set-up error at train time (the data directory is allowed but missing): the job fails with
  // the loader's message, the workers go back to waiting, and the next job trains.
  r = post(s, "/api/jobs",
           R"({"model_config":{"layer_sizes":[784,64,10]},"dataset_config":{"name":"FashionMNIST","root":"/usr/share/datasets/arceus-missing"}})");
  ASSERT_EQ(r.status, 201) << show(r);
  const int missing = job_id_of(r);
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/" + std::to_string(missing)).status, 200);
  ASSERT_EQ(post(s, "/api/network/train/" + std::to_string(missing), R"({"epochs": 1})").status, 200);
  const json failed = wait_state(s, missing, {"completed", "failed", "stopped"}, 60);
  EXPECT_EQ(failed["state"], "failed") << failed.dump(2);
  EXPECT_NE(failed["error"].dump().find("arceus-missing"), std::string::npos) << failed.dump(2);
  EXPECT_TRUE(healthy(s));

  // Train requests: before initialize, bad bodies, twice.
  r = post(s, "/api/jobs", kSyntheticJob);
  ASSERT_EQ(r.status, 201) << show(r);
  const std::string id = std::to_string(job_id_of(r));
  r = curl_post_no_body(s, "/api/network/train/" + id);
  EXPECT_EQ(r.status, 409) << show(r);
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/" + id).status, 200);
  const std::vector<std::pair<std::string, std::string>> bad_train = {
      {"{\"epochs\": ", "malformed JSON"},
      {R"({"epochs": "ten"})", "epochs"},
      {R"({"epochs": 0})", "epochs"},
      {R"({"epochs": 1.5})", "epochs"},
      {R"({"learning_rate": -1})", "learning_rate"},
      {R"({"epoch": 3})", "did you mean 'epochs'"},
      {"[2]", "JSON object"},
  };
  for (const auto& [body, needle] : bad_train) {
    r = post(s, "/api/network/train/" + id, body);
    EXPECT_EQ(r.status, 400) << body << ": " << show(r);
    EXPECT_NE(error_of(r).find(needle), std::string::npos) << body << ": " << show(r);
    EXPECT_TRUE(healthy(s));
  }
  EXPECT_EQ(get(s, "/api/jobs/" + id).body["state"], "initialized") << "a refused train request changes nothing";
  r = post(s, "/api/network/train/" + id, R"({"epochs": 1})");
  EXPECT_EQ(r.status, 200) << show(r);
  r = post(s, "/api/network/train/" + id, R"({"epochs": 1})");
  EXPECT_EQ(r.status, 409) << show(r);
  EXPECT_EQ(wait_state(s, std::stoi(id), {"completed", "failed", "stopped"}, 120)["state"], "completed");
  r = post(s, "/api/network/train/" + id, R"({"epochs": 1})");
  EXPECT_EQ(r.status, 409) << show(r);
  r = curl_post_no_body(s, "/api/network/initialize/" + id);
  EXPECT_EQ(r.status, 409) << "initialize after training: " << show(r);
  r = curl_post_no_body(s, "/api/jobs/" + id + "/stop");
  EXPECT_EQ(r.status, 409) << "stop after training: " << show(r);
  EXPECT_TRUE(healthy(s));
  ASSERT_TRUE(s.shutdown());
}

// The original's transformer flow: POST /api/jobs with model_config.type transformer and
// dataset_config.source, then train at once (no initialize); a second job from YAML with an
// explicit initialize; the data-root check on source; a missing text fails the job, not the server.
TEST(Serve, TransformerJobTrainsWithoutInitialize) {
  SKIP_WITHOUT_MPI();
  // An allowed root holding a link out of it: the resolved path is what is checked.
  const fs::path roots = fs::temp_directory_path() / ("arceus-serve-roots-" + std::to_string(getpid()));
  fs::remove_all(roots);
  fs::create_directories(roots);
  fs::create_symlink("/etc/hostname", roots / "escape.txt");
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{roots};

  Server s;
  ASSERT_TRUE(s.start(3, {"--data-root", TEST_CONFIG_DIR, "--data-root", roots.string(), "--output-root", "jobs"}));

  // Sources outside the roots (which --data-root replaced): 400 naming the path and the roots.
  const std::vector<std::pair<std::string, std::string>> outside = {
      {"/usr/share/common-licenses/GPL-3", "'/usr/share/common-licenses/GPL-3' is outside the allowed data roots"},
      {std::string(TEST_CONFIG_DIR) + "/../CMakeLists.txt", "/CMakeLists.txt' ("},
      {(roots / "escape.txt").string(), "(/etc/hostname) is outside"},
  };
  for (const auto& [source, needle] : outside) {
    const Reply r = post(s, "/api/jobs", tiny_gpt_job(source));
    EXPECT_EQ(r.status, 400) << source << ": " << show(r);
    const std::string error = error_of(r);
    EXPECT_NE(error.find("dataset_config.source = '"), std::string::npos) << show(r);
    EXPECT_NE(error.find(needle), std::string::npos) << "expected '" << needle << "': " << show(r);
    EXPECT_NE(error.find(TEST_CONFIG_DIR), std::string::npos) << "the allowed roots are named: " << show(r);
    EXPECT_TRUE(healthy(s)) << "after " << source;
  }
  EXPECT_EQ(get(s, "/api/jobs").body["jobs"].size(), 0u) << "no job was created by a refused source";

  // The original's body (JSON), made tiny; the job's views show the transformer's fields.
  Reply r = post(s, "/api/jobs", tiny_gpt_job(kHelloText));
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(r.body["job_id"], "1");
  r = get(s, "/api/jobs");
  ASSERT_EQ(r.body["jobs"].size(), 1u) << show(r);
  const json expected_model = {{"type", "transformer"}, {"context", 16}, {"n_emb", 32}, {"n_heads", 4},
                               {"n_blocks", 2}, {"dropout", 0.0}};
  EXPECT_EQ(r.body["jobs"][0]["model_config"], expected_model) << show(r);
  EXPECT_EQ(r.body["jobs"][0]["dataset_config"]["source"], kHelloText) << show(r);
  EXPECT_EQ(r.body["jobs"][0]["dataset_config"]["name"], "text") << show(r);
  r = get(s, "/api/jobs/1");
  EXPECT_EQ(r.body["state"], "created");
  EXPECT_EQ(r.body["model_config"], expected_model) << show(r);
  EXPECT_FALSE(r.body["config"]["model_config"].contains("layer_sizes")) << show(r);
  EXPECT_EQ(r.body["config"]["dataset_config"]["windows_per_epoch"], 160) << show(r);
  EXPECT_EQ(r.body["config"]["training"]["lr_schedule"], "cosine") << show(r);
  EXPECT_EQ(r.body["config"]["output"]["sample_tokens"], 20) << show(r);
  EXPECT_TRUE(r.body["plan"].is_null()) << show(r);
  EXPECT_EQ(r.body["output_dir"], "jobs/job-1") << "<--output-root>/job-<id>: " << show(r);

  // Train at once, with the original's empty body: the job's own settings.
  const auto t0 = Clock::now();
  r = post(s, "/api/network/train/1", "{}");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["message"], "Training started");
  EXPECT_EQ(r.body["epochs"], 1);
  json job = wait_state(s, 1, {"completed", "failed", "stopped"}, 180);
  std::printf("[  serve   ] transformer job 1 %s after %.1f s\n", job.value("state", "?").c_str(), seconds_since(t0));
  ASSERT_EQ(job["state"], "completed") << job.dump(2);
  EXPECT_EQ(job["epochs_completed"], 1);
  ASSERT_TRUE(job["final"].is_object()) << job.dump(2);
  EXPECT_GT(job["final"].value("tokens_per_second", 0.0), 0) << job.dump(2);
  const std::string sample = job["final"].value("sample", "");
  EXPECT_EQ(sample.size(), 20u) << job.dump(2);
  EXPECT_EQ(sample.find_first_not_of("hello wrd!"), std::string::npos) << "from the text's vocabulary: " << sample;
  ASSERT_TRUE(job["progress"].is_object()) << job.dump(2);
  EXPECT_EQ(job["progress"]["step"], kTinyGptSteps) << job.dump(2);
  EXPECT_TRUE(job["progress"]["learning_rate"].is_number()) << "what the trainer reports per step: " << job.dump(2);
  ASSERT_TRUE(job["latest_epoch"].is_object()) << job.dump(2);
  EXPECT_GT(job["latest_epoch"].value("tokens_per_second", 0.0), 0) << job.dump(2);
  EXPECT_TRUE(job["latest_epoch"].contains("grad_norm_mean")) << job.dump(2);
  // The plan the train request made (no initialize): 4 layers over ranks 1 and 2, with the
  // parameters the trainer counted once it knew the vocabulary.
  ASSERT_EQ(job["plan"].size(), 2u) << job.dump(2);
  EXPECT_EQ(job["plan"][0]["layers"], json({0, 1})) << job.dump(2);
  EXPECT_EQ(job["plan"][0]["layer_names"], json({"embed", "blocks.0"})) << job.dump(2);
  EXPECT_EQ(job["plan"][1]["layers"], json({2, 3})) << job.dump(2);
  EXPECT_EQ(job["plan"][1]["layer_names"], json({"blocks.1", "head"})) << job.dump(2);
  for (const auto& st : job["plan"]) EXPECT_GT(st["parameters"].get<int64_t>(), 0) << st.dump();

  r = get(s, "/api/jobs/1/metrics");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_EQ(r.body["steps"].size(), size_t(kTinyGptSteps)) << show(r).substr(0, 2000);
  std::vector<double> rates;
  for (const auto& st : r.body["steps"]) rates.push_back(st.value("learning_rate", -1.0));
  // Each step reports its own rate: warm-up 0.003 * (k + 1) / 4 over 4 steps, then cosine
  // decay from 0.003 to 0 at the last step.
  ASSERT_EQ(rates.size(), size_t(kTinyGptSteps));
  for (size_t k = 0; k < 4; ++k) EXPECT_NEAR(rates[k], 0.003 * double(k + 1) / 4, 1e-12) << json(rates).dump();
  EXPECT_NEAR(rates.back(), 0.0, 1e-12) << "cosine ends at min_learning_rate: " << json(rates).dump();
  for (size_t k = 4; k + 1 < rates.size(); ++k) EXPECT_GT(rates[k], rates[k + 1]) << json(rates).dump();
  ASSERT_EQ(r.body["epochs"].size(), 1u);
  EXPECT_EQ(r.body["epochs"][0]["train_tokens"], 160 * 16) << r.body["epochs"][0].dump();
  const json summary = json::parse(read_text(s.work() / "jobs/job-1/summary.json"));
  EXPECT_EQ(summary["state"], "completed");
  ASSERT_EQ(summary["epochs"].size(), 1u);
  EXPECT_GT(summary["epochs"][0].value("tokens_per_second", 0.0), 0) << summary["epochs"][0].dump();
  EXPECT_EQ(summary["epochs"][0].value("sample", ""), sample);

  r = get(s, "/api/jobs/1/logs");
  bool placed_by_train = false;
  for (const auto& l : r.body["lines"])
    placed_by_train |= l.get<std::string>().find("initialized by the train request") != std::string::npos;
  EXPECT_TRUE(placed_by_train) << r.body.dump(2);
  r = get(s, "/api/devices");
  EXPECT_EQ(r.body["devices"][1]["layers"], json({0, 1})) << show(r);
  EXPECT_EQ(r.body["devices"][2]["layers"], json({2, 3})) << show(r);

  // The same job as YAML, initialized first (still allowed), then trained.
  const std::string yaml = "model_config: {type: transformer, context: 16, n_emb: 32, n_heads: 4, n_blocks: 2, dropout: 0}\n"
                           "dataset_config: {source: " + kHelloText + ", windows_per_epoch: 160, batch_size: 16, "
                           "val_batch_size: 16}\ntraining: {epochs: 1, optimizer: adamw, learning_rate: 0.003}\n"
                           "output: {sample_tokens: 20}\n";
  r = post(s, "/api/jobs", yaml, "application/yaml");
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(r.body["job_id"], "2");
  r = curl_post_no_body(s, "/api/network/initialize/2");
  ASSERT_EQ(r.status, 200) << show(r);
  ASSERT_EQ(r.body["stages"].size(), 2u) << show(r);
  EXPECT_EQ(r.body["stages"][1]["layer_names"], json({"blocks.1", "head"})) << show(r);
  EXPECT_TRUE(r.body["stages"][0]["parameters"].is_null()) << "the vocabulary is not known yet: " << show(r);
  r = curl_post_no_body(s, "/api/network/train/2");
  ASSERT_EQ(r.status, 200) << show(r);
  job = wait_state(s, 2, {"completed", "failed", "stopped"}, 180);
  ASSERT_EQ(job["state"], "completed") << job.dump(2);
  EXPECT_EQ(job["body_format"], "yaml");
  EXPECT_EQ(job["final"].value("sample", "").size(), 20u) << job.dump(2);

  // A text that is missing (under an allowed root) fails the job with the loader's message; the
  // server keeps serving.
  const std::string missing = std::string(TEST_CONFIG_DIR) + "/arceus-missing.txt";
  r = post(s, "/api/jobs", tiny_gpt_job(missing));
  ASSERT_EQ(r.status, 201) << show(r);
  const std::string id = std::to_string(job_id_of(r));
  ASSERT_EQ(post(s, "/api/network/train/" + id, "{}").status, 200);
  job = wait_state(s, std::stoi(id), {"completed", "failed", "stopped"}, 60);
  EXPECT_EQ(job["state"], "failed") << job.dump(2);
  EXPECT_NE(job["error"].dump().find("arceus-missing.txt"), std::string::npos) << job.dump(2);
  EXPECT_TRUE(healthy(s));

  // An MLP job still needs initialize.
  r = post(s, "/api/jobs", kSyntheticJob);
  ASSERT_EQ(r.status, 201) << show(r);
  r = post(s, "/api/network/train/" + std::to_string(job_id_of(r)), "{}");
  EXPECT_EQ(r.status, 409) << show(r);
  EXPECT_TRUE(healthy(s));
  ASSERT_TRUE(s.shutdown());
}

// --token (or ARCEUS_TOKEN): every POST needs the bearer token; GETs stay open.
TEST(Serve, TokenIsRequiredOnPost) {
  SKIP_WITHOUT_MPI();
  const int port = free_port();
  ASSERT_GT(port, 0);
  Server s;
  ASSERT_TRUE(s.start(2, {"--port", std::to_string(port), "--token", "s3cret"}));
  ASSERT_EQ(s.port(), port);

  Reply r = post(s, "/api/jobs", kSyntheticJob);
  EXPECT_EQ(r.status, 401) << show(r);
  EXPECT_NE(error_of(r).find("Authorization: Bearer"), std::string::npos) << show(r);
  r = post(s, "/api/jobs", kSyntheticJob, "application/json", "wrong");
  EXPECT_EQ(r.status, 401) << show(r);
  r = curl_post_no_body(s, "/api/network/initialize/1");
  EXPECT_EQ(r.status, 401) << "a body-less POST is checked too: " << show(r);
  r = post(s, "/api/shutdown", "", "application/json");
  EXPECT_EQ(r.status, 401) << show(r);
  EXPECT_TRUE(healthy(s));
  EXPECT_EQ(get(s, "/api/jobs").status, 200) << "GETs need no token";

  r = post(s, "/api/jobs", kSyntheticJob, "application/json", "s3cret");
  EXPECT_EQ(r.status, 201) << show(r);
  ASSERT_TRUE(s.shutdown(60, "s3cret"));

  // The same from the environment.
  Server e;
  ASSERT_TRUE(e.start(2, {}, 90, {{"ARCEUS_TOKEN", "from-env"}}));
  EXPECT_EQ(post(e, "/api/jobs", kSyntheticJob).status, 401);
  EXPECT_EQ(post(e, "/api/jobs", kSyntheticJob, "application/json", "from-env").status, 201);
  ASSERT_TRUE(e.shutdown(60, "from-env"));
}

// POST /api/jobs/<id>/stop: a training job stops after the batches in flight; a queued job
// stops at once; another job still runs afterwards.
TEST(Serve, StopTrainingAndQueuedJobs) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3));
  const int a = create_initialized(s);
  const int b = create_initialized(s);
  const int c = create_initialized(s);
  Reply r = post(s, "/api/network/train/" + std::to_string(a), R"({"epochs": 100000})");
  ASSERT_EQ(r.status, 200) << show(r);
  r = post(s, "/api/network/train/" + std::to_string(b), R"({"epochs": 1})");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["queued_behind"], json({a})) << show(r);
  r = post(s, "/api/network/train/" + std::to_string(c), R"({"epochs": 1})");
  ASSERT_EQ(r.status, 200) << show(r);

  json job = wait_state(s, a, {"training"}, 60);
  const auto t0 = Clock::now();
  while (get(s, "/api/jobs/" + std::to_string(a)).body.value("epochs_completed", 0) < 1 && seconds_since(t0) < 60)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(get(s, "/api/jobs/" + std::to_string(b)).body["state"], "queued");
  r = get(s, "/api/devices");
  for (const auto& d : r.body["devices"]) EXPECT_EQ(d["state"], "training") << show(r);
  r = get(s, "/healthz");
  EXPECT_EQ(r.body["training"], a) << show(r);
  EXPECT_EQ(r.body["queued"], json({b, c})) << show(r);

  r = curl_post_no_body(s, "/api/jobs/" + std::to_string(c) + "/stop");
  EXPECT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(get(s, "/api/jobs/" + std::to_string(c)).body["state"], "stopped");

  r = curl_post_no_body(s, "/api/jobs/" + std::to_string(a) + "/stop");
  EXPECT_EQ(r.status, 202) << show(r);
  const auto s0 = Clock::now();
  job = wait_state(s, a, {"stopped", "completed", "failed"}, 60);
  std::printf("[  serve   ] stopped %.2f s after the request\n", seconds_since(s0));
  EXPECT_EQ(job["state"], "stopped") << job.dump(2);
  EXPECT_LT(job["epochs_completed"].get<int>(), 100000);
  EXPECT_NE(job["error"].get<std::string>().find("stop"), std::string::npos);

  // The queued job runs next; the stopped one never does.
  job = wait_state(s, b, {"completed", "failed", "stopped"}, 120);
  EXPECT_EQ(job["state"], "completed") << job.dump(2);
  EXPECT_EQ(get(s, "/api/jobs/" + std::to_string(c)).body["epochs_completed"], 0);
  EXPECT_EQ(get(s, "/api/previous_teraflops?job=previous").body["job_id"], std::to_string(a));
  ASSERT_TRUE(s.shutdown());
}

// POST /api/shutdown while a job trains: the job stops, every rank exits, mpirun returns 0.
TEST(Serve, ShutdownWhileTraining) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3));
  const int a = create_initialized(s);
  ASSERT_EQ(post(s, "/api/network/train/" + std::to_string(a), R"({"epochs": 100000})").status, 200);
  wait_state(s, a, {"training"}, 60);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(s.shutdown(60));
  const json summary = json::parse(read_text(s.work() / "runs/serve/job-1/summary.json"));
  EXPECT_EQ(summary["state"], "stopped");
}

// SIGTERM to rank 0 (its pid is printed at start) is a clean shutdown too.
TEST(Serve, SigtermOnRankZero) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3));
  ASSERT_GT(s.rank0_pid(), 0);
  const int a = create_initialized(s);
  ASSERT_EQ(post(s, "/api/network/train/" + std::to_string(a), R"({"epochs": 100000})").status, 200);
  wait_state(s, a, {"training"}, 60);
  ASSERT_EQ(kill(s.rank0_pid(), SIGTERM), 0);
  ASSERT_TRUE(s.wait_exit(60, 0));
  EXPECT_NE(s.output().find("shutting down (SIGTERM)"), std::string::npos) << s.describe();
}

// One process, no mpirun world: rank 0 trains alone.
TEST(Serve, SingleRank) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(1));
  const int a = create_initialized(s);
  Reply r = get(s, "/api/jobs/" + std::to_string(a));
  ASSERT_EQ(r.body["plan"].size(), 1u) << show(r);
  EXPECT_EQ(r.body["plan"][0]["rank"], 0);
  ASSERT_EQ(post(s, "/api/network/train/" + std::to_string(a), R"({"epochs": 1})").status, 200);
  EXPECT_EQ(wait_state(s, a, {"completed", "failed", "stopped"}, 120)["state"], "completed");
  r = get(s, "/api/devices");
  ASSERT_EQ(r.body["devices"].size(), 1u);
  EXPECT_EQ(r.body["devices"][0]["role"], "orchestrator+stage");
  ASSERT_TRUE(s.shutdown());

  // A transformer job alone (its text under --data-root), trained without initialize.
  Server t;
  ASSERT_TRUE(t.start(1, {"--data-root", TEST_CONFIG_DIR}));
  r = post(t, "/api/jobs", tiny_gpt_job(kHelloText));
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(post(t, "/api/network/train/1", "{}").status, 200);
  const json job = wait_state(t, 1, {"completed", "failed", "stopped"}, 120);
  ASSERT_EQ(job["state"], "completed") << job.dump(2);
  ASSERT_EQ(job["plan"].size(), 1u) << job.dump(2);
  EXPECT_EQ(job["plan"][0]["layer_names"], json({"embed", "blocks.0", "blocks.1", "head"})) << job.dump(2);
  EXPECT_EQ(job["final"].value("sample", "").size(), 20u) << job.dump(2);
  ASSERT_TRUE(t.shutdown());
}

// A port already in use: rank 0 says so, every rank exits (status 1), nothing hangs.
TEST(Serve, PortInUseEndsEveryRank) {
  SKIP_WITHOUT_MPI();
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  Server s;
  const auto started = s.start(3, {"--port", std::to_string(port)}, 60);
  close(fd);
  EXPECT_FALSE(started) << "the server should not have come up";
  ASSERT_TRUE(s.wait_exit(30, 1));
  EXPECT_NE(s.output().find("cannot listen"), std::string::npos) << s.describe();
}

// The original README's five commands against the real data (1 epoch), when it is installed.
TEST(Serve, FashionMnistOriginalCommands) {
  SKIP_WITHOUT_MPI();
  if (!fs::exists("/usr/share/datasets/fashion-mnist"))
    GTEST_SKIP() << "/usr/share/datasets/fashion-mnist is missing (Debian package dataset-fashion-mnist)";
  Server s;
  ASSERT_TRUE(s.start(4));
  Reply r = post(s, "/api/jobs", kFashionJob);
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(r.body["job_id"], "1");
  r = curl_post_no_body(s, "/api/network/initialize/1");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["stages"].size(), 3u) << "3 layers over ranks 1..3";
  const auto t0 = Clock::now();
  r = post(s, "/api/network/train/1", R"({"epochs": 1, "learning_rate": 0.1})");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["message"], "Training started");
  const json job = wait_state(s, 1, {"completed", "failed", "stopped"}, 300);
  std::printf("[  serve   ] FashionMNIST job %s after %.1f s, val accuracy %s\n", job.value("state", "?").c_str(),
              seconds_since(t0), job["final"].is_object() ? job["final"]["val_accuracy"].dump().c_str() : "-");
  ASSERT_EQ(job["state"], "completed") << job.dump(2);
  EXPECT_GT(job["final"]["val_accuracy"].get<double>(), 0.6);
  r = get(s, "/api/teraflops");
  EXPECT_EQ(r.body["ranks"].size(), 4u) << show(r);
  ASSERT_TRUE(s.shutdown());
}

// The original's fields on a job view (an item of GET /api/jobs, or GET /api/jobs/<id>):
// job_id as a string, status (and state, its alias), devices, and the config sections.
void expect_original_fields(const json& view, int id, const std::string& status, int devices, const std::string& where) {
  EXPECT_EQ(view.value("job_id", json()), std::to_string(id)) << where << ": " << view.dump();
  EXPECT_EQ(view.value("id", json()), id) << where << ": " << view.dump();
  EXPECT_EQ(view.value("status", json()), status) << where << ": " << view.dump();
  EXPECT_EQ(view.value("state", json()), status) << where << ": state is status's alias: " << view.dump();
  EXPECT_EQ(view.value("devices", json()), devices) << where << ": " << view.dump();
  EXPECT_TRUE(view.value("model_config", json()).is_object()) << where << ": " << view.dump();
  EXPECT_TRUE(view.value("dataset_config", json()).is_object()) << where << ": " << view.dump();
}

// Both views of job `id` (its item in the list and its own) carry the original's fields.
json expect_views(const Server& s, int id, const std::string& status, int devices) {
  const Reply list = get(s, "/api/jobs");
  EXPECT_EQ(list.status, 200) << show(list);
  bool listed = false;
  for (const json& item : list.body.value("jobs", json::array())) {
    if (item.value("id", 0) != id) continue;
    listed = true;
    expect_original_fields(item, id, status, devices, "GET /api/jobs item");
  }
  EXPECT_TRUE(listed) << "job " << id << " not in " << show(list);
  const Reply one = get(s, "/api/jobs/" + std::to_string(id));
  EXPECT_EQ(one.status, 200) << show(one);
  expect_original_fields(one.body, id, status, devices, "GET /api/jobs/" + std::to_string(id));
  return one.body;
}

// The seed README's workflow as written, against MNIST where torchvision keeps it (data/MNIST/raw
// under the server's working directory): the exact job body, `curl -X POST` initialize, the
// original's reply messages and fields, its train defaults (10 epochs at 0.1) for a body
// without a training section, and its status values through the lifecycle.
TEST(Serve, SeedReadmeWithMnistInTheWorkingDirectory) {
  SKIP_WITHOUT_MPI();
  if (!fs::exists(kFashionDir))
    GTEST_SKIP() << kFashionDir << " is missing (Debian package dataset-fashion-mnist): no IDX files to stand in for MNIST";
  Server s;
  ASSERT_TRUE(s.start(3));
  const fs::path raw = s.work() / "data" / "MNIST" / "raw";

  // No MNIST anywhere yet: 400 naming every place tried and the four files.
  Reply r = post(s, "/api/jobs", kSeedJob);
  EXPECT_EQ(r.status, 400) << show(r);
  for (const std::string& part : {raw.string() + " (does not exist)", (s.work() / "data" / "MNIST").string() + " (does not exist)",
                                  std::string("/usr/share/datasets/mnist ("), std::string("train-images-idx3-ubyte"),
                                  std::string("train-labels-idx1-ubyte"), std::string("t10k-images-idx3-ubyte"),
                                  std::string("t10k-labels-idx1-ubyte")})
    EXPECT_NE(error_of(r).find(part), std::string::npos) << "'" << part << "' not in " << show(r);
  EXPECT_TRUE(healthy(s));

  // A torchvision name this build has no loader for, in the seed's body.
  std::string cifar = kSeedJob;
  cifar.replace(cifar.find("\"MNIST\""), 7, "\"CIFAR10\"");
  r = post(s, "/api/jobs", cifar);
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_NE(error_of(r).find("'CIFAR10' is not available: this build reads MNIST, FashionMNIST, synthetic, text"),
            std::string::npos) << show(r);
  EXPECT_TRUE(healthy(s));

  fs::create_directories(raw);
  for (const char* name : kIdxFiles) fs::copy_file(fs::path(kFashionDir) / name, raw / name);

  // Step 2 of the seed: POST /api/jobs with its body.
  r = post(s, "/api/jobs", kSeedJob);
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(r.body["message"], "Job created successfully") << show(r);
  EXPECT_EQ(r.body["job_id"], "1") << show(r);
  json job = expect_views(s, 1, "created", 0);  // as the original: 0 devices at creation
  EXPECT_EQ(job["stage_count"], 0) << "not placed yet";
  EXPECT_EQ(job["model_config"]["layer_sizes"], json({784, 128, 64, 10})) << job.dump(2);
  const json& d = job["dataset_config"];
  EXPECT_EQ(d["name"], "MNIST") << d.dump();
  EXPECT_EQ(d["batch_size"], 256) << d.dump();
  EXPECT_EQ(d["val_batch_size"], 1000) << d.dump();
  EXPECT_EQ(d["normalize"], json({{"mean", {0.1307}}, {"std", {0.3081}}})) << d.dump();
  EXPECT_EQ(d["root"], fs::canonical(raw).string()) << "the directory the lookup found: " << d.dump();
  EXPECT_EQ(job["epochs"], 10) << "the original's default: " << job.dump(2);
  EXPECT_DOUBLE_EQ(job["learning_rate"].get<double>(), 0.1) << job.dump(2);

  // Step 4: `curl -X POST .../initialize/1`, no body.
  r = curl_post_no_body(s, "/api/network/initialize/1");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["message"], "Network initialized successfully") << show(r);
  EXPECT_EQ(r.body["job_id"], "1") << show(r);
  EXPECT_EQ(r.body["devices"], 2) << show(r);
  EXPECT_EQ(r.body["stages"].size(), 2u) << "3 layers over ranks 1 and 2: " << show(r);
  expect_views(s, 1, "initialized", 2);

  // Step 5: train with the seed's body, 10 epochs at 0.1 (about 5 s here).
  r = post(s, "/api/network/train/1", kSeedTrain);
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["message"], "Training started") << show(r);
  EXPECT_EQ(r.body["job_id"], "1") << show(r);
  const auto t0 = Clock::now();
  wait_state(s, 1, {"training"}, 60);
  expect_views(s, 1, "training", 2);
  job = wait_state(s, 1, {"completed", "failed", "stopped"}, 120);
  std::printf("[  serve   ] the seed's MNIST job trained 10 epochs in %.1f s\n", seconds_since(t0));
  ASSERT_EQ(job["status"], "completed") << job.dump(2);
  job = expect_views(s, 1, "completed", 2);
  EXPECT_EQ(job["epochs_completed"], 10) << job.dump(2);
  ASSERT_TRUE(job["final"].is_object()) << job.dump(2);
  EXPECT_GT(job["final"]["val_accuracy"].get<double>(), 0.7) << "the Fashion-MNIST stand-in after 10 epochs: " << job["final"].dump();

  // The same body again, trained with an empty body: the original's defaults, 10 epochs at
  // 0.1. Stopped once a step shows what the trainer uses.
  r = post(s, "/api/jobs", kSeedJob);
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(r.body["job_id"], "2") << show(r);
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/2").status, 200);
  r = post(s, "/api/network/train/2", "{}");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["epochs"], 10) << show(r);
  EXPECT_DOUBLE_EQ(r.body["learning_rate"].get<double>(), 0.1) << show(r);
  wait_state(s, 2, {"training"}, 60);
  const auto t1 = Clock::now();
  while (get(s, "/api/jobs/2").body["progress"].is_null() && seconds_since(t1) < 60)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  r = curl_post_no_body(s, "/api/jobs/2/stop");
  EXPECT_EQ(r.status, 202) << show(r);
  EXPECT_EQ(r.body["status"], "training") << show(r);
  job = wait_state(s, 2, {"stopped", "completed", "failed"}, 60);
  EXPECT_EQ(job["status"], "stopped") << job.dump(2);
  job = expect_views(s, 2, "stopped", 2);
  EXPECT_LT(job["epochs_completed"].get<int>(), 10) << job.dump(2);
  ASSERT_TRUE(job["progress"].is_object()) << job.dump(2);
  EXPECT_EQ(job["progress"]["epochs"], 10) << job["progress"].dump();
  EXPECT_EQ(job["progress"]["steps"], 235) << "60000 / 256, rounded up: " << job["progress"].dump();
  EXPECT_DOUBLE_EQ(job["progress"].value("learning_rate", -1.0), 0.1) << job["progress"].dump();
  EXPECT_EQ(job["epochs"], 10) << job.dump(2);
  EXPECT_EQ(job["config"]["training"]["epochs"], 10) << job.dump(2);
  EXPECT_EQ(job["train_request"], json({{"epochs", 10}, {"learning_rate", 0.1}})) << job.dump(2);
  const std::string summary = read_text(s.work() / "runs/serve/job-2/summary.json");
  ASSERT_FALSE(summary.empty());
  const std::string config_yaml = json::parse(summary).value("config", "");
  EXPECT_NE(config_yaml.find("epochs: 10\n"), std::string::npos) << config_yaml;
  EXPECT_NE(config_yaml.find("learning_rate: 0.1\n"), std::string::npos) << config_yaml;
  EXPECT_NE(config_yaml.find(fs::canonical(raw).string()), std::string::npos) << config_yaml;

  // A job with its own training section keeps its own (an empty train body changes nothing).
  r = post(s, "/api/jobs", R"({"model_config":{"layer_sizes":[32,48,10]},"dataset_config":{"name":"synthetic","batch_size":64,)"
                           R"("synthetic":{"train_size":256,"val_size":64,"features":32,"classes":10}},)"
                           R"("training":{"epochs":2,"learning_rate":0.05}})");
  ASSERT_EQ(r.status, 201) << show(r);
  const int own = job_id_of(r);
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/" + std::to_string(own)).status, 200);
  r = post(s, "/api/network/train/" + std::to_string(own), "{}");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["epochs"], 2) << show(r);
  EXPECT_DOUBLE_EQ(r.body["learning_rate"].get<double>(), 0.05) << show(r);
  job = wait_state(s, own, {"completed", "failed", "stopped"}, 60);
  EXPECT_EQ(job["status"], "completed") << job.dump(2);
  EXPECT_EQ(job["epochs_completed"], 2) << job.dump(2);
  // So does one whose training section sets other keys (the config's 5 epochs), and a YAML
  // body (a train config file).
  r = post(s, "/api/jobs", kSyntheticJob);
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(get(s, "/api/jobs/" + std::to_string(job_id_of(r))).body["epochs"], 5) << show(r);
  r = post(s, "/api/jobs", "model_config: {layer_sizes: [32, 10]}\ndataset_config: {name: synthetic, synthetic: {features: 32}}\n",
           "application/yaml");
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(get(s, "/api/jobs/" + std::to_string(job_id_of(r))).body["epochs"], 5) << show(r);
  ASSERT_TRUE(s.shutdown());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Devices that join: `arceus device` (the original's device client) registers with a server
// started without mpirun, connects over MPI (ompi-server rendezvous) and takes a stage.

namespace {

// `arceus device --api-url ... --job-id ...` processes, killed (with their mpirun) at the end.
class Devices {
 public:
  explicit Devices(const Server& s) : s_(s) {}
  ~Devices() {
    for (pid_t p : pids_) {
      kill(-p, SIGKILL);
      waitpid(p, nullptr, 0);
    }
  }
  void start(const std::string& job, const std::vector<std::string>& extra = {}) {
    const fs::path log = s_.work() / ("device" + std::to_string(pids_.size() + 1) + ".log");
    logs_.push_back(log);
    std::vector<std::string> args{arceus_bin(), "device", "--api-url", "http://127.0.0.1:" + std::to_string(s_.port()),
                                  "--job-id", job, "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    pids_.push_back(spawn(args, log, s_.work()));
  }
  // Kills device i (0-based) and everything it started, as a machine that loses power.
  void kill_device(size_t i) { kill(-pids_.at(i), SIGKILL); }
  pid_t pid(size_t i) const { return pids_.at(i); }
  // Waits (bounded) until `n` devices are connected.
  ::testing::AssertionResult wait_connected(size_t n, double timeout = 90) {
    const auto t0 = Clock::now();
    while (seconds_since(t0) < timeout) {
      const Reply r = get(s_, "/api/devices");
      size_t connected = 0;
      if (r.status == 200)
        for (const auto& d : r.body["devices"]) connected += d.value("role", "") == "device" && d.value("connected", false);
      if (connected >= n) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return ::testing::AssertionFailure() << n << " devices did not connect within " << timeout << " s" << describe();
  }
  // Every device process exits within `timeout` (after the server's shutdown), with status 0
  // unless `any_status`.
  ::testing::AssertionResult wait_exit(double timeout = 60, bool any_status = false) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < pids_.size(); ++i) {
      int status = 0;
      while (waitpid(pids_[i], &status, WNOHANG) == 0) {
        if (seconds_since(t0) > timeout) return ::testing::AssertionFailure() << "device " << i + 1 << " still runs" << describe();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      if (!any_status && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        return ::testing::AssertionFailure() << "device " << i + 1 << " exited with status " << status << describe();
      pids_[i] = -pids_[i];  // reaped
    }
    pids_.erase(std::remove_if(pids_.begin(), pids_.end(), [](pid_t p) { return p < 0; }), pids_.end());
    return ::testing::AssertionSuccess();
  }
  std::string describe() const {
    std::string out;
    for (const auto& l : logs_) out += "\n  " + l.string() + ":\n" + read_text(l);
    return out;
  }

 private:
  const Server& s_;
  std::vector<pid_t> pids_;
  std::vector<fs::path> logs_;
};

std::vector<double> step_losses_of(const fs::path& summary) {
  std::vector<double> out;
  const json j = json::parse(read_text(summary), nullptr, false);
  if (!j.is_object()) return out;
  for (const auto& e : j.value("epochs", json::array()))
    for (const auto& l : e.value("step_losses", json::array())) out.push_back(l.get<double>());
  return out;
}

}  // namespace

// The seed README's four steps as written: the server without mpirun, its job body byte for
// byte, two devices started separately, initialize, train. Then a 32-bit job on two more
// devices whose per-step losses equal `mpirun -np 3 arceus train` of the same config.
TEST(Devices, SeedSequenceWithTwoJoiningDevices) {
  SKIP_WITHOUT_MPI();
  if (!fs::exists(kFashionDir)) GTEST_SKIP() << kFashionDir << " is missing: no IDX files to stand in for MNIST";
  if (std::system("command -v ompi-server > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ompi-server (Open MPI's rendezvous)";
  Server s;
  // The working directory is created by start(); the server looks for data/MNIST/raw there
  // only when a job is created, so the files may come after it started.
  ASSERT_TRUE(s.start(0));
  const fs::path raw = s.work() / "data" / "MNIST" / "raw";
  fs::create_directories(raw);
  for (const char* name : kIdxFiles) fs::copy_file(fs::path(kFashionDir) / name, raw / name);

  Reply r = get(s, "/api/devices/connect-info");
  ASSERT_EQ(r.status, 200) << show(r) << s.describe();
  EXPECT_NE(r.body.value("ompi_server", "").find("tcp://127."), std::string::npos) << "loopback only: " << show(r);

  r = post(s, "/api/jobs", kSeedJob);
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(r.body["job_id"], "1");
  Devices devices(s);
  devices.start("1");
  devices.start("1");
  ASSERT_TRUE(devices.wait_connected(2));

  r = curl_post_no_body(s, "/api/network/initialize/1");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["devices"], 2) << show(r);
  ASSERT_EQ(r.body["stages"].size(), 2u) << show(r);
  EXPECT_EQ(r.body["stages"][0]["rank"], 1) << show(r);
  EXPECT_EQ(r.body["stages"][1]["rank"], 2) << show(r);
  r = post(s, "/api/network/train/1", R"({"epochs": 2, "learning_rate": 0.1})");
  ASSERT_EQ(r.status, 200) << show(r);
  json job = wait_state(s, 1, {"completed", "failed", "stopped"}, 180);
  ASSERT_EQ(job["status"], "completed") << job.dump(2) << s.describe() << devices.describe();
  EXPECT_EQ(job["devices"], 2) << job.dump(2);
  EXPECT_EQ(job["epochs_completed"], 2) << job.dump(2);

  // 32 bits, a short epoch: the same losses as mpirun -np 3 train of the job's config.
  std::string body = kSeedJob;
  body.insert(body.rfind('}'), R"(, "communication": {"quantization_bits": 32}, "training": {"epochs": 1, "max_steps": 20, "learning_rate": 0.1})");
  r = post(s, "/api/jobs", body);
  ASSERT_EQ(r.status, 201) << show(r);
  devices.start("2");
  devices.start("2");
  ASSERT_TRUE(devices.wait_connected(4));
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/2").status, 200);
  r = post(s, "/api/network/train/2", "{}");
  ASSERT_EQ(r.status, 200) << show(r);
  job = wait_state(s, 2, {"completed", "failed", "stopped"}, 180);
  ASSERT_EQ(job["status"], "completed") << job.dump(2) << s.describe() << devices.describe();
  const fs::path served = s.work() / "runs" / "serve" / "job-2" / "summary.json";
  const std::vector<double> got = step_losses_of(served);
  ASSERT_EQ(got.size(), 20u) << served;
  const json summary = json::parse(read_text(served));
  const fs::path config = s.work() / "job-2.yaml";
  { std::ofstream(config) << summary["config"].get<std::string>(); }
  const fs::path out = s.work() / "mpirun-np3";
  const fs::path log = s.work() / "mpirun-np3.log";
  const pid_t p = spawn({mpiexec(), "-np", "3", "--allow-run-as-root", "--oversubscribe", arceus_bin(), "train", config.string(),
                         "--quiet", "--threads", "1", "--set", "output.dir=" + out.string()},
                        log, s.work());
  int status = 0;
  waitpid(p, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(log);
  const std::vector<double> want = step_losses_of(out / "summary.json");
  ASSERT_EQ(want.size(), got.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(want[i] - got[i]));
  EXPECT_LE(worst, 1e-5) << "per-step losses of the devices' job vs mpirun -np 3 train";
  std::printf("[  serve   ] 2 devices vs mpirun -np 3 train, 20 steps at 32 bits: max loss difference %g\n", worst);

  ASSERT_TRUE(s.shutdown(60));
  EXPECT_TRUE(devices.wait_exit(60));
}

// Registration errors (the original's fields), each followed by a healthy server; too many
// devices for the layers is an error at initialize naming both counts. A registration alone
// never makes rank 0 wait on MPI (the device announces its connect separately).
TEST(Devices, RegisterErrorsAndTooManyDevices) {
  SKIP_WITHOUT_MPI();
  if (std::system("command -v ompi-server > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ompi-server (Open MPI's rendezvous)";
  Server s;
  ASSERT_TRUE(s.start(0));
  Reply r = post(s, "/api/jobs", R"({"model_config": {"layer_sizes": [16, 12, 10]}, "dataset_config": {"name": "synthetic",
      "synthetic": {"train_size": 256, "val_size": 64, "features": 16, "classes": 10}}})");
  ASSERT_EQ(r.status, 201) << show(r);
  for (const auto& [body, status, phrase] : std::vector<std::tuple<std::string, int, std::string>>{
           {R"({"port": 5001, "job_id": "1"})", 400, "field 'ip' is missing"},
           {R"({"ip": "10.0.0.9", "job_id": "1"})", 400, "field 'port' is missing"},
           {R"({"ip": "10.0.0.9", "port": 5001})", 400, "field 'job_id' is missing"},
           {R"({"ip": "10.0.0.9", "port": [1], "job_id": "1"})", 400, "field 'port' is an array"},
           {R"(not json)", 400, "must be a JSON object"},
           {R"({"ip": "10.0.0.9", "port": 5001, "job_id": "7"})", 404, "no job 7"}}) {
    r = post(s, "/api/devices/register", body);
    EXPECT_EQ(r.status, status) << body << " -> " << show(r);
    EXPECT_NE(error_of(r).find(phrase), std::string::npos) << body << " -> " << show(r);
    EXPECT_TRUE(healthy(s));
  }
  // The original's client body; the same ip:port twice is a conflict.
  r = post(s, "/api/devices/register", R"({"ip": "10.0.0.9", "port": 5001, "job_id": "1"})");
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(r.body["message"], "Device registered successfully") << show(r);
  EXPECT_EQ(r.body["device_id"], 1) << show(r);
  r = post(s, "/api/devices/register", R"({"ip": "10.0.0.9", "port": 5001, "job_id": "1"})");
  EXPECT_EQ(r.status, 409) << show(r);
  EXPECT_TRUE(healthy(s));
  for (int port : {5002, 5003}) {
    r = post(s, "/api/devices/register", R"({"ip": "10.0.0.9", "port": )" + std::to_string(port) + R"(, "job_id": "1"})");
    ASSERT_EQ(r.status, 201) << show(r);
  }
  // 3 devices for 2 layers.
  r = curl_post_no_body(s, "/api/network/initialize/1");
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_NE(error_of(r).find("has 3 device(s) but the model has 2 layers"), std::string::npos) << show(r);
  // Unregister one (by the original's port): 2 devices fit.
  httplib::Client c = s.client();
  auto del = c.Delete("/api/devices/5003");
  ASSERT_TRUE(del) << "no answer";
  EXPECT_EQ(del->status, 200) << del->body;
  EXPECT_EQ(c.Delete("/api/devices/5003")->status, 404);
  r = curl_post_no_body(s, "/api/network/initialize/1");
  EXPECT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(r.body["devices"], 2) << show(r);
  r = get(s, "/api/devices");
  size_t listed = 0;
  for (const auto& d : r.body["devices"]) listed += d.value("role", "") == "device";
  EXPECT_EQ(listed, 3u) << show(r);
  EXPECT_TRUE(healthy(s));
  ASSERT_TRUE(s.shutdown(60));
}

// The steps a job has reported so far (GET /api/jobs/<id>/metrics).
size_t steps_of(const Server& s, int id) {
  const Reply r = get(s, "/api/jobs/" + std::to_string(id) + "/metrics");
  return r.status == 200 && r.body.contains("steps") ? r.body["steps"].size() : 0;
}

// A device SIGKILLed (its whole process group, as a machine that loses power) mid-job on a
// 2-device job with checkpoints: the job is noticed within the heartbeat bound, resumes from its
// last checkpoint on the device left and completes. Its final parameters equal, tensor for
// tensor, those of `mpirun -np 2 arceus train` resumed from the same checkpoint (32 bits, the
// same one-stage partition). Then a new job on a newly joined device completes on the same
// server, with no restart, and every process ends at the shutdown.
TEST(Devices, KilledDeviceJobResumesOnTheDeviceLeft) {
  SKIP_WITHOUT_MPI();
  if (std::system("command -v ompi-server > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ompi-server (Open MPI's rendezvous)";
  Server s;
  ASSERT_TRUE(s.start(0, {"--heartbeat-timeout", "3"}));
  Reply r = post(s, "/api/jobs", R"({"model_config": {"layer_sizes": [64, 384, 384, 10]}, "dataset_config": {"name": "synthetic",
      "batch_size": 64, "synthetic": {"train_size": 16384, "val_size": 256, "features": 64, "classes": 10}},
      "communication": {"quantization_bits": 32}, "output": {"checkpoint_every_steps": 40},
      "training": {"epochs": 12, "learning_rate": 0.05}})");
  ASSERT_EQ(r.status, 201) << show(r);
  Devices devices(s);
  devices.start("1");
  devices.start("1");
  ASSERT_TRUE(devices.wait_connected(2));
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/1").status, 200);
  ASSERT_EQ(post(s, "/api/network/train/1", "{}").status, 200);
  const auto wait0 = Clock::now();
  size_t steps = 0;
  while ((steps = steps_of(s, 1)) < 300 && seconds_since(wait0) < 120) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_GE(steps, 300u) << get(s, "/api/jobs/1").body.dump(2) << s.describe() << devices.describe();
  ASSERT_EQ(get(s, "/api/jobs/1").body["state"], "training");
  devices.kill_device(1);
  const auto t0 = Clock::now();
  json job;
  while (seconds_since(t0) < 60) {
    job = get(s, "/api/jobs/1").body;
    if (!job["device_losses"].empty() && job["state"] == "training") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double resumed_after = seconds_since(t0);
  ASSERT_EQ(job["device_losses"].size(), 1u) << job.dump(2) << s.describe();
  job = wait_state(s, 1, {"completed", "failed", "stopped"}, 240);
  ASSERT_EQ(job["status"], "completed") << job.dump(2) << s.describe() << devices.describe();
  const json loss = job["device_losses"][0];
  std::printf("[  serve   ] device 2 killed at step %s: training again %.1f s later, from step %s (%s steps redone)\n",
              loss["step"].dump().c_str(), resumed_after, loss["resumed_from_step"].dump().c_str(),
              loss["steps_redone"].dump().c_str());
  // The killed agent registered with its pid as the original's "port".
  r = get(s, "/api/devices");
  int killed = 0;
  for (const auto& d : r.body["devices"])
    if (d.value("port", json()).dump() == "\"" + std::to_string(devices.pid(1)) + "\"") killed = d["device_id"];
  EXPECT_EQ(loss["device_id"], killed) << loss << show(r);
  EXPECT_LT(resumed_after, 10) << "noticed and resumed within 10 s";
  EXPECT_GT(loss["resumed_from_step"].get<int64_t>(), 0) << "a checkpoint every 40 steps: " << loss;
  EXPECT_LE(loss["resumed_from_step"].get<int64_t>(), loss["step"].get<int64_t>()) << loss;
  EXPECT_LT(loss["steps_redone"].get<int64_t>(), 40 + 10) << "at most a checkpoint interval (and the steps in flight): " << loss;
  EXPECT_EQ(get(s, "/healthz").body["status"], "ok");
  const fs::path dir = s.work() / "runs" / "serve" / "job-1";
  const json summary = json::parse(read_text(dir / "summary.json"));
  EXPECT_EQ(summary["device_losses"].size(), 1u) << "summary.json records the loss";
  for (const auto& d : r.body["devices"])
    if (d.value("device_id", 0) == killed) EXPECT_EQ(d["state"], "gone") << show(r);

  // The same resume, by hand: mpirun -np 2 train from the checkpoint the job resumed from.
  const fs::path config = s.work() / "job-1.yaml";
  { std::ofstream(config) << summary["config"].get<std::string>(); }
  const fs::path out = s.work() / "by-hand";
  const fs::path log = s.work() / "by-hand.log";
  const pid_t p = spawn({mpiexec(), "-np", "2", "--allow-run-as-root", "--oversubscribe", arceus_bin(), "train", config.string(),
                         "--quiet", "--threads", "1", "--resume", loss["checkpoint"].get<std::string>(), "--set",
                         "output.dir=" + out.string(), "--set", "resume=false"},
                        log, s.work());
  int status = 0;
  waitpid(p, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_text(log);
  const arceus::CheckpointData served = arceus::read_checkpoint((dir / "checkpoint.h5").string());
  const arceus::CheckpointData by_hand = arceus::read_checkpoint((out / "checkpoint.h5").string());
  ASSERT_EQ(served.parameters.size(), by_hand.parameters.size());
  size_t differing = 0;
  for (size_t i = 0; i < served.parameters.size(); ++i) {
    EXPECT_EQ(served.parameters[i].name, by_hand.parameters[i].name);
    differing += served.parameters[i].data != by_hand.parameters[i].data;
  }
  EXPECT_EQ(differing, 0u) << "tensors that differ from the resume by hand, of " << served.parameters.size();

  // A new job on a newly joined device, on the same server.
  r = post(s, "/api/jobs", R"({"model_config": {"layer_sizes": [64, 10]}, "dataset_config": {"name": "synthetic",
      "synthetic": {"train_size": 256, "val_size": 64, "features": 64, "classes": 10}}, "training": {"epochs": 1}})");
  ASSERT_EQ(r.status, 201) << show(r);
  devices.start("2");
  ASSERT_TRUE(devices.wait_connected(2));  // device 1 (idle, its job over) and the new one
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/2").status, 200);
  ASSERT_EQ(post(s, "/api/network/train/2", "{}").status, 200);
  job = wait_state(s, 2, {"completed", "failed", "stopped"}, 120);
  EXPECT_EQ(job["status"], "completed") << job.dump(2) << s.describe() << devices.describe();
  ASSERT_TRUE(s.shutdown(60));
  EXPECT_TRUE(devices.wait_exit(60, /*any_status=*/true));
}

// Devices leave between jobs: one with --once exits 0 after its job; an idle one exits 0 when
// DELETE unregisters it; the one left, registered again by its ip and port, runs the next job.
TEST(Devices, DevicesLeaveBetweenJobs) {
  SKIP_WITHOUT_MPI();
  if (std::system("command -v ompi-server > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ompi-server (Open MPI's rendezvous)";
  Server s;
  ASSERT_TRUE(s.start(0));
  const std::string job = R"({"model_config": {"layer_sizes": [16, 12, 12, 10]}, "dataset_config": {"name": "synthetic",
      "synthetic": {"train_size": 256, "val_size": 64, "features": 16, "classes": 10}}, "training": {"epochs": 1}})";
  ASSERT_EQ(post(s, "/api/jobs", job).status, 201);
  Devices once(s), stays(s), next(s);
  once.start("1", {"--once"});
  ASSERT_TRUE(once.wait_connected(1));
  stays.start("1");
  ASSERT_TRUE(stays.wait_connected(2));
  next.start("1");
  ASSERT_TRUE(next.wait_connected(3));
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/1").status, 200);
  ASSERT_EQ(post(s, "/api/network/train/1", "{}").status, 200);
  json j = wait_state(s, 1, {"completed", "failed", "stopped"}, 120);
  ASSERT_EQ(j["status"], "completed") << j.dump(2) << s.describe() << once.describe();
  EXPECT_TRUE(once.wait_exit(30)) << "--once: exit 0 after the job";

  httplib::Client c = s.client();
  const auto del = c.Delete(("/api/devices/" + std::to_string(stays.pid(0))).c_str());
  ASSERT_TRUE(del && del->status == 200) << (del ? del->body : "no answer");
  EXPECT_TRUE(stays.wait_exit(30)) << "DELETE of an idle device: exit 0";

  ASSERT_EQ(post(s, "/api/jobs", job).status, 201);
  Reply r = post(s, "/api/devices/register",
                 json{{"ip", get(s, "/api/devices").body["devices"].back()["ip"]}, {"port", next.pid(0)}, {"job_id", "2"}}.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/2").status, 200);
  ASSERT_EQ(post(s, "/api/network/train/2", "{}").status, 200);
  j = wait_state(s, 2, {"completed", "failed", "stopped"}, 120);
  EXPECT_EQ(j["status"], "completed") << j.dump(2) << s.describe() << next.describe();
  r = get(s, "/api/devices");
  std::vector<std::string> states;
  for (const auto& d : r.body["devices"])
    if (d.value("role", "") == "device") states.push_back(d["state"]);
  EXPECT_EQ(states, (std::vector<std::string>{"left", "left", "idle"})) << show(r);
  ASSERT_TRUE(s.shutdown(60));
  EXPECT_TRUE(next.wait_exit(30)) << "told to leave at the shutdown: exit 0";
}

// The state of device `port` (its agent's pid) in GET /api/devices ("" when not listed).
std::string device_state(const Server& s, pid_t port) {
  const Reply r = get(s, "/api/devices");
  for (const auto& d : r.body.value("devices", json::array()))
    if (d.value("port", json()) == json(std::to_string(port))) return d.value("state", "");
  return "";
}

// Waits (bounded) until device `port` is in `state`.
::testing::AssertionResult device_reaches(const Server& s, pid_t port, const std::string& state, double timeout) {
  const auto t0 = Clock::now();
  std::string now;
  while (seconds_since(t0) < timeout) {
    if ((now = device_state(s, port)) == state) return ::testing::AssertionSuccess();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ::testing::AssertionFailure() << "device " << port << " is '" << now << "', not " << state << " after " << timeout << " s";
}

// Nothing hangs: a device SIGKILLed (its process group) at each phase of a job's life ends in a
// bounded time with the documented state. While joining: the server stays healthy. After
// initialize, before train: the job trains on the device left. Between jobs (idle): the device
// is gone. (Mid-training: Devices.KilledDeviceJobResumesOnTheDeviceLeft.)
TEST(Devices, KillAtEachPhaseEndsInABoundedTime) {
  SKIP_WITHOUT_MPI();
  if (std::system("command -v ompi-server > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ompi-server (Open MPI's rendezvous)";
  Server s;
  ASSERT_TRUE(s.start(0, {"--heartbeat-timeout", "3"}));
  const std::string job = R"({"model_config": {"layer_sizes": [16, 12, 12, 10]}, "dataset_config": {"name": "synthetic",
      "synthetic": {"train_size": 512, "val_size": 64, "features": 16, "classes": 10}}, "training": {"epochs": 2}})";
  ASSERT_EQ(post(s, "/api/jobs", job).status, 201);

  // Joining: killed right after it started (before or while it registers).
  Devices joining(s);
  joining.start("1");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  joining.kill_device(0);
  const std::string st = device_state(s, joining.pid(0));
  if (!st.empty()) EXPECT_TRUE(device_reaches(s, joining.pid(0), "gone", 15)) << "registered, then silent";
  EXPECT_EQ(get(s, "/healthz").body["status"], "ok");

  // After initialize, before train: the job is placed on two devices, one dies; training runs
  // on the one left (the lost device is noticed by the runner, or as idle and silent before).
  Devices pair(s);
  pair.start("1");
  ASSERT_TRUE(pair.wait_connected(1));
  pair.start("1");
  ASSERT_TRUE(pair.wait_connected(2));
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/1").status, 200);
  pair.kill_device(1);
  const auto t0 = Clock::now();
  ASSERT_EQ(post(s, "/api/network/train/1", "{}").status, 200);
  json j = wait_state(s, 1, {"completed", "failed", "stopped"}, 120);
  EXPECT_EQ(j["status"], "completed") << j.dump(2) << s.describe();
  std::printf("[  serve   ] a device killed after initialize: the job completed %.1f s after the train request\n",
              seconds_since(t0));
  EXPECT_TRUE(device_reaches(s, pair.pid(1), "gone", 15));

  // Between jobs: the device left is idle, killed: gone within the heartbeat bound.
  ASSERT_TRUE(device_reaches(s, pair.pid(0), "idle", 15));
  pair.kill_device(0);
  const auto t1 = Clock::now();
  EXPECT_TRUE(device_reaches(s, pair.pid(0), "gone", 15));
  std::printf("[  serve   ] an idle device killed: gone after %.1f s\n", seconds_since(t1));
  EXPECT_EQ(get(s, "/healthz").body["status"], "ok");
  ASSERT_TRUE(s.shutdown(60));
}

// The world rank of an `arceus serve` process (from its environment), -1 if none.
int world_rank_of(pid_t pid) {
  const std::string env = read_text("/proc/" + std::to_string(pid) + "/environ");
  const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
  const size_t at = env.find(key);
  return at == std::string::npos ? -1 : std::atoi(env.c_str() + at + key.size());
}

// A world rank killed under `arceus run -- mpirun -np 3 arceus serve`: the server comes back on
// its port, lists its jobs (jobs.json), and the interrupted job resumes from its checkpoint
// and completes.
TEST(Serve, RunRestartsTheServerWithItsJobs) {
  SKIP_WITHOUT_MPI();
  Server s;
  const int port = free_port();
  s.under({arceus_bin(), "run", "--max-restarts", "2", "--pause", "1", "--"});
  ASSERT_TRUE(s.start(3, {"--port", std::to_string(port)}));
  Reply r = post(s, "/api/jobs", R"({"model_config": {"layer_sizes": [16, 12, 10]}, "dataset_config": {"name": "synthetic",
      "synthetic": {"train_size": 256, "val_size": 64, "features": 16, "classes": 10}}, "training": {"epochs": 1}})");
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/1").status, 200);
  ASSERT_EQ(post(s, "/api/network/train/1", "{}").status, 200);
  ASSERT_EQ(wait_state(s, 1, {"completed", "failed", "stopped"}, 120)["status"], "completed");
  r = post(s, "/api/jobs", R"({"model_config": {"layer_sizes": [64, 384, 384, 10]}, "dataset_config": {"name": "synthetic",
      "batch_size": 64, "synthetic": {"train_size": 16384, "val_size": 256, "features": 64, "classes": 10}},
      "output": {"checkpoint_every_steps": 40}, "training": {"epochs": 12}})");
  ASSERT_EQ(r.status, 201) << show(r);
  ASSERT_EQ(curl_post_no_body(s, "/api/network/initialize/2").status, 200);
  ASSERT_EQ(post(s, "/api/network/train/2", "{}").status, 200);
  const auto t0 = Clock::now();
  while (steps_of(s, 2) < 200 && seconds_since(t0) < 120) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_GE(steps_of(s, 2), 200u);
  // Kill world rank 2 (a stage of the job): mpirun ends the world, arceus run starts it again.
  pid_t victim = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    if (read_text(entry.path() / "cmdline").find("serve") == std::string::npos) continue;
    if (world_rank_of(pid) == 2 && read_text(entry.path() / "cmdline").find(arceus_bin()) != std::string::npos) victim = pid;
  }
  ASSERT_GT(victim, 0) << "no world rank 2 of arceus serve found";
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  const auto killed = Clock::now();
  // The server comes back (the same port) and lists both jobs; job 2 completes.
  json job;
  bool back = false;
  while (seconds_since(killed) < 180) {
    const Reply list = get(s, "/api/jobs");
    if (list.status == 200 && list.body["jobs"].size() == 2) {
      back = true;
      job = get(s, "/api/jobs/2").body;
      if (job.value("status", "") == "completed" || job.value("status", "") == "failed") break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(back) << "the server did not come back with its 2 jobs" << s.describe();
  ASSERT_EQ(job["status"], "completed") << job.dump(2) << s.describe();
  EXPECT_EQ(get(s, "/api/jobs/1").body["status"], "completed") << "job 1 as it ended";
  EXPECT_EQ(job["restored"], 1) << job.dump(2);
  const Reply logs = get(s, "/api/jobs/2/logs");
  EXPECT_NE(logs.body.dump().find("restored after a server restart"), std::string::npos) << show(logs);
  EXPECT_NE(logs.body.dump().find("resumed from"), std::string::npos) << "the trainer resumed from the checkpoint: " << show(logs);
  std::printf("[  serve   ] world rank 2 killed: job 2 completed %.1f s later on the restarted server\n", seconds_since(killed));
  EXPECT_NE(read_text(s.work() / "serve.log").find("[run] rank 2"), std::string::npos) << s.describe();
  ASSERT_TRUE(s.shutdown(60));
}

// With --token, a device must give it: without it the registration is refused (401) and the
// device exits with the error, never taking a stage; with it, the device joins.
TEST(Devices, TokenIsRequiredToJoin) {
  SKIP_WITHOUT_MPI();
  if (std::system("command -v ompi-server > /dev/null 2>&1") != 0) GTEST_SKIP() << "no ompi-server (Open MPI's rendezvous)";
  Server s;
  ASSERT_TRUE(s.start(0, {"--token", "s3cret"}));
  Reply r = post(s, "/api/jobs", R"({"model_config": {"layer_sizes": [16, 12, 10]}, "dataset_config": {"name": "synthetic",
      "synthetic": {"train_size": 256, "val_size": 64, "features": 16, "classes": 10}}})", "application/json", "s3cret");
  ASSERT_EQ(r.status, 201) << show(r);
  Devices devices(s);
  devices.start("1");  // no token
  EXPECT_TRUE(devices.wait_exit(60, /*any_status=*/true));
  EXPECT_NE(devices.describe().find("401"), std::string::npos) << devices.describe();
  r = get(s, "/api/devices");
  for (const auto& d : r.body["devices"]) EXPECT_NE(d.value("role", ""), "device") << show(r);
  Devices with_token(s);
  with_token.start("1", {"--token", "s3cret"});
  EXPECT_TRUE(with_token.wait_connected(1));
  ASSERT_TRUE(s.shutdown(60, "s3cret"));
  EXPECT_TRUE(with_token.wait_exit(60));
}

// ---------------------------------------------------------------------------------------
// The dashboard: its files, server-sent events, and the trained model answering.

namespace {

// stdout of a command (no shell: arguments quoted for popen's sh).
std::string output_of(const std::vector<std::string>& args) {
  std::string cmd;
  for (const auto& a : args) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    cmd += q + "' ";
  }
  cmd += "2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

// One event of a text/event-stream body.
struct Event {
  std::string kind;
  json data;
};
std::vector<Event> parse_events(const std::string& stream) {
  std::vector<Event> out;
  size_t pos = 0;
  while (true) {
    const size_t end = stream.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string frame = stream.substr(pos, end - pos);
    pos = end + 2;
    Event e;
    std::istringstream lines(frame);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("event: ", 0) == 0) e.kind = line.substr(7);
      if (line.rfind("data: ", 0) == 0) e.data = json::parse(line.substr(6));
    }
    if (!e.kind.empty()) out.push_back(e);  // ": ping" comments have no event
  }
  return out;
}

// GET path as a stream until the server ends it (bounded by the read timeout).
std::string read_stream(const Server& s, const std::string& path, int* status) {
  httplib::Client c("127.0.0.1", s.port());
  c.set_read_timeout(60, 0);
  std::string body;
  auto r = c.Get(path, [&](const char* data, size_t n) {
    body.append(data, n);
    return true;
  });
  *status = r ? r->status : -1;
  return body;
}

}  // namespace

TEST(Dashboard, PageFilesAndPresets) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(1, {"--data-root", TEST_CONFIG_DIR}));
  auto page = s.client().Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(page->body.find("id=\"app\""), std::string::npos) << page->body;
  EXPECT_NE(page->body.find("/dashboard/app.js"), std::string::npos) << page->body;
  EXPECT_EQ(page->body.find("http"), std::string::npos) << "the page names no outside address: " << page->body;
  const fs::path source = fs::path(TEST_CONFIG_DIR) / "../../launcher/dashboard";
  // every module and the style sheet (app.js imports the others)
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(source))
    if (e.path().extension() == ".js" || e.path().extension() == ".css") files.push_back(e.path().filename().string());
  EXPECT_GE(files.size(), 2u) << source;
  for (const std::string& f : files) {
    auto r = s.client().Get("/dashboard/" + f);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << f;
    EXPECT_EQ(r->body, read_text(source / f)) << f << " is served as it is in the repository";
    if (fs::path(f).extension() == ".js")  // a module script of another type does not run
      EXPECT_NE(r->get_header_value("Content-Type").find("text/javascript"), std::string::npos) << f;
  }
  Reply r = get(s, "/dashboard/missing.js");
  EXPECT_EQ(r.status, 404) << show(r);
  EXPECT_NE(error_of(r).find("missing.js"), std::string::npos) << show(r);

  r = get(s, "/api/presets");
  ASSERT_EQ(r.status, 200) << show(r);
  std::set<std::string> names;
  for (const json& p : r.body["presets"]) {
    const std::string name = p["name"].get<std::string>();
    names.insert(name);
    // The shipped config, its output.dir moved inside the output root (runs/serve by default).
    const std::string shipped = read_text(fs::path(TEST_CONFIG_DIR) / "../../configs" / name);
    const std::string want = std::regex_replace(shipped, std::regex(R"((\n\s+dir:\s*)runs/)"), "$1runs/serve/");
    EXPECT_NE(want, shipped) << name << " has no output.dir under runs/";
    EXPECT_EQ(p["yaml"].get<std::string>(), want) << name;
    // As it stands, a preset is a job the server creates (or refuses for its data, never for
    // where it writes).
    const Reply created = post(s, "/api/jobs", p["yaml"].get<std::string>(), "application/yaml");
    EXPECT_EQ(error_of(created).find("output root"), std::string::npos) << name << ": " << show(created);
    if (name == "synthetic_mlp.yaml") EXPECT_EQ(created.status, 201) << show(created);
  }
  EXPECT_EQ(names, (std::set<std::string>{"fashion_mnist_mlp.yaml", "fashion_mnist_wide.yaml", "gpt_char.yaml",
                                          "synthetic_mlp.yaml"}));
}

// A client that connects mid-job gets the job's state, then every remaining step in order
// (each equal to GET .../metrics' step of that index), epochs and log lines, and the stream
// ends after the final state. A client connecting afterwards with ?since=0 gets every step.
TEST(Dashboard, EventsFromMidJobArriveInOrder) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3));
  // About 600 steps: seconds of training, so that the stream opens while it runs.
  const std::string job =
      R"({"model_config":{"layer_sizes":[256,256,256,10]},"dataset_config":{"name":"synthetic","batch_size":32,)"
      R"("synthetic":{"train_size":6400,"val_size":256,"features":256,"classes":10}},"training":{"epochs":3,"micro_batches":2}})";
  const int id = create_initialized(s, job);
  const std::string base = "/api/jobs/" + std::to_string(id);
  Reply r = get(s, base + "/events?since=x");
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_NE(error_of(r).find("since"), std::string::npos) << show(r);
  ASSERT_EQ(post(s, "/api/network/train/" + std::to_string(id), "{}").status, 200);
  const auto t0 = Clock::now();
  while (seconds_since(t0) < 60 && get(s, base + "/metrics").body.value("steps", json::array()).size() < 3)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));

  int status = 0;
  const std::vector<Event> events = parse_events(read_stream(s, base + "/events", &status));
  EXPECT_EQ(status, 200);
  const json metrics = get(s, base + "/metrics").body;
  const json& steps = metrics["steps"];
  ASSERT_EQ(metrics["state"], "completed") << metrics.dump().substr(0, 400);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().kind, "state");
  EXPECT_EQ(events.front().data["state"], "training");
  EXPECT_EQ(events.back().kind, "state");
  EXPECT_EQ(events.back().data["state"], "completed");
  std::vector<size_t> indices;
  int epochs = 0, logs = 0;
  for (const Event& e : events) {
    if (e.kind == "step") {
      const size_t i = e.data["index"].get<size_t>();
      indices.push_back(i);
      ASSERT_LT(i, steps.size());
      json expected = steps[i];
      expected["index"] = i;
      EXPECT_EQ(e.data, expected) << "step " << i;
    }
    epochs += e.kind == "epoch";
    logs += e.kind == "log";
    EXPECT_NE(e.kind, "dropped") << "a reading client loses nothing";
  }
  ASSERT_FALSE(indices.empty()) << "the stream opened after the job's last step";
  EXPECT_GT(indices.front(), 0u) << "connected mid-job: no replay without ?since";
  for (size_t k = 0; k < indices.size(); ++k) ASSERT_EQ(indices[k], indices.front() + k) << "in order, none missing";
  EXPECT_EQ(indices.back(), steps.size() - 1);
  EXPECT_GE(epochs, 1);
  EXPECT_GE(logs, 3) << "epoch lines, checkpoints, the final line";
  std::printf("[  serve   ] events: connected at step %zu of %zu, %zu step events, %d epochs, %d log lines\n",
              indices.front(), steps.size(), indices.size(), epochs, logs);

  // After the end: the whole history with ?since=0, then the stream ends at once.
  const std::vector<Event> again = parse_events(read_stream(s, base + "/events?since=0", &status));
  size_t replayed = 0;
  for (const Event& e : again) replayed += e.kind == "step";
  EXPECT_EQ(replayed, steps.size());
  ASSERT_FALSE(again.empty());
  EXPECT_EQ(again.front().data["state"], "completed");
}

// predict and generate answer from the job's latest checkpoint exactly as `arceus predict` and
// `arceus generate` do on that file; bad inputs get 400 naming the field; none before a checkpoint.
TEST(Dashboard, PredictAndGenerateMatchTheCommandLine) {
  SKIP_WITHOUT_MPI();
  Server s;
  ASSERT_TRUE(s.start(3, {"--data-root", TEST_CONFIG_DIR}));
  const int id = create_initialized(s);  // 32 features, 10 classes
  const std::string base = "/api/jobs/" + std::to_string(id);
  json input = json::array();
  for (int i = 0; i < 32; ++i) input.push_back(std::sin(0.37 * i) * 1.5);
  const json body = {{"pixels", input}};

  Reply r = post(s, base + "/predict", body.dump());
  EXPECT_EQ(r.status, 409) << "no checkpoint before training: " << show(r);
  EXPECT_NE(error_of(r).find("checkpoint"), std::string::npos) << show(r);

  ASSERT_EQ(post(s, "/api/network/train/" + std::to_string(id), R"({"epochs": 2})").status, 200);
  wait_state(s, id, {"completed", "failed"}, 120);
  r = post(s, base + "/predict", body.dump());
  ASSERT_EQ(r.status, 200) << show(r);
  const json probabilities = r.body["probabilities"];
  ASSERT_EQ(probabilities.size(), 10u) << show(r);
  double sum = 0;
  for (const json& p : probabilities) sum += p.get<double>();
  EXPECT_NEAR(sum, 1.0, 1e-9);
  EXPECT_EQ(r.body["checkpoint"]["epoch"], 2) << show(r);

  const fs::path checkpoint = s.work() / "runs/serve/job-1/checkpoint.h5";
  const std::string cli = output_of({arceus_bin(), "predict", "--checkpoint", checkpoint.string(), "--pixels", body.dump()});
  json answer;
  ASSERT_NO_THROW(answer = json::parse(cli)) << cli;
  EXPECT_EQ(answer["probabilities"], probabilities) << "REST and `arceus predict` on the same checkpoint";
  EXPECT_EQ(answer["class"], r.body["class"]);

  // Bad inputs: 400 naming the field.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"pixels": [1, 2, 3]})", "3 values, but the model takes 32"},
      {R"({"pixels": [[1, 2], [3]]})", "pixels[1]"},
      {R"({"pixels": "abc"})", "pixels: expected"},
      {R"({"image": [1]})", "unknown key 'image'"},
      {R"({"pixels": [1e300, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]})",
       "pixels[0]"},
      {"[1, 2]", "JSON object"},
      {"{", "malformed JSON"},
  };
  for (const auto& [text, needle] : bad) {
    r = post(s, base + "/predict", text);
    EXPECT_EQ(r.status, 400) << text << " -> " << show(r);
    EXPECT_NE(error_of(r).find(needle), std::string::npos) << text << " -> " << show(r);
  }
  r = post(s, base + "/generate", R"({"prompt": "a"})");
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_NE(error_of(r).find("/predict"), std::string::npos) << show(r);

  // A transformer job: generate equals `arceus generate` with the same seed and temperature.
  r = post(s, "/api/jobs", tiny_gpt_job(kHelloText));
  ASSERT_EQ(r.status, 201) << show(r);
  const int gpt = job_id_of(r);
  ASSERT_EQ(post(s, "/api/network/train/" + std::to_string(gpt), "{}").status, 200);
  wait_state(s, gpt, {"completed", "failed"}, 120);
  const std::string gbase = "/api/jobs/" + std::to_string(gpt);
  r = post(s, gbase + "/generate", R"({"prompt": "hel", "tokens": 30, "temperature": 0.7, "seed": 5})");
  ASSERT_EQ(r.status, 200) << show(r);
  const std::string text = r.body["text"].get<std::string>();
  const fs::path gck = s.work() / ("runs/serve/job-" + std::to_string(gpt)) / "checkpoint.h5";
  const std::string cli_text = output_of({arceus_bin(), "generate", "--checkpoint", gck.string(), "--prompt", "hel",
                                          "--tokens", "30", "--temperature", "0.7", "--seed", "5"});
  EXPECT_EQ(cli_text, "hel" + text + "\n") << "REST and `arceus generate` on the same checkpoint";
  const std::vector<std::pair<std::string, std::string>> bad_gen = {
      {R"({"tokens": 0})", "tokens = 0"},
      {R"({"tokens": 100000})", "tokens = 100000"},
      {R"({"temperature": -1})", "temperature = -1"},
      {R"({"prompt": 5})", "prompt: expected a string"},
      {R"({"prompt": "zzz\u00e9"})", "prompt"},
      {R"({"seed": -3})", "seed = -3"},
  };
  for (const auto& [t, needle] : bad_gen) {
    r = post(s, gbase + "/generate", t);
    EXPECT_EQ(r.status, 400) << t << " -> " << show(r);
    EXPECT_NE(error_of(r).find(needle), std::string::npos) << t << " -> " << show(r);
  }
  r = post(s, gbase + "/predict", body.dump());
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_NE(error_of(r).find("/generate"), std::string::npos) << show(r);
}
