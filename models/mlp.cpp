#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <sstream>

#include "models/stage_model.h"

namespace arceus {

std::mutex& construction_mutex() {
  static std::mutex m;
  return m;
}

int64_t StageModel::parameter_count() {
  int64_t n = 0;
  for (auto& [name, p] : named_parameters()) n += p.numel();
  return n;
}

namespace {

class MlpSlice final : public StageModel, public torch::nn::Module {
 public:
  MlpSlice(const std::vector<int64_t>& sizes, LayerRange range, uint64_t seed)
      : range_(range), last_layer_(static_cast<int64_t>(sizes.size()) - 2) {
    for (int64_t i = range.first; i < range.end(); ++i) {
      // Per-layer seed: identical initial weights for layer i on any stage.
      torch::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(i));
      auto linear = torch::nn::Linear(sizes[static_cast<size_t>(i)], sizes[static_cast<size_t>(i + 1)]);
      linears_.push_back(register_module("layers_" + std::to_string(i), linear));
      flops_ += 2.0 * static_cast<double>(sizes[static_cast<size_t>(i)] * sizes[static_cast<size_t>(i + 1)]);
    }
    in_ = sizes[static_cast<size_t>(range.first)];
    out_ = sizes[static_cast<size_t>(range.end())];
  }

  at::Tensor forward(const at::Tensor& x, WeightOps* ops) override {
    at::Tensor h = x;
    for (size_t j = 0; j < linears_.size(); ++j) {
      h = linears_[j]->forward(h);
      if (ops) ops->ops.push_back({h, {linears_[j]->weight, linears_[j]->bias}});
      if (range_.first + static_cast<int64_t>(j) != last_layer_) h = at::relu(h);
    }
    return h;
  }

  std::vector<std::pair<std::string, at::Tensor>> named_parameters() override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (size_t j = 0; j < linears_.size(); ++j) {
      const std::string base = "layers." + std::to_string(range_.first + static_cast<int64_t>(j));
      out.emplace_back(base + ".weight", linears_[j]->weight);
      out.emplace_back(base + ".bias", linears_[j]->bias);
    }
    return out;
  }

  torch::nn::Module& module() override { return *this; }
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  double forward_flops_per_sample() const override { return flops_; }
  LayerRange layers() const override { return range_; }

 private:
  LayerRange range_;
  int64_t last_layer_;
  int64_t in_ = 0, out_ = 0;
  double flops_ = 0;
  std::vector<torch::nn::Linear> linears_;
};

}  // namespace

std::unique_ptr<StageModel> make_mlp_slice(const std::vector<int64_t>& layer_sizes, LayerRange range,
                                           uint64_t seed) {
  const int64_t layers = static_cast<int64_t>(layer_sizes.size()) - 1;
  if (range.count < 1 || range.first < 0 || range.end() > layers) {
    std::ostringstream os;
    os << "[model] layers [" << range.first << ", " << range.end() << ") are not a slice of an MLP with "
       << layers << " layers";
    throw std::invalid_argument(os.str());
  }
  std::lock_guard<std::mutex> lock(construction_mutex());
  return std::make_unique<MlpSlice>(layer_sizes, range, seed);
}

}  // namespace arceus
