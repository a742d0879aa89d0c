#include "ranks/trainer.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "datasets/dataset.h"
#include "datasets/text.h"
#include "ranks/affinity.h"
#include "ranks/job.h"
#include "ranks/loopback.h"
#include "ranks/messenger.h"
#include "ranks/orchestrator.h"
#include "ranks/report.h"
#include "ranks/schedule/registry.h"
#include "ranks/stage_worker.h"
#include "ranks/vocab.h"
#include "ranks/wire.h"
#include "storage/storage.h"

namespace arceus {

namespace {

using json = nlohmann::json;

// The run directory must be writable before any training is spent.
void check_output_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    throw ConfigError("[output] output.dir = '" + dir + "': cannot create the directory (" + ec.message() + ")");
  }
  const auto probe = std::filesystem::path(dir) / ".arceus-write-test";
  std::ofstream out(probe);
  if (!out) throw ConfigError("[output] output.dir = '" + dir + "': directory is not writable");
  out.close();
  std::filesystem::remove(probe, ec);
}


// The set-up broadcast: {"type": "job", "ok": true, config, plan, ...},
// {"type": "job", "ok": false, "error"}, or {"type": "shutdown"}.
void broadcast_json(Transport& transport, const json& message) {
  const std::string text = message.dump();
  std::vector<uint8_t> bytes(text.begin(), text.end());
  transport.broadcast(bytes, 0);
}

json receive_json(Transport& transport) {
  std::vector<uint8_t> bytes;
  transport.broadcast(bytes, 0);
  return json::parse(bytes.begin(), bytes.end());
}

json placement_to_json(const Placement& p) {
  json chunks = json::array();
  for (const auto& r : p.chunks) chunks.push_back({r.first, r.count});
  json j = {{"chunks", chunks}, {"stages", p.stages}, {"chunks_per_rank", p.chunks_per_rank}, {"ranks", p.ranks}};
  if (p.replicas > 1) j["replicas"] = p.replicas;
  return j;
}

Placement placement_from_json(const json& j) {
  Placement p;
  for (const auto& r : j["chunks"]) p.chunks.push_back({r[0].get<int64_t>(), r[1].get<int64_t>()});
  p.stages = j["stages"].get<int64_t>();
  p.chunks_per_rank = j["chunks_per_rank"].get<int64_t>();
  p.ranks = j["ranks"].get<std::vector<int>>();
  p.replicas = j.value("replicas", int64_t{1});
  return p;
}

// Start-up lines: run shape, BLAS, data, and the plan with each stage's rank and host.
std::vector<std::string> plan_lines(const Job& job, const TrainOptions& options, const std::vector<std::string>& hosts,
                                    int ranks, int threads) {
  const auto& c = job.config;
  const Placement& p = job.placement;
  std::vector<std::string> lines;
  lines.push_back(format("arceus: %d rank%s%s, %s%lld stage%s, %s schedule, M=%lld%s, %d-bit messages, seed %llu",
                         job.world, job.world == 1 ? "" : "s", job.world == 1 && ranks > 1 ? " (in-process)" : "",
                         p.replicas > 1 ? format("%lld replicas x ", (long long)p.replicas).c_str() : "",
                         (long long)p.stages, p.stages == 1 ? "" : "s", c.training.schedule.c_str(),
                         (long long)c.training.micro_batches,
                         p.chunks_per_rank > 1 ? format(", v=%lld chunks per stage", (long long)p.chunks_per_rank).c_str() : "",
                         c.communication.quantization_bits, (unsigned long long)c.training.seed));
  if (p.replicas > 1) {
    lines.push_back(format("  replicas: %lld copies of the pipeline, each a 1/%lld share of every batch; gradients "
                           "summed per stage over the replicas at %d bits%s",
                           (long long)p.replicas, (long long)p.replicas, c.communication.gradient_bits,
                           c.communication.gradient_bits == 32 ? " (MPI allreduce)" : " (a ring with error feedback)"));
  }
  lines.push_back(format("  blas: %s; %d thread%s per stage rank", options.blas.c_str(), threads, threads == 1 ? "" : "s"));
  lines.push_back("  data: " + job.dataset_description);
  const auto cost = stage_cost_estimates(job);
  const auto params = stage_parameter_counts(job);
  if (job.world > 1) lines.push_back(format("  rank 0 on %s: orchestrator", hosts[0].c_str()));
  for (int64_t replica = 0; replica < p.replicas; ++replica) {
    for (int64_t s = 1; s <= p.stages; ++s) {
      const int rank = job.world == 1 ? 0 : p.rank_of_stage(s, replica);
      const std::string which = p.replicas > 1 ? format("replica %lld, ", (long long)replica) : std::string();
      lines.push_back(format("  rank %d on %s: %sstage %lld, layers %s, %lld parameters, est. cost %.3g", rank,
                             hosts[size_t(rank)].c_str(), which.c_str(), (long long)s, p.layers_of_stage(s).c_str(),
                             (long long)params[size_t(s - 1)], cost[size_t(s - 1)]));
    }
  }
  for (int r = static_cast<int>(p.workers()) + 1; r < job.world; ++r)
    lines.push_back(format("  rank %d on %s: idle (partition uses %s)", r, hosts[size_t(r)].c_str(),
                           p.replicas > 1 ? format("%lld replicas x %lld stages", (long long)p.replicas,
                                                   (long long)p.stages).c_str()
                                          : format("%lld stages", (long long)p.stages).c_str()));
  return lines;
}

void set_threads(const TrainOptions& options, int threads) {
  at::set_num_threads(threads);
  if (options.set_threads) options.set_threads(threads);
}

// Everything rank 0 decides before the broadcast. Throws on any set-up error.
struct Setup {
  Job job;
  DataSplits data;
  std::optional<CheckpointData> resume;
};

// `reference`: the one-process reference (one stage, one chunk); otherwise the placement of
// a world of `ranks`. `eval_weights`: evaluation of these weights (checked against the model):
// no output directory, no resume (options.resume names the weights' file in messages).
Setup set_up(const Config& config, int ranks, bool reference, int world, const TrainOptions& options,
             const CheckpointData* eval_weights) {
  const bool eval = eval_weights != nullptr;
  Setup s;
  Job& job = s.job;
  job.config = config;
  job.world = world;
  const auto& c = job.config;
  const int plan_world = reference ? 1 : ranks;
  job.placement = make_placement(c, plan_world, 0, reference ? std::vector<int>{} : options.stage_ranks);  // before loading data: fail fast
  if (!eval) check_output_dir(c.output.dir);
  s.data = load_dataset(c.dataset, c.training.seed, is_transformer(c) ? c.model.context : 0);
  job.features = s.data.features;
  job.classes = s.data.classes;
  job.dataset_description = s.data.description;
  finish_job(job);
  if (job.transformer()) {  // the head's cost needs the vocabulary
    job.placement = make_placement(c, plan_world, job.classes, reference ? std::vector<int>{} : options.stage_ranks);
  }
  if (c.training.sync == "diloco" && job.placement.replicas < 2) {
    throw ConfigError("[config] training.sync is 'diloco' (replicas that average every diloco.inner_steps steps), but "
                      "the job has " + std::to_string(job.placement.replicas) +
                      " replica: set partition.replicas to 2 or more (and give mpirun the ranks), or training.sync: step");
  }
  if (!c.training.pipeline_flush && job.placement.replicas > 1) {
    throw ConfigError("[config] training.pipeline_flush is false, but the job has " +
                      std::to_string(job.placement.replicas) +
                      " replicas: replicas sum their gradients at each step's end, which is the flush; without one "
                      "they are not built (set partition.replicas: 1, or pipeline_flush: true)");
  }
  if (!job.transformer() && c.model.layer_sizes.front() != s.data.features) {
    throw ConfigError("[model] model_config.layer_sizes[0] = " + std::to_string(c.model.layer_sizes.front()) +
                      " but the " + c.dataset.name + " inputs have " + std::to_string(s.data.features) +
                      " features: the first layer width must equal the input width");
  }
  if (!job.transformer() && c.model.layer_sizes.back() != s.data.classes) {
    throw ConfigError("[model] model_config.layer_sizes[-1] = " + std::to_string(c.model.layer_sizes.back()) +
                      " but the " + c.dataset.name + " dataset has " + std::to_string(s.data.classes) +
                      " classes: the last layer width must equal the number of classes");
  }
  if (c.training.micro_batches > kMaxMicroBatches) {
    throw ConfigError("[config] training.micro_batches = " + std::to_string(c.training.micro_batches) +
                      " exceeds the maximum of " + std::to_string(kMaxMicroBatches));
  }
  if (job.placement.chunk_count() > kMaxChunks) {
    throw ConfigError("[partition] " + std::to_string(job.placement.chunk_count()) + " chunks exceed the maximum of " +
                      std::to_string(kMaxChunks));
  }
  // The schedule's action lists for this shape, validated before any training.
  const int64_t m = std::min<int64_t>(c.training.micro_batches, c.dataset.batch_size);
  training_programs(c.training.schedule, {job.placement.stages, job.placement.chunks_per_rank, m});
  job.config_yaml = to_yaml(c);
  if (eval) {
    if (job.transformer()) check_vocab_matches(*eval_weights, s.data.text->vocab, options.resume);
    check_checkpoint_matches(*eval_weights, c, job.classes, options.resume);
    return s;
  }
  std::string resume_path = options.resume;
  const std::string own = (std::filesystem::path(c.output.dir) / "checkpoint.h5").string();
  if (resume_path.empty() && c.resume && std::filesystem::exists(own)) resume_path = own;
  if (!resume_path.empty()) {
    s.resume = read_checkpoint(resume_path);
    if (job.transformer()) check_vocab_matches(*s.resume, s.data.text->vocab, resume_path);
    check_checkpoint_matches(*s.resume, c, job.classes, resume_path);
    if (s.resume->epoch >= c.training.epochs) {
      throw ConfigError("[checkpoint] '" + resume_path + "' has already finished epoch " + std::to_string(s.resume->epoch) +
                        " of training.epochs = " + std::to_string(c.training.epochs) +
                        ": nothing left to train (raise training.epochs)");
    }
    job.resume = true;
  }
  return s;
}

// dataset_config.feed local: each replica's first stage loads the dataset itself (the same
// path as on rank 0) and sends rank 0 its checksum, or the error; rank 0 then tells every rank
// whether the job goes on (a broadcast: {"type": "feed", "ok", "error"}). Returns the error
// naming the host, the rank and the data, or "".
std::string lead_feed_check(Transport& transport, const Job& job, const std::string& fingerprint,
                            const std::vector<std::string>& hosts) {
  RankStats stats;
  Messenger msg(transport, stats);
  std::string error;
  for (int64_t r = 0; r < job.placement.replicas; ++r) {
    const int rank = job.placement.rank_of_chunk(0, r);
    const std::vector<uint8_t> bytes = msg.receive_blob(rank, 0, MsgKind::Feed);
    const json check = json::parse(bytes.begin(), bytes.end());
    const std::string where = "rank " + std::to_string(rank) + " on " + hosts[size_t(rank)];
    std::string problem;
    if (!check.value("ok", false)) {
      problem = where + ": " + check.value("error", std::string("?"));
    } else if (check.value("fingerprint", "") != fingerprint) {
      problem = where + " loaded " + check.value("description", std::string("?")) + " with checksum " +
                check.value("fingerprint", std::string("?")) + "; rank 0 on " + hosts[0] + " loaded " +
                job.dataset_description + " with checksum " + fingerprint + ": the files differ";
    }
    if (!problem.empty() && error.empty()) error = "[data] dataset_config.feed local: " + problem;
  }
  broadcast_json(transport, {{"type", "feed"}, {"ok", error.empty()}, {"error", error}});
  return error;
}

// A worker's part of the check: the first stage of a replica loads the data (kept in
// job.local_data) and reports; every worker learns rank 0's verdict. False: the job is off.
bool worker_feed_check(Transport& transport, Job& job, Placement::Slot slot) {
  if (slot.stage == 1) {
    json check;
    try {
      auto data = std::make_shared<DataSplits>(load_dataset(job.config.dataset, job.config.training.seed));
      check = {{"ok", true}, {"fingerprint", dataset_fingerprint(*data)}, {"description", data->description}};
      job.local_data = std::move(data);
    } catch (const std::exception& e) {
      check = {{"ok", false}, {"error", e.what()}};
    }
    RankStats stats;
    Messenger msg(transport, stats);
    const std::string text = check.dump();
    msg.send_blob(std::vector<uint8_t>(text.begin(), text.end()), 0, 0, MsgKind::Feed);
  }
  const json verdict = receive_json(transport);
  return verdict.value("ok", false);
}

// Rank 0 of a job on `transport`: set-up, broadcast, then train (or, with `eval_weights`,
// evaluate those weights).
JobResult lead_job(Transport& transport, const Config& config, const TrainOptions& options, JobObserver* observer,
                   bool reference, int world, const CheckpointData* eval_weights, EvalResult* eval_out) {
  Setup s;
  try {
    s = set_up(config, transport.size(), reference, world, options, eval_weights);
    if (eval_weights) s.job.resume = true;  // the stages wait for the weights
  } catch (const std::exception& e) {
    broadcast_setup_failure(transport, e.what());
    JobResult r;
    r.state = RunState::Failed;
    r.error = e.what();
    return r;
  }
  Job& job = s.job;
  broadcast_json(transport, {{"type", "job"},
                             {"ok", true},
                             {"config", job.config_yaml},
                             {"placement", placement_to_json(job.placement)},
                             {"features", job.features},
                             {"classes", job.classes},
                             {"world", job.world},
                             {"dataset", job.dataset_description},
                             {"resume", job.resume},
                             {"data_fingerprint", job.local_feed() ? json(dataset_fingerprint(s.data)) : json()}});
  const std::vector<std::string> hosts =
      transport.in_process() ? std::vector<std::string>(size_t(transport.size()), transport.host()) : transport.all_hosts();
  if (job.placement.replicas > 1) transport.split(-1, 0);  // collective: the stages' replica groups
  if (job.local_feed()) {
    const std::string error = lead_feed_check(transport, job, dataset_fingerprint(s.data), hosts);
    if (!error.empty()) {
      JobResult r;
      r.state = RunState::Failed;
      r.error = error;
      return r;
    }
  }
  const int threads = choose_threads(options.threads, transport, job.placement.stage_ranks());
  set_threads(options, threads);
  const bool quiet = options.quiet || eval_weights;
  if (!quiet) {
    for (const auto& line : plan_lines(job, options, hosts, transport.size(), threads)) {
      std::printf("%s\n", line.c_str());
      if (observer) observer->on_log(line);
    }
    std::fflush(stdout);
  }
  TrainOptions run_options = options;
  run_options.quiet = quiet;
  Orchestrator orchestrator(job, s.data, transport, run_options, hosts, observer);
  JobResult result;
  if (eval_weights) {
    const auto [loss, accuracy] = orchestrator.evaluate(*eval_weights);
    *eval_out = {loss, accuracy, s.data.val.size(), job.dataset_description};
    result.state = RunState::Completed;
    return result;
  }
  if (s.resume) orchestrator.set_resume(std::move(*s.resume));
  try {
    result.state = orchestrator.run();
  } catch (const std::exception& e) {
    orchestrator.fail(e.what());
    throw;
  }
  result.summary = orchestrator.summary();
  return result;
}

// A job in this process over `ranks` in-process ranks.
JobResult in_process(int ranks, const Config& config, const TrainOptions& options, JobObserver* observer,
                     bool reference, double timeout_seconds, const std::string& host,
                     const CheckpointData* eval_weights = nullptr, EvalResult* eval_out = nullptr) {
  JobResult result;
  run_loopback(
      ranks,
      [&](Transport& t) {
        if (t.rank() == 0) {
          result = lead_job(t, config, options, observer, reference, 1, eval_weights, eval_out);
          shutdown_workers(t);
        } else {
          worker_loop(t, options, true);
        }
      },
      timeout_seconds, host);
  return result;
}

}  // namespace

void broadcast_setup_failure(Transport& transport, const std::string& error) {
  if (transport.size() > 1) broadcast_json(transport, {{"type", "job"}, {"ok", false}, {"error", error}});
}

void shutdown_workers(Transport& transport) {
  if (transport.size() > 1) broadcast_json(transport, {{"type", "shutdown"}});
}

JobResult run_job(Transport& transport, const Config& config, const TrainOptions& options, JobObserver* observer) {
  if (transport.size() == 1) return in_process(2, config, options, observer, true, 0, transport.host());
  if (transport.in_process()) return lead_job(transport, config, options, observer, false, 1, nullptr, nullptr);
  return lead_job(transport, config, options, observer, false, transport.size(), nullptr, nullptr);
}

JobResult run_in_process(int ranks, const Config& config, const TrainOptions& options, JobObserver* observer,
                         double timeout_seconds) {
  return in_process(ranks, config, options, observer, false, timeout_seconds, "loopback");
}

EvalResult evaluate_checkpoint(const Config& config, const CheckpointData& checkpoint, const TrainOptions& options,
                               const std::string& host) {
  EvalResult out;
  const JobResult r = in_process(2, config, options, nullptr, true, 0, host, &checkpoint, &out);
  if (r.state == RunState::Failed) throw ConfigError(r.error);
  return out;
}

void broadcast_accept(Transport& transport, const std::string& port) {
  if (transport.size() > 1) broadcast_json(transport, {{"type", "accept"}, {"port", port}});
}

int worker_loop(Transport& world, const TrainOptions& options, bool serve, const AcceptHook& accept) {
  Transport* current = &world;
  while (true) {
    Transport& transport = *current;
    const json message = receive_json(transport);
    if (message.value("type", "") == "shutdown") return 0;
    if (message.value("type", "") == "accept") {
      if (!accept) throw TransportError("[serve] rank 0 asked to accept a device, but this rank cannot");
      current = &accept(transport, message.value("port", ""));
      continue;
    }
    if (!message.value("ok", false)) {
      if (serve) continue;
      return 1;
    }
    Job job;
    job.config_yaml = message["config"].get<std::string>();
    // Rank 0 checked the limits its environment sets; this host's may not raise them alike.
    job.config = parse_config(job.config_yaml, {}, "<from rank 0>", no_limits());
    job.placement = placement_from_json(message["placement"]);
    job.features = message["features"].get<int64_t>();
    job.classes = message["classes"].get<int64_t>();
    job.world = message["world"].get<int>();
    job.resume = message.value("resume", false);
    if (message.contains("data_fingerprint") && message["data_fingerprint"].is_string())
      job.data_fingerprint = message["data_fingerprint"].get<std::string>();
    finish_job(job);
    if (!transport.in_process()) transport.all_hosts();  // collective: rank 0 gathers the host names
    set_threads(options, choose_threads(options.threads, transport, job.placement.stage_ranks()));
    const Placement::Slot slot = job.placement.slot_of_rank(transport.rank());
    // With replicas, each stage's ranks over the replicas sum their gradients (collective split).
    std::unique_ptr<Group> replicas;
    if (job.placement.replicas > 1) replicas = transport.split(slot.stage >= 1 ? int(slot.stage) : -1, int(slot.replica));
    if (job.local_feed() && !worker_feed_check(transport, job, slot)) {
      if (serve) continue;
      return 1;
    }
    if (slot.stage >= 1) {
      run_stage(job, slot, transport, replicas.get());
    } else {
      run_idle(transport);
    }
    if (!serve) return 0;
  }
}

}  // namespace arceus
