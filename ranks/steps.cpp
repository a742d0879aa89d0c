#include "ranks/steps.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace arceus {

std::vector<int64_t> micro_batch_sizes(int64_t rows, int64_t micro_batches) {
  if (rows < 1 || micro_batches < 1) {
    throw std::invalid_argument("[schedule] cannot split " + std::to_string(rows) + " rows into " +
                                std::to_string(micro_batches) + " micro-batches");
  }
  const int64_t parts = std::min(rows, micro_batches);
  std::vector<int64_t> sizes(static_cast<size_t>(parts), rows / parts);
  for (int64_t i = 0; i < rows % parts; ++i) sizes[static_cast<size_t>(i)] += 1;
  return sizes;
}

std::vector<int64_t> replica_shares(int64_t rows, int64_t replicas) {
  if (rows < 0 || replicas < 1) {
    throw std::invalid_argument("[schedule] cannot share " + std::to_string(rows) + " rows among " +
                                std::to_string(replicas) + " replicas");
  }
  std::vector<int64_t> shares(static_cast<size_t>(replicas), rows / replicas);
  for (int64_t i = 0; i < rows % replicas; ++i) shares[static_cast<size_t>(i)] += 1;
  return shares;
}

double learning_rate_at(const std::string& schedule, double base, double min_lr, int64_t warmup,
                        int64_t step, int64_t total_steps) {
  if (schedule != "constant" && schedule != "cosine") {
    throw std::invalid_argument("[schedule] unknown learning-rate schedule '" + schedule +
                                "' (expected constant or cosine)");
  }
  if (warmup > 0 && step < warmup) return base * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (schedule == "constant") return base;
  const int64_t span = total_steps - warmup - 1;
  if (span <= 0) return min_lr;
  const double p = std::clamp(static_cast<double>(step - warmup) / static_cast<double>(span), 0.0, 1.0);
  return min_lr + (base - min_lr) * 0.5 * (1.0 + std::cos(M_PI * p));
}

}  // namespace arceus
