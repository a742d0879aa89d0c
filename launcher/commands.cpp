#include "launcher/commands.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <stdexcept>

#include "models/gpt.h"
#include "models/stage_model.h"
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
  if (result.state == "failed") {
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
    const CheckpointData ck = read_checkpoint(options.checkpoint);
    const Config config = parse_config(ck.config_yaml, {}, options.checkpoint + " (config attribute)");
    if (!is_gpt(config)) {
      throw ConfigError("[generate] '" + options.checkpoint + "' holds a model_config.type '" + config.model.type +
                        "' model: generate needs a transformer checkpoint");
    }
    auto it = ck.attributes.find("vocab_code_points");
    if (it == ck.attributes.end()) {
      throw StorageError("[generate] '" + options.checkpoint + "' has no vocab_code_points attribute");
    }
    const CharVocab vocab = vocab_from_attribute(it->second, options.checkpoint);
    check_checkpoint_matches(ck, config, vocab.size(), options.checkpoint);
    at::set_num_threads(std::max(1, options.threads));
    auto model = whole_gpt(gpt_config_of(config, vocab.size()), config.training.seed, ck.parameters);
    std::string text;
    try {
      text = gpt_generate(*model, vocab, options.prompt, options.tokens, options.temperature, options.seed);
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

}  // namespace arceus
