#include "launcher/run_report.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include "common/atomic_file.h"
#include "common/utc.h"
#include "config/config.h"
#include "launcher/assets.h"
#include "ranks/job.h"
#include "storage/storage.h"

namespace arceus {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("[report] cannot read '" + p.string() + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Text placed inside <script>: "</" would end the element early.
std::string script_safe(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '<' && i + 1 < text.size() && text[i + 1] == '/') {
      out += "<\\/";
      ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string asset_text(const char* name) {
  const Asset* a = find_asset(name);
  if (!a) throw std::logic_error(std::string("[report] the binary has no ") + name);
  return std::string(a->data);
}

std::string base64(std::string_view bytes) {
  static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k) v = (v << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out += k <= n ? digits[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

// The dashboard's modules import each other by bare specifiers, 'dashboard/state.js' for
// launcher/dashboard/state.js; index.html maps that prefix to the server's /dashboard/. A report
// has no server: its import map maps each module to a data: URL of its text, so the page runs
// from the one file (a data: URL cannot be the base of a relative import, hence bare specifiers).
std::string dashboard_import_map() {
  const std::string_view dir = "launcher/dashboard/";
  json imports = json::object();
  for (const Asset& a : assets()) {
    const std::string_view name = a.name;
    if (name.substr(0, dir.size()) != dir || name.size() < 3 || name.substr(name.size() - 3) != ".js") continue;
    imports["dashboard/" + std::string(name.substr(dir.size()))] = "data:text/javascript;base64," + base64(a.data);
  }
  return json{{"imports", imports}}.dump();
}

// The steps table of metrics.h5, as GET .../metrics lists steps.
json metrics_steps(const fs::path& path, const Config& c) {
  const std::string p = path.string();
  const auto epoch = read_metrics_column(p, "steps", "epoch");
  const auto step = read_metrics_column(p, "steps", "step");
  const auto loss = read_metrics_column(p, "steps", "loss");
  const auto accuracy = read_metrics_column(p, "steps", "accuracy");
  const auto sps = read_metrics_column(p, "steps", "samples_per_second");
  const auto raw = read_metrics_column(p, "steps", "bytes_raw");
  const auto wire = read_metrics_column(p, "steps", "bytes_wire");
  const size_t n = std::min({epoch.size(), step.size(), loss.size(), accuracy.size(), sps.size(), raw.size(), wire.size()});
  const double seq = is_transformer(c) ? static_cast<double>(c.model.context) : 1.0;
  json steps = json::array();
  for (size_t i = 0; i < n; ++i) {
    steps.push_back({{"epoch", static_cast<int64_t>(epoch[i])},
                     {"step", static_cast<int64_t>(step[i])},
                     {"loss", loss[i]},
                     {"accuracy", accuracy[i]},
                     {"samples_per_second", sps[i]},
                     {"tokens_per_second", sps[i] * seq},
                     {"bytes_raw", raw[i]},
                     {"bytes_wire", wire[i]}});
  }
  return steps;
}

}  // namespace

std::string report_data_json(const std::string& run_dir, std::string* warning) {
  const fs::path dir(run_dir);
  const fs::path summary_path = dir / "summary.json";
  if (!fs::exists(summary_path)) {
    throw std::runtime_error("[report] '" + summary_path.string() +
                             "' does not exist: RUN_DIR is a run's output.dir (it holds summary.json and metrics.h5)");
  }
  json summary;
  try {
    summary = json::parse(read_file(summary_path));
  } catch (const json::parse_error& e) {
    throw std::runtime_error("[report] '" + summary_path.string() + "' is not valid JSON: " + e.what());
  }
  if (!summary.is_object() || !summary.contains("config") || !summary["config"].is_string()) {
    throw std::runtime_error("[report] '" + summary_path.string() + "' is not an arceus run summary (no config)");
  }
  const Config c = parse_config(summary["config"].get<std::string>(), {}, summary_path.string() + " (config)");
  const json epochs = summary.value("epochs", json::array());

  json steps = json::array();
  const fs::path metrics_path = dir / "metrics.h5";
  try {
    if (!fs::exists(metrics_path)) throw std::runtime_error("'" + metrics_path.string() + "' does not exist");
    steps = metrics_steps(metrics_path, c);
  } catch (const std::exception& e) {
    // The epochs' step losses are in summary.json too (no accuracy per step).
    if (warning) *warning = std::string("[report] per-step accuracy and rates left out: ") + e.what();
    for (const json& e : epochs) {
      int64_t k = 0;
      for (const json& l : e.value("step_losses", json::array()))
        steps.push_back({{"epoch", e.value("epoch", 0)}, {"step", ++k}, {"loss", l}});
    }
  }

  json model = {{"type", c.model.type}};
  if (!is_transformer(c)) model["layer_sizes"] = c.model.layer_sizes;
  json plan = json::array();
  for (json st : summary.value("stages", json::array())) {
    const json layers = st.value("layers", json());
    if (layers.is_array() && layers.size() == 2 && layers[0].is_number_integer() && layers[1].is_number_integer()) {
      const int64_t first = layers[0].get<int64_t>(), last = layers[1].get<int64_t>();
      if (is_transformer(c)) {
        std::vector<std::string> names;
        for (int64_t i = first; i <= last; ++i) names.push_back(transformer_layer_name(c, i));
        st["layer_names"] = names;
      } else if (last + 1 < static_cast<int64_t>(c.model.layer_sizes.size()) && first >= 0) {
        st["layer_sizes"] = std::vector<int64_t>(c.model.layer_sizes.begin() + first, c.model.layer_sizes.begin() + last + 2);
      }
    }
    plan.push_back(st);
  }
  const json final_result = summary.value("final", json());
  const std::string name = fs::absolute(dir).lexically_normal().filename().string();
  json job = {{"id", name},
              {"job_id", name},
              {"state", summary.value("state", "unknown")},
              {"status", summary.value("state", "unknown")},
              {"model_config", model},
              {"dataset_config", {{"name", c.dataset.name}}},
              {"dataset", summary.value("dataset", "")},
              {"epochs", c.training.epochs},
              {"epochs_completed", epochs.size()},
              {"plan", plan},
              {"ranks", summary.value("ranks", json::array())},
              {"final", final_result},
              {"seconds", summary.value("seconds", 0.0)},
              {"world_size", summary.value("world_size", 0)},
              {"schedule", summary.value("schedule", "")},
              {"micro_batches", summary.value("micro_batches", 0)},
              {"quantization_bits", summary.value("quantization_bits", 0)},
              {"blas", summary.value("blas", "")},
              {"config_yaml", summary["config"]},
              {"output_dir", run_dir}};
  if (!steps.empty()) {
    json progress = steps.back();
    progress["epochs"] = c.training.epochs;
    job["progress"] = progress;
  }
  json metrics = {{"state", job["state"]},
                  {"status", job["state"]},
                  {"steps", steps},
                  {"epochs", epochs},
                  {"final", final_result},
                  {"bytes_raw", summary.value("bytes_raw", 0.0)},
                  {"bytes_wire", summary.value("bytes_wire", 0.0)},
                  {"wire_ratio", summary.value("wire_ratio", 1.0)}};
  // A batch run keeps its log in the launcher's output, not in the run directory: the epochs'
  // lines stand in for it.
  json logs = json::array();
  for (const json& e : epochs) {
    char line[256];
    std::snprintf(line, sizeof(line), "epoch %lld/%lld: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | %.1f s, %.0f %s/s",
                  (long long)e.value("epoch", 0), (long long)c.training.epochs, e.value("train_loss", 0.0),
                  100 * e.value("train_accuracy", 0.0), e.value("val_loss", 0.0), 100 * e.value("val_accuracy", 0.0),
                  e.value("seconds", 0.0), is_transformer(c) ? e.value("tokens_per_second", 0.0) : e.value("samples_per_second", 0.0),
                  is_transformer(c) ? "tokens" : "samples");
    logs.push_back(line);
  }
  const json data = {{"report", true}, {"run_dir", run_dir}, {"generated_at", utc_now()},
                     {"job", job},     {"metrics", metrics}, {"logs", logs}};
  return data.dump();
}

int run_report(const ReportOptions& options) {
  try {
    std::string warning;
    const std::string data = report_data_json(options.run_dir, &warning);
    if (!warning.empty()) std::fprintf(stderr, "warning: %s\n", warning.c_str());
    const fs::path out = options.output.empty() ? fs::path(options.run_dir) / "report.html" : fs::path(options.output);
    std::string html = "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>arceus report: " +
                       options.run_dir + "</title>\n<style>\n" + asset_text("launcher/dashboard/style.css") +
                       "\n</style>\n</head>\n<body>\n<div id=\"app\"></div>\n"
                       "<script id=\"arceus-report\" type=\"application/json\">" +
                       script_safe(data) + "</script>\n<script type=\"importmap\">" + script_safe(dashboard_import_map()) +
                       "</script>\n<script type=\"module\">import 'dashboard/app.js';</script>\n</body>\n</html>\n";
    try {
      write_atomically(out.string(), html);
    } catch (const FileError& e) {
      throw std::runtime_error(std::string("[report] ") + e.what());
    }
    const json parsed = json::parse(data);
    std::printf("report: %s (%zu steps, %zu epochs)\n", out.string().c_str(), parsed["metrics"]["steps"].size(),
                parsed["metrics"]["epochs"].size());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace arceus
