// The shim's HTTP side: cpp-httplib serving routes() (routes.h) on its own thread pool. The
// only file that sees httplib is http.cpp.
#pragma once

#include <memory>
#include <string>

namespace arceus::serve {

struct ServeState;

class HttpServer {
 public:
  explicit HttpServer(ServeState& state);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds host:port (0: any free port); returns the port, or -1 when it cannot.
  int bind(const std::string& host, int port);
  // Serves on a thread of its own until stop(). Should the server end by itself, the state
  // is asked to shut down (the ranks end rather than serve nothing).
  void start();
  // Stops serving and joins the thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arceus::serve
