// The REST shim's request bodies (see request_body.h); launcher/serve/routes.cpp calls these from
// its handlers.
#include "launcher/request_body.h"

#include <yaml-cpp/yaml.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>

namespace arceus::rest {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The dataset names this build reads (config's dataset_config.name). The original handed any
// name to torchvision, which downloads it; nothing is downloaded here.
const std::vector<std::string> kDatasetNames = {"MNIST", "FashionMNIST", "synthetic", "text"};

// Refuses dataset names this build has no loader for (400 listing the ones it has). A name
// that differs only in case is left to the config parser, which suggests the spelling.
void check_dataset_name(const std::string& name) {
  for (const auto& known : kDatasetNames)
    if (lower(known) == lower(name)) return;
  throw HttpError(400, "[serve] dataset_config.name = '" + name + "' is not available: this build reads " +
                           join(kDatasetNames) +
                           " (MNIST and FashionMNIST from their IDX files, synthetic generated, text for a "
                           "transformer). The original handed any torchvision name to torchvision, which downloads "
                           "it; nothing is downloaded here");
}

// Whether `section.key` exists in a YAML document, and its scalar. (yaml-cpp throws on type
// queries of a missing key's node, so every step checks IsDefined first.)
bool yaml_lookup(const YAML::Node& doc, const char* section, const char* key, std::string* scalar) {
  if (!doc.IsDefined() || !doc.IsMap()) return false;
  const YAML::Node s = doc[section];
  if (!s.IsDefined() || !s.IsMap()) return false;
  const YAML::Node v = s[key];
  if (!v.IsDefined()) return false;
  if (scalar && v.IsScalar()) *scalar = v.Scalar();
  return true;
}

// 400 when `body` nests deeper than the limit; `what` starts the message ("the JSON body").
void check_json_nesting(const std::string& body, const std::string& what, const Limits& limits) {
  const int depth = json_nesting(body);
  if (depth > limits.max_nesting) {
    throw HttpError(400, "[serve] " + what + " nests more than " + with_commas(limits.max_nesting) +
                             " levels of [ ] or { } (" + with_commas(depth) + " levels), " +
                             above_limit("max_nesting", limits.max_nesting) + raise_hint("max_nesting"));
  }
}

}  // namespace

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string json_type(const json& j) {
  if (j.is_array()) return "an array";
  if (j.is_string()) return "a string (" + j.dump() + ")";
  if (j.is_boolean()) return j.dump();
  if (j.is_null()) return "null";
  if (j.is_number()) return j.dump();
  return "an object";
}

// JSON nested deeper than any config is refused before it is parsed: nlohmann's serializer
// recurses, and a 1 MiB body of brackets would overflow the HTTP thread's stack. (YAML bodies:
// yaml-cpp stops at depth 2000, and parse_config checks the loaded tree against max_nesting.)
int json_nesting(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      depth = std::max(0, depth - 1);
    }
  }
  return deepest;
}

JobBody parse_job_body(const std::string& body_text, const std::string& content_type, const Limits& limits) {
  JobBody out;
  const bool yaml = lower(content_type).find("yaml") != std::string::npos;
  out.format = yaml ? "yaml" : "json";
  if (blank(body_text)) {
    throw HttpError(400, "[serve] empty request body: expected a job with model_config and dataset_config, e.g. "
                         R"({"model_config":{"layer_sizes":[784,128,64,10]},"dataset_config":{"name":"FashionMNIST"}})"
                         " or "
                         R"({"model_config":{"type":"transformer"},"dataset_config":{"source":"data/input.txt"}})"
                         " (or the YAML of a train config with Content-Type: application/yaml)");
  }
  std::string text = body_text;
  if (!yaml) {
    check_json_nesting(body_text, "the JSON body", limits);
    json body;
    try {
      body = json::parse(body_text);
    } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1E400
      throw HttpError(400, std::string("[serve] malformed JSON body: ") + e.what() +
                               " (a YAML body needs Content-Type: application/yaml)");
    }
    if (!body.is_object()) {
      throw HttpError(400, "[serve] the job body must be a JSON object with model_config, dataset_config, training, "
                           "... sections, got " + json_type(body));
    }
    const json output = body.value("output", json::object());
    out.sets_output_dir = output.is_object() && output.contains("dir");
    out.has_training = body.contains("training");
    const json dataset = body.value("dataset_config", json::object());
    if (dataset.is_object() && dataset.contains("name") && dataset["name"].is_string())
      check_dataset_name(dataset["name"].get<std::string>());
    // The body itself keeps the line numbers in the parser's messages; compact JSON is the
    // fallback for JSON that is not also valid YAML (e.g. indented with tabs).
    try {
      YAML::Load(body_text);
    } catch (const YAML::Exception&) {
      text = body.dump();
    }
  } else {
    YAML::Node doc;
    try {
      doc = YAML::Load(body_text);
    } catch (const YAML::Exception&) {
      // parse_config below reports it with the line and column
    }
    out.sets_output_dir = yaml_lookup(doc, "output", "dir", nullptr);
    out.has_training = doc.IsDefined() && doc.IsMap() && doc["training"].IsDefined();
    std::string name;
    if (yaml_lookup(doc, "dataset_config", "name", &name) && !name.empty()) check_dataset_name(name);
  }
  try {
    out.config = parse_config(text, {}, "<request body>", limits);
  } catch (const ConfigError& e) {
    throw HttpError(400, e.what());
  }
  return out;
}

std::vector<Override> parse_train_body(const std::string& body_text, const Limits& limits) {
  json body = json::object();
  if (!blank(body_text)) {
    check_json_nesting(body_text, "the train body", limits);
    try {
      body = json::parse(body_text);
    } catch (const json::exception& e) {
      throw HttpError(400, std::string("[serve] malformed JSON body: ") + e.what());
    }
    if (!body.is_object()) {
      throw HttpError(400, "[serve] the train body must be a JSON object like {\"epochs\": 10, \"learning_rate\": 0.1}, got " +
                               json_type(body));
    }
  }
  std::vector<Override> overrides;
  for (const auto& [key, value] : body.items()) {
    if (key == "epochs") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1)
        throw HttpError(400, "[serve] epochs: expected a positive integer, got " + json_type(value));
      overrides.push_back({"training.epochs", value.dump()});
    } else if (key == "learning_rate") {
      if (!value.is_number() || !(value.get<double>() > 0) || !std::isfinite(value.get<double>()))
        throw HttpError(400, "[serve] learning_rate: expected a positive number, got " + json_type(value));
      overrides.push_back({"training.learning_rate", value.dump()});
    } else {
      std::string hint = (key == "epoch" || key == "num_epochs") ? "; did you mean 'epochs'?"
                         : (key == "lr" || key == "learningRate") ? "; did you mean 'learning_rate'?"
                                                                  : "";
      throw HttpError(400, "[serve] " + key + ": unknown key in the train body" + hint +
                               " (allowed: epochs, learning_rate; other settings go in the job body)");
    }
  }
  return overrides;
}

json object_body(const std::string& body_text, const std::string& what, const std::string& example,
                 const Limits& limits) {
  if (blank(body_text)) throw HttpError(400, "[serve] empty " + what + " body: expected " + example);
  check_json_nesting(body_text, "the " + what + " body", limits);
  json body;
  try {
    body = json::parse(body_text);
  } catch (const json::exception& e) {
    throw HttpError(400, "[serve] malformed JSON " + what + " body: " + e.what() + "; expected " + example);
  }
  if (!body.is_object()) throw HttpError(400, "[serve] the " + what + " body must be a JSON object like " + example + ", got " + json_type(body));
  for (const auto& [key, value] : body.items()) {
    // A plain search: the key is the client's text (as a regex, "(" threw regex_error: a 500).
    if (example.find("\"" + key + "\"") == std::string::npos) {
      throw HttpError(400, "[serve] unknown key '" + key + "' in the " + what + " body: expected " + example);
    }
  }
  return body;
}

RegisterBody parse_register_body(const std::string& body_text) {
  const json body = json::parse(body_text, nullptr, false);
  if (!body.is_object()) throw HttpError(400, "[serve] the register body must be a JSON object {\"ip\", \"port\", \"job_id\"}");
  auto field = [&](const char* key) -> std::string {
    if (!body.contains(key) || body[key].is_null())
      throw HttpError(400, std::string("[serve] register: field '") + key + "' is missing (expected {\"ip\", \"port\", \"job_id\"})");
    const json& v = body[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
    throw HttpError(400, std::string("[serve] register: field '") + key + "' is " + json_type(v) +
                             ", expected a string or an integer");
  };
  RegisterBody out;
  out.ip = field("ip");
  out.port = field("port");
  out.job_id = field("job_id");
  return out;
}

HeartbeatBody parse_heartbeat_body(const std::string& body_text) {
  const json body = body_text.empty() ? json::object() : json::parse(body_text, nullptr, false);
  if (!body.is_object())
    throw HttpError(400, "[serve] the heartbeat body must be a JSON object {\"worker\": \"running\" | \"none\"}");
  HeartbeatBody out;
  const json worker = body.value("worker", json("none"));
  if (!worker.is_string() || (worker != "running" && worker != "none"))
    throw HttpError(400, "[serve] heartbeat: \"worker\" is " + worker.dump() + ", expected \"running\" or \"none\"");
  out.worker_running = worker == "running";
  const json exit_status = body.value("exit_status", json());
  if (!exit_status.is_null()) {
    if (!exit_status.is_number_integer() || exit_status.get<int64_t>() < 0 || exit_status.get<int64_t>() > 255)
      throw HttpError(400, "[serve] heartbeat: \"exit_status\" is " + exit_status.dump() + ", expected an integer 0..255");
    out.exit_status = exit_status.get<int>();
  }
  return out;
}

GenerateBody generate_fields(const json& body) {
  GenerateBody out;
  if (body.contains("prompt")) {
    if (!body["prompt"].is_string()) throw HttpError(400, "[serve] prompt: expected a string, got " + json_type(body["prompt"]));
    out.prompt = body["prompt"].get<std::string>();
    if (out.prompt.size() > kMaxPromptBytes) {
      throw HttpError(400, "[serve] prompt: " + std::to_string(out.prompt.size()) + " bytes, more than the limit of " +
                               std::to_string(kMaxPromptBytes));
    }
  }
  if (body.contains("tokens")) {
    const json& t = body["tokens"];
    if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > kMaxGenerateTokens) {
      throw HttpError(400, "[serve] tokens = " + t.dump() + ": expected an integer in 1.." +
                               std::to_string(kMaxGenerateTokens));
    }
    out.tokens = t.get<int64_t>();
  }
  if (body.contains("temperature")) {
    const json& t = body["temperature"];
    if (!t.is_number() || !(t.get<double>() >= 0.0 && t.get<double>() <= 10.0))
      throw HttpError(400, "[serve] temperature = " + t.dump() + ": expected a number in [0, 10] (0 = argmax)");
    out.temperature = t.get<double>();
  }
  if (body.contains("seed")) {
    const json& t = body["seed"];
    if (!t.is_number_integer() || t.get<int64_t>() < 0)
      throw HttpError(400, "[serve] seed = " + t.dump() + ": expected a non-negative integer");
    out.seed = t.get<uint64_t>();
  }
  return out;
}

std::vector<double> input_values(const json& pixels, int64_t width, bool are_pixels) {
  const std::string expected =
      width == 784 ? "28 rows of 28 values, or a flat list of 784" : "a flat list of " + std::to_string(width) + " values";
  if (!pixels.is_array() || pixels.empty())
    throw HttpError(400, "[serve] pixels: expected " + expected + ", got " + json_type(pixels));
  std::vector<double> out;
  auto take = [&](const json& v, const std::string& where) {
    if (!v.is_number()) throw HttpError(400, "[serve] " + where + ": expected a number, got " + json_type(v));
    const double x = v.get<double>();
    if (are_pixels ? !(x >= 0.0 && x <= 1.0) : !(std::isfinite(x) && std::fabs(x) <= kMaxFeature)) {
      throw HttpError(400, "[serve] " + where + " = " + v.dump() + ": expected " +
                               (are_pixels ? std::string("a pixel intensity in [0, 1] (the IDX byte / 255)")
                                           : "a finite feature value within +-" + fixed(kMaxFeature, 0)));
    }
    out.push_back(x);
  };
  if (pixels[0].is_array()) {
    const size_t cols = pixels[0].size();
    for (size_t r = 0; r < pixels.size(); ++r) {
      if (!pixels[r].is_array() || pixels[r].size() != cols) {
        throw HttpError(400, "[serve] pixels[" + std::to_string(r) + "]: expected a row of " + std::to_string(cols) +
                                 " values like pixels[0], got " +
                                 (pixels[r].is_array() ? std::to_string(pixels[r].size()) + " values" : json_type(pixels[r])));
      }
      if (static_cast<int64_t>(pixels.size() * cols) > width) break;  // named below
      for (size_t c = 0; c < cols; ++c)
        take(pixels[r][c], "pixels[" + std::to_string(r) + "][" + std::to_string(c) + "]");
    }
    if (static_cast<int64_t>(pixels.size() * cols) != width) {
      throw HttpError(400, "[serve] pixels: " + std::to_string(pixels.size()) + " rows of " + std::to_string(cols) +
                               " = " + std::to_string(pixels.size() * cols) + " values, but the model takes " +
                               std::to_string(width) + " (" + expected + ")");
    }
    return out;
  }
  if (static_cast<int64_t>(pixels.size()) != width) {
    throw HttpError(400, "[serve] pixels: " + std::to_string(pixels.size()) + " values, but the model takes " +
                             std::to_string(width) + " (" + expected + ")");
  }
  for (size_t i = 0; i < pixels.size(); ++i) take(pixels[i], "pixels[" + std::to_string(i) + "]");
  return out;
}

fs::path resolve_path(const std::string& p) {
  std::error_code ec;
  fs::path abs = fs::absolute(fs::path(p), ec);
  if (ec) abs = fs::path(p);
  fs::path canon = fs::weakly_canonical(abs, ec);
  if (ec) canon = abs.lexically_normal();
  std::string s = canon.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return fs::path(s);
}

bool is_under(const fs::path& path, const fs::path& root) {
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p) {
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

std::string roots_text(const std::vector<fs::path>& roots) {
  std::vector<std::string> r;
  for (const auto& p : roots) r.push_back(p.string());
  return join(r);
}

void check_allowed(const std::string& key, const std::string& path, const std::vector<fs::path>& roots) {
  const fs::path resolved = resolve_path(path);
  for (const auto& allowed : roots)
    if (is_under(resolved, allowed)) return;
  throw HttpError(400, "[serve] " + key + " = '" + path + "'" +
                           (resolved.string() != path ? " (" + resolved.string() + ")" : std::string()) +
                           " is outside the allowed data roots (" + roots_text(roots) +
                           "); start arceus serve with --data-root DIR to allow another directory");
}

WritePath resolve_for_writing(const std::string& path) {
  if (path.empty()) return {{}, "it is empty"};
  if (path.find('\0') != std::string::npos) return {{}, "it contains a NUL byte"};
  if (path.size() > kMaxOutputPath) return {{}, "it is longer than " + std::to_string(kMaxOutputPath) + " bytes"};
  fs::path abs(path);
  if (abs.is_relative()) {
    std::error_code ec;
    const fs::path cwd = fs::current_path(ec);
    if (ec) return {{}, "the working directory cannot be read (" + ec.message() + ")"};
    abs = cwd / abs;
  }
  // The components still to walk, front first; a symlink's target goes in front of the rest.
  std::deque<std::string> todo;
  for (const auto& c : abs.relative_path()) todo.push_back(c.string());
  fs::path at = "/";  // reached so far: no symlink, '.' or '..' in it
  int links = 0;
  while (!todo.empty()) {
    const std::string c = std::move(todo.front());
    todo.pop_front();
    if (c.empty() || c == ".") continue;
    if (c == "..") {  // `at` has no symlink in it: its parent is the directory '..' names
      at = at.parent_path();
      continue;
    }
    const fs::path next = at / c;
    struct stat st {};
    if (::lstat(next.c_str(), &st) != 0) {
      if (errno == ENOENT) {  // made by create_directories: a plain directory
        at = next;
        continue;
      }
      return {{}, next.string() + " cannot be examined (" + std::strerror(errno) + ")"};
    }
    if (S_ISLNK(st.st_mode)) {
      if (++links > kMaxSymlinks) return {{}, "more than " + std::to_string(kMaxSymlinks) + " symlinks on the way (a loop?)"};
      std::string target(kMaxOutputPath + 1, '\0');  // (st_size is 0 for /proc's links)
      const ssize_t n = ::readlink(next.c_str(), target.data(), target.size());
      if (n < 0 || size_t(n) >= target.size()) return {{}, "the symlink " + next.string() + " cannot be read"};
      target.resize(size_t(n));
      const fs::path t(target);
      if (t.is_absolute()) at = "/";
      std::vector<std::string> parts;
      for (const auto& tc : t.relative_path()) parts.push_back(tc.string());
      todo.insert(todo.begin(), parts.begin(), parts.end());
      continue;
    }
    if (!todo.empty() && !S_ISDIR(st.st_mode)) {
      // Only '..' and '.' could follow a file, and the trainer's create_directories fails there.
      return {{}, next.string() + " is not a directory"};
    }
    at = next;
  }
  return {at, ""};
}

namespace {

// `dir` resolved when it lies strictly inside `root`; else empty. `resolved`: the resolution
// (its error when there is none).
fs::path resolve_inside(const fs::path& root, const std::string& dir, WritePath* resolved) {
  *resolved = resolve_for_writing(dir);
  if (!resolved->error.empty()) return {};
  const fs::path& p = resolved->path;
  if (p == root || !is_under(p, root)) return {};
  return p;
}

}  // namespace

bool output_dir_inside(const fs::path& root, const std::string& dir) {
  WritePath resolved;
  return !resolve_inside(root, dir, &resolved).empty();
}

fs::path check_output_dir(const std::string& key, const std::string& path, const fs::path& root) {
  WritePath resolved;
  fs::path inside = resolve_inside(root, path, &resolved);
  if (!inside.empty()) return inside;
  const std::string value = "[serve] " + key + " = '" + path + "'";
  if (!resolved.error.empty()) {
    throw HttpError(400, value + " cannot be checked against the output root (" + root.string() +
                             "): " + resolved.error);
  }
  const std::string shown = resolved.path.string() != path ? " (" + resolved.path.string() + ")" : std::string();
  if (resolved.path == root) {
    throw HttpError(400, value + shown + " is the output root itself (" + root.string() +
                             "): name a directory inside it, or leave output.dir out (the job then writes "
                             "job-<id> there)");
  }
  throw HttpError(400, value + shown + " is outside the output root (" + root.string() +
                           "); name a directory inside it or leave output.dir out, or start arceus serve with "
                           "--output-root DIR to allow another directory");
}

}  // namespace arceus::rest
