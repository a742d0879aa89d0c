// The shim's endpoints as functions of a plain request, returning a plain response: no HTTP
// library here (launcher/serve/http.cpp carries them over cpp-httplib), so a test calls them
// directly (tests/test_serve_states.cpp). docs/rest-api.md documents every endpoint.
//
// Handlers run on the HTTP threads and never call MPI: they take the server's lock, read or
// change the records (a job's state through transition() only), queue jobs for the main
// thread and answer. A refusal is an HttpError (launcher/request_body.h), answered as
// {"error": message} with its status.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "launcher/serve/events.h"

namespace arceus::serve {

struct ServeState;

struct Request {
  std::string method;  // "GET", "POST", "DELETE"
  std::string path;
  std::vector<std::string> params;            // the path pattern's captures, in order
  std::map<std::string, std::string> query;   // ?key=value (the first of a repeated key)
  std::map<std::string, std::string> headers; // names in lower case
  std::string body;

  std::string header(const std::string& name) const;  // "" when absent (any case)
  const std::string* query_value(const std::string& key) const;  // nullptr when absent
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // GET /api/jobs/<id>/events: the stream to send (text/event-stream) instead of `body`, the
  // subscriber of job `events_job` that http.cpp reads until it ends and then unsubscribes.
  std::shared_ptr<EventHub::Subscriber> events;
  int events_job = 0;

  nlohmann::json json_body() const;  // the body parsed (tests); discarded when it is no JSON
};

// {body as indented JSON}\n with `status`.
Response json_reply(int status, const nlohmann::json& body);
// {"error": message}.
Response error_reply(int status, const std::string& message);

using Handler = Response (*)(ServeState&, const Request&);

struct Route {
  const char* method;   // "GET", "POST" or "DELETE"
  const char* pattern;  // a regex of the whole path; its groups become Request::params
  Handler handler;
  bool mutating;        // needs the token when the server has one
};

// Every endpoint, in matching order (the first route whose method and pattern match serves).
const std::vector<Route>& routes();

// The route for method + path, its captures in *params; nullptr when none.
const Route* match(const std::string& method, const std::string& path, std::vector<std::string>* params);

// One request through `route`: the token check (mutating routes, when the server has a token),
// then the handler; an HttpError is answered {"error": ...} with its status (401 with
// WWW-Authenticate), any other exception 500.
Response handle(ServeState& s, const Route& route, const Request& req);

// match + handle; no route: 404 naming the endpoint.
Response dispatch(ServeState& s, Request req);

// The answer to a path no route serves.
Response no_such_endpoint(const std::string& method, const std::string& path);

}  // namespace arceus::serve
