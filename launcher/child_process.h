// A command run in a process group of its own, for the MPI jobs that arceus serve and arceus
// device throw away when a peer dies (a job runner, a device's MPI process): killing the group
// ends its mpirun and everything it started.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace arceus {

struct ChildProcess {
  pid_t pid = -1;  // also the process group
  int out = -1;    // the read end of its stdout (and stderr) when captured, else -1
};

// Starts `args` (args[0] looked up in PATH) in a new process group that is SIGKILLed when this
// process ends (PR_SET_PDEATHSIG: also when it is killed), with `env` set and every
// OMPI_* / PMIX_* variable of this process removed (a child mpirun must not take itself for a
// rank of this process's job). `capture`: its stdout and stderr go to a pipe (ChildProcess.out),
// else they are this process's. Throws when fork fails; a command that cannot run exits 127.
ChildProcess spawn_group(const std::vector<std::string>& args, const std::vector<std::pair<std::string, std::string>>& env,
                         bool capture);

// SIGKILL to the process group.
void kill_group(pid_t pgid);

// Waits up to `seconds` for `pid` to end; true (and its status, as waitpid gives it) if it did.
bool wait_for(pid_t pid, double seconds, int* status = nullptr);

// A waitpid status as an exit code: the code, or 128 + the signal.
int exit_code_of(int status);

// This executable (/proc/self/exe), else `argv0`.
std::string self_executable(const char* argv0);

}  // namespace arceus
