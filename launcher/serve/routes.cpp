// The routing table and the plain request/response (see routes.h); the server's own
// endpoints: health, shutdown, the dashboard and the event streams.
#include "launcher/serve/routes.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <regex>

#include "launcher/assets.h"
#include "launcher/request_body.h"
#include "launcher/serve/handlers.h"
#include "launcher/serve/state.h"
#include "launcher/serve/views.h"

namespace arceus::serve {

using json = nlohmann::json;
using rest::HttpError;

std::string Request::header(const std::string& name) const {
  const auto it = headers.find(rest::lower(name));
  return it == headers.end() ? std::string() : it->second;
}

const std::string* Request::query_value(const std::string& key) const {
  const auto it = query.find(key);
  return it == query.end() ? nullptr : &it->second;
}

json Response::json_body() const { return json::parse(body, nullptr, false); }

Response json_reply(int status, const json& body) {
  Response res;
  res.status = status;
  res.body = body.dump(2) + "\n";
  return res;
}

Response error_reply(int status, const std::string& message) { return json_reply(status, {{"error", message}}); }

Response no_such_endpoint(const std::string& method, const std::string& path) {
  return error_reply(404, "[serve] no such endpoint: " + method + " " + path +
                              " (the endpoints are listed in docs/rest-api.md)");
}

const std::vector<Route>& routes() {
  using namespace handlers;
  static const std::vector<Route> table = {
      {"GET", "/healthz", healthz, false},
      {"GET", "/api/jobs", list_jobs, false},
      {"POST", "/api/jobs", create_job, true},
      {"GET", R"(/api/jobs/([^/]+))", get_job, false},
      {"GET", R"(/api/jobs/([^/]+)/metrics)", metrics, false},
      {"GET", R"(/api/jobs/([^/]+)/logs)", logs, false},
      {"POST", R"(/api/jobs/([^/]+)/stop)", stop_job, true},
      {"POST", R"(/api/network/initialize/([^/]+))", initialize, true},
      {"POST", R"(/api/network/train/([^/]+))", train, true},
      {"GET", "/api/devices", devices, false},
      {"GET", "/api/devices/connect-info", connect_info, false},
      {"POST", "/api/devices/register", register_device, true},
      {"POST", R"(/api/devices/([0-9]+)/heartbeat)", device_heartbeat, true},
      {"DELETE", R"(/api/devices/([^/]+))", unregister_device, true},
      {"GET", "/api/devices/teraflops", devices_teraflops, false},
      {"GET", "/api/teraflops", teraflops, false},
      {"GET", "/api/previous_teraflops", previous_teraflops, false},
      {"POST", "/api/shutdown", shutdown, true},
      // The dashboard (launcher/dashboard/, compiled in), its presets (the shipped configs), the
      // live events and the trained model answering.
      {"GET", "/", page, false},
      {"GET", R"(/dashboard/([A-Za-z0-9_.-]+))", dashboard_file, false},
      {"GET", "/api/presets", presets, false},
      {"GET", R"(/api/jobs/([^/]+)/events)", events, false},
      {"POST", R"(/api/jobs/([^/]+)/predict)", predict, true},
      {"POST", R"(/api/jobs/([^/]+)/generate)", generate, true},
  };
  return table;
}

const Route* match(const std::string& method, const std::string& path, std::vector<std::string>* params) {
  static const std::vector<std::regex> patterns = [] {
    std::vector<std::regex> p;
    for (const Route& r : routes()) p.emplace_back(r.pattern);
    return p;
  }();
  const std::vector<Route>& table = routes();
  for (size_t i = 0; i < table.size(); ++i) {
    std::smatch m;
    if (table[i].method != method || !std::regex_match(path, m, patterns[i])) continue;
    if (params) {
      params->clear();
      for (size_t g = 1; g < m.size(); ++g) params->push_back(m[g].str());
    }
    return &table[i];
  }
  return nullptr;
}

namespace {

// Constant-time comparison of the Authorization header with the expected one.
bool same_secret(const std::string& given, const std::string& expected) {
  if (given.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ expected[i]);
  return diff == 0;
}

void check_token(const ServeState& s, const Request& req) {
  if (s.token.empty()) return;
  const std::string given = req.header("Authorization");
  if (given.empty()) {
    throw HttpError(401, "[serve] this server requires a token on POST requests: send 'Authorization: Bearer <token>' "
                         "(the --token / ARCEUS_TOKEN it was started with)");
  }
  if (!same_secret(given, "Bearer " + s.token)) throw HttpError(401, "[serve] wrong token in the Authorization header");
}

}  // namespace

Response handle(ServeState& s, const Route& route, const Request& req) {
  try {
    if (route.mutating) check_token(s, req);
    return route.handler(s, req);
  } catch (const HttpError& e) {
    Response res = error_reply(e.status(), e.what());
    if (e.status() == 401) res.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"arceus\"");
    return res;
  } catch (const std::exception& e) {
    return error_reply(500, std::string("[serve] internal error: ") + e.what());
  }
}

Response dispatch(ServeState& s, Request req) {
  const Route* route = match(req.method, req.path, &req.params);
  if (!route) return no_such_endpoint(req.method, req.path);
  return handle(s, *route, req);
}

// ---------------------------------------------------------------------------------------------
// The server's own endpoints.

namespace handlers {

size_t index_query(const Request& req, const char* key, const char* what, size_t fallback, size_t max) {
  const std::string* v = req.query_value(key);
  if (!v) return fallback;
  if (v->empty() || v->size() > 12 || !std::all_of(v->begin(), v->end(), [](unsigned char c) { return std::isdigit(c); }))
    throw HttpError(400, std::string("[serve] ") + key + ": expected a non-negative integer" + what + ", got '" + *v + "'");
  return std::min<size_t>(std::stoull(*v), max);
}

Response healthz(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  return json_reply(200, health_json(s));
}

Response shutdown(ServeState& s, const Request&) {
  std::lock_guard<std::mutex> lock(s.mu);
  s.request_shutdown("POST /api/shutdown");
  const int current = s.jobs.current();
  return json_reply(200, {{"message", current ? "Shutting down: job " + std::to_string(current) +
                                                    " stops after the batches in flight, then every rank exits"
                                              : std::string("Shutting down: every rank exits")}});
}

namespace {

Response asset(const std::string& name) {
  const Asset* a = find_asset(name);
  if (!a) {
    const std::string_view dir = "launcher/dashboard/";
    std::string files;
    for (const Asset& f : assets())
      if (f.name.substr(0, dir.size()) == dir) files += (files.empty() ? "" : ", ") + std::string(f.name.substr(dir.size()));
    throw HttpError(404, "[serve] no such file: " + name + " (the dashboard has " + files + ")");
  }
  Response res;
  res.body = std::string(a->data);
  res.content_type = std::string(a->content_type);
  res.headers.emplace_back("Cache-Control", "no-cache");
  return res;
}

}  // namespace

Response page(ServeState&, const Request&) { return asset("launcher/dashboard/index.html"); }

Response dashboard_file(ServeState&, const Request& req) { return asset("launcher/dashboard/" + req.params.at(0)); }

// The shipped configs write to runs/<name>, outside the server's output root: a preset's
// output.dir becomes <root>/<name>, so that it is created as it stands.
Response presets(ServeState& s, const Request&) {
  static const std::regex dir_line(R"((\n\s+dir:\s*)runs/([^\s#]+))");
  json list = json::array();
  std::string root;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    root = s.output_root_arg.empty() ? std::string("runs/serve") : s.output_root_arg;
  }
  for (const Asset& a : assets()) {
    if (a.name.substr(0, 8) != "configs/") continue;
    const std::string yaml = std::regex_replace(std::string(a.data), dir_line, "$1" + root + "/$2");
    list.push_back({{"name", std::string(a.name.substr(8))}, {"yaml", yaml}});
  }
  return json_reply(200, {{"presets", list}});
}

// GET /api/jobs/<id>/events[?since=K]: server-sent events. First the job's state, then its
// steps from index K on (none without `since`), then every step, epoch, log line and state
// change as it happens; the stream ends after the job's final state. Each client has its own
// bounded queue (EventHub): the trainer never waits for a client.
Response events(ServeState& s, const Request& req) {
  std::lock_guard<std::mutex> lock(s.mu);
  const auto job = s.jobs.find(req.params.at(0));
  const size_t since = index_query(req, "since", " (steps the client has)", job->steps.size(), job->steps.size());
  std::vector<std::string> replay = {sse_frame("state", state_event(*job).dump())};
  replay.insert(replay.end(), job->step_frames.begin() + static_cast<std::ptrdiff_t>(since), job->step_frames.end());
  Response res;
  res.events = s.events.subscribe(job->id, replay, is_final(job->state));
  if (!res.events) {
    throw HttpError(503, "[serve] " + std::to_string(s.events.max_subscribers()) +
                             " event streams are open, the limit: poll GET /api/jobs/" + std::to_string(job->id) +
                             "/metrics and /logs instead");
  }
  res.events_job = job->id;
  res.content_type = "text/event-stream";
  res.headers.emplace_back("Cache-Control", "no-cache");
  return res;
}

}  // namespace handlers

}  // namespace arceus::serve
