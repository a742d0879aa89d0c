// The one description of every config key: its dotted path, where it applies, its rule (type,
// range or choices, and the words an error uses for what was expected) and one line of help.
// Reading and checking a document, emitting canonical YAML (what rank 0 sends the workers) and
// JSON (the REST views), listing the keys (`arceus config keys`, the docs' table) and comparing
// two configs all walk this list with visit_fields(). Adding a key is its field in config.h, one
// line here, and its use; checks that span several keys live in validate.cpp.
//
// Order matters: it is the order of the keys in the YAML and in messages ("Allowed keys in
// 'training': ..."), and the keys of one section are contiguous.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "config/config.h"
#include "ranks/schedule/registry.h"

namespace arceus {

// Where a key applies: a key written where it does not apply is an error naming the setting that
// excludes it (before its value is checked), and it is left out of the YAML and JSON.
enum class Scope {
  Always,
  Mlp,          // model_config.type mlp
  Transformer,  // model_config.type transformer
  Text,         // dataset_config.name text
  NotText,      // dataset_config.name other than text
  Diloco,       // training.sync diloco
};

struct Key {
  const char* path;  // dotted: "training.epochs"
  const char* help;  // one line, for `arceus config keys` and docs/configuration.md
  Scope scope = Scope::Always;
  const char* instead = "";  // out of its scope: what to use instead, for the error
};

// The rules, one per kind of value. `expectation` is how an error names a good value.
struct Int {  // int64_t or uint64_t, in [min, max]
  int64_t min;
  const char* expectation;
  int64_t max = std::numeric_limits<int64_t>::max();
};
struct IntOneOf {  // int, one of the choices
  std::vector<int> choices;
};
struct Number {  // double, finite and ok(value)
  bool (*ok)(double);
  const char* expectation;
};
struct Flag {};  // bool
struct Text {    // std::string, any scalar
  bool allow_empty;
};
struct OneOf {  // std::string, exactly one of the choices
  std::vector<std::string> choices;
};
struct IntList {  // std::vector<int64_t> of at least min_size items, each >= min
  size_t min_size;
  int64_t min;
  const char* expectation;
  const char* item_expectation;
};
struct NumberList {  // std::vector<double>, non-empty, each finite and ok(value)
  bool (*ok)(double);
  const char* expectation;
  const char* item_expectation;
};
struct LayerLists {};  // std::vector<std::vector<int64_t>>: partition.layers
struct AutoOr {        // int64_t: 'auto' (stored as 0) or an integer >= min
  int64_t min;
  const char* expectation;
};

// training.schedule's choices: the registry's names, in its order (only the multi-chunk ones
// with `multi_chunk_only`).
inline std::vector<std::string> schedule_choices(bool multi_chunk_only = false) {
  std::vector<std::string> names;
  for (const ScheduleInfo& info : schedules()) {
    if (!multi_chunk_only || info.multi_chunk) names.push_back(info.name);
  }
  return names;
}

// The schedules that run with training.pipeline_flush false, in the registry's order.
inline std::vector<std::string> streamed_schedule_choices() {
  std::vector<std::string> names;
  for (const ScheduleInfo& info : schedules()) {
    if (info.stream_warmup) names.push_back(info.name);
  }
  return names;
}

namespace rules {
inline bool any(double) { return true; }
inline bool positive(double v) { return v > 0; }
inline bool non_negative(double v) { return v >= 0; }
inline bool fraction(double v) { return v >= 0 && v < 1; }  // [0, 1)
}  // namespace rules

// Calls v(key, field, rule) for every key of `c` (a Config or a const Config), in order.
template <class C, class V>
void visit_fields(C& c, V&& v) {
  using namespace rules;
  auto& m = c.model;
  v(Key{"model_config.type", "mlp, or transformer: the char-level GPT (docs/transformer.md), with other defaults"}, m.type,
    OneOf{{"mlp", "transformer"}});
  v(Key{"model_config.layer_sizes", "widths, input first; layers = entries - 1, ReLU between them", Scope::Mlp},
    m.layer_sizes,
    IntList{2, 1, "a list of at least 2 positive integers (input, hidden..., output widths)",
            "a positive integer (layer width)"});
  v(Key{"model_config.context", "tokens per sequence (position embeddings)", Scope::Transformer}, m.context,
    Int{1, "a positive integer (tokens per sequence)"});
  v(Key{"model_config.n_emb", "embedding width; a multiple of n_heads", Scope::Transformer}, m.n_emb,
    Int{1, "a positive integer (embedding width)"});
  v(Key{"model_config.n_heads", "attention heads", Scope::Transformer}, m.n_heads,
    Int{1, "a positive integer (attention heads)"});
  v(Key{"model_config.n_blocks", "transformer blocks; the model has n_blocks + 2 layers", Scope::Transformer},
    m.n_blocks, Int{1, "a positive integer (transformer blocks)"});
  v(Key{"model_config.dropout", "dropout probability in [0, 1)", Scope::Transformer}, m.dropout,
    Number{fraction, "a number in [0, 1)"});

  auto& d = c.dataset;
  v(Key{"dataset_config.name", "MNIST, FashionMNIST, synthetic, or text (a transformer's)"}, d.name,
    OneOf{{"MNIST", "FashionMNIST", "synthetic", "text"}});
  v(Key{"dataset_config.root", "directory of the IDX files (raw or .gz); empty: data/<name>/raw, data/<name>, /usr/share/datasets"}, d.root,
    Text{true});
  v(Key{"dataset_config.source", "the UTF-8 text file to train on (required for text)", Scope::Text}, d.source,
    Text{true});
  v(Key{"dataset_config.windows_per_epoch", "random windows per epoch; 0 = train characters / context",
        Scope::Text},
    d.windows_per_epoch, Int{0, "a non-negative integer (0 = train characters / context)"});
  v(Key{"dataset_config.batch_size", "rows of one training step (split among the replicas, then into micro-batches)"}, d.batch_size,
    Int{1, "a positive integer"});
  v(Key{"dataset_config.val_batch_size", "rows of one validation batch"}, d.val_batch_size,
    Int{1, "a positive integer"});
  v(Key{"dataset_config.normalize.mean", "x' = (x/255 - mean) / std, one value per channel"}, d.normalize.mean,
    NumberList{any, "a non-empty list of numbers (one per channel)", "a finite number"});
  v(Key{"dataset_config.normalize.std", "one positive value per channel"}, d.normalize.std,
    NumberList{positive, "a non-empty list of positive numbers (one per channel)", "a positive finite number"});
  v(Key{"dataset_config.shuffle", "reshuffle the training set every epoch (from the seed)"}, d.shuffle, Flag{});
  v(Key{"dataset_config.max_train_samples", "use only the first N training samples; 0 = all", Scope::NotText,
        "use windows_per_epoch for the windows per epoch, max_val_samples to cap validation windows"},
    d.max_train_samples, Int{0, "a non-negative integer (0 = all)"});
  v(Key{"dataset_config.max_val_samples", "use only the first N validation samples (text: windows); 0 = all"},
    d.max_val_samples, Int{0, "a non-negative integer (0 = all)"});
  v(Key{"dataset_config.feed", "rank0: rank 0 sends the inputs; local: each first stage reads its own copy, rank 0 sends row indices",
        Scope::NotText, "a text job's inputs are token ids already, 4 bytes per token"},
    d.feed, OneOf{{"rank0", "local"}});
  auto& y = d.synthetic;
  v(Key{"dataset_config.synthetic.train_size", "synthetic: training samples"}, y.train_size,
    Int{1, "a positive integer"});
  v(Key{"dataset_config.synthetic.val_size", "synthetic: validation samples"}, y.val_size,
    Int{1, "a positive integer"});
  v(Key{"dataset_config.synthetic.features", "synthetic: input width"}, y.features, Int{1, "a positive integer"});
  v(Key{"dataset_config.synthetic.classes", "synthetic: labels"}, y.classes, Int{1, "a positive integer"});
  v(Key{"dataset_config.synthetic.noise", "synthetic: standard deviation around each class centre"}, y.noise,
    Number{non_negative, "a non-negative finite number"});

  auto& t = c.training;
  v(Key{"training.epochs", "passes over the training set"}, t.epochs, Int{1, "a positive integer"});
  v(Key{"training.learning_rate", "the optimizer's rate (the peak, with a schedule)"}, t.learning_rate,
    Number{positive, "a positive finite number"});
  v(Key{"training.optimizer", "sgd or adamw"}, t.optimizer, OneOf{{"sgd", "adamw"}});
  v(Key{"training.momentum", "sgd only; 0 = the original's plain SGD"}, t.momentum,
    Number{fraction, "a number in [0, 1)"});
  v(Key{"training.weight_decay", "L2 (sgd) or decoupled (adamw) weight decay"}, t.weight_decay,
    Number{non_negative, "a non-negative finite number"});
  v(Key{"training.micro_batches", "M: micro-batches per step and replica (at most 256; capped at the rows)"}, t.micro_batches,
    Int{1, "a positive integer"});
  v(Key{"training.schedule", "the pipeline schedule (docs/schedules.md): a name from the registry"}, t.schedule,
    OneOf{schedule_choices()});
  v(Key{"training.seed", "weights, data order, stochastic rounding, dropout"}, t.seed,
    Int{0, "a non-negative integer"});
  v(Key{"training.max_steps", "at most N steps per epoch; 0 = the whole epoch"}, t.max_steps,
    Int{0, "a non-negative integer (0 = whole epoch)"});
  v(Key{"training.lr_schedule", "constant, or cosine decay to min_learning_rate"}, t.lr_schedule,
    OneOf{{"constant", "cosine"}});
  v(Key{"training.warmup_steps", "linear warm-up from 0 over the first N steps"}, t.warmup_steps,
    Int{0, "a non-negative integer (0 = no warm-up)"});
  v(Key{"training.min_learning_rate", "cosine: the rate at the last step (at most learning_rate)"},
    t.min_learning_rate, Number{non_negative, "a non-negative finite number"});
  v(Key{"training.grad_clip", "max global gradient norm over all stages (of the summed gradient with replicas); 0 = off"}, t.grad_clip,
    Number{non_negative, "a non-negative finite number (max global gradient norm; 0 = off)"});
  v(Key{"training.pipeline_flush", "false: the next step's forwards start before this step's backwards end (PipeDream-2BW, each update one step late; 1f1b or eager1f1b, one replica, no grad_clip)"},
    t.pipeline_flush, Flag{});
  v(Key{"training.sync", "replicas: step (sum the gradients every step) or diloco (average every diloco.inner_steps)"},
    t.sync, OneOf{{"step", "diloco"}});
  v(Key{"training.on_device_loss", "arceus serve, a job on devices: resume (from the last checkpoint on the devices left) or fail"},
    t.on_device_loss, OneOf{{"resume", "fail"}});

  auto& k = c.communication;
  v(Key{"communication.quantization_bits", "bits per value of activations and gradients: 32, 16, 8 or 4"},
    k.quantization_bits, IntOneOf{{32, 16, 8, 4}});
  v(Key{"communication.stochastic_rounding", "unbiased rounding of gradients below 32 bits"},
    k.stochastic_rounding, Flag{});
  v(Key{"communication.error_feedback", "gradients below 32 bits: add each message's quantization error to the next step's (one float per element sent; reset on resume)"},
    k.error_feedback, Flag{});
  v(Key{"communication.gradient_bits", "replicas' gradient sync: 32 (MPI allreduce) or 16, 8, 4 (a compressed ring)"},
    k.gradient_bits, IntOneOf{{32, 16, 8, 4}});

  auto& p = c.partition;
  v(Key{"partition.method", "uniform (the original's rule) or balanced (by the cost model)"}, p.method,
    OneOf{{"uniform", "balanced"}});
  v(Key{"partition.stages", "S: auto (the workers over the replicas) or N; ranks beyond R x S idle"}, p.stages,
    AutoOr{1, "'auto' or a positive integer"});
  v(Key{"partition.layers", "explicit layer lists, one per stage, e.g. [[0, 1], [2]]; overrides method"},
    p.layers, LayerLists{});
  v(Key{"partition.chunks_per_rank", "v, 1..8: chunks per stage rank (interleaved, looped_bfs)"},
    p.chunks_per_rank, Int{1, "an integer from 1 to 8 (chunks per stage rank)", 8});
  v(Key{"partition.replicas", "R copies of the pipeline, each a share of every batch (docs/replicas.md); auto: as many as the workers allow"},
    p.replicas, AutoOr{1, "'auto' or a positive integer"});

  auto& o = c.output;
  v(Key{"output.dir", "summary.json, checkpoint.h5, metrics.h5 go here"}, o.dir, Text{false});
  v(Key{"output.checkpoint_every", "epochs between checkpoints; 0 = only at the end"}, o.checkpoint_every,
    Int{0, "a non-negative integer (epochs between checkpoints; 0 = only at the end)"});
  v(Key{"output.checkpoint_every_steps", "also every N training steps; 0 = off"}, o.checkpoint_every_steps,
    Int{0, "a non-negative integer (steps between checkpoints; 0 = off)"});
  v(Key{"output.metrics", "write metrics.h5"}, o.metrics, Flag{});
  v(Key{"output.sample_tokens", "transformer: characters sampled after each epoch; 0 = off"},
    o.sample_tokens, Int{0, "a non-negative integer (characters sampled after each epoch; 0 = off)"});
  v(Key{"output.sample_temperature", "transformer: sampling temperature; 0 = argmax"}, o.sample_temperature,
    Number{non_negative, "a non-negative finite number (0 = argmax)"});

  auto& dl = c.diloco;
  v(Key{"diloco.inner_steps", "H: each replica's steps between averages", Scope::Diloco}, dl.inner_steps,
    Int{1, "a positive integer (inner steps per round)"});
  v(Key{"diloco.outer_learning_rate", "the outer Nesterov step's rate", Scope::Diloco}, dl.outer_learning_rate,
    Number{positive, "a positive finite number"});
  v(Key{"diloco.outer_momentum", "the outer Nesterov step's momentum, [0, 1)", Scope::Diloco}, dl.outer_momentum,
    Number{fraction, "a number in [0, 1)"});
  v(Key{"diloco.bits", "the pseudo-gradients' sums: 32 (MPI allreduce) or 16, 8, 4 (a ring with error feedback)",
        Scope::Diloco},
    dl.bits, IntOneOf{{32, 16, 8, 4}});

  v(Key{"resume", "continue from <output.dir>/checkpoint.h5 when it exists"}, c.resume, Flag{});
}

}  // namespace arceus
