// The one place that calls MPI. Everything else sees Comm and Request.
//
// Contract: Comm is used from one thread only (rank 0's main thread in `serve`): MPI is
// initialised with MPI_THREAD_FUNNELED. Waiting never busy-polls for long: wait() spins
// briefly, then sleeps with a growing back-off (capped at kMaxSleepMicros), so an idle rank
// leaves its core to the ranks that compute.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace arceus {

class MpiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Owns a pending non-blocking send or receive and its buffer. Move-only. Must be completed
// (Comm::wait) before it is destroyed; destroying a pending request outside of error
// unwinding is a programming error and aborts with a message.
class Request {
 public:
  Request() = default;
  Request(Request&& other) noexcept;
  Request& operator=(Request&& other) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  ~Request();

  bool pending() const { return active_; }
  std::vector<uint8_t>& buffer() { return buffer_; }
  const std::vector<uint8_t>& buffer() const { return buffer_; }
  size_t received_bytes() const { return received_; }  // after a receive completes
  int peer() const { return peer_; }
  int tag() const { return tag_; }

 private:
  friend class Comm;
  void* handle_ = nullptr;  // MPI_Request, heap-held so this header stays MPI-free
  bool active_ = false;
  bool is_recv_ = false;
  int peer_ = -1;
  int tag_ = -1;
  size_t received_ = 0;
  std::vector<uint8_t> buffer_;
  void release() noexcept;
};

class Comm {
 public:
  // Initialises MPI (FUNNELED) if needed. Safe without mpirun: a singleton world of 1.
  static Comm& init(int* argc, char*** argv);
  static Comm& world();  // after init
  static bool initialized();
  static void finalize();

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& host() const { return host_; }
  // Ranks of this world on the same host as this rank (shared-memory node), and this rank's
  // index among them.
  int local_size() const { return local_size_; }
  int local_rank() const { return local_rank_; }

  Request isend(std::vector<uint8_t> bytes, int dest, int tag);
  Request irecv(size_t bytes, int source, int tag);
  bool test(Request& request);
  // Completes the request, yielding while waiting. Adds the time spent to wait_seconds().
  void wait(Request& request);
  void wait_all(std::vector<Request>& requests);

  // Root's bytes (any size) to every rank, waiting with back-off.
  void broadcast(std::vector<uint8_t>& bytes, int root);
  // Every rank's host name, at rank index (collective).
  std::vector<std::string> all_hosts();
  void barrier();

  [[noreturn]] void abort(int code);

  double wait_seconds() const { return wait_seconds_; }
  void reset_wait_seconds() { wait_seconds_ = 0; }

  static constexpr int kMaxSleepMicros = 200;

 private:
  Comm() = default;
  void wait_raw(void* mpi_request, const char* what, int peer, int tag);
  int rank_ = 0;
  int size_ = 1;
  int local_size_ = 1;
  int local_rank_ = 0;
  std::string host_;
  double wait_seconds_ = 0;
};

}  // namespace arceus
