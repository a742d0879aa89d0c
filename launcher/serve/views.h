// The shim's JSON views of jobs, stages, ranks and devices: the original's fields (job_id,
// status, devices, model_config, dataset_config, ...) beside ours. The caller holds the
// server's lock; docs/rest-api.md documents every field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/config.h"
#include "launcher/serve/devices.h"
#include "launcher/serve/jobs.h"
#include "partition/partition.h"

namespace arceus::serve {

struct ServeState;

nlohmann::json or_null(const std::string& s);

// The original's job_id: a string ("1"). Paths take the same text.
nlohmann::json job_id_json(int id);

// The config the job runs with: the train request's once asked to train, else as created.
const Config& effective_config(const JobRecord& job);

// The last epoch's losses and accuracies (null before the first epoch ends).
nlohmann::json final_json(const JobRecord& job);

// The stages of a plan: {"stage" (1-based), "rank", "host", "layers" [first, last], ...}. An
// MLP's stage also has its "layer_sizes" and "parameters"; a transformer's its "layer_names"
// and "parameters" once the trainer reported them (`parameters`, per stage, else null: its
// embeddings and head depend on the text's vocabulary, known only when the data is read).
// With replicas, "replica_ranks" and "replica_hosts" give the stage's rank and host in each
// replica (replica-major slots: replica r's stage k on the job's slot r * S + k - 1).
nlohmann::json stages_json(const Devices& d, const Config& c, const std::vector<LayerRange>& plan, int job,
                           const nlohmann::json& parameters = nullptr, int64_t replicas = 1);

// The original's `devices` of a job: the stages it runs on. Its plan's once initialized, else
// the world's stage ranks and its devices (1 in a one-process world without devices).
int64_t job_devices(const Devices& d, const JobRecord& job);

// A job view (GET /api/jobs items, GET /api/jobs/<id> with `detail`): the original's fields
// (job_id, status, devices, model_config, dataset_config) and ours; `state` = `status` and
// `id` = job_id as a number, from before the original's names were adopted.
nlohmann::json job_json(const Devices& d, const JobRecord& job, bool detail);

// Every rank of the current world and its part in the job's plan (initialize's "ranks").
nlohmann::json ranks_json(const Devices& d, const JobRecord& job);

// Per-rank forward/backward TFLOPS of a job's latest epoch (the epoch JSON's timing[]).
nlohmann::json tflops_json(const JobRecord* job);

// GET /api/previous_teraflops, the original's shape: one object per earlier training session
// (every job that ran and ended, in the order they started), keyed by the stage rank ("1",
// "2", ...: a device's rank in its job), each {"forward_tflops", "backward_tflops",
// "total_tflops"} of its last epoch. Empty: none yet.
nlohmann::json previous_sessions_json(const Jobs& jobs);
// The stages of a placed job (plan x replicas; 0 before it is placed).
int64_t job_stages(const JobRecord& job);

// GET /api/devices: the world's ranks with their part in the placed job, then the devices.
nlohmann::json devices_json(const Jobs& jobs, const Devices& d);

// GET /api/devices/teraflops: each world rank's TFLOPS in the current and the previous job.
nlohmann::json devices_tflops_json(const Jobs& jobs, const Devices& d);

// GET /healthz.
nlohmann::json health_json(const ServeState& s);

}  // namespace arceus::serve
