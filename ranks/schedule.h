// Pipeline schedules: the order of forward and backward micro-batches on one stage.
// Torch-free and MPI-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace arceus {

enum class Schedule { Sequential, GPipe, OneFOneB };
Schedule parse_schedule(const std::string& name);  // sequential | gpipe | 1f1b
const char* schedule_name(Schedule s);

struct PipeOp {
  enum Kind { Forward, Backward } kind;
  int64_t micro_batch;
  bool operator==(const PipeOp& o) const { return kind == o.kind && micro_batch == o.micro_batch; }
};

// Ops of stage `stage` (0-based) of `stages` for M micro-batches, training (forward and
// backward). Every stage uses the same backward order (0..M-1), so the schedules are
// deadlock-free with non-blocking sends: each op waits only on ops earlier in the
// partial order.
//   sequential: F0 B0 F1 B1 ... (no overlap between micro-batches)
//   gpipe:      F0 .. F(M-1) then B0 .. B(M-1)
//   1f1b:       min(S-1-stage, M) forwards to warm up, then alternate one forward and one
//               backward, then drain the remaining backwards.
std::vector<PipeOp> make_schedule(Schedule schedule, int64_t stages, int64_t stage,
                                  int64_t micro_batches);

// Sizes of the micro-batches of a batch of `rows`: min(M, rows) parts, the first rows % parts
// one larger. Every rank computes the same split.
std::vector<int64_t> micro_batch_sizes(int64_t rows, int64_t micro_batches);

// Learning rate of training step `step` (0-based over the whole run) of `total_steps`:
// linear warm-up base * (step + 1) / warmup over the first `warmup` steps, then `schedule`
// "constant" (base) or "cosine" (from base down to min_lr at the last step:
// min_lr + (base - min_lr) * (1 + cos(pi * p)) / 2, p = (step - warmup) / (total - warmup - 1)).
// std::invalid_argument for another schedule name.
double learning_rate_at(const std::string& schedule, double base, double min_lr, int64_t warmup,
                        int64_t step, int64_t total_steps);

// Theoretical bubble fraction (S-1)/(M+S-1) of gpipe/1f1b.
double theoretical_bubble(int64_t stages, int64_t micro_batches);

}  // namespace arceus
