// The operator's input limits (config/limits.h): every limit's error names the limit, its value,
// the key that went over it and the variable that raises it; the environment sets them.
#include "config/limits.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "launcher/request_body.h"

namespace arceus {
namespace {

// The message of the E that f throws.
template <class E>
std::string thrown(const std::function<void()>& f) {
  try { f(); } catch (const E& e) { return e.what(); }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

std::string config_error(const std::string& yaml, const Limits& limits = Limits{},
                         const std::vector<Override>& overrides = {}) {
  return thrown<ConfigError>([&] { parse_config(yaml, overrides, "job.yaml", limits); });
}

void expect_contains(const std::string& message, const std::vector<std::string>& parts) {
  for (const auto& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "message lacks '" << part << "':\n  " << message;
  }
}

TEST(Limits, DefaultsAndCommas) {
  const Limits l;
  EXPECT_EQ(l.max_layers, 1024);
  EXPECT_EQ(l.max_layer_width, 1 << 20);
  EXPECT_EQ(l.max_parameters, 1000000000);
  EXPECT_EQ(l.max_batch_size, 1 << 20);
  EXPECT_EQ(l.max_windows_per_epoch, 1 << 24);
  EXPECT_EQ(l.max_synthetic_values, int64_t{1} << 30);
  EXPECT_EQ(l.max_nesting, 64);
  EXPECT_EQ(with_commas(0), "0");
  EXPECT_EQ(with_commas(999), "999");
  EXPECT_EQ(with_commas(1000), "1,000");
  EXPECT_EQ(with_commas(-1234567), "-1,234,567");
  EXPECT_EQ(limit_variable("max_parameters"), "ARCEUS_LIMIT_MAX_PARAMETERS");
}

TEST(Limits, ShippedConfigsAreWithinTheDefaults) {
  for (const char* name : {"fashion_mnist_mlp.yaml", "fashion_mnist_wide.yaml", "gpt_char.yaml", "synthetic_mlp.yaml"}) {
    SCOPED_TRACE(name);
    EXPECT_NO_THROW(load_config_file(std::string(ARCEUS_SOURCE_DIR) + "/configs/" + name, {}, Limits{}));
  }
}

TEST(Limits, LayersOfAnMlp) {
  Limits l;
  l.max_layers = 3;
  EXPECT_NO_THROW(parse_config("model_config: {layer_sizes: [8, 8, 8, 4]}", {}, "job.yaml", l));
  EXPECT_EQ(config_error("model_config:\n  layer_sizes: [8, 8, 8, 8, 4]\n", l),
            "[config] job.yaml: model_config.layer_sizes: 5 widths make 4 layers, above the limit max_layers = 3 "
            "(line 2); raise it with ARCEUS_LIMIT_MAX_LAYERS in arceus's environment");
}

TEST(Limits, LayersOfATransformer) {
  Limits l;
  l.max_layers = 10;
  expect_contains(config_error("model_config: {type: transformer, n_blocks: 9}\ndataset_config: {source: t.txt}", l),
                  {"model_config.n_blocks: 9 blocks make 11 layers", "above the limit max_layers = 10",
                   "ARCEUS_LIMIT_MAX_LAYERS"});
}

TEST(Limits, LayerWidths) {
  EXPECT_EQ(config_error("model_config: {layer_sizes: [784, 2000000, 10]}"),
            "[config] job.yaml: model_config.layer_sizes[1]: width 2,000,000, above the limit max_layer_width = "
            "1,048,576 (line 1); raise it with ARCEUS_LIMIT_MAX_LAYER_WIDTH in arceus's environment");
  expect_contains(config_error("model_config: {type: transformer, n_emb: 2000000, n_heads: 1}\n"
                               "dataset_config: {source: t.txt}"),
                  {"model_config.n_emb: width 2,000,000", "max_layer_width = 1,048,576"});
  expect_contains(config_error("model_config: {type: transformer, context: 3000000}\ndataset_config: {source: t.txt}"),
                  {"model_config.context: context 3,000,000", "max_layer_width = 1,048,576"});
  expect_contains(config_error("dataset_config: {name: synthetic, synthetic: {features: 5000000}}"),
                  {"dataset_config.synthetic.features: width 5,000,000", "max_layer_width"});
}

TEST(Limits, ParametersInTotal) {
  // 100000 x 100000 + 100000 biases, then 100000 x 10 + 10.
  EXPECT_EQ(config_error("model_config: {layer_sizes: [100000, 100000, 10]}"),
            "[config] job.yaml: model_config.layer_sizes: 10,001,100,010 parameters in total, above the limit "
            "max_parameters = 1,000,000,000 (line 1); raise it with ARCEUS_LIMIT_MAX_PARAMETERS in arceus's "
            "environment");
  expect_contains(config_error("model_config: {type: transformer, n_emb: 8192, n_heads: 8, n_blocks: 20}\n"
                               "dataset_config: {source: t.txt}"),
                  {"model_config.n_emb: 16,108,830,720 parameters without the token embedding and head",
                   "context 128, n_emb 8,192, n_blocks 20", "max_parameters = 1,000,000,000"});
}

TEST(Limits, BatchSizesAndWindows) {
  expect_contains(config_error("dataset_config: {batch_size: 2000000}"),
                  {"dataset_config.batch_size: batch size 2,000,000, above the limit max_batch_size = 1,048,576",
                   "ARCEUS_LIMIT_MAX_BATCH_SIZE"});
  expect_contains(config_error("dataset_config: {val_batch_size: 2000000}"),
                  {"dataset_config.val_batch_size: batch size 2,000,000", "max_batch_size"});
  expect_contains(config_error("model_config: {type: transformer}\n"
                               "dataset_config: {source: t.txt, windows_per_epoch: 100000000}"),
                  {"dataset_config.windows_per_epoch: 100,000,000 windows",
                   "above the limit max_windows_per_epoch = 16,777,216", "ARCEUS_LIMIT_MAX_WINDOWS_PER_EPOCH"});
}

TEST(Limits, SyntheticValues) {
  expect_contains(
      config_error("dataset_config: {name: synthetic, synthetic: {train_size: 9000000000000000000, val_size: "
                   "9000000000000000000}}"),
      {"dataset_config.synthetic: (train_size 9,000,000,000,000,000,000 + val_size", "more than 2^63 values",
       "max_synthetic_values = 1,073,741,824"});
  expect_contains(config_error("dataset_config: {name: synthetic, synthetic: {train_size: 2000000}}"),
                  {"(train_size 2,000,000 + val_size 1,024) x features 784 = 1,568,802,816 values",
                   "ARCEUS_LIMIT_MAX_SYNTHETIC_VALUES"});
  expect_contains(config_error("dataset_config: {name: synthetic, synthetic: {classes: 1000000, features: 2000}}"),
                  {"classes 1,000,000 x features 2,000 = 2,000,000,000 values (the class centres)"});
}

TEST(Limits, OverridesAreNamed) {
  expect_contains(config_error("", Limits{}, {parse_override("dataset_config.batch_size=2000000")}),
                  {"dataset_config.batch_size: batch size 2,000,000",
                   "(from --set dataset_config.batch_size=2000000)", "max_batch_size"});
}

TEST(Limits, YamlNesting) {
  std::string deep = "training: ";
  for (int i = 0; i < 70; ++i) deep += "[";
  for (int i = 0; i < 70; ++i) deep += "]";
  EXPECT_EQ(config_error(deep),
            "[config] job.yaml: the document nests maps and lists more than 64 levels deep, above the limit "
            "max_nesting = 64 (line 1); raise it with ARCEUS_LIMIT_MAX_NESTING in arceus's environment");
  Limits l;
  l.max_nesting = 2;
  EXPECT_NO_THROW(parse_config("model_config: {type: mlp}", {}, "job.yaml", l));
  expect_contains(config_error("model_config: {layer_sizes: [4, 2]}", l),
                  {"the document nests maps and lists more than 2 levels deep", "max_nesting = 2"});
  expect_contains(config_error("", l, {parse_override("partition.layers=[[[0]], [1]]")}),
                  {"--set partition.layers=[[[0]], [1]]: the value nests maps and lists more than 2 levels deep"});
}

TEST(Limits, AliasesOfAliasesAreRefused) {
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 8; ++k) bomb += std::string(k ? ", " : "") + "*a" + std::to_string(i - 1);
    bomb += "]\n";
  }
  expect_contains(config_error(bomb), {"the document has more than 1,048,576 values (each use of an alias counted)"});
}

TEST(Limits, NoLimitsAcceptsWhatTheDefaultsRefuse) {
  EXPECT_NO_THROW(parse_config("dataset_config: {batch_size: 2000000}", {}, "<from rank 0>", no_limits()));
}

TEST(Limits, FromTheEnvironment) {
  setenv("ARCEUS_LIMIT_MAX_PARAMETERS", "4000000000", 1);
  setenv("ARCEUS_LIMIT_MAX_NESTING", "8", 1);
  Limits l = limits_from_environment();
  EXPECT_EQ(l.max_parameters, 4000000000);
  EXPECT_EQ(l.max_nesting, 8);
  EXPECT_EQ(l.max_layers, Limits{}.max_layers);
  setenv("ARCEUS_LIMIT_MAX_NESTING", "0", 1);
  expect_contains(thrown<LimitError>([] { limits_from_environment(); }),
                  {"ARCEUS_LIMIT_MAX_NESTING='0': expected a positive integer"});
  unsetenv("ARCEUS_LIMIT_MAX_NESTING");
  setenv("ARCEUS_LIMIT_MAX_PARAMS", "5", 1);
  expect_contains(thrown<LimitError>([] { limits_from_environment(); }),
                  {"unknown environment variable ARCEUS_LIMIT_MAX_PARAMS", "ARCEUS_LIMIT_MAX_PARAMETERS"});
  unsetenv("ARCEUS_LIMIT_MAX_PARAMS");
  unsetenv("ARCEUS_LIMIT_MAX_PARAMETERS");
  EXPECT_EQ(limits_from_environment().max_parameters, Limits{}.max_parameters);
}

// The REST bodies (launcher/request_body.h): the same limits, answered with 400.
std::string bad_request(const std::function<void()>& f) {
  try { f(); } catch (const rest::HttpError& e) { EXPECT_EQ(e.status(), 400) << e.what(); return e.what(); }
  ADD_FAILURE() << "no HttpError thrown";
  return "";
}

TEST(Limits, RestJsonNesting) {
  const std::string deep = std::string(70, '[') + std::string(70, ']');
  EXPECT_EQ(bad_request([&] { rest::parse_job_body(deep, "application/json"); }),
            "[serve] the JSON body nests more than 64 levels of [ ] or { } (70 levels), above the limit max_nesting = "
            "64; raise it with ARCEUS_LIMIT_MAX_NESTING in arceus's environment");
  expect_contains(bad_request([&] { rest::parse_train_body(deep); }),
                  {"[serve] the train body nests more than 64 levels", "max_nesting = 64"});
  expect_contains(bad_request([&] { rest::object_body(deep, "predict", R"({"pixels": []})"); }),
                  {"[serve] the predict body nests more than 64 levels", "max_nesting = 64"});
  Limits l;
  l.max_nesting = 3;
  EXPECT_NO_THROW(rest::parse_job_body(R"({"model_config": {"layer_sizes": [4, 2]}})", "application/json", l));
  expect_contains(bad_request([&] { rest::parse_job_body(R"({"partition": {"layers": [[0]]}})", "application/json", l); }),
                  {"(4 levels), above the limit max_nesting = 3"});
}

TEST(Limits, RestYamlBodyAndSizes) {
  std::string deep = "training:";
  for (int i = 0; i < 70; ++i) deep += "\n" + std::string(2 * i + 2, ' ') + "- ";
  deep += "1\n";
  expect_contains(bad_request([&] { rest::parse_job_body(deep, "application/yaml"); }),
                  {"[config] <request body>: the document nests maps and lists more than 64 levels deep",
                   "above the limit max_nesting = 64"});
  expect_contains(
      bad_request([&] { rest::parse_job_body(R"({"model_config": {"layer_sizes": [784, 2000000, 10]}})", "application/json"); }),
      {"[config] <request body>: model_config.layer_sizes[1]: width 2,000,000, above the limit max_layer_width",
       "ARCEUS_LIMIT_MAX_LAYER_WIDTH"});
}

}  // namespace
}  // namespace arceus
