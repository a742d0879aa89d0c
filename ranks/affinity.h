// Threads and CPU pinning of a rank. Torch-free: the caller applies the thread count.
#pragma once

#include <string>
#include <vector>

#include "ranks/transport.h"

namespace arceus {

// CPUs this process may run on (respects cpusets, e.g. a SLURM allocation).
std::vector<int> allowed_cpus();

// `threads` ("auto" or a positive integer) for this rank of a job whose stages run on
// `stage_ranks`. "auto": the stage ranks on one node (the transport's node-local ranks)
// share its CPUs; the k-th of n gets CPUs [k*c/n, (k+1)*c/n) and is pinned to them, so that
// ranks sharing a machine do not migrate onto each other's cores. Rank 0 and idle ranks
// mostly wait: 1 thread, not pinned. With more stage ranks than CPUs nothing is pinned
// (oversubscribed: let the kernel schedule). An in-process world (threads of one process)
// is never pinned and uses every allowed CPU.
int choose_threads(const std::string& threads, const Transport& transport, const std::vector<int>& stage_ranks);

}  // namespace arceus
