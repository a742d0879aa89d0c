#include "ranks/inference.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include <filesystem>
#include <map>
#include <stdexcept>

#include "models/gpt.h"
#include "models/stage_model.h"
#include "ranks/job.h"
#include "ranks/stage_state.h"
#include "ranks/vocab.h"
#include "storage/storage.h"

namespace arceus {

namespace fs = std::filesystem;

bool input_is_pixels(const Config& c) {
  return c.model.type != "transformer" && (c.dataset.name == "MNIST" || c.dataset.name == "FashionMNIST");
}

struct CheckpointModel::Impl {
  std::mutex mu;
  std::string path;
  uintmax_t size = 0;
  fs::file_time_type mtime{};
  Info info;
  std::unique_ptr<StageModel> model;
  std::unique_ptr<CharVocab> vocab;

  Info load_locked(const std::string& p) {
    std::error_code ec;
    const auto sz = fs::file_size(p, ec);
    if (ec) throw StorageError("'" + p + "' does not exist yet: the job writes it after its first epoch (or step checkpoint)");
    const auto mt = fs::last_write_time(p, ec);
    if (model && p == path && sz == size && mt == mtime) return info;

    const CheckpointData ck = read_checkpoint(p);
    Info next;
    next.config = parse_config(ck.config_yaml, {}, p + " (config attribute)");
    next.epoch = ck.epoch;
    next.step = ck.step;
    std::unique_ptr<CharVocab> next_vocab;
    std::unique_ptr<StageModel> next_model;
    if (is_transformer(next.config)) {
      auto it = ck.attributes.find("vocab_code_points");
      if (it == ck.attributes.end()) throw StorageError("'" + p + "' has no vocab_code_points attribute");
      next_vocab = std::make_unique<CharVocab>(vocab_from_attribute(it->second, p));
      check_checkpoint_matches(ck, next.config, next_vocab->size(), p);
      next_model = whole_gpt(gpt_config_of(next.config, next_vocab->size()), next.config.training.seed, ck.parameters);
      next.inputs = next.config.model.context;
      next.classes = next_vocab->size();
    } else {
      check_checkpoint_matches(ck, next.config, 0, p);
      const auto& sizes = next.config.model.layer_sizes;
      {
        // Construction seeds torch's global generator (under construction_mutex): put back
        // its state, as whole_gpt does.
        at::Generator global = at::detail::getDefaultCPUGenerator();
        const at::Tensor rng_state = global.get_state();
        next_model = make_mlp_slice(sizes, {0, static_cast<int64_t>(sizes.size()) - 1}, next.config.training.seed);
        global.set_state(rng_state);
      }
      std::map<std::string, at::Tensor> by_name;
      for (auto& [name, t] : next_model->named_parameters()) by_name[name] = t;
      at::NoGradGuard no_grad;
      for (const auto& a : ck.parameters)
        by_name.at(a.name).copy_(at::from_blob(const_cast<float*>(a.data.data()), a.shape, at::kFloat));
      next.inputs = sizes.front();
      next.classes = sizes.back();
    }
    next_model->module().eval();
    model = std::move(next_model);
    vocab = std::move(next_vocab);
    info = next;
    path = p;
    size = sz;
    mtime = mt;
    return info;
  }
};

CheckpointModel::CheckpointModel() : impl_(std::make_unique<Impl>()) {}
CheckpointModel::~CheckpointModel() = default;

CheckpointModel::Info CheckpointModel::load(const std::string& path) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->load_locked(path);
}

Prediction CheckpointModel::predict(const std::string& path, const std::vector<double>& input) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const Info info = impl_->load_locked(path);
  if (is_transformer(info.config)) throw std::invalid_argument("'" + path + "' holds a transformer: use generate, not predict");
  if (static_cast<int64_t>(input.size()) != info.inputs) {
    throw std::invalid_argument("the model takes " + std::to_string(info.inputs) + " input values, got " +
                                std::to_string(input.size()));
  }
  at::Tensor x = at::tensor(input, at::kDouble).to(at::kFloat).reshape({1, info.inputs});
  if (input_is_pixels(info.config)) {
    // The data loader's arithmetic (float32): x / 255 was already done by the client.
    x.sub_(info.config.dataset.normalize.mean[0]).div_(info.config.dataset.normalize.std[0]);
  }
  at::NoGradGuard no_grad;
  const at::Tensor logits = impl_->model->forward(x);
  const at::Tensor p = at::softmax(logits.to(at::kDouble), 1).reshape({-1}).contiguous();
  Prediction out;
  out.probabilities.assign(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  out.label = p.argmax().item<int64_t>();
  return out;
}

std::string CheckpointModel::generate(const std::string& path, const std::string& prompt, int64_t tokens,
                                      double temperature, uint64_t seed) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const Info info = impl_->load_locked(path);
  if (!is_transformer(info.config)) {
    throw std::invalid_argument("'" + path + "' holds a model_config.type '" + info.config.model.type +
                                "' model: generate needs a transformer checkpoint");
  }
  return gpt_generate(*impl_->model, *impl_->vocab, prompt, tokens, temperature, seed);
}

}  // namespace arceus
