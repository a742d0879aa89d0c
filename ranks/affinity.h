// Threads and CPU pinning of a rank. Torch-free: the caller applies the thread count.
#pragma once

#include <string>
#include <vector>

#include "ranks/rank_stats.h"
#include "ranks/transport.h"

namespace arceus {

// CPUs this process may run on (respects cpusets, e.g. a SLURM allocation).
std::vector<int> allowed_cpus();

// The CPU bandwidth limit of this process's cgroup in cores (cgroup v1 cpu.cfs_quota_us /
// cpu.cfs_period_us, or cgroup v2 cpu.max, the lowest along the path to the root), or 0 when
// there is none. A container or a simulated host with 0.45 of a core returns 0.45.
double cpu_quota_cores();

// The cores this process can use: its allowed CPUs, lowered to the CPU quota rounded up
// (0.45 core: 1; 1.5 cores: 2).
int usable_cores();

// Records the rank's share of the machine in its stats: `threads`, its CPUs and CPU quota.
void note_cpu_share(RankStats& stats, int threads);

// `threads` ("auto" or a positive integer) for this rank of a job whose stages run on
// `stage_ranks`. "auto": the stage ranks on one node (the transport's node-local ranks)
// share its usable cores (usable_cores(): cpuset and CPU quota); the k-th of n gets CPUs [k*c/n, (k+1)*c/n) and is pinned to them, so that
// ranks sharing a machine do not migrate onto each other's cores. Rank 0 and idle ranks
// mostly wait: 1 thread, not pinned. With more stage ranks than CPUs nothing is pinned
// (oversubscribed: let the kernel schedule). An in-process world (threads of one process)
// is never pinned and uses every allowed CPU.
int choose_threads(const std::string& threads, const Transport& transport, const std::vector<int>& stage_ranks);

}  // namespace arceus
