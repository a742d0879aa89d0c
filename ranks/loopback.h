// Ranks as threads of one process: the in-process transport. Messages are handed over in
// memory (a send completes at once: its bytes are queued at the receiver), matched by exact
// (source, tag) in posting order as MPI matches them. Used by the one-process reference run
// and by the tests that run a whole pipeline without mpirun.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ranks/transport.h"

namespace arceus {

struct LoopbackWorld;  // the shared mailboxes

class LoopbackTransport final : public Transport {
 public:
  // Use loopback_world() to make them.
  LoopbackTransport(std::shared_ptr<LoopbackWorld> world, int rank, int size, std::string host);

  bool in_process() const override { return true; }
  Request isend(std::vector<uint8_t> bytes, int dest, int tag) override;
  Request irecv(size_t bytes, int source, int tag) override;
  bool test(Request& request) override;
  void broadcast(std::vector<uint8_t>& bytes, int root) override;
  std::vector<std::string> all_hosts() override;
  std::unique_ptr<Group> split(int color, int key) override;
  // Marks the world failed (every other rank's next call throws TransportError) and throws.
  [[noreturn]] void abort(int code) override;
  // Marks the world failed with `why` without throwing (a rank's thread ended by an error).
  void fail(const std::string& why);

 private:
  friend class LoopbackGroup;
  std::shared_ptr<LoopbackWorld> world_;
};

// `size` ranks sharing one set of mailboxes. A receive that waits longer than
// `timeout_seconds` throws TransportError naming the rank, the peer and the tag (0 = never).
std::vector<std::unique_ptr<LoopbackTransport>> loopback_world(int size, const std::string& host = "loopback",
                                                               double timeout_seconds = 0);

// Runs body(transport) for every rank of a loopback world, rank 0 on the calling thread and
// the others on their own threads, and joins them. The first error of any rank fails the
// world (the other ranks' pending calls throw instead of hanging) and is rethrown here.
void run_loopback(int size, const std::function<void(Transport&)>& body, double timeout_seconds = 0,
                  const std::string& host = "loopback");

}  // namespace arceus
