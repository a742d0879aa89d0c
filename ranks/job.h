// One training job as every rank knows it: the config, the placement and what the data told
// rank 0 (widths, vocabulary), with the model-generic helpers the runtime needs (MLP or GPT).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "models/gpt.h"
#include "ranks/placement.h"

namespace arceus {

struct DataSplits;  // datasets/dataset.h

struct Job {
  Config config;
  std::string config_yaml;
  Placement placement;
  int64_t features = 0;  // MLP: input width; GPT: context
  int64_t classes = 0;   // MLP: labels; GPT: vocabulary size
  std::string dataset_description;
  bool resume = false;   // stages first receive their state from rank 0
  int world = 1;         // processes of the MPI world (1: the in-process run)
  // dataset_config.feed local: the first stages' own copy of the data (loaded by worker_loop,
  // checked against rank 0's), and rank 0's checksum of it.
  std::shared_ptr<const DataSplits> local_data;
  std::string data_fingerprint;
  bool local_feed() const { return config.dataset.feed == "local"; }
  // Set by finish_job from the config and the data:
  GptConfig gpt_config;  // when transformer()
  int64_t seq = 1;       // targets (and activation rows) per sample: 1, or the GPT's context

  bool transformer() const { return is_transformer(config); }
  int64_t stages() const { return placement.stages; }
  // The process rank that runs stage s (in the in-process run every stage is in rank 0).
  int process_rank_of_stage(int64_t stage) const { return world == 1 ? 0 : placement.rank_of_stage(stage); }
};

// A transformer's layer by its index: "embed", "blocks.<i>", "head".
std::string transformer_layer_name(const Config& c, int64_t layer);
GptConfig gpt_config_of(const Config& c, int64_t vocab);
void finish_job(Job& job);  // gpt_config, seq

// Every parameter of the whole model with its shape, under its global name.
std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const Config& c, int64_t vocab);
// The layer a parameter or optimizer-state name ("<parameter>[:<state>]") belongs to.
int64_t layer_of(const Job& job, const std::string& name);
// Parameters held by each stage (index s - 1).
std::vector<int64_t> stage_parameter_counts(const Job& job);
// Estimated cost (partition cost model) of each stage's chunks (index s - 1).
std::vector<double> stage_cost_estimates(const Job& job);
// Width (per row) of the activations leaving chunk c.
int64_t boundary_width(const Job& job, int64_t chunk);

struct CheckpointData;
// A checkpoint must hold exactly the model's tensors with the model's shapes: StorageError
// naming `path`, the first tensor missing, extra or of another shape.
void check_checkpoint_matches(const CheckpointData& ck, const Config& c, int64_t vocab, const std::string& path);

}  // namespace arceus
