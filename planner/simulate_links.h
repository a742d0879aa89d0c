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
//   - rank 0 keeps one batch in flight ahead: its inputs and labels of step k + 1 leave when
//     replica 0's first stage ends step k - 1, in the orchestrator's order (replica by replica,
//     each micro-batch's input then its labels), through host 1's outgoing queue. An input to a
//     first stage on rank 0's own host is never late and is not simulated.
// Replicas (ranks/grad_sync.h): R copies of the pipeline, worker rank r*S + s (0-based) for
// replica r's stage rank s. Each stage's R members sum their gradients every step, bucket by
// bucket in the runtime's order: a bucket is full when the last of its parameters has its
// final gradient, during its chunk's last weight-gradient backward of the step (B, or W); a
// member then rings it once its previous bucket is done there. The ring is 2(R - 1) hops, each
// a message of one slice to the next member (its host's outgoing queue, the next host's
// incoming one, as every message); a member sends hop h + 1 when hop h from the previous member
// is in and it has sent its own hop h, after its codec work (decode, add, encode). The ring
// progresses as messages arrive (the runtime polls between actions and from the backward's
// hooks); its codec seconds count as the rank's work but do not delay its actions. A rank ends
// the step when its last action is done and every bucket of its stage is summed.
// Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ranks/schedule/action.h"

namespace arceus::plan {

struct LinkModel {
  // worker rank (0-based, replica-major: r*S + s) -> host index; rank 0 (orchestrator) is on host 0
  std::vector<int64_t> host_of_rank;
  int64_t hosts = 1;
  double bits_per_second = 0;         // each direction; 0 = unlimited
  double latency_s = 50e-6;           // per message, one way
  double framing = 1.04;              // TCP/IP and Open MPI framing over the message bytes (3-5% measured)
  double shm_bytes_per_second = 4e9;  // ranks on one host
};

// Costs of one step of one pipeline (a replica), indexed [chunk][micro-batch].
struct StepCosts {
  std::vector<std::vector<double>> f, b, i, w;        // compute seconds of each action
  // Boundary k (chunk k -> k + 1): message bytes on the wire, and the codec seconds of each end.
  std::vector<std::vector<double>> act_bytes, grad_bytes;
  std::vector<std::vector<double>> act_encode, act_decode, grad_encode, grad_decode;
  std::vector<std::vector<double>> held_bytes;        // activation memory from F to B (or W)
  std::vector<double> label_bytes;                    // per micro-batch, rank 0 -> the last chunk's rank
  std::vector<double> input_bytes;                    // per micro-batch, rank 0 -> the first chunk's rank
  std::vector<double> optimizer_s;                    // per stage rank, after its last action
  bool clip_round_trip = false;                       // (read from the first pipeline)
};

// One replica: its stage ranks' programs for its shape (its share of the batch), its costs.
struct PipelineRun {
  std::vector<Program> programs;
  PipelineShape shape;
  StepCosts costs;
};

// One bucket of a stage's gradient sum, as one member (a worker rank) runs it.
struct SyncBucket {
  // When it is full: for each of the rank's chunks holding some of its parameters, the
  // fraction of that chunk's last weight-gradient backward (its compute) done when the last of
  // them has its gradient.
  std::vector<std::pair<int64_t, double>> fills;  // (chunk, fraction 0..1)
  double hop_bytes = 0;                           // one hop's message on the wire
  std::vector<double> send_s;                     // per hop 0..2(R-1)-1: codec seconds before sending it
  double receive_s = 0;                           // codec seconds of each hop received (decode, add)
};

struct LinkSimulation {
  bool ok = false;
  std::string error;
  double step_seconds = 0;                 // steady state: the second step's length
  std::vector<double> busy;                // per worker rank: compute + codec seconds per step
  std::vector<double> peak_held_bytes;     // per worker rank
  // Per host: seconds per step its outgoing / incoming queue was busy.
  std::vector<double> up_busy, down_busy;
  // The busiest directed host pair: seconds per step, sender host, receiver host.
  double pair_busy = 0;
  int64_t pair_from = -1, pair_to = -1;
  // Replicas: per worker rank, bytes per step it sent for the gradient sums, and seconds per
  // step it waited for them after its last action (the runtime's sync_s).
  std::vector<double> sync_bytes_out, sync_wait;
};

LinkSimulation simulate_links(const std::vector<Program>& programs, const PipelineShape& shape,
                              const StepCosts& costs, const LinkModel& links);

// R replicas (every one with the same stage count S) and their gradient sums: `sync[k]` are
// worker rank k's buckets in the order it starts them (empty for every rank: no sums, R = 1).
LinkSimulation simulate_links(const std::vector<PipelineRun>& replicas,
                              const std::vector<std::vector<SyncBucket>>& sync, const LinkModel& links);

}  // namespace arceus::plan
