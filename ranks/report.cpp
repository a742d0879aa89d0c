#include "ranks/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <map>

#include "common/atomic_file.h"
#include "ranks/codec.h"
#include "ranks/schedule/registry.h"
#include "ranks/steps.h"
#include "ranks/wire.h"
#include "ranks/schedule/simulate.h"

namespace arceus {

using json = nlohmann::json;

std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

std::string human_bytes(double b) { return format("%.2f MiB", b / (1024.0 * 1024.0)); }

json stats_to_json(const RankStats& s, const std::string& host, int rank, int64_t replica) {
  const double busy = s.busy();
  return {{"rank", rank},
          {"stage", s.stage},
          {"replica", replica},
          {"sync_s", s.sync},
          {"host", host},
          {"forward_s", s.forward},
          {"backward_s", s.backward},
          {"optimizer_s", s.optimizer},
          {"codec_s", s.codec},
          {"comm_wait_s", s.wait},
          {"idle_s", s.idle},
          {"wall_s", s.wall},
          {"cpu_s", s.cpu},
          {"busy_fraction", s.wall > 0 ? busy / s.wall : 0.0},
          {"train_busy_fraction", s.train_wall > 0 ? s.train_busy / s.train_wall : 0.0},
          {"gflops", s.wall > 0 ? s.flops / s.wall / 1e9 : 0.0},
          {"flops", s.flops},
          {"forward_tflops", s.forward > 0 ? s.forward_flops / s.forward / 1e12 : 0.0},
          {"backward_tflops", s.backward > 0 ? s.backward_flops / s.backward / 1e12 : 0.0},
          {"bytes_raw", s.bytes_raw},
          {"bytes_wire", s.bytes_wire},
          {"messages", s.messages},
          {"threads", s.threads},
          {"cpus", s.cpus},
          {"cpu_quota", s.cpu_quota}};
}

int reported_rank(const Job& job, const RankStats& s) {
  return s.stage >= 1 && job.world == 1 ? 0 : s.rank;  // the in-process run: every stage is in rank 0
}

int64_t replica_of(const Job& job, const RankStats& s) {
  return s.stage >= 1 && job.world > 1 ? job.placement.slot_of_rank(s.rank).replica : 0;
}

std::vector<std::string> timing_table(const Job& job, const std::vector<RankStats>& all,
                                      const std::vector<std::string>& hosts) {
  // With replicas, two more columns: the replica, and the sync seconds (waiting for the
  // gradient sums after the backward; its codec time is in codec s).
  const bool replicas = job.placement.replicas > 1;
  std::vector<std::string> lines;
  lines.push_back(format("  %-4s %-12s %s%-5s %-7s %7s %7s %7s %7s %7s %7s %s%7s %7s %6s %6s %8s", "rank", "host",
                         replicas ? "rep " : "", "stage", "layers", "fwd s", "bwd s", "opt s", "codec s", "wait s",
                         "idle s", replicas ? " sync s " : "", "wall s", "cpu s", "busy%", "idle%", "GFLOP/s"));
  for (const auto& s : all) {
    const std::string& host = hosts[static_cast<size_t>(s.rank)];
    const std::string layers = s.stage >= 1 ? job.placement.layers_of_stage(s.stage) : "-";
    const std::string stage = s.stage >= 1 ? std::to_string(s.stage) : "-";
    const std::string replica =
        !replicas ? "" : s.stage >= 1 ? format("%-3lld ", (long long)replica_of(job, s)) : std::string("-   ");
    const std::string sync = replicas ? format("%7.2f ", s.sync) : "";
    const double busy = s.busy();
    lines.push_back(format("  %-4d %-12.12s %s%-5s %-7s %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %s%7.2f %7.2f %5.1f%% %5.1f%% %8.2f",
                           reported_rank(job, s), host.c_str(), replica.c_str(), stage.c_str(), layers.c_str(),
                           s.forward, s.backward, s.optimizer, s.codec, s.wait, s.idle, sync.c_str(), s.wall, s.cpu,
                           s.wall > 0 ? 100 * busy / s.wall : 0.0, s.wall > 0 ? 100 * s.idle / s.wall : 0.0,
                           s.wall > 0 ? s.flops / s.wall / 1e9 : 0.0));
  }
  return lines;
}

double measured_bubble(const std::vector<RankStats>& all) {
  double sum = 0;
  int n = 0;
  for (const auto& s : all) {
    if (s.stage < 1 || s.train_wall <= 0) continue;
    sum += 1.0 - s.train_busy / s.train_wall;
    ++n;
  }
  return n ? sum / n : 0.0;
}

double simulated_bubble(const Job& job, int64_t micro_batches) {
  const PipelineShape shape{job.placement.stages, job.placement.chunks_per_rank, micro_batches};
  ActionCosts costs;
  costs.chunk_scale = stage_costs(layer_costs(job.config, job.classes), job.placement.chunks);
  double mean = 0;
  for (double c : costs.chunk_scale) mean += c / static_cast<double>(costs.chunk_scale.size());
  for (double& c : costs.chunk_scale) c = mean > 0 ? c / mean : 1.0;
  return simulate(training_programs(job.config.training.schedule, shape), shape, costs, true).bubble;
}

std::vector<LinkBytes> step_links(const Job& job, int64_t rows) {
  std::map<std::pair<int, int>, LinkBytes> links;
  auto add = [&](int from, int to, double raw, double wire) {
    LinkBytes& l = links[{from, to}];
    l.from = from;
    l.to = to;
    l.raw += raw;
    l.wire += wire;
  };
  if (job.world == 1) return {};
  const auto& c = job.config;
  const int bits = c.communication.quantization_bits;
  const double h = sizeof(WireHeader);
  const int64_t seq = job.seq, in = job.features;
  const Placement& p = job.placement;
  const std::vector<int64_t> shares = replica_shares(rows, p.replicas);
  for (int64_t replica = 0; replica < p.replicas; ++replica) {
    const int first = p.rank_of_chunk(0, replica), last = p.rank_of_chunk(p.chunk_count() - 1, replica);
    const int64_t share = shares[size_t(replica)];
    if (share == 0) continue;
    const int64_t m = static_cast<int64_t>(micro_batch_sizes(rows, c.training.micro_batches).size());
    for (int64_t n : micro_batch_sizes(share, m)) {
      if (job.local_feed()) {
        add(0, first, h + 4.0 * n, h + 4.0 * n);  // the rows' indices (int32): the stage holds the data
      } else {
        add(0, first, h + 4.0 * n * in, h + (job.transformer() ? 4.0 * n * in : double(encoded_size(n, in, bits))));  // token ids: raw int32
      }
      add(0, last, h + 4.0 * n * seq, h + 4.0 * n * seq);  // labels
      for (int64_t k = 0; k + 1 < p.chunk_count(); ++k) {
        if (p.stage_of_chunk(k) == p.stage_of_chunk(k + 1)) continue;  // handed over in memory
        const int64_t w = boundary_width(job, k);
        const double raw = h + 4.0 * n * seq * w, wire = h + double(encoded_size(n * seq, w, bits));
        add(p.rank_of_chunk(k, replica), p.rank_of_chunk(k + 1, replica), raw, wire);  // activation
        add(p.rank_of_chunk(k + 1, replica), p.rank_of_chunk(k, replica), raw, wire);  // gradient
      }
    }
    add(last, 0, h + sizeof(MetricsPayload), h + sizeof(MetricsPayload));
  }
  for (const int r : p.stage_ranks()) {
    add(0, r, h + sizeof(ControlPayload), h + sizeof(ControlPayload));
    if (c.training.grad_clip > 0) {
      add(r, 0, h + sizeof(double), h + sizeof(double));
      add(0, r, h + sizeof(double), h + sizeof(double));
    }
  }
  // The replicas' gradient sums: each stage's ring over its replicas moves 2(R-1)/R of the
  // stage's gradients out of every member to the next (MPI's own allreduce at 32 bits counted so).
  if (p.replicas > 1) {
    const auto params = stage_parameter_counts(job);
    const bool diloco = c.training.sync == "diloco";  // one sum of pseudo-gradients per diloco.inner_steps steps
    const int gbits = diloco ? c.diloco.bits : c.communication.gradient_bits;
    const double per_step = diloco ? 1.0 / double(c.diloco.inner_steps) : 1.0;
    const int64_t R = p.replicas;
    for (int64_t s = 1; s <= p.stages; ++s) {
      const double n = double(params[size_t(s - 1)]);
      const double raw = 2.0 * double(R - 1) / double(R) * n * 4.0;
      double wire = raw;
      if (gbits < 32) {  // 2(R-1) hops of one slice of [rows, 512] codec rows, with headers
        const int64_t slice_rows = (params[size_t(s - 1)] + R * 512 - 1) / (R * 512);
        wire = 2.0 * double(R - 1) * (h + double(encoded_size(slice_rows, 512, gbits)));
      }
      for (int64_t replica = 0; replica < R; ++replica) {
        add(p.rank_of_stage(s, replica), p.rank_of_stage(s, (replica + 1) % R), raw * per_step, wire * per_step);
      }
    }
  }
  std::vector<LinkBytes> out;
  for (const auto& [key, l] : links) out.push_back(l);
  return out;
}

std::pair<double, double> step_message_bytes(const Job& job, int64_t rows) {
  double raw = 0, wire = 0;
  for (const LinkBytes& l : step_links(job, rows)) {
    raw += l.raw;
    wire += l.wire;
  }
  return {raw, wire};
}

json initial_summary(const Job& job, const std::string& blas, const std::vector<std::string>& hosts) {
  json s;
  const auto& c = job.config;
  s["version"] = 1;
  s["state"] = to_string(RunState::Running);
  s["world_size"] = job.world;
  s["blas"] = blas;
  s["dataset"] = job.dataset_description;
  s["config"] = job.config_yaml;
  s["output_dir"] = c.output.dir;
  s["schedule"] = c.training.schedule;
  s["micro_batches"] = c.training.micro_batches;
  s["chunks_per_rank"] = job.placement.chunks_per_rank;
  s["quantization_bits"] = c.communication.quantization_bits;
  s["replicas"] = job.placement.replicas;
  if (job.placement.replicas > 1) s["gradient_bits"] = c.communication.gradient_bits;
  json ranks = json::array();
  for (int r = 0; r < job.world; ++r) {
    json rank = {{"rank", r}, {"host", hosts[static_cast<size_t>(r)]}, {"role", role_of(r, job.world, job.placement.workers())}};
    if (job.world > 1 && r >= 1 && r <= job.placement.workers()) rank["replica"] = job.placement.slot_of_rank(r).replica;
    ranks.push_back(rank);
  }
  s["ranks"] = ranks;
  json stages = json::array();
  const auto cost = stage_cost_estimates(job);
  const auto params = stage_parameter_counts(job);
  for (int64_t k = 1; k <= job.stages(); ++k) {
    json layers = json::array();
    for (int64_t chunk : job.placement.chunks_of_stage(k)) {
      const LayerRange& r = job.placement.chunks[static_cast<size_t>(chunk)];
      if (job.placement.chunks_per_rank == 1) {
        layers = {r.first, r.end() - 1};
      } else {
        layers.push_back({r.first, r.end() - 1});
      }
    }
    const int rank = job.process_rank_of_stage(k);
    std::vector<int> replica_ranks;  // the stage's rank in each replica
    for (int64_t replica = 0; replica < job.placement.replicas; ++replica)
      replica_ranks.push_back(job.world == 1 ? 0 : job.placement.rank_of_stage(k, replica));
    stages.push_back({{"stage", k},
                      {"rank", rank},
                      {"replica_ranks", replica_ranks},
                      {"host", hosts[static_cast<size_t>(rank)]},
                      {"layers", layers},
                      {"chunks", job.placement.chunks_of_stage(k)},
                      {"parameters", params[static_cast<size_t>(k - 1)]},
                      {"estimated_cost", cost[static_cast<size_t>(k - 1)]}});
  }
  s["stages"] = stages;
  // The messages of one training step of batch_size samples, by (sending, receiving) rank:
  // what a benchmark maps onto hosts to find the busiest link.
  json links = json::array();
  for (const LinkBytes& l : step_links(job, c.dataset.batch_size))
    links.push_back({{"from", l.from}, {"to", l.to}, {"bytes_raw", l.raw}, {"bytes_wire", l.wire}});
  s["step_links"] = links;
  s["epochs"] = json::array();
  return s;
}

void write_summary_file(const std::string& dir_name, json& summary, RunState state) {
  summary["state"] = to_string(state);
  const std::filesystem::path dir(dir_name);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  try {
    write_atomically((dir / "summary.json").string(), summary.dump(2) + "\n");
  } catch (const FileError& e) {
    std::fprintf(stderr, "[output] %s\n", e.what());
  }
}

void Progress::update(int64_t epoch, int64_t epochs, int64_t k, int64_t n, double rate, double loss, double acc) {
  if (quiet_) return;
  const bool end = k == n;
  if (tty_) {
    if (!end && seconds_since(last_) < 0.2) return;
    last_ = Clock::now();
    std::printf("\r  epoch %lld/%lld  batch %lld/%lld  %9.0f %s/s  loss %.4f  acc %6.2f%%   ", (long long)epoch,
                (long long)epochs, (long long)k, (long long)n, rate, unit_.c_str(), loss, 100 * acc);
    if (end) std::printf("\n");
    std::fflush(stdout);
  } else {
    const int64_t every = std::max<int64_t>(1, n / 5);
    if (k % every != 0 && !end) return;
    std::printf("  epoch %lld/%lld  batch %lld/%lld  %9.0f %s/s  loss %.4f  acc %6.2f%%\n", (long long)epoch,
                (long long)epochs, (long long)k, (long long)n, rate, unit_.c_str(), loss, 100 * acc);
    std::fflush(stdout);
  }
}

ProgressFile::ProgressFile() {
  const char* path = std::getenv("ARCEUS_PROGRESS_FILE");
  if (path && *path) fd_ = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

ProgressFile::~ProgressFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ProgressFile::step(int64_t epoch, int64_t step, int64_t steps_per_epoch) {
  if (fd_ < 0) return;
  char line[80];
  const int n = std::snprintf(line, sizeof(line), "%20lld %20lld %20lld\n", (long long)epoch, (long long)step,
                              (long long)steps_per_epoch);
  if (n > 0 && ::pwrite(fd_, line, static_cast<size_t>(n), 0) < 0) {
    ::close(fd_);  // a supervisor's convenience: never an error of the run
    fd_ = -1;
  }
}

}  // namespace arceus
