// Timing and byte counters of one rank over one epoch; a stage sends its own to rank 0 as a
// Stats message (the struct is the payload, so it stays trivially copyable).
#pragma once

#include <cstdint>
#include <type_traits>

namespace arceus {

struct RankStats {
  int32_t rank = 0;
  int32_t stage = -1;  // 1..S; -1: the orchestrator
  double forward = 0, backward = 0, optimizer = 0, codec = 0, wait = 0, idle = 0;
  double wall = 0, cpu = 0;
  double train_wall = 0, train_busy = 0;  // inside training steps only (for the bubble)
  double flops = 0;                       // forward + backward
  double forward_flops = 0, backward_flops = 0;
  uint64_t bytes_raw = 0, bytes_wire = 0, messages = 0;
  int32_t threads = 0;     // intra-op threads of the rank
  int32_t cpus = 0;        // CPUs it may run on (its cpuset)
  double cpu_quota = 0;    // its cgroup's CPU limit in cores, 0 = none
  double sync = 0;         // replicas: waiting for the gradient sums after the backward (not hidden by it)

  double busy() const { return forward + backward + optimizer + codec; }
};
static_assert(std::is_trivially_copyable_v<RankStats>);

}  // namespace arceus
