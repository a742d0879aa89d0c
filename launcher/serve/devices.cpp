// The ranks and devices of the shim (see devices.h).
#include "launcher/serve/devices.h"

namespace arceus::serve {

const char* to_string(DeviceState s) {
  switch (s) {
    case DeviceState::Idle: return "idle";
    case DeviceState::Training: return "training";
    case DeviceState::Gone: return "gone";
    case DeviceState::Left: return "left";
  }
  return "?";
}

std::vector<int> Devices::of_job(int job) const {
  std::vector<int> ids;
  for (const auto& d : devices_)
    if (d.job == job && is_live(d.state)) ids.push_back(d.id);
  return ids;
}

std::vector<int> Devices::stage_ranks(int job) const {
  std::vector<int> ranks;
  const size_t devices = of_job(job).size();
  const int last = devices ? static_cast<int>(devices) : world_ - 1;
  for (int r = 1; r <= last; ++r) ranks.push_back(r);
  return ranks;
}

std::string Devices::host_of(int rank, int job) const {
  const std::vector<int> ids = job ? of_job(job) : std::vector<int>{};
  if (!ids.empty() && rank >= 1 && static_cast<size_t>(rank) <= ids.size()) {
    for (const auto& d : devices_)
      if (d.id == ids[size_t(rank - 1)]) return d.ip;
  }
  if (rank >= 0 && static_cast<size_t>(rank) < hosts_.size()) return hosts_[size_t(rank)];
  return "?";
}

std::string Devices::name(const Device& d) { return "device " + std::to_string(d.id) + " (" + d.ip + ":" + d.port + ")"; }

Device* Devices::find(int id) {
  for (auto& d : devices_)
    if (d.id == id) return &d;
  return nullptr;
}

const Device& Devices::add(const std::string& ip, const std::string& port, int job) {
  Device d;
  d.id = next_id_++;
  d.ip = ip;
  d.port = port;
  d.job = job;
  d.state = DeviceState::Idle;
  devices_.push_back(d);
  return devices_.back();
}

void Devices::remove(int id) {
  for (auto it = devices_.begin(); it != devices_.end(); ++it) {
    if (it->id != id) continue;
    devices_.erase(it);
    if (id == next_id_ - 1) --next_id_;
    return;
  }
}

Device* Devices::by_port(const std::string& port) {
  for (auto& d : devices_)
    if (d.port == port && is_live(d.state)) return &d;
  return nullptr;
}

std::vector<int> Devices::expire_idle(double seconds) {
  std::vector<int> gone;
  const auto now = std::chrono::steady_clock::now();
  for (auto& d : devices_) {
    if (d.state != DeviceState::Idle || !d.heard) continue;
    const double silent = std::chrono::duration<double>(now - d.last_seen).count();
    if (silent <= seconds) continue;
    d.state = DeviceState::Gone;
    d.why = "no heartbeat for " + std::to_string(static_cast<int>(silent)) + " s while idle";
    gone.push_back(d.id);
  }
  return gone;
}

nlohmann::json Devices::heartbeat(Device& d, bool worker_running, int worker_exit) {
  d.last_seen = std::chrono::steady_clock::now();
  d.heard = true;
  d.worker_running = worker_running;
  if (worker_exit >= 0) d.worker_exit = worker_exit;
  nlohmann::json answer = {{"device_id", d.id}, {"job_id", d.job}, {"state", to_string(d.state)}};
  if (!is_live(d.state)) {
    answer["action"] = "leave";
    answer["why"] = d.why;
  } else if (d.abort) {
    if (!worker_running) d.abort = false;  // done: its process has ended
    answer["action"] = worker_running ? "abort" : "wait";
  } else if (!d.connect_port.empty() && !worker_running) {
    answer["action"] = "connect";
    answer["mpi_port"] = d.connect_port;
  } else {
    answer["action"] = "wait";
  }
  return answer;
}

}  // namespace arceus::serve
