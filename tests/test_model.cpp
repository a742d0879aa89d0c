// MLP slices: the same seed gives the same weights whatever the partition, and chaining the
// slices of any partition computes the whole model's function.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>

#include "models/stage_model.h"
#include "partition/partition.h"

namespace arceus {
namespace {

const std::vector<int64_t> kSizes{20, 16, 12, 8, 5};

std::map<std::string, at::Tensor> params_of(StageModel& m) {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, p] : m.named_parameters()) out[name] = p.detach().clone();
  return out;
}

TEST(ModelMlp, SameWeightsWhateverThePartition) {
  auto whole = make_mlp_slice(kSizes, {0, 4}, 42);
  const auto reference = params_of(*whole);
  ASSERT_EQ(reference.size(), 8u);
  for (int64_t stages = 1; stages <= 4; ++stages) {
    std::map<std::string, at::Tensor> pieces;
    for (const auto& r : uniform_partition(4, stages)) {
      auto slice = make_mlp_slice(kSizes, r, 42);
      for (auto& [k, v] : params_of(*slice)) pieces[k] = v;
    }
    ASSERT_EQ(pieces.size(), reference.size()) << stages << " stages";
    for (const auto& [name, t] : reference) {
      ASSERT_TRUE(pieces.count(name)) << name;
      EXPECT_TRUE(at::equal(t, pieces[name])) << name << " differs with " << stages << " stages";
    }
  }
}

TEST(ModelMlp, DifferentSeedDifferentWeights) {
  auto a = make_mlp_slice(kSizes, {0, 4}, 1);
  auto b = make_mlp_slice(kSizes, {0, 4}, 2);
  EXPECT_FALSE(at::equal(params_of(*a)["layers.0.weight"], params_of(*b)["layers.0.weight"]));
}

TEST(ModelMlp, ChainedSlicesEqualTheWholeModel) {
  at::manual_seed(3);
  at::Tensor x = at::randn({7, 20});
  auto whole = make_mlp_slice(kSizes, {0, 4}, 42);
  at::Tensor want = whole->forward(x).detach();
  EXPECT_EQ(want.sizes(), (at::IntArrayRef{7, 5}));
  for (int64_t stages = 2; stages <= 4; ++stages) {
    at::Tensor h = x;
    for (const auto& r : uniform_partition(4, stages)) {
      auto slice = make_mlp_slice(kSizes, r, 42);
      EXPECT_EQ(slice->in_features(), h.size(1));
      h = slice->forward(h).detach();
    }
    const double err = (h - want).abs().max().item<double>();
    EXPECT_LT(err, 1e-6) << stages << " stages: max abs error " << err;
  }
}

TEST(ModelMlp, LastLayerHasNoRelu) {
  // Logits of the final layer can be negative; hidden outputs cannot.
  at::manual_seed(5);
  at::Tensor x = at::randn({64, 20});
  auto first = make_mlp_slice(kSizes, {0, 1}, 42);
  auto last = make_mlp_slice(kSizes, {3, 1}, 42);
  EXPECT_GE(first->forward(x).min().item<double>(), 0.0);
  EXPECT_LT(last->forward(at::randn({64, 8})).min().item<double>(), 0.0);
}

TEST(ModelMlp, FlopsAndParameters) {
  auto s = make_mlp_slice(kSizes, {1, 2}, 42);
  EXPECT_DOUBLE_EQ(s->forward_flops_per_sample(), 2.0 * (16 * 12 + 12 * 8));
  EXPECT_EQ(s->parameter_count(), 16 * 12 + 12 + 12 * 8 + 8);
  EXPECT_EQ(s->in_features(), 16);
  EXPECT_EQ(s->out_features(), 8);
}

TEST(ModelMlp, BadSliceIsAnError) {
  try {
    make_mlp_slice(kSizes, {3, 2}, 42);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 5)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace arceus
