// Stage partitioning: uniform (the original's rule), cost-balanced (exact DP) and explicit.
// Stage indices in messages are 0-based, like layer indices.
#include "partition/partition.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>
#include <limits>
#include <sstream>

namespace arceus {

namespace {

void check_stages(int64_t layers, int64_t stages) {
  if (layers < 1) {
    throw PartitionError("[partition] the model has " + std::to_string(layers) +
                         " layers (need at least 1)");
  }
  if (stages < 1 || stages > layers) {
    throw PartitionError("[partition] " + std::to_string(stages) + " stages but the model has " +
                         std::to_string(layers) + " layers (stages must be 1.." +
                         std::to_string(layers) + ")");
  }
}

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

std::vector<LayerRange> uniform_partition(int64_t layers, int64_t stages) {
  check_stages(layers, stages);
  std::vector<LayerRange> plan;
  plan.reserve(static_cast<size_t>(stages));
  const int64_t base = layers / stages, extra = layers % stages;
  int64_t first = 0;
  for (int64_t s = 0; s < stages; ++s) {
    const int64_t count = base + (s < extra ? 1 : 0);
    plan.push_back(LayerRange{first, count});
    first += count;
  }
  return plan;
}

std::vector<LayerRange> balanced_partition(const std::vector<double>& costs, int64_t stages) {
  const int64_t L = static_cast<int64_t>(costs.size());
  for (int64_t i = 0; i < L; ++i) {
    const double c = costs[static_cast<size_t>(i)];
    if (!std::isfinite(c) || c < 0.0) {
      throw PartitionError("[partition] layer " + std::to_string(i) + " has cost " + num(c) +
                           " (costs must be finite and >= 0)");
    }
  }
  check_stages(L, stages);
  const int64_t S = stages;
  const double inf = std::numeric_limits<double>::infinity();

  // f[k][i]: the smallest possible largest sum when layers [i, L) go to k non-empty stages.
  // Range sums are accumulated forward from 0.0 in layer order, exactly as stage_costs does,
  // so the optimum found here is the value max_stage_cost reports for the plan.
  const size_t W = static_cast<size_t>(L) + 1;
  std::vector<double> f(static_cast<size_t>(S + 1) * W, inf);
  auto F = [&](int64_t k, int64_t i) -> double& { return f[static_cast<size_t>(k) * W + static_cast<size_t>(i)]; };
  {
    double sum = 0.0;  // k = 1: the single suffix sum, accumulated forward per start
    for (int64_t i = 0; i < L; ++i) {
      sum = 0.0;
      for (int64_t j = i; j < L; ++j) sum += costs[static_cast<size_t>(j)];
      F(1, i) = sum;
    }
  }
  for (int64_t k = 2; k <= S; ++k) {
    for (int64_t i = L - k; i >= 0; --i) {  // need at least k layers in [i, L)
      double best = inf, sum = 0.0;
      for (int64_t j = i + 1; j <= L - (k - 1); ++j) {  // first stage is [i, j)
        sum += costs[static_cast<size_t>(j - 1)];
        if (sum >= best) break;  // costs >= 0: sums only grow from here
        const double v = sum > F(k - 1, j) ? sum : F(k - 1, j);
        if (v < best) best = v;
      }
      F(k, i) = best;
    }
  }
  const double opt = F(S, 0);

  // Reconstruct: each stage takes the fewest layers that still allow an optimal plan.
  std::vector<LayerRange> plan;
  plan.reserve(static_cast<size_t>(S));
  int64_t i = 0;
  for (int64_t k = S; k >= 2; --k) {
    double sum = 0.0;
    int64_t j = i + 1;
    for (; j <= L - (k - 1); ++j) {
      sum += costs[static_cast<size_t>(j - 1)];
      if (sum <= opt && F(k - 1, j) <= opt) break;
    }
    if (j > L - (k - 1)) j = L - (k - 1);  // unreachable: opt is attained
    plan.push_back(LayerRange{i, j - i});
    i = j;
  }
  plan.push_back(LayerRange{i, L - i});
  return plan;
}

std::vector<LayerRange> balanced_chunk_partition(const std::vector<double>& costs, int64_t stages,
                                                 int64_t chunks_per_stage) {
  if (chunks_per_stage <= 1) return balanced_partition(costs, stages);
  const int64_t K = stages * chunks_per_stage;
  std::vector<LayerRange> fallback = balanced_partition(costs, K);  // validates costs and K
  const int64_t L = static_cast<int64_t>(costs.size());
  std::vector<double> prefix(static_cast<size_t>(L) + 1, 0.0);
  for (int64_t i = 0; i < L; ++i) prefix[size_t(i + 1)] = prefix[size_t(i)] + costs[size_t(i)];
  auto range_sum = [&](int64_t a, int64_t b) { return prefix[size_t(b)] - prefix[size_t(a)]; };
  auto score = [&](const std::vector<LayerRange>& plan) {  // (largest stage load, largest chunk)
    std::vector<double> load(static_cast<size_t>(stages), 0.0);
    double chunk = 0;
    for (size_t c = 0; c < plan.size(); ++c) {
      const double v = range_sum(plan[c].first, plan[c].end());
      load[c % size_t(stages)] += v;
      chunk = std::max(chunk, v);
    }
    return std::make_pair(*std::max_element(load.begin(), load.end()), chunk);
  };
  std::vector<LayerRange> best = fallback;
  std::pair<double, double> best_score = score(best);
  std::vector<LayerRange> plan;
  std::vector<double> load(static_cast<size_t>(stages), 0.0);
  int64_t nodes = 0;
  constexpr int64_t kMaxNodes = 2000000;
  // Chunk c starts at layer `first`; each later chunk needs at least one layer.
  std::function<bool(int64_t, int64_t, double)> search = [&](int64_t c, int64_t first, double max_chunk) {
    if (++nodes > kMaxNodes) return false;
    if (c == K) {
      const std::pair<double, double> sc{*std::max_element(load.begin(), load.end()), max_chunk};
      if (sc < best_score) {
        best_score = sc;
        best = plan;
      }
      return true;
    }
    const int64_t last_end = c == K - 1 ? L : L - (K - 1 - c);
    for (int64_t end = c == K - 1 ? L : first + 1; end <= last_end; ++end) {
      const double v = range_sum(first, end);
      double& l = load[size_t(c % stages)];
      if (l + v > best_score.first + 1e-12 * (1 + best_score.first)) break;  // loads only grow with `end`
      l += v;
      plan.push_back({first, end - first});
      const bool ok = search(c + 1, end, std::max(max_chunk, v));
      plan.pop_back();
      l -= v;
      if (!ok) return false;
    }
    return true;
  };
  search(0, 0, 0.0);  // past kMaxNodes: the best found so far
  return best;
}

std::vector<LayerRange> explicit_partition(const std::vector<std::vector<int64_t>>& layers,
                                           int64_t num_layers) {
  if (num_layers < 1) {
    throw PartitionError("[partition] the model has " + std::to_string(num_layers) +
                         " layers (need at least 1)");
  }
  if (layers.empty()) throw PartitionError("[partition] explicit placement has no stages");
  const std::string range = " (layers are 0.." + std::to_string(num_layers - 1) + ")";

  // Which stage lists each layer first (-1: none); used to tell "missing" from "out of order".
  std::vector<int64_t> listed_by(static_cast<size_t>(num_layers), -1);
  for (size_t s = 0; s < layers.size(); ++s) {
    for (int64_t v : layers[s]) {
      if (v >= 0 && v < num_layers && listed_by[static_cast<size_t>(v)] < 0) {
        listed_by[static_cast<size_t>(v)] = static_cast<int64_t>(s);
      }
    }
  }

  std::vector<int64_t> seen_on(static_cast<size_t>(num_layers), -1);
  std::vector<LayerRange> plan;
  plan.reserve(layers.size());
  int64_t expected = 0;
  for (size_t si = 0; si < layers.size(); ++si) {
    const std::string stage = "stage " + std::to_string(si);
    const std::vector<int64_t>& st = layers[si];
    if (st.empty()) throw PartitionError("[partition] " + stage + " is empty (every stage needs at least one layer)");
    for (int64_t v : st) {
      if (v < 0 || v >= num_layers) {
        throw PartitionError("[partition] " + stage + " lists layer " + std::to_string(v) +
                             ", out of range: the model has " + std::to_string(num_layers) +
                             " layers" + range);
      }
      const int64_t prev = seen_on[static_cast<size_t>(v)];
      if (prev >= 0) {
        throw PartitionError("[partition] " + stage + " lists layer " + std::to_string(v) +
                             ", duplicated: " +
                             (prev == static_cast<int64_t>(si) ? std::string("already listed on this stage")
                                                              : "already on stage " + std::to_string(prev)));
      }
      if (v != expected) {  // v > expected: everything below expected has been seen
        if (listed_by[static_cast<size_t>(expected)] < 0) {
          throw PartitionError("[partition] layer " + std::to_string(expected) +
                               " is missing: no stage lists it (" + stage + " lists layer " +
                               std::to_string(v) + " where layer " + std::to_string(expected) +
                               " was expected)");
        }
        throw PartitionError("[partition] " + stage + " lists layer " + std::to_string(v) +
                             " where layer " + std::to_string(expected) +
                             " was expected: layers must be contiguous and in order");
      }
      seen_on[static_cast<size_t>(v)] = static_cast<int64_t>(si);
      expected = v + 1;
    }
    plan.push_back(LayerRange{st.front(), static_cast<int64_t>(st.size())});
  }
  if (expected != num_layers) {
    throw PartitionError("[partition] layer " + std::to_string(expected) +
                         " is missing: no stage lists it (the last stage, stage " +
                         std::to_string(layers.size() - 1) + ", ends at layer " +
                         std::to_string(expected - 1) + "; the model has " +
                         std::to_string(num_layers) + " layers)");
  }
  return plan;
}

std::vector<double> stage_costs(const std::vector<double>& costs, const std::vector<LayerRange>& plan) {
  const int64_t L = static_cast<int64_t>(costs.size());
  std::vector<double> out;
  out.reserve(plan.size());
  for (size_t s = 0; s < plan.size(); ++s) {
    const LayerRange& r = plan[s];
    if (r.first < 0 || r.count < 0 || r.end() > L) {
      throw PartitionError("[partition] stage " + std::to_string(s) + " covers layers [" +
                           std::to_string(r.first) + ", " + std::to_string(r.end()) +
                           ") but there are " + std::to_string(L) + " layer costs");
    }
    double sum = 0.0;
    for (int64_t i = r.first; i < r.end(); ++i) sum += costs[static_cast<size_t>(i)];
    out.push_back(sum);
  }
  return out;
}

double max_stage_cost(const std::vector<double>& costs, const std::vector<LayerRange>& plan) {
  double m = 0.0;
  for (double c : stage_costs(costs, plan)) m = c > m ? c : m;
  return m;
}

std::vector<double> mlp_layer_costs(const std::vector<int64_t>& layer_sizes, int bits,
                                    double flops_per_byte) {
  if (bits != 32 && bits != 16 && bits != 8 && bits != 4) {
    throw PartitionError("[partition] bits must be one of 32, 16, 8, 4 (got " +
                         std::to_string(bits) + ")");
  }
  if (layer_sizes.size() < 2) {
    throw PartitionError("[partition] layer_sizes needs at least 2 widths (got " +
                         std::to_string(layer_sizes.size()) + ")");
  }
  for (size_t i = 0; i < layer_sizes.size(); ++i) {
    if (layer_sizes[i] < 1) {
      throw PartitionError("[partition] layer_sizes[" + std::to_string(i) + "] is " +
                           std::to_string(layer_sizes[i]) + " (widths must be >= 1)");
    }
  }
  if (!std::isfinite(flops_per_byte) || flops_per_byte < 0.0) {
    throw PartitionError("[partition] flops_per_byte is " + num(flops_per_byte) +
                         " (must be finite and >= 0)");
  }
  std::vector<double> out;
  out.reserve(layer_sizes.size() - 1);
  for (size_t i = 0; i + 1 < layer_sizes.size(); ++i) {
    const double in = static_cast<double>(layer_sizes[i]);
    const double o = static_cast<double>(layer_sizes[i + 1]);
    // Forward 2*in*out; backward 2*in*out for the weight gradient plus 2*in*out for the
    // input gradient, which layer 0 does not compute (nothing before it needs one).
    const bool first = i == 0, last = i + 2 == layer_sizes.size();
    const double flops = (first ? 4.0 : 6.0) * in * o;
    // Its output forward and that output's gradient back; the last layer sends neither.
    const double bytes = last ? 0.0 : 2.0 * o * bits / 8.0;
    out.push_back(flops + bytes * flops_per_byte);
  }
  return out;
}

}  // namespace arceus
