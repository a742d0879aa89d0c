// training.pipeline_flush false (ranks/schedule/stream.h): a pipeline that runs the steps as
// one stream, with two weight versions per stage and each update applied one step late
// (PipeDream-2BW). It changes the mathematics, so it is compared with a reference of the same
// delayed update written here plainly, in this process, on the whole model: not with the
// synchronous run (which it must differ from).
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>

#include <ATen/ATen.h>

#include <deque>

#include "datasets/dataset.h"
#include "models/stage_model.h"
#include "ranks/stage_state.h"
#include "ranks/steps.h"
#include "support/pipeline_runs.h"

namespace arceus {
namespace {

using namespace test;

// Two epochs of every batch, in file order: the data the reference reads is the run's.
const std::vector<std::string> kStream = {"training.pipeline_flush=false", "training.schedule=1f1b","dataset_config.shuffle=false",
                                          "training.epochs=2", "training.max_steps=0"};

// W(t+1) = W(t) - U(g(W(t-1))): step t's micro-batches run on version V_t; before step t
// starts, the update of step t-2's gradient is applied to the master weights, and V_t is
// copied from them. Every epoch ends with the pending updates applied (the flush at the
// evaluation). SGD with momentum, a constant learning rate.
Outcome delayed_update_reference(const std::string& yaml, const std::vector<std::string>& sets) {
  std::vector<Override> overrides;
  for (const auto& s : sets) overrides.push_back(parse_override(s));
  const Config c = parse_config(yaml, overrides, "<reference>");
  const auto& t = c.training;
  const DataSplits data = load_dataset(c.dataset, t.seed);
  const std::vector<int64_t>& sizes = c.model.layer_sizes;
  const LayerRange all{0, int64_t(sizes.size()) - 1};
  auto master = make_mlp_slice(sizes, all, t.seed);
  std::unique_ptr<StageModel> version[2] = {make_mlp_slice(sizes, all, t.seed), make_mlp_slice(sizes, all, t.seed)};
  std::vector<at::Tensor> weights;
  for (auto& [name, p] : master->named_parameters()) weights.push_back(p);
  torch::optim::SGD sgd(weights, torch::optim::SGDOptions(t.learning_rate).momentum(t.momentum));

  const auto apply = [&](int v) {
    size_t k = 0;
    for (auto& [name, p] : version[v]->named_parameters()) weights[k++].mutable_grad() = p.grad();
    sgd.step();
    for (auto& w : weights) w.mutable_grad() = at::Tensor();
    for (auto& [name, p] : version[v]->named_parameters()) p.mutable_grad() = at::Tensor();
  };
  Outcome r;
  const int64_t n = data.train.size(), batch = c.dataset.batch_size, steps = (n + batch - 1) / batch;
  for (int64_t epoch = 0; epoch < t.epochs; ++epoch) {
    std::deque<int64_t> pending;  // steps whose update is not applied yet
    for (int64_t s = 0; s < steps; ++s) {
      while (!pending.empty() && s - pending.front() >= 2) {
        apply(int(pending.front() % 2));
        pending.pop_front();
      }
      StageModel& v = *version[s % 2];
      {
        at::NoGradGuard no_grad;
        size_t k = 0;
        for (auto& [name, p] : v.named_parameters()) p.copy_(weights[k++]);
      }
      const int64_t rows = std::min(batch, n - s * batch);
      double loss = 0;
      int64_t offset = 0;
      for (int64_t m : micro_batch_sizes(rows, t.micro_batches)) {
        const at::Tensor x = data.train.inputs.narrow(0, s * batch + offset, m);
        const at::Tensor y = data.train.labels.narrow(0, s * batch + offset, m);
        const at::Tensor sum = at::cross_entropy_loss(v.forward(x), y, {}, at::Reduction::Sum);
        loss += sum.item<double>();
        (sum / static_cast<double>(rows)).backward();
        offset += m;
      }
      r.losses.push_back(loss / double(rows));
      pending.push_back(s);
    }
    for (int64_t s : pending) apply(int(s % 2));
  }
  for (auto& [name, p] : master->named_parameters()) {
    r.tensors[name] = to_named(name, p);
    auto& state = sgd.state();
    auto it = state.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
    if (it == state.end()) continue;
    const auto& buffer = static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer();
    r.tensors[name + ":momentum_buffer"] = to_named(name + ":momentum_buffer", buffer);
  }
  return r;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Every tensor and every step's loss equals the reference's, for S 1..4, M 1..8 and both
// schedules that can run without a flush; and the result is not the synchronous run's.
TEST_F(Pipeline, NoFlushEqualsTheDelayedUpdateReference) {
  int compared = 0;
  for (int m : {1, 2, 3, 4, 8}) {
    const std::vector<std::string> sets = with(kStream, {"training.micro_batches=" + std::to_string(m)});
    const Outcome want = delayed_update_reference(kMlp, sets);
    ASSERT_EQ(want.losses.size(), 8u);
    const Outcome flushed = run(kMlp, 3, with(sets, {"training.pipeline_flush=true", "training.schedule=1f1b"}));
    ASSERT_TRUE(flushed.error.empty()) << flushed.error;
    EXPECT_NE(compare(want, flushed), "") << "the delayed update must differ from the synchronous one (M=" << m << ")";
    for (const char* schedule : {"1f1b", "eager1f1b"}) {
      for (int stages = 1; stages <= 4; ++stages) {
        const Outcome got = run(kMlp, stages + 1, with(sets, {std::string("training.schedule=") + schedule}));
        EXPECT_EQ(compare(want, got), "") << schedule << " S=" << stages << " M=" << m;
        ++compared;
      }
    }
  }
  std::printf("[  result  ] %d runs without a flush, every tensor within %g of the delayed-update reference\n",
              compared, kTolerance);
}

// A checkpoint is a flush: a run stopped after its first epoch and resumed equals the
// uninterrupted run, tensor for tensor, with a checkpoint every 2 steps inside each epoch too
// (the same flushes in both).
TEST_F(Pipeline, NoFlushResumeEqualsTheUninterruptedRun) {
  const std::vector<std::string> sets =
      with(kStream, {"training.micro_batches=4", "training.schedule=eager1f1b", "output.checkpoint_every_steps=2"});
  const Outcome straight = run(kMlp, 4, sets);
  ASSERT_TRUE(straight.error.empty()) << straight.error;
  const std::string out = (dir_ / "resumed").string();
  const Outcome first = run(kMlp, 4, with(sets, {"training.epochs=1", "output.dir=" + out}));
  ASSERT_TRUE(first.error.empty()) << first.error;
  Outcome second = run(kMlp, 4, with(sets, {"output.dir=" + out, "resume=true"}));
  ASSERT_TRUE(second.error.empty()) << second.error;
  // The second epoch's losses (summary.json may hold the first epoch's too), then every tensor.
  ASSERT_GE(second.losses.size(), 4u);
  Outcome want = straight;
  want.losses.erase(want.losses.begin(), want.losses.end() - 4);
  second.losses.erase(second.losses.begin(), second.losses.end() - 4);
  EXPECT_EQ(compare(want, second), "");
}

// What cannot run without a flush is refused at start-up, with the reason.
TEST_F(Pipeline, NoFlushRefusesWhatItCannotRun) {
  const auto refused = [&](const std::vector<std::string>& sets, int ranks) { return run(kMlp, ranks, with(kStream, sets)).error; };
  EXPECT_NE(refused({"training.schedule=zb1p"}, 3).find("needs training.schedule '1f1b', 'eager1f1b'"), std::string::npos)
      << refused({"training.schedule=zb1p"}, 3);
  EXPECT_NE(refused({"training.schedule=1f1b", "training.grad_clip=1"}, 3).find("training.grad_clip is 1"),
            std::string::npos);
  const std::string replicas = refused({"training.schedule=1f1b", "partition.replicas=2", "partition.stages=2"}, 5);
  EXPECT_NE(replicas.find("training.pipeline_flush is false, but the job has 2 replicas"), std::string::npos) << replicas;
}

}  // namespace
}  // namespace arceus
