#include "launcher/commands.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "models/gpt.h"
#include "models/stage_model.h"
#include "ranks/inference.h"
#include "ranks/job.h"
#include "ranks/stage_state.h"
#include "ranks/vocab.h"
#include "storage/storage.h"

namespace arceus {

int run_train(Transport& transport, const TrainOptions& options) {
  if (transport.rank() != 0) return worker_loop(transport, options, false);
  Config config;
  try {
    config = load_config_file(options.config_path, options.overrides);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    broadcast_setup_failure(transport, e.what());
    return 1;
  }
  const JobResult result = run_job(transport, config, options, nullptr);
  if (result.state == RunState::Failed) {
    std::fprintf(stderr, "error: %s\n", result.error.c_str());
    return 1;
  }
  std::printf("summary: %s/summary.json\n", config.output.dir.c_str());
  return 0;
}

int run_eval(Transport& transport, const TrainOptions& options, const std::string& checkpoint) {
  if (transport.size() > 1) {
    if (transport.rank() == 0) std::fprintf(stderr, "error: arceus eval runs on one process: run it without mpirun\n");
    return 1;
  }
  try {
    const Config config = load_config_file(options.config_path, options.overrides);
    const CheckpointData ck = read_checkpoint(checkpoint);
    TrainOptions eval_options = options;
    eval_options.resume = checkpoint;  // named in the checkpoint checks' messages
    const EvalResult r = evaluate_checkpoint(config, ck, eval_options, transport.host());
    std::printf("eval: %s on %s: val loss %.4f, val accuracy %.2f%% (%lld samples; checkpoint epoch %lld, step %lld)\n",
                checkpoint.c_str(), r.dataset.c_str(), r.loss, 100 * r.accuracy, (long long)r.samples,
                (long long)ck.epoch, (long long)ck.step);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

int run_generate(const GenerateOptions& options) {
  try {
    at::set_num_threads(std::max(1, options.threads));
    CheckpointModel model;
    std::string text;
    try {
      text = model.generate(options.checkpoint, options.prompt, options.tokens, options.temperature, options.seed);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("[generate] ") + e.what());
    }
    std::printf("%s%s\n", options.prompt.c_str(), text.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

int run_predict(const PredictOptions& options) {
  try {
    std::string text = options.pixels;
    if (!text.empty() && text[0] == '@') {
      std::ifstream in(text.substr(1), std::ios::binary);
      if (!in) throw ConfigError("[predict] cannot read '" + text.substr(1) + "'");
      std::ostringstream all;
      all << in.rdbuf();
      text = all.str();
    }
    nlohmann::json input;
    try {
      input = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      throw ConfigError(std::string("[predict] --pixels is not JSON: ") + e.what());
    }
    if (input.is_object()) input = input.value("pixels", nlohmann::json());
    std::vector<double> values;
    if (input.is_array()) {
      for (const auto& row : input) {
        if (row.is_array()) {
          for (const auto& v : row) values.push_back(v.get<double>());
        } else {
          values.push_back(row.get<double>());
        }
      }
    } else {
      throw ConfigError("[predict] --pixels: expected a JSON list of numbers or of rows of numbers");
    }
    CheckpointModel model;
    const CheckpointModel::Info info = model.load(options.checkpoint);
    if (input_is_pixels(info.config)) {
      for (size_t i = 0; i < values.size(); ++i)
        if (!(values[i] >= 0.0 && values[i] <= 1.0))
          throw ConfigError("[predict] pixel " + std::to_string(i) + " = " + std::to_string(values[i]) +
                            ": expected a pixel intensity in [0, 1]");
    }
    Prediction p;
    try {
      p = model.predict(options.checkpoint, values);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("[predict] ") + e.what());
    }
    std::printf("%s\n", nlohmann::json({{"probabilities", p.probabilities}, {"class", p.label}}).dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

}  // namespace arceus
