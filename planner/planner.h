// `arceus plan`: predicts a pipeline's throughput on a cluster that may not exist yet, from
// costs measured on this machine (planner/calibration.h), by simulating the schedule's action
// lists with every message crossing its link (planner/simulate_links.h), R replicas of it with
// their gradient sums, and searches the configurations (replicas x stages, partition,
// schedule, M, v, bits, gradient bits) for the fastest. Torch-free and MPI-free:
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
  std::vector<int64_t> tensors;      // floats of each parameter tensor, in model order (empty: one of `parameters`)
};

struct ModelSpec {
  std::vector<LayerSpec> layers;
  bool transformer = false;
  int64_t seq = 1;                   // activation rows per sample (a GPT's context)
  int64_t in_width = 0;              // per sample: floats (MLP) or int32 token ids (GPT) sent to stage 1
  int64_t batch = 1;                 // dataset_config.batch_size
  bool feed_local = false;           // dataset_config.feed local: rank 0 sends row indices, not inputs
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
  // rank 0 and worker rank 1 on hosts[0]; worker rank k on hosts[k-1] (replica r's stage s is
  // worker rank 1 + r*S + s-1, ranks/placement.h)
  std::vector<Host> hosts;
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
  int64_t replicas = 1;              // R copies of the pipeline, each on its own S hosts
  int64_t stages = 1;
  int64_t chunks_per_rank = 1;
  int64_t micro_batches = 1;
  std::string schedule = schedules().front().name;  // the registry's default
  int bits = 32;
  int gradient_bits = 32;            // the replicas' gradient sums (R > 1): 32 (MPI allreduce) | 16 | 8 | 4 (ring)
  // training.sync diloco (R > 1): H steps of each replica alone, then one sum of the
  // pseudo-gradients at gradient_bits (diloco.bits) and the outer step; 0 = sums every step
  int64_t diloco_inner_steps = 0;
  std::vector<LayerRange> chunks;    // stages * chunks_per_rank, chunk c on stage c % stages + 1
  std::string partition = "given";   // how the chunks were chosen: given | balanced | timed | uniform
  bool in_process = false;           // one process: rank 0 and the stage as threads, nothing on a link
  // false: training.pipeline_flush false (one replica, 1f1b or eager1f1b, one chunk per rank, no
  // clipping): the steps as one stream, each stage's update before its next step's first forward
  bool pipeline_flush = true;
};

struct Prediction {
  bool ok = false;
  std::string error;
  double step_seconds = 0;
  double rate = 0;                   // samples/s (tokens/s for a transformer)
  double bubble = 0;                 // mean over stages of the idle fraction of a step
  double link_utilisation = 0;       // busiest link direction: busy time / step time
  std::string busiest_link = "-";    // "host 1 -> host 2"
  std::vector<double> stage_busy;    // per worker rank (replica-major): seconds of compute per step
  std::vector<double> host_memory;   // per host: peak bytes (parameters, gradients, optimizer, activations, buffers)
  // "compute (stage k)" or "link (host i -> host j)"; with replicas "compute (stage k of replica
  // r)", followed by " + sums N%" when the ranks wait N% of the step for the sums after their backward
  std::string bound;
  // Replicas: per worker rank, bytes per step it sends for the gradient sums; seconds per step
  // a rank waits for them after its last action (mean over the worker ranks; summary.json's sync_s).
  // DiLoCo: a round's exchange and outer step, divided by its H steps.
  std::vector<double> sync_bytes_out;
  double sync_seconds = 0;
};

Prediction predict(const ModelSpec& model, const Calibration& cal, const ClusterSpec& cluster, const Candidate& c);

struct SearchSpace {
  std::vector<std::string> schedules = planned_schedule_names();  // the registry's `planned` ones
  std::vector<int64_t> micro_batches{1, 2, 4, 8, 16, 32};
  std::vector<int64_t> chunks_per_rank{1, 2};
  std::vector<int> bits{32, 16, 8, 4};
  std::vector<int> gradient_bits{32, 16, 8, 4};  // with R > 1 only
  std::vector<int64_t> replicas;                 // R to consider; empty = 1 .. the hosts
  std::vector<int64_t> diloco_inner_steps;       // with R > 1 also training.sync diloco at these H (its bits: gradient_bits)
  int64_t max_stages = 0;  // 0 = one per host
  bool no_flush = false;   // also training.pipeline_flush false (one replica, 1f1b and eager1f1b)
};

struct Ranked {
  Candidate candidate;
  Prediction prediction;
};

// Every candidate of the space with R x S <= hosts (one worker per host, replica-major; a host
// left out is idle), best first; failures (a schedule that does not take the shape) are left
// out. At S = 1 (R > 1) the schedule only orders one rank's actions: a schedule no faster than
// another with no less memory there is left out.
std::vector<Ranked> search(const ModelSpec& model, const Calibration& cal, const ClusterSpec& cluster,
                           const SearchSpace& space);

// The chunks `partition.method=balanced` gives at `bits` (exactly as the trainer computes them).
std::vector<LayerRange> flop_balanced(const ModelSpec& model, int64_t stages, int64_t v, int bits);
// The chunks that balance the calibrated seconds (forward + backward at the micro-batch rows of
// `rows`, 0 = the batch; with replicas a replica's share).
std::vector<LayerRange> time_balanced(const ModelSpec& model, const Calibration& cal, int64_t stages,
                                      int64_t micro_batches, int64_t rows = 0);

// The accuracy cost of a bit width, from the bits table of bench/cluster.py (docs/performance.md, "Bits"):
// "" for 32, 16 and 8 bits (no measurable change), a sentence for 4.
std::string bits_accuracy_cost(int bits, bool transformer);
// The same for the replicas' gradient sums (communication.gradient_bits): "" for 32, else what
// the in-process test measured (the largest parameter difference from 32-bit sums), no
// accuracy figure: none has been measured.
std::string gradient_bits_accuracy_cost(int gradient_bits);
// The same for training.pipeline_flush false: the delayed update's cost measured by
// bench/cluster.py --suite flush (docs/performance.md).
std::string no_flush_accuracy_cost();

// training.sync diloco at H inner steps: what changes and what was measured (never "": the
// mathematics is not the synchronous one).
std::string diloco_accuracy_cost(int64_t inner_steps);

// "0-6|7-13" (v = 1) or "0-1,4-5|2-3,6-7".
std::string partition_text(const Candidate& c);
// [[0,1,2],[3,4]] for partition.layers (v = 1 only).
std::string partition_layers_value(const Candidate& c);

// The (layer key, rows) pairs a model's micro-benchmarks need for the micro-batch counts of
// `space` (the rows of every micro-batch of batch / M, and of each replica's share of it for the
// replica counts of `space` up to `max_replicas`).
std::map<std::string, std::vector<int64_t>> needed_rows(const ModelSpec& model, const SearchSpace& space,
                                                        int64_t given_micro_batches, int64_t max_replicas = 1);

}  // namespace arceus::plan
