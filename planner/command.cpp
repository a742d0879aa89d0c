#include "planner/command.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "ranks/schedule/registry.h"

namespace arceus::plan {
namespace {

using json = nlohmann::json;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) {
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
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

// The accuracy costs of a candidate's bit widths ("" for none).
std::string accuracy_cost(const ModelSpec& m, const Candidate& c) {
  if (c.in_process) return "";
  std::string cost = bits_accuracy_cost(c.bits, m.transformer);
  const std::string gradients = c.replicas < 2               ? ""
                                : c.diloco_inner_steps > 0 ? diloco_accuracy_cost(c.diloco_inner_steps)
                                                           : gradient_bits_accuracy_cost(c.gradient_bits);
  if (!gradients.empty()) cost += (cost.empty() ? "" : "; ") + gradients;
  if (!c.pipeline_flush) cost += (cost.empty() ? "" : "; ") + no_flush_accuracy_cost();
  return cost;
}

// The partition inside a markdown cell: stages apart with " / " ('|' would split the cell).
std::string cell_partition(const Candidate& c) {
  std::string part = partition_text(c);
  for (size_t at = part.find('|'); at != std::string::npos; at = part.find('|', at + 3)) part.replace(at, 1, " / ");
  return part;
}

// ", 8-bit gradients" or ", DiLoCo H=50, 8-bit pseudo-gradients" (replicas), else "".
std::string sync_text(const Candidate& c) {
  if (c.replicas < 2) return "";
  if (c.diloco_inner_steps > 0) {
    return ", DiLoCo H=" + std::to_string(c.diloco_inner_steps) + ", " + std::to_string(c.gradient_bits) +
           "-bit pseudo-gradients";
  }
  return ", " + std::to_string(c.gradient_bits) + "-bit gradients";
}

// "2 replicas x 1 stage(s)" or, without replicas, "1 stage(s)".
std::string shape_text(const Candidate& c) {
  return (c.replicas > 1 ? std::to_string(c.replicas) + " replicas x " : "") + std::to_string(c.stages) + " stage(s)";
}

json prediction_json(const ModelSpec& m, const Candidate& c, const Prediction& p) {
  json j;
  j["replicas"] = c.replicas;
  j["stages"] = c.stages;
  j["partition"] = partition_text(c);
  j["partition_method"] = c.partition;
  j["schedule"] = c.in_process ? "(one process)" : c.schedule;
  j["micro_batches"] = c.micro_batches;
  j["chunks_per_rank"] = c.chunks_per_rank;
  j["bits"] = c.bits;
  j["gradient_bits"] = c.gradient_bits;  // with DiLoCo: diloco.bits
  j["sync"] = c.diloco_inner_steps > 0 ? "diloco" : "step";
  j["pipeline_flush"] = c.pipeline_flush;
  if (c.diloco_inner_steps > 0) j["diloco_inner_steps"] = c.diloco_inner_steps;
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
  if (c.replicas > 1) {
    j["sync_bytes_per_step"] = p.sync_bytes_out;  // per worker rank, replica-major
    j["sync_seconds"] = p.sync_seconds;
  }
  const std::string cost = accuracy_cost(m, c);
  if (!cost.empty()) j["accuracy_cost"] = cost;
  return j;
}

std::string row(int k, const ModelSpec& m, const Candidate& c, const Prediction& p) {
  double mem = 0;
  for (double b : p.host_memory) mem = std::max(mem, b);
  std::ostringstream s;
  const std::string part = cell_partition(c);
  s << "| " << k << " | " << c.replicas << " | " << c.stages << " | " << part << " (" << c.partition << ") | "
    << (c.in_process ? "(one process)" : c.schedule) << (c.pipeline_flush ? "" : " no flush*") << " | " << c.micro_batches << " | " << c.chunks_per_rank << " | "
    << (c.in_process ? "-" : std::to_string(c.bits) + (c.bits < 8 ? "*" : "")) << " | "
    << (c.replicas < 2 ? "-"
                       : std::to_string(c.gradient_bits) + (c.gradient_bits < 32 || c.diloco_inner_steps > 0 ? "*" : "") +
                             (c.diloco_inner_steps > 0 ? " DiLoCo H=" + std::to_string(c.diloco_inner_steps) : ""))
    << " | "
    << fmt(p.rate) << " | "
    << fmt(100 * p.bubble) << "% | " << (p.busiest_link == "-" ? "-" : fmt(100 * p.link_utilisation) + "%") << " | "
    << mib(mem) << " | " << p.bound << " |";
  return s.str();
}

}  // namespace

SearchSpace search_space(const std::string& schedules, const std::string& micro_batches, const std::string& bits,
                         const std::string& gradient_bits, const std::string& replicas, const std::string& diloco) {
  SearchSpace space;
  space.schedules = split(schedules, ',');
  for (const auto& s : space.schedules) find_schedule(s);  // unknown names: an error naming them
  space.micro_batches.clear();
  for (const auto& s : split(micro_batches, ',')) {
    try {
      space.micro_batches.push_back(std::stoll(s));
    } catch (const std::exception&) {
      throw PlanError("[plan] --micro-batches '" + micro_batches + "': expected counts M >= 1, e.g. 1,2,4,8");
    }
  }
  auto widths = [](const std::string& option, const std::string& list) {
    std::vector<int> out;
    for (const auto& s : split(list, ',')) {
      int b = 0;
      try {
        b = std::stoi(s);
      } catch (const std::exception&) {
      }
      if (b != 32 && b != 16 && b != 8 && b != 4) {
        throw PlanError("[plan] " + option + " '" + list + "': '" + s + "' is not a bit width (expected 32, 16, 8 or 4)");
      }
      out.push_back(b);
    }
    return out;
  };
  space.bits = widths("--bits", bits);
  space.gradient_bits = widths("--gradient-bits", gradient_bits);
  // A comma list of counts >= 1; PlanError naming the option, the list, the item and `expected`.
  auto counts = [](const std::string& option, const std::string& list, const std::string& expected) {
    std::vector<int64_t> out;
    for (const auto& s : split(list, ',')) {
      size_t pos = 0;
      int64_t n = 0;
      try {
        n = std::stoll(s, &pos);
      } catch (const std::exception&) {
        pos = 0;
      }
      if (pos != s.size() || n < 1) throw PlanError("[plan] " + option + " '" + list + "': '" + s + "' is not " + expected);
      out.push_back(n);
    }
    return out;
  };
  space.replicas = counts("--replicas", replicas, "a replica count (expected R >= 1, e.g. 1,2,4)");
  if (diloco != "none") {
    space.diloco_inner_steps =
        counts("--diloco", diloco, "a count of inner steps (expected H >= 1, e.g. 50 or 20,100, or 'none')");
  }
  return space;
}

std::vector<Host> cluster_hosts(const std::string& hostfile, int64_t count, const std::string& host_speed,
                                double core_factor) {
  std::vector<Host> hosts;
  if (!hostfile.empty()) {
    hosts = parse_hostfile(hostfile);
  } else {
    for (int64_t h = 1; h <= count; ++h) hosts.push_back(Host{"host" + std::to_string(h), 1.0, h == 1 ? 2 : 1});
  }
  if (!host_speed.empty()) {
    const auto parts = split(host_speed, ',');
    const std::string expected = "expected a speed factor F > 0 (relative to this machine) or one per host, F,F,...";
    if (parts.size() != 1 && parts.size() != hosts.size()) {
      throw PlanError("[plan] --host-speed '" + host_speed + "' has " + std::to_string(parts.size()) +
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
        throw PlanError("[plan] --host-speed '" + host_speed + "': '" + v + "' is not a number > 0: " + expected);
      }
      hosts[k].speed = f;
    }
  }
  for (Host& h : hosts) h.speed *= core_factor;
  return hosts;
}

std::vector<std::pair<int64_t, Ranked>> best_per_host_count(const ModelSpec& model, const Calibration& cal,
                                                            const ClusterSpec& cluster, const SearchSpace& space,
                                                            int64_t first, int64_t last,
                                                            const std::vector<Ranked>& all) {
  std::vector<std::pair<int64_t, Ranked>> best;
  if (first <= 0 || first >= last) return best;
  for (int64_t h = first; h <= last; ++h) {
    ClusterSpec sub = cluster;
    sub.hosts.resize(size_t(h));
    auto r = h == int64_t(cluster.hosts.size()) ? all : search(model, cal, sub, space);
    if (!r.empty()) best.push_back({h, r.front()});
  }
  return best;
}

std::string train_command(const PlanAnswer& a, const Candidate& c) {
  std::ostringstream s;
  std::string sets;
  for (const auto& v : a.sets) sets += " --set '" + v + "'";
  if (c.in_process) {
    s << "build/arceus train " << a.config << sets << " --set training.micro_batches=" << c.micro_batches;
    return s.str();
  }
  s << "mpirun --hostfile " << (a.hostfile.empty() ? "HOSTFILE" : a.hostfile) << " -np " << c.replicas * c.stages + 1
    << " build/arceus train " << a.config << sets << " --set training.schedule=" << c.schedule
    << " --set training.micro_batches=" << c.micro_batches << " --set communication.quantization_bits=" << c.bits
    << " --set partition.chunks_per_rank=" << c.chunks_per_rank;
  if (!c.pipeline_flush) s << " --set training.pipeline_flush=false";
  const std::string stages = c.replicas > 1 ? "" : " --set partition.stages=" + std::to_string(c.stages);
  if (c.partition == "balanced") {
    s << " --set partition.method=balanced" << stages;
  } else if (c.partition == "uniform") {
    s << " --set partition.method=uniform" << stages;
  } else if (c.partition != "whole") {
    s << " --set 'partition.layers=" << partition_layers_value(c) << "'";
  }
  if (c.replicas > 1) {
    s << " --set partition.replicas=" << c.replicas << " --set partition.stages=" << c.stages;
    if (c.diloco_inner_steps > 0) {
      s << " --set training.sync=diloco --set diloco.inner_steps=" << c.diloco_inner_steps
        << " --set diloco.bits=" << c.gradient_bits;
    } else {
      s << " --set communication.gradient_bits=" << c.gradient_bits;
    }
  }
  return s.str();
}

std::string answer_json(const PlanAnswer& a) {
  const ModelSpec& m = a.model;
  const Calibration& cal = a.calibration;
  json j;
  j["config"] = a.config;
  j["sets"] = a.sets;
  j["hosts"] = json::array();
  for (const Host& h : a.cluster.hosts) j["hosts"].push_back({{"name", h.name}, {"speed", h.speed}});
  j["link"] = a.cluster.link_name;
  j["link_bits_per_second"] = a.cluster.link_bits_per_second;
  j["unit"] = m.unit();
  j["calibration"] = {{"file", a.calibration_file}, {"cpu", cal.cpu}, {"blas", cal.blas}, {"threads", cal.threads},
                      {"measured_at", cal.measured_at}, {"seconds", cal.seconds}};
  j["given"] = prediction_json(m, a.given, a.given_prediction);
  j["alternatives"] = json::array();
  for (size_t k = 0; k < a.ranked.size() && k < size_t(a.top); ++k) {
    j["alternatives"].push_back(prediction_json(m, a.ranked[k].candidate, a.ranked[k].prediction));
  }
  if (!a.ranked.empty()) {
    j["best"] = prediction_json(m, a.ranked[0].candidate, a.ranked[0].prediction);
    j["best"]["command"] = train_command(a, a.ranked[0].candidate);
  }
  j["evaluated"] = a.ranked.size();
  j["scaling"] = json::array();
  for (const auto& [h, r] : a.scaling) {
    json s = prediction_json(m, r.candidate, r.prediction);
    s["hosts"] = h;
    j["scaling"].push_back(s);
  }
  if (!a.feed_local_ranked.empty()) {
    PlanAnswer local = a;
    local.sets.push_back("dataset_config.feed=local");
    json f;
    f["best"] = prediction_json(m, a.feed_local_ranked[0].candidate, a.feed_local_ranked[0].prediction);
    f["best"]["command"] = train_command(local, a.feed_local_ranked[0].candidate);
    f["scaling"] = json::array();
    for (const auto& [h, r] : a.feed_local_scaling) {
      json s = prediction_json(m, r.candidate, r.prediction);
      s["hosts"] = h;
      f["scaling"].push_back(s);
    }
    j["feed_local"] = f;
  }
  j["plan_seconds"] = a.plan_seconds;
  return j.dump(1) + "\n";
}

void print_answer(const PlanAnswer& a, std::ostream& out) {
  const ModelSpec& m = a.model;
  const Calibration& cal = a.calibration;
  const Prediction& given = a.given_prediction;
  const std::string unit = m.unit();
  const size_t H = a.cluster.hosts.size();
  out << "arceus plan: " << a.config << " on " << H << " host" << (H > 1 ? "s" : "") << " (speed";
  for (const Host& h : a.cluster.hosts) out << " " << fmt(h.speed, 2);
  out << "), link " << a.cluster.link_name << " each way; batch " << m.batch << ", " << m.layers.size() << " layers\n";
  out << "calibration: " << a.calibration_file << " (" << cal.cpu << ", " << cal.blas << ", " << cal.threads
      << " thread(s), measured " << cal.measured_at << ")\n\n";
  if (given.ok) {
    const Candidate& c = a.given;
    double mem = 0;
    for (double b : given.host_memory) mem = std::max(mem, b);
    out << "as given: " << shape_text(c) << " " << partition_text(c) << ", "
        << (c.in_process ? "one process" : c.schedule) << ", M=" << c.micro_batches << ", v=" << c.chunks_per_rank
        << ", " << c.bits << " bits" << sync_text(c) << ": predicted " << fmt(given.rate) << " " << unit << "/s (step "
        << fmt(1e3 * given.step_seconds, 1) << " ms), bubble " << fmt(100 * given.bubble) << "%, busiest link "
        << (given.busiest_link == "-" ? "-" : fmt(100 * given.link_utilisation) + "% (" + given.busiest_link + ")")
        << ", peak memory " << mib(mem) << " per host, bound: " << given.bound << "\n\n";
  } else {
    out << "as given: cannot be predicted: " << given.error << "\n\n";
  }
  out << "ranked (" << a.ranked.size() << " configurations evaluated in " << fmt(a.plan_seconds, 2) << " s):\n\n";
  out << "| # | replicas | stages | partition (layers per stage) | schedule | M | v | bits | grad bits | " << unit
      << "/s | bubble | busiest link | peak memory/host | bound |\n";
  out << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  bool starred = false;
  int fewest_gradient_bits = 32;
  int64_t diloco = 0;  // the first DiLoCo row's H
  for (size_t k = 0; k < a.ranked.size() && k < size_t(a.top); ++k) {
    const Candidate& c = a.ranked[k].candidate;
    out << row(int(k + 1), m, c, a.ranked[k].prediction) << "\n";
    starred = starred || (!c.in_process && c.bits < 8);
    if (c.replicas > 1 && c.diloco_inner_steps == 0) fewest_gradient_bits = std::min(fewest_gradient_bits, c.gradient_bits);
    if (c.replicas > 1 && c.diloco_inner_steps > 0 && diloco == 0) diloco = c.diloco_inner_steps;
  }
  if (starred || fewest_gradient_bits < 32 || diloco > 0) out << "\n";
  if (starred) out << "* " << bits_accuracy_cost(4, m.transformer) << "\n";
  if (fewest_gradient_bits < 32) out << "* " << gradient_bits_accuracy_cost(fewest_gradient_bits) << "\n";
  if (diloco > 0) out << "* " << diloco_accuracy_cost(diloco) << "\n";
  if (!a.ranked.empty()) {
    const Ranked& best = a.ranked.front();
    out << "\nbest: " << fmt(best.prediction.rate) << " " << unit << "/s";
    if (given.ok) out << " (" << fmt(best.prediction.rate / given.rate, 2) << "x as given)";
    out << "\n  " << train_command(a, best.candidate) << "\n";
    const std::string cost = accuracy_cost(m, best.candidate);
    if (!cost.empty()) out << "  accuracy: " << cost << "\n";
  }
  if (!a.scaling.empty()) {
    out << "\nscaling (best per host count):\n\n| hosts | best " << unit
        << "/s | vs one host fewer | configuration | bound |\n|---|---|---|---|---|\n";
    double prev = 0;
    int64_t stops = 0;
    for (const auto& [h, r] : a.scaling) {
      const Candidate& c = r.candidate;
      out << "| " << h << " | " << fmt(r.prediction.rate) << " | "
          << (prev > 0 ? fmt(r.prediction.rate / prev, 2) + "x" : "-") << " | " << shape_text(c) << " "
          << cell_partition(c) << ", " << (c.in_process ? "one process" : c.schedule) << ", M=" << c.micro_batches
          << ", v=" << c.chunks_per_rank << (c.in_process ? "" : ", " + std::to_string(c.bits) + " bits")
          << sync_text(c) << " | "
          << r.prediction.bound << " |\n";
      if (prev > 0 && r.prediction.rate < 1.05 * prev && stops == 0) stops = h;
      prev = r.prediction.rate;
    }
    if (stops > 0) {
      out << "\nadding a host stops paying at " << stops << " hosts (less than 5% over " << stops - 1 << ")\n";
    } else {
      out << "\nevery host of the range adds at least 5%\n";
    }
  }
  if (!a.feed_local_ranked.empty()) {
    const Ranked& best = a.feed_local_ranked.front();
    PlanAnswer local = a;
    local.sets.push_back("dataset_config.feed=local");
    out << "\nwith dataset_config.feed=local (every host reads its own copy of the data, at the same path; rank 0 "
           "sends row indices): best "
        << fmt(best.prediction.rate) << " " << unit << "/s";
    if (!a.ranked.empty()) out << " (" << fmt(best.prediction.rate / a.ranked.front().prediction.rate, 2) << "x the best above)";
    out << "\n  " << train_command(local, best.candidate) << "\n";
    if (!a.feed_local_scaling.empty()) {
      out << "  scaling:";
      double prev = 0;
      for (const auto& [h, r] : a.feed_local_scaling) {
        out << (prev > 0 ? ", " : " ") << h << " host" << (h > 1 ? "s " : " ") << fmt(r.prediction.rate);
        if (prev > 0) out << " (" << fmt(r.prediction.rate / prev, 2) << "x)";
        prev = r.prediction.rate;
      }
      out << "\n";
    }
  }
}

}  // namespace arceus::plan
