#include "planner/calibration.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/atomic_file.h"
#include "planner/planner.h"

namespace arceus::plan {

using json = nlohmann::json;

namespace {

const std::vector<double>& series(const LayerTiming& t, char kind) {
  switch (kind) {
    case 'F': return t.f;
    case 'B': return t.b;
    case 'I': return t.i;
    case 'W': return t.w;
  }
  throw PlanError(std::string("[plan] unknown action kind '") + kind + "'");
}

std::map<int, double> bits_map(const json& j) {
  std::map<int, double> out;
  for (const auto& [k, v] : j.items()) out[std::stoi(k)] = v.get<double>();
  return out;
}

json bits_json(const std::map<int, double>& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[std::to_string(k)] = v;
  return j;
}

}  // namespace

double layer_seconds(const Calibration& cal, const std::string& key, char kind, int64_t rows) {
  const auto it = cal.layers.find(key);
  if (it == cal.layers.end() || it->second.rows.empty()) {
    throw PlanError("[plan] the calibration has no measurement of layer '" + key + "' (run with --calibrate)");
  }
  const LayerTiming& t = it->second;
  const std::vector<double>& s = series(t, kind);
  const auto& r = t.rows;
  if (rows <= r.front()) return s.front() * double(rows) / double(r.front());
  if (rows >= r.back()) return s.back() * double(rows) / double(r.back());
  const size_t hi = size_t(std::lower_bound(r.begin(), r.end(), rows) - r.begin());
  if (r[hi] == rows) return s[hi];
  const size_t lo = hi - 1;
  const double a = double(rows - r[lo]) / double(r[hi] - r[lo]);
  return s[lo] + a * (s[hi] - s[lo]);
}

bool has_rows(const Calibration& cal, const std::string& key, int64_t rows) {
  const auto it = cal.layers.find(key);
  return it != cal.layers.end() && std::binary_search(it->second.rows.begin(), it->second.rows.end(), rows);
}

double codec_seconds(const Calibration& cal, int bits, double bytes_float, bool encode, bool stochastic) {
  const auto& m = encode ? (stochastic ? cal.encode_stochastic_s_per_mib : cal.encode_s_per_mib) : cal.decode_s_per_mib;
  const auto it = m.find(bits);
  if (it == m.end()) return 0;
  return it->second * bytes_float / double(1 << 20);
}

std::string to_json(const Calibration& cal) {
  json j;
  j["format"] = "arceus-calibration";
  j["version"] = 1;
  j["cpu"] = cal.cpu;
  j["blas"] = cal.blas;
  j["threads"] = cal.threads;
  j["measured_at"] = cal.measured_at;
  j["seconds"] = cal.seconds;
  j["latency_s"] = cal.latency_s;
  j["sgd_s_per_param"] = cal.sgd_s_per_param;
  j["adamw_s_per_param"] = cal.adamw_s_per_param;
  j["encode_s_per_mib"] = bits_json(cal.encode_s_per_mib);
  j["encode_stochastic_s_per_mib"] = bits_json(cal.encode_stochastic_s_per_mib);
  j["decode_s_per_mib"] = bits_json(cal.decode_s_per_mib);
  json layers = json::object();
  for (const auto& [key, t] : cal.layers) {
    layers[key] = {{"rows", t.rows}, {"f", t.f}, {"b", t.b}, {"i", t.i}, {"w", t.w}};
  }
  j["layers"] = layers;
  return j.dump(1) + "\n";
}

Calibration calibration_from_json(const std::string& text, const std::string& what) {
  try {
    const json j = json::parse(text);
    if (j.value("format", "") != "arceus-calibration") {
      throw PlanError("[plan] " + what + " is not an arceus calibration (no \"format\": \"arceus-calibration\")");
    }
    Calibration cal;
    cal.cpu = j.at("cpu").get<std::string>();
    cal.blas = j.at("blas").get<std::string>();
    cal.threads = j.at("threads").get<int64_t>();
    cal.measured_at = j.value("measured_at", "");
    cal.seconds = j.value("seconds", 0.0);
    cal.latency_s = j.at("latency_s").get<double>();
    cal.sgd_s_per_param = j.at("sgd_s_per_param").get<double>();
    cal.adamw_s_per_param = j.at("adamw_s_per_param").get<double>();
    cal.encode_s_per_mib = bits_map(j.at("encode_s_per_mib"));
    cal.encode_stochastic_s_per_mib = bits_map(j.at("encode_stochastic_s_per_mib"));
    cal.decode_s_per_mib = bits_map(j.at("decode_s_per_mib"));
    for (const auto& [key, t] : j.at("layers").items()) {
      LayerTiming lt;
      lt.rows = t.at("rows").get<std::vector<int64_t>>();
      lt.f = t.at("f").get<std::vector<double>>();
      lt.b = t.at("b").get<std::vector<double>>();
      lt.i = t.at("i").get<std::vector<double>>();
      lt.w = t.at("w").get<std::vector<double>>();
      const size_t n = lt.rows.size();
      if (lt.f.size() != n || lt.b.size() != n || lt.i.size() != n || lt.w.size() != n ||
          !std::is_sorted(lt.rows.begin(), lt.rows.end())) {
        throw PlanError("[plan] " + what + ": layer '" + key + "' has series of different lengths or unsorted rows");
      }
      cal.layers[key] = lt;
    }
    return cal;
  } catch (const json::exception& e) {
    throw PlanError("[plan] " + what + " is not a readable calibration: " + e.what());
  }
}

Calibration read_calibration_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw PlanError("[plan] cannot read the calibration '" + path + "': " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return calibration_from_json(text.str(), path);
}

void write_calibration_file(const std::string& path, const Calibration& cal) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);  // else write_atomically says
  write_atomically(path, to_json(cal));
}

std::string calibration_path(const std::string& cpu, const std::string& blas, int64_t threads) {
  std::string dir;
  if (const char* d = std::getenv("ARCEUS_CALIBRATION_DIR"); d && *d) {
    dir = d;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    dir = std::string(x) + "/arceus";
  } else {
    const char* home = std::getenv("HOME");
    dir = std::string(home && *home ? home : "/tmp") + "/.cache/arceus";
  }
  std::string name = "calibration-" + cpu + "-" + blas + "-" + std::to_string(threads);
  for (char& ch : name) {
    const bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
                    ch == '-' || ch == '_';
    if (!ok) ch = '_';
  }
  return dir + "/" + name + ".json";
}

}  // namespace arceus::plan
