// `arceus plan`, the wiring: the job as the trainer would build it (config + --set, placement,
// vocabulary) turned into the planner's plain ModelSpec and the layers to time, then planner/
// does the rest (planner/command.h: the cluster, the search space, the answer;
// planner/calibrate.h: the calibration, cached, measured when missing; planner/planner.h: the
// prediction and the search). The ModelSpec is built here, not in planner/, because it asks
// the trainer's own functions (is_transformer, gpt_config_of, layer_costs, make_placement) so that the
// planner sees the model exactly as the trainer builds it, and planner/ stays free of the
// runtime.
#include "launcher/plan.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "config/config.h"
#include "datasets/text.h"
#include "launcher/blas.h"
#include "launcher/shared_options.h"
#include "models/gpt.h"
#include "planner/calibrate.h"
#include "planner/command.h"
#include "planner/planner.h"
#include "ranks/job.h"
#include "ranks/placement.h"

namespace arceus {
namespace {

using namespace arceus::plan;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string cpu_model() {
  const std::string m = cpuinfo_field("model name");
  return m.empty() ? "unknown-cpu" : m;
}

int64_t text_vocab(const Config& c) {
  std::ifstream in(c.dataset.source, std::ios::binary);
  if (!in) throw PlanError("[plan] dataset_config.source '" + c.dataset.source + "': cannot open it (the vocabulary sizes the head)");
  std::stringstream ss;
  ss << in.rdbuf();
  return CharVocab::from_text(ss.str()).size();
}

// The planner's view of the job.
struct Planned {
  Config config;
  ModelSpec model;
  int64_t vocab = 0;
  std::vector<LayerProbe> probes;
};

Planned describe(const PlanOptions& o) {
  std::vector<Override> overrides;
  for (const auto& s : o.sets) overrides.push_back(parse_override(s));
  Planned p;
  p.config = load_config_file(o.config, overrides);
  const Config& c = p.config;
  ModelSpec& m = p.model;
  m.batch = c.dataset.batch_size;
  m.feed_local = c.dataset.feed == "local";
  m.optimizer = c.training.optimizer;
  m.momentum = c.training.momentum;
  m.grad_clip = c.training.grad_clip > 0;
  m.stochastic_rounding = c.communication.stochastic_rounding;
  if (is_transformer(c)) {
    p.vocab = text_vocab(c);
    const GptConfig g = gpt_config_of(c, p.vocab);
    m.transformer = true;
    m.seq = g.context;
    m.in_width = g.context;
    const int64_t L = gpt_layer_count(g), T = g.context, C = g.n_emb, H = g.n_heads, V = g.vocab_size;
    std::vector<int64_t> params(size_t(L), 0);
    std::vector<std::vector<int64_t>> tensors(static_cast<size_t>(L));
    for (const auto& [name, shape] : gpt_parameter_shapes(g)) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      params[size_t(gpt_layer_of(name, g))] += n;
      tensors[size_t(gpt_layer_of(name, g))].push_back(n);
    }
    const std::string drop = g.dropout > 0 ? " dropout" : "";
    for (int64_t l = 0; l < L; ++l) {
      LayerSpec s;
      s.parameters = params[size_t(l)];
      s.tensors = tensors[size_t(l)];
      s.out_width = l + 1 == L ? V : C;
      if (l == 0) {
        s.key = "gpt embed V" + std::to_string(V) + " T" + std::to_string(T) + " C" + std::to_string(C) + drop;
        s.activation_bytes = 4.0 * T * C * 2;
      } else if (l + 1 == L) {
        s.key = "gpt head V" + std::to_string(V) + " T" + std::to_string(T) + " C" + std::to_string(C) + " loss";
        s.activation_bytes = 4.0 * T * (2.0 * C + 3.0 * V);
      } else {
        s.key = "gpt block T" + std::to_string(T) + " C" + std::to_string(C) + " H" + std::to_string(H) + drop;
        // LayerNorms, q/k/v, attention output, the MLP's 4C hidden (twice: before and after
        // GELU), residuals; scores and softmax per head (an estimate of what autograd keeps)
        s.activation_bytes = 4.0 * (double(T) * C * 16 + 3.0 * H * T * T);
      }
      m.layers.push_back(s);
      LayerProbe probe;
      probe.key = s.key;
      probe.transformer = true;
      probe.layer = l == 0 ? 0 : (l + 1 == L ? L - 1 : 1);
      probe.layers = L;
      probe.vocab = V;
      probe.context = T;
      probe.n_emb = C;
      probe.n_heads = H;
      probe.n_blocks = g.n_blocks;
      probe.dropout = g.dropout;
      p.probes.push_back(probe);
    }
  } else {
    const auto& sizes = c.model.layer_sizes;
    m.in_width = sizes.front();
    const int64_t L = int64_t(sizes.size()) - 1;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t in = sizes[size_t(l)], out = sizes[size_t(l + 1)];
      LayerSpec s;
      s.key = "mlp " + std::to_string(in) + "x" + std::to_string(out) + (l + 1 < L ? " relu" : " loss") +
              (l == 0 ? " first" : "");
      s.parameters = in * out + out;
      s.tensors = {in * out, out};  // weight, bias
      s.out_width = out;
      s.activation_bytes = 4.0 * double(in + 2 * out);
      m.layers.push_back(s);
      // the layer alone, with its real neighbours' widths: a 3-layer model in, out, out
      LayerProbe probe;
      probe.key = s.key;
      if (l == 0 && l + 1 == L) {
        probe.layer_sizes = {in, out};
        probe.layer = 0;
      } else if (l == 0) {
        probe.layer_sizes = {in, out, out};
        probe.layer = 0;
      } else if (l + 1 == L) {
        probe.layer_sizes = {in, in, out};
        probe.layer = 1;
      } else {
        probe.layer_sizes = {in, in, out, out};
        probe.layer = 1;
      }
      probe.layers = int64_t(probe.layer_sizes.size()) - 1;
      p.probes.push_back(probe);
    }
  }
  for (int bits : {32, 16, 8, 4}) {
    Config cb = c;
    cb.communication.quantization_bits = bits;
    m.flop_costs[bits] = layer_costs(cb, p.vocab);
  }
  return p;
}

// "Schedules to consider (not searched unless named here: sequential: one micro-batch in flight...)".
std::string schedules_help() {
  std::string out = "Schedules to consider (not searched unless named here:";
  for (const ScheduleInfo& s : schedules()) {
    if (!s.planned) out += " " + s.name + ": " + s.not_planned_because + ";";
  }
  out.back() = ')';
  return out;
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : sep) + item;
  return out;
}

}  // namespace

CLI::App* add_plan_command(CLI::App& app, PlanOptions& o) {
  auto* cmd = app.add_subcommand(
      "plan", "Predict the job's throughput on a cluster (hosts x link x bits x schedule) and rank the configurations");
  cmd->add_option("config", o.config, "YAML job file")->required();
  add_set_option(*cmd, o.sets, "Override one config key, KEY=VALUE (repeatable; as train takes them)");
  cmd->add_option("--hostfile", o.hostfile,
                  "Open MPI hostfile: rank 0 and worker rank 1 on the first host, one worker per host after it "
                  "(replica-major: replica r's stage s on worker 1 + r*S + s-1); a line may end in '# arceus: "
                  "speed=F' (a host F times as fast as this one)");
  cmd->add_option("--hosts", o.hosts, "Host count N, or a range a..b (adds a scaling table)");
  cmd->add_option("--cores-per-host", o.cores_per_host, "Cores of each host (a stage uses them all as threads)")
      ->default_val(1)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--link", o.link, "Each host's link, each way: 100mbit, 1gbit, unlimited, ...")->required();
  cmd->add_option("--host-speed", o.host_speed, "Speed of the hosts relative to this machine: F, or F,F,... per host");
  cmd->add_option("--bits", o.bits, "Bit widths to consider (below 8 with their measured accuracy cost)")
      ->default_val("32,16,8,4");
  cmd->add_option("--gradient-bits", o.gradient_bits,
                  "Bit widths of the replicas' gradient sums to consider (below 32 with what the test measured)")
      ->default_val("32,16,8,4");
  cmd->add_option("--replicas", o.replicas,
                  "Replica counts R to consider, e.g. 1 or 1,2,4 (default: every count the hosts allow, R x S <= hosts)");
  cmd->add_option("--diloco", o.diloco,
                  "DiLoCo's inner steps H to consider with replicas (training.sync diloco, with its measured accuracy "
                  "cost), e.g. 50 or 20,200; 'none' for sums every step only (default: the job's diloco.inner_steps)");
  cmd->add_flag("--no-flush", o.no_flush,
                "Also consider training.pipeline_flush false (one replica, 1f1b or eager1f1b; each update one step "
                "late, with its measured accuracy cost; on when the job sets it)");
  cmd->add_option("--schedules", o.schedules, schedules_help())->default_val(join(planned_schedule_names(), ","));
  cmd->add_option("--micro-batches", o.micro_batches, "Micro-batch counts M to consider")->default_val("1,2,4,8,16,32");
  cmd->add_option("--top", o.top, "Rows of the ranked table")->default_val(10)->check(CLI::PositiveNumber);
  cmd->add_flag("--json", o.json, "Print JSON (given.predicted_samples_per_second, alternatives, best, scaling)");
  cmd->add_flag("--calibrate", o.calibrate, "Measure this machine again (the cache is refreshed)");
  cmd->add_option("--calibration", o.calibration, "Read (and update) this calibration file instead of the cache");
  return cmd;
}

int run_plan(const PlanOptions& o) {
  try {
    if (o.hostfile.empty() == o.hosts.empty()) {
      throw PlanError("[plan] give the cluster as --hostfile FILE or --hosts N|a..b (one of them)");
    }
    const double link = parse_link_rate(o.link);
    std::pair<int64_t, int64_t> range{0, 0};
    if (!o.hosts.empty()) range = parse_host_range(o.hosts);

    // The cluster first: a bad hostfile or speed is an error before anything is measured.
    const int64_t machine = std::max<unsigned>(1, std::thread::hardware_concurrency());
    const int64_t threads = std::min<int64_t>(o.cores_per_host, machine);
    const double core_factor = double(o.cores_per_host) / double(threads);
    PlanAnswer a;
    a.cluster.hosts = cluster_hosts(o.hostfile, o.hostfile.empty() ? range.second : 0, o.host_speed, core_factor);
    a.cluster.link_bits_per_second = link;
    a.cluster.link_name = o.link;
    const int64_t H = int64_t(a.cluster.hosts.size());

    Planned job = describe(o);
    const std::string diloco = o.diloco.empty() ? std::to_string(job.config.diloco.inner_steps) : o.diloco;
    SearchSpace space = search_space(o.schedules, o.micro_batches, o.bits, o.gradient_bits, o.replicas, diloco);
    space.no_flush = o.no_flush || !job.config.training.pipeline_flush;

    // Calibration: threads = the cores a stage uses, at most this machine's.
    set_blas_threads(int(threads));
    const std::string cpu = cpu_model(), blas = blas_info().describe();
    a.calibration_file = o.calibration.empty() ? calibration_path(cpu, blas, threads) : o.calibration;
    std::vector<LayerProbe> probes = job.probes;
    const auto rows = needed_rows(job.model, space, job.config.training.micro_batches, H);
    for (LayerProbe& p : probes) p.rows = rows.at(p.key);
    a.calibration = load_or_calibrate(a.calibration_file, o.calibrate, cpu, blas, threads, probes,
                                      o.json ? std::cerr : std::cout);

    const auto t_plan = Clock::now();
    a.model = job.model;
    a.config = o.config;
    a.sets = o.sets;
    a.hostfile = o.hostfile;
    a.top = o.top;

    // The configuration as given: the trainer's placement on one worker per host.
    // (more hosts than layers: the extra hosts idle, as partition.stages would leave them)
    const int64_t layers = int64_t(a.model.layers.size()) / std::max<int64_t>(1, job.config.partition.chunks_per_rank);
    const int64_t asked_r = job.config.partition.replicas;  // 0 = auto
    int world = H == 1 ? 1 : int(std::min(H, std::max<int64_t>(1, layers))) + 1;
    if (asked_r == 0 && H > 1) world = int(H) + 1;  // auto: as many replicas as the hosts allow
    if (asked_r > 1) {  // R fixed: its stages from the hosts (at most the layers), or as the job sets them
      const int64_t stages = job.config.partition.stages > 0 ? job.config.partition.stages
                                                             : std::max<int64_t>(1, std::min(H / asked_r, layers));
      world = int(asked_r * stages) + 1;
    }
    Candidate& given = a.given;
    Prediction& given_p = a.given_prediction;
    try {
      const Placement placement = make_placement(job.config, world, job.vocab);
      given.replicas = placement.replicas;
      given.stages = placement.stages;
      given.chunks_per_rank = placement.chunks_per_rank;
      given.chunks = placement.chunks;
    } catch (const std::exception& e) {
      given_p.error = e.what();
    }
    given.micro_batches = job.config.training.micro_batches;
    given.schedule = job.config.training.schedule;
    given.bits = job.config.communication.quantization_bits;
    given.gradient_bits = job.config.communication.gradient_bits;
    if (job.config.training.sync == "diloco") {
      given.diloco_inner_steps = job.config.diloco.inner_steps;
      given.gradient_bits = job.config.diloco.bits;
    }
    given.pipeline_flush = job.config.training.pipeline_flush;
    given.partition = !job.config.partition.layers.empty() ? "given" : job.config.partition.method;
    given.in_process = world == 1;
    if (given_p.error.empty()) given_p = predict(a.model, a.calibration, a.cluster, given);

    a.ranked = search(a.model, a.calibration, a.cluster, space);
    // Scaling: the best of every host count of the range (the same hosts, the first h of them).
    a.scaling = best_per_host_count(a.model, a.calibration, a.cluster, space, range.first, range.second, a.ranked);
    if (!a.model.feed_local && !a.model.transformer && H > 1) {
      ModelSpec local = a.model;
      local.feed_local = true;
      a.feed_local_ranked = search(local, a.calibration, a.cluster, space);
      a.feed_local_scaling =
          best_per_host_count(local, a.calibration, a.cluster, space, range.first, range.second, a.feed_local_ranked);
    }
    a.plan_seconds = since(t_plan);

    if (o.json) {
      std::cout << answer_json(a);
    } else {
      print_answer(a, std::cout);
    }
    return 0;
  } catch (const PlanError& e) {  // the command line, the hostfile, the search space
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace arceus
