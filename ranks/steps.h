// How a training step is cut and paced: micro-batch sizes and the learning-rate schedule.
// Torch-free and MPI-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace arceus {

// Sizes of the micro-batches of a batch of `rows`: min(M, rows) parts, the first rows % parts
// one larger. Every rank computes the same split.
std::vector<int64_t> micro_batch_sizes(int64_t rows, int64_t micro_batches);

// The replicas' contiguous shares of a batch of `rows`: R parts, the first rows % R one larger
// (some 0 when rows < R). Replica r takes rows [sum of shares before r, + its share).
std::vector<int64_t> replica_shares(int64_t rows, int64_t replicas);

// Learning rate of training step `step` (0-based over the whole run) of `total_steps`:
// linear warm-up base * (step + 1) / warmup over the first `warmup` steps, then `schedule`
// "constant" (base) or "cosine" (from base down to min_lr at the last step:
// min_lr + (base - min_lr) * (1 + cos(pi * p)) / 2, p = (step - warmup) / (total - warmup - 1)).
// std::invalid_argument for another schedule name.
double learning_rate_at(const std::string& schedule, double base, double min_lr, int64_t warmup,
                        int64_t step, int64_t total_steps);

}  // namespace arceus
