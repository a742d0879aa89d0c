// The ranks the shim's jobs run on: the MPI world's, and the devices (`arceus device`) that
// registered for a job. MPI- and httplib-free: the server's lock guards it.
//
// A device is an agent process on its machine that polls the shim (POST
// /api/devices/<id>/heartbeat, every second). A job on devices runs in a job runner of its own
// (child_runner.h): its rank 0 and the job's devices, in registration order (device k of the
// job is rank k of the job's world). The heartbeat's answer tells the agent when to start its
// MPI process and connect, when to kill it (the job lost another device), and when to leave.
// The world's ranks 1..N-1 take no stage of a job on devices.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace arceus::serve {

// idle (registered, answering, no MPI process of a job) -> training (its job's runner took it)
// -> idle; gone: it stopped answering or its MPI process failed; left: DELETE, or it left.
enum class DeviceState { Idle, Training, Gone, Left };

const char* to_string(DeviceState s);
inline void to_json(nlohmann::json& j, DeviceState s) { j = to_string(s); }
inline bool is_live(DeviceState s) { return s == DeviceState::Idle || s == DeviceState::Training; }

struct Device {
  int id = 0;
  std::string ip, port;  // the original's registration fields (the device's address and id)
  int job = 0;           // the job it takes a stage of
  int rank = -1;         // its rank in its job's world while it trains
  DeviceState state = DeviceState::Idle;
  std::string why;       // gone or left: why
  // The agent's side: when it last answered, whether its MPI process runs, the status that
  // process last ended with (-1: none yet; 128 + N: killed by signal N).
  std::chrono::steady_clock::time_point last_seen;
  bool heard = false;
  bool worker_running = false;
  int worker_exit = -1;
  // The shim's side: the MPI port to connect to now ("" = none), and whether to kill its MPI
  // process (its job's runner is gone).
  std::string connect_port;
  bool abort = false;
};

class Devices {
 public:
  // The MPI world at start: its ranks and their hosts (by rank).
  Devices(int world, std::vector<std::string> hosts) : world_(world), hosts_(std::move(hosts)) {}

  int world() const { return world_; }  // the MPI world's ranks

  // The live devices (idle or training) registered for `job`, in registration order.
  std::vector<int> of_job(int job) const;
  bool on_devices(int job) const { return !of_job(job).empty(); }
  // Where a job's stages run, in stage order: a job on devices, ranks 1..K of its own world
  // (its K live devices); any other, the world's stage ranks 1..N-1. Empty: the one-process
  // world alone (the reference run).
  std::vector<int> stage_ranks(int job) const;
  // The host of a rank of `job`'s world: rank 0 and the MPI world's are the world's hosts, a
  // device's its registered ip; "?".
  std::string host_of(int rank, int job = 0) const;
  // "device N (ip:port)".
  static std::string name(const Device& d);

  const std::vector<Device>& all() const { return devices_; }
  Device* find(int id);
  // A registration (state idle); the caller checked it is no duplicate.
  const Device& add(const std::string& ip, const std::string& port, int job);
  // Undoes add() (a registration the job's plan refused).
  void remove(int id);
  // DELETE /api/devices/<port>: the live device of that port, or nullptr.
  Device* by_port(const std::string& port);

  // Idle devices silent for more than `seconds` are gone (a device in a running job is the job
  // runner's to watch). Returns the ids that went.
  std::vector<int> expire_idle(double seconds);

  // The agent's heartbeat: records it and returns the answer: {"action": wait | connect |
  // abort | leave, "job_id", "job_state" (set by the caller), "mpi_port" (connect)}.
  nlohmann::json heartbeat(Device& d, bool worker_running, int worker_exit);

 private:
  int world_ = 1;
  std::vector<std::string> hosts_;  // by world rank
  std::vector<Device> devices_;
  int next_id_ = 1;
};

}  // namespace arceus::serve
