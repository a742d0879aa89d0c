// The ranks of an MPI world (MPI_COMM_WORLD), one per process.
#pragma once

#include "ranks/transport.h"

namespace arceus {

class MpiTransport final : public Transport {
 public:
  // Initialises MPI (FUNNELED) if needed and returns the process's world. Safe without
  // mpirun: a singleton world of 1. Throws TransportError naming the MPI call that failed.
  static MpiTransport& init(int* argc, char*** argv);
  static void finalize();

  Request isend(std::vector<uint8_t> bytes, int dest, int tag) override;
  Request irecv(size_t bytes, int source, int tag) override;
  bool test(Request& request) override;
  void broadcast(std::vector<uint8_t>& bytes, int root) override;
  std::vector<std::string> all_hosts() override;
  [[noreturn]] void abort(int code) override;

 private:
  MpiTransport() = default;
  void wait_raw(void* mpi_request, int peer, int tag);
};

}  // namespace arceus
