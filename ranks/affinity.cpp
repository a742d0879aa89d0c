#include "ranks/affinity.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

namespace arceus {

namespace {

// Pins every thread of this process (OpenBLAS's pool exists already) to `cpus`.
void pin_process(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    const pid_t tid = static_cast<pid_t>(std::stol(entry.path().filename().string()));
    sched_setaffinity(tid, sizeof set, &set);
  }
}

}  // namespace

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  if (cpus.empty()) {
    for (int c = 0; c < static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); ++c) cpus.push_back(c);
  }
  return cpus;
}

int choose_threads(const std::string& threads, const Transport& transport, const std::vector<int>& stage_ranks) {
  if (threads != "auto") return std::max(1, std::atoi(threads.c_str()));
  const std::vector<int> cpus = allowed_cpus();
  const int cores = static_cast<int>(cpus.size());
  if (transport.in_process() || transport.size() == 1) return cores;
  const int rank = transport.rank();
  auto is_stage = [&](int r) { return std::find(stage_ranks.begin(), stage_ranks.end(), r) != stage_ranks.end(); };
  if (!is_stage(rank)) return 1;
  int compute_here = 0, index = 0;
  for (int r : transport.node_ranks()) {
    if (!is_stage(r)) continue;
    if (r < rank) ++index;
    ++compute_here;
  }
  const int share = cores / std::max(1, compute_here);
  if (share >= 1 && compute_here > 1) {
    pin_process(std::vector<int>(cpus.begin() + index * share, cpus.begin() + (index + 1) * share));
  }
  return std::max(1, share);
}

}  // namespace arceus
