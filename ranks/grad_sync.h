// Replicas' gradient synchronisation: the sum over a stage's R replicas of their weight
// gradients, overlapped with the backward pass (DDP's bucketing).
//
// Each replica's last stage scales its loss by the *global* batch (rank 0's Control rows), so
// the sum over replicas of their gradients is the whole batch's mean gradient, exactly what the
// one-process reference computes (up to the order of the float sums), whatever the replicas'
// shares of the rows. No division by R.
//
// The parameters are cut into buckets in reverse model order (the order the backward pass
// finishes them). During a chunk's last backward of the step (its last B or W), a hook on
// each parameter copies its final gradient into its bucket; a full bucket starts its sum at
// once, in bucket order (every member starts its collectives in the same order). finish()
// completes them and writes the sums into the parameters' .grad, before clipping and the
// optimizer step.
//   32 bits: MPI's own MPI_Iallreduce (Group::iallreduce_sum), progressed from the hooks.
//   16/8/4 bits: a ring over the transport's point-to-point calls: reduce-scatter of codec-
//     encoded slices (each hop decodes, adds its own, re-encodes), then an all-gather of each
//     slice's final encoding, forwarded unchanged, so every member decodes the same bytes. Each
//     member keeps an error-feedback residual per bucket: the quantization error it added to
//     the sum, put back into its next step's gradients.
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "ranks/messenger.h"
#include "ranks/rank_stats.h"
#include "ranks/transport.h"

namespace arceus {

class GradientSync {
 public:
  // `chunks`: this stage's chunks' parameters, each chunk's in model order, chunks ascending.
  // `group`: the stage's ranks over its replicas (this rank included).
  GradientSync(std::vector<std::vector<at::Tensor>> chunks, Group& group, Messenger& messenger, RankStats& stats,
               int bits);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // A training step begins (its micro-batches per chunk).
  void begin_step(uint32_t step, int64_t micro_batches);
  // Around every weight-gradient backward (B, or W) of local chunk k: the step's last one arms
  // the hooks of the chunk's parameters.
  void before_backward(size_t k);
  void after_backward(size_t k);
  // Drives the sums in flight (MPI progress, the ring's next hops); cheap, call between actions.
  void progress();
  // Completes every bucket (starting those the backward did not: a replica with no rows this
  // step) and writes the sums into the parameters' .grad.
  void finish();

  // Floats summed per step, and this rank's bytes on the wire for them per step (ring: 2(R-1)/R
  // of the bucket each way; MPI's own allreduce counted as a ring).
  int64_t floats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arceus
