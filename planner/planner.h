// `arceus plan`: predicts a pipeline's throughput on a cluster that may not exist yet, from
// costs measured on this machine (planner/calibration.h), by simulating the schedule's action
// lists with every message crossing its link (planner/simulate_links.h), and searches the
// configurations (partition, schedule, M, v, bits) for the fastest. Torch-free and MPI-free:
// the launcher (launcher/plan.cpp) turns a Config into the plain ModelSpec below.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "ranks/schedule/registry.h"
#include "partition/partition.h"
#include "planner/calibration.h"

namespace arceus::plan {

class PlanError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// One partitionable layer of the model, as the planner needs it.
struct LayerSpec {
  std::string key;                   // calibration key: which micro-benchmark times it
  int64_t parameters = 0;
  int64_t out_width = 0;             // floats per activation row leaving the layer
  double activation_bytes = 0;       // per sample, held from its forward to its backward (estimate)
};

struct ModelSpec {
  std::vector<LayerSpec> layers;
  bool transformer = false;
  int64_t seq = 1;                   // activation rows per sample (a GPT's context)
  int64_t in_width = 0;              // per sample: floats (MLP) or int32 token ids (GPT) sent to stage 1
  int64_t batch = 1;                 // dataset_config.batch_size
  std::string optimizer = "sgd";     // sgd | adamw
  double momentum = 0;
  bool grad_clip = false;            // a norm round trip through rank 0 before every optimizer step
  bool stochastic_rounding = true;   // gradients
  // The partition cost model (what partition.method=balanced splits), per bit width.
  std::map<int, std::vector<double>> flop_costs;
  std::string unit() const { return transformer ? "tokens" : "samples"; }
  double units_per_sample() const { return transformer ? double(seq) : 1.0; }
};

struct Host {
  std::string name;
  double speed = 1.0;  // relative to the calibrated machine at the calibrated threads
  int64_t slots = 1;
};

struct ClusterSpec {
  std::vector<Host> hosts;  // rank 0 and stage 1 on hosts[0]; stage k on hosts[k-1]
  double link_bits_per_second = 0;  // each direction of each host's link; 0 = unlimited
  std::string link_name = "unlimited";
};

// "100mbit", "1gbit", "2.5gbit", "500kbit" (1000-based, as tc counts) or "unlimited" (0).
// PlanError naming the value and the expected form otherwise.
double parse_link_rate(const std::string& text);
// "4" or "1..6": PlanError naming the value otherwise.
std::pair<int64_t, int64_t> parse_host_range(const std::string& text);
// An Open MPI hostfile (`host slots=N`); a host line may carry `# arceus: speed=F` (Open MPI
// ignores comments). PlanError naming the file, the line and the expected form.
std::vector<Host> parse_hostfile(const std::string& path);

// One configuration to predict.
struct Candidate {
  int64_t stages = 1;
  int64_t chunks_per_rank = 1;
  int64_t micro_batches = 1;
  std::string schedule = schedules().front().name;  // the registry's default
  int bits = 32;
  std::vector<LayerRange> chunks;    // stages * chunks_per_rank, chunk c on stage c % stages + 1
  std::string partition = "given";   // how the chunks were chosen: given | balanced | timed | uniform
  bool in_process = false;           // one process: rank 0 and the stage as threads, nothing on a link
};

struct Prediction {
  bool ok = false;
  std::string error;
  double step_seconds = 0;
  double rate = 0;                   // samples/s (tokens/s for a transformer)
  double bubble = 0;                 // mean over stages of the idle fraction of a step
  double link_utilisation = 0;       // busiest link direction: busy time / step time
  std::string busiest_link = "-";    // "host 1 -> host 2"
  std::vector<double> stage_busy;    // per stage: seconds of compute per step
  std::vector<double> host_memory;   // per host: peak bytes (parameters, gradients, optimizer, activations, buffers)
  std::string bound;                 // "compute (stage k)" or "link (host i -> host j)"
};

Prediction predict(const ModelSpec& model, const Calibration& cal, const ClusterSpec& cluster, const Candidate& c);

struct SearchSpace {
  std::vector<std::string> schedules = planned_schedule_names();  // the registry's `planned` ones
  std::vector<int64_t> micro_batches{1, 2, 4, 8, 16, 32};
  std::vector<int64_t> chunks_per_rank{1, 2};
  std::vector<int> bits{32, 16, 8, 4};
  int64_t max_stages = 0;  // 0 = one per host
};

struct Ranked {
  Candidate candidate;
  Prediction prediction;
};

// Every candidate of the space on 1..hosts stages (stage k on host k; a host left out is idle),
// best first; failures (a schedule that does not take the shape) are left out.
std::vector<Ranked> search(const ModelSpec& model, const Calibration& cal, const ClusterSpec& cluster,
                           const SearchSpace& space);

// The chunks `partition.method=balanced` gives at `bits` (exactly as the trainer computes them).
std::vector<LayerRange> flop_balanced(const ModelSpec& model, int64_t stages, int64_t v, int bits);
// The chunks that balance the calibrated seconds (forward + backward at the micro-batch rows).
std::vector<LayerRange> time_balanced(const ModelSpec& model, const Calibration& cal, int64_t stages,
                                      int64_t micro_batches);

// The accuracy cost of a bit width, from the bits table of bench/cluster.py (docs/performance.md, "Bits"):
// "" for 32, 16 and 8 bits (no measurable change), a sentence for 4.
std::string bits_accuracy_cost(int bits, bool transformer);

// "0-6|7-13" (v = 1) or "0-1,4-5|2-3,6-7".
std::string partition_text(const Candidate& c);
// [[0,1,2],[3,4]] for partition.layers (v = 1 only).
std::string partition_layers_value(const Candidate& c);

// The (layer key, rows) pairs a model's micro-benchmarks need for the micro-batch counts of
// `space` (the rows of every micro-batch of batch / M).
std::map<std::string, std::vector<int64_t>> needed_rows(const ModelSpec& model, const SearchSpace& space,
                                                        int64_t given_micro_batches);

}  // namespace arceus::plan
