// The ranks and devices of the shim (see devices.h).
#include "launcher/serve/devices.h"

#include <algorithm>
#include <cstdio>

namespace arceus::serve {

const char* to_string(DeviceState s) {
  switch (s) {
    case DeviceState::Registered: return "registered";
    case DeviceState::Connected: return "connected";
    case DeviceState::Unregistered: return "unregistered";
  }
  return "?";
}

std::vector<int> Devices::stage_ranks(int job) const {
  std::vector<int> ranks;
  for (int r = 1; r < world_; ++r) ranks.push_back(r);
  int next = size_;
  for (const auto& d : devices_) {
    if (d.job != job || d.state == DeviceState::Unregistered) continue;
    ranks.push_back(d.rank >= 0 ? d.rank : next++);
  }
  return ranks;
}

std::string Devices::host_of(int rank) const {
  if (rank >= 0 && static_cast<size_t>(rank) < hosts_.size()) return hosts_[size_t(rank)];
  int next = size_;
  for (const auto& d : devices_)
    if (d.rank < 0 && d.state == DeviceState::Registered && next++ == rank) return d.ip;
  return "?";
}

std::string Devices::device_at(int rank) const {
  std::string who;
  if (rank < 0) return who;
  for (const auto& d : devices_)
    if (d.rank == rank) who = "; device " + std::to_string(d.id) + " (" + d.ip + ":" + d.port + ")";
  return who;
}

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
  d.state = DeviceState::Registered;
  devices_.push_back(d);
  return devices_.back();
}

Device* Devices::by_port(const std::string& port) {
  for (auto& d : devices_)
    if (d.port == port && d.state != DeviceState::Unregistered) return &d;
  return nullptr;
}

void Devices::connect(int id) {
  connecting_ = id;
  if (std::find(pending_accepts_.begin(), pending_accepts_.end(), id) == pending_accepts_.end())
    pending_accepts_.push_back(id);
}

int Devices::next_accept() {
  if (pending_accepts_.empty()) return 0;
  const int id = pending_accepts_.front();
  pending_accepts_.pop_front();
  return id;
}

void Devices::joined(int id, int rank) {
  connecting_ = 0;
  Device* d = find(id);
  if (!d) return;
  d->rank = rank;
  if (d->state == DeviceState::Registered) d->state = DeviceState::Connected;
  hosts_.push_back(d->ip);
  size_ = rank + 1;
  std::printf("[serve] device %d (%s) joined as rank %d\n", d->id, d->ip.c_str(), d->rank);
  std::fflush(stdout);
}

}  // namespace arceus::serve
