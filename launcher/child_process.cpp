#include "launcher/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace arceus {

ChildProcess spawn_group(const std::vector<std::string>& args, const std::vector<std::pair<std::string, std::string>>& env,
                         bool capture) {
  int fds[2] = {-1, -1};
  if (capture && ::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  // Everything the child needs is prepared before fork (the parent has threads).
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    const std::string v = *e;
    if (v.rfind("OMPI_", 0) == 0 || v.rfind("PMIX_", 0) == 0) continue;
    bool replaced = false;
    for (const auto& [key, value] : env) replaced |= v.rfind(key + "=", 0) == 0;
    if (!replaced) envs.push_back(v);
  }
  for (const auto& [key, value] : env) envs.push_back(key + "=" + value);
  std::vector<char*> cenv, cargs;
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  std::vector<std::string> argv = args;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // this process's end (even by SIGKILL) ends the child
    if (::getppid() != parent) ::_exit(127);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (capture) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::dup2(fds[1], STDERR_FILENO);
    }
    ::execvpe(cargs[0], cargs.data(), cenv.data());
    std::fprintf(stderr, "error: cannot run %s: %s\n", cargs[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ChildProcess c;
  c.pid = pid;
  if (capture) {
    ::close(fds[1]);
    c.out = fds[0];
  }
  return c;
}

void kill_group(pid_t pgid) {
  if (pgid > 0) ::kill(-pgid, SIGKILL);
}

bool wait_for(pid_t pid, double seconds, int* status) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int st = 0;
  while (true) {
    const pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) {
      if (status) *status = st;
      return true;
    }
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string self_executable(const char* argv0) {
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  return n > 0 ? std::string(self, size_t(n)) : std::string(argv0);
}

}  // namespace arceus
