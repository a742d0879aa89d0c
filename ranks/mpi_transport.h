// The ranks of an MPI communicator, one per process: the world (MPI_COMM_WORLD), or a world
// that devices joined through MPI's dynamic-process calls (accept / connect, then merge).
#pragma once

#include <memory>
#include <string>

#include "ranks/transport.h"

namespace arceus {

class MpiTransport final : public Transport {
 public:
  // Initialises MPI (FUNNELED) if needed and returns the process's world. Safe without
  // mpirun: a singleton world of 1. Throws TransportError naming the MPI call that failed.
  static MpiTransport& init(int* argc, char*** argv);
  static void finalize();
  ~MpiTransport() override;  // frees the communicators it owns (never the world's)

  // Dynamic processes. open_port() names a port (rank 0 of a server) that devices connect to.
  static std::string open_port();
  static void close_port(const std::string& port);
  // Collective over this transport's ranks: accept one connection on rank 0's `port`, then
  // merge. The result has this transport's ranks first (same numbers), then the peer's.
  std::unique_ptr<MpiTransport> accept(const std::string& port);
  // A device: connects to `port` (collective over this process alone) and merges; its rank
  // comes after the server's ranks.
  static std::unique_ptr<MpiTransport> connect(const std::string& port);

  Request isend(std::vector<uint8_t> bytes, int dest, int tag) override;
  Request irecv(size_t bytes, int source, int tag) override;
  bool test(Request& request) override;
  void broadcast(std::vector<uint8_t>& bytes, int root) override;
  std::vector<std::string> all_hosts() override;
  std::unique_ptr<Group> split(int color, int key) override;
  [[noreturn]] void abort(int code) override;

 private:
  friend class MpiGroup;
  MpiTransport() = default;
  // Takes `comm` and `inter` (Fortran handles, so this header stays MPI-free); frees both.
  MpiTransport(int comm, int inter);
  void describe();  // rank, size, host and node-local ranks from the communicator
  void wait_raw(void* mpi_request, int peer, int tag);
  int comm_ = -1;   // -1: MPI_COMM_WORLD
  int inter_ = -1;  // the intercommunicator the merge came from (-1: none)
};

}  // namespace arceus
