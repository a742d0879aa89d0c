// Unit tests for config/: YAML parsing, validation messages, --set overrides, round trip.
#include "config/config.h"
#include "support/files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace arceus {
namespace {

// Field-by-field comparison so a failing round trip names the field that differs.
// Every key of the description (config/fields.h), compared exactly (doubles too).
void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(config_differences(a, b), std::vector<std::string>{});
}

// The ConfigError message of parsing `yaml`; fails the test if parsing succeeds.
std::string error_of(const std::string& yaml, const std::vector<Override>& overrides = {},
                     const std::string& source = "configs/x.yaml") {
  try {
    parse_config(yaml, overrides, source);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError for:\n" << yaml;
  return "";
}

void expect_contains(const std::string& message, const std::vector<std::string>& parts) {
  for (const auto& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos)
        << "message lacks '" << part << "':\n  " << message;
  }
}

std::vector<Override> sets(const std::vector<std::string>& assignments) {
  std::vector<Override> out;
  for (const auto& a : assignments) out.push_back(parse_override(a));
  return out;
}

const char* kFullExample = R"(
model_config:
  type: mlp
  layer_sizes: [784, 128, 64, 10]
dataset_config:
  name: FashionMNIST        # MNIST | FashionMNIST | synthetic
  root: /usr/share/datasets/fashion-mnist
  batch_size: 256
  val_batch_size: 1000
  normalize: {mean: [0.2860], std: [0.3530]}
  shuffle: true
  max_train_samples: 0
  max_val_samples: 0
  synthetic: {train_size: 4096, val_size: 1024, features: 784, classes: 10, noise: 1.0}
training:
  epochs: 5
  learning_rate: 0.1
  optimizer: sgd            # sgd | adamw
  momentum: 0.0
  weight_decay: 0.0
  micro_batches: 4
  schedule: 1f1b            # sequential | gpipe | 1f1b
  seed: 42
  max_steps: 0
communication:
  quantization_bits: 8      # 32 | 16 | 8 | 4
  stochastic_rounding: true
partition:
  method: uniform           # uniform | balanced
  stages: auto              # auto | positive integer  (auto is stored as 0)
  layers: [[0, 1], [2]]     # optional explicit placement
output:
  dir: runs/fashion-mlp
)";

// A character-level GPT job as the original's REST body gives it: dataset_config.name is
// implied ('text') by the model type.
const char* kTransformerExample = R"(
model_config:
  type: transformer
  context: 64
  n_emb: 96
  n_heads: 6
  n_blocks: 2
  dropout: 0.2
dataset_config:
  source: /usr/share/common-licenses/GPL-3
  windows_per_epoch: 500
  batch_size: 32
training:
  learning_rate: 3e-4
  optimizer: adamw
  lr_schedule: cosine
  warmup_steps: 100
  min_learning_rate: 3e-5
  grad_clip: 1.0
output:
  sample_tokens: 50
  sample_temperature: 0
)";

// A transformer job whose model_config and dataset_config maps get `model_extra` and
// `dataset_extra` ("key: value, ..."), so one key can be made bad while the rest is valid.
std::string transformer_yaml(const std::string& model_extra,
                             const std::string& dataset_extra = "") {
  return "model_config: {type: transformer" + (model_extra.empty() ? "" : ", " + model_extra) +
         "}\ndataset_config: {source: data/tiny.txt" +
         (dataset_extra.empty() ? "" : ", " + dataset_extra) + "}\n";
}

// ---------------------------------------------------------------------------------------------

TEST(ConfigDefaults, EmptyDocumentGivesStructDefaults) {
  const Config defaults;
  expect_same(parse_config(""), defaults);
  expect_same(parse_config("# nothing but a comment\n"), defaults);
  expect_same(parse_config("{}"), defaults);
  // Spot-check that the defaults really are the struct's (not zeros).
  const Config c = parse_config("");
  EXPECT_EQ(c.model.layer_sizes, (std::vector<int64_t>{784, 128, 64, 10}));
  EXPECT_EQ(c.training.seed, 42u);
  EXPECT_EQ(c.output.dir, "runs/default");
}

TEST(ConfigDefaults, EmptySectionsAndPartialSectionsKeepDefaults) {
  const Config c = parse_config("training:\ndataset_config:\n  normalize:\noutput: {}\n"
                                "communication:\n  quantization_bits: 4\n");
  const Config defaults;
  EXPECT_EQ(c.communication.quantization_bits, 4);
  EXPECT_EQ(c.communication.stochastic_rounding, defaults.communication.stochastic_rounding);
  EXPECT_EQ(c.training.epochs, defaults.training.epochs);
  EXPECT_EQ(c.dataset.normalize.mean, defaults.dataset.normalize.mean);
  EXPECT_EQ(c.output.dir, defaults.output.dir);
}

TEST(ConfigParse, FullExample) {
  const Config c = parse_config(kFullExample, {}, "configs/fashion.yaml");
  EXPECT_EQ(c.model.type, "mlp");
  EXPECT_EQ(c.model.layer_sizes, (std::vector<int64_t>{784, 128, 64, 10}));
  EXPECT_EQ(c.dataset.name, "FashionMNIST");
  EXPECT_EQ(c.dataset.root, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c.dataset.batch_size, 256);
  EXPECT_EQ(c.dataset.val_batch_size, 1000);
  EXPECT_EQ(c.dataset.normalize.mean, std::vector<double>{0.2860});
  EXPECT_EQ(c.dataset.normalize.std, std::vector<double>{0.3530});
  EXPECT_TRUE(c.dataset.shuffle);
  EXPECT_EQ(c.dataset.max_train_samples, 0);
  EXPECT_EQ(c.dataset.max_val_samples, 0);
  EXPECT_EQ(c.dataset.synthetic.train_size, 4096);
  EXPECT_EQ(c.dataset.synthetic.val_size, 1024);
  EXPECT_EQ(c.dataset.synthetic.features, 784);
  EXPECT_EQ(c.dataset.synthetic.classes, 10);
  EXPECT_EQ(c.dataset.synthetic.noise, 1.0);
  EXPECT_EQ(c.training.epochs, 5);
  EXPECT_EQ(c.training.learning_rate, 0.1);
  EXPECT_EQ(c.training.optimizer, "sgd");
  EXPECT_EQ(c.training.momentum, 0.0);
  EXPECT_EQ(c.training.weight_decay, 0.0);
  EXPECT_EQ(c.training.micro_batches, 4);
  EXPECT_EQ(c.training.schedule, "1f1b");
  EXPECT_EQ(c.training.seed, 42u);
  EXPECT_EQ(c.training.max_steps, 0);
  EXPECT_EQ(c.communication.quantization_bits, 8);
  EXPECT_TRUE(c.communication.stochastic_rounding);
  EXPECT_EQ(c.partition.method, "uniform");
  EXPECT_EQ(c.partition.stages, 0);
  EXPECT_EQ(c.partition.layers, (std::vector<std::vector<int64_t>>{{0, 1}, {2}}));
  EXPECT_EQ(c.output.dir, "runs/fashion-mlp");
}

TEST(ConfigParse, AcceptedSpellings) {
  const Config c = parse_config(R"(
dataset_config: {name: synthetic, shuffle: no, root: "", normalize: {mean: [0, 0.5, -1], std: [1, 2e-1, .5]}}
training: {optimizer: adamw, schedule: gpipe, momentum: 0.99, learning_rate: 1, seed: 18446744073709551615}
communication: {quantization_bits: 32, stochastic_rounding: yes}
partition: {method: balanced, stages: 3}
output: {dir: "123"}
)");
  EXPECT_EQ(c.dataset.name, "synthetic");
  EXPECT_FALSE(c.dataset.shuffle);
  EXPECT_EQ(c.dataset.root, "");
  EXPECT_EQ(c.dataset.normalize.mean, (std::vector<double>{0.0, 0.5, -1.0}));
  EXPECT_EQ(c.dataset.normalize.std, (std::vector<double>{1.0, 0.2, 0.5}));
  EXPECT_EQ(c.training.optimizer, "adamw");
  EXPECT_EQ(c.training.schedule, "gpipe");
  EXPECT_EQ(c.training.momentum, 0.99);
  EXPECT_EQ(c.training.learning_rate, 1.0);  // an integer is a valid number
  EXPECT_EQ(c.training.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.communication.quantization_bits, 32);
  EXPECT_TRUE(c.communication.stochastic_rounding);
  EXPECT_EQ(c.partition.method, "balanced");
  EXPECT_EQ(c.partition.stages, 3);
  EXPECT_EQ(c.output.dir, "123");
}

// ---------------------------------------------------------------------------------------------
// Validation: every message names the key path, the value as written and the expectation.

struct BadValue {
  std::string yaml;
  std::string key;          // full key path, as it must appear in the message
  std::string value;        // the value as written
  std::string expectation;  // a phrase of what was expected
};

TEST(ConfigValidation, EachBadValueIsNamed) {
  const std::vector<BadValue> cases = {
      // model_config
      {"model_config: {layer_sizes: [784]}", "model_config.layer_sizes", "[784]", "at least 2"},
      {"model_config: {layer_sizes: []}", "model_config.layer_sizes", "[]", "at least 2"},
      {"model_config: {layer_sizes: 784}", "model_config.layer_sizes", "784", "list"},
      {"model_config: {layer_sizes: [784, 0, 10]}", "model_config.layer_sizes[1]", "0",
       "positive integer"},
      {"model_config: {layer_sizes: [784, -3, 10]}", "model_config.layer_sizes[1]", "-3",
       "positive integer"},
      {"model_config: {layer_sizes: [784, wide, 10]}", "model_config.layer_sizes[1]", "'wide'",
       "positive integer"},
      {"model_config: {type: cnn}", "model_config.type", "'cnn'", "one of 'mlp'"},
      // dataset_config
      {"dataset_config: {name: CIFAR10}", "dataset_config.name", "'CIFAR10'",
       "one of 'MNIST', 'FashionMNIST', 'synthetic'"},
      {"dataset_config: {batch_size: 0}", "dataset_config.batch_size", "0", "positive integer"},
      {"dataset_config: {val_batch_size: -5}", "dataset_config.val_batch_size", "-5",
       "positive integer"},
      {"dataset_config: {shuffle: maybe}", "dataset_config.shuffle", "'maybe'", "boolean"},
      {"dataset_config: {shuffle: 1}", "dataset_config.shuffle", "1", "boolean"},
      {"dataset_config: {max_train_samples: -1}", "dataset_config.max_train_samples", "-1",
       "non-negative integer"},
      {"dataset_config: {max_val_samples: -2}", "dataset_config.max_val_samples", "-2",
       "non-negative integer"},
      {"dataset_config: {root: [a, b]}", "dataset_config.root", "[a, b]", "a string"},
      {"dataset_config: {normalize: {mean: []}}", "dataset_config.normalize.mean", "[]",
       "non-empty list of numbers"},
      {"dataset_config: {normalize: {mean: 0.5}}", "dataset_config.normalize.mean", "0.5",
       "non-empty list of numbers"},
      {"dataset_config: {normalize: {mean: [x]}}", "dataset_config.normalize.mean[0]", "'x'",
       "finite number"},
      {"dataset_config: {normalize: {std: [1, 0.0]}}", "dataset_config.normalize.std[1]", "0.0",
       "positive finite number"},
      {"dataset_config: {normalize: {std: [-1]}}", "dataset_config.normalize.std[0]", "-1",
       "positive finite number"},
      {"dataset_config: {normalize: {mean: [0.1, 0.2], std: [0.3]}}", "dataset_config.normalize",
       "mean [0.1, 0.2]", "same length"},
      {"dataset_config: {normalize: 3}", "dataset_config.normalize", "3", "map of keys"},
      {"dataset_config: {synthetic: {train_size: 0}}", "dataset_config.synthetic.train_size", "0",
       "positive integer"},
      {"dataset_config: {synthetic: {val_size: -1}}", "dataset_config.synthetic.val_size", "-1",
       "positive integer"},
      {"dataset_config: {synthetic: {features: 0}}", "dataset_config.synthetic.features", "0",
       "positive integer"},
      {"dataset_config: {synthetic: {classes: 0}}", "dataset_config.synthetic.classes", "0",
       "positive integer"},
      {"dataset_config: {synthetic: {noise: -0.5}}", "dataset_config.synthetic.noise", "-0.5",
       "non-negative"},
      // training
      {"training: {epochs: five}", "training.epochs", "'five'", "positive integer"},
      {"training: {epochs: -1}", "training.epochs", "-1", "positive integer"},
      {"training: {epochs: 0}", "training.epochs", "0", "positive integer"},
      {"training: {epochs: }", "training.epochs", "an empty value", "positive integer"},
      {"training: {learning_rate: 0}", "training.learning_rate", "0", "positive finite number"},
      {"training: {learning_rate: -0.1}", "training.learning_rate", "-0.1", "positive finite"},
      {"training: {learning_rate: .inf}", "training.learning_rate", ".inf", "finite"},
      {"training: {learning_rate: .nan}", "training.learning_rate", ".nan", "finite"},
      {"training: {learning_rate: fast}", "training.learning_rate", "'fast'", "positive finite"},
      {"training: {optimizer: rmsprop}", "training.optimizer", "'rmsprop'",
       "one of 'sgd', 'adamw'"},
      {"training: {momentum: 1.0}", "training.momentum", "1.0", "in [0, 1)"},
      {"training: {momentum: -0.1}", "training.momentum", "-0.1", "in [0, 1)"},
      {"training: {weight_decay: -1e-4}", "training.weight_decay", "-1e-4", "non-negative"},
      {"training: {micro_batches: 0}", "training.micro_batches", "0", "positive integer"},
      {"training: {schedule: pipedream}", "training.schedule", "'pipedream'",
       "one of 'sequential', 'gpipe', '1f1b', 'eager1f1b', 'interleaved', 'zb1p'"},
      {"training: {seed: -1}", "training.seed", "-1", "non-negative integer"},
      {"training: {seed: 18446744073709551616}", "training.seed", "18446744073709551616",
       "at most 18446744073709551615"},
      {"training: {max_steps: -1}", "training.max_steps", "-1", "non-negative integer"},
      {"training: {lr_schedule: linear}", "training.lr_schedule", "'linear'",
       "one of 'constant', 'cosine'"},
      {"training: {lr_schedule: [cosine]}", "training.lr_schedule", "[cosine]",
       "one of 'constant', 'cosine'"},
      {"training: {warmup_steps: -1}", "training.warmup_steps", "-1", "non-negative integer"},
      {"training: {warmup_steps: 1.5}", "training.warmup_steps", "1.5", "non-negative integer"},
      {"training: {min_learning_rate: -0.01}", "training.min_learning_rate", "-0.01",
       "non-negative finite number"},
      {"training: {min_learning_rate: .inf}", "training.min_learning_rate", ".inf", "finite"},
      {"training: {grad_clip: -1}", "training.grad_clip", "-1", "non-negative finite number"},
      {"training: {grad_clip: .nan}", "training.grad_clip", ".nan", "non-negative finite number"},
      {"training: {grad_clip: off}", "training.grad_clip", "'off'", "non-negative finite number"},
      // communication
      {"communication: {quantization_bits: 5}", "communication.quantization_bits", "5",
       "one of 32, 16, 8, 4"},
      {"communication: {quantization_bits: eight}", "communication.quantization_bits", "'eight'",
       "one of 32, 16, 8, 4"},
      {"communication: {stochastic_rounding: sometimes}", "communication.stochastic_rounding",
       "'sometimes'", "boolean"},
      // partition
      {"partition: {method: greedy}", "partition.method", "'greedy'",
       "one of 'uniform', 'balanced'"},
      {"partition: {stages: 0}", "partition.stages", "0", "'auto' or a positive integer"},
      {"partition: {stages: many}", "partition.stages", "'many'", "'auto' or a positive integer"},
      {"partition: {layers: 5}", "partition.layers", "5", "list of non-empty lists"},
      {"partition: {layers: [[0, 1], []]}", "partition.layers[1]", "[]", "non-empty list"},
      {"partition: {layers: [0, 1]}", "partition.layers[0]", "0", "non-empty list"},
      {"partition: {layers: [[0, -1]]}", "partition.layers[0][1]", "-1", "non-negative integer"},
      // output
      {"output: {dir: \"\"}", "output.dir", "''", "non-empty string"},
      {"output: {dir: }", "output.dir", "an empty value", "non-empty string"},
      {"output: {dir: {a: 1}}", "output.dir", "{a: 1}", "non-empty string"},
      {"output: {sample_tokens: -1}", "output.sample_tokens", "-1", "non-negative integer"},
      {"output: {sample_tokens: 2.5}", "output.sample_tokens", "2.5", "non-negative integer"},
      {"output: {sample_temperature: -0.5}", "output.sample_temperature", "-0.5",
       "non-negative finite number"},
      {"output: {sample_temperature: .inf}", "output.sample_temperature", ".inf",
       "non-negative finite number"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    const std::string message = error_of(c.yaml);
    expect_contains(message, {"[config] configs/x.yaml: " + c.key + ": ", c.value, c.expectation});
  }
}

TEST(ConfigValidation, ExactMessageShape) {
  EXPECT_EQ(error_of("training:\n  epochs: five\n"),
            "[config] configs/x.yaml: training.epochs: expected a positive integer, got 'five' "
            "(line 2)");
  EXPECT_EQ(error_of("training:\n  epochs: -1\n"),
            "[config] configs/x.yaml: training.epochs: expected a positive integer, got -1 "
            "(line 2)");
}

TEST(ConfigValidation, NewTrainingAndOutputKeysParse) {
  const Config c = parse_config(
      "training: {learning_rate: 0.5, lr_schedule: cosine, warmup_steps: 20, "
      "min_learning_rate: 0.05, grad_clip: 2.5}\n"
      "output: {sample_tokens: 0, sample_temperature: 1.5}\n");
  EXPECT_EQ(c.training.lr_schedule, "cosine");
  EXPECT_EQ(c.training.warmup_steps, 20);
  EXPECT_EQ(c.training.min_learning_rate, 0.05);
  EXPECT_EQ(c.training.grad_clip, 2.5);
  EXPECT_EQ(c.output.sample_tokens, 0);
  EXPECT_EQ(c.output.sample_temperature, 1.5);
  // Defaults: constant rate, no warm-up, no clipping, 200 characters sampled at 0.8.
  const Config d = parse_config("");
  EXPECT_EQ(d.training.lr_schedule, "constant");
  EXPECT_EQ(d.training.warmup_steps, 0);
  EXPECT_EQ(d.training.min_learning_rate, 0.0);
  EXPECT_EQ(d.training.grad_clip, 0.0);
  EXPECT_EQ(d.output.sample_tokens, 200);
  EXPECT_EQ(d.output.sample_temperature, 0.8);
}

TEST(ConfigValidation, NewKeysBoundaryValuesAreAccepted) {
  const Config c = parse_config(
      "training: {learning_rate: 0.25, min_learning_rate: 0.25, grad_clip: 0, warmup_steps: 0}\n"
      "output: {sample_temperature: 0}\n");
  EXPECT_EQ(c.training.min_learning_rate, 0.25);  // equal to learning_rate is allowed
  EXPECT_EQ(c.training.grad_clip, 0.0);
  EXPECT_EQ(c.output.sample_temperature, 0.0);  // argmax
  const Config t =
      parse_config(transformer_yaml("n_emb: 8, n_heads: 8, dropout: 0", "windows_per_epoch: 0"));
  EXPECT_EQ(t.model.n_heads, 8);  // head size 1
  EXPECT_EQ(t.model.dropout, 0.0);
  EXPECT_EQ(t.dataset.windows_per_epoch, 0);
  EXPECT_EQ(parse_config(transformer_yaml("n_emb: 7, n_heads: 1, n_blocks: 1")).model.n_blocks,
            1);
}

TEST(ConfigValidation, LrScheduleSuggestions) {
  expect_contains(error_of("training: {lr_schedule: cosin}"),
                  {"training.lr_schedule", "'cosin'", "did you mean 'cosine'?"});
  expect_contains(error_of("training: {lr_schedule: Constant}"), {"did you mean 'constant'?"});
  // Nothing close: the allowed values are listed, nothing is suggested.
  const std::string message = error_of("training: {lr_schedule: linear}");
  expect_contains(message, {"training.lr_schedule", "'linear'", "one of 'constant', 'cosine'"});
  EXPECT_EQ(message.find("did you mean"), std::string::npos) << message;
}

TEST(ConfigValidation, MinLearningRateAtMostLearningRate) {
  expect_contains(error_of("training:\n  learning_rate: 0.01\n  min_learning_rate: 0.1\n"),
                  {"[config] configs/x.yaml: training.min_learning_rate: ",
                   "at most learning_rate = 0.01", "got 0.1", "(line 3)"});
  // Against the default learning_rate (0.1) too, and when an override lowers learning_rate.
  expect_contains(error_of("training: {min_learning_rate: 0.2}"),
                  {"training.min_learning_rate", "learning_rate = 0.1", "got 0.2"});
  expect_contains(error_of("training: {min_learning_rate: 0.05}",
                           sets({"training.learning_rate=0.01"})),
                  {"training.min_learning_rate", "learning_rate = 0.01", "got 0.05"});
}

// ---------------------------------------------------------------------------------------------
// model_config.type: transformer and dataset_config.name: text.

TEST(ConfigTransformer, DefaultsParseAndImplyTextDataset) {
  const Config c = parse_config("model_config: {type: transformer}\n"
                                "dataset_config: {source: data/tiny.txt}\n");
  EXPECT_EQ(c.model.type, "transformer");
  EXPECT_EQ(c.model.context, 128);
  EXPECT_EQ(c.model.n_emb, 128);
  EXPECT_EQ(c.model.n_heads, 4);
  EXPECT_EQ(c.model.n_blocks, 3);
  EXPECT_EQ(c.model.dropout, 0.1);
  EXPECT_EQ(c.dataset.name, "text");  // implied: the original's body gives only source
  EXPECT_EQ(c.dataset.source, "data/tiny.txt");
  // The original's GPT settings, not the MLP's defaults.
  EXPECT_EQ(c.dataset.windows_per_epoch, 6400);
  EXPECT_EQ(c.dataset.batch_size, 128);
  EXPECT_EQ(c.dataset.val_batch_size, 64);
  EXPECT_EQ(c.training.optimizer, "adamw");
  EXPECT_EQ(c.training.learning_rate, 1e-3);
  EXPECT_EQ(c.training.weight_decay, 0.01);
  // Keys given still win over those defaults; an MLP keeps its own.
  const Config o = parse_config("model_config: {type: transformer}\n"
                                "dataset_config: {source: t.txt, batch_size: 32}\n"
                                "training: {optimizer: sgd, learning_rate: 0.5}\n");
  EXPECT_EQ(o.dataset.batch_size, 32);
  EXPECT_EQ(o.training.optimizer, "sgd");
  EXPECT_EQ(o.training.learning_rate, 0.5);
  EXPECT_EQ(o.dataset.windows_per_epoch, 6400);
  const Config mlp = parse_config("model_config: {type: mlp}\n");
  EXPECT_EQ(mlp.training.optimizer, "sgd");
  EXPECT_EQ(mlp.dataset.batch_size, 256);
  // Writing the implied name is also accepted.
  EXPECT_EQ(parse_config("model_config: {type: transformer}\n"
                         "dataset_config: {name: text, source: data/tiny.txt}\n")
                .dataset.name,
            "text");
}

TEST(ConfigTransformer, FullExample) {
  const Config c = parse_config(kTransformerExample, {}, "<rest body>");
  EXPECT_EQ(c.model.type, "transformer");
  EXPECT_EQ(c.model.context, 64);
  EXPECT_EQ(c.model.n_emb, 96);
  EXPECT_EQ(c.model.n_heads, 6);
  EXPECT_EQ(c.model.n_blocks, 2);
  EXPECT_EQ(c.model.dropout, 0.2);
  EXPECT_EQ(c.dataset.name, "text");
  EXPECT_EQ(c.dataset.source, "/usr/share/common-licenses/GPL-3");
  EXPECT_EQ(c.dataset.windows_per_epoch, 500);
  EXPECT_EQ(c.dataset.batch_size, 32);
  EXPECT_EQ(c.training.learning_rate, 3e-4);
  EXPECT_EQ(c.training.optimizer, "adamw");
  EXPECT_EQ(c.training.lr_schedule, "cosine");
  EXPECT_EQ(c.training.warmup_steps, 100);
  EXPECT_EQ(c.training.min_learning_rate, 3e-5);
  EXPECT_EQ(c.training.grad_clip, 1.0);
  EXPECT_EQ(c.output.sample_tokens, 50);
  EXPECT_EQ(c.output.sample_temperature, 0.0);
}

TEST(ConfigTransformer, EachBadValueIsNamed) {
  const std::vector<BadValue> cases = {
      {transformer_yaml("context: 0"), "model_config.context", "0", "positive integer"},
      {transformer_yaml("context: 1.5"), "model_config.context", "1.5", "positive integer"},
      {transformer_yaml("n_emb: -1"), "model_config.n_emb", "-1", "positive integer"},
      {transformer_yaml("n_heads: 0"), "model_config.n_heads", "0", "positive integer"},
      {transformer_yaml("n_blocks: 0"), "model_config.n_blocks", "0", "positive integer"},
      {transformer_yaml("n_blocks: three"), "model_config.n_blocks", "'three'",
       "positive integer"},
      {transformer_yaml("dropout: 1"), "model_config.dropout", "1", "in [0, 1)"},
      {transformer_yaml("dropout: 1.0"), "model_config.dropout", "1.0", "in [0, 1)"},
      {transformer_yaml("dropout: -0.1"), "model_config.dropout", "-0.1", "in [0, 1)"},
      {transformer_yaml("dropout: .nan"), "model_config.dropout", ".nan", "in [0, 1)"},
      {transformer_yaml("", "windows_per_epoch: -1"), "dataset_config.windows_per_epoch", "-1",
       "non-negative integer"},
      {transformer_yaml("", "windows_per_epoch: many"), "dataset_config.windows_per_epoch",
       "'many'", "non-negative integer"},
      {"model_config: {type: transformer}\ndataset_config: {source: [a.txt, b.txt]}",
       "dataset_config.source", "[a.txt, b.txt]", "a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    const std::string message = error_of(c.yaml);
    expect_contains(message, {"[config] configs/x.yaml: " + c.key + ": ", c.value, c.expectation});
  }
}

TEST(ConfigTransformer, HeadsMustDivideEmbeddingWidth) {
  expect_contains(error_of("model_config:\n  type: transformer\n  n_emb: 130\n  n_heads: 4\n"
                           "dataset_config: {source: data/tiny.txt}\n"),
                  {"[config] configs/x.yaml: model_config.n_heads: ", "divisor of n_emb",
                   "n_emb = 130 is not a multiple of n_heads = 4", "(line 4)"});
  // Only n_emb written (n_heads at its default 4): the message names n_emb, the key written.
  expect_contains(error_of(transformer_yaml("n_emb: 6")),
                  {"model_config.n_emb: ", "multiple of n_heads", "n_emb = 6", "n_heads = 4"});
  expect_contains(error_of(transformer_yaml("n_emb: 96, n_heads: 5")),
                  {"model_config.n_heads", "n_emb = 96", "n_heads = 5"});
}

// A key of the other model type is named before its value is checked: the fix is removing it.
TEST(ConfigTransformer, OtherTypesKeyIsNamedBeforeItsValue) {
  expect_contains(error_of("model_config: {dropout: 1}\n"),
                  {"model_config.dropout", "is a transformer setting", "'mlp'"});
  expect_contains(error_of(transformer_yaml("layer_sizes: [1]")),
                  {"model_config.layer_sizes", "is an mlp setting"});
}

// Keys that belong to the other model type, or the other dataset, are errors, not ignored.
TEST(ConfigTransformer, CrossFieldErrorsNameKeyAndConflict) {
  struct Conflict {
    std::string yaml;
    std::string key;                  // full key path
    std::vector<std::string> phrases; // what the message must also say
  };
  const std::vector<Conflict> cases = {
      // transformer keys under type mlp (explicit or default)
      {"model_config: {type: mlp, context: 64}", "model_config.context",
       {"transformer setting", "model_config.type is 'mlp'"}},
      {"model_config: {n_emb: 64}", "model_config.n_emb",
       {"transformer setting", "model_config.type is 'mlp'"}},
      {"model_config: {n_heads: 2}", "model_config.n_heads", {"transformer setting", "'mlp'"}},
      {"model_config: {n_blocks: 2}", "model_config.n_blocks", {"transformer setting", "'mlp'"}},
      {"model_config: {dropout: 0.2}", "model_config.dropout", {"transformer setting", "'mlp'"}},
      // mlp key under type transformer
      {transformer_yaml("layer_sizes: [784, 10]"), "model_config.layer_sizes",
       {"mlp setting", "model_config.type is 'transformer'"}},
      // transformer with an image dataset; text with an mlp
      {transformer_yaml("", "name: MNIST"), "dataset_config.name",
       {"expected 'text' for model_config.type 'transformer'", "got 'MNIST'"}},
      {"dataset_config: {name: text, source: data/tiny.txt}", "dataset_config.name",
       {"'text' needs model_config.type: transformer", "model_config.type is 'mlp'"}},
      // text settings
      {"model_config: {type: transformer}", "dataset_config.source",
       {"required for name 'text'", "UTF-8 text file"}},
      {"model_config: {type: transformer}\ndataset_config: {source: }", "dataset_config.source",
       {"required for name 'text'"}},
      {"model_config: {type: transformer}\ndataset_config: {source: \"\"}",
       "dataset_config.source", {"required for name 'text'"}},
      {"dataset_config: {source: data/tiny.txt}", "dataset_config.source",
       {"text setting", "dataset_config.name is 'FashionMNIST'"}},
      {"dataset_config: {name: synthetic, windows_per_epoch: 10}",
       "dataset_config.windows_per_epoch", {"text setting", "dataset_config.name is 'synthetic'"}},
      {transformer_yaml("", "max_train_samples: 100"), "dataset_config.max_train_samples",
       {"does not apply to name 'text'", "windows_per_epoch"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    const std::string message = error_of(c.yaml);
    expect_contains(message, {"[config] configs/x.yaml: " + c.key + ": "});
    expect_contains(message, c.phrases);
  }
}

TEST(ConfigTransformer, CrossFieldErrorsCarryLineOrOverride) {
  // The file's mlp layer_sizes conflict with a type switched on the command line: the message
  // points at the line of the key that has to go.
  expect_contains(error_of(kFullExample, sets({"model_config.type=transformer",
                                               "dataset_config.source=a.txt"})),
                  {"model_config.layer_sizes", "mlp setting", "(line 4)"});
  expect_contains(error_of("", sets({"model_config.context=64"})),
                  {"model_config.context", "transformer setting",
                   "(from --set model_config.context=64)"});
  // Switching on the command line works when the rest of the file is compatible.
  const Config c = parse_config("dataset_config: {batch_size: 8}\n",
                                sets({"model_config.type=transformer",
                                      "dataset_config.source=data/tiny.txt",
                                      "model_config.n_blocks=1"}));
  EXPECT_EQ(c.model.type, "transformer");
  EXPECT_EQ(c.model.n_blocks, 1);
  EXPECT_EQ(c.dataset.name, "text");
  EXPECT_EQ(c.dataset.batch_size, 8);
}

TEST(ConfigValidation, DatasetNameIsCaseSensitiveWithSuggestion) {
  expect_contains(error_of("dataset_config: {name: fashionmnist}"),
                  {"dataset_config.name", "'fashionmnist'", "did you mean 'FashionMNIST'?"});
  expect_contains(error_of("dataset_config: {name: mnist}"),
                  {"dataset_config.name", "'mnist'", "did you mean 'MNIST'?"});
  expect_contains(error_of("dataset_config: {name: Synthetic}"), {"did you mean 'synthetic'?"});
  // Nothing close: no suggestion.
  EXPECT_EQ(error_of("dataset_config: {name: ImageNet}").find("did you mean"), std::string::npos);
}

TEST(ConfigValidation, ChoiceSuggestions) {
  expect_contains(error_of("training: {optimizer: adam}"),
                  {"training.optimizer", "'adam'", "did you mean 'adamw'?"});
  expect_contains(error_of("training: {schedule: 1F1B}"), {"did you mean '1f1b'?"});
}

TEST(ConfigValidation, BooleanSpellings) {
  EXPECT_TRUE(parse_config("dataset_config: {shuffle: yes}").dataset.shuffle);
  EXPECT_FALSE(parse_config("dataset_config: {shuffle: no}").dataset.shuffle);
  EXPECT_TRUE(parse_config("dataset_config: {shuffle: true}").dataset.shuffle);
  EXPECT_FALSE(parse_config("dataset_config: {shuffle: false}").dataset.shuffle);
  expect_contains(error_of("dataset_config: {shuffle: \"true\"}"),
                  {"dataset_config.shuffle", "quoted string \"true\"", "boolean"});
}

TEST(ConfigValidation, ErrorsCarryTheLineOfTheKey) {
  const std::string message = error_of("training:\n  epochs: 3\n\n  micro_batches: 0\n");
  expect_contains(message, {"training.micro_batches", "(line 4)"});
}

// Integers must be written as integers; numbers may be written either way.
TEST(ConfigStrictness, IntegersMustBeWrittenAsIntegers) {
  expect_contains(error_of("training: {epochs: 2.5}"),
                  {"training.epochs", "2.5", "positive integer"});
  expect_contains(error_of("training: {epochs: 5.0}"),
                  {"training.epochs", "5.0", "positive integer"});
  expect_contains(error_of("training: {epochs: 1e3}"),
                  {"training.epochs", "1e3", "positive integer"});
  expect_contains(error_of("dataset_config: {batch_size: 0x10}"),
                  {"dataset_config.batch_size", "0x10", "positive integer"});
  expect_contains(error_of("training: {epochs: \"5\"}"),
                  {"training.epochs", "quoted string \"5\"", "positive integer"});
  expect_contains(error_of("communication: {quantization_bits: 8.0}"),
                  {"communication.quantization_bits", "8.0", "one of 32, 16, 8, 4"});
  expect_contains(error_of("partition: {stages: 2.0}"), {"partition.stages", "2.0"});
  expect_contains(error_of("partition: {layers: [[0.5]]}"), {"partition.layers[0][0]", "0.5"});
  expect_contains(error_of("training: {seed: 4.2e1}"), {"training.seed", "4.2e1"});

  EXPECT_EQ(parse_config("training: {epochs: 7}").training.epochs, 7);
  EXPECT_EQ(parse_config("training: {epochs: +7}").training.epochs, 7);
  EXPECT_EQ(parse_config("training: {learning_rate: 2}").training.learning_rate, 2.0);
  EXPECT_EQ(parse_config("training: {learning_rate: 1e-3}").training.learning_rate, 1e-3);
}

TEST(ConfigStrictness, QuotedNumberIsNotANumber) {
  expect_contains(error_of("training: {learning_rate: \"0.5\"}"),
                  {"training.learning_rate", "quoted string \"0.5\"", "positive finite number"});
}

TEST(ConfigStrictness, IntegerOverflowIsAnError) {
  expect_contains(error_of("training: {epochs: 9223372036854775808}"),
                  {"training.epochs", "9223372036854775808", "at most 9223372036854775807"});
  EXPECT_EQ(parse_config("training: {max_steps: 9223372036854775807}").training.max_steps,
            std::numeric_limits<int64_t>::max());
}

// ---------------------------------------------------------------------------------------------
// Unknown keys and structure.

TEST(ConfigUnknownKeys, UnknownKeyNamesPathAllowedKeysAndSuggestion) {
  const std::string message = error_of("training:\n  epoch: 3\n");
  expect_contains(message,
                  {"[config] configs/x.yaml: training.epoch: unknown key",
                   "epochs, learning_rate, optimizer, momentum, weight_decay, micro_batches, "
                   "schedule, seed, max_steps",
                   "did you mean 'epochs'?", "(line 2)"});
}

TEST(ConfigUnknownKeys, SuggestionUpToEditDistanceTwo) {
  expect_contains(error_of("training: {lerning_rte: 0.1}"),  // two deletions
                  {"training.lerning_rte", "did you mean 'learning_rate'?"});
  const std::string far = error_of("training: {lrning_rte: 0.1}");  // three deletions
  expect_contains(far, {"training.lrning_rte", "unknown key"});
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
}

TEST(ConfigUnknownKeys, UnknownKeyWithoutCloseMatchHasNoSuggestion) {
  const std::string message = error_of("output: {directory_name: x}");
  expect_contains(message, {"output.directory_name", "unknown key", "dir"});
  EXPECT_EQ(message.find("did you mean"), std::string::npos) << message;
}

TEST(ConfigUnknownKeys, UnknownSectionListsSections) {
  expect_contains(error_of("trainig: {epochs: 3}"),
                  {"trainig", "unknown section",
                   "model_config, dataset_config, training, communication, partition, output",
                   "did you mean 'training'?"});
  // `model` is far from `model_config`: listed, not suggested.
  const std::string message = error_of("model: {type: mlp}");
  expect_contains(message, {"model: unknown section", "model_config"});
  EXPECT_EQ(message.find("did you mean"), std::string::npos) << message;
}

TEST(ConfigUnknownKeys, NestedUnknownKey) {
  expect_contains(error_of("dataset_config:\n  normalize: {meen: [0.1]}\n"),
                  {"dataset_config.normalize.meen", "unknown key", "mean, std",
                   "did you mean 'mean'?"});
  expect_contains(error_of("dataset_config:\n  synthetic: {nosie: 0.1}\n"),
                  {"dataset_config.synthetic.nosie", "did you mean 'noise'?"});
}

TEST(ConfigUnknownKeys, NewKeysAreSuggested) {
  expect_contains(error_of("model_config: {type: transformer, n_head: 4}"),
                  {"model_config.n_head", "unknown key", "did you mean 'n_heads'?",
                   "context, n_emb, n_heads, n_blocks, dropout"});
  expect_contains(error_of("dataset_config: {sorce: a.txt}"),
                  {"dataset_config.sorce", "did you mean 'source'?"});
  expect_contains(error_of("training: {lr_shedule: cosine}"),
                  {"training.lr_shedule", "did you mean 'lr_schedule'?"});
  expect_contains(error_of("output: {sample_token: 10}"),
                  {"output.sample_token", "did you mean 'sample_tokens'?"});
}

TEST(ConfigUnknownKeys, DuplicateKeyIsAnError) {
  expect_contains(error_of("training:\n  epochs: 3\n  epochs: 4\n"),
                  {"training.epochs", "duplicate key", "(line 3)"});
}

TEST(ConfigStructure, TopLevelMustBeAMap) {
  expect_contains(error_of("- a\n- b\n"), {"[config] configs/x.yaml: ", "map of sections",
                                            "[a, b]"});
  expect_contains(error_of("just text"), {"map of sections", "'just text'"});
}

TEST(ConfigStructure, SectionMustBeAMap) {
  expect_contains(error_of("training: 5\n"), {"training: ", "map of keys", "epochs", "5"});
  expect_contains(error_of("partition: [uniform]\n"), {"partition: ", "map of keys",
                                                        "[uniform]"});
}

TEST(ConfigStructure, SeveralDocumentsAreAnError) {
  expect_contains(error_of("training: {epochs: 1}\n---\ntraining: {epochs: 2}\n"),
                  {"configs/x.yaml", "single YAML document", "found 2"});
}

// yaml-cpp 0.7's LoadAll never returns for these (found by tests/fuzz/fuzz_config).
TEST(ConfigStructure, CommaOutsideAFlowCollectionIsASecondDocument) {
  for (const char* text : {",", "{a: 1},", "# comment\n,"}) {
    SCOPED_TRACE(text);
    expect_contains(error_of(text), {"configs/x.yaml", "single YAML document", "at a ',' outside [ ] and { }"});
  }
  expect_contains(error_of("training: {epochs: 2}\n---\ntraining: {epochs: 3}\n"),
                  {"found 2 or more (the second starts at line 2, column 1"});
}

TEST(ConfigMalformed, MessageHasSourceLineAndColumn) {
  const std::string message = error_of("training:\n  epochs: 3\n  seed: [1, 2\n", {},
                                       "configs/broken.yaml");
  expect_contains(message, {"[config] configs/broken.yaml: invalid YAML at line ", "column"});
  expect_contains(error_of("a: b: c\n", {}, "configs/broken.yaml"),
                  {"configs/broken.yaml", "line 1, column"});
  expect_contains(error_of("training:\n  epochs: 3\n   bad indent: [\n"), {"line 3"});
}

// ---------------------------------------------------------------------------------------------
// Overrides.

TEST(ConfigOverrides, ParseOverride) {
  const Override o = parse_override("training.epochs=3");
  EXPECT_EQ(o.key, "training.epochs");
  EXPECT_EQ(o.value, "3");
  const Override first = parse_override("output.dir=a=b");  // splits at the first '='
  EXPECT_EQ(first.key, "output.dir");
  EXPECT_EQ(first.value, "a=b");
  const Override spaced = parse_override(" training.epochs =3");
  EXPECT_EQ(spaced.key, "training.epochs");
  const Override empty_value = parse_override("dataset_config.root=");
  EXPECT_EQ(empty_value.value, "");
}

TEST(ConfigOverrides, ParseOverrideErrorsNameTheArgument) {
  try {
    parse_override("training.epochs");
    FAIL() << "no '=' must throw";
  } catch (const ConfigError& e) {
    expect_contains(e.what(), {"[config] ", "'training.epochs'", "key=value"});
  }
  try {
    parse_override("=5");
    FAIL() << "empty key must throw";
  } catch (const ConfigError& e) {
    expect_contains(e.what(), {"'=5'", "empty key"});
  }
}

TEST(ConfigOverrides, ReplaceValuesFromTheFile) {
  const Config c =
      parse_config(kFullExample, sets({"training.epochs=9", "training.learning_rate=0.01",
                                       "dataset_config.shuffle=false",
                                       "training.optimizer=adamw"}));
  EXPECT_EQ(c.training.epochs, 9);
  EXPECT_EQ(c.training.learning_rate, 0.01);
  EXPECT_FALSE(c.dataset.shuffle);
  EXPECT_EQ(c.training.optimizer, "adamw");
  EXPECT_EQ(c.training.micro_batches, 4);  // untouched keys keep the file's values
}

TEST(ConfigOverrides, CreateMissingSections) {
  const Config c = parse_config("", sets({"communication.quantization_bits=4",
                                          "dataset_config.synthetic.noise=0.25"}));
  EXPECT_EQ(c.communication.quantization_bits, 4);
  EXPECT_TRUE(c.communication.stochastic_rounding);
  EXPECT_EQ(c.dataset.synthetic.noise, 0.25);
  EXPECT_EQ(c.dataset.synthetic.train_size, 4096);

  const Config d = parse_config("training: {epochs: 2}\n", sets({"output.dir=runs/x"}));
  EXPECT_EQ(d.training.epochs, 2);
  EXPECT_EQ(d.output.dir, "runs/x");
}

TEST(ConfigOverrides, ListValues) {
  const Config c = parse_config(kFullExample, sets({"model_config.layer_sizes=[784,32,10]",
                                                    "partition.layers=[[0],[1]]",
                                                    "dataset_config.normalize.mean=[0.5]"}));
  EXPECT_EQ(c.model.layer_sizes, (std::vector<int64_t>{784, 32, 10}));
  EXPECT_EQ(c.partition.layers, (std::vector<std::vector<int64_t>>{{0}, {1}}));
  EXPECT_EQ(c.dataset.normalize.mean, std::vector<double>{0.5});
}

TEST(ConfigOverrides, StagesAutoAndInteger) {
  EXPECT_EQ(parse_config("partition: {stages: 3}", sets({"partition.stages=auto"}))
                .partition.stages,
            0);
  EXPECT_EQ(parse_config("", sets({"partition.stages=4"})).partition.stages, 4);
}

TEST(ConfigOverrides, AppliedBeforeValidation) {
  // The file's value is invalid on its own; the override replaces it before it is checked.
  const Config c = parse_config("training: {epochs: 0}", sets({"training.epochs=2"}));
  EXPECT_EQ(c.training.epochs, 2);
}

TEST(ConfigOverrides, LaterOverrideWins) {
  const Config c = parse_config("", sets({"training.epochs=2", "training.epochs=5"}));
  EXPECT_EQ(c.training.epochs, 5);
}

TEST(ConfigOverrides, UnknownKeyOverride) {
  const std::string message = error_of(kFullExample, sets({"training.epoch=3"}));
  expect_contains(message, {"[config] configs/x.yaml: training.epoch: unknown key", "--set",
                            "training.epoch=3", "did you mean 'epochs'?"});
  expect_contains(error_of("", sets({"trainin.epochs=3"})),
                  {"trainin", "unknown section", "--set", "did you mean 'training'?"});
  expect_contains(error_of("", sets({"training.epochs.count=3"})),
                  {"training.epochs.count", "--set", "not a section"});
  expect_contains(error_of("", sets({"training..epochs=3"})), {"--set", "empty component"});
}

TEST(ConfigOverrides, BadValueNamesTheOverride) {
  expect_contains(error_of(kFullExample, sets({"training.epochs=five"})),
                  {"training.epochs", "'five'", "positive integer",
                   "(from --set training.epochs=five)"});
  expect_contains(error_of("", sets({"model_config.layer_sizes=[784, 0]"})),
                  {"model_config.layer_sizes[1]", "from --set model_config.layer_sizes="});
  expect_contains(error_of("", sets({"model_config.layer_sizes=[1,"})),
                  {"--set model_config.layer_sizes=[1,", "invalid YAML"});
}

TEST(ConfigOverrides, CannotDescendIntoAScalar) {
  expect_contains(error_of("dataset_config: {normalize: 3}",
                           sets({"dataset_config.normalize.mean=[0.5]"})),
                  {"dataset_config.normalize", "not a map", "--set"});
}

// ---------------------------------------------------------------------------------------------
// Round trip.

TEST(ConfigRoundTrip, Defaults) {
  const Config defaults;
  const std::string text = to_yaml(defaults);
  expect_same(parse_config(text, {}, "<to_yaml>"), defaults);
  expect_contains(text, {"stages: auto", "layers: []"});
}

TEST(ConfigRoundTrip, EveryFieldNonDefault) {
  Config c;
  c.model.layer_sizes = {3, 7, 5, 2, 9};
  c.dataset.name = "synthetic";
  c.dataset.root = "/data/some dir: with #chars";
  c.dataset.batch_size = 17;
  c.dataset.val_batch_size = 33;
  c.dataset.normalize.mean = {0.28604060411453247, 1.0 / 3.0, -0.0, 1e-300};
  c.dataset.normalize.std = {0.35302424451492237, 2.0 / 3.0, 5e-324, 1e300};
  c.dataset.shuffle = false;
  c.dataset.max_train_samples = 1000;
  c.dataset.max_val_samples = 77;
  c.dataset.synthetic = {11, 13, 17, 19, 0.1 + 0.2};
  c.training.epochs = 123;
  c.training.learning_rate = 0.1 * 3;
  c.training.optimizer = "adamw";
  c.training.momentum = 0.9;
  c.training.weight_decay = 1e-4;
  c.training.micro_batches = 8;
  c.training.schedule = "gpipe";
  c.training.seed = std::numeric_limits<uint64_t>::max();
  c.training.max_steps = 5;
  c.communication.quantization_bits = 4;
  c.communication.stochastic_rounding = false;
  c.partition.method = "balanced";
  c.partition.stages = 3;
  c.partition.layers = {{0, 1}, {2}, {3}};
  c.output.dir = "null";  // must not come back as an empty value

  const std::string text = to_yaml(c);
  SCOPED_TRACE(text);
  const Config back = parse_config(text, {}, "<to_yaml>");
  expect_same(back, c);
  EXPECT_EQ(to_yaml(back), text);  // canonical: emitting again gives the same text
  EXPECT_EQ(std::signbit(back.dataset.normalize.mean[2]), true);
}

TEST(ConfigRoundTrip, FullExample) {
  const Config c = parse_config(kFullExample);
  expect_same(parse_config(to_yaml(c)), c);
}

TEST(ConfigRoundTrip, TransformerEveryFieldNonDefault) {
  Config c;
  c.model.type = "transformer";
  c.model.context = 33;
  c.model.n_emb = 48;
  c.model.n_heads = 12;
  c.model.n_blocks = 5;
  c.model.dropout = 0.1 + 0.2;
  c.dataset.name = "text";
  c.dataset.source = "/data/my text: #1.txt";
  c.dataset.windows_per_epoch = 12345;
  c.dataset.batch_size = 16;
  c.dataset.max_val_samples = 40;
  c.training.learning_rate = 6e-4;
  c.training.optimizer = "adamw";
  c.training.lr_schedule = "cosine";
  c.training.warmup_steps = 250;
  c.training.min_learning_rate = 6e-4 / 3;
  c.training.grad_clip = 0.7;
  c.output.sample_tokens = 1000;
  c.output.sample_temperature = 1.0 / 3.0;

  const std::string text = to_yaml(c);
  SCOPED_TRACE(text);
  const Config back = parse_config(text, {}, "<to_yaml>");
  expect_same(back, c);
  EXPECT_EQ(to_yaml(back), text);  // canonical
  // Only the keys of this model type and dataset are emitted (others would be rejected).
  expect_contains(text, {"type: transformer", "context: 33", "n_emb: 48", "n_heads: 12",
                         "n_blocks: 5", "dropout: ", "name: text", "windows_per_epoch: 12345",
                         "lr_schedule: cosine", "warmup_steps: 250", "min_learning_rate: ",
                         "grad_clip: 0.7", "sample_tokens: 1000", "sample_temperature: "});
  EXPECT_EQ(text.find("layer_sizes"), std::string::npos);
  EXPECT_EQ(text.find("max_train_samples"), std::string::npos);
}

TEST(ConfigRoundTrip, TransformerExampleAndDefaults) {
  const Config example = parse_config(kTransformerExample);
  expect_same(parse_config(to_yaml(example)), example);
  const Config defaults = parse_config(transformer_yaml(""));
  expect_same(parse_config(to_yaml(defaults)), defaults);
}

TEST(ConfigRoundTrip, MlpWithNewTrainingAndOutputKeys) {
  Config c;
  c.model.layer_sizes = {20, 8, 3};
  c.dataset.name = "synthetic";
  c.dataset.max_train_samples = 64;
  c.training.learning_rate = 0.05;
  c.training.lr_schedule = "cosine";
  c.training.warmup_steps = 7;
  c.training.min_learning_rate = 0.05 / 7;
  c.training.grad_clip = 5e-324;  // smallest positive double
  c.output.sample_tokens = 0;
  c.output.sample_temperature = 2.5;

  const std::string text = to_yaml(c);
  SCOPED_TRACE(text);
  const Config back = parse_config(text, {}, "<to_yaml>");
  expect_same(back, c);
  EXPECT_EQ(to_yaml(back), text);
  expect_contains(text, {"layer_sizes: [20, 8, 3]", "max_train_samples: 64",
                         "lr_schedule: cosine", "warmup_steps: 7", "sample_tokens: 0"});
  for (const char* key : {"context", "n_emb", "n_heads", "n_blocks", "dropout", "source",
                          "windows_per_epoch"}) {
    EXPECT_EQ(text.find(key), std::string::npos) << key;
  }
}

TEST(ConfigRoundTrip, SourceStringsThatLookLikeOtherTypes) {
  for (const std::string source : {"true", "123", "~", "null", "0.5", "[x]", "a: b", "- x"}) {
    SCOPED_TRACE(source);
    Config c;
    c.model.type = "transformer";
    c.dataset.name = "text";
    c.dataset.source = source;
    EXPECT_EQ(parse_config(to_yaml(c)).dataset.source, source);
  }
}

TEST(ConfigRoundTrip, StringsThatLookLikeOtherTypes) {
  for (const std::string dir : {"true", "123", "~", "0.5", "[x]", "a: b", "- x", "auto", "'q'"}) {
    SCOPED_TRACE(dir);
    Config c;
    c.output.dir = dir;
    c.dataset.root = dir;
    const Config back = parse_config(to_yaml(c));
    EXPECT_EQ(back.output.dir, dir);
    EXPECT_EQ(back.dataset.root, dir);
  }
}

// ---------------------------------------------------------------------------------------------
// Files.

class ConfigFile : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    test::write_text(path, text);
    return path;
  }
  test::TempDir tmp_{"arceus_config_test_"};
  std::string dir_ = tmp_.str();
};

TEST_F(ConfigFile, LoadsAndAppliesOverrides) {
  const std::string path = write("ok.yaml", kFullExample);
  const Config c = load_config_file(path, sets({"training.epochs=1"}));
  EXPECT_EQ(c.training.epochs, 1);
  EXPECT_EQ(c.output.dir, "runs/fashion-mlp");
}

TEST_F(ConfigFile, MessagesNameTheFile) {
  const std::string path = write("bad.yaml", "training:\n  epochs: five\n");
  try {
    load_config_file(path);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "[config] " + path + ": training.epochs: expected a positive integer, got 'five' "
                                   "(line 2)");
  }
}

TEST_F(ConfigFile, MissingFile) {
  const std::string path = dir_ + "/does_not_exist.yaml";
  try {
    load_config_file(path);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "[config] cannot read '" + path + "': No such file or directory");
  }
}

TEST_F(ConfigFile, DirectoryIsNotReadable) {
  try {
    load_config_file(dir_);
    FAIL() << "expected a ConfigError";
  } catch (const ConfigError& e) {
    expect_contains(e.what(), {"[config] cannot read '" + dir_ + "': ", "directory"});
  }
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

TEST(ConfigCheckpointKeys, ParseValidateAndRoundTrip) {
  const Config c = parse_config(
      "output: {dir: runs/x, checkpoint_every: 2, checkpoint_every_steps: 50, metrics: false}\nresume: true\n");
  EXPECT_EQ(c.output.checkpoint_every, 2);
  EXPECT_EQ(c.output.checkpoint_every_steps, 50);
  EXPECT_FALSE(c.output.metrics);
  EXPECT_TRUE(c.resume);
  expect_same(parse_config(to_yaml(c)), c);
  const Config d = parse_config("");
  EXPECT_EQ(d.output.checkpoint_every, 1);
  EXPECT_EQ(d.output.checkpoint_every_steps, 0);
  EXPECT_TRUE(d.output.metrics);
  EXPECT_FALSE(d.resume);
  expect_contains(error_of("output: {checkpoint_every: -1}\n"), {"output.checkpoint_every", "-1", "non-negative"});
  expect_contains(error_of("resume: maybe\n"), {"resume", "maybe"});
  expect_contains(error_of("", {{"resume", "yes please"}}), {"resume", "--set"});
  const Config e = parse_config("", {{"resume", "true"}, {"output.checkpoint_every_steps", "10"}});
  EXPECT_TRUE(e.resume);
  EXPECT_EQ(e.output.checkpoint_every_steps, 10);
}

}  // namespace
}  // namespace arceus

// partition.chunks_per_rank and training.schedule, both read from the schedule registry.
namespace arceus {
namespace {

TEST(ConfigSchedule, DefaultsComeFromTheRegistry) {
  const Config c = parse_config("");
  EXPECT_EQ(c.training.schedule, schedules().front().name);
  EXPECT_EQ(c.partition.chunks_per_rank, 1);
  EXPECT_EQ(Config().partition.chunks_per_rank, 1);
  expect_contains(to_yaml(c), {"chunks_per_rank: 1"});
}

TEST(ConfigSchedule, EveryRegisteredScheduleIsAccepted) {
  for (const ScheduleInfo& info : schedules()) {
    EXPECT_EQ(parse_config("training: {schedule: " + info.name + "}").training.schedule, info.name);
  }
  // The error lists the registry's names, in its order.
  std::string names;
  for (const ScheduleInfo& info : schedules()) {
    names += (names.empty() ? "'" : ", '") + info.name + "'";
  }
  expect_contains(error_of("training: {schedule: pipedream}"),
                  {"training.schedule", "one of " + names});
  expect_contains(error_of("training: {schedule: ZB1P}"), {"did you mean 'zb1p'?"});
}

TEST(ConfigSchedule, ChunksPerRankParsesWithAMultiChunkSchedule) {
  const Config c = parse_config(
      "training: {schedule: interleaved, micro_batches: 8}\n"
      "partition: {stages: 4, chunks_per_rank: 2}\n");
  EXPECT_EQ(c.partition.chunks_per_rank, 2);
  EXPECT_EQ(parse_config("partition: {chunks_per_rank: 8}\ntraining: {schedule: interleaved}")
                .partition.chunks_per_rank,
            8);
  // 1 is fine with any schedule, also next to an explicit placement.
  for (const ScheduleInfo& info : schedules()) {
    EXPECT_EQ(parse_config("training: {schedule: " + info.name +
                           "}\npartition: {chunks_per_rank: 1, layers: [[0], [1, 2]]}")
                  .partition.chunks_per_rank,
              1);
  }
}

TEST(ConfigSchedule, ChunksPerRankBadValuesAreNamed) {
  const std::string with = "training: {schedule: interleaved}\npartition: {chunks_per_rank: ";
  for (const char* bad : {"0", "-1", "9", "100"}) {
    expect_contains(error_of(with + bad + "}"),
                    {"partition.chunks_per_rank", std::string("got ") + bad,
                     "an integer from 1 to 8", "(line 2)"});
  }
  expect_contains(error_of(with + "two}"), {"partition.chunks_per_rank", "'two'", "from 1 to 8"});
  expect_contains(error_of(with + "2.0}"), {"partition.chunks_per_rank", "2.0", "from 1 to 8"});
  expect_contains(error_of(with + "99999999999999999999}"),
                  {"partition.chunks_per_rank", "99999999999999999999"});
}

TEST(ConfigSchedule, ChunksPerRankNeedsAMultiChunkSchedule) {
  std::vector<std::string> accepting;
  for (const ScheduleInfo& info : schedules()) {
    if (info.multi_chunk) accepting.push_back("'" + info.name + "'");
  }
  ASSERT_FALSE(accepting.empty());
  for (const ScheduleInfo& info : schedules()) {
    const std::string yaml =
        "training: {schedule: " + info.name + "}\npartition: {chunks_per_rank: 2}\n";
    if (info.multi_chunk) {
      EXPECT_EQ(parse_config(yaml).partition.chunks_per_rank, 2) << info.name;
      continue;
    }
    std::vector<std::string> parts = {"partition.chunks_per_rank", "is 2", "training.schedule",
                                      "'" + info.name + "'", "(line 2)"};
    parts.insert(parts.end(), accepting.begin(), accepting.end());
    expect_contains(error_of(yaml), parts);
  }
  // The default schedule takes one chunk per rank.
  ASSERT_FALSE(schedules().front().multi_chunk);
  expect_contains(error_of("partition: {chunks_per_rank: 3}"),
                  {"partition.chunks_per_rank", "is 3", "training.schedule"});
}

TEST(ConfigSchedule, ChunksPerRankWithExplicitLayersIsAnError) {
  expect_contains(error_of("training: {schedule: interleaved}\n"
                           "partition: {chunks_per_rank: 2, layers: [[0], [1], [2], [3]]}\n"),
                  {"partition.chunks_per_rank", "is 2", "partition.layers",
                   "one layer range per stage rank"});
}

TEST(ConfigSchedule, ChunksPerRankFromTheCommandLine) {
  const Config c =
      parse_config("training: {schedule: interleaved}", sets({"partition.chunks_per_rank=4"}));
  EXPECT_EQ(c.partition.chunks_per_rank, 4);
  const Config d =
      parse_config("", sets({"training.schedule=interleaved", "partition.chunks_per_rank=3"}));
  EXPECT_EQ(d.partition.chunks_per_rank, 3);
  expect_contains(error_of("training: {schedule: 1f1b}", sets({"partition.chunks_per_rank=3"})),
                  {"partition.chunks_per_rank", "(from --set partition.chunks_per_rank=3)",
                   "'1f1b'"});
  expect_contains(error_of("", sets({"partition.chunks_per_rank=9"})),
                  {"partition.chunks_per_rank", "got 9",
                   "(from --set partition.chunks_per_rank=9)"});
  expect_contains(error_of("", sets({"partition.chunk_per_rank=2"})),
                  {"partition.chunk_per_rank", "unknown key", "did you mean 'chunks_per_rank'?"});
}

TEST(ConfigSchedule, ChunksPerRankRoundTrip) {
  Config c;
  c.training.schedule = "interleaved";
  c.training.micro_batches = 12;
  c.partition.method = "balanced";
  c.partition.stages = 3;
  c.partition.chunks_per_rank = 4;
  const std::string text = to_yaml(c);
  SCOPED_TRACE(text);
  expect_contains(text, {"schedule: interleaved", "chunks_per_rank: 4"});
  const Config back = parse_config(text, {}, "<to_yaml>");
  expect_same(back, c);
  EXPECT_EQ(to_yaml(back), text);
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

// dataset_config.feed: rank0 (default) or local; a text job's inputs are token ids already.
TEST(ConfigFeed, ChoicesAndTextRefusal) {
  EXPECT_EQ(parse_config("").dataset.feed, "rank0");
  EXPECT_EQ(parse_config("dataset_config: {feed: local}").dataset.feed, "local");
  const std::string bad = error_of("dataset_config: {feed: disk}");
  EXPECT_NE(bad.find("dataset_config.feed: expected one of 'rank0', 'local', got 'disk'"), std::string::npos) << bad;
  const std::string text = error_of(transformer_yaml("", "feed: local"));
  EXPECT_NE(text.find("dataset_config.feed: does not apply to name 'text' (a text job's inputs are token ids"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace arceus
