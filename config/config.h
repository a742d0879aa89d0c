// Job configuration: one struct per YAML section, parsed once, validated, then
// shipped from rank 0 to the other ranks as canonical YAML text.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/limits.h"
#include "ranks/schedule/registry.h"

namespace arceus {

// Thrown for any bad key or value; the message names the key, the value and what was expected.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  std::string type = "mlp";                       // mlp | transformer (char-level GPT)
  std::vector<int64_t> layer_sizes{784, 128, 64, 10};  // mlp: widths; layers = size() - 1
  // transformer only (models/gpt.h): layers = n_blocks + 2 (embeddings, blocks, head)
  int64_t context = 128;  // tokens per sequence (position embeddings)
  int64_t n_emb = 128;    // embedding width C
  int64_t n_heads = 4;    // attention heads; C must be a multiple
  int64_t n_blocks = 3;   // transformer blocks
  double dropout = 0.1;   // in [0, 1)
};

struct NormalizeConfig {
  std::vector<double> mean{0.0};  // one value per channel (MNIST-format: 1 channel)
  std::vector<double> std{1.0};   // > 0
};

struct SyntheticConfig {
  int64_t train_size = 4096;  // samples in the training split
  int64_t val_size = 1024;    // samples in the validation split
  int64_t features = 784;     // input width
  int64_t classes = 10;       // number of labels
  double noise = 1.0;         // stddev of the noise around each class centre
};

struct DatasetConfig {
  std::string name = "FashionMNIST";  // MNIST | FashionMNIST | synthetic | text
  std::string root;                   // directory of the IDX files; "" = the name's default
  std::string source;                 // text: the UTF-8 file to train on (required)
  int64_t windows_per_epoch = 0;      // text: random windows per epoch (0 = train chars / context;
                                      // a transformer's default is 6400: 50 batches of 128)
  int64_t batch_size = 256;           // training batch (split into micro-batches)
  int64_t val_batch_size = 1000;      // validation batch
  NormalizeConfig normalize;          // x' = (x/255 - mean) / std
  bool shuffle = true;                // reshuffle the training set each epoch (from the seed)
  int64_t max_train_samples = 0;      // 0 = all; else use the first N training samples (not text)
  int64_t max_val_samples = 0;        // 0 = all; else use the first N validation samples (text: windows)
  std::string feed = "rank0";         // rank0 | local (docs/replicas.md, feeding the replicas)
  SyntheticConfig synthetic;          // only for name: synthetic
};

struct TrainingConfig {
  int64_t epochs = 5;
  double learning_rate = 0.1;
  std::string optimizer = "sgd";       // sgd | adamw
  double momentum = 0.0;               // sgd only; 0 = the original's plain SGD
  double weight_decay = 0.0;
  int64_t micro_batches = 1;           // M: micro-batches per batch
  // A name from the schedule registry (ranks/schedule/registry.h); default its first entry.
  std::string schedule = schedules().front().name;
  uint64_t seed = 42;                  // weights, data order, stochastic rounding
  int64_t max_steps = 0;               // 0 = whole epoch; else at most N steps per epoch
  std::string lr_schedule = "constant";  // constant | cosine (decay to min_learning_rate)
  int64_t warmup_steps = 0;            // linear warm-up from 0 over the first N steps
  double min_learning_rate = 0.0;      // cosine: the rate at the last step
  double grad_clip = 0.0;              // max global gradient norm across stages (0 = off)
  // false: no flush at each optimizer step (PipeDream-2BW: stashed weights, updates one step
  // late; docs/schedules.md); 1f1b or eager1f1b, one replica, no grad_clip
  bool pipeline_flush = true;
  std::string sync = "step";           // replicas: step (sum every step) | diloco (docs/replicas.md)
  std::string on_device_loss = "resume";  // arceus serve, a job on devices: resume | fail (docs/devices.md)
};

// training.sync diloco (Douillard et al. 2023): each replica takes `inner_steps` steps of the
// job's optimizer on its own share, then the replicas average their pseudo-gradients (the
// round's start minus where they got) and all take one Nesterov SGD step from the start.
struct DilocoConfig {
  int64_t inner_steps = 50;          // H: inner steps per round
  double outer_learning_rate = 0.7;  // the paper's
  double outer_momentum = 0.9;       // Nesterov
  int bits = 32;                     // the pseudo-gradients' sums: 32 (MPI) | 16 | 8 | 4 (ring, error feedback)
};

struct CommunicationConfig {
  int quantization_bits = 8;        // 32 | 16 | 8 | 4
  bool stochastic_rounding = true;  // gradients only (unbiased rounding)
  // Gradients below 32 bits: add each gradient message's quantization error (what the
  // receiver did not get) to the next step's message of the same chunk and micro-batch
  // (error feedback, as in 1-bit Adam). Costs one float per gradient element sent, per stage.
  bool error_feedback = false;
  int gradient_bits = 32;  // replicas' gradient synchronisation: 32 (MPI's allreduce) | 16 | 8 | 4
};

struct PartitionConfig {
  std::string method = "uniform";          // uniform | balanced
  int64_t stages = 0;                      // 0 = auto (world size - 1, or 1 alone)
  std::vector<std::vector<int64_t>> layers;  // explicit placement; overrides method
  // Chunks (virtual stages) per stage rank for multi-chunk schedules (multi_chunk in the
  // registry): 1..8; more than 1 needs such a training.schedule and no explicit layers.
  int64_t chunks_per_rank = 1;
  int64_t replicas = 1;  // R: copies of the pipeline on R x S worker ranks (data parallelism); 0 = auto
};

struct OutputConfig {
  std::string dir = "runs/default";    // summary.json, checkpoint.h5, metrics.h5 go here
  int64_t checkpoint_every = 1;        // epochs between checkpoints (0 = only at the end)
  int64_t checkpoint_every_steps = 0;  // also every N training steps (0 = off)
  bool metrics = true;                 // write metrics.h5
  int64_t sample_tokens = 200;         // transformer: characters sampled after each epoch (0 = off)
  double sample_temperature = 0.8;     // > 0 samples; 0 = argmax
};

// With model_config.type transformer the defaults differ (the original's GPT settings):
// optimizer adamw, learning_rate 1e-3, weight_decay 0.01, dataset name text, batch_size 128,
// val_batch_size 64, windows_per_epoch 6400. Keys given in the document override them.
struct Config {
  ModelConfig model;
  DatasetConfig dataset;
  TrainingConfig training;
  CommunicationConfig communication;
  PartitionConfig partition;
  OutputConfig output;
  DilocoConfig diloco;
  bool resume = false;  // continue from <output.dir>/checkpoint.h5 when it exists
};

// The one test of "this job is a transformer" (a char-level GPT): its model's type.
inline bool is_transformer(const Config& c) { return c.model.type == "transformer"; }

// One "--set a.b.c=value" override; value is parsed as YAML (so 4, 0.1, [1,2], true work).
struct Override {
  std::string key;
  std::string value;
};
Override parse_override(const std::string& assignment);  // "a.b=v" -> {a.b, v}; ConfigError if no '='

// Parses YAML text, applies overrides (same validation as the file), validates everything,
// including the sizes in `limits` (config/limits.h: layers, widths, parameters, batch sizes,
// windows, synthetic values, nesting). `source` names the text in messages (a file path,
// "<rest body>").
Config parse_config(const std::string& yaml_text, const std::vector<Override>& overrides = {},
                    const std::string& source = "<config>", const Limits& limits = operator_limits());
Config load_config_file(const std::string& path, const std::vector<Override>& overrides = {},
                        const Limits& limits = operator_limits());

// Canonical YAML of a validated config: parse_config(to_yaml(c)) == c. Only the keys that apply
// (a transformer's model keys, not the MLP's; a text's keys only for a text). This is also how
// rank 0 sends the job to the other ranks.
std::string to_yaml(const Config& config);

// The keys whose values differ, "training.epochs: 5 vs 3", in the description's order; empty
// when a and b are the same config.
std::vector<std::string> config_differences(const Config& a, const Config& b);

// Every key of the description (config/fields.h), for `arceus config keys` and the docs.
struct ConfigKeyInfo {
  std::string key;                  // dotted
  std::string default_value;        // as YAML flow text
  std::string transformer_default;  // when model_config.type transformer changes it, else ""
  std::string applies_to;           // "" (always), "mlp", "transformer", "text", "not text"
  std::string help;
};
std::vector<ConfigKeyInfo> config_keys();
// The keys as text: aligned columns, or (markdown) the table docs/configuration.md holds.
std::string format_config_keys(bool markdown);

}  // namespace arceus
