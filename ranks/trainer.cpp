// The training runtime. Rank 0 sets the job up (config, data, partition), broadcasts it, then
// orchestrates: it feeds micro-batches of inputs to the first stage and labels to the last,
// collects per-step metrics and per-epoch statistics, and prints progress. Ranks 1..S each
// run one pipeline stage. With one process, rank 0 runs the single stage itself with the
// same model code and no messages: the reference run.
#include "ranks/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/splitmix.h"
#include "datasets/dataset.h"
#include "datasets/idx.h"
#include "datasets/text.h"
#include "models/gpt.h"
#include "models/stage_model.h"
#include "partition/partition.h"
#include "ranks/codec.h"
#include "ranks/schedule.h"
#include "ranks/wire.h"
#include "storage/storage.h"

namespace arceus {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// ---------------------------------------------------------------------------------------
// Job set-up, decided on rank 0 and broadcast.

struct Job {
  Config config;
  std::string config_yaml;
  std::vector<LayerRange> plan;  // one range per stage
  int64_t stages = 1;
  int64_t features = 0;  // MLP: input width; GPT: context
  int64_t classes = 0;   // MLP: labels; GPT: vocabulary size
  std::string dataset_description;
  bool resume = false;  // stages first receive their state from rank 0
  // Set by finish_job from the config and the data:
  bool gpt = false;
  GptConfig gpt_config;  // when gpt
  int64_t seq = 1;       // targets (and activation rows) per sample: 1, or the GPT's context
};

bool is_gpt(const Config& c) { return c.model.type == "transformer"; }

GptConfig gpt_config_of(const Config& c, int64_t vocab) {
  GptConfig g;
  g.vocab_size = vocab;
  g.context = c.model.context;
  g.n_emb = c.model.n_emb;
  g.n_heads = c.model.n_heads;
  g.n_blocks = c.model.n_blocks;
  g.dropout = c.model.dropout;
  return g;
}

void finish_job(Job& job) {
  job.gpt = is_gpt(job.config);
  if (job.gpt) {
    job.gpt_config = gpt_config_of(job.config, job.classes);
    job.seq = job.config.model.context;
  }
}

int64_t model_layers(const Config& c) {
  return is_gpt(c) ? c.model.n_blocks + 2 : static_cast<int64_t>(c.model.layer_sizes.size()) - 1;
}

// Partition costs per layer. A GPT's head cost depends on the vocabulary: before the data is
// read (vocab 0) a 256-character vocabulary stands in.
std::vector<double> layer_costs(const Config& c, int64_t vocab) {
  if (!is_gpt(c)) return mlp_layer_costs(c.model.layer_sizes, c.communication.quantization_bits);
  return gpt_layer_costs(gpt_config_of(c, vocab > 0 ? vocab : 256), c.communication.quantization_bits);
}

// Every parameter of the whole model with its shape, under its global name.
std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const Config& c, int64_t vocab) {
  if (is_gpt(c)) return gpt_parameter_shapes(gpt_config_of(c, vocab));
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (size_t i = 0; i + 1 < c.model.layer_sizes.size(); ++i) {
    const int64_t in = c.model.layer_sizes[i], out = c.model.layer_sizes[i + 1];
    shapes.push_back({"layers." + std::to_string(i) + ".weight", {out, in}});
    shapes.push_back({"layers." + std::to_string(i) + ".bias", {out}});
  }
  return shapes;
}

// The layer a parameter or optimizer-state name ("<parameter>[:<state>]") belongs to.
int64_t layer_of(const Job& job, const std::string& name) {
  if (job.gpt) return gpt_layer_of(name, job.gpt_config);
  const size_t a = name.find('.'), b = name.find('.', a + 1);  // "layers.<i>.<what>"
  return std::stoll(name.substr(a + 1, b - a - 1));
}

std::unique_ptr<StageModel> make_slice(const Job& job, LayerRange range) {
  if (job.gpt) return make_gpt_slice(job.gpt_config, range, job.config.training.seed);
  return make_mlp_slice(job.config.model.layer_sizes, range, job.config.training.seed);
}

// Parameters held by each stage of the plan.
std::vector<int64_t> stage_parameter_counts(const Job& job) {
  std::vector<int64_t> counts(job.plan.size(), 0);
  for (const auto& [name, shape] : parameter_shapes(job.config, job.classes)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const int64_t layer = layer_of(job, name);
    for (size_t k = 0; k < job.plan.size(); ++k)
      if (layer >= job.plan[k].first && layer < job.plan[k].end()) counts[k] += n;
  }
  return counts;
}

// Width (per row) of the activations leaving stage k of the plan.
int64_t boundary_width(const Job& job, int64_t k) {
  if (job.gpt) return job.config.model.n_emb;
  return job.config.model.layer_sizes[size_t(job.plan[size_t(k)].end())];
}

}  // namespace

std::vector<LayerRange> make_plan(const Config& c, int world, int64_t vocab) {
  const int64_t layers = model_layers(c);
  const int64_t owners = world == 1 ? 1 : world - 1;  // rank 0 orchestrates when world > 1
  std::vector<LayerRange> plan;
  if (world == 1) return {LayerRange{0, layers}};  // the reference run: one stage, whatever the config says
  try {
  if (!c.partition.layers.empty()) {
    plan = explicit_partition(c.partition.layers, layers);
  } else {
    int64_t stages = c.partition.stages > 0 ? c.partition.stages : owners;
    if (stages > owners) {
      throw PartitionError("[partition] partition.stages = " + std::to_string(stages) + " needs " +
                           std::to_string(world == 1 ? stages : stages + 1) + " ranks (rank 0 orchestrates), but the world has " +
                           std::to_string(world));
    }
    if (c.partition.method == "balanced") {
      plan = balanced_partition(layer_costs(c, vocab), stages);
    } else {
      plan = uniform_partition(layers, stages);
    }
  }
  } catch (const PartitionError& e) {
    if (world > 1 && c.partition.stages == 0 && c.partition.layers.empty() && world - 1 > layers) {
      throw PartitionError(std::string(e.what()) + "; mpirun -np " + std::to_string(world) +
                           " gives rank 0 (orchestrator) + " + std::to_string(world - 1) +
                           " stage ranks: use -np " + std::to_string(layers + 1) +
                           " or fewer, or set partition.stages to leave ranks idle");
    }
    throw;
  }
  if (static_cast<int64_t>(plan.size()) > owners) {
    throw PartitionError("[partition] the explicit placement has " + std::to_string(plan.size()) +
                         " stages but the world has " + std::to_string(world) + " ranks (at most " +
                         std::to_string(owners) + " stages)");
  }
  return plan;
}

namespace {

json plan_to_json(const std::vector<LayerRange>& plan) {
  json j = json::array();
  for (const auto& r : plan) j.push_back({r.first, r.count});
  return j;
}

// ---------------------------------------------------------------------------------------
// Statistics of one rank over one epoch; sent to rank 0 as a Stats message.

struct RankStats {
  int32_t rank = 0;
  int32_t stage = -1;  // -1: orchestrator
  double forward = 0, backward = 0, optimizer = 0, codec = 0, wait = 0, idle = 0;
  double wall = 0, cpu = 0;
  double train_wall = 0, train_busy = 0;  // inside training steps only (for the bubble)
  double flops = 0;                       // forward + backward
  double forward_flops = 0, backward_flops = 0;
  uint64_t bytes_raw = 0, bytes_wire = 0, messages = 0;
};
static_assert(std::is_trivially_copyable_v<RankStats>);

json stats_to_json(const RankStats& s, const std::string& host) {
  const double busy = s.forward + s.backward + s.optimizer + s.codec;
  return {{"rank", s.rank},
          {"stage", s.stage},
          {"host", host},
          {"forward_s", s.forward},
          {"backward_s", s.backward},
          {"optimizer_s", s.optimizer},
          {"codec_s", s.codec},
          {"comm_wait_s", s.wait},
          {"idle_s", s.idle},
          {"wall_s", s.wall},
          {"cpu_s", s.cpu},
          {"busy_fraction", s.wall > 0 ? busy / s.wall : 0.0},
          {"gflops", s.wall > 0 ? s.flops / s.wall / 1e9 : 0.0},
          {"flops", s.flops},
          {"forward_tflops", s.forward > 0 ? s.forward_flops / s.forward / 1e12 : 0.0},
          {"backward_tflops", s.backward > 0 ? s.backward_flops / s.backward / 1e12 : 0.0},
          {"bytes_raw", s.bytes_raw},
          {"bytes_wire", s.bytes_wire},
          {"messages", s.messages}};
}

// ---------------------------------------------------------------------------------------
// Messages: header + payload in one buffer.

std::vector<uint8_t> pack(const WireHeader& h, const void* payload, size_t bytes) {
  std::vector<uint8_t> buf(sizeof(WireHeader) + bytes);
  std::memcpy(buf.data(), &h, sizeof(WireHeader));
  if (bytes) std::memcpy(buf.data() + sizeof(WireHeader), payload, bytes);
  return buf;
}

WireHeader make_header(MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows, int64_t cols,
                       uint64_t payload) {
  WireHeader h;
  h.kind = static_cast<uint16_t>(kind);
  h.step = step;
  h.micro_batch = static_cast<uint16_t>(mb);
  h.bits = static_cast<uint8_t>(bits);
  h.rows = rows;
  h.cols = cols;
  h.payload_bytes = payload;
  return h;
}

std::string describe_peer(int rank) {
  return rank == 0 ? std::string("rank 0 (orchestrator)")
                   : "rank " + std::to_string(rank) + " (stage " + std::to_string(rank) + ")";
}

// Sends and receives tensors through the codec, counting time and bytes.
class Wire {
 public:
  Wire(Comm& comm, RankStats& stats) : comm_(comm), stats_(stats) {}

  Request send_tensor(const at::Tensor& t, int dest, MsgKind kind, uint32_t step, int64_t mb, int bits,
                      bool stochastic, uint64_t seed) {
    const auto t0 = Clock::now();
    at::Tensor x = t.detach().to(at::kFloat).contiguous();
    const int64_t rows = x.size(0), cols = x.numel() / std::max<int64_t>(1, x.size(0));
    const size_t payload = encoded_size(rows, cols, bits);
    std::vector<uint8_t> buf(sizeof(WireHeader) + payload);
    const WireHeader h = make_header(kind, step, mb, bits, rows, cols, payload);
    std::memcpy(buf.data(), &h, sizeof h);
    encode(x.data_ptr<float>(), rows, cols, bits, stochastic, seed, buf.data() + sizeof(WireHeader));
    stats_.codec += seconds_since(t0);
    count(sizeof(WireHeader) + static_cast<uint64_t>(rows * cols) * 4, buf.size());
    return comm_.isend(std::move(buf), dest, make_tag(kind, mb));
  }

  Request post_tensor(int source, MsgKind kind, int64_t mb, int bits, int64_t rows, int64_t cols) {
    return comm_.irecv(sizeof(WireHeader) + encoded_size(rows, cols, bits), source, make_tag(kind, mb));
  }

  at::Tensor finish_tensor(Request& r, MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows,
                           int64_t cols) {
    comm_.wait(r);
    const auto t0 = Clock::now();
    WireHeader got;
    std::memcpy(&got, r.buffer().data(), std::min(sizeof got, r.received_bytes()));
    const WireHeader want = make_header(kind, step, mb, bits, rows, cols, encoded_size(rows, cols, bits));
    check_header(got, want, r.received_bytes(), describe_peer(r.peer()));
    at::Tensor out = at::empty({rows, cols}, at::kFloat);
    decode(r.buffer().data() + sizeof(WireHeader), rows, cols, bits, out.data_ptr<float>());
    stats_.codec += seconds_since(t0);
    return out;
  }

  // State messages (checkpoint and sample gathers) are not counted: the byte counters
  // measure the training traffic and its compression.
  template <typename T>
  Request send_raw(const T* items, size_t n, int dest, MsgKind kind, uint32_t step, int64_t mb) {
    const WireHeader h = make_header(kind, step, mb, kBitsRaw, static_cast<int64_t>(n), 1, n * sizeof(T));
    std::vector<uint8_t> buf = pack(h, items, n * sizeof(T));
    if (kind != MsgKind::State) count(buf.size(), buf.size());
    return comm_.isend(std::move(buf), dest, make_tag(kind, mb));
  }

  template <typename T>
  Request post_raw(int source, MsgKind kind, int64_t mb, size_t n) {
    return comm_.irecv(sizeof(WireHeader) + n * sizeof(T), source, make_tag(kind, mb));
  }

  template <typename T>
  std::vector<T> finish_raw(Request& r, MsgKind kind, uint32_t step, int64_t mb, size_t n) {
    comm_.wait(r);
    WireHeader got;
    std::memcpy(&got, r.buffer().data(), std::min(sizeof got, r.received_bytes()));
    const WireHeader want = make_header(kind, step, mb, kBitsRaw, static_cast<int64_t>(n), 1, n * sizeof(T));
    check_header(got, want, r.received_bytes(), describe_peer(r.peer()));
    std::vector<T> out(n);
    std::memcpy(out.data(), r.buffer().data() + sizeof(WireHeader), n * sizeof(T));
    return out;
  }

  Comm& comm() { return comm_; }

 private:
  void count(uint64_t raw, uint64_t wire) {
    stats_.bytes_raw += raw;
    stats_.bytes_wire += wire;
    stats_.messages += 1;
  }
  Comm& comm_;
  RankStats& stats_;
};


// ---------------------------------------------------------------------------------------
// Checkpoint state of one stage, as it travels between a stage and rank 0.

struct StageState {
  uint64_t global_step = 0;
  std::vector<NamedArray> parameters;
  std::vector<NamedArray> optimizer;
  std::vector<NamedBytes> rng;
};

class ByteWriter {
 public:
  template <typename T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  void put_bytes(const void* data, size_t n) {
    put<uint64_t>(n);
    const auto* p = static_cast<const uint8_t*>(data);
    out.insert(out.end(), p, p + n);
  }
  void put_string(const std::string& str) { put_bytes(str.data(), str.size()); }
  std::vector<uint8_t> out;
};

class ByteReader {
 public:
  explicit ByteReader(const std::vector<uint8_t>& in) : in_(in) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::vector<uint8_t> get_bytes() {
    const uint64_t n = get<uint64_t>();
    need(n);
    std::vector<uint8_t> v(in_.begin() + static_cast<std::ptrdiff_t>(pos_), in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return v;
  }
  std::string get_string() {
    auto b = get_bytes();
    return std::string(b.begin(), b.end());
  }

 private:
  void need(uint64_t n) const {
    if (pos_ + n > in_.size()) {
      throw WireError("[wire] state message truncated: need " + std::to_string(n) + " bytes at offset " +
                      std::to_string(pos_) + " of " + std::to_string(in_.size()));
    }
  }
  const std::vector<uint8_t>& in_;
  size_t pos_ = 0;
};

void put_arrays(ByteWriter& w, const std::vector<NamedArray>& arrays) {
  w.put<uint64_t>(arrays.size());
  for (const auto& a : arrays) {
    w.put_string(a.name);
    w.put<uint64_t>(a.shape.size());
    for (int64_t d : a.shape) w.put<int64_t>(d);
    w.put_bytes(a.data.data(), a.data.size() * sizeof(float));
  }
}

std::vector<NamedArray> get_arrays(ByteReader& r) {
  std::vector<NamedArray> arrays(r.get<uint64_t>());
  for (auto& a : arrays) {
    a.name = r.get_string();
    a.shape.resize(r.get<uint64_t>());
    for (auto& d : a.shape) d = r.get<int64_t>();
    const auto bytes = r.get_bytes();
    a.data.resize(bytes.size() / sizeof(float));
    std::memcpy(a.data.data(), bytes.data(), a.data.size() * sizeof(float));
  }
  return arrays;
}

std::vector<uint8_t> pack_state(const StageState& st) {
  ByteWriter w;
  w.put<uint64_t>(st.global_step);
  put_arrays(w, st.parameters);
  put_arrays(w, st.optimizer);
  w.put<uint64_t>(st.rng.size());
  for (const auto& b : st.rng) {
    w.put_string(b.name);
    w.put_bytes(b.bytes.data(), b.bytes.size());
  }
  return std::move(w.out);
}

StageState unpack_state(const std::vector<uint8_t>& bytes) {
  ByteReader r(bytes);
  StageState st;
  st.global_step = r.get<uint64_t>();
  st.parameters = get_arrays(r);
  st.optimizer = get_arrays(r);
  st.rng.resize(r.get<uint64_t>());
  for (auto& b : st.rng) {
    b.name = r.get_string();
    b.bytes = r.get_bytes();
  }
  return st;
}

NamedArray to_named(const std::string& name, const at::Tensor& t) {
  NamedArray a;
  a.name = name;
  at::Tensor c = t.detach().to(at::kFloat).contiguous();
  a.shape.assign(c.sizes().begin(), c.sizes().end());
  a.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return a;
}

at::Tensor from_named(const NamedArray& a) {
  return at::from_blob(const_cast<float*>(a.data.data()), a.shape, at::kFloat).clone();
}

// The whole GPT (every layer) with `parameters` loaded by global name, for sampling. Building
// a model reseeds torch's global generator (per-layer initialisation); its state is restored,
// so a training's dropout stream is not disturbed.
std::unique_ptr<StageModel> whole_gpt(const GptConfig& config, uint64_t seed, const std::vector<NamedArray>& parameters) {
  at::Generator global = at::detail::getDefaultCPUGenerator();
  const at::Tensor rng_state = global.get_state();
  auto model = make_gpt_slice(config, {0, gpt_layer_count(config)}, seed);
  global.set_state(rng_state);
  std::map<std::string, at::Tensor> by_name;
  for (auto& [name, p] : model->named_parameters()) by_name[name] = p;
  at::NoGradGuard no_grad;
  for (const auto& a : parameters) by_name.at(a.name).copy_(from_named(a));
  return model;
}

// Variable-size bytes as two messages: the size (State/0), then the bytes (State/1).
void send_blob(Wire& wire, Comm& comm, const std::vector<uint8_t>& bytes, int dest, uint32_t step) {
  const uint64_t n = bytes.size();
  Request a = wire.send_raw(&n, 1, dest, MsgKind::State, step, 0);
  Request b = wire.send_raw(bytes.data(), bytes.size(), dest, MsgKind::State, step, 1);
  comm.wait(a);
  comm.wait(b);
}

std::vector<uint8_t> receive_blob(Wire& wire, Comm& comm, int source, uint32_t step) {
  Request a = wire.post_raw<uint64_t>(source, MsgKind::State, 0, 1);
  const uint64_t n = wire.finish_raw<uint64_t>(a, MsgKind::State, step, 0, 1)[0];
  Request b = wire.post_raw<uint8_t>(source, MsgKind::State, 1, n);
  return wire.finish_raw<uint8_t>(b, MsgKind::State, step, 1, n);
}

// A transformer checkpoint's vocabulary: its code points in decimal, space-separated.
std::string vocab_attribute(const CharVocab& vocab) {
  std::string s;
  for (char32_t c : vocab.chars) s += (s.empty() ? "" : " ") + std::to_string(static_cast<uint32_t>(c));
  return s;
}

CharVocab vocab_from_attribute(const std::string& text, const std::string& path);

// A transformer checkpoint must come from a text with the same characters (token ids are
// indices into the sorted vocabulary).
void check_vocab_matches(const CheckpointData& ck, const CharVocab& vocab, const std::string& path) {
  auto it = ck.attributes.find("vocab_code_points");
  if (it == ck.attributes.end()) {
    throw StorageError("[checkpoint] '" + path + "' has no vocab_code_points attribute: not a transformer checkpoint");
  }
  const CharVocab saved = vocab_from_attribute(it->second, path);
  if (saved.chars != vocab.chars) {
    std::string diff;
    for (char32_t c : vocab.chars)
      if (saved.id_of(c) < 0) { diff = "the text has " + utf8::describe(c) + ", the checkpoint's vocabulary does not"; break; }
    if (diff.empty())
      for (char32_t c : saved.chars)
        if (vocab.id_of(c) < 0) { diff = "the checkpoint's vocabulary has " + utf8::describe(c) + ", the text does not"; break; }
    throw StorageError("[checkpoint] '" + path + "' was trained on a different vocabulary (" +
                       std::to_string(saved.size()) + " characters vs the text's " + std::to_string(vocab.size()) +
                       "; " + diff + ")");
  }
}

CharVocab vocab_from_attribute(const std::string& text, const std::string& path) {
  std::vector<char32_t> cps;
  std::istringstream in(text);
  for (std::string item; in >> item;) {
    try {
      cps.push_back(static_cast<char32_t>(std::stoul(item)));
    } catch (const std::exception&) {
      throw StorageError("[checkpoint] '" + path + "': attribute vocab_code_points holds '" + item +
                         "', expected decimal code points");
    }
  }
  return CharVocab::from_code_points(std::move(cps));
}

// ---------------------------------------------------------------------------------------
// One pipeline stage.

struct LocalBatch {  // the single-process case: inputs and labels handed over in memory
  std::vector<at::Tensor> inputs;
  std::vector<at::Tensor> labels;
};

class Stage {
 public:
  Stage(const Job& job, int64_t stage, int world, Comm& comm, RankStats& stats)
      : job_(job), stage_(stage), world_(world), comm_(comm), stats_(stats), wire_(comm, stats) {
    const auto& c = job.config;
    model_ = make_slice(job, job.plan[static_cast<size_t>(stage)]);
    std::vector<at::Tensor> params;
    for (auto& [name, p] : model_->named_parameters()) params.push_back(p);
    if (c.training.optimizer == "adamw") {
      optimizer_ = std::make_unique<torch::optim::AdamW>(
          params, torch::optim::AdamWOptions(c.training.learning_rate).weight_decay(c.training.weight_decay));
    } else {
      optimizer_ = std::make_unique<torch::optim::SGD>(
          params, torch::optim::SGDOptions(c.training.learning_rate)
                      .momentum(c.training.momentum)
                      .weight_decay(c.training.weight_decay));
    }
    first_ = stage == 0;
    last_ = stage == job.stages - 1;
    schedule_ = parse_schedule(c.training.schedule);
    bits_ = c.communication.quantization_bits;
  }

  bool first() const { return first_; }
  bool last() const { return last_; }

  // Parameters, optimizer state and RNG state under global names (partition-independent).
  StageState export_state(uint64_t global_step) {
    StageState st;
    st.global_step = global_step;
    auto& state = optimizer_->state();
    for (auto& [name, p] : model_->named_parameters()) {
      st.parameters.push_back(to_named(name, p));
      auto it = state.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it == state.end()) continue;
      if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(it->second.get())) {
        if (sgd->momentum_buffer().defined()) st.optimizer.push_back(to_named(name + ":momentum_buffer", sgd->momentum_buffer()));
      } else if (auto* adam = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get())) {
        st.optimizer.push_back(to_named(name + ":exp_avg", adam->exp_avg()));
        st.optimizer.push_back(to_named(name + ":exp_avg_sq", adam->exp_avg_sq()));
        NamedArray step;
        step.name = name + ":step";
        step.data = {static_cast<float>(adam->step())};
        st.optimizer.push_back(step);
      }
    }
    at::Tensor rng = at::detail::getDefaultCPUGenerator().get_state();
    NamedBytes b;
    b.name = "stage" + std::to_string(stage_);
    b.bytes.assign(rng.data_ptr<uint8_t>(), rng.data_ptr<uint8_t>() + rng.numel());
    st.rng.push_back(std::move(b));
    return st;
  }

  void import_state(const StageState& st) {
    std::map<std::string, const NamedArray*> params, opt;
    for (const auto& a : st.parameters) params[a.name] = &a;
    for (const auto& a : st.optimizer) opt[a.name] = &a;
    auto& state = optimizer_->state();
    at::NoGradGuard no_grad;
    for (auto& [name, p] : model_->named_parameters()) {
      auto it = params.find(name);
      if (it == params.end()) throw StorageError("[checkpoint] no tensor '" + name + "' for stage " + std::to_string(stage_ + 1));
      at::Tensor t = from_named(*it->second);
      if (!t.sizes().equals(p.sizes())) {
        throw StorageError("[checkpoint] tensor '" + name + "' has shape " + c10::str(t.sizes()) + ", the model expects " + c10::str(p.sizes()));
      }
      p.copy_(t);
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());
      if (job_.config.training.optimizer == "adamw") {
        auto a = opt.find(name + ":exp_avg"), b = opt.find(name + ":exp_avg_sq"), c = opt.find(name + ":step");
        if (a != opt.end() && b != opt.end() && c != opt.end()) {
          auto ps = std::make_unique<torch::optim::AdamWParamState>();
          ps->exp_avg(from_named(*a->second));
          ps->exp_avg_sq(from_named(*b->second));
          ps->step(static_cast<int64_t>(c->second->data.at(0)));
          state[key] = std::move(ps);
        }
      } else {
        auto m = opt.find(name + ":momentum_buffer");
        if (m != opt.end()) {
          auto ps = std::make_unique<torch::optim::SGDParamState>();
          ps->momentum_buffer(from_named(*m->second));
          state[key] = std::move(ps);
        }
      }
    }
    for (const auto& b : st.rng) {
      if (b.name != "stage" + std::to_string(stage_)) continue;
      at::Tensor t = at::empty({static_cast<int64_t>(b.bytes.size())}, at::kByte);
      std::memcpy(t.data_ptr<uint8_t>(), b.bytes.data(), b.bytes.size());
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      gen.set_state(t);
    }
  }
  int rank_of(int64_t stage) const { return world_ == 1 ? 0 : static_cast<int>(stage + 1); }

  // Runs one batch (training or evaluation). Returns the metrics on the last stage (and
  // sends them to rank 0 unless `local`), zeros elsewhere.
  //
  // Shapes per micro-batch of `rows` samples, with seq = 1 (MLP) or the context T (GPT):
  // inputs to the first stage are codec floats [rows, in] (MLP) or raw int32 token ids
  // [rows * T] (GPT); activations and gradients travel as codec [rows * seq, width] (a row per
  // token: one scale per token over n_emb) and are reshaped on arrival; labels are raw int32
  // [rows * seq].
  MetricsPayload run(const ControlPayload& control, uint32_t step, bool train, const LocalBatch* local) {
    const auto t_step = Clock::now();
    const double wait0 = comm_.wait_seconds();
    const double busy0 = stats_.forward + stats_.backward + stats_.optimizer + stats_.codec;
    const std::vector<int64_t> sizes = micro_batch_sizes(control.rows, control.micro_batches);
    const int64_t m = static_cast<int64_t>(sizes.size());
    const int64_t in_f = model_->in_features(), out_f = model_->out_features();
    const int64_t seq = job_.seq;
    const bool token_input = job_.gpt && first_;
    const int prev = first_ ? 0 : rank_of(stage_ - 1);
    const int next = last_ ? 0 : rank_of(stage_ + 1);

    // Post every receive of this batch up front: no order of arrival can deadlock, and
    // transfers overlap with compute.
    std::vector<Request> in_req(m), label_req(m), grad_req(m);
    for (int64_t i = 0; i < m; ++i) {
      const int64_t rows = sizes[static_cast<size_t>(i)];
      if (!local) {
        if (first_) {
          in_req[i] = token_input ? wire_.post_raw<int32_t>(0, MsgKind::Input, i, static_cast<size_t>(rows * in_f))
                                  : wire_.post_tensor(0, MsgKind::Input, i, bits_, rows, in_f);
        }
        if (last_) label_req[i] = wire_.post_raw<int32_t>(0, MsgKind::Labels, i, static_cast<size_t>(rows * seq));
      }
      if (!first_) in_req[i] = wire_.post_tensor(prev, MsgKind::Activation, i, bits_, rows * seq, in_f);
      if (train && !last_) grad_req[i] = wire_.post_tensor(next, MsgKind::Gradient, i, bits_, rows * seq, out_f);
    }

    std::vector<at::Tensor> xs(m), ys(m), losses(m);
    std::vector<Request> sends;
    MetricsPayload metrics;
    const double fwd_flops = model_->forward_flops_per_sample();
    model_->module().train(train);  // dropout and the like: on in training only
    if (train) {
      optimizer_->zero_grad();
      for (auto& group : optimizer_->param_groups()) group.options().set_lr(control.learning_rate);
    }

    std::vector<PipeOp> ops;
    if (train) {
      ops = make_schedule(schedule_, job_.stages, stage_, m);
    } else {
      for (int64_t i = 0; i < m; ++i) ops.push_back({PipeOp::Forward, i});
    }

    for (const PipeOp& op : ops) {
      const int64_t i = op.micro_batch;
      const int64_t rows = sizes[static_cast<size_t>(i)];
      if (op.kind == PipeOp::Forward) {
        at::Tensor x;
        if (first_ && local) {
          x = local->inputs[static_cast<size_t>(i)];
        } else if (token_input) {
          auto v = wire_.finish_raw<int32_t>(in_req[i], MsgKind::Input, step, i, static_cast<size_t>(rows * in_f));
          x = at::from_blob(v.data(), {rows, in_f}, at::kInt).to(at::kLong);
        } else {
          x = wire_.finish_tensor(in_req[i], first_ ? MsgKind::Input : MsgKind::Activation, step, i, bits_, rows * seq, in_f);
          if (job_.gpt) x = x.view({rows, seq, in_f});
        }
        const auto t0 = Clock::now();
        at::Tensor y;
        {
          at::AutoGradMode grad_mode(train);
          if (train && !first_) x.requires_grad_(true);
          y = model_->forward(x);
          if (last_) {
            at::Tensor labels;
            if (local) {
              labels = local->labels[static_cast<size_t>(i)].reshape({-1});
            } else {
              auto v = wire_.finish_raw<int32_t>(label_req[i], MsgKind::Labels, step, i, static_cast<size_t>(rows * seq));
              labels = at::from_blob(v.data(), {rows * seq}, at::kInt).to(at::kLong);
            }
            const at::Tensor logits = y.reshape({-1, y.size(-1)});
            at::Tensor loss_sum = at::cross_entropy_loss(logits, labels, {}, at::Reduction::Sum);
            metrics.loss_sum += loss_sum.item<double>();
            metrics.correct += logits.argmax(1).eq(labels).sum().item<int64_t>();
            metrics.count += rows * seq;
            // Scaled so that the gradients summed over micro-batches equal the full batch's mean.
            if (train) losses[i] = loss_sum / static_cast<double>(control.rows * seq);
          }
        }
        stats_.forward += seconds_since(t0);
        stats_.flops += fwd_flops * static_cast<double>(rows);
        stats_.forward_flops += fwd_flops * static_cast<double>(rows);
        if (!last_) {
          sends.push_back(wire_.send_tensor(y.reshape({-1, y.size(-1)}), next, MsgKind::Activation, step, i, bits_, false, 0));
        }
        if (train) {
          xs[i] = x;
          ys[i] = y;
        }
      } else {
        at::Tensor g;
        if (!last_) {
          g = wire_.finish_tensor(grad_req[i], MsgKind::Gradient, step, i, bits_, rows * seq, out_f).view(ys[i].sizes());
        }
        const auto t0 = Clock::now();
        if (last_) {
          losses[i].backward();
        } else {
          ys[i].backward(g);
        }
        stats_.backward += seconds_since(t0);
        stats_.flops += 2.0 * fwd_flops * static_cast<double>(rows);
        stats_.backward_flops += 2.0 * fwd_flops * static_cast<double>(rows);
        if (!first_) {
          const uint64_t seed = splitmix64(splitmix64(job_.config.training.seed, step), static_cast<uint64_t>(stage_ * kMaxMicroBatches + i));
          const at::Tensor dx = xs[i].grad();
          sends.push_back(wire_.send_tensor(dx.reshape({-1, dx.size(-1)}), prev, MsgKind::Gradient, step, i, bits_,
                                            job_.config.communication.stochastic_rounding, seed));
        }
        xs[i] = at::Tensor();
        ys[i] = at::Tensor();
        losses[i] = at::Tensor();
      }
      // Free finished send buffers early; this also drives MPI progress.
      for (auto& s : sends) comm_.test(s);
    }

    if (train) {
      if (job_.config.training.grad_clip > 0) clip_gradients(step, local != nullptr);
      const auto t0 = Clock::now();
      optimizer_->step();
      stats_.optimizer += seconds_since(t0);
    }
    if (last_ && !local) {
      sends.push_back(wire_.send_raw(&metrics, 1, 0, MsgKind::Metrics, step, 0));
    }
    comm_.wait_all(sends);
    stats_.wait += comm_.wait_seconds() - wait0;
    if (train) {
      stats_.train_wall += seconds_since(t_step);
      stats_.train_busy += stats_.forward + stats_.backward + stats_.optimizer + stats_.codec - busy0;
    }
    return metrics;
  }

  // Global-norm clipping across stages: this stage's sum of squared gradients goes to rank 0,
  // which answers with the norm over every stage; all stages then scale by the same factor
  // (torch's clip_grad_norm_: max_norm / (norm + 1e-6) when that is below 1).
  void clip_gradients(uint32_t step, bool local) {
    const auto t0 = Clock::now();
    double sq = 0;
    for (auto& [name, p] : model_->named_parameters()) {
      if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
    }
    stats_.optimizer += seconds_since(t0);
    double norm = std::sqrt(sq);
    if (!local) {
      Request r = wire_.post_raw<double>(0, MsgKind::Norm, 0, 1);
      Request s = wire_.send_raw(&sq, 1, 0, MsgKind::Norm, step, 0);
      norm = wire_.finish_raw<double>(r, MsgKind::Norm, step, 0, 1)[0];
      comm_.wait(s);
    }
    last_grad_norm_ = norm;
    const double coef = job_.config.training.grad_clip / (norm + 1e-6);
    if (coef < 1.0) {
      at::NoGradGuard no_grad;
      for (auto& [name, p] : model_->named_parameters())
        if (p.grad().defined()) p.grad().mul_(coef);
    }
  }
  double last_grad_norm() const { return last_grad_norm_; }

  StageModel& model() { return *model_; }

 private:
  const Job& job_;
  int64_t stage_;
  int world_;
  Comm& comm_;
  RankStats& stats_;
  Wire wire_;
  std::unique_ptr<StageModel> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  Schedule schedule_ = Schedule::Sequential;
  int bits_ = 32;
  bool first_ = false, last_ = false;
  double last_grad_norm_ = 0;
};

// Stage ranks: obey control messages from rank 0 until Stop.
void stage_loop(const Job& job, int64_t stage, Comm& comm) {
  RankStats stats;
  stats.rank = comm.rank();
  stats.stage = static_cast<int32_t>(stage);
  Stage st(job, stage, comm.size(), comm, stats);
  Wire wire(comm, stats);
  uint32_t step = 0;     // train/eval batches: the step field of data messages
  uint32_t control = 0;  // control messages received: the step field of control and stats
  if (job.resume) {
    const StageState state = unpack_state(receive_blob(wire, comm, 0, 0));
    st.import_state(state);
    step = static_cast<uint32_t>(state.global_step);
  }
  auto epoch_start = Clock::now();
  double cpu0 = cpu_seconds();
  while (true) {
    const double w0 = comm.wait_seconds();
    Request r = wire.post_raw<ControlPayload>(0, MsgKind::Control, 0, 1);
    ControlPayload c = wire.finish_raw<ControlPayload>(r, MsgKind::Control, control, 0, 1)[0];
    const uint32_t this_control = control++;
    stats.idle += comm.wait_seconds() - w0;
    const auto cmd = static_cast<Command>(c.command);
    if (cmd == Command::Stop) return;
    if (cmd == Command::Train || cmd == Command::Eval) {
      st.run(c, step, cmd == Command::Train, nullptr);
      ++step;
    } else if (cmd == Command::Checkpoint) {
      send_blob(wire, comm, pack_state(st.export_state(step)), 0, this_control);
    } else if (cmd == Command::EpochEnd) {
      stats.wall = seconds_since(epoch_start);
      stats.cpu = cpu_seconds() - cpu0;
      // Control waits were counted as idle above; the data waits alone stay in `wait`.
      RankStats copy = stats;
      Request s = wire.send_raw(&copy, 1, 0, MsgKind::Stats, this_control, 0);
      comm.wait(s);
      stats = RankStats{};
      stats.rank = comm.rank();
      stats.stage = static_cast<int32_t>(stage);
      epoch_start = Clock::now();
      cpu0 = cpu_seconds();
    } else {
      throw WireError("[wire] unknown control command " + std::to_string(c.command) + " from rank 0");
    }
  }
}

// Ranks beyond the stages: wait (yielding) for Stop.
void idle_loop(Comm& comm) {
  RankStats stats;
  Wire wire(comm, stats);
  uint32_t step = 0;
  while (true) {
    Request r = wire.post_raw<ControlPayload>(0, MsgKind::Control, 0, 1);
    ControlPayload c = wire.finish_raw<ControlPayload>(r, MsgKind::Control, step, 0, 1)[0];
    if (static_cast<Command>(c.command) == Command::Stop) return;
    ++step;
  }
}

// ---------------------------------------------------------------------------------------
// Rank 0.

std::string human_bytes(double b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024.0));
  return buf;
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

class Progress {
 public:
  // mode: "bar" (one line rewritten with \r), "lines" (a line every fifth of an epoch), "none".
  // unit: what the rate counts ("samples", "tokens").
  Progress(bool quiet, const std::string& mode, std::string unit)
      : quiet_(quiet || mode == "none"), tty_(mode == "bar"), unit_(std::move(unit)) {}
  void update(int64_t epoch, int64_t epochs, int64_t k, int64_t n, double sps, double loss, double acc) {
    if (quiet_) return;
    const bool end = k == n;
    if (tty_) {
      if (!end && seconds_since(last_) < 0.2) return;
      last_ = Clock::now();
      std::printf("\r  epoch %lld/%lld  batch %lld/%lld  %9.0f %s/s  loss %.4f  acc %6.2f%%   ",
                  (long long)epoch, (long long)epochs, (long long)k, (long long)n, sps, unit_.c_str(), loss, 100 * acc);
      if (end) std::printf("\n");
      std::fflush(stdout);
    } else {
      const int64_t every = std::max<int64_t>(1, n / 5);
      if (k % every != 0 && !end) return;
      std::printf("  epoch %lld/%lld  batch %lld/%lld  %9.0f %s/s  loss %.4f  acc %6.2f%%\n",
                  (long long)epoch, (long long)epochs, (long long)k, (long long)n, sps, unit_.c_str(), loss, 100 * acc);
      std::fflush(stdout);
    }
  }

 private:
  bool quiet_, tty_;
  std::string unit_;
  Clock::time_point last_ = Clock::now() - std::chrono::seconds(1);
};

class Orchestrator {
 public:
  Orchestrator(Job& job, DataSplits& data, Comm& comm, const TrainOptions& options,
               std::vector<std::string> hosts, JobObserver* observer)
      : job_(job), data_(data), comm_(comm), options_(options), hosts_(std::move(hosts)),
        wire_(comm, stats_), progress_(options.quiet, options.progress, job.gpt ? "tokens" : "samples"), observer_(observer) {
    stats_.rank = 0;
    stats_.stage = comm.size() == 1 ? 0 : -1;
    if (comm.size() == 1) local_stage_ = std::make_unique<Stage>(job, 0, 1, comm, stats_);
    summary_ = initial_summary();
  }

  // Returns "completed" or "stopped".
  // Returns "completed" or "stopped".
  std::string run() {
    const auto& t = job_.config.training;
    const auto& o = job_.config.output;
    {
      const int64_t n = job_.gpt ? text_windows_per_epoch(*data_.text, job_.config.dataset.windows_per_epoch, job_.seq)
                                 : data_.train.size();
      const int64_t b = job_.config.dataset.batch_size;
      steps_per_epoch_ = (n + b - 1) / b;
      if (t.max_steps > 0) steps_per_epoch_ = std::min(steps_per_epoch_, t.max_steps);
    }
    if (resume_) restore(*resume_);
    if (o.metrics) {
      metrics_ = std::make_unique<MetricsFile>((std::filesystem::path(o.dir) / "metrics.h5").string(), resume_.has_value());
      // The interrupted run may have written rows past its checkpoint (later steps, a stopped
      // epoch's epoch and rank rows): this run writes them again.
      if (resume_) {
        const int64_t dropped = metrics_->truncate_after(resume_->epoch, resume_->step);
        if (dropped > 0) {
          log(format("  metrics.h5: dropped %lld row(s) written after the checkpoint (epoch %lld, step %lld)",
                     (long long)dropped, (long long)resume_->epoch, (long long)resume_->step));
        }
      }
    }
    write_summary("running");
    const auto run_start = Clock::now();
    for (int64_t epoch = resume_epoch_; epoch <= t.epochs && !stopped_; ++epoch) {
      epoch_ = epoch;
      run_epoch(epoch);
      if (stopped_) {
        checkpoint(epoch - 1, epoch_steps_done_);
      } else if (epoch == t.epochs || (o.checkpoint_every > 0 && epoch % o.checkpoint_every == 0)) {
        checkpoint(epoch, 0);
      }
    }
    send_control(Command::Stop, 0, 0, all_worker_ranks());
    drain_sends();
    if (metrics_) metrics_->flush();
    summary_["seconds"] = seconds_since(run_start);
    const std::string state = stopped_ ? "stopped" : "completed";
    write_summary(state);
    return state;
  }

  void set_resume(CheckpointData data) { resume_ = std::move(data); }
  void import_local(const StageState& st) { local_stage_->import_state(st); }

  // Validation loss and accuracy of the current weights (`arceus eval`).
  std::pair<double, double> evaluate() {
    double loss = 0;
    int64_t correct = 0, count = 0;
    const int64_t vb = job_.config.dataset.val_batch_size, vn = data_.val.size();
    pump(data_.val, at::arange(vn, at::kLong), vb, 0, (vn + vb - 1) / vb, false, [&](int64_t, const MetricsPayload& m) {
      loss += m.loss_sum;
      correct += m.correct;
      count += m.count;
    });
    send_control(Command::Stop, 0, 0, all_worker_ranks());
    drain_sends();
    return {count ? loss / count : 0.0, count ? double(correct) / count : 0.0};
  }

  // Gathers every stage's state and writes <output.dir>/checkpoint.h5 (atomically).
  void checkpoint(int64_t epochs_done, int64_t step_in_epoch) {
    const auto t0 = Clock::now();
    CheckpointData ck;
    ck.config_yaml = job_.config_yaml;
    ck.epoch = epochs_done;
    ck.step = step_in_epoch;
    ck.global_step = step_;
    ck.attributes = {{"optimizer", job_.config.training.optimizer},
                     {"world_size", std::to_string(comm_.size())},
                     {"stages", std::to_string(job_.stages)},
                     {"schedule", job_.config.training.schedule}};
    if (job_.gpt) ck.attributes["vocab_code_points"] = vocab_attribute(data_.text->vocab);
    for (StageState& st : gather_states()) {
      for (auto& a : st.parameters) ck.parameters.push_back(std::move(a));
      for (auto& a : st.optimizer) ck.optimizer.push_back(std::move(a));
      for (auto& b : st.rng) ck.rng.push_back(std::move(b));
    }
    const std::string path = (std::filesystem::path(job_.config.output.dir) / "checkpoint.h5").string();
    write_checkpoint(path, ck);
    if (metrics_) metrics_->flush();  // the metrics rows up to the checkpoint survive a crash too
    summary_["checkpoint"] = {{"path", path}, {"epoch", epochs_done}, {"step", step_in_epoch}};
    log(format("  checkpoint: %s (epoch %lld, step %lld, %.2f s)", path.c_str(), (long long)epochs_done,
               (long long)step_in_epoch, seconds_since(t0)));
  }

 private:
  // Every stage's state (parameters, optimizer, RNG), in stage order.
  std::vector<StageState> gather_states() {
    std::vector<StageState> states;
    if (local_stage_) {
      states.push_back(local_stage_->export_state(step_));
    } else {
      send_control(Command::Checkpoint, 0, 0, stage_ranks());
      for (int r : stage_ranks()) states.push_back(unpack_state(receive_blob(wire_, comm_, r, control_step_[r] - 1)));
    }
    return states;
  }

  // A transformer's sample after an epoch: the whole model assembled on rank 0 from the
  // stages' parameters, then `sample_tokens` characters from an empty prompt. Printed, written
  // to <output.dir>/samples.txt (appended) and returned for summary.json.
  std::string sample_text(int64_t epoch) {
    const auto& o = job_.config.output;
    const auto t0 = Clock::now();
    std::vector<NamedArray> parameters;
    for (StageState& st : gather_states())
      for (auto& a : st.parameters) parameters.push_back(std::move(a));
    auto whole = whole_gpt(job_.gpt_config, job_.config.training.seed, parameters);
    const std::string text = gpt_generate(*whole, data_.text->vocab, "", o.sample_tokens, o.sample_temperature,
                                          splitmix64(job_.config.training.seed, static_cast<uint64_t>(epoch)));
    std::ofstream out(std::filesystem::path(o.dir) / "samples.txt", std::ios::app);
    out << "=== epoch " << epoch << " ===\n" << text << "\n";
    log(format("  sample after epoch %lld (%lld characters, temperature %g, %.1f s):", (long long)epoch,
               (long long)o.sample_tokens, o.sample_temperature, seconds_since(t0)));
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) log("  | " + line);
    return text;
  }

  // Sends every stage the tensors of its layers (by global name) and sets the counters.
  void restore(const CheckpointData& ck) {
    auto in_range = [&](const std::string& name, const LayerRange& r) {
      const int64_t l = layer_of(job_, name);
      return l >= r.first && l < r.end();
    };
    for (int64_t k = 0; k < job_.stages; ++k) {
      const LayerRange r = job_.plan[static_cast<size_t>(k)];
      StageState st;
      st.global_step = ck.global_step;
      for (const auto& a : ck.parameters)
        if (in_range(a.name, r)) st.parameters.push_back(a);
      for (const auto& a : ck.optimizer)
        if (in_range(a.name, r)) st.optimizer.push_back(a);
      for (const auto& b : ck.rng)
        if (b.name == "stage" + std::to_string(k)) st.rng.push_back(b);
      if (local_stage_) {
        local_stage_->import_state(st);
      } else {
        send_blob(wire_, comm_, pack_state(st), static_cast<int>(k + 1), 0);
      }
    }
    step_ = static_cast<uint32_t>(ck.global_step);
    resume_epoch_ = ck.epoch + 1;
    resume_step_ = ck.step;
    log(format("  resumed from epoch %lld, step %lld (global step %llu)", (long long)ck.epoch, (long long)ck.step,
               (unsigned long long)ck.global_step));
    // Keep the finished epochs of the interrupted run's summary.
    std::ifstream in(std::filesystem::path(job_.config.output.dir) / "summary.json");
    if (in) {
      try {
        json old = json::parse(in);
        for (const auto& e : old.value("epochs", json::array()))
          if (e.value("epoch", int64_t{0}) <= ck.epoch) summary_["epochs"].push_back(e);
      } catch (const std::exception&) {
      }
    }
  }

 public:
  const json& summary() const { return summary_; }

  void fail(const std::string& error) {
    summary_["error"] = error;
    write_summary("failed");
  }

 private:
  std::vector<int> stage_ranks() const {
    std::vector<int> r;
    if (comm_.size() > 1)
      for (int64_t s = 0; s < job_.stages; ++s) r.push_back(static_cast<int>(s + 1));
    return r;
  }
  std::vector<int> all_worker_ranks() const {
    std::vector<int> r;
    for (int i = 1; i < comm_.size(); ++i) r.push_back(i);
    return r;
  }

  void send_control(Command cmd, int64_t rows, int64_t m, const std::vector<int>& ranks, double lr = 0) {
    ControlPayload c;
    c.command = static_cast<uint32_t>(cmd);
    c.epoch = static_cast<uint32_t>(epoch_);
    c.rows = rows;
    c.micro_batches = m;
    c.learning_rate = lr;
    for (int r : ranks) {
      uint32_t& s = control_step_[r];
      pending_sends_.push_back(wire_.send_raw(&c, 1, r, MsgKind::Control, s, 0));
      ++s;
    }
    reap_sends();
  }

  void drain_sends() {
    while (!pending_sends_.empty()) {
      comm_.wait(pending_sends_.front());
      pending_sends_.pop_front();
    }
  }

  void log(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    if (observer_) observer_->on_log(line);
  }

  void reap_sends() {
    while (!pending_sends_.empty() && comm_.test(pending_sends_.front())) pending_sends_.pop_front();
  }

  // Issues one batch to the pipeline. Returns the request for its metrics (multi-rank).
  struct InFlight {
    Request metrics;
    MetricsPayload local;
    int64_t rows = 0;
    bool train = false;
    double lr = 0;  // training: this step's learning rate
  };

  // `lr`: the learning rate of this training step.
  InFlight issue(const at::Tensor& inputs, const at::Tensor& labels, bool train, double lr) {
    const int64_t rows = inputs.size(0);
    const std::vector<int64_t> sizes = micro_batch_sizes(rows, job_.config.training.micro_batches);
    const int64_t m = static_cast<int64_t>(sizes.size());
    InFlight f;
    f.rows = rows;
    f.train = train;
    f.lr = lr;
    if (local_stage_) {
      LocalBatch lb;
      int64_t off = 0;
      for (int64_t s : sizes) {
        lb.inputs.push_back(inputs.narrow(0, off, s));
        lb.labels.push_back(labels.narrow(0, off, s));
        off += s;
      }
      ControlPayload c;
      c.rows = rows;
      c.micro_batches = m;
      c.learning_rate = lr;
      f.local = local_stage_->run(c, step_, train, &lb);
      if (train && job_.config.training.grad_clip > 0) grad_norms_.push_back(local_stage_->last_grad_norm());
      ++step_;
      return f;
    }
    send_control(train ? Command::Train : Command::Eval, rows, m, stage_ranks(), lr);
    const int first = 1, last = static_cast<int>(job_.stages);
    const int bits = job_.config.communication.quantization_bits;
    int64_t off = 0;
    for (int64_t i = 0; i < m; ++i) {
      const int64_t s = sizes[static_cast<size_t>(i)];
      if (job_.gpt) {  // token ids, exact: raw int32
        at::Tensor x = inputs.narrow(0, off, s).to(at::kInt).contiguous();
        pending_sends_.push_back(wire_.send_raw(x.data_ptr<int32_t>(), static_cast<size_t>(x.numel()), first, MsgKind::Input, step_, i));
      } else {
        pending_sends_.push_back(wire_.send_tensor(inputs.narrow(0, off, s), first, MsgKind::Input, step_, i, bits, false, 0));
      }
      at::Tensor l = labels.narrow(0, off, s).to(at::kInt).contiguous();
      pending_sends_.push_back(wire_.send_raw(l.data_ptr<int32_t>(), static_cast<size_t>(l.numel()), last, MsgKind::Labels, step_, i));
      off += s;
    }
    f.metrics = wire_.post_raw<MetricsPayload>(last, MsgKind::Metrics, 0, 1);
    metrics_step_.push_back(step_);
    ++step_;
    reap_sends();
    return f;
  }

  MetricsPayload complete(InFlight& f) {
    if (local_stage_) return f.local;
    const uint32_t step = metrics_step_.front();
    metrics_step_.pop_front();
    if (f.train && job_.config.training.grad_clip > 0) exchange_norms(step);
    MetricsPayload m = wire_.finish_raw<MetricsPayload>(f.metrics, MsgKind::Metrics, step, 0, 1)[0];
    reap_sends();
    if (m.count != f.rows * job_.seq) {
      throw WireError("[wire] metrics of step " + std::to_string(step) + " count " + std::to_string(m.count) +
                      " targets, expected " + std::to_string(f.rows * job_.seq));
    }
    return m;
  }

  // Gradient clipping: the stages' squared norms in, the global norm back out.
  void exchange_norms(uint32_t step) {
    double sq = 0;
    for (int r : stage_ranks()) {
      Request req = wire_.post_raw<double>(r, MsgKind::Norm, 0, 1);
      sq += wire_.finish_raw<double>(req, MsgKind::Norm, step, 0, 1)[0];
    }
    const double norm = std::sqrt(sq);
    for (int r : stage_ranks()) pending_sends_.push_back(wire_.send_raw(&norm, 1, r, MsgKind::Norm, step, 0));
    grad_norms_.push_back(norm);
  }

  // Runs batches of `set` through the pipeline, keeping one batch in flight ahead so the
  // first stage never waits for rank 0. Calls on_done(k, metrics) per finished batch.
  template <typename OnDone>
  void pump(const TensorDataset& set, const at::Tensor& order, int64_t batch, int64_t first, int64_t steps,
            bool train, OnDone on_done) {
    std::deque<InFlight> flight;
    const int64_t n = set.size();
    int64_t done = first;
    auto finish_one = [&] {
      MetricsPayload m = complete(flight.front());
      if (flight.front().train) last_lr_ = flight.front().lr;  // the finished step's rate
      flight.pop_front();
      on_done(++done, m);
    };
    const int64_t every = job_.config.output.checkpoint_every_steps;
    for (int64_t k = first; k < steps; ++k) {
      if (train && observer_ && observer_->stop_requested()) {
        stopped_ = true;
        break;
      }
      if (train && every > 0 && k > first && k % every == 0) {
        while (!flight.empty()) finish_one();  // a checkpoint needs an empty pipeline
        checkpoint(epoch_ - 1, k);
      }
      const int64_t start = k * batch, len = std::min(batch, n - start);
      at::Tensor idx = order.narrow(0, start, len);
      double lr = 0;
      if (train) {
        const auto& t = job_.config.training;
        lr = learning_rate_at(t.lr_schedule, t.learning_rate, t.min_learning_rate, t.warmup_steps,
                              (epoch_ - 1) * steps_per_epoch_ + k, t.epochs * steps_per_epoch_);
      }
      flight.push_back(issue(set.inputs.index_select(0, idx), set.labels.index_select(0, idx), train, lr));
      if (flight.size() > 1) finish_one();
    }
    while (!flight.empty()) finish_one();
    if (train) epoch_steps_done_ = done;
  }

  // Bytes (float32-equivalent, on the wire) of one training step's messages on all ranks,
  // from the message shapes: inputs, labels, activations and gradients at every stage
  // boundary, control and metrics. Zero with one process (no messages).
  std::pair<double, double> step_message_bytes(int64_t rows) const {
    if (local_stage_) return {0.0, 0.0};
    const auto& c = job_.config;
    const int bits = c.communication.quantization_bits;
    const double h = sizeof(WireHeader);
    double raw = 0, wire = 0;
    const int64_t seq = job_.seq;
    for (int64_t n : micro_batch_sizes(rows, c.training.micro_batches)) {
      const int64_t in = job_.features;
      if (job_.gpt) {  // raw int32 token ids
        raw += h + 4.0 * n * in;
        wire += h + 4.0 * n * in;
      } else {
        raw += h + 4.0 * n * in;
        wire += h + double(encoded_size(n, in, bits));
      }
      raw += h + 4.0 * n * seq;  // labels
      wire += h + 4.0 * n * seq;
      for (int64_t k = 0; k + 1 < job_.stages; ++k) {
        const int64_t w = boundary_width(job_, k);
        raw += 2 * (h + 4.0 * n * seq * w);
        wire += 2 * (h + double(encoded_size(n * seq, w, bits)));
      }
    }
    double fixed = job_.stages * (h + sizeof(ControlPayload)) + h + sizeof(MetricsPayload);
    if (c.training.grad_clip > 0) fixed += 2.0 * job_.stages * (h + sizeof(double));
    return {raw + fixed, wire + fixed};
  }

  void run_epoch(int64_t epoch) {
    const auto& c = job_.config;
    const auto epoch_start = Clock::now();
    const double cpu0 = cpu_seconds();
    const int64_t b = c.dataset.batch_size;
    const int64_t steps = steps_per_epoch_;
    // A text's training windows are drawn afresh each epoch (from seed and epoch).
    const TensorDataset train_set =
        job_.gpt ? text_epoch_windows(*data_.text, c.dataset.windows_per_epoch, job_.seq, c.training.seed, epoch)
                 : data_.train;
    const int64_t n = train_set.size();
    grad_norms_.clear();

    // Data order: a permutation from (seed, epoch), independent of the partition.
    at::Tensor order;
    if (c.dataset.shuffle && !job_.gpt) {
      std::vector<int64_t> perm(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
      std::mt19937_64 rng(splitmix64(c.training.seed, static_cast<uint64_t>(epoch)));
      for (int64_t i = n - 1; i > 0; --i) {
        const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
        std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
      }
      order = at::tensor(perm, at::kLong);
    } else {
      order = at::arange(n, at::kLong);
    }

    double loss_sum = 0;
    int64_t correct = 0, count = 0;
    std::vector<double> step_losses;
    const auto train_start = Clock::now();
    const int64_t first = epoch == resume_epoch_ ? resume_step_ : 0;
    const double seq = static_cast<double>(job_.seq);
    pump(train_set, order, b, first, steps, true, [&](int64_t k, const MetricsPayload& m) {
      loss_sum += m.loss_sum;
      correct += m.correct;
      count += m.count;
      step_losses.push_back(m.loss_sum / static_cast<double>(m.count));
      const double sps = count / seq / seconds_since(train_start);
      progress_.update(epoch, c.training.epochs, k, steps, sps * seq, loss_sum / count, static_cast<double>(correct) / count);
      if (metrics_) {
        const auto bytes = step_message_bytes(m.count / job_.seq);
        metrics_->append(StepRow{epoch, k, m.loss_sum / static_cast<double>(m.count),
                                 static_cast<double>(m.correct) / static_cast<double>(m.count), sps, bytes.first,
                                 bytes.second});
      }
      if (observer_) {
        observer_->on_step({{"epoch", epoch},
                            {"step", k},
                            {"steps", steps},
                            {"loss", m.loss_sum / static_cast<double>(m.count)},
                            {"accuracy", static_cast<double>(m.correct) / static_cast<double>(m.count)},
                            {"samples_per_second", sps},
                            {"tokens_per_second", sps * seq},
                            {"learning_rate", last_lr_}});
      }
    });
    const double train_seconds = seconds_since(train_start);

    // Validation: forward only, the whole validation split.
    double vloss = 0;
    int64_t vcorrect = 0, vcount = 0;
    const int64_t vb = c.dataset.val_batch_size;
    const int64_t vn = data_.val.size();
    pump(data_.val, at::arange(vn, at::kLong), vb, 0, (vn + vb - 1) / vb, false, [&](int64_t, const MetricsPayload& m) {
      vloss += m.loss_sum;
      vcorrect += m.correct;
      vcount += m.count;
    });

    // Statistics from every stage rank.
    stats_.wall = seconds_since(epoch_start);
    stats_.cpu = cpu_seconds() - cpu0;
    stats_.wait = comm_.wait_seconds();
    std::vector<RankStats> all{stats_};
    if (comm_.size() > 1) {
      send_control(Command::EpochEnd, 0, 0, stage_ranks());
      for (int r : stage_ranks()) {
        const uint32_t s = control_step_[r] - 1;  // the index of the EpochEnd control just sent
        Request req = wire_.post_raw<RankStats>(r, MsgKind::Stats, 0, 1);
        all.push_back(wire_.finish_raw<RankStats>(req, MsgKind::Stats, s, 0, 1)[0]);
      }
      drain_sends();
    }
    comm_.reset_wait_seconds();
    stats_ = RankStats{};
    stats_.rank = 0;
    stats_.stage = comm_.size() == 1 ? 0 : -1;

    const double seconds = seconds_since(epoch_start);
    uint64_t raw = 0, wire = 0;
    for (const auto& s : all) {
      raw += s.bytes_raw;
      wire += s.bytes_wire;
    }
    total_raw_ += raw;
    total_wire_ += wire;
    const double train_loss = count ? loss_sum / count : 0, train_acc = count ? double(correct) / count : 0;
    const double val_loss = vcount ? vloss / vcount : 0, val_acc = vcount ? double(vcorrect) / vcount : 0;
    const double sps = train_seconds > 0 ? count / seq / train_seconds : 0;  // samples (sequences)
    const double tps = train_seconds > 0 ? count / train_seconds : 0;        // targets: samples or tokens
    double grad_norm = 0;
    for (double g : grad_norms_) grad_norm += g / static_cast<double>(grad_norms_.size());

    log(format("epoch %lld/%lld: train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | %.1f s, %.0f %s/s | sent %s raw, %s on the wire (%.3f)",
                (long long)epoch, (long long)c.training.epochs, train_loss, 100 * train_acc, val_loss, 100 * val_acc,
                seconds, job_.gpt ? tps : sps, job_.gpt ? "tokens" : "samples", human_bytes(double(raw)).c_str(),
                human_bytes(double(wire)).c_str(), raw ? double(wire) / double(raw) : 1.0));

    // Timing table and bubble.
    json timing = json::array();
    double bubble_sum = 0;
    int bubble_n = 0;
    if (!options_.quiet) {
      log(format("  %-4s %-12s %-5s %-7s %7s %7s %7s %7s %7s %7s %7s %7s %6s %6s %8s", "rank", "host", "stage",
                  "layers", "fwd s", "bwd s", "opt s", "codec s", "wait s", "idle s", "wall s", "cpu s", "busy%",
                  "idle%", "GFLOP/s"));
    }
    for (const auto& s : all) {
      const std::string host = hosts_[static_cast<size_t>(s.rank)];
      timing.push_back(stats_to_json(s, host));
      if (s.stage >= 0 && s.train_wall > 0) {
        bubble_sum += 1.0 - s.train_busy / s.train_wall;
        ++bubble_n;
      }
      if (options_.quiet) continue;
      std::string layers = "-";
      if (s.stage >= 0) {
        const auto& r = job_.plan[static_cast<size_t>(s.stage)];
        layers = std::to_string(r.first) + "-" + std::to_string(r.end() - 1);
      }
      const double busy = s.forward + s.backward + s.optimizer + s.codec;
      log(format("  %-4d %-12.12s %-5s %-7s %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %5.1f%% %5.1f%% %8.2f",
                  s.rank, host.c_str(), s.stage >= 0 ? std::to_string(s.stage + 1).c_str() : "-", layers.c_str(),
                  s.forward, s.backward, s.optimizer, s.codec, s.wait, s.idle, s.wall, s.cpu,
                  s.wall > 0 ? 100 * busy / s.wall : 0.0, s.wall > 0 ? 100 * s.idle / s.wall : 0.0,
                  s.wall > 0 ? s.flops / s.wall / 1e9 : 0.0));
    }
    const int64_t m = std::min<int64_t>(c.training.micro_batches, c.dataset.batch_size);
    const double bubble = bubble_n ? bubble_sum / bubble_n : 0.0;
    // Sequential keeps one micro-batch in the pipeline at a time: (S-1)/S, as for M = 1.
    const double theory = theoretical_bubble(job_.stages, c.training.schedule == "sequential" ? 1 : m);
    if (!options_.quiet && job_.stages > 1) {
      log(format("  pipeline bubble: measured %.1f%%, theoretical %.1f%% (%s, S=%lld, M=%lld)", 100 * bubble,
                  100 * theory, c.training.schedule.c_str(), (long long)job_.stages, (long long)m));
    }

    summary_["epochs"].push_back({{"epoch", epoch},
                                  {"steps", static_cast<int64_t>(step_losses.size())},
                                  {"train_loss", train_loss},
                                  {"train_accuracy", train_acc},
                                  {"val_loss", val_loss},
                                  {"val_accuracy", val_acc},
                                  {"train_samples", static_cast<int64_t>(count / job_.seq)},
                                  {"val_samples", static_cast<int64_t>(vcount / job_.seq)},
                                  {"seconds", seconds},
                                  {"train_seconds", train_seconds},
                                  {"samples_per_second", sps},
                                  {"bytes_raw", raw},
                                  {"bytes_wire", wire},
                                  {"bubble_measured", bubble},
                                  {"bubble_theoretical", theory},
                                  {"step_losses", step_losses},
                                  {"timing", timing}});
    json& entry = summary_["epochs"].back();
    if (job_.gpt) {
      entry["train_tokens"] = count;
      entry["tokens_per_second"] = tps;
    }
    if (!grad_norms_.empty()) entry["grad_norm_mean"] = grad_norm;
    entry["learning_rate"] = last_lr_;
    if (job_.gpt && c.output.sample_tokens > 0) entry["sample"] = sample_text(epoch);
    summary_["final"] = {{"val_loss", val_loss}, {"val_accuracy", val_acc}, {"train_loss", train_loss}, {"train_accuracy", train_acc}};
    if (metrics_) {
      metrics_->append(EpochRow{epoch, train_loss, train_acc, val_loss, val_acc, seconds, sps, double(raw), double(wire)});
      for (const auto& r : all) {
        metrics_->append(RankRow{epoch, r.rank, r.stage, r.forward, r.backward, r.optimizer, r.codec, r.wait, r.idle,
                                 r.wall, r.cpu, r.wall > 0 ? r.flops / r.wall / 1e9 : 0.0});
      }
      metrics_->flush();
    }
    write_summary("running");
    if (observer_) observer_->on_epoch(summary_["epochs"].back());
  }

  json initial_summary() {
    json s;
    const auto& c = job_.config;
    s["version"] = 1;
    s["state"] = "running";
    s["world_size"] = comm_.size();
    s["blas"] = options_.blas;
    s["dataset"] = job_.dataset_description;
    s["config"] = job_.config_yaml;
    s["output_dir"] = c.output.dir;
    s["schedule"] = c.training.schedule;
    s["micro_batches"] = c.training.micro_batches;
    s["quantization_bits"] = c.communication.quantization_bits;
    json ranks = json::array();
    for (int r = 0; r < comm_.size(); ++r) {
      std::string role = "idle";
      json layers = nullptr;
      if (comm_.size() == 1) {
        role = "orchestrator+stage";
      } else if (r == 0) {
        role = "orchestrator";
      } else if (r <= job_.stages) {
        role = "stage";
      }
      ranks.push_back({{"rank", r}, {"host", hosts_[static_cast<size_t>(r)]}, {"role", role}});
    }
    s["ranks"] = ranks;
    json stages = json::array();
    const auto scost = stage_costs(layer_costs(c, job_.classes), job_.plan);
    const auto sparams = stage_parameter_counts(job_);
    for (int64_t k = 0; k < job_.stages; ++k) {
      const auto& r = job_.plan[static_cast<size_t>(k)];
      const int64_t params = sparams[static_cast<size_t>(k)];
      const int rank = comm_.size() == 1 ? 0 : static_cast<int>(k + 1);
      stages.push_back({{"stage", k + 1},
                        {"rank", rank},
                        {"host", hosts_[static_cast<size_t>(rank)]},
                        {"layers", {r.first, r.end() - 1}},
                        {"parameters", params},
                        {"estimated_cost", scost[static_cast<size_t>(k)]}});
    }
    s["stages"] = stages;
    s["epochs"] = json::array();
    return s;
  }

  void write_summary(const std::string& state) {
    summary_["state"] = state;
    summary_["bytes_raw"] = total_raw_;
    summary_["bytes_wire"] = total_wire_;
    summary_["wire_ratio"] = total_raw_ ? double(total_wire_) / double(total_raw_) : 1.0;
    const std::filesystem::path dir(job_.config.output.dir);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const auto tmp = dir / "summary.json.tmp";
    {
      std::ofstream out(tmp);
      out << summary_.dump(2) << "\n";
      if (!out) {
        std::fprintf(stderr, "[output] cannot write %s\n", tmp.c_str());
        return;
      }
    }
    std::filesystem::rename(tmp, dir / "summary.json", ec);
    if (ec) std::fprintf(stderr, "[output] cannot rename %s: %s\n", tmp.c_str(), ec.message().c_str());
  }

  Job& job_;
  DataSplits& data_;
  Comm& comm_;
  const TrainOptions& options_;
  std::vector<std::string> hosts_;
  RankStats stats_;
  Wire wire_;
  Progress progress_;
  JobObserver* observer_ = nullptr;
  bool stopped_ = false;
  std::optional<CheckpointData> resume_;
  int64_t resume_epoch_ = 1, resume_step_ = 0;
  int64_t epoch_steps_done_ = 0;
  std::unique_ptr<MetricsFile> metrics_;
  std::unique_ptr<Stage> local_stage_;
  std::deque<Request> pending_sends_;
  std::map<int, uint32_t> control_step_;
  std::deque<uint32_t> metrics_step_;
  std::vector<double> grad_norms_;  // this epoch's global gradient norms (when clipping)
  int64_t steps_per_epoch_ = 0;
  double last_lr_ = 0;
  uint32_t step_ = 0;
  int64_t epoch_ = 0;
  uint64_t total_raw_ = 0, total_wire_ = 0;
  json summary_;
};

// The run directory must be writable before any training is spent.
void check_output_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    throw ConfigError("[output] output.dir = '" + dir + "': cannot create the directory (" + ec.message() + ")");
  }
  const auto probe = std::filesystem::path(dir) / ".arceus-write-test";
  std::ofstream out(probe);
  if (!out) throw ConfigError("[output] output.dir = '" + dir + "': directory is not writable");
  out.close();
  std::filesystem::remove(probe, ec);
}

// CPUs this process may run on (respects cpusets, e.g. a SLURM allocation).
std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  if (cpus.empty()) {
    for (int c = 0; c < static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); ++c) cpus.push_back(c);
  }
  return cpus;
}

// Pins every thread of this process (OpenBLAS's pool exists already) to `cpus`.
void pin_process(const std::vector<int>& cpus) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    const pid_t tid = static_cast<pid_t>(std::stol(entry.path().filename().string()));
    sched_setaffinity(tid, sizeof set, &set);
  }
}

// --threads auto: the stage ranks on one host share its CPUs; the k-th of n gets CPUs
// [k*c/n, (k+1)*c/n) and is pinned to them, so that ranks sharing a machine do not migrate
// onto each other's cores. Rank 0 and idle ranks mostly wait: 1 thread, not pinned. With
// more stage ranks than CPUs nothing is pinned (oversubscribed: let the kernel schedule).
int choose_threads(const TrainOptions& o, Comm& comm, const std::vector<std::string>& hosts, int64_t stages) {
  if (o.threads != "auto") return std::max(1, std::atoi(o.threads.c_str()));
  const std::vector<int> cpus = allowed_cpus();
  const int cores = static_cast<int>(cpus.size());
  if (comm.size() == 1) return cores;
  if (comm.rank() == 0 || comm.rank() > stages) return 1;
  int compute_here = 0, index = 0;
  for (int r = 1; r <= stages; ++r) {
    if (hosts[static_cast<size_t>(r)] != comm.host()) continue;
    if (r < comm.rank()) ++index;
    ++compute_here;
  }
  const int share = cores / std::max(1, compute_here);
  if (share >= 1 && compute_here > 1) {
    pin_process(std::vector<int>(cpus.begin() + index * share, cpus.begin() + (index + 1) * share));
  }
  return std::max(1, share);
}

// The set-up broadcast: {"type": "job", "ok": true, config, plan, ...},
// {"type": "job", "ok": false, "error"}, or {"type": "shutdown"}.
void broadcast_json(Comm& comm, const json& message) {
  const std::string text = message.dump();
  std::vector<uint8_t> bytes(text.begin(), text.end());
  comm.broadcast(bytes, 0);
}

json receive_json(Comm& comm) {
  std::vector<uint8_t> bytes;
  comm.broadcast(bytes, 0);
  return json::parse(bytes.begin(), bytes.end());
}

// Start-up lines: run shape, BLAS, data, and the plan with each stage's rank and host.
std::vector<std::string> plan_lines(const Job& job, const TrainOptions& options, const std::vector<std::string>& hosts,
                                    int world, int threads) {
  const auto& c = job.config;
  std::vector<std::string> lines;
  lines.push_back(format("arceus: %d rank%s, %lld stage%s, %s schedule, M=%lld, %d-bit messages, seed %llu", world,
                         world == 1 ? "" : "s", (long long)job.stages, job.stages == 1 ? "" : "s",
                         c.training.schedule.c_str(), (long long)c.training.micro_batches,
                         c.communication.quantization_bits, (unsigned long long)c.training.seed));
  lines.push_back(format("  blas: %s; %d thread%s per stage rank", options.blas.c_str(), threads, threads == 1 ? "" : "s"));
  lines.push_back("  data: " + job.dataset_description);
  const auto scost = stage_costs(layer_costs(c, job.classes), job.plan);
  const auto sparams = stage_parameter_counts(job);
  if (world > 1) lines.push_back(format("  rank 0 on %s: orchestrator", hosts[0].c_str()));
  for (int64_t k = 0; k < job.stages; ++k) {
    const auto& r = job.plan[static_cast<size_t>(k)];
    const int64_t params = sparams[static_cast<size_t>(k)];
    const int rank = world == 1 ? 0 : static_cast<int>(k + 1);
    lines.push_back(format("  rank %d on %s: stage %lld, layers %lld-%lld, %lld parameters, est. cost %.3g", rank,
                           hosts[size_t(rank)].c_str(), (long long)k + 1, (long long)r.first, (long long)r.end() - 1,
                           (long long)params, scost[size_t(k)]));
  }
  for (int r = static_cast<int>(job.stages) + 1; r < world; ++r)
    lines.push_back(format("  rank %d on %s: idle (partition uses %lld stages)", r, hosts[size_t(r)].c_str(),
                           (long long)job.stages));
  return lines;
}

// A checkpoint must hold exactly the model's tensors with the model's shapes.
void check_checkpoint_matches(const CheckpointData& ck, const Config& c, int64_t vocab, const std::string& path) {
  std::map<std::string, std::vector<int64_t>> have;
  for (const auto& a : ck.parameters) have[a.name] = a.shape;
  auto shape_str = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  const std::string head = "[checkpoint] '" + path + "' does not match " +
                           (is_gpt(c) ? std::string("the transformer (model_config and the text's vocabulary of ") +
                                            std::to_string(vocab) + ")"
                                      : std::string("model_config.layer_sizes")) +
                           ": ";
  std::set<std::string> expected;
  for (const auto& [name, shape] : parameter_shapes(c, vocab)) {
    expected.insert(name);
    auto it = have.find(name);
    if (it == have.end()) throw StorageError(head + "it has no tensor '" + name + "' (the model expects " + shape_str(shape) + ")");
    if (it->second != shape) {
      throw StorageError(head + "tensor '" + name + "' is " + shape_str(it->second) + " in the checkpoint but the model expects " +
                         shape_str(shape));
    }
  }
  for (const auto& [name, shape] : have)
    if (!expected.count(name)) throw StorageError(head + "it has tensor '" + name + "' " + shape_str(shape) + " that the model does not");
}

void set_threads(const TrainOptions& options, int threads) {
  at::set_num_threads(threads);
  if (options.set_threads) options.set_threads(threads);
}

}  // namespace

void broadcast_setup_failure(Comm& comm, const std::string& error) {
  if (comm.size() > 1) broadcast_json(comm, {{"type", "job"}, {"ok", false}, {"error", error}});
}

void shutdown_workers(Comm& comm) {
  if (comm.size() > 1) broadcast_json(comm, {{"type", "shutdown"}});
}

JobResult run_job(Comm& comm, const Config& config, const TrainOptions& options, JobObserver* observer) {
  const int world = comm.size();
  Job job;
  job.config = config;
  DataSplits data;
  std::optional<CheckpointData> resume;
  try {
    const auto& c = job.config;
    job.plan = make_plan(c, world);  // before loading data: fail fast
    job.stages = static_cast<int64_t>(job.plan.size());
    check_output_dir(c.output.dir);
    data = load_dataset(c.dataset, c.training.seed, is_gpt(c) ? c.model.context : 0);
    job.features = data.features;
    job.classes = data.classes;
    job.dataset_description = data.description;
    finish_job(job);
    if (job.gpt) {
      job.plan = make_plan(c, world, job.classes);  // the head's cost needs the vocabulary
      job.stages = static_cast<int64_t>(job.plan.size());
    }
    if (!job.gpt && c.model.layer_sizes.front() != data.features) {
      throw ConfigError("[model] model_config.layer_sizes[0] = " + std::to_string(c.model.layer_sizes.front()) +
                        " but the " + c.dataset.name + " inputs have " + std::to_string(data.features) +
                        " features: the first layer width must equal the input width");
    }
    if (!job.gpt && c.model.layer_sizes.back() != data.classes) {
      throw ConfigError("[model] model_config.layer_sizes[-1] = " + std::to_string(c.model.layer_sizes.back()) +
                        " but the " + c.dataset.name + " dataset has " + std::to_string(data.classes) +
                        " classes: the last layer width must equal the number of classes");
    }
    if (c.training.micro_batches > kMaxMicroBatches) {
      throw ConfigError("[config] training.micro_batches = " + std::to_string(c.training.micro_batches) +
                        " exceeds the maximum of " + std::to_string(kMaxMicroBatches));
    }
    job.config_yaml = to_yaml(c);
    std::string resume_path = options.resume;
    const std::string own = (std::filesystem::path(c.output.dir) / "checkpoint.h5").string();
    if (resume_path.empty() && c.resume && std::filesystem::exists(own)) resume_path = own;
    if (!resume_path.empty()) {
      resume = read_checkpoint(resume_path);
      if (job.gpt) check_vocab_matches(*resume, data.text->vocab, resume_path);
      check_checkpoint_matches(*resume, c, job.classes, resume_path);
      if (resume->epoch >= c.training.epochs) {
        throw ConfigError("[checkpoint] '" + resume_path + "' has already finished epoch " + std::to_string(resume->epoch) +
                          " of training.epochs = " + std::to_string(c.training.epochs) + ": nothing left to train (raise training.epochs)");
      }
      job.resume = true;
    }
  } catch (const std::exception& e) {
    broadcast_setup_failure(comm, e.what());
    JobResult r;
    r.state = "failed";
    r.error = e.what();
    return r;
  }
  if (world > 1) {
    broadcast_json(comm, {{"type", "job"},
                          {"ok", true},
                          {"config", job.config_yaml},
                          {"plan", plan_to_json(job.plan)},
                          {"features", job.features},
                          {"classes", job.classes},
                          {"dataset", job.dataset_description},
                          {"resume", job.resume}});
  }
  const std::vector<std::string> hosts = comm.all_hosts();
  const int threads = choose_threads(options, comm, hosts, job.stages);
  set_threads(options, threads);
  for (const auto& line : plan_lines(job, options, hosts, world, threads)) {
    std::printf("%s\n", line.c_str());
    if (observer) observer->on_log(line);
  }
  std::fflush(stdout);

  Orchestrator orchestrator(job, data, comm, options, hosts, observer);
  if (resume) orchestrator.set_resume(std::move(*resume));
  JobResult result;
  try {
    result.state = orchestrator.run();
  } catch (const std::exception& e) {
    orchestrator.fail(e.what());
    throw;
  }
  result.summary = orchestrator.summary();
  return result;
}

int worker_loop(Comm& comm, const TrainOptions& options, bool serve) {
  while (true) {
    const json message = receive_json(comm);
    if (message.value("type", "") == "shutdown") return 0;
    if (!message.value("ok", false)) {
      if (serve) continue;
      return 1;
    }
    Job job;
    job.config_yaml = message["config"].get<std::string>();
    job.config = parse_config(job.config_yaml, {}, "<from rank 0>");
    for (const auto& r : message["plan"]) job.plan.push_back({r[0].get<int64_t>(), r[1].get<int64_t>()});
    job.stages = static_cast<int64_t>(job.plan.size());
    job.features = message["features"].get<int64_t>();
    job.classes = message["classes"].get<int64_t>();
    job.resume = message.value("resume", false);
    finish_job(job);
    const std::vector<std::string> hosts = comm.all_hosts();
    set_threads(options, choose_threads(options, comm, hosts, job.stages));
    if (comm.rank() <= job.stages) {
      stage_loop(job, comm.rank() - 1, comm);
    } else {
      idle_loop(comm);
    }
    if (!serve) return 0;
  }
}

int run_eval(Comm& comm, const TrainOptions& options, const std::string& checkpoint) {
  if (comm.size() > 1) {
    if (comm.rank() == 0) std::fprintf(stderr, "error: arceus eval runs on one process: run it without mpirun\n");
    return 1;
  }
  try {
    Job job;
    job.config = load_config_file(options.config_path, options.overrides);
    CheckpointData ck = read_checkpoint(checkpoint);
    job.plan = make_plan(job.config, 1);
    job.stages = 1;
    job.config_yaml = to_yaml(job.config);
    DataSplits data = load_dataset(job.config.dataset, job.config.training.seed,
                                   is_gpt(job.config) ? job.config.model.context : 0);
    job.dataset_description = data.description;
    job.features = data.features;
    job.classes = data.classes;
    finish_job(job);
    if (job.gpt) check_vocab_matches(ck, data.text->vocab, checkpoint);
    check_checkpoint_matches(ck, job.config, job.classes, checkpoint);
    set_threads(options, options.threads == "auto" ? static_cast<int>(std::max(1u, std::thread::hardware_concurrency()))
                                                   : std::max(1, std::atoi(options.threads.c_str())));
    TrainOptions quiet = options;
    quiet.quiet = true;
      Orchestrator orchestrator(job, data, comm, quiet, {comm.host()}, nullptr);
    StageState st;
    st.global_step = ck.global_step;
    st.parameters = std::move(ck.parameters);
    orchestrator.import_local(st);
    const auto [loss, acc] = orchestrator.evaluate();
    std::printf("eval: %s on %s: val loss %.4f, val accuracy %.2f%% (%lld samples; checkpoint epoch %lld, step %lld)\n",
                checkpoint.c_str(), data.description.c_str(), loss, 100 * acc, (long long)data.val.size(),
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
    Job job;
    job.config = config;
    job.classes = vocab.size();
    finish_job(job);
    check_checkpoint_matches(ck, config, vocab.size(), options.checkpoint);
    at::set_num_threads(std::max(1, options.threads));
    auto model = whole_gpt(job.gpt_config, config.training.seed, ck.parameters);
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

int run_train(Comm& comm, const TrainOptions& options) {
  if (comm.rank() != 0) return worker_loop(comm, options, false);
  Config config;
  try {
    config = load_config_file(options.config_path, options.overrides);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    broadcast_setup_failure(comm, e.what());
    return 1;
  }
  const JobResult result = run_job(comm, config, options, nullptr);
  if (result.state == "failed") {
    std::fprintf(stderr, "error: %s\n", result.error.c_str());
    return 1;
  }
  std::printf("summary: %s/summary.json\n", config.output.dir.c_str());
  return 0;
}

}  // namespace arceus
