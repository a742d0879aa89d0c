#include "ranks/schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace arceus {

Schedule parse_schedule(const std::string& name) {
  if (name == "sequential") return Schedule::Sequential;
  if (name == "gpipe") return Schedule::GPipe;
  if (name == "1f1b") return Schedule::OneFOneB;
  throw std::invalid_argument("[schedule] unknown schedule '" + name +
                              "' (expected sequential, gpipe or 1f1b)");
}

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Sequential: return "sequential";
    case Schedule::GPipe: return "gpipe";
    case Schedule::OneFOneB: return "1f1b";
  }
  return "?";
}

std::vector<PipeOp> make_schedule(Schedule schedule, int64_t stages, int64_t stage,
                                  int64_t micro_batches) {
  if (stages < 1 || stage < 0 || stage >= stages || micro_batches < 1) {
    throw std::invalid_argument("[schedule] bad arguments: stage " + std::to_string(stage) + " of " +
                                std::to_string(stages) + ", " + std::to_string(micro_batches) +
                                " micro-batches");
  }
  const int64_t m = micro_batches;
  std::vector<PipeOp> ops;
  ops.reserve(static_cast<size_t>(2 * m));
  switch (schedule) {
    case Schedule::Sequential:
      for (int64_t i = 0; i < m; ++i) {
        ops.push_back({PipeOp::Forward, i});
        ops.push_back({PipeOp::Backward, i});
      }
      break;
    case Schedule::GPipe:
      for (int64_t i = 0; i < m; ++i) ops.push_back({PipeOp::Forward, i});
      for (int64_t i = 0; i < m; ++i) ops.push_back({PipeOp::Backward, i});
      break;
    case Schedule::OneFOneB: {
      const int64_t warmup = std::min(stages - 1 - stage, m);
      int64_t next_f = 0, next_b = 0;
      for (; next_f < warmup; ++next_f) ops.push_back({PipeOp::Forward, next_f});
      while (next_f < m) {
        ops.push_back({PipeOp::Forward, next_f++});
        ops.push_back({PipeOp::Backward, next_b++});
      }
      while (next_b < m) ops.push_back({PipeOp::Backward, next_b++});
      break;
    }
  }
  return ops;
}

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

double theoretical_bubble(int64_t stages, int64_t micro_batches) {
  return static_cast<double>(stages - 1) / static_cast<double>(micro_batches + stages - 1);
}

}  // namespace arceus
