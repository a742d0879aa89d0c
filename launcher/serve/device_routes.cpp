// Devices and their TFLOPS: the world's ranks and the devices that join (see routes.h and
// docs/architecture.md, "Devices that join"). Rank 0's main thread does the MPI accept; these
// handlers only record and queue.
#include <cstdlib>
#include <mutex>

#include "launcher/request_body.h"
#include "launcher/serve/handlers.h"
#include "launcher/serve/state.h"
#include "launcher/serve/views.h"

namespace arceus::serve::handlers {

using json = nlohmann::json;
using rest::HttpError;

Response devices(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, devices_json(s.jobs, s.devices));
}

// What `arceus device` needs before it starts MPI: the rendezvous and the MCA parameters
// that keep Open MPI on the server's network.
Response connect_info(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.takes_devices()) {
    throw HttpError(409, "[serve] this server takes no devices: start it without mpirun (`arceus serve`), or "
                         "start ompi-server, run `mpirun --ompi-server file:F ...` and give arceus serve "
                         "the same --ompi-server file:F");
  }
  return json_reply(200, {{"ompi_server", s.rendezvous}, {"mpirun_mca", s.rendezvous_mca}});
}

// The original's POST /api/devices/register {"ip", "port", "job_id"}: the device then
// connects to rank 0's MPI port (in the reply), which accepts it between jobs.
Response register_device(ServeState& s, const Request& req) {
  const rest::RegisterBody body = rest::parse_register_body(req.body);
  std::lock_guard<std::mutex> lock(s.mu);
  const auto job = s.jobs.find(body.job_id);
  if (!s.takes_devices()) throw HttpError(409, "[serve] this server takes no devices (GET /api/devices/connect-info says why)");
  for (const auto& d : s.devices.all()) {
    if (d.job == job->id && d.ip == body.ip && d.port == body.port && d.state != DeviceState::Unregistered) {
      throw HttpError(409, "[serve] device " + body.ip + ":" + body.port + " is already registered to job " +
                               std::to_string(job->id) + " (device " + std::to_string(d.id) + ")");
    }
  }
  require(*job, JobEvent::Register);
  const Device& d = s.devices.add(body.ip, body.port, job->id);
  const int id = d.id;
  // An initialized job is placed again with the device (a created one is placed by initialize).
  if (job->state == JobState::Initialized) place(s, *job, "re-initialized with device " + std::to_string(id));
  transition(*job, JobEvent::Register);
  note(*job, "device " + std::to_string(id) + " (" + body.ip + ":" + body.port + ") registered");
  s.cv.notify_all();
  return json_reply(201, {{"message", "Device registered successfully"},
                          {"device_id", id},
                          {"job_id", job_id_json(job->id)},
                          {"mpi_port", s.mpi_port}});
}

// POST /api/devices/<id>/connect: the device is about to call MPI_Comm_connect on the port;
// rank 0 accepts it between jobs. (A registration alone, as the original's clients make,
// never makes rank 0 wait on MPI for a device that does not come.)
Response device_connects(ServeState& s, const Request& req) {
  const int id = std::atoi(req.params.at(0).c_str());
  std::lock_guard<std::mutex> lock(s.mu);
  const Device* d = s.devices.find(id);
  if (!d) throw HttpError(404, "[serve] no device " + std::to_string(id) + " (POST /api/devices/register first)");
  if (d->state != DeviceState::Registered || d->rank >= 0) {
    throw HttpError(409, "[serve] device " + std::to_string(id) + " is " + to_string(d->state) +
                             ": it connects once, after registering");
  }
  const int connecting = s.devices.connecting();
  if (connecting != 0 && connecting != id) {
    Response busy = error_reply(503, "[serve] device " + std::to_string(connecting) +
                                         " is connecting: one device joins at a time, try again in a moment");
    busy.headers.emplace_back("Retry-After", "1");
    return busy;
  }
  s.devices.connect(id);
  s.cv.notify_all();
  return json_reply(202, {{"message", "Connect to mpi_port now: rank 0 accepts between jobs"},
                          {"device_id", id},
                          {"mpi_port", s.mpi_port}});
}

// DELETE /api/devices/<port>: the device takes no stage of later jobs (it stays in the MPI
// world, idle, until the server shuts down).
Response unregister_device(ServeState& s, const Request& req) {
  const std::string& port = req.params.at(0);
  std::lock_guard<std::mutex> lock(s.mu);
  Device* d = s.devices.by_port(port);
  if (!d) throw HttpError(404, "[serve] no registered device with port '" + port + "' (GET /api/devices lists them)");
  if (s.jobs.current() == d->job)
    throw HttpError(409, "[serve] device " + std::to_string(d->id) + " is training job " + std::to_string(d->job));
  d->state = DeviceState::Unregistered;
  return json_reply(200, {{"message", "Device unregistered successfully"}, {"device_id", d->id}});
}

Response teraflops(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, tflops_json(s.jobs.current_and_previous().first));
}

Response previous_teraflops(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, tflops_json(s.jobs.current_and_previous().second));
}

Response devices_teraflops(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, devices_tflops_json(s.jobs, s.devices));
}

}  // namespace arceus::serve::handlers
