#include "launcher/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "common/atomic_file.h"
#include "common/errors.h"
#include "common/utc.h"
#include "config/config.h"
#include "storage/storage.h"

namespace arceus {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::atomic<int> g_signal{0};
std::atomic<pid_t> g_child{0};

void forward_signal(int sig) {
  g_signal = sig;
  const pid_t child = g_child.load();
  if (child > 0) ::kill(-child, sig);  // the command's process group: mpirun and what it started
}

// "^error: \[(config|data|...)\]": a set-up error as the launcher prints it, for the categories
// whose errors a restart cannot mend (common/errors.h).
std::string set_up_error_pattern() {
  std::string tags;
  for (const ErrorCategory& c : error_categories()) {
    if (c.set_up) tags += (tags.empty() ? "" : "|") + std::string(c.tag);
  }
  return "^error: \\[(" + tags + ")\\]";
}

// Where the job writes: `train CONFIG [--set K=V]...` in the command.
struct JobFiles {
  std::string config;
  std::vector<Override> overrides;
  std::string output_dir;
};

JobFiles job_files(const std::vector<std::string>& command) {
  JobFiles out;
  for (size_t i = 0; i < command.size(); ++i) {
    const std::string& a = command[i];
    if (a == "train" && out.config.empty() && i + 1 < command.size()) {
      out.config = command[++i];
    } else if (a == "--set" && i + 1 < command.size()) {
      out.overrides.push_back(parse_override(command[++i]));
    } else if (a.rfind("--set=", 0) == 0) {
      out.overrides.push_back(parse_override(a.substr(6)));
    }
  }
  if (out.config.empty()) {
    throw ConfigError("[run] the command has no 'train CONFIG': arceus run supervises a training job, e.g. "
                      "arceus run --max-restarts 2 -- mpirun -np 3 build/arceus train configs/fashion_mnist_mlp.yaml");
  }
  out.output_dir = load_config_file(out.config, out.overrides).output.dir;
  return out;
}

// How one attempt ended.
struct Attempt {
  int status = 0;          // exit code (128 + signal when it died of one)
  bool setup_error = false;  // a config/data/... error before training: not retried
  std::string failed_rank, failed_host, reason;
};

// Runs the command in its own process group; echoes its output and reads the failure out of it.
Attempt run_once(const std::vector<std::string>& command, const std::string& progress_file) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error(std::string("[run] pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("[run] fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(pipefd[1], STDOUT_FILENO);
    ::dup2(pipefd[1], STDERR_FILENO);
    ::setenv("ARCEUS_PROGRESS_FILE", progress_file.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "[run] cannot run '%s': %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  g_child = pid;
  ::close(pipefd[1]);

  Attempt a;
  const std::regex ompi(R"(process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+))");
  const std::regex own(R"(^\[rank (\d+) on (\S+)\] error: (.*))");
  const std::regex setup(set_up_error_pattern());
  std::string pending;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof(buf))) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    std::fwrite(buf, 1, static_cast<size_t>(n), stdout);
    std::fflush(stdout);
    pending.append(buf, static_cast<size_t>(n));
    size_t eol;
    while ((eol = pending.find('\n')) != std::string::npos) {
      const std::string line = pending.substr(0, eol);
      pending.erase(0, eol + 1);
      std::smatch m;
      if (std::regex_search(line, m, ompi)) {
        if (a.failed_rank.empty()) {
          a.failed_rank = m[1];
          a.failed_host = m[2];
          a.reason = "signal " + m[3].str();
        }
      } else if (std::regex_search(line, m, own)) {
        if (a.failed_rank.empty()) {
          a.failed_rank = m[1];
          a.failed_host = m[2];
          a.reason = m[3];
        }
      } else if (std::regex_search(line, m, setup)) {
        a.setup_error = true;
        if (a.reason.empty()) a.reason = line.substr(7);
      }
    }
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  a.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (WIFSIGNALED(status) && a.reason.empty()) a.reason = "the command died of signal " + std::to_string(WTERMSIG(status));
  if (a.status == 2 && a.reason.empty()) a.reason = "usage error (exit 2)";
  return a;
}

// (epoch, step within it, steps per epoch) of the progress file; nullopt when absent.
struct Position {
  int64_t epoch = 0, step = 0, steps = 0;
};
std::optional<Position> read_progress(const std::string& path) {
  std::ifstream in(path);
  Position p;
  if (!(in >> p.epoch >> p.step >> p.steps)) return std::nullopt;
  return p;
}

// Steps from the start of training to a position (epoch 1-based, step completed in it).
int64_t global(const Position& p) { return (p.epoch - 1) * p.steps + p.step; }

std::string where(int64_t epoch, int64_t step) {
  return "epoch " + std::to_string(epoch) + " step " + std::to_string(step);
}

// Adds `--resume PATH` (or replaces the value of one already there).
std::vector<std::string> with_resume(std::vector<std::string> command, const std::string& checkpoint) {
  for (size_t i = 0; i + 1 < command.size(); ++i) {
    if (command[i] == "--resume") {
      command[i + 1] = checkpoint;
      return command;
    }
  }
  command.push_back("--resume");
  command.push_back(checkpoint);
  return command;
}

// Adds the restarts to summary.json (write_atomically); a failure is printed, not thrown.
void record_restarts(const std::string& dir, const json& restarts, int64_t redone) {
  const fs::path path = fs::path(dir) / "summary.json";
  std::ifstream in(path);
  if (!in) return;
  json summary = json::parse(in, nullptr, false);
  if (!summary.is_object()) return;
  summary["restarts"] = restarts;
  summary["steps_redone"] = redone;
  try {
    write_atomically(path.string(), summary.dump(2) + "\n");
  } catch (const FileError& e) {
    std::fprintf(stderr, "[run] warning: the restarts are not recorded: %s\n", e.what());
  }
}

// `arceus run -- mpirun ... arceus serve ...`: the server is started again after a failure (a
// world rank that died ends the world); it restores its job table itself (serve/persist.h) and
// resumes the job it was running from that job's last checkpoint.
bool is_server(const std::vector<std::string>& command) {
  bool serve = false;
  for (const auto& a : command) {
    if (a == "train") return false;
    serve = serve || a == "serve";
  }
  return serve;
}

int supervise_server(const SuperviseOptions& options) {
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  for (int attempt = 0;; ++attempt) {
    std::printf("[run] server attempt %d of %d\n", attempt + 1, options.max_restarts + 1);
    std::fflush(stdout);
    const Attempt a = run_once(options.command, "/dev/null");
    if (a.status == 0) {
      std::printf("[run] the server exited 0 after %d restart%s\n", attempt, attempt == 1 ? "" : "s");
      return 0;
    }
    const std::string who = a.failed_rank.empty() ? std::string("the server")
                                                  : "rank " + a.failed_rank + " on " + a.failed_host;
    if (g_signal) {
      std::printf("[run] stopped by signal %d (exit status %d): not restarted\n", g_signal.load(), a.status);
      return a.status;
    }
    if (a.setup_error || a.status == 2) {
      std::printf("[run] %s failed at start (%s): not retried, it would fail the same way\n", who.c_str(), a.reason.c_str());
      return 1;
    }
    std::printf("[run] %s failed (exit status %d%s); ", who.c_str(), a.status, a.reason.empty() ? "" : (", " + a.reason).c_str());
    if (attempt >= options.max_restarts) {
      std::printf("no restart left (--max-restarts %d)\n", options.max_restarts);
      return a.status;
    }
    std::printf("restarting in %.0f s: it restores its job table and resumes the job it was running\n", options.pause);
    std::fflush(stdout);
    for (double t = 0; t < options.pause && !g_signal; t += 0.1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (g_signal) return a.status;
  }
}

}  // namespace

int run_supervised(const SuperviseOptions& options) {
  if (options.command.empty()) {
    std::fprintf(stderr, "error: [run] no command: arceus run [--max-restarts N] -- mpirun -np 3 build/arceus train CONFIG\n");
    return 2;
  }
  if (is_server(options.command)) return supervise_server(options);
  JobFiles files;
  try {
    files = job_files(options.command);
  } catch (const ConfigError& e) {
    if (std::string(e.what()).rfind("[run]", 0) == 0) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 2;
    }
    // The job cannot read its config either: one try shows the user the job's own message.
    std::printf("[run] the job's config is invalid (%s): running it once, without restarts\n", e.what());
    std::fflush(stdout);
    const Attempt a = run_once(options.command, "/dev/null");
    std::printf("[run] exit status %d: not retried, a config error would fail the same way\n", a.status);
    return a.status == 0 ? 0 : 1;
  }
  const std::string checkpoint = (fs::path(files.output_dir) / "checkpoint.h5").string();
  const std::string progress = (fs::path(files.output_dir) / ".progress").string();
  std::error_code ec;
  fs::create_directories(files.output_dir, ec);

  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  json restarts = json::array();
  int64_t redone = 0;
  std::vector<std::string> command = options.command;
  for (int attempt = 0;; ++attempt) {
    fs::remove(progress, ec);
    std::printf("[run] attempt %d of %d: %s\n", attempt + 1, options.max_restarts + 1, [&] {
      std::string s;
      for (const auto& a : command) s += (s.empty() ? "" : " ") + a;
      return s;
    }().c_str());
    std::fflush(stdout);
    const Attempt a = run_once(command, progress);
    if (a.status == 0) {
      if (!restarts.empty()) record_restarts(files.output_dir, restarts, redone);
      std::printf("[run] completed after %d restart%s (%lld step%s redone)\n", attempt, attempt == 1 ? "" : "s",
                  (long long)redone, redone == 1 ? "" : "s");
      fs::remove(progress, ec);
      return 0;
    }
    const std::string who = a.failed_rank.empty() ? std::string("the command")
                                                  : "rank " + a.failed_rank + " on " + a.failed_host;
    if (g_signal) {
      std::printf("[run] stopped by signal %d (exit status %d): not restarted\n", g_signal.load(), a.status);
      return a.status;
    }
    if (a.setup_error || a.status == 2) {
      std::printf("[run] %s failed before training (%s): not retried, it would fail the same way\n", who.c_str(),
                  a.reason.c_str());
      return 1;
    }
    const std::optional<Position> reached = read_progress(progress);
    std::optional<CheckpointData> ck;
    if (fs::exists(checkpoint)) {
      try {
        ck = read_checkpoint(checkpoint);
      } catch (const std::exception& e) {
        std::printf("[run] %s is unreadable (%s): restarting from the beginning\n", checkpoint.c_str(), e.what());
      }
    }
    json entry = {{"attempt", attempt + 1},
                  {"exit_status", a.status},
                  {"failed_rank", a.failed_rank.empty() ? json(nullptr) : json(std::stoi(a.failed_rank))},
                  {"failed_host", a.failed_host.empty() ? json(nullptr) : json(a.failed_host)},
                  {"reason", a.reason},
                  {"at", utc_now()},
                  {"reached", reached ? json({{"epoch", reached->epoch}, {"step", reached->step}}) : json(nullptr)},
                  {"resumed_from", ck ? json({{"epoch", ck->epoch}, {"step", ck->step}}) : json(nullptr)}};
    int64_t lost = 0;
    if (reached) {
      // The checkpoint's epoch counts completed epochs and its step the completed steps of the next.
      lost = global(*reached) - (ck ? ck->epoch * reached->steps + ck->step : 0);
      if (lost < 0) lost = 0;
    }
    entry["steps_redone"] = lost;
    std::printf("[run] %s failed (exit status %d%s) at %s; ", who.c_str(), a.status,
                a.reason.empty() ? "" : (", " + a.reason).c_str(),
                reached ? where(reached->epoch, reached->step).c_str() : "an unknown step (before the first step)");
    if (attempt >= options.max_restarts) {
      std::printf("no restart left (--max-restarts %d)\n", options.max_restarts);
      restarts.push_back(entry);
      record_restarts(files.output_dir, restarts, redone);
      return a.status == 0 ? 1 : a.status;
    }
    if (ck) {
      std::printf("restarting in %.0f s from %s (%s, %lld step%s to redo)\n", options.pause, checkpoint.c_str(),
                  where(ck->epoch + (ck->step > 0 ? 1 : 0), ck->step).c_str(), (long long)lost, lost == 1 ? "" : "s");
      command = with_resume(options.command, checkpoint);
    } else {
      std::printf("no checkpoint yet: restarting from the beginning in %.0f s\n", options.pause);
      command = options.command;
    }
    std::fflush(stdout);
    restarts.push_back(entry);
    redone += lost;
    for (double t = 0; t < options.pause && !g_signal; t += 0.1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (g_signal) return a.status;
  }
}

}  // namespace arceus
