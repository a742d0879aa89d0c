// GPT slices: same weights and same function whatever the partition, causality, gradients
// through chained slices, dropout only in training, a tiny model memorising a tiny text, the
// cost model, generation.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <map>
#include <set>

#include "datasets/text.h"
#include "models/gpt.h"
#include "partition/partition.h"

namespace arceus {
namespace {

GptConfig small_config(double dropout = 0.0) {
  GptConfig c;
  c.vocab_size = 11;
  c.context = 8;
  c.n_emb = 16;
  c.n_heads = 4;
  c.n_blocks = 3;
  c.dropout = dropout;
  return c;
}

LayerRange whole(const GptConfig& c) { return {0, gpt_layer_count(c)}; }

std::map<std::string, at::Tensor> params_of(StageModel& m) {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, p] : m.named_parameters()) out[name] = p.detach().clone();
  return out;
}

// Every split of `layers` layers into 1..max_stages contiguous non-empty ranges.
std::vector<std::vector<LayerRange>> all_partitions(int64_t layers, int64_t max_stages) {
  std::vector<std::vector<LayerRange>> out;
  const int64_t cuts = layers - 1;  // a cut after layer i, i in [0, layers - 1)
  for (int64_t mask = 0; mask < (int64_t{1} << cuts); ++mask) {
    if (__builtin_popcountll(static_cast<unsigned long long>(mask)) + 1 > max_stages) continue;
    std::vector<LayerRange> plan;
    int64_t first = 0;
    for (int64_t i = 0; i < cuts; ++i) {
      if (mask & (int64_t{1} << i)) {
        plan.push_back({first, i + 1 - first});
        first = i + 1;
      }
    }
    plan.push_back({first, layers - first});
    out.push_back(plan);
  }
  return out;
}

std::string plan_string(const std::vector<LayerRange>& plan) {
  std::string s;
  for (const auto& r : plan) s += "[" + std::to_string(r.first) + "," + std::to_string(r.end()) + ")";
  return s;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

TEST(GptModel, PartitionsEnumerated) {
  // 5 layers into 1..4 stages: C(4,0) + C(4,1) + C(4,2) + C(4,3) = 15 plans.
  EXPECT_EQ(all_partitions(5, 4).size(), 15u);
}

TEST(GptModel, ParameterNamesShapesAndCount) {
  GptConfig c = small_config();
  c.n_blocks = 1;
  auto m = make_gpt_slice(c, whole(c), 42);
  std::vector<std::string> names;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (auto& [name, p] : m->named_parameters()) {
    names.push_back(name);
    shapes[name] = p.sizes().vec();
  }
  const std::vector<std::string> want{
      "embed.token.weight",      "embed.position.weight",    "blocks.0.ln1.weight",   "blocks.0.ln1.bias",
      "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.ln2.weight",
      "blocks.0.ln2.bias",       "blocks.0.mlp.fc.weight",   "blocks.0.mlp.fc.bias",  "blocks.0.mlp.proj.weight",
      "blocks.0.mlp.proj.bias",  "head.ln.weight",           "head.ln.bias",          "head.linear.weight",
      "head.linear.bias"};
  EXPECT_EQ(names, want);
  const int64_t V = 11, T = 8, C = 16;
  EXPECT_EQ(shapes["embed.token.weight"], (std::vector<int64_t>{V, C}));
  EXPECT_EQ(shapes["embed.position.weight"], (std::vector<int64_t>{T, C}));
  EXPECT_EQ(shapes["blocks.0.attn.qkv.weight"], (std::vector<int64_t>{3 * C, C}));
  EXPECT_EQ(shapes["blocks.0.mlp.fc.weight"], (std::vector<int64_t>{4 * C, C}));
  EXPECT_EQ(shapes["head.linear.weight"], (std::vector<int64_t>{V, C}));
  const int64_t block = 4 * C + 3 * C * C + C * C + C + C * 4 * C + 4 * C + 4 * C * C + C;
  EXPECT_EQ(m->parameter_count(), V * C + T * C + block + 2 * C + C * V + V);
  // The torch module sees the same names (optimizers and tooling agree with checkpoints).
  std::vector<std::string> module_names;
  for (const auto& item : m->module().named_parameters(true)) module_names.push_back(item.key());
  EXPECT_EQ(module_names, want);
  // The analytic list (for checking checkpoints on rank 0) agrees, for several blocks too.
  for (int64_t blocks : {1, 3}) {
    c.n_blocks = blocks;
    auto mb = make_gpt_slice(c, whole(c), 42);
    std::vector<std::pair<std::string, std::vector<int64_t>>> built;
    for (auto& [name, p] : mb->named_parameters()) built.emplace_back(name, p.sizes().vec());
    EXPECT_EQ(built, gpt_parameter_shapes(c)) << blocks << " blocks";
  }
  EXPECT_EQ(m->in_features(), T);   // token ids per sequence
  EXPECT_EQ(m->out_features(), V);  // logits per position
}

TEST(GptModel, SameWeightsWhateverThePartition) {
  const GptConfig c = small_config();
  auto w = make_gpt_slice(c, whole(c), 42);
  const auto reference = params_of(*w);
  ASSERT_EQ(reference.size(), 2u + 3u * 11u + 4u);
  const auto plans = all_partitions(gpt_layer_count(c), 4);
  for (const auto& plan : plans) {
    std::map<std::string, at::Tensor> pieces;
    for (const auto& r : plan) {
      auto slice = make_gpt_slice(c, r, 42);
      for (auto& [k, v] : params_of(*slice)) {
        const int64_t layer = gpt_layer_of(k, c);
        EXPECT_TRUE(layer >= r.first && layer < r.end()) << k << " on a slice of layers " << plan_string({r});
        EXPECT_FALSE(pieces.count(k)) << k << " on two slices of " << plan_string(plan);
        pieces[k] = v;
      }
    }
    ASSERT_EQ(pieces.size(), reference.size()) << plan_string(plan);
    for (const auto& [name, t] : reference) {
      ASSERT_TRUE(pieces.count(name)) << name;
      EXPECT_TRUE(at::equal(t, pieces[name])) << name << " differs with " << plan_string(plan);
    }
  }
}

TEST(GptModel, DifferentSeedDifferentWeights) {
  const GptConfig c = small_config();
  auto a = make_gpt_slice(c, whole(c), 1);
  auto b = make_gpt_slice(c, whole(c), 2);
  EXPECT_FALSE(at::equal(params_of(*a)["blocks.1.mlp.fc.weight"], params_of(*b)["blocks.1.mlp.fc.weight"]));
}

TEST(GptModel, ChainedSlicesEqualTheWholeModel) {
  const GptConfig c = small_config();
  at::manual_seed(3);
  auto w = make_gpt_slice(c, whole(c), 42);
  for (int64_t t : {c.context, int64_t{5}, int64_t{1}}) {
    const at::Tensor ids = at::randint(c.vocab_size, {3, t}, at::kLong);
    const at::Tensor want = w->forward(ids).detach();
    ASSERT_EQ(want.sizes(), (at::IntArrayRef{3, t, c.vocab_size}));
    for (const auto& plan : all_partitions(gpt_layer_count(c), 4)) {
      at::Tensor h = ids;
      for (const auto& r : plan) {
        auto slice = make_gpt_slice(c, r, 42);
        if (r.first > 0) {
          EXPECT_EQ(h.dim(), 3);
          EXPECT_EQ(slice->in_features(), h.size(2));
        }
        h = slice->forward(h).detach();
      }
      const double err = max_abs_diff(h, want);
      EXPECT_LT(err, 1e-5) << plan_string(plan) << " T=" << t << ": max abs error " << err;
    }
  }
}

TEST(GptModel, BoundaryWidths) {
  const GptConfig c = small_config();
  auto first = make_gpt_slice(c, {0, 2}, 42);
  auto middle = make_gpt_slice(c, {2, 1}, 42);
  auto last = make_gpt_slice(c, {3, 2}, 42);
  EXPECT_EQ(first->in_features(), c.context);
  EXPECT_EQ(first->out_features(), c.n_emb);
  EXPECT_EQ(middle->in_features(), c.n_emb);
  EXPECT_EQ(middle->out_features(), c.n_emb);
  EXPECT_EQ(last->in_features(), c.n_emb);
  EXPECT_EQ(last->out_features(), c.vocab_size);
  // Token ids may also arrive as int32 (as labels do on the wire).
  const at::Tensor ids = at::randint(c.vocab_size, {2, 6}, at::kLong);
  EXPECT_TRUE(at::equal(first->forward(ids), first->forward(ids.to(at::kInt))));
}

TEST(GptModel, Causal) {
  const GptConfig c = small_config();
  at::manual_seed(4);
  auto w = make_gpt_slice(c, whole(c), 42);
  const at::Tensor ids = at::randint(c.vocab_size, {2, c.context}, at::kLong);
  const at::Tensor logits = w->forward(ids).detach();
  for (int64_t t = 0; t + 1 < c.context; ++t) {
    at::Tensor changed = ids.clone();
    changed.narrow(1, t + 1, c.context - t - 1).copy_((ids.narrow(1, t + 1, c.context - t - 1) + 1 + t) % c.vocab_size);
    const at::Tensor out = w->forward(changed).detach();
    const double past = max_abs_diff(out.narrow(1, 0, t + 1), logits.narrow(1, 0, t + 1));
    EXPECT_LT(past, 1e-5) << "changing tokens after " << t << " changed logits at positions <= " << t;
    const double future = max_abs_diff(out.narrow(1, t + 1, 1), logits.narrow(1, t + 1, 1));
    EXPECT_GT(future, 1e-4) << "position " << t + 1 << " ignores its own token";
  }
}

TEST(GptModel, GradientsThroughChainedSlicesEqualTheWholeModel) {
  const GptConfig c = small_config();
  at::manual_seed(5);
  const at::Tensor ids = at::randint(c.vocab_size, {4, c.context}, at::kLong);
  const at::Tensor targets = at::randint(c.vocab_size, {4, c.context}, at::kLong);
  auto loss_of = [&](const at::Tensor& logits) {
    return at::cross_entropy_loss(logits.reshape({-1, c.vocab_size}), targets.reshape({-1}));
  };

  auto w = make_gpt_slice(c, whole(c), 42);
  loss_of(w->forward(ids)).backward();
  std::map<std::string, at::Tensor> want;
  for (auto& [name, p] : w->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    want[name] = p.grad().clone();
  }

  // Three stages as the pipeline runs them: each slice's input is a fresh leaf.
  std::vector<std::unique_ptr<StageModel>> slices;
  for (const LayerRange& r : {LayerRange{0, 2}, LayerRange{2, 2}, LayerRange{4, 1}}) slices.push_back(make_gpt_slice(c, r, 42));
  const at::Tensor y1 = slices[0]->forward(ids);
  const at::Tensor x2 = y1.detach().requires_grad_(true);
  const at::Tensor y2 = slices[1]->forward(x2);
  const at::Tensor x3 = y2.detach().requires_grad_(true);
  loss_of(slices[2]->forward(x3)).backward();
  y2.backward(x3.grad());
  y1.backward(x2.grad());

  size_t compared = 0;
  for (const auto& s : slices) {
    for (auto& [name, p] : s->named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      const double err = max_abs_diff(p.grad(), want.at(name));
      EXPECT_LT(err, 1e-5) << name << ": max abs gradient error " << err;
      ++compared;
    }
  }
  EXPECT_EQ(compared, want.size());
}

TEST(GptModel, DropoutOnlyInTrainingMode) {
  const GptConfig c = small_config(0.5);
  at::manual_seed(6);
  const at::Tensor ids = at::randint(c.vocab_size, {2, c.context}, at::kLong);
  auto m = make_gpt_slice(c, whole(c), 42);
  ASSERT_TRUE(m->module().is_training());
  EXPECT_FALSE(at::equal(m->forward(ids), m->forward(ids))) << "dropout is not active in training mode";
  m->module().eval();
  const at::Tensor a = m->forward(ids);
  EXPECT_TRUE(at::equal(a, m->forward(ids))) << "dropout active in eval mode";
  // In eval mode dropout is the identity: the same function as the dropout-0 model.
  auto no_dropout = make_gpt_slice(small_config(0.0), whole(c), 42);
  EXPECT_LT(max_abs_diff(a, no_dropout->forward(ids)), 1e-6);
  // Dropout 0 in training mode is deterministic too.
  ASSERT_TRUE(no_dropout->module().is_training());
  EXPECT_TRUE(at::equal(no_dropout->forward(ids), no_dropout->forward(ids)));
}

TEST(GptModel, DropoutRateScaleGradientAndReproducibility) {
  const at::Tensor x = at::ones({1000, 1000});
  at::manual_seed(5);
  const at::Tensor a = gpt_dropout(x, 0.1);
  const double dropped = a.eq(0).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(dropped, 6554.0 / 65536.0, 1.5e-3);  // 1e6 draws: sd 3e-4
  const float scale = 65536.0f / (65536.0f - 6554.0f);
  EXPECT_TRUE(at::equal(a.ne(0), a.eq(scale))) << "kept elements are scaled by 1 / (1 - q)";
  EXPECT_NEAR(a.mean().item<double>(), 1.0, 3e-3) << "unbiased";
  // No pattern along a row or a column (the lanes of one 64-bit word are 4 neighbours).
  EXPECT_NEAR(a.eq(0).to(at::kDouble).mean(0).std().item<double>(), 0.0095, 0.003);
  const at::Tensor b = gpt_dropout(x, 0.1);
  EXPECT_FALSE(at::equal(a, b)) << "each call draws a new mask";
  at::manual_seed(5);
  EXPECT_TRUE(at::equal(gpt_dropout(x, 0.1), a)) << "reproducible from torch's generator state";
  EXPECT_TRUE(at::equal(gpt_dropout(x, 0.0), x));
  // The gradient is the same mask times the scale.
  at::manual_seed(9);
  at::Tensor v = at::randn({64, 33}).requires_grad_(true);
  const at::Tensor y = gpt_dropout(v, 0.3);
  y.sum().backward();
  EXPECT_TRUE(at::allclose(v.grad(), y.detach() / v.detach(), 1e-5, 1e-6));
}

TEST(GptModel, MemorisesATinyRepeatedText) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "hello world! ";
  const CharVocab vocab = CharVocab::from_text(text);
  const std::vector<int64_t> ids = vocab.encode(text);
  const at::Tensor tokens = at::tensor(ids, at::kLong);
  GptConfig c;
  c.vocab_size = vocab.size();
  c.context = 16;
  c.n_emb = 32;
  c.n_heads = 4;
  c.n_blocks = 2;
  c.dropout = 0.0;
  auto m = make_gpt_slice(c, whole(c), 7);
  std::vector<at::Tensor> params;
  for (auto& [name, p] : m->named_parameters()) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(3e-3));
  at::Generator gen = at::detail::createCPUGenerator(11);
  double loss = 1e9;
  int64_t below = -1;  // first step with loss < 0.5
  for (int64_t step = 1; step <= 300; ++step) {
    const auto [x, y] = sample_windows(tokens, 16, c.context, gen);
    opt.zero_grad();
    at::Tensor l = at::cross_entropy_loss(m->forward(x).reshape({-1, c.vocab_size}), y.reshape({-1}));
    l.backward();
    opt.step();
    loss = l.item<double>();
    if (below < 0 && loss < 0.5) below = step;
  }
  std::printf("[ memorise ] loss < 0.5 first at AdamW step %lld; %.4f after 300\n", static_cast<long long>(below), loss);
  EXPECT_GT(below, 0) << "loss never fell below 0.5 in 300 steps";
  EXPECT_LT(loss, 0.5);
  // Greedy continuation of a prompt reproduces the text.
  EXPECT_EQ(gpt_generate(*m, vocab, "hello w", 13, 0.0, 1), "orld! hello w");
}

TEST(GptModel, FlopsPerSequence) {
  const GptConfig c = small_config();
  const double T = 8, C = 16, V = 11;
  const double block = 4 * T * C * C * 2 + 2 * T * T * C * 2 + 2 * T * C * 4 * C * 2;
  EXPECT_DOUBLE_EQ(gpt_layer_forward_flops(c, 1), block);
  EXPECT_DOUBLE_EQ(gpt_layer_forward_flops(c, 4), T * C * V * 2);
  EXPECT_DOUBLE_EQ(make_gpt_slice(c, {1, 2}, 42)->forward_flops_per_sample(), 2 * block);
  EXPECT_DOUBLE_EQ(make_gpt_slice(c, whole(c), 42)->forward_flops_per_sample(), T * C + 3 * block + T * C * V * 2);
}

TEST(GptModel, LayerCosts) {
  GptConfig c;  // the defaults: n_emb 128, 4 heads, 3 blocks, context 128
  c.vocab_size = 90;
  const auto small = gpt_layer_costs(c, 8);
  ASSERT_EQ(small.size(), 5u);
  EXPECT_LT(small[0], small[1]);  // embeddings are nearly free
  EXPECT_DOUBLE_EQ(small[1], small[2]);
  EXPECT_LT(small[4], small[1]);  // a 90-character head is lighter than a block
  const double tc = 128.0 * 128.0;
  EXPECT_DOUBLE_EQ(small[1], 3.0 * gpt_layer_forward_flops(c, 1) + 2.0 * tc * 100.0);  // 8 bits = 1 byte per value
  EXPECT_DOUBLE_EQ(small[4], 3.0 * tc * 90.0 * 2.0);                                    // sends nothing
  EXPECT_DOUBLE_EQ(gpt_layer_costs(c, 32, 0.0)[1], 3.0 * gpt_layer_forward_flops(c, 1));

  c.vocab_size = 50000;  // a word-piece vocabulary: the head dominates
  const auto big = gpt_layer_costs(c, 8);
  EXPECT_GT(big[4], 5.0 * big[1]);
  // The balanced partition then gives the head a stage of its own.
  const auto plan = balanced_partition(big, 3);
  EXPECT_EQ(plan.back(), (LayerRange{4, 1}));
  EXPECT_THROW(gpt_layer_costs(c, 12), PartitionError);
}

TEST(GptModel, LayerOf) {
  const GptConfig c = small_config();
  EXPECT_EQ(gpt_layer_of("embed.token.weight", c), 0);
  EXPECT_EQ(gpt_layer_of("embed.position.weight", c), 0);
  EXPECT_EQ(gpt_layer_of("blocks.0.ln1.weight", c), 1);
  EXPECT_EQ(gpt_layer_of("blocks.2.mlp.proj.bias", c), 3);
  EXPECT_EQ(gpt_layer_of("blocks.2.mlp.fc.weight:exp_avg", c), 3);
  EXPECT_EQ(gpt_layer_of("head.linear.weight", c), 4);
  for (const char* bad : {"layers.0.weight", "blocks.3.ln1.weight", "blocks.x.ln1.weight", "blocks..ln1", "blocks.01.ln1",
                          "blocks.1", "embedding.weight", "head"}) {
    EXPECT_THROW(gpt_layer_of(bad, c), std::invalid_argument) << bad;
  }
}

TEST(GptModel, ConfigAndInputErrors) {
  GptConfig c = small_config();
  c.n_emb = 18;  // not a multiple of 4 heads
  try {
    make_gpt_slice(c, {0, 1}, 42);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("n_emb = 18 is not divisible by n_heads = 4"), std::string::npos) << e.what();
  }
  c = small_config();
  try {
    make_gpt_slice(c, {3, 3}, 42);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 6)"), std::string::npos) << e.what();
  }
  auto first = make_gpt_slice(c, {0, 2}, 42);
  auto later = make_gpt_slice(c, {2, 3}, 42);
  EXPECT_THROW(first->forward(at::randn({2, 8})), std::invalid_argument);                          // floats, not ids
  EXPECT_THROW(first->forward(at::zeros({2, 9}, at::kLong)), std::invalid_argument);               // T > context
  EXPECT_THROW(first->forward(at::full({2, 4}, c.vocab_size, at::kLong)), std::invalid_argument);  // id >= vocab
  EXPECT_THROW(later->forward(at::zeros({2, 4}, at::kLong)), std::invalid_argument);               // ids, not floats
  EXPECT_THROW(later->forward(at::randn({2, 4, 15})), std::invalid_argument);                      // wrong width
}

TEST(GptModel, GenerateSamplesFromTheVocabulary) {
  const CharVocab vocab = CharVocab::from_text("abcdé日本\n xyz");
  GptConfig c = small_config();
  c.vocab_size = vocab.size();
  auto m = make_gpt_slice(c, whole(c), 42);
  const std::string a = gpt_generate(*m, vocab, "ab日", 40, 1.0, 7);
  std::vector<char32_t> cps;
  ASSERT_TRUE(utf8::decode(a, cps).ok());
  EXPECT_EQ(cps.size(), 40u);
  for (char32_t cp : cps) EXPECT_GE(vocab.id_of(cp), 0);
  EXPECT_EQ(a, gpt_generate(*m, vocab, "ab日", 40, 1.0, 7)) << "not deterministic for a seed";
  EXPECT_NE(a, gpt_generate(*m, vocab, "ab日", 40, 1.0, 8)) << "the seed is ignored";
  EXPECT_EQ(gpt_generate(*m, vocab, "ab", 20, 0.0, 1), gpt_generate(*m, vocab, "ab", 20, 0.0, 2));  // argmax
  EXPECT_EQ(gpt_generate(*m, vocab, "", 5, 1.0, 3).size() > 0, true);                                    // empty prompt
  EXPECT_EQ(gpt_generate(*m, vocab, "abcdabcdabcdabcd", 3, 1.0, 3).empty(), false);                     // > context
  EXPECT_EQ(gpt_generate(*m, vocab, "ab", 0, 1.0, 3), "");
  EXPECT_TRUE(m->module().is_training()) << "training mode not restored";

  EXPECT_THROW(gpt_generate(*m, vocab, "abQ", 5, 1.0, 3), std::invalid_argument);  // not in the vocabulary
  EXPECT_THROW(gpt_generate(*m, vocab, "ab", 5, -1.0, 3), std::invalid_argument);
  auto part = make_gpt_slice(c, {0, 2}, 42);
  EXPECT_THROW(gpt_generate(*part, vocab, "ab", 5, 1.0, 3), std::invalid_argument);
  EXPECT_THROW(gpt_generate(*m, CharVocab::from_text("ab"), "ab", 5, 1.0, 3), std::invalid_argument);
}

// Not run by default: gpt_tests --gtest_also_run_disabled_tests --gtest_filter='*Timing*'
TEST(GptModel, DISABLED_TimingDefaultModelOneThread) {
  at::set_num_threads(1);
  for (double dropout : {0.1, 0.0}) {
    GptConfig c;  // n_emb 128, 4 heads, 3 blocks, context 128
    c.vocab_size = 90;
    c.dropout = dropout;
    auto m = make_gpt_slice(c, whole(c), 42);
    const at::Tensor ids = at::randint(c.vocab_size, {128, c.context}, at::kLong);
    const at::Tensor targets = at::randint(c.vocab_size, {128, c.context}, at::kLong);
    auto step = [&](double* fwd_s) {
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor loss = at::cross_entropy_loss(m->forward(ids).reshape({-1, c.vocab_size}), targets.reshape({-1}));
      const auto t1 = std::chrono::steady_clock::now();
      loss.backward();
      const auto t2 = std::chrono::steady_clock::now();
      *fwd_s = std::chrono::duration<double>(t1 - t0).count();
      return std::chrono::duration<double>(t2 - t0).count();
    };
    double f = 0;
    step(&f);  // warm-up
    double total = 0, fwd = 0;
    const int reps = 3;
    const std::clock_t cpu0 = std::clock();
    for (int i = 0; i < reps; ++i) {
      total += step(&f);
      fwd += f;
    }
    const double cpu = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC / reps;
    const double flops = 3.0 * m->forward_flops_per_sample() * 128;
    std::printf("[ timing ] dropout %.1f, batch 128 x 128 tokens, 1 thread: forward %.3f s, forward+backward %.3f s "
                "(CPU %.3f s; %.1f GFLOP counted, %.1f GFLOP/s)\n",
                dropout, fwd / reps, total / reps, cpu, flops / 1e9, flops / (total / reps) / 1e9);
  }
}

}  // namespace
}  // namespace arceus
