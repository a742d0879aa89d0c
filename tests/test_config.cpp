// Unit tests for config/: YAML parsing, validation messages, --set overrides, round trip.
#include "config/config.h"

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
void expect_same(const Config& a, const Config& b) {
  EXPECT_EQ(a.model.type, b.model.type);
  EXPECT_EQ(a.model.layer_sizes, b.model.layer_sizes);
  EXPECT_EQ(a.dataset.name, b.dataset.name);
  EXPECT_EQ(a.dataset.root, b.dataset.root);
  EXPECT_EQ(a.dataset.batch_size, b.dataset.batch_size);
  EXPECT_EQ(a.dataset.val_batch_size, b.dataset.val_batch_size);
  EXPECT_EQ(a.dataset.normalize.mean, b.dataset.normalize.mean);  // exact double equality
  EXPECT_EQ(a.dataset.normalize.std, b.dataset.normalize.std);
  EXPECT_EQ(a.dataset.shuffle, b.dataset.shuffle);
  EXPECT_EQ(a.dataset.max_train_samples, b.dataset.max_train_samples);
  EXPECT_EQ(a.dataset.max_val_samples, b.dataset.max_val_samples);
  EXPECT_EQ(a.dataset.synthetic.train_size, b.dataset.synthetic.train_size);
  EXPECT_EQ(a.dataset.synthetic.val_size, b.dataset.synthetic.val_size);
  EXPECT_EQ(a.dataset.synthetic.features, b.dataset.synthetic.features);
  EXPECT_EQ(a.dataset.synthetic.classes, b.dataset.synthetic.classes);
  EXPECT_EQ(a.dataset.synthetic.noise, b.dataset.synthetic.noise);
  EXPECT_EQ(a.training.epochs, b.training.epochs);
  EXPECT_EQ(a.training.learning_rate, b.training.learning_rate);
  EXPECT_EQ(a.training.optimizer, b.training.optimizer);
  EXPECT_EQ(a.training.momentum, b.training.momentum);
  EXPECT_EQ(a.training.weight_decay, b.training.weight_decay);
  EXPECT_EQ(a.training.micro_batches, b.training.micro_batches);
  EXPECT_EQ(a.training.schedule, b.training.schedule);
  EXPECT_EQ(a.training.seed, b.training.seed);
  EXPECT_EQ(a.training.max_steps, b.training.max_steps);
  EXPECT_EQ(a.communication.quantization_bits, b.communication.quantization_bits);
  EXPECT_EQ(a.communication.stochastic_rounding, b.communication.stochastic_rounding);
  EXPECT_EQ(a.partition.method, b.partition.method);
  EXPECT_EQ(a.partition.stages, b.partition.stages);
  EXPECT_EQ(a.partition.layers, b.partition.layers);
  EXPECT_EQ(a.output.dir, b.output.dir);
  EXPECT_EQ(a.output.checkpoint_every, b.output.checkpoint_every);
  EXPECT_EQ(a.output.checkpoint_every_steps, b.output.checkpoint_every_steps);
  EXPECT_EQ(a.output.metrics, b.output.metrics);
  EXPECT_EQ(a.resume, b.resume);
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
       "one of 'sequential', 'gpipe', '1f1b'"},
      {"training: {seed: -1}", "training.seed", "-1", "non-negative integer"},
      {"training: {seed: 18446744073709551616}", "training.seed", "18446744073709551616",
       "at most 18446744073709551615"},
      {"training: {max_steps: -1}", "training.max_steps", "-1", "non-negative integer"},
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

TEST(ConfigValidation, TransformerIsALaterFeature) {
  const std::string message = error_of("model_config: {type: transformer}");
  expect_contains(message, {"model_config.type", "'transformer'", "not supported by this build",
                            "later feature", "'mlp'"});
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
  void SetUp() override {
    char pattern[] = "/tmp/arceus_config_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const auto& f : files_) std::remove(f.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  std::string dir_;
  std::vector<std::string> files_;
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
