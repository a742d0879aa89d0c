// What the end-to-end suites (test_e2e.cpp, test_serve.cpp) share: where the binaries under
// test are, starting `mpirun ...` in its own process group with its output in a log file, and
// following every process of such a run through /proc so that none is left behind.
//
// Header-only; Linux only (/proc). The binaries come from CMake (ARCEUS_BIN, MPIEXEC) and may
// be overridden with the environment variables ARCEUS_E2E_BIN and ARCEUS_E2E_MPIEXEC.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "files.h"  // read_text

#ifndef ARCEUS_BIN
#define ARCEUS_BIN ""
#endif
#ifndef MPIEXEC
#define MPIEXEC ""
#endif

namespace arceus::test {

// ---------------------------------------------------------------------------------------
// Configuration and files.

// The variable's value, or `fallback` when it is unset or empty.
inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

inline std::string arceus_bin() { return env_or("ARCEUS_E2E_BIN", ARCEUS_BIN); }
inline std::string mpiexec() { return env_or("ARCEUS_E2E_MPIEXEC", MPIEXEC); }

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------
// Starting a run.

// Starts `args` (args[0] is a path, not looked up in PATH) in a process group of its own, so
// that a kill of the group reaches nothing else, with stdout and stderr going to `log` and
// stdin from /dev/null; in `cwd` when it is given, with `env` added to the environment.
// Returns the pid (also the process group id), or -1 with errno set when fork failed.
inline pid_t spawn(std::vector<std::string> args, const std::filesystem::path& log,
                   const std::filesystem::path& cwd = {},
                   const std::vector<std::pair<std::string, std::string>>& env = {}) {
  std::vector<char*> argv;  // built before fork
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  if (pid != 0) {
    if (pid > 0) setpgid(pid, pid);  // also from the parent: no window before the child's call
    return pid;
  }
  setpgid(0, 0);
  if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
  for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int null = open("/dev/null", O_RDONLY);
  if (fd >= 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
  }
  if (null >= 0) dup2(null, STDIN_FILENO);
  execv(argv[0], argv.data());
  std::fprintf(stderr, "cannot execute %s: %s\n", argv[0], std::strerror(errno));
  _exit(127);
}

// ---------------------------------------------------------------------------------------
// Following the processes of a run (/proc).

// Processes by pid with their start time (clock ticks since boot): a pid alone may have been
// reused by the time it is looked at again.
using Processes = std::map<pid_t, unsigned long long>;

struct ProcStat {
  pid_t ppid = 0;
  char state = '?';
  unsigned long long start = 0;  // start time in clock ticks since boot
};

inline bool read_stat(pid_t pid, ProcStat* out) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(f, s)) return false;
  const size_t rp = s.rfind(')');  // the command name may contain spaces and parentheses
  if (rp == std::string::npos || rp + 2 > s.size()) return false;
  std::istringstream is(s.substr(rp + 2));
  std::string skip;
  is >> out->state >> out->ppid;
  for (int i = 5; i <= 21; ++i) is >> skip;  // pgrp .. itrealvalue
  is >> out->start;
  return static_cast<bool>(is);
}

// Every live descendant of `root`.
inline Processes descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  std::map<pid_t, ProcStat> info;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const pid_t pid = static_cast<pid_t>(std::atol(name.c_str()));
    ProcStat p;
    if (!read_stat(pid, &p)) continue;
    info[pid] = p;
    children.emplace(p.ppid, pid);
  }
  Processes out;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto range = children.equal_range(p);
    for (auto it = range.first; it != range.second; ++it) {
      if (out.emplace(it->second, info[it->second].start).second) todo.push_back(it->second);
    }
  }
  return out;
}

// Is this exact process (pid and start time) still running (not a zombie)?
inline bool still_running(pid_t pid, unsigned long long start) {
  ProcStat p;
  return read_stat(pid, &p) && p.start == start && p.state != 'Z' && p.state != 'X';
}

// The processes of `seen` still running after up to `grace` seconds (checked every 100 ms;
// checked once when `grace` is 0).
inline std::vector<pid_t> survivors(const Processes& seen, double grace) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<pid_t> left;
  do {
    left.clear();
    for (const auto& [p, start] : seen)
      if (still_running(p, start)) left.push_back(p);
    if (left.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (seconds_since(t0) < grace);
  return left;
}

// SIGKILL to every process of `seen` still running (a rank may have left mpirun's process
// group, so killing the group is not enough).
inline void kill_running(const Processes& seen) {
  for (const auto& [p, start] : seen)
    if (still_running(p, start)) kill(p, SIGKILL);
}

}  // namespace arceus::test
