// How ranks exchange bytes: one small interface, two implementations.
//   MpiTransport (mpi_transport.cpp): the ranks of an MPI world, one per process; the only
//     file that includes <mpi.h>.
//   LoopbackTransport (loopback.h): ranks as threads of one process, messages handed over in
//     memory. The one-process reference run and the in-process tests use it, so they go
//     through the same stage and orchestrator code as a distributed run.
//
// Contract: a Transport is used from one thread only (its rank's thread; with MPI rank 0's
// main thread in `serve`, MPI being initialised MPI_THREAD_FUNNELED). Point-to-point messages
// between one (source, tag) pair are delivered in the order sent (MPI's non-overtaking
// rule); receives are matched by exact source and tag, never a wildcard. Waiting never
// busy-polls for long: wait() spins briefly, then sleeps with a growing back-off (capped at
// kMaxSleepMicros; kLongSleepMicros once the wait has lasted kLongWaitMicros), so a waiting
// rank leaves its core to the ranks that compute.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace arceus {

// A failed send, receive, wait or MPI call. The message says everything; the fields are for
// code that acts on the failure (the REST shim names the device behind `peer`).
class TransportError : public std::runtime_error {
 public:
  explicit TransportError(const std::string& message, int peer = -1, int tag = -1, std::string operation = "",
                          bool secondary = false)
      : std::runtime_error(message), peer_(peer), tag_(tag), operation_(std::move(operation)), secondary_(secondary) {}
  int peer() const { return peer_; }                          // the other rank, -1 when none
  int tag() const { return tag_; }                            // -1 when none
  const std::string& operation() const { return operation_; }  // "send", "receive", "MPI_Isend", ...
  // This rank's wait ended because another rank of the world failed first (in-process).
  bool secondary() const { return secondary_; }

 private:
  int peer_, tag_;
  std::string operation_;
  bool secondary_;
};

// Owns a pending non-blocking send or receive and its buffer. Move-only. Must be completed
// (Transport::wait) before it is destroyed; destroying a pending request outside of error
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
  friend class Transport;
  std::shared_ptr<void> impl_;  // the implementation's handle (MPI_Request, loopback slot)
  bool active_ = false;
  bool is_recv_ = false;
  int peer_ = -1;
  int tag_ = -1;
  size_t received_ = 0;
  std::vector<uint8_t> buffer_;
  void release() noexcept;
};

// Some of the world's ranks that run collectives together (with MPI a communicator made by
// MPI_Comm_split, freed with the Group). Made by Transport::split; used from its rank's thread,
// completed with that transport's wait. Destroy it before its transport.
class Group {
 public:
  virtual ~Group() = default;
  int rank() const { return rank_; }  // this rank's index in the group
  int size() const { return static_cast<int>(members_.size()); }
  const std::vector<int>& members() const { return members_; }  // transport ranks, by index
  // The sum over the group of every member's float32 values (the same count on each), non-
  // blocking: once the transport's wait completes the request, its buffer holds the sum, the
  // same bits on every member. Every member starts its collectives in the same order (MPI's
  // rule for a communicator).
  virtual Request iallreduce_sum(std::vector<uint8_t> floats) = 0;

 protected:
  int rank_ = 0;
  std::vector<int> members_;
};

class Transport {
 public:
  virtual ~Transport() = default;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& host() const { return host_; }
  // World ranks that share this rank's node (shared memory), ascending; includes this rank.
  const std::vector<int>& node_ranks() const { return node_ranks_; }
  // True when ranks are threads of one process (thread counts and CPU pinning are then the
  // process's, not a rank's).
  virtual bool in_process() const { return false; }

  virtual Request isend(std::vector<uint8_t> bytes, int dest, int tag) = 0;
  virtual Request irecv(size_t bytes, int source, int tag) = 0;
  // Completes the request if it is done (a receive: buffer() and received_bytes() are set).
  virtual bool test(Request& request) = 0;
  // How a wait leaves the core: Patient spins briefly, then sleeps with a growing back-off (a rank
  // waiting out a bubble or a batch leaves its core to ranks that compute); Busy yields for 1 ms,
  // then tests every ~20 us, for a wait whose bytes move only while this rank is inside MPI (Open MPI's
  // TCP transport progresses a large message, or each round of a collective, only in MPI calls:
  // the replicas' gradient sums waited 4.7 ms per step behind the sleeps, on an unlimited link).
  enum class Pace { Patient, Busy };
  // Completes the request, yielding while waiting. Adds the time spent to wait_seconds().
  void wait(Request& request, Pace pace = Pace::Patient);
  void wait_all(std::vector<Request>& requests);

  // Root's bytes (any size) to every rank (collective), waiting with back-off.
  virtual void broadcast(std::vector<uint8_t>& bytes, int root) = 0;
  // Every rank's host name, at rank index (collective).
  virtual std::vector<std::string> all_hosts() = 0;
  // Collective over every rank: the ranks that give the same color >= 0 form a Group, ordered
  // by key (then rank); a rank giving a negative color gets nullptr (MPI_Comm_split).
  virtual std::unique_ptr<Group> split(int color, int key) = 0;
  // Ends every rank of the world (MPI_Abort; in-process: the other ranks' next call throws).
  [[noreturn]] virtual void abort(int code) = 0;

  double wait_seconds() const { return wait_seconds_; }
  void reset_wait_seconds() { wait_seconds_ = 0; }
  // A wait longer than this throws TransportError naming the peer (0 = wait for ever): for
  // worlds that devices joined, where a peer that died leaves MPI waiting. Collectives (the
  // job broadcast between jobs) are not limited.
  void set_wait_limit(double seconds) { wait_limit_ = seconds; }
  double wait_limit() const { return wait_limit_; }

  static constexpr int kMaxSleepMicros = 200;
  static constexpr int kLongWaitMicros = 5000;   // after this long, sleep kLongSleepMicros
  static constexpr int kLongSleepMicros = 1000;
  static constexpr int kBusySpinMicros = 1000;  // Pace::Busy: yield this long, then test every ~20 us

 protected:
  // For implementations: a new active request, and its completion.
  static Request make_request(std::shared_ptr<void> impl, std::vector<uint8_t> buffer, int peer, int tag,
                              bool is_recv);
  template <typename T>
  static T* impl_of(Request& r) { return static_cast<T*>(r.impl_.get()); }
  static bool is_active(const Request& r) { return r.active_; }
  static bool is_receive(const Request& r) { return r.is_recv_; }
  static void complete(Request& r, size_t received) {
    r.received_ = received;
    r.active_ = false;
  }
  static std::vector<uint8_t>& buffer_of(Request& r) { return r.buffer_; }

  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  std::vector<int> node_ranks_{0};

 private:
  double wait_seconds_ = 0;
  double wait_limit_ = 0;

 protected:
  // Waits without the limit (collectives).
  void wait_unlimited(Request& request) {
    const double limit = wait_limit_;
    wait_limit_ = 0;
    try {
      wait(request);
    } catch (...) {
      wait_limit_ = limit;
      throw;
    }
    wait_limit_ = limit;
  }
};

}  // namespace arceus
