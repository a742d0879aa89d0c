// The shim's JSON views (see views.h).
#include "launcher/serve/views.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "config/config_json.h"
#include "launcher/serve/state.h"
#include "ranks/job.h"
#include "ranks/placement.h"

namespace arceus::serve {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

int64_t mlp_layer_parameters(const Config& c, const LayerRange& r) {
  int64_t n = 0;
  const auto& s = c.model.layer_sizes;
  for (int64_t i = r.first; i < r.end(); ++i) n += s[size_t(i)] * s[size_t(i + 1)] + s[size_t(i + 1)];
  return n;
}

}  // namespace

json or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

json job_id_json(int id) { return std::to_string(id); }

const Config& effective_config(const JobRecord& job) { return job.train_request.is_null() ? job.config : job.train_config; }

json final_json(const JobRecord& job) {
  if (job.epochs.empty()) return nullptr;
  const json& e = job.epochs.back();
  json f = {{"epoch", e.value("epoch", 0)},
            {"val_loss", e.value("val_loss", 0.0)},
            {"val_accuracy", e.value("val_accuracy", 0.0)},
            {"train_loss", e.value("train_loss", 0.0)},
            {"train_accuracy", e.value("train_accuracy", 0.0)}};
  // A transformer's epoch also has its throughput in characters and the text sampled after it.
  for (const char* key : {"tokens_per_second", "sample"})
    if (e.contains(key)) f[key] = e[key];
  return f;
}

json stages_json(const Devices& d, const Config& c, const std::vector<LayerRange>& plan, int job,
                 const json& parameters, int64_t replicas) {
  json stages = json::array();
  const std::vector<int> ranks = d.stage_ranks(job);
  for (size_t k = 0; k < plan.size(); ++k) {
    const auto& r = plan[k];
    const int rank = k < ranks.size() ? ranks[k] : process_rank_of_stage(static_cast<int64_t>(k) + 1, d.world());
    json stage = {{"stage", k + 1}, {"rank", rank}, {"host", d.host_of(rank, job)}, {"layers", {r.first, r.end() - 1}}};
    if (replicas > 1) {
      json rr = json::array(), hosts = json::array();
      for (int64_t replica = 0; replica < replicas; ++replica) {
        const size_t slot = size_t(replica) * plan.size() + k;
        const int q = slot < ranks.size() ? ranks[slot] : -1;
        rr.push_back(q);
        hosts.push_back(d.host_of(q, job));
      }
      stage["replica_ranks"] = rr;
      stage["replica_hosts"] = hosts;
    }
    if (is_transformer(c)) {
      std::vector<std::string> names;
      for (int64_t i = r.first; i < r.end(); ++i) names.push_back(transformer_layer_name(c, i));
      stage["layer_names"] = names;
      stage["parameters"] = parameters.is_array() && parameters.size() == plan.size() ? parameters[k] : json(nullptr);
    } else {
      stage["layer_sizes"] =
          std::vector<int64_t>(c.model.layer_sizes.begin() + r.first, c.model.layer_sizes.begin() + r.end() + 1);
      stage["parameters"] = mlp_layer_parameters(c, r);
    }
    stages.push_back(stage);
  }
  return stages;
}

int64_t job_devices(const Devices& d, const JobRecord& job) {
  // As the original: the devices registered for the job (0 at creation). Without devices, the
  // world's ranks that hold a stage once the job is placed (ranks 1..N-1; a one-process world
  // has none).
  if (d.on_devices(job.id)) return static_cast<int64_t>(d.of_job(job.id).size());
  if (job.plan.empty()) return 0;
  return std::min<int64_t>(static_cast<int64_t>(job.plan.size()) * job.replicas, d.world() - 1);
}

int64_t job_stages(const JobRecord& job) { return static_cast<int64_t>(job.plan.size()) * job.replicas; }

json job_json(const Devices& d, const JobRecord& job, bool detail) {
  const Config& c = effective_config(job);
  const json config = config_json(c);  // the keys that apply to the job's model and data
  json j = {{"job_id", job_id_json(job.id)},
            {"id", job.id},
            {"status", to_string(job.state)},
            {"state", to_string(job.state)},
            {"devices", job_devices(d, job)},
            {"stage_count", job_stages(job)},
            {"model_config", config["model_config"]},
            {"dataset_config", config["dataset_config"]},
            {"epochs", c.training.epochs},
            {"learning_rate", c.training.learning_rate},
            {"epochs_completed", job.epochs.size()},
            {"final", final_json(job)},
            {"error", or_null(job.error)},
            {"created_at", job.created_at},
            {"started_at", or_null(job.started_at)},
            {"finished_at", or_null(job.finished_at)}};
  if (!detail) return j;
  j["config"] = config;
  j["config_yaml"] = to_yaml(c);
  j["body_format"] = job.format;
  j["world_size"] = d.world();
  j["plan"] = job.plan.empty() ? json(nullptr) : stages_json(d, c, job.plan, job.id, job.stage_parameters, job.replicas);
  j["replicas"] = job.replicas;
  // The latest training step as the trainer reported it (epoch, step, steps, loss, accuracy,
  // samples_per_second, learning_rate, ...), with the job's epoch count.
  json progress = nullptr;
  if (!job.steps.empty()) {
    progress = job.steps.back();
    progress["epochs"] = c.training.epochs;
  }
  j["progress"] = progress;
  json latest = nullptr;
  if (!job.epochs.empty()) {
    latest = job.epochs.back();
    latest.erase("step_losses");
    latest.erase("timing");
  }
  j["latest_epoch"] = latest;
  j["train_request"] = job.train_request;
  j["seconds"] = job.state == JobState::Training ? std::chrono::duration<double>(Clock::now() - job.start_time).count()
                                                 : job.seconds;
  j["output_dir"] = c.output.dir;
  j["summary_path"] = (fs::path(c.output.dir) / "summary.json").string();
  j["log_lines"] = job.logs.size();
  j["device_losses"] = job.losses;
  j["restored"] = job.restored;  // times a server restart interrupted it (persist.h)
  j["trainer_lock_wait"] = {{"total_s", job.lock_wait_total}, {"max_s", job.lock_wait_max}, {"events", job.lock_waits}};
  return j;
}

json ranks_json(const Devices& d, const JobRecord& job) {
  const std::vector<LayerRange>& plan = job.plan;
  json ranks = json::array();
  const std::vector<int> stage_ranks = d.stage_ranks(job.id);
  if (stage_ranks.empty()) {  // one process, no device: rank 0 holds the whole model
    ranks.push_back({{"rank", 0}, {"host", d.host_of(0)}, {"role", "orchestrator+stage"},
                     {"layers", {plan[0].first, plan[0].end() - 1}}});
    return ranks;
  }
  ranks.push_back({{"rank", 0}, {"host", d.host_of(0)}, {"role", "orchestrator"}, {"layers", nullptr}});
  // A job on devices has a world of its own: rank 0 and its devices.
  const int size = d.on_devices(job.id) ? static_cast<int>(stage_ranks.size()) + 1 : d.world();
  for (int r = 1; r < size; ++r) {
    json layers = nullptr;
    const auto it = std::find(stage_ranks.begin(), stage_ranks.end(), r);
    const size_t k = static_cast<size_t>(it - stage_ranks.begin());
    if (it != stage_ranks.end() && k < plan.size() * size_t(job.replicas))
      layers = {plan[k % plan.size()].first, plan[k % plan.size()].end() - 1};
    ranks.push_back({{"rank", r}, {"host", d.host_of(r, job.id)}, {"role", layers.is_null() ? "idle" : "stage"},
                     {"layers", layers}});
  }
  return ranks;
}

json tflops_json(const JobRecord* job) {
  json out = {{"job_id", nullptr}, {"status", nullptr}, {"state", nullptr}, {"epoch", nullptr}, {"ranks", json::array()}};
  if (!job) return out;
  out["job_id"] = job_id_json(job->id);
  out["status"] = job->state;
  out["state"] = to_string(job->state);
  if (job->epochs.empty()) return out;
  const json& e = job->epochs.back();
  out["epoch"] = e.value("epoch", 0);
  for (const json& t : e.value("timing", json::array())) {
    out["ranks"].push_back({{"rank", t.value("rank", -1)},
                            {"host", t.value("host", "")},
                            {"stage", t.value("stage", -1)},
                            {"forward_tflops", t.value("forward_tflops", 0.0)},
                            {"backward_tflops", t.value("backward_tflops", 0.0)},
                            {"forward_s", t.value("forward_s", 0.0)},
                            {"backward_s", t.value("backward_s", 0.0)},
                            {"comm_wait_s", t.value("comm_wait_s", 0.0)},
                            {"gflops", t.value("gflops", 0.0)}});
  }
  return out;
}

json previous_sessions_json(const Jobs& jobs) {
  json sessions = json::array();
  for (int id : jobs.started()) {
    const auto& job = jobs.at(id);
    if (!is_final(job->state) || job->epochs.empty()) continue;
    json session = json::object();
    for (const json& t : job->epochs.back().value("timing", json::array())) {
      const int rank = t.value("rank", -1);
      if (rank < 1) continue;  // rank 0 orchestrates: it computes none
      const double f = t.value("forward_tflops", 0.0), b = t.value("backward_tflops", 0.0);
      session[std::to_string(rank)] = {{"forward_tflops", f}, {"backward_tflops", b}, {"total_tflops", f + b}};
    }
    if (!session.empty()) sessions.push_back(session);
  }
  return sessions;
}

json devices_json(const Jobs& jobs, const Devices& d) {
  const auto job = jobs.placed();
  const bool training = jobs.current() != 0;
  const int world = d.world();
  // A job on devices runs in a world of its own: the MPI world's ranks 1..N-1 take no stage.
  const bool device_job = job && d.on_devices(job->id);
  json devices = json::array();
  for (int r = 0; r < world; ++r) {
    json layers = nullptr;
    std::string role = r == 0 ? (world == 1 && !device_job ? "orchestrator+stage" : "orchestrator") : "worker";
    bool busy = false;
    if (job) {
      const auto& plan = job->plan;
      const size_t slots = plan.size() * size_t(job->replicas);
      if (r > 0) role = device_job ? "idle" : role_of(r, world, static_cast<int64_t>(slots));
      // World rank r holds slot r - 1 (replica-major); a one-process world holds the model.
      const bool holds = !device_job && (world == 1 ? r == 0 : r >= 1 && size_t(r) <= slots);
      if (holds) {
        const LayerRange& lr = plan[world == 1 ? 0 : size_t(r - 1) % plan.size()];
        layers = {lr.first, lr.end() - 1};
      }
      busy = training && role != "idle";
    }
    devices.push_back({{"rank", r},
                       {"host", d.host_of(r)},
                       {"role", role},
                       {"layers", layers},
                       {"state", busy ? "training" : "idle"},
                       {"job_id", job ? json(job->id) : json(nullptr)}});
  }
  for (const auto& dev : d.all()) {
    json layers = nullptr;
    const std::vector<int> ids = d.of_job(dev.job);
    const auto it = std::find(ids.begin(), ids.end(), dev.id);
    const auto& own = jobs.all().count(dev.job) ? jobs.all().at(dev.job) : nullptr;
    if (own && it != ids.end() && !own->plan.empty()) {
      const size_t k = static_cast<size_t>(it - ids.begin());
      if (k < own->plan.size() * size_t(own->replicas)) {
        const LayerRange& lr = own->plan[k % own->plan.size()];
        layers = {lr.first, lr.end() - 1};
      }
    }
    json entry = {{"device_id", dev.id},
                  {"ip", dev.ip},
                  {"port", dev.port},
                  {"host", dev.ip},
                  {"rank", dev.rank >= 0 ? json(dev.rank) : json(nullptr)},
                  {"role", "device"},
                  {"job_id", job_id_json(dev.job)},
                  {"layers", layers},
                  {"state", to_string(dev.state)},
                  {"connected", dev.heard && is_live(dev.state)}};
    if (!dev.why.empty()) entry["why"] = dev.why;
    devices.push_back(entry);
  }
  return {{"world_size", world},
          {"job_id", job ? json(job->id) : json(nullptr)},
          {"training", training},
          {"devices", devices}};
}

json devices_tflops_json(const Jobs& jobs, const Devices& d) {
  const auto [cur, prev] = jobs.current_and_previous();
  const json c = tflops_json(cur), p = tflops_json(prev);
  auto find_rank = [](const json& t, int rank) -> json {
    for (const json& r : t["ranks"])
      if (r.value("rank", -1) == rank)
        return {{"forward_tflops", r["forward_tflops"]}, {"backward_tflops", r["backward_tflops"]}};
    return nullptr;
  };
  json devices = json::array();
  for (int r = 0; r < d.world(); ++r) {
    const json now = find_rank(c, r), before = find_rank(p, r);
    devices.push_back({{"rank", r},
                       {"host", d.host_of(r)},
                       {"forward_tflops", now.is_null() ? json(nullptr) : now["forward_tflops"]},
                       {"backward_tflops", now.is_null() ? json(nullptr) : now["backward_tflops"]},
                       {"previous", before}});
  }
  return {{"job_id", c["job_id"]},
          {"epoch", c["epoch"]},
          {"previous_job_id", p["job_id"]},
          {"previous_epoch", p["epoch"]},
          {"devices", devices}};
}

json health_json(const ServeState& s) {
  json queued = json::array();
  for (int q : s.jobs.queued()) queued.push_back(q);
  return {{"status", s.shutdown ? "shutting down" : (s.broken.empty() ? "ok" : "degraded")},
          {"world_size", s.devices.world()},
          {"training", s.jobs.current() ? json(s.jobs.current()) : json(nullptr)},
          {"queued", queued},
          {"jobs", s.jobs.size()},
          {"error", or_null(s.broken)}};
}

}  // namespace arceus::serve
