// The trained model answering, on one process: class probabilities of an input (`arceus
// predict`, POST /api/jobs/<id>/predict) and text from a transformer (`arceus generate`, POST
// /api/jobs/<id>/generate), from a checkpoint's whole model. Torch stays in the .cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"

namespace arceus {

struct Prediction {
  std::vector<double> probabilities;  // softmax of the logits, one per class
  int64_t label = 0;                  // the argmax
};

// How the model of a checkpoint sees an input: an MLP on MNIST or Fashion-MNIST takes pixels
// in [0, 1] (an IDX byte / 255) and normalizes them with dataset_config.normalize, exactly as
// the data loader does; a synthetic dataset's features go in as given.
bool input_is_pixels(const Config& c);

// A checkpoint's config, epoch and step, and its model built once: reused while the file is
// unchanged (same size and modification time), reloaded when training writes a newer one.
// Thread-safe: one request at a time uses the model.
class CheckpointModel {
 public:
  CheckpointModel();
  ~CheckpointModel();

  // Loads `path` unless it is the one already loaded and unchanged. StorageError / ConfigError
  // naming the file when it is missing, unreadable, or does not hold the model of its config.
  struct Info {
    Config config;
    int64_t epoch = 0, step = 0;
    int64_t inputs = 0;  // input width (MLP) or context (transformer)
    int64_t classes = 0;  // output width, or the vocabulary size
  };
  Info load(const std::string& path);

  // `input` has Info::inputs values (see input_is_pixels). std::invalid_argument for another
  // count or a transformer checkpoint.
  Prediction predict(const std::string& path, const std::vector<double>& input);

  // gpt_generate on the checkpoint's transformer: `tokens` characters after `prompt`.
  // std::invalid_argument for a character outside the vocabulary or an MLP checkpoint.
  std::string generate(const std::string& path, const std::string& prompt, int64_t tokens, double temperature,
                       uint64_t seed);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arceus
