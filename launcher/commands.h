// The commands that train and use a model: `arceus train`, `eval` and `generate`. Each
// returns the process exit code.
#pragma once

#include <cstdint>
#include <string>

#include "ranks/trainer.h"

namespace arceus {

// `arceus train`: the whole job on every rank. Set-up errors are printed once by rank 0 and
// every rank returns 1. Errors during training are thrown (the launcher prints them and
// aborts the world).
int run_train(Transport& transport, const TrainOptions& options);

// `arceus eval`: validation loss and accuracy of a checkpoint's weights on the config's
// validation split, on one process (an error under mpirun with more ranks).
int run_eval(Transport& transport, const TrainOptions& options, const std::string& checkpoint);

// `arceus generate`: text from a transformer checkpoint (one process, no MPI).
struct GenerateOptions {
  std::string checkpoint;
  std::string prompt;        // UTF-8; every character must be in the checkpoint's vocabulary
  int64_t tokens = 200;      // characters to generate
  double temperature = 0.8;  // > 0 samples from softmax(logits / T); 0 = argmax
  uint64_t seed = 1;         // the sampling generator's seed
  int threads = 1;
};
// Prints the prompt followed by the generated text (errors on stderr).
int run_generate(const GenerateOptions& options);

// `arceus predict`: the class probabilities of one input (the same computation as POST
// /api/jobs/<id>/predict), printed as JSON {"probabilities": [...], "class": k}.
struct PredictOptions {
  std::string checkpoint;
  std::string pixels;  // JSON (a list, rows of columns, or {"pixels": ...}); "@FILE" reads FILE
};
int run_predict(const PredictOptions& options);

}  // namespace arceus
