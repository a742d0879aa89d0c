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

// The original's POST /api/devices/register {"ip", "port", "job_id"}. `arceus device`
// registers itself this way, then polls (heartbeat) until its job's runner takes it. A live
// device registered again, by the same ip and port, for another job moves to it once its
// own job is over (the original's clients register a device per job).
Response register_device(ServeState& s, const Request& req) {
  const rest::RegisterBody body = rest::parse_register_body(req.body);
  std::lock_guard<std::mutex> lock(s.mu);
  const auto job = s.jobs.find(body.job_id);
  if (!s.takes_devices()) throw HttpError(409, "[serve] this server takes no devices (GET /api/devices/connect-info says why)");
  Device* known = nullptr;
  for (const auto& d : s.devices.all()) {
    if (d.ip != body.ip || d.port != body.port || !is_live(d.state)) continue;
    known = s.devices.find(d.id);
    if (d.job == job->id) {
      throw HttpError(409, "[serve] device " + body.ip + ":" + body.port + " is already registered to job " +
                               std::to_string(job->id) + " (device " + std::to_string(d.id) + ")");
    }
    const auto& own = s.jobs.at(d.job);
    if (!is_final(own->state) && own->state != JobState::Created && own->state != JobState::Initialized) {
      throw HttpError(409, "[serve] " + Devices::name(d) + " takes a stage of job " + std::to_string(d.job) +
                               ", which is " + to_string(own->state) + ": register it again when that job is over");
    }
  }
  require(*job, JobEvent::Register);
  int id = 0;
  const int before = known ? known->job : 0;
  if (known) {
    known->job = job->id;
    id = known->id;
  } else {
    id = s.devices.add(body.ip, body.port, job->id).id;
  }
  // An initialized job is placed again with the device (a created one is placed by initialize);
  // when it cannot be, the registration is undone.
  if (job->state == JobState::Initialized) {
    try {
      place(s, *job, "re-initialized with device " + std::to_string(id));
    } catch (const HttpError&) {
      if (known) known->job = before;
      else s.devices.remove(id);
      throw;
    }
  }
  transition(*job, JobEvent::Register);
  note(*job, "device " + std::to_string(id) + " (" + body.ip + ":" + body.port + ") registered");
  s.cv.notify_all();
  return json_reply(201, {{"message", "Device registered successfully"},
                          {"device_id", id},
                          {"job_id", job_id_json(job->id)},
                          {"heartbeat", "/api/devices/" + std::to_string(id) + "/heartbeat"}});
}

// POST /api/devices/<id>/heartbeat {"worker": "running" | "none", "exit_status": N}: the
// agent of `arceus device`, every second. The answer says what to do: wait, connect (to
// "mpi_port", with the rendezvous of GET /api/devices/connect-info), abort (kill its MPI
// process: its job's runner is gone) or leave.
Response device_heartbeat(ServeState& s, const Request& req) {
  const int id = std::atoi(req.params.at(0).c_str());
  const rest::HeartbeatBody body = rest::parse_heartbeat_body(req.body);
  std::lock_guard<std::mutex> lock(s.mu);
  Device* d = s.devices.find(id);
  if (!d) throw HttpError(404, "[serve] no device " + std::to_string(id) + " (POST /api/devices/register first)");
  json answer = s.devices.heartbeat(*d, body.worker_running, body.exit_status);
  const auto job = s.jobs.at(d->job);
  answer["job_state"] = to_string(job->state);
  if (answer["action"] == "connect") {
    answer["ompi_server"] = s.rendezvous;
    answer["mpirun_mca"] = s.rendezvous_mca;
  }
  return json_reply(200, answer);
}

// DELETE /api/devices/<port>: an idle device leaves (its agent exits at its next heartbeat);
// a device training refuses (409).
Response unregister_device(ServeState& s, const Request& req) {
  const std::string& port = req.params.at(0);
  std::lock_guard<std::mutex> lock(s.mu);
  Device* d = s.devices.by_port(port);
  if (!d) throw HttpError(404, "[serve] no registered device with port '" + port + "' (GET /api/devices lists them)");
  const auto job = s.jobs.at(d->job);
  if (job->state == JobState::Training || job->state == JobState::Recovering || job->state == JobState::Queued)
    throw HttpError(409, "[serve] " + Devices::name(*d) + " takes a stage of job " + std::to_string(d->job) + ", which is " +
                             to_string(job->state) + ": stop the job first (POST /api/jobs/" + std::to_string(d->job) +
                             "/stop)");
  d->state = DeviceState::Left;
  d->why = "unregistered (DELETE /api/devices/" + port + ")";
  // A job not trained yet is placed again without it.
  if (job->state == JobState::Initialized) {
    try {
      place(s, *job, "re-initialized without device " + std::to_string(d->id));
    } catch (const HttpError& e) {
      note(*job, std::string("cannot be placed without device ") + std::to_string(d->id) + ": " + e.what());
    }
  }
  return json_reply(200, {{"message", "Device unregistered successfully"}, {"device_id", d->id}});
}

Response teraflops(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, tflops_json(s.jobs.current_and_previous().first));
}

// The original's answer: a list, one entry per earlier training session keyed by device, or
// {"error": "No previous training sessions found"} (404). `?job=previous` gives ours instead:
// the job before the current one, rank by rank (as GET /api/teraflops).
Response previous_teraflops(ServeState& s, const Request& req) {
  std::lock_guard<std::mutex> lock(s.mu);
  if (req.query.count("job")) return json_reply(200, tflops_json(s.jobs.current_and_previous().second));
  const json sessions = previous_sessions_json(s.jobs);
  if (sessions.empty()) return error_reply(404, "No previous training sessions found");
  return json_reply(200, sessions);
}

Response devices_teraflops(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, devices_tflops_json(s.jobs, s.devices));
}

}  // namespace arceus::serve::handlers
