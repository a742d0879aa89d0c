// `arceus plan`: the job as the trainer would build it (config + --set, placement, vocabulary)
// turned into the planner's plain ModelSpec, the calibration (cached, measured when missing),
// the prediction of the configuration as given, the ranked search, the command that runs the
// best one, and with --hosts a..b the best rate per host count.
#include "launcher/plan.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/atomic_file.h"
#include "config/config.h"
#include "datasets/text.h"
#include "launcher/blas.h"
#include "launcher/shared_options.h"
#include "models/gpt.h"
#include "planner/calibrate.h"
#include "planner/planner.h"
#include "ranks/job.h"
#include "ranks/placement.h"

namespace arceus {
namespace {

using json = nlohmann::json;
using namespace arceus::plan;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) {
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

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

std::string fmt(double v, int prec = 0) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", prec, v);
  std::string s = buf;
  if (prec == 0 && std::abs(v) >= 1000) {  // thousands separators
    std::string digits = s, out;
    const bool neg = digits[0] == '-';
    if (neg) digits.erase(0, 1);
    for (size_t k = 0; k < digits.size(); ++k) {
      if (k && (digits.size() - k) % 3 == 0) out += ',';
      out += digits[k];
    }
    return (neg ? "-" : "") + out;
  }
  return s;
}

std::string mib(double bytes) { return fmt(bytes / double(1 << 20), 0) + " MiB"; }

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
  m.optimizer = c.training.optimizer;
  m.momentum = c.training.momentum;
  m.grad_clip = c.training.grad_clip > 0;
  m.stochastic_rounding = c.communication.stochastic_rounding;
  if (is_gpt(c)) {
    p.vocab = text_vocab(c);
    const GptConfig g = gpt_config_of(c, p.vocab);
    m.gpt = true;
    m.seq = g.context;
    m.in_width = g.context;
    const int64_t L = gpt_layer_count(g), T = g.context, C = g.n_emb, H = g.n_heads, V = g.vocab_size;
    std::vector<int64_t> params(size_t(L), 0);
    for (const auto& [name, shape] : gpt_parameter_shapes(g)) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      params[size_t(gpt_layer_of(name, g))] += n;
    }
    const std::string drop = g.dropout > 0 ? " dropout" : "";
    for (int64_t l = 0; l < L; ++l) {
      LayerSpec s;
      s.parameters = params[size_t(l)];
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
      probe.gpt = true;
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

std::vector<Host> cluster_hosts(const PlanOptions& o, int64_t count, double core_factor) {
  std::vector<Host> hosts;
  if (!o.hostfile.empty()) {
    hosts = parse_hostfile(o.hostfile);
  } else {
    for (int64_t h = 1; h <= count; ++h) hosts.push_back(Host{"host" + std::to_string(h), 1.0, h == 1 ? 2 : 1});
  }
  if (!o.host_speed.empty()) {
    const auto parts = split(o.host_speed, ',');
    const std::string expected = "expected a speed factor F > 0 (relative to this machine) or one per host, F,F,...";
    if (parts.size() != 1 && parts.size() != hosts.size()) {
      throw PlanError("[plan] --host-speed '" + o.host_speed + "' has " + std::to_string(parts.size()) +
                      " values for " + std::to_string(hosts.size()) + " hosts: " + expected);
    }
    for (size_t k = 0; k < hosts.size(); ++k) {
      const std::string& v = parts.size() == 1 ? parts[0] : parts[k];
      size_t pos = 0;
      double f = 0;
      try {
        f = std::stod(v, &pos);
      } catch (const std::exception&) {
        pos = 0;
      }
      if (pos != v.size() || !(f > 0) || !std::isfinite(f)) {
        throw PlanError("[plan] --host-speed '" + o.host_speed + "': '" + v + "' is not a number > 0: " + expected);
      }
      hosts[k].speed = f;
    }
  }
  for (Host& h : hosts) h.speed *= core_factor;
  return hosts;
}

json prediction_json(const ModelSpec& m, const Candidate& c, const Prediction& p) {
  json j;
  j["stages"] = c.stages;
  j["partition"] = partition_text(c);
  j["partition_method"] = c.partition;
  j["schedule"] = c.in_process ? "(one process)" : c.schedule;
  j["micro_batches"] = c.micro_batches;
  j["chunks_per_rank"] = c.chunks_per_rank;
  j["bits"] = c.bits;
  j["ok"] = p.ok;
  if (!p.ok) {
    j["error"] = p.error;
    return j;
  }
  j[std::string("predicted_") + m.unit() + "_per_second"] = p.rate;
  j["step_seconds"] = p.step_seconds;
  j["bubble"] = p.bubble;
  j["busiest_link"] = p.busiest_link;
  j["busiest_link_utilisation"] = p.link_utilisation;
  j["peak_memory_bytes_per_host"] = p.host_memory;
  j["stage_busy_seconds"] = p.stage_busy;
  j["bound"] = p.bound;
  const std::string cost = c.in_process ? "" : bits_accuracy_cost(c.bits, m.gpt);
  if (!cost.empty()) j["accuracy_cost"] = cost;
  return j;
}

std::string row(int k, const ModelSpec& m, const Candidate& c, const Prediction& p) {
  double mem = 0;
  for (double b : p.host_memory) mem = std::max(mem, b);
  std::ostringstream s;
  std::string part = partition_text(c);  // stages apart with " / ": '|' would split the markdown cell
  for (size_t at = part.find('|'); at != std::string::npos; at = part.find('|', at + 3)) part.replace(at, 1, " / ");
  s << "| " << k << " | " << c.stages << " | " << part << " (" << c.partition << ") | "
    << (c.in_process ? "(one process)" : c.schedule) << " | " << c.micro_batches << " | " << c.chunks_per_rank << " | "
    << (c.in_process ? "-" : std::to_string(c.bits) + (c.bits < 8 ? "*" : "")) << " | " << fmt(p.rate) << " | "
    << fmt(100 * p.bubble) << "% | " << (p.busiest_link == "-" ? "-" : fmt(100 * p.link_utilisation) + "%") << " | "
    << mib(mem) << " | " << p.bound << " |";
  return s.str();
}

std::string command_line(const PlanOptions& o, const Candidate& c) {
  std::ostringstream s;
  std::string sets;
  for (const auto& v : o.sets) sets += " --set '" + v + "'";
  if (c.in_process) {
    s << "build/arceus train " << o.config << sets << " --set training.micro_batches=" << c.micro_batches;
    return s.str();
  }
  s << "mpirun --hostfile " << (o.hostfile.empty() ? "HOSTFILE" : o.hostfile) << " -np " << c.stages + 1
    << " build/arceus train " << o.config << sets << " --set training.schedule=" << c.schedule
    << " --set training.micro_batches=" << c.micro_batches << " --set communication.quantization_bits=" << c.bits
    << " --set partition.chunks_per_rank=" << c.chunks_per_rank;
  if (c.partition == "balanced") {
    s << " --set partition.method=balanced --set partition.stages=" << c.stages;
  } else if (c.partition == "uniform") {
    s << " --set partition.method=uniform --set partition.stages=" << c.stages;
  } else {
    s << " --set 'partition.layers=" << partition_layers_value(c) << "'";
  }
  return s.str();
}

}  // namespace

CLI::App* add_plan_command(CLI::App& app, PlanOptions& o) {
  auto* cmd = app.add_subcommand(
      "plan", "Predict the job's throughput on a cluster (hosts x link x bits x schedule) and rank the configurations");
  cmd->add_option("config", o.config, "YAML job file")->required();
  add_set_option(*cmd, o.sets, "Override one config key, KEY=VALUE (repeatable; as train takes them)");
  cmd->add_option("--hostfile", o.hostfile,
                  "Open MPI hostfile: rank 0 and stage 1 on the first host, one stage per host after it; a line may "
                  "end in '# arceus: speed=F' (a host F times as fast as this one)");
  cmd->add_option("--hosts", o.hosts, "Host count N, or a range a..b (adds a scaling table)");
  cmd->add_option("--cores-per-host", o.cores_per_host, "Cores of each host (a stage uses them all as threads)")
      ->default_val(1)
      ->check(CLI::PositiveNumber);
  cmd->add_option("--link", o.link, "Each host's link, each way: 100mbit, 1gbit, unlimited, ...")->required();
  cmd->add_option("--host-speed", o.host_speed, "Speed of the hosts relative to this machine: F, or F,F,... per host");
  cmd->add_option("--bits", o.bits, "Bit widths to consider (below 8 with their measured accuracy cost)")
      ->default_val("32,16,8,4");
  cmd->add_option("--schedules", o.schedules, "Schedules to consider")->default_val("1f1b,eager1f1b,gpipe,zb1p,interleaved");
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
    ClusterSpec cluster;
    cluster.hosts = cluster_hosts(o, o.hostfile.empty() ? range.second : 0, core_factor);
    cluster.link_bits_per_second = link;
    cluster.link_name = o.link;
    const int64_t H = int64_t(cluster.hosts.size());

    Planned job = describe(o);
    SearchSpace space;
    space.schedules = split(o.schedules, ',');
    for (const auto& s : space.schedules) find_schedule(s);  // unknown names: an error naming them
    space.micro_batches.clear();
    for (const auto& s : split(o.micro_batches, ',')) {
      try {
        space.micro_batches.push_back(std::stoll(s));
      } catch (const std::exception&) {
        throw PlanError("[plan] --micro-batches '" + o.micro_batches + "': expected counts M >= 1, e.g. 1,2,4,8");
      }
    }
    space.bits.clear();
    for (const auto& s : split(o.bits, ',')) {
      int b = 0;
      try {
        b = std::stoi(s);
      } catch (const std::exception&) {
      }
      if (b != 32 && b != 16 && b != 8 && b != 4) {
        throw PlanError("[plan] --bits '" + o.bits + "': '" + s + "' is not a bit width (expected 32, 16, 8 or 4)");
      }
      space.bits.push_back(b);
    }

    // Calibration: threads = the cores a stage uses, at most this machine's.
    set_blas_threads(int(threads));
    const std::string cpu = cpu_model(), blas = blas_info().describe();
    const std::string path = o.calibration.empty() ? calibration_path(cpu, blas, threads) : o.calibration;
    Calibration cal;
    bool have = false;
    if (!o.calibrate && std::filesystem::exists(path)) {
      std::ifstream in(path);
      std::stringstream ss;
      ss << in.rdbuf();
      cal = calibration_from_json(ss.str(), path);
      have = true;
    }
    std::ostream& log = o.json ? std::cerr : std::cout;
    std::vector<LayerProbe> probes;
    const auto rows = needed_rows(job.model, space, job.config.training.micro_batches);
    for (LayerProbe p : job.probes) {
      bool seen = false;
      for (const auto& q : probes) seen = seen || q.key == p.key;
      if (seen) continue;
      p.rows = rows.at(p.key);
      bool missing = !have;
      for (int64_t n : p.rows) missing = missing || !has_rows(cal, p.key, n);
      if (missing) probes.push_back(p);
    }
    if (!have || !probes.empty()) {
      const auto t0 = Clock::now();
      log << "calibrating on this machine (" << cpu << ", " << blas << ", " << threads << " thread"
          << (threads > 1 ? "s" : "") << ")" << (have ? ": layers not measured yet" : "") << "\n";
      if (!have) {
        cal = Calibration{};
        cal.cpu = cpu;
        cal.blas = blas;
        cal.threads = threads;
        calibrate_system(cal, log);
      }
      calibrate_layers(cal, probes, /*refresh=*/false, log);
      cal.seconds = since(t0);
      const std::time_t now = std::time(nullptr);
      char when[32];
      std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M", std::localtime(&now));
      cal.measured_at = when;
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
      try {
        write_atomically(path, to_json(cal));
      } catch (const FileError& e) {
        log << "warning: the calibration cache is not written: " << e.what() << "\n";
      }
      log << "calibration took " << fmt(cal.seconds, 1) << " s, written to " << path << "\n";
    }

    const auto t_plan = Clock::now();
    const ModelSpec& model = job.model;

    // The configuration as given: the trainer's placement on one stage per host.
    // (more hosts than layers: the extra hosts idle, as partition.stages would leave them)
    const int64_t layers = int64_t(model.layers.size()) / std::max<int64_t>(1, job.config.partition.chunks_per_rank);
    const int world = H == 1 ? 1 : int(std::min(H, std::max<int64_t>(1, layers))) + 1;
    Candidate given;
    Prediction given_p;
    try {
      const Placement placement = make_placement(job.config, world, job.vocab);
      given.stages = placement.stages;
      given.chunks_per_rank = placement.chunks_per_rank;
      given.chunks = placement.chunks;
    } catch (const std::exception& e) {
      given_p.error = e.what();
    }
    given.micro_batches = job.config.training.micro_batches;
    given.schedule = job.config.training.schedule;
    given.bits = job.config.communication.quantization_bits;
    given.partition = !job.config.partition.layers.empty() ? "given" : job.config.partition.method;
    given.in_process = world == 1;
    if (given_p.error.empty()) given_p = predict(model, cal, cluster, given);

    std::vector<Ranked> ranked = search(model, cal, cluster, space);
    // Scaling: the best of every host count of the range (the same hosts, the first h of them).
    std::vector<std::pair<int64_t, Ranked>> scaling;
    if (range.first > 0 && range.first < range.second) {
      for (int64_t h = range.first; h <= range.second; ++h) {
        ClusterSpec sub = cluster;
        sub.hosts.resize(size_t(h));
        auto r = h == H ? ranked : search(model, cal, sub, space);
        if (!r.empty()) scaling.push_back({h, r.front()});
      }
    }
    const double plan_seconds = since(t_plan);
    const std::string unit = model.unit();

    if (o.json) {
      json j;
      j["config"] = o.config;
      j["sets"] = o.sets;
      j["hosts"] = json::array();
      for (const Host& h : cluster.hosts) j["hosts"].push_back({{"name", h.name}, {"speed", h.speed}});
      j["link"] = o.link;
      j["link_bits_per_second"] = link;
      j["unit"] = unit;
      j["calibration"] = {{"file", path}, {"cpu", cal.cpu}, {"blas", cal.blas}, {"threads", cal.threads},
                          {"measured_at", cal.measured_at}, {"seconds", cal.seconds}};
      j["given"] = prediction_json(model, given, given_p);
      j["alternatives"] = json::array();
      for (size_t k = 0; k < ranked.size() && k < size_t(o.top); ++k) {
        j["alternatives"].push_back(prediction_json(model, ranked[k].candidate, ranked[k].prediction));
      }
      if (!ranked.empty()) {
        j["best"] = prediction_json(model, ranked[0].candidate, ranked[0].prediction);
        j["best"]["command"] = command_line(o, ranked[0].candidate);
      }
      j["evaluated"] = ranked.size();
      j["scaling"] = json::array();
      for (const auto& [h, r] : scaling) {
        json s = prediction_json(model, r.candidate, r.prediction);
        s["hosts"] = h;
        j["scaling"].push_back(s);
      }
      j["plan_seconds"] = plan_seconds;
      std::cout << j.dump(1) << "\n";
      return 0;
    }

    std::cout << "arceus plan: " << o.config << " on " << H << " host" << (H > 1 ? "s" : "") << " (speed";
    for (const Host& h : cluster.hosts) std::cout << " " << fmt(h.speed, 2);
    std::cout << "), link " << o.link << " each way; batch " << model.batch << ", " << model.layers.size()
              << " layers\n";
    std::cout << "calibration: " << path << " (" << cal.cpu << ", " << cal.blas << ", " << cal.threads
              << " thread(s), measured " << cal.measured_at << ")\n\n";
    if (given_p.ok) {
      double mem = 0;
      for (double b : given_p.host_memory) mem = std::max(mem, b);
      std::cout << "as given: " << given.stages << " stage(s) " << partition_text(given) << ", "
                << (given.in_process ? "one process" : given.schedule) << ", M=" << given.micro_batches
                << ", v=" << given.chunks_per_rank << ", " << given.bits << " bits: predicted "
                << fmt(given_p.rate) << " " << unit << "/s (step " << fmt(1e3 * given_p.step_seconds, 1)
                << " ms), bubble " << fmt(100 * given_p.bubble) << "%, busiest link "
                << (given_p.busiest_link == "-" ? "-" : fmt(100 * given_p.link_utilisation) + "% (" + given_p.busiest_link + ")")
                << ", peak memory " << mib(mem) << " per host, bound: " << given_p.bound << "\n\n";
    } else {
      std::cout << "as given: cannot be predicted: " << given_p.error << "\n\n";
    }
    std::cout << "ranked (" << ranked.size() << " configurations evaluated in " << fmt(plan_seconds, 2) << " s):\n\n";
    std::cout << "| # | stages | partition (layers per stage) | schedule | M | v | bits | " << unit
              << "/s | bubble | busiest link | peak memory/host | bound |\n";
    std::cout << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    bool starred = false;
    for (size_t k = 0; k < ranked.size() && k < size_t(o.top); ++k) {
      std::cout << row(int(k + 1), model, ranked[k].candidate, ranked[k].prediction) << "\n";
      starred = starred || (!ranked[k].candidate.in_process && ranked[k].candidate.bits < 8);
    }
    if (starred) std::cout << "\n* " << bits_accuracy_cost(4, model.gpt) << "\n";
    if (!ranked.empty()) {
      const Ranked& best = ranked.front();
      std::cout << "\nbest: " << fmt(best.prediction.rate) << " " << unit << "/s";
      if (given_p.ok) std::cout << " (" << fmt(best.prediction.rate / given_p.rate, 2) << "x as given)";
      std::cout << "\n  " << command_line(o, best.candidate) << "\n";
      const std::string cost = best.candidate.in_process ? "" : bits_accuracy_cost(best.candidate.bits, model.gpt);
      if (!cost.empty()) std::cout << "  accuracy: " << cost << "\n";
    }
    if (!scaling.empty()) {
      std::cout << "\nscaling (best per host count):\n\n| hosts | best " << unit
                << "/s | vs one host fewer | configuration | bound |\n|---|---|---|---|---|\n";
      double prev = 0;
      int64_t stops = 0;
      for (const auto& [h, r] : scaling) {
        const Candidate& c = r.candidate;
        std::cout << "| " << h << " | " << fmt(r.prediction.rate) << " | "
                  << (prev > 0 ? fmt(r.prediction.rate / prev, 2) + "x" : "-") << " | " << c.stages << " stage(s) "
                  << partition_text(c) << ", " << (c.in_process ? "one process" : c.schedule) << ", M=" << c.micro_batches
                  << ", v=" << c.chunks_per_rank << (c.in_process ? "" : ", " + std::to_string(c.bits) + " bits") << " | "
                  << r.prediction.bound << " |\n";
        if (prev > 0 && r.prediction.rate < 1.05 * prev && stops == 0) stops = h;
        prev = r.prediction.rate;
      }
      if (stops > 0) {
        std::cout << "\nadding a host stops paying at " << stops << " hosts (less than 5% over " << stops - 1 << ")\n";
      } else {
        std::cout << "\nevery host of the range adds at least 5%\n";
      }
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
