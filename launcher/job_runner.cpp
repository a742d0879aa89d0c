#include "launcher/job_runner.h"

#include <sys/prctl.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "common/errors.h"
#include "config/config.h"
#include "ranks/mpi_transport.h"

namespace arceus {

namespace {

using json = nlohmann::json;

FILE* g_events = nullptr;  // <spec>/events.jsonl

void emit(const json& event) {
  const std::string line = event.dump() + "\n";
  std::fwrite(line.data(), 1, line.size(), g_events);
  std::fflush(g_events);
}

class LineObserver : public JobObserver {
 public:
  explicit LineObserver(std::string stop_file) : stop_file_(std::move(stop_file)) {}
  void on_log(const std::string& line) override { emit({{"kind", "log"}, {"line", line}}); }
  void on_step(const json& step) override { emit({{"kind", "step"}, {"data", step}}); }
  void on_epoch(const json& epoch) override { emit({{"kind", "epoch"}, {"data", epoch}}); }
  bool stop_requested() override {
    struct stat st {};
    return ::stat(stop_file_.c_str(), &st) == 0;
  }

 private:
  std::string stop_file_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("[job-runner] cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int run_job_runner(MpiTransport& world, const std::string& spec_dir, TrainOptions train) {
  if (world.size() != 1) {
    std::fprintf(stderr, "error: [job-runner] runs as one process (it was started with %d ranks)\n", world.size());
    return 1;
  }
  // A device that dies closes its sockets: a write to them must be an MPI error (its wait
  // bound, or the shim's kill), never SIGPIPE ending the runner before it can say which.
  std::signal(SIGPIPE, SIG_IGN);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // its mpirun (killed with its group by the shim) takes it along
  g_events = std::fopen((spec_dir + "/events.jsonl").c_str(), "a");
  if (!g_events) {
    std::fprintf(stderr, "error: [job-runner] cannot write %s/events.jsonl\n", spec_dir.c_str());
    return 1;
  }
  json result = {{"kind", "result"}, {"state", "failed"}, {"error", ""}, {"peer", -1}, {"summary", nullptr}};
  // Every world the job's devices grow (the last is the job's); freed (disconnected) in
  // reverse order at the end of a clean job.
  std::vector<std::unique_ptr<MpiTransport>> worlds;
  try {
    const json run = json::parse(read_file(spec_dir + "/run.json"));
    const Config config = parse_config(read_file(spec_dir + "/config.yaml"));
    const int devices = run.at("devices").get<int>();
    const double wait_limit = run.value("wait_limit", 120.0);
    train.threads = run.value("threads", train.threads);
    train.quiet = true;
    train.progress = "none";
    const std::string port = MpiTransport::open_port();
    emit({{"kind", "port"}, {"port", port}});
    Transport* current = &world;
    for (int k = 1; k <= devices; ++k) {
      emit({{"kind", "accepting"}, {"device", k}});
      if (k > 1) broadcast_accept(*current, port);  // the devices already in take part in the accept
      worlds.push_back(static_cast<MpiTransport*>(current)->accept(port));
      worlds.back()->set_wait_limit(wait_limit);
      current = worlds.back().get();
      emit({{"kind", "joined"}, {"device", k}});
    }
    MpiTransport::close_port(port);
    LineObserver observer(spec_dir + "/stop");
    const JobResult r = run_job(*current, config, train, &observer);
    result["state"] = to_string(r.state);
    result["error"] = r.error;
    result["summary"] = r.summary;
    emit(result);
    shutdown_workers(*current);
  } catch (const std::exception& e) {
    result["error"] = e.what();
    if (const auto t = find_error<TransportError>(e)) result["peer"] = t->peer();
    emit(result);
    // The job's world may hold a dead or stuck peer: never touch it again (the shim ends this
    // process group).
    for (auto& w : worlds) w.release();
    return 1;
  }
  while (!worlds.empty()) worlds.pop_back();  // disconnect, the last world first
  return 0;
}

}  // namespace arceus
