// The schedule's action lists run against a clock with every message on a link: an
// event-driven simulation of consecutive training steps. ranks/schedule/simulate.h executes
// the same lists with free messages (the validator); this one gives each activation and
// gradient its transfer time, with the overlap rules measured on the simulated cluster
// (docs/performance.md, "A cluster of small machines"):
//   - a send does not block its rank (nonblocking Isend, eager up to 4 MiB): the rank goes on
//     computing while the message crosses;
//   - each direction of a host's link is its own queue (full duplex): a message from host a to
//     host b waits for a's outgoing and b's incoming queue, first come first served, and takes
//     bytes x framing x 8 / rate on both; the per-message latency comes after;
//   - ranks on one host exchange through shared memory (latency + bytes / memory bandwidth);
//   - a rank decodes a received tensor at the start of the action that consumes it and encodes
//     what it sends at the end of the action that produces it (codec time is the rank's);
//   - the pipeline flushes at every optimizer step: a rank starts step k + 1 after its last
//     action of step k and its optimizer step (with gradient clipping, after every rank's
//     norm has been to rank 0 and back);
//   - rank 0 keeps one batch in flight ahead: stage 1 finds its inputs delivered; the labels
//     cross host 1's link to the last stage at the step's start.
// Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ranks/schedule/action.h"

namespace arceus::plan {

struct LinkModel {
  std::vector<int64_t> host_of_rank;  // stage rank (0-based) -> host index; rank 0 (orchestrator) is on host 0
  int64_t hosts = 1;
  double bits_per_second = 0;         // each direction; 0 = unlimited
  double latency_s = 50e-6;           // per message, one way
  double framing = 1.04;              // TCP/IP and Open MPI framing over the message bytes (3-5% measured)
  double shm_bytes_per_second = 4e9;  // ranks on one host
};

// Costs of one step, indexed [chunk][micro-batch].
struct StepCosts {
  std::vector<std::vector<double>> f, b, i, w;        // compute seconds of each action
  // Boundary k (chunk k -> k + 1): message bytes on the wire, and the codec seconds of each end.
  std::vector<std::vector<double>> act_bytes, grad_bytes;
  std::vector<std::vector<double>> act_encode, act_decode, grad_encode, grad_decode;
  std::vector<std::vector<double>> held_bytes;        // activation memory from F to B (or W)
  std::vector<double> label_bytes;                    // per micro-batch, rank 0 -> the last chunk's rank
  std::vector<double> optimizer_s;                    // per stage rank, after its last action
  bool clip_round_trip = false;
};

struct LinkSimulation {
  bool ok = false;
  std::string error;
  double step_seconds = 0;                 // steady state: the second step's length
  std::vector<double> busy;                // per stage rank: compute + codec seconds per step
  std::vector<double> peak_held_bytes;     // per stage rank
  // Per host: seconds per step its outgoing / incoming queue was busy.
  std::vector<double> up_busy, down_busy;
  // The busiest directed host pair: seconds per step, sender host, receiver host.
  double pair_busy = 0;
  int64_t pair_from = -1, pair_to = -1;
};

LinkSimulation simulate_links(const std::vector<Program>& programs, const PipelineShape& shape,
                              const StepCosts& costs, const LinkModel& links);

}  // namespace arceus::plan
