// Which contiguous layers each pipeline stage owns. No torch, no MPI: pure functions.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace arceus {

class PartitionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Layers [first, first + count) of the model.
struct LayerRange {
  int64_t first = 0;
  int64_t count = 0;
  int64_t end() const { return first + count; }
  bool operator==(const LayerRange& o) const { return first == o.first && count == o.count; }
};

// The original's rule: L layers over S stages, L / S each, the first L % S stages one more.
// Throws PartitionError when S < 1 or S > L:
//   "[partition] 4 stages but the model has 3 layers (stages must be 1..3)".
std::vector<LayerRange> uniform_partition(int64_t layers, int64_t stages);

// Contiguous split of `costs` (one per layer, >= 0) into `stages` non-empty ranges minimising
// the largest range sum. Exact (dynamic programming); ties keep earlier stages smaller.
std::vector<LayerRange> balanced_partition(const std::vector<double>& costs, int64_t stages);

// `stages` * `chunks_per_stage` contiguous non-empty chunks of `costs`, chunk c held by stage
// c % stages (the interleaved placement), minimising the largest *stage* load (the sum of its
// chunks' costs), then the largest chunk. An exact branch-and-bound search over the cut
// points, started from balanced_partition(costs, stages * chunks_per_stage); past a bound on
// the search (very deep models) the best plan found so far, never worse than that start.
// chunks_per_stage 1 is balanced_partition(costs, stages).
std::vector<LayerRange> balanced_chunk_partition(const std::vector<double>& costs, int64_t stages,
                                                 int64_t chunks_per_stage);

// A hand-written placement, e.g. [[0,1],[2]]: every layer exactly once, in order, each stage
// non-empty and contiguous. Throws PartitionError naming the stage and the bad layer.
std::vector<LayerRange> explicit_partition(const std::vector<std::vector<int64_t>>& layers,
                                           int64_t num_layers);

// Sum of costs per range, and the largest.
std::vector<double> stage_costs(const std::vector<double>& costs, const std::vector<LayerRange>& plan);
double max_stage_cost(const std::vector<double>& costs, const std::vector<LayerRange>& plan);

// Cost model of one MLP layer (in -> out) per sample, in "FLOP-equivalents":
// forward 2*in*out + backward 4*in*out FLOPs (2*in*out for layer 0, which needs no input
// gradient), plus the bytes it sends onward (activation forward, gradient backward: 2*out
// values at `bits`; none for the last layer) times `flops_per_byte` (the ratio of compute
// speed to link speed; ~100 for ~100 GFLOP/s over ~1 GB/s).
std::vector<double> mlp_layer_costs(const std::vector<int64_t>& layer_sizes, int bits,
                                    double flops_per_byte = 100.0);

}  // namespace arceus
