// Character-level GPT slices (see models/gpt.h). Only torch/nn/module.h and ATen: the
// linear, layer-norm and embedding "modules" below are a parameter or two and one ATen call,
// which keeps this translation unit's compile time down and the initialisation explicit.
#include "models/gpt.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <mutex>

#include <cmath>
#include <limits>
#include <sstream>

#include "common/splitmix.h"
#include "datasets/text.h"

namespace arceus {

namespace {

constexpr double kInitStd = 0.02;
constexpr double kLayerNormEps = 1e-5;

}  // namespace

at::Tensor gpt_dropout(const at::Tensor& x, double p) {
  if (!(p > 0.0)) return x;
  uint64_t seed = 0;
  {
    at::Generator g = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(g.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(g)->random64();
  }
  const uint32_t q = static_cast<uint32_t>(std::lround(p * 65536.0));  // dropped: 16 bits < q
  const float scale = 65536.0f / static_cast<float>(65536 - q);
  at::Tensor mask = at::empty(x.sizes(), x.options().dtype(at::kFloat));
  float* m = mask.data_ptr<float>();
  const int64_t n = mask.numel(), words = (n + 3) / 4;
  at::parallel_for(0, words, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const uint64_t z = splitmix64(seed, static_cast<uint64_t>(w));
      const int64_t base = 4 * w, count = std::min<int64_t>(4, n - base);
      for (int64_t k = 0; k < count; ++k) m[base + k] = ((z >> (16 * k)) & 0xFFFF) >= q ? scale : 0.0f;
    }
  });
  return x * mask.to(x.scalar_type());
}

namespace {

at::Tensor maybe_dropout(const at::Tensor& x, double p, bool training) {
  return p > 0.0 && training ? gpt_dropout(x, p) : x;
}

// The split backward's record of this thread's forward pass (GptSlice::forward sets it).
thread_local WeightOps* t_ops = nullptr;
at::Tensor record(at::Tensor out, std::vector<at::Tensor> params) {
  if (t_ops) {
    std::vector<at::Tensor> defined;
    for (auto& p : params)
      if (p.defined()) defined.push_back(p);
    t_ops->ops.push_back({out, std::move(defined)});
  }
  return out;
}

// y = x W^T (+ b); W ~ N(0, 0.02), b = 0.
class Lin final : public torch::nn::Module {
 public:
  Lin(int64_t in, int64_t out, bool with_bias) {
    weight = register_parameter("weight", at::empty({out, in}).normal_(0.0, kInitStd));
    if (with_bias) bias = register_parameter("bias", at::zeros({out}));
  }
  at::Tensor operator()(const at::Tensor& x) const { return record(at::linear(x, weight, bias), {weight, bias}); }
  at::Tensor weight, bias;
};

class LayerNorm final : public torch::nn::Module {
 public:
  explicit LayerNorm(int64_t n) : n_(n) {
    weight = register_parameter("weight", at::ones({n}));
    bias = register_parameter("bias", at::zeros({n}));
  }
  at::Tensor operator()(const at::Tensor& x) const {
    return record(at::layer_norm(x, {n_}, weight, bias, kLayerNormEps), {weight, bias});
  }
  at::Tensor weight, bias;

 private:
  int64_t n_;
};

class Table final : public torch::nn::Module {  // an embedding table
 public:
  Table(int64_t rows, int64_t dim) { weight = register_parameter("weight", at::empty({rows, dim}).normal_(0.0, kInitStd)); }
  at::Tensor weight;
};

// Layer 0: "embed.token.weight" [vocab, C], "embed.position.weight" [context, C].
class Embed final : public torch::nn::Module {
 public:
  explicit Embed(const GptConfig& c)
      : token(register_module("token", std::make_shared<Table>(c.vocab_size, c.n_emb))),
        position(register_module("position", std::make_shared<Table>(c.context, c.n_emb))) {}
  at::Tensor operator()(const at::Tensor& ids) const {
    const int64_t t = ids.size(1);
    return record(at::embedding(token->weight, ids) + position->weight.narrow(0, 0, t),  // [B, T, C] + [T, C]
                  {token->weight, position->weight});
  }
  std::shared_ptr<Table> token, position;
};

// "blocks.<b>.attn.qkv.weight" [3C, C] (no bias, like the original's key/query/value),
// "blocks.<b>.attn.proj.{weight,bias}".
class Attention final : public torch::nn::Module {
 public:
  explicit Attention(const GptConfig& c)
      : qkv(register_module("qkv", std::make_shared<Lin>(c.n_emb, 3 * c.n_emb, false))),
        proj(register_module("proj", std::make_shared<Lin>(c.n_emb, c.n_emb, true))),
        heads_(c.n_heads),
        dropout_(c.dropout) {}

  // x [B, T, C]; mask [T, T] bool, true above the diagonal (the future).
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& mask) const {
    const int64_t b = x.size(0), t = x.size(1), c = x.size(2), hs = c / heads_;
    const auto parts = (*qkv)(x).split(c, 2);  // 3 x [B, T, C]
    auto heads = [&](const at::Tensor& y) { return y.view({b, t, heads_, hs}).transpose(1, 2); };  // [B, H, T, hs]
    const at::Tensor q = heads(parts[0]), k = heads(parts[1]), v = heads(parts[2]);
    at::Tensor att = at::matmul(q, k.transpose(-2, -1)).mul_(1.0 / std::sqrt(static_cast<double>(hs)));
    att.masked_fill_(mask, -std::numeric_limits<float>::infinity());
    att = maybe_dropout(at::softmax(att, -1), dropout_, is_training());
    const at::Tensor y = at::matmul(att, v).transpose(1, 2).reshape({b, t, c});
    return maybe_dropout((*proj)(y), dropout_, is_training());
  }
  std::shared_ptr<Lin> qkv, proj;

 private:
  int64_t heads_;
  double dropout_;
};

// "blocks.<b>.mlp.fc" C -> 4C, GELU, "blocks.<b>.mlp.proj" 4C -> C.
class Mlp final : public torch::nn::Module {
 public:
  explicit Mlp(const GptConfig& c)
      : fc(register_module("fc", std::make_shared<Lin>(c.n_emb, 4 * c.n_emb, true))),
        proj(register_module("proj", std::make_shared<Lin>(4 * c.n_emb, c.n_emb, true))),
        dropout_(c.dropout) {}
  at::Tensor operator()(const at::Tensor& x) const {
    return maybe_dropout((*proj)(at::gelu((*fc)(x))), dropout_, is_training());
  }
  std::shared_ptr<Lin> fc, proj;

 private:
  double dropout_;
};

class Block final : public torch::nn::Module {
 public:
  explicit Block(const GptConfig& c)
      : ln1(register_module("ln1", std::make_shared<LayerNorm>(c.n_emb))),
        attn(register_module("attn", std::make_shared<Attention>(c))),
        ln2(register_module("ln2", std::make_shared<LayerNorm>(c.n_emb))),
        mlp(register_module("mlp", std::make_shared<Mlp>(c))) {}
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& mask) const {
    const at::Tensor h = x + (*attn)((*ln1)(x), mask);
    return h + (*mlp)((*ln2)(h));
  }
  std::shared_ptr<LayerNorm> ln1;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<LayerNorm> ln2;
  std::shared_ptr<Mlp> mlp;
};

// "head.ln", "head.linear" C -> vocab.
class Head final : public torch::nn::Module {
 public:
  explicit Head(const GptConfig& c)
      : ln(register_module("ln", std::make_shared<LayerNorm>(c.n_emb))),
        linear(register_module("linear", std::make_shared<Lin>(c.n_emb, c.vocab_size, true))) {}
  at::Tensor operator()(const at::Tensor& x) const { return (*linear)((*ln)(x)); }
  std::shared_ptr<LayerNorm> ln;
  std::shared_ptr<Lin> linear;
};

std::string shape_of(const at::Tensor& x) {
  std::ostringstream os;
  os << x.sizes() << " " << x.scalar_type();
  return os.str();
}

class GptSlice final : public StageModel, public torch::nn::Module {
 public:
  GptSlice(const GptConfig& c, LayerRange range, uint64_t seed) : config_(c), range_(range) {
    for (int64_t i = range.first; i < range.end(); ++i) {
      // Per-layer seed: identical initial weights for layer i on any stage.
      at::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(i));
      if (i == 0) {
        embed_ = register_module("embed", std::make_shared<Embed>(c));
      } else if (i <= c.n_blocks) {
        if (!blocks_holder_) blocks_holder_ = register_module("blocks", std::make_shared<torch::nn::Module>("Blocks"));
        blocks_.push_back(blocks_holder_->register_module(std::to_string(i - 1), std::make_shared<Block>(c)));
      } else {
        head_ = register_module("head", std::make_shared<Head>(c));
      }
      flops_ += gpt_layer_forward_flops(c, i);
    }
    mask_ = at::ones({c.context, c.context}, at::kBool).triu(1);
  }

  at::Tensor forward(const at::Tensor& input, WeightOps* ops) override {
    at::Tensor x = input;
    check_input(x);
    const int64_t t = x.size(1);
    struct Recording {  // t_ops for this pass only, also on an exception
      explicit Recording(WeightOps* ops) { t_ops = ops; }
      ~Recording() { t_ops = nullptr; }
    } recording(ops);
    if (embed_) {
      if (x.scalar_type() != at::kLong) x = x.to(at::kLong);
      x = (*embed_)(x);
    }
    if (!blocks_.empty()) {
      const at::Tensor mask = mask_.narrow(0, 0, t).narrow(1, 0, t);
      for (const auto& block : blocks_) x = (*block)(x, mask);
    }
    if (head_) x = (*head_)(x);
    return x;
  }

  std::vector<std::pair<std::string, at::Tensor>> named_parameters() override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : torch::nn::Module::named_parameters(true)) out.emplace_back(item.key(), item.value());
    return out;
  }

  torch::nn::Module& module() override { return *this; }
  int64_t in_features() const override { return embed_ ? config_.context : config_.n_emb; }
  int64_t out_features() const override { return head_ ? config_.vocab_size : config_.n_emb; }
  double forward_flops_per_sample() const override { return flops_; }
  LayerRange layers() const override { return range_; }

  const GptConfig& config() const { return config_; }

 private:
  void check_input(const at::Tensor& x) const {
    auto fail = [&](const std::string& what) {
      throw std::invalid_argument("[model] GPT layers [" + std::to_string(range_.first) + ", " +
                                  std::to_string(range_.end()) + ") got " + (x.defined() ? shape_of(x) : "no tensor") +
                                  ": " + what);
    };
    if (!x.defined()) fail("expected a tensor");
    if (embed_) {
      if (x.dim() != 2 || (x.scalar_type() != at::kLong && x.scalar_type() != at::kInt)) {
        fail("the first slice expects int64 token ids [batch, T]");
      }
    } else if (x.dim() != 3 || x.size(2) != config_.n_emb || !at::isFloatingType(x.scalar_type())) {
      fail("expected float activations [batch, T, " + std::to_string(config_.n_emb) + "]");
    }
    if (x.size(1) < 1 || x.size(1) > config_.context) {
      fail("T must be in [1, context = " + std::to_string(config_.context) + "]");
    }
    if (embed_ && x.numel() > 0) {
      const int64_t lo = x.min().item<int64_t>(), hi = x.max().item<int64_t>();
      if (lo < 0 || hi >= config_.vocab_size) {
        fail("token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary [0, " +
             std::to_string(config_.vocab_size) + ")");
      }
    }
  }

  GptConfig config_;
  LayerRange range_;
  double flops_ = 0;
  at::Tensor mask_;
  std::shared_ptr<Embed> embed_;
  std::shared_ptr<torch::nn::Module> blocks_holder_;
  std::vector<std::shared_ptr<Block>> blocks_;
  std::shared_ptr<Head> head_;
};

// Sets eval mode for its lifetime, then restores the previous mode.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(torch::nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalModeGuard() { m_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  torch::nn::Module& m_;
  bool was_training_;
};

}  // namespace

void validate_gpt_config(const GptConfig& c) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("[model] GPT config: " + what); };
  if (c.vocab_size < 1) bad("vocab_size must be >= 1 (got " + std::to_string(c.vocab_size) + ")");
  if (c.context < 1) bad("context must be >= 1 (got " + std::to_string(c.context) + ")");
  if (c.n_emb < 1) bad("n_emb must be >= 1 (got " + std::to_string(c.n_emb) + ")");
  if (c.n_heads < 1) bad("n_heads must be >= 1 (got " + std::to_string(c.n_heads) + ")");
  if (c.n_emb % c.n_heads != 0) {
    bad("n_emb = " + std::to_string(c.n_emb) + " is not divisible by n_heads = " + std::to_string(c.n_heads) +
        " (each head gets n_emb / n_heads dimensions)");
  }
  if (c.n_blocks < 0) bad("n_blocks must be >= 0 (got " + std::to_string(c.n_blocks) + ")");
  if (!(c.dropout >= 0.0 && c.dropout < 1.0)) bad("dropout must be in [0, 1) (got " + std::to_string(c.dropout) + ")");
}

int64_t gpt_layer_count(const GptConfig& config) { return config.n_blocks + 2; }

int64_t gpt_layer_of(const std::string& name, const GptConfig& config) {
  auto bad = [&]() -> int64_t {
    throw std::invalid_argument("[model] '" + name + "' is not a GPT parameter name (expected embed.*, head.* or blocks.<b>.* with b in [0, " +
                                std::to_string(config.n_blocks) + "))");
  };
  auto starts = [&](const char* prefix) { return name.rfind(prefix, 0) == 0; };
  if (starts("embed.")) return 0;
  if (starts("head.")) return config.n_blocks + 1;
  if (!starts("blocks.")) return bad();
  const size_t a = 7, dot = name.find('.', a);
  if (dot == std::string::npos || dot == a || dot - a > 9) return bad();
  int64_t b = 0;
  for (size_t i = a; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return bad();
    b = b * 10 + (name[i] - '0');
  }
  if (b >= config.n_blocks || (name[a] == '0' && dot - a > 1)) return bad();
  return b + 1;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> gpt_parameter_shapes(const GptConfig& c) {
  validate_gpt_config(c);
  const int64_t C = c.n_emb;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out{{"embed.token.weight", {c.vocab_size, C}},
                                                                 {"embed.position.weight", {c.context, C}}};
  for (int64_t b = 0; b < c.n_blocks; ++b) {
    const std::string p = "blocks." + std::to_string(b) + ".";
    for (auto& item : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"ln1.weight", {C}},      {"ln1.bias", {C}},          {"attn.qkv.weight", {3 * C, C}},
             {"attn.proj.weight", {C, C}}, {"attn.proj.bias", {C}},  {"ln2.weight", {C}},
             {"ln2.bias", {C}},        {"mlp.fc.weight", {4 * C, C}}, {"mlp.fc.bias", {4 * C}},
             {"mlp.proj.weight", {C, 4 * C}}, {"mlp.proj.bias", {C}}}) {
      out.emplace_back(p + item.first, item.second);
    }
  }
  out.push_back({"head.ln.weight", {C}});
  out.push_back({"head.ln.bias", {C}});
  out.push_back({"head.linear.weight", {c.vocab_size, C}});
  out.push_back({"head.linear.bias", {c.vocab_size}});
  return out;
}

std::unique_ptr<StageModel> make_gpt_slice(const GptConfig& config, LayerRange range, uint64_t seed) {
  validate_gpt_config(config);
  const int64_t layers = gpt_layer_count(config);
  if (range.count < 1 || range.first < 0 || range.end() > layers) {
    std::ostringstream os;
    os << "[model] layers [" << range.first << ", " << range.end() << ") are not a slice of a GPT with " << layers
       << " layers (embeddings, " << config.n_blocks << " blocks, head)";
    throw std::invalid_argument(os.str());
  }
  std::lock_guard<std::mutex> lock(construction_mutex());
  return std::make_unique<GptSlice>(config, range, seed);
}

double gpt_layer_forward_flops(const GptConfig& c, int64_t layer) {
  const double t = static_cast<double>(c.context), e = static_cast<double>(c.n_emb);
  if (layer < 0 || layer > c.n_blocks + 1) {
    throw std::invalid_argument("[model] layer " + std::to_string(layer) + " is outside the GPT's [0, " +
                                std::to_string(c.n_blocks + 2) + ")");
  }
  if (layer == 0) return t * e;
  if (layer == c.n_blocks + 1) return t * e * static_cast<double>(c.vocab_size) * 2.0;
  const double attention = 4.0 * t * e * e * 2.0 + 2.0 * t * t * e * 2.0;
  const double mlp = 2.0 * t * e * 4.0 * e * 2.0;
  return attention + mlp;
}

std::vector<double> gpt_layer_costs(const GptConfig& config, int bits, double flops_per_byte) {
  if (bits != 32 && bits != 16 && bits != 8 && bits != 4) {
    throw PartitionError("[partition] bits must be one of 32, 16, 8, 4 (got " + std::to_string(bits) + ")");
  }
  if (!std::isfinite(flops_per_byte) || flops_per_byte < 0.0) {
    throw PartitionError("[partition] flops_per_byte is " + std::to_string(flops_per_byte) +
                         " (must be finite and >= 0)");
  }
  validate_gpt_config(config);
  const int64_t n = gpt_layer_count(config);
  const double tc = static_cast<double>(config.context) * static_cast<double>(config.n_emb);
  std::vector<double> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const bool head = i == n - 1;
    const double fwd = gpt_layer_forward_flops(config, i);
    // Embeddings: no input gradient, only the scatter-add of their weight gradients.
    const double flops = i == 0 ? fwd + 2.0 * tc : 3.0 * fwd;
    const double bytes = head ? 0.0 : 2.0 * tc * bits / 8.0;
    out.push_back(flops + bytes * flops_per_byte);
  }
  return out;
}

std::string gpt_generate(StageModel& whole_model, const CharVocab& vocab, const std::string& prompt, int64_t tokens,
                         double temperature, uint64_t seed) {
  auto* gpt = dynamic_cast<GptSlice*>(&whole_model);
  if (!gpt) throw std::invalid_argument("[generate] the model is not a GPT");
  const GptConfig& c = gpt->config();
  if (!(whole_model.layers() == LayerRange{0, gpt_layer_count(c)})) {
    throw std::invalid_argument("[generate] the model holds layers [" + std::to_string(whole_model.layers().first) +
                                ", " + std::to_string(whole_model.layers().end()) + ") but generation needs all " +
                                std::to_string(gpt_layer_count(c)) + " (embeddings to head)");
  }
  if (vocab.size() != c.vocab_size) {
    throw std::invalid_argument("[generate] the vocabulary has " + std::to_string(vocab.size()) +
                                " characters but the model's vocab_size is " + std::to_string(c.vocab_size));
  }
  if (tokens < 0) throw std::invalid_argument("[generate] tokens must be >= 0 (got " + std::to_string(tokens) + ")");
  if (!(temperature >= 0.0) || !std::isfinite(temperature)) {
    throw std::invalid_argument("[generate] temperature must be >= 0 (got " + std::to_string(temperature) + ")");
  }

  std::vector<int64_t> ids = vocab.encode(prompt);
  if (ids.empty()) ids.push_back(0);
  std::vector<int64_t> generated;
  generated.reserve(static_cast<size_t>(tokens));
  at::Generator gen = at::detail::createCPUGenerator(seed);
  EvalModeGuard eval(whole_model.module());
  at::NoGradGuard no_grad;
  for (int64_t step = 0; step < tokens; ++step) {
    const int64_t t = std::min<int64_t>(static_cast<int64_t>(ids.size()), c.context);
    const at::Tensor x = at::from_blob(ids.data() + (ids.size() - static_cast<size_t>(t)), {1, t}, at::kLong);
    const at::Tensor logits = whole_model.forward(x).select(0, 0).select(0, t - 1);  // [V]
    int64_t next;
    if (temperature == 0.0) {
      next = logits.argmax().item<int64_t>();
    } else {
      const at::Tensor probs = at::softmax(logits.to(at::kDouble) / temperature, -1);
      next = at::multinomial(probs, 1, false, gen).item<int64_t>();
    }
    ids.push_back(next);
    generated.push_back(next);
  }
  return vocab.decode(generated);
}

}  // namespace arceus
