#include "ranks/diloco.h"

#include <ATen/ATen.h>

#include "ranks/steps.h"

namespace arceus {

Diloco::Diloco(std::vector<at::Tensor> params, GradientSync& sums, const DilocoConfig& config, int64_t replica,
               int64_t replicas)
    : params_(std::move(params)), sums_(sums), config_(config), replica_(replica), replicas_(replicas),
      rows_(static_cast<size_t>(replicas), 0) {
  for (const at::Tensor& p : params_) momentum_.push_back(at::zeros_like(p));
  restart_round();
}

void Diloco::restart_round() {
  at::NoGradGuard no_grad;
  start_.clear();
  for (const at::Tensor& p : params_) start_.push_back(p.detach().clone());
  std::fill(rows_.begin(), rows_.end(), 0);
}

void Diloco::count_step(int64_t rows) {
  const std::vector<int64_t> shares = replica_shares(rows, replicas_);
  for (size_t r = 0; r < rows_.size(); ++r) rows_[r] += shares[r];
}

void Diloco::outer_step(uint32_t step) {
  int64_t total = 0;
  for (int64_t n : rows_) total += n;
  const double weight = total > 0 ? double(rows_[size_t(replica_)]) / double(total) : 1.0 / double(replicas_);
  at::NoGradGuard no_grad;
  // This replica's weighted pseudo-gradient in .grad, summed over the replicas by `sums_`.
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor delta = (start_[i] - params_[i]) * weight;
    if (params_[i].grad().defined()) {
      params_[i].mutable_grad().copy_(delta);
    } else {
      params_[i].mutable_grad() = delta;
    }
  }
  sums_.begin_step(step, 0);
  sums_.finish();
  const double lr = config_.outer_learning_rate, mu = config_.outer_momentum;
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor delta = params_[i].grad();
    at::Tensor update = delta;
    if (mu > 0) {
      momentum_[i].mul_(mu).add_(delta);
      update = delta + momentum_[i] * mu;  // Nesterov
    }
    params_[i].copy_(start_[i] - update * lr);
    params_[i].mutable_grad().zero_();
  }
  restart_round();
}

}  // namespace arceus
