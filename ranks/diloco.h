// training.sync diloco (DiLoCo, Douillard et al. 2023): low-communication replicas. Each
// replica takes inner steps with the job's own optimizer on its own share of every batch, its
// loss scaled by that share's rows (so each replica is a whole data-parallel learner), and
// nothing is summed. At a round's end (rank 0's Control Outer: every diloco.inner_steps steps,
// and before a checkpoint, an evaluation and a stop, so that those always see equal replicas)
// the replicas average their pseudo-gradients, the round's starting parameters minus where
// each got, weighted by the rows each trained on, and every replica takes the same outer
// Nesterov SGD step from the round's start:
//   delta = sum_r w_r (theta_start - theta_r),  v = mu v + delta,
//   theta = theta_start - lr_outer (delta + mu v)       (mu = 0: theta_start - lr_outer delta)
// With one inner step, lr_outer 1 and mu 0 that is the mean of the replicas' steps: exactly
// what summing the gradients every step gives for plain SGD (the exactness test).
#pragma once

#include <ATen/Tensor.h>

#include <cstdint>
#include <vector>

#include "config/config.h"
#include "ranks/grad_sync.h"

namespace arceus {

class Diloco {
 public:
  // `params`: the stage's parameters; `sums`: its group's sums at diloco.bits (grad_sync.h).
  Diloco(std::vector<at::Tensor> params, GradientSync& sums, const DilocoConfig& config, int64_t replica,
         int64_t replicas);

  // A training step of `rows` (the whole batch): every replica's share counts toward the weights.
  void count_step(int64_t rows);
  // The round's end: the outer step (a collective over the stage's replicas).
  void outer_step(uint32_t step);
  // After the parameters were set from a checkpoint: the round starts from them.
  void restart_round();

  // The outer momentum, one tensor per parameter (checkpointed as "<name>:diloco_momentum").
  std::vector<at::Tensor>& momentum() { return momentum_; }

 private:
  std::vector<at::Tensor> params_, start_, momentum_;
  GradientSync& sums_;
  DilocoConfig config_;
  int64_t replica_, replicas_;
  std::vector<int64_t> rows_;  // per replica, this round
};

}  // namespace arceus
