// The only httplib file (see http.h): the server's limits and timeouts, the routing table
// registered with the library, framework errors in the shim's {"error"} shape, the access
// log, body-less POSTs, and the event streams' chunked writes.
#include "launcher/serve/http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <mutex>
#include <thread>

#include "launcher/request_body.h"
#include "launcher/serve/routes.h"
#include "launcher/serve/state.h"

namespace arceus::serve {

namespace {

constexpr size_t kMaxBodyBytes = 1 << 20;  // larger request bodies are refused with 413
constexpr time_t kKeepAliveSeconds = 2;    // bounds how long stop() waits for idle connections
// Request threads. A connection holds one while it is open: a keep-alive client between its
// requests (up to kKeepAliveSeconds idle), an event stream for its whole life (at most
// EventHub's 32), a client that sends its request slowly until it is complete or silent for
// kReadTimeoutSeconds. More connections than threads wait in the accept queue.
constexpr int kHttpThreads = 128;
constexpr time_t kReadTimeoutSeconds = 5;    // a connection silent this long is closed
constexpr int kListenBacklog = 256;          // connections waiting to be accepted
constexpr size_t kKeepAliveRequests = 1000;  // requests per keep-alive connection (the library's default: 5)
constexpr time_t kWriteTimeoutSeconds = 5;   // a client that reads nothing this long is dropped
constexpr int kEventWaitMillis = 250;        // an event stream checks for shutdown this often
constexpr int kEventPingMillis = 15000;      // and sends a comment line after this long without events

void send_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(nlohmann::json{{"error", message}}.dump(2) + "\n", "application/json");
}

Request plain_request(const httplib::Request& req) {
  Request r;
  r.method = req.method;
  r.path = req.path;
  for (size_t g = 1; g < req.matches.size(); ++g) r.params.push_back(req.matches[g].str());
  for (const auto& [key, value] : req.params) r.query.emplace(key, value);  // the first of a repeated key
  for (const auto& [name, value] : req.headers) r.headers.emplace(rest::lower(name), value);
  r.body = req.body;
  return r;
}

// An event stream: frames from the subscriber's queue until the job's end, the client's
// leaving or shutdown; a comment line now and then keeps proxies from timing out.
void stream_events(ServeState& s, const Response& r, httplib::Response& res) {
  const std::shared_ptr<EventHub::Subscriber> sub = r.events;
  const int id = r.events_job;
  auto idle = std::make_shared<int>(0);
  res.set_chunked_content_provider(
      r.content_type,
      [&s, sub, idle](size_t, httplib::DataSink& sink) {
        std::string frame;
        switch (sub->next(&frame, std::chrono::milliseconds(kEventWaitMillis))) {
          case EventHub::Next::Event:
            *idle = 0;
            return sink.write(frame.data(), frame.size());  // false: the client is gone
          case EventHub::Next::End:
            sink.done();
            return true;
          case EventHub::Next::Timeout:
            break;
        }
        if (s.stopping) {
          sink.done();
          return true;
        }
        if (++*idle * kEventWaitMillis >= kEventPingMillis) {
          *idle = 0;
          static const std::string ping = ": ping\n\n";
          return sink.write(ping.data(), ping.size());
        }
        return true;
      },
      [&s, sub, id](bool) { s.events.unsubscribe(id, sub); });
}

void send_response(ServeState& s, const Response& r, httplib::Response& res) {
  res.status = r.status;
  for (const auto& [name, value] : r.headers) res.set_header(name, value);
  if (r.events) return stream_events(s, r, res);
  res.set_content(r.body, r.content_type);
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(ServeState& state) : s(state) {}
  ServeState& s;
  httplib::Server server;
  std::thread thread;
  int listen_fd = -1;

  httplib::Server::Handler handler(const Route& route) {
    return [this, &route](const httplib::Request& req, httplib::Response& res) {
      send_response(s, handle(s, route, plain_request(req)), res);
    };
  }

  void install() {
    server.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
    // The library listens with a backlog of 5 (compiled in): 50 dashboards reconnecting at once
    // would see SYNs dropped and wait a second for the retry. Linux lets listen() be called
    // again on the bound socket to raise it (bind does).
    server.set_socket_options([this](socket_t sock) {
      httplib::default_socket_options(sock);
      listen_fd = sock;
    });
    server.set_payload_max_length(kMaxBodyBytes);
    server.set_keep_alive_timeout(kKeepAliveSeconds);
    server.set_keep_alive_max_count(kKeepAliveRequests);
    server.set_read_timeout(kReadTimeoutSeconds, 0);
    server.set_write_timeout(kWriteTimeoutSeconds, 0);
    // Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
    // client's delayed ACK hold a small answer back ~40 ms.
    server.set_tcp_nodelay(true);
    // Framework errors (unknown path, body too large, bad request line) in the same shape.
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 404) {
        const Response r = no_such_endpoint(req.method, req.path);
        res.set_content(r.body, r.content_type);
      } else if (res.status == 413 &&
                 rest::lower(req.get_header_value("Content-Type")).find("x-www-form-urlencoded") != std::string::npos) {
        // httplib's own limit for form bodies: what `curl -d` sends without -H "Content-Type".
        send_error(res, 413, "[serve] request body too large for Content-Type application/x-www-form-urlencoded "
                             "(curl -d without -H): the limit is 8 KiB; send -H 'Content-Type: application/json' "
                             "(or application/yaml) for up to 1 MiB");
      } else if (res.status == 413) {
        send_error(res, 413, "[serve] request body too large: the limit is 1 MiB");
      } else {
        send_error(res, res.status, "[serve] bad request (HTTP " + std::to_string(res.status) + ")");
      }
    });
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown exception";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, 500, "[serve] internal error: " + what);
    });
    if (!s.quiet) {
      server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        // The werkzeug access-log line the original printed.
        const std::time_t t = std::time(nullptr);
        std::tm tm{};
        localtime_r(&t, &tm);
        char when[64];
        std::strftime(when, sizeof(when), "%d/%b/%Y %H:%M:%S", &tm);
        std::printf("%s - - [%s] \"%s %s %s\" %d -\n", req.remote_addr.c_str(), when, req.method.c_str(),
                    req.path.c_str(), req.version.c_str(), res.status);
        std::fflush(stdout);
      });
    }

    // `curl -X POST URL` (the original's initialize command) sends neither Content-Length nor a
    // chunked body; httplib would wait for a body until the connection closes. Such a request
    // has an empty body: dispatch it here, through the same routes.
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.method != "POST" || req.has_header("Content-Length") || req.has_header("Transfer-Encoding"))
        return httplib::Server::HandlerResponse::Unhandled;
      Request r = plain_request(req);
      const Route* route = match(r.method, r.path, &r.params);
      send_response(s, route ? handle(s, *route, r) : no_such_endpoint(r.method, r.path), res);
      return httplib::Server::HandlerResponse::Handled;
    });

    for (const Route& route : routes()) {
      const std::string method = route.method;
      if (method == "GET") server.Get(route.pattern, handler(route));
      else if (method == "POST") server.Post(route.pattern, handler(route));
      else if (method == "DELETE") server.Delete(route.pattern, handler(route));
    }
  }
};

HttpServer::HttpServer(ServeState& state) : impl_(std::make_unique<Impl>(state)) { impl_->install(); }

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind(const std::string& host, int port) {
  bool bound = false;
  if (port == 0) {
    port = impl_->server.bind_to_any_port(host);
    bound = port > 0;
  } else {
    bound = impl_->server.bind_to_port(host, port);
  }
  if (!bound) return -1;
  if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, kListenBacklog);
  return port;
}

void HttpServer::start() {
  Impl& i = *impl_;
  i.thread = std::thread([&i] {
    i.server.listen_after_bind();
    std::lock_guard<std::mutex> lock(i.s.mu);
    i.s.request_shutdown("the HTTP server stopped unexpectedly");  // not asked to stop: end the ranks
  });
}

void HttpServer::stop() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace arceus::serve
