// Limits on the sizes a job, a request body or a file may ask for, so that hostile or mistyped
// input fails with a message naming the limit instead of an allocation that takes the machine
// down (docs/reliability.md, Fuzzing and input limits).
//
// The limits are the operator's, not the job's: no config key or request body can raise them.
// Each has a default below; the operator raises (or lowers) one with an environment variable,
// ARCEUS_LIMIT_<NAME> (ARCEUS_LIMIT_MAX_PARAMETERS=4000000000), read once per process by
// operator_limits(), the one place that reads them. Torch-free, MPI-free, no YAML.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace arceus {

struct Limits {
  // model_config: layers of the model (mlp: layer_sizes - 1; transformer: n_blocks + 2).
  int64_t max_layers = 1024;
  // model_config.layer_sizes[i], n_emb, context; dataset_config.synthetic.features, classes.
  int64_t max_layer_width = int64_t{1} << 20;
  // Parameters of the model in total (the transformer's without the vocabulary-sized token
  // embedding and head, unknown until the text is read), and the float values a checkpoint may
  // hold (3x: parameters and two optimizer states each). 1e9 float32 parameters are 4 GB, 16 GB
  // with their gradients and AdamW's two moments: this machine's 24 GiB.
  int64_t max_parameters = 1'000'000'000;
  // dataset_config.batch_size and val_batch_size.
  int64_t max_batch_size = int64_t{1} << 20;
  // dataset_config.windows_per_epoch (a text job's random windows of context tokens per epoch).
  int64_t max_windows_per_epoch = int64_t{1} << 24;
  // Values of a synthetic dataset: (train_size + val_size) x features, and classes x features.
  int64_t max_synthetic_values = int64_t{1} << 30;
  // Levels of nesting of a YAML document (a config, a --set value) or a JSON request body.
  int64_t max_nesting = 64;
};

// No limits at all: for text that was checked already under the limits of the process that
// sent it (a worker rank parsing the config rank 0 broadcast, from a host whose environment
// may not raise the limits rank 0's did).
Limits no_limits();

// One limit: its name (the variable is ARCEUS_LIMIT_ + the name in upper case) and its field.
struct LimitInfo {
  const char* name;
  int64_t Limits::*field;
};
const std::vector<LimitInfo>& limit_table();

// "ARCEUS_LIMIT_MAX_PARAMETERS" for "max_parameters".
std::string limit_variable(const std::string& name);

// An ARCEUS_LIMIT_* variable that is unknown or not a positive integer.
class LimitError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The limits from `environ`: the defaults, with each ARCEUS_LIMIT_<NAME> applied. LimitError
// for an unknown ARCEUS_LIMIT_ variable or a value that is not a positive integer.
Limits limits_from_environment();

// limits_from_environment(), read on the first call and kept: the limits every parser of this
// process applies unless it is given others.
const Limits& operator_limits();

// 1234567 -> "1,234,567".
std::string with_commas(int64_t n);

// "above the limit max_parameters = 1,000,000,000" and the hint that follows an error's
// location: "; raise it with ARCEUS_LIMIT_MAX_PARAMETERS in arceus's environment".
std::string above_limit(const char* name, int64_t limit);
std::string raise_hint(const char* name);

}  // namespace arceus
