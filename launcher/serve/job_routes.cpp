// Jobs and the network: create, list, view, metrics, logs, stop, initialize, train (see
// routes.h). A job's state changes through transition() (jobs.h) only.
#include <filesystem>
#include <mutex>

#include "datasets/lookup.h"
#include "launcher/request_body.h"
#include "launcher/serve/handlers.h"
#include "launcher/serve/persist.h"
#include "launcher/serve/state.h"
#include "launcher/serve/views.h"
#include "ranks/placement.h"

namespace arceus::serve::handlers {

namespace fs = std::filesystem;
using json = nlohmann::json;
using rest::HttpError;

namespace {

// The original's train endpoint: a body without epochs / learning_rate meant 10 epochs at 0.1.
constexpr int64_t kOriginalEpochs = 10;
constexpr double kOriginalLearningRate = 0.1;

// What a job will read must lie under an allowed data root: the text file of a transformer
// (dataset_config.source), the IDX directory of MNIST / FashionMNIST (dataset_config.root).
// A given source or root may not exist yet: that is the trainer's to say, when the job
// starts. Without a root, the directory is looked up now as the trainer would (rank 0 is this
// process: the same working directory) and set as the job's root, so that what was checked
// is what is read; no directory holding the files is a 400 naming every place tried.
void check_data_root(const ServeState& s, Config& c) {
  auto& d = c.dataset;
  if (d.name == "synthetic") return;
  if (d.name == "text") return rest::check_allowed("dataset_config.source", d.source, s.data_roots);
  if (!d.root.empty()) return rest::check_allowed("dataset_config.root", d.root, s.data_roots);
  std::error_code ec;
  const fs::path cwd = fs::current_path(ec);
  try {
    d.root = dataset_root(d.name, "", ec ? std::string(".") : cwd.string());
  } catch (const std::exception& e) {
    throw HttpError(400, "[serve] dataset_config.root is not set and " + std::string(e.what()) +
                             " (the allowed data roots: " + rest::roots_text(s.data_roots) + ")");
  }
  rest::check_allowed("dataset_config.root (not set; found by the lookup)", d.root, s.data_roots);
}

// What a job will write (and read back: resume, predict, generate) must lie inside the output
// root: its output.dir, or the default <root>/job-<id> (which a symlink placed there could also
// lead out). Resolved as writing there would be (rest::resolve_for_writing), so that neither '..'
// nor a symlink leads out.
void check_output_root(const ServeState& s, const std::string& dir, bool given = true) {
  rest::check_output_dir(given ? "output.dir" : "output.dir (not set: the default)", dir, s.output_root);
}

// A job's directory when its body sets no output.dir.
std::string default_output_dir(const ServeState& s, int id) {
  return (fs::path(s.output_root_arg) / ("job-" + std::to_string(id))).string();
}

// The model of a job, for its "created" log line.
std::string model_text(const Config& config) {
  if (is_transformer(config)) {
    const auto& m = config.model;
    return "transformer (context " + std::to_string(m.context) + ", n_emb " + std::to_string(m.n_emb) + ", " +
           std::to_string(m.n_heads) + " heads, " + std::to_string(m.n_blocks) + " blocks) on text " +
           config.dataset.source;
  }
  std::string layers;
  for (auto w : config.model.layer_sizes) layers += (layers.empty() ? "" : ", ") + std::to_string(w);
  std::string model = "MLP [" + layers + "] on " + config.dataset.name;
  if (!config.dataset.root.empty()) model += " from " + config.dataset.root;
  return model;
}

}  // namespace

namespace {

// The plan of `job` on the ranks it has now (see place); a 400 when they cannot hold it.
void plan_job(ServeState& s, JobRecord& job, const std::string& what) {
  const Devices& d = s.devices;
  const std::vector<int> ranks = d.stage_ranks(job.id);
  const int64_t layers = model_layers(job.config);
  const int world = d.world();
  const size_t devices = d.of_job(job.id).size();
  if (job.config.partition.replicas == 1 && devices > 0 && static_cast<int64_t>(devices) > layers) {
    throw HttpError(400, "[serve] job " + std::to_string(job.id) + " has " + std::to_string(devices) +
                             " device(s) but the model has " + std::to_string(layers) +
                             " layers: at most one stage per layer (unregister a device: DELETE /api/devices/<port>)");
  }
  std::vector<LayerRange> plan;
  int64_t replicas = 1;
  try {
    const Placement p = ranks.empty() ? make_placement(job.config, 1)
                                      : make_placement(job.config, static_cast<int>(ranks.size()) + 1, 0, ranks);
    if (p.chunks_per_rank > 1) {
      throw HttpError(400, "[serve] partition.chunks_per_rank = " + std::to_string(p.chunks_per_rank) +
                               ": the REST shim places one chunk per stage; run multi-chunk schedules with arceus train");
    }
    plan = p.chunks;
    replicas = p.replicas;
  } catch (const HttpError&) {
    throw;
  } catch (const std::exception& e) {
    throw HttpError(400, e.what());
  }
  job.plan = plan;
  job.replicas = replicas;
  job.on_devices = devices > 0;
  std::string summary;
  for (size_t k = 0; k < plan.size() * size_t(job.replicas); ++k) {
    const int rank = k < ranks.size() ? ranks[k] : 0;
    const LayerRange& r = plan[k % plan.size()];
    summary += (k ? ", " : "") + std::string("rank ") + std::to_string(rank) + " layers " + std::to_string(r.first) +
               "-" + std::to_string(r.end() - 1);
    if (job.replicas > 1) summary += " (replica " + std::to_string(k / plan.size()) + ")";
  }
  note(job, what + (devices ? " on " + std::to_string(devices) + " device(s) (ranks 1.. of the job's own world): "
                             : " on " + std::to_string(world) + " rank(s): ") +
                summary);
}

}  // namespace

void place(ServeState& s, JobRecord& job, const std::string& what) {
  require(job, JobEvent::Initialize);
  plan_job(s, job, what);
  transition(job, JobEvent::Initialize);
  publish_state(job);
  save_jobs(s);
}

void replan(ServeState& s, JobRecord& job, const std::string& what) {
  // The devices left choose the stages: a stage count or placement given for more is dropped.
  for (Config* c : {&job.config, &job.train_config}) {
    c->partition.stages = 0;
    c->partition.layers.clear();
  }
  plan_job(s, job, what);
}

Response create_job(ServeState& s, const Request& req) {
  rest::JobBody body = rest::parse_job_body(req.body, req.header("Content-Type"));
  Config& config = body.config;
  check_data_root(s, config);
  if (body.sets_output_dir) check_output_root(s, config.output.dir);
  // The original's JSON body has no training section; its train endpoint defaulted to 10
  // epochs at 0.1: such a job takes those as its own (a train body still overrides them). A
  // YAML body (a train config file) and a transformer job (the original's gpt/ settings) keep
  // the config defaults.
  const bool original_defaults = body.format == "json" && !body.has_training && !is_transformer(config);
  if (original_defaults) {
    config.training.epochs = kOriginalEpochs;
    config.training.learning_rate = kOriginalLearningRate;
  }
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.shutdown) throw HttpError(503, "[serve] the server is shutting down");
  if (!body.sets_output_dir) {
    // The default directory of the job about to be added (ids are never reused: the next is the
    // last + 1). train checks the job's directory again, whatever it is.
    const int next = s.jobs.all().empty() ? 1 : s.jobs.all().rbegin()->first + 1;
    check_output_root(s, default_output_dir(s, next), false);
  }
  const auto job = s.jobs.add(&s.events);
  if (!body.sets_output_dir) config.output.dir = default_output_dir(s, job->id);
  job->config = config;
  job->format = body.format;
  note(*job, "created: " + model_text(config) + ", output " + config.output.dir +
                 (original_defaults ? ", the original's train defaults (10 epochs, learning rate 0.1)" : ""));
  save_jobs(s);
  return json_reply(201, {{"message", "Job created successfully"}, {"job_id", job_id_json(job->id)}, {"id", job->id}});
}

Response list_jobs(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  json jobs = json::array();
  for (const auto& [id, job] : s.jobs.all()) jobs.push_back(job_json(s.devices, *job, false));
  return json_reply(200, {{"jobs", jobs}});
}

Response get_job(ServeState& s, const Request& req) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, job_json(s.devices, *s.jobs.find(req.params.at(0)), true));
}

Response metrics(ServeState& s, const Request& req) {
  // Copies under the lock (the steps as text), builds the answer outside it.
  std::string steps;
  json epochs = json::array(), rest;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    const auto job = s.jobs.find(req.params.at(0));
    steps = job->steps_text;
    epochs = job->epochs;
    rest = {{"job_id", job_id_json(job->id)},
            {"status", to_string(job->state)},
            {"state", to_string(job->state)},
            {"final", final_json(*job)}};
  }
  uint64_t raw = 0, wire = 0;
  for (const json& e : epochs) {
    raw += e.value("bytes_raw", uint64_t{0});
    wire += e.value("bytes_wire", uint64_t{0});
  }
  rest["epochs"] = std::move(epochs);
  rest["bytes_raw"] = raw;
  rest["bytes_wire"] = wire;
  rest["wire_ratio"] = raw ? double(wire) / double(raw) : 1.0;
  std::string body = rest.dump();  // {"bytes_raw":...}: the steps go in first
  body.insert(1, "\"steps\":[" + steps + "],");
  Response res;
  res.body = body + "\n";
  return res;
}

Response logs(ServeState& s, const Request& req) {
  std::lock_guard<std::mutex> lock(s.mu);
  const auto job = s.jobs.find(req.params.at(0));
  const size_t offset = index_query(req, "offset", "", 0, job->logs.size());
  const std::vector<std::string> lines(job->logs.begin() + static_cast<std::ptrdiff_t>(offset), job->logs.end());
  return json_reply(200, {{"job_id", job_id_json(job->id)},
                          {"status", job->state},
                          {"state", to_string(job->state)},
                          {"offset", offset},
                          {"next_offset", job->logs.size()},
                          {"lines", lines}});
}

Response stop_job(ServeState& s, const Request& req) {
  std::lock_guard<std::mutex> lock(s.mu);
  const auto job = s.jobs.find(req.params.at(0));
  const JobState before = job->state;
  transition(*job, JobEvent::Stop);  // 409 unless queued or training
  if (before == JobState::Queued) {
    job->error = "stopped by POST /api/jobs/" + std::to_string(job->id) + "/stop before it started";
    note(*job, "stopped while queued");
    publish_state(*job);
    save_jobs(s);
    return json_reply(200, {{"message", "Job stopped (it had not started)"},
                            {"job_id", job_id_json(job->id)},
                            {"status", job->state},
                            {"state", to_string(job->state)}});
  }
  // Training: the run ends after the batches in flight, and the queue loop records the end.
  job->stop = true;
  note(*job, "stop requested: the job ends after the batches in flight");
  return json_reply(202, {{"message", "Stop requested: the job stops after the batches in flight"},
                          {"job_id", job_id_json(job->id)},
                          {"status", job->state},
                          {"state", to_string(job->state)}});
}

Response initialize(ServeState& s, const Request& req) {
  std::lock_guard<std::mutex> lock(s.mu);
  const auto job = s.jobs.find(req.params.at(0));
  place(s, *job, "initialized");
  return json_reply(200, {{"message", "Network initialized successfully"},
                          {"job_id", job_id_json(job->id)},
                          {"status", job->state},
                          {"devices", job_devices(s.devices, *job)},
                          {"world_size", s.devices.world()},
                          {"stages", stages_json(s.devices, job->config, job->plan, job->id, nullptr, job->replicas)},
                          {"replicas", job->replicas},
                          {"ranks", ranks_json(s.devices, *job)}});
}

Response train(ServeState& s, const Request& req) {
  // The body: {"epochs": N, "learning_rate": x}, both optional (an empty body keeps the job's).
  const std::vector<Override> overrides = rest::parse_train_body(req.body);

  std::lock_guard<std::mutex> lock(s.mu);
  const auto job = s.jobs.find(req.params.at(0));
  // As in the original, a transformer job trains without initialize: train partitions it.
  const bool place_now = job->state == JobState::Created && job->transformer();
  require(*job, place_now ? JobEvent::Initialize : JobEvent::Train);
  if (!s.broken.empty()) throw HttpError(503, s.broken);
  if (s.shutdown) throw HttpError(503, "[serve] the server is shutting down");
  Config config;
  try {
    config = parse_config(to_yaml(job->config), overrides, "<train request>");
  } catch (const ConfigError& e) {
    throw HttpError(400, e.what());
  }
  check_data_root(s, config);  // again: a path may have become a symlink out since the job was created
  check_output_root(s, config.output.dir);  // and so may the output directory (given or the default)
  if (place_now) place(s, *job, "initialized by the train request (a transformer job needs no initialize)");
  const std::vector<int> ahead = s.jobs.ahead();
  transition(*job, JobEvent::Train);
  job->train_config = config;
  job->train_request = {{"epochs", config.training.epochs}, {"learning_rate", config.training.learning_rate}};
  s.jobs.enqueue(job->id);
  note(*job, "train requested: " + std::to_string(config.training.epochs) + " epoch(s), learning rate " +
                 json(config.training.learning_rate).dump() +
                 (ahead.empty() ? std::string() : ", queued behind job " + std::to_string(ahead.front())));
  publish_state(*job);
  save_jobs(s);
  s.cv.notify_all();
  json reply = {{"message", ahead.empty() ? std::string("Training started")
                                          : "Training queued: job " + std::to_string(ahead.front()) +
                                                " is using the ranks; this job starts when the jobs ahead end"},
                {"job_id", job_id_json(job->id)},
                {"epochs", config.training.epochs},
                {"learning_rate", config.training.learning_rate}};
  if (!ahead.empty()) reply["queued_behind"] = ahead;
  return json_reply(200, reply);
}

}  // namespace arceus::serve::handlers
