// The ranks the shim's jobs run on: the MPI world's, then the devices (`arceus device`) that
// registered for a job and joined through MPI's dynamic-process calls. MPI- and httplib-free:
// the queue loop's JobRunner does the accepting; this registry records who is where (the
// server's lock guards it).
#pragma once

#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace arceus::serve {

// registered -> connected (rank 0 accepted its connect); unregistered (DELETE) from either.
enum class DeviceState { Registered, Connected, Unregistered };

const char* to_string(DeviceState s);
inline void to_json(nlohmann::json& j, DeviceState s) { j = to_string(s); }

struct Device {
  int id = 0;
  std::string ip, port;  // the original's registration fields (the device's address and id)
  int job = 0;           // the job it takes a stage of
  int rank = -1;         // its rank once connected
  DeviceState state = DeviceState::Registered;
};

class Devices {
 public:
  // The MPI world at start: its ranks and their hosts (by rank).
  Devices(int world, std::vector<std::string> hosts) : world_(world), size_(world), hosts_(std::move(hosts)) {}

  int world() const { return world_; }  // the MPI world's ranks (without devices)
  int size() const { return size_; }    // ranks of the current world (the world + connected devices)

  // Where a job's stages may run, in stage order: the world's stage ranks (1..N-1), then the
  // devices registered for it, in registration order (their ranks; a device not connected yet
  // counts with the rank it will get). Empty: the one-process world alone (the reference run).
  std::vector<int> stage_ranks(int job) const;
  // The host of a rank: the world's or a device's (its registered ip before it connects); "?".
  std::string host_of(int rank) const;
  // "; device N (ip:port)" for the device holding `rank`, else "" (a failed job's message).
  std::string device_at(int rank) const;

  const std::vector<Device>& all() const { return devices_; }
  Device* find(int id);
  // A registration (state registered); the caller checked it is no duplicate.
  const Device& add(const std::string& ip, const std::string& port, int job);
  // DELETE /api/devices/<port>: the live device of that port, or nullptr.
  Device* by_port(const std::string& port);

  // Connecting: one device at a time (two connects on one port at once would pair with the
  // wrong accept). connecting(): the one allowed now (0: none).
  int connecting() const { return connecting_; }
  // The device announces its connect: it becomes the one connecting and waits for an accept.
  void connect(int id);
  // The queue loop: the next device to accept (0: none).
  int next_accept();
  // Rank 0 accepted device `id` as `rank` of a world of rank + 1 ranks.
  void joined(int id, int rank);

 private:
  int world_ = 1;
  int size_ = 1;
  std::vector<std::string> hosts_;  // by rank: the world's, then each connected device's
  std::vector<Device> devices_;
  std::deque<int> pending_accepts_;  // devices that announced their connect, waiting for rank 0's accept
  int connecting_ = 0;
  int next_id_ = 1;
};

}  // namespace arceus::serve
