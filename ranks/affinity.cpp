#include "ranks/affinity.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
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

bool read_numbers(const std::filesystem::path& file, std::string& first, std::string& second) {
  std::ifstream in(file);
  if (!in) return false;
  in >> first >> second;
  return !first.empty();
}

// Where a cgroup hierarchy is mounted: v1 with the `cpu` controller (type cgroup, option
// "cpu"), or v2 (type cgroup2).
std::string cgroup_mount(bool v2) {
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, dir, type, opts, rest;
  while (mounts >> dev >> dir >> type >> opts && std::getline(mounts, rest)) {
    if (v2 && type == "cgroup2") return dir;
    if (!v2 && type == "cgroup") {
      std::stringstream o(opts);
      for (std::string opt; std::getline(o, opt, ',');)
        if (opt == "cpu") return dir;
    }
  }
  return {};
}

// The lowest quota / period along `leaf` up to `root` (files named by the hierarchy version).
double lowest_quota(const std::filesystem::path& root, std::filesystem::path leaf, bool v2) {
  double lowest = 0;
  while (true) {
    std::string a, b;
    if (v2) {
      if (read_numbers(leaf / "cpu.max", a, b) && a != "max" && !b.empty()) {
        const double q = std::atof(a.c_str()) / std::max(1.0, std::atof(b.c_str()));
        if (q > 0 && (lowest == 0 || q < lowest)) lowest = q;
      }
    } else {
      std::string period, unused;
      if (read_numbers(leaf / "cpu.cfs_quota_us", a, unused) && read_numbers(leaf / "cpu.cfs_period_us", period, unused)) {
        const double quota = std::atof(a.c_str());
        const double q = quota / std::max(1.0, std::atof(period.c_str()));
        if (quota > 0 && (lowest == 0 || q < lowest)) lowest = q;
      }
    }
    if (leaf == root || !leaf.has_parent_path() || leaf.parent_path() == leaf) break;
    leaf = leaf.parent_path();
    if (leaf.string().size() < root.string().size()) break;
  }
  return lowest;
}

}  // namespace

double cpu_quota_cores() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    // "ID:controllers:path"; v2's line is "0::path".
    const auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    bool cpu = false;
    std::stringstream c(controllers);
    for (std::string name; std::getline(c, name, ',');) cpu = cpu || name == "cpu";
    const bool v2 = controllers.empty();
    if (!cpu && !v2) continue;
    const std::string mount = cgroup_mount(v2);
    if (mount.empty()) continue;
    const double q = lowest_quota(mount, std::filesystem::path(mount + path).lexically_normal(), v2);
    if (q > 0) return q;
  }
  return 0;
}

int usable_cores() {
  int cores = static_cast<int>(allowed_cpus().size());
  const double quota = cpu_quota_cores();
  if (quota > 0) cores = std::min(cores, std::max(1, static_cast<int>(std::ceil(quota - 1e-9))));
  return cores;
}

void note_cpu_share(RankStats& stats, int threads) {
  stats.threads = threads;
  stats.cpus = static_cast<int32_t>(allowed_cpus().size());
  stats.cpu_quota = cpu_quota_cores();
}

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
  const int cores = usable_cores();
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
