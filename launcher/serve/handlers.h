// The handlers routes.cpp's table names, one line each; defined by topic in job_routes.cpp,
// device_routes.cpp, model_routes.cpp and routes.cpp. Internal to launcher/serve/.
#pragma once

#include <string>

#include "launcher/serve/jobs.h"
#include "launcher/serve/routes.h"

namespace arceus::serve::handlers {

// Jobs and the network (job_routes.cpp).
Response create_job(ServeState& s, const Request& req);
Response list_jobs(ServeState& s, const Request& req);
Response get_job(ServeState& s, const Request& req);
Response metrics(ServeState& s, const Request& req);
Response logs(ServeState& s, const Request& req);
Response stop_job(ServeState& s, const Request& req);
Response initialize(ServeState& s, const Request& req);
Response train(ServeState& s, const Request& req);

// Devices and their TFLOPS (device_routes.cpp).
Response devices(ServeState& s, const Request& req);
Response connect_info(ServeState& s, const Request& req);
Response register_device(ServeState& s, const Request& req);
Response device_heartbeat(ServeState& s, const Request& req);
Response unregister_device(ServeState& s, const Request& req);
Response teraflops(ServeState& s, const Request& req);
Response previous_teraflops(ServeState& s, const Request& req);
Response devices_teraflops(ServeState& s, const Request& req);

// The trained model answering (model_routes.cpp).
Response predict(ServeState& s, const Request& req);
Response generate(ServeState& s, const Request& req);

// The server, the dashboard and the event streams (routes.cpp).
Response healthz(ServeState& s, const Request& req);
Response shutdown(ServeState& s, const Request& req);
Response page(ServeState& s, const Request& req);
Response dashboard_file(ServeState& s, const Request& req);
Response presets(ServeState& s, const Request& req);
Response events(ServeState& s, const Request& req);

// Shared by job_routes.cpp and device_routes.cpp: partitions the job's layers over the ranks
// (caller holds the lock) and moves it to initialized (JobEvent::Initialize), or leaves it as
// it was when the world cannot hold the plan (400). `what` starts the log line.
void place(ServeState& s, JobRecord& job, const std::string& what);
// A job that lost a device (recovering; caller holds the lock): planned again on the devices
// left, its stage count and explicit placement dropped (400 when they cannot hold it).
void replan(ServeState& s, JobRecord& job, const std::string& what);

// A non-negative integer query value (?offset=, ?since=) capped at `max`, `fallback` when
// absent; 400 naming the key (`what` explains it).
size_t index_query(const Request& req, const char* key, const char* what, size_t fallback, size_t max);

}  // namespace arceus::serve::handlers
