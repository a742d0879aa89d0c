// Micro-benchmarks for `arceus plan`. Each layer is built alone, as the trainer builds it, and
// run the way the stage worker runs a chunk (ranks/stage_worker.cpp): forward with autograd
// recording, backward from a gradient of the output's shape (the last layer: cross-entropy
// summed, then scaled), and the split backward (I: autograd::grad of the input and of every
// parameterized operation's output, retaining the graph; W: each operation's weight gradients).
#include "planner/calibrate.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>
#include <thread>

#include "common/atomic_file.h"

#include "models/gpt.h"
#include "models/stage_model.h"
#include "ranks/codec.h"

namespace arceus::plan {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::unique_ptr<StageModel> build(const LayerProbe& p) {
  if (!p.transformer) return make_mlp_slice(p.layer_sizes, LayerRange{p.layer, 1}, 7);
  GptConfig g;
  g.vocab_size = p.vocab;
  g.context = p.context;
  g.n_emb = p.n_emb;
  g.n_heads = p.n_heads;
  g.n_blocks = p.n_blocks;
  g.dropout = p.dropout;
  return make_gpt_slice(g, LayerRange{p.layer, 1}, 7);
}

struct Times {
  double f = 0, b = 0, i = 0, w = 0;
};

// One (layer, rows): a warm-up, then repetitions until ~80 ms per kind (2..5 of them).
Times time_layer(StageModel& model, const LayerProbe& p, int64_t rows) {
  const bool first = p.layer == 0, last = p.layer + 1 == p.layers;
  at::Tensor x;
  if (p.transformer && first) {
    x = at::randint(0, p.vocab, {rows, p.context}, at::kLong);
  } else if (p.transformer) {
    x = at::randn({rows, p.context, p.n_emb});
  } else {
    x = at::randn({rows, p.layer_sizes[size_t(p.layer)]});
  }
  const int64_t classes = p.transformer ? p.vocab : p.layer_sizes.back();
  const at::Tensor labels = at::randint(0, classes, {rows * (p.transformer ? p.context : 1)}, at::kLong);
  const double scale = 1.0 / double(rows * (p.transformer ? p.context : 1));
  at::Tensor g;  // the output gradient a non-last layer receives

  struct Pass {
    at::Tensor x, y, loss;
    WeightOps ops;
  };
  auto forward = [&](bool split) {
    Pass s;
    s.x = x.detach();
    if (!first) s.x.requires_grad_(true);
    s.y = model.forward(s.x, split ? &s.ops : nullptr);
    if (last) {
      const at::Tensor logits = s.y.reshape({-1, s.y.size(-1)});
      s.loss = at::cross_entropy_loss(logits, labels, {}, at::Reduction::Sum) * scale;
      // the worker's metrics: loss item and the correct count
      (void)s.loss.item<double>();
      (void)logits.argmax(1).eq(labels).sum().item<int64_t>();
    }
    return s;
  };
  auto backward = [&](Pass& s) {
    if (last) {
      s.loss.backward();
    } else {
      s.y.backward(g);
    }
  };
  auto input_grad = [&](Pass& s) {
    std::vector<at::Tensor> inputs;
    if (!first) inputs.push_back(s.x);
    for (const auto& op : s.ops.ops) inputs.push_back(op.first);
    const at::Tensor out = last ? s.loss : s.y;
    return torch::autograd::grad({out}, inputs, last ? std::vector<at::Tensor>{} : std::vector<at::Tensor>{g},
                                 /*retain_graph=*/true);
  };
  auto weight_grad = [&](Pass& s, const std::vector<at::Tensor>& grads) {
    const size_t k = first ? 0 : 1;
    for (size_t j = s.ops.ops.size(); j-- > 0;) {
      const auto& [out, params] = s.ops.ops[j];
      if (params.empty()) continue;
      torch::autograd::backward({out}, {grads[k + j]}, false, false, params);
    }
  };

  {  // warm-up, and the output gradient's shape
    Pass s = forward(false);
    if (!last) g = at::randn(s.y.sizes()) * 1e-3;
    backward(s);
  }
  auto t0 = Clock::now();
  {
    Pass s = forward(false);
    backward(s);
  }
  const double one = since(t0);
  const int reps = int(std::clamp(0.08 / std::max(one, 1e-6), 2.0, 5.0));
  std::vector<double> f, b, i, w;
  for (int r = 0; r < reps; ++r) {
    t0 = Clock::now();
    Pass s = forward(false);
    f.push_back(since(t0));
    t0 = Clock::now();
    backward(s);
    b.push_back(since(t0));
  }
  for (int r = 0; r < reps; ++r) {
    Pass s = forward(true);
    t0 = Clock::now();
    const auto grads = input_grad(s);
    i.push_back(since(t0));
    t0 = Clock::now();
    weight_grad(s, grads);
    w.push_back(since(t0));
  }
  for (const auto& [name, t] : model.named_parameters()) {
    if (t.grad().defined()) t.mutable_grad().zero_();
  }
  return Times{median(f), median(b), median(i), median(w)};
}

// Half the median round trip of a 64-byte message over a loopback TCP connection.
double tcp_latency() {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) return 50e-6;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(listener);
    return 50e-6;
  }
  constexpr int kRounds = 400;
  char buf[64] = {};
  auto full = [](int fd, char* p, size_t n, bool write) {
    size_t done = 0;
    while (done < n) {
      const ssize_t k = write ? ::send(fd, p + done, n - done, 0) : ::recv(fd, p + done, n - done, 0);
      if (k <= 0) return false;
      done += size_t(k);
    }
    return true;
  };
  std::thread echo([&] {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char b[64];
    for (int r = 0; r < kRounds; ++r) {
      if (!full(fd, b, sizeof(b), false) || !full(fd, b, sizeof(b), true)) break;
    }
    ::close(fd);
  });
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  std::vector<double> rtt;
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (int r = 0; r < kRounds; ++r) {
      const auto t0 = Clock::now();
      if (!full(fd, buf, sizeof(buf), true) || !full(fd, buf, sizeof(buf), false)) break;
      rtt.push_back(since(t0));
    }
  }
  if (fd >= 0) ::close(fd);
  echo.join();
  ::close(listener);
  return rtt.empty() ? 50e-6 : median(rtt) / 2;
}

double optimizer_seconds_per_param(bool adamw) {
  constexpr int64_t kParams = 1 << 20;
  at::Tensor p = at::randn({kParams}).set_requires_grad(true);
  p.mutable_grad() = at::randn({kParams});
  std::unique_ptr<torch::optim::Optimizer> opt;
  if (adamw) {
    opt = std::make_unique<torch::optim::AdamW>(std::vector<at::Tensor>{p}, torch::optim::AdamWOptions(1e-3));
  } else {
    opt = std::make_unique<torch::optim::SGD>(std::vector<at::Tensor>{p}, torch::optim::SGDOptions(0.01));
  }
  std::vector<double> t;
  for (int r = 0; r < 6; ++r) {
    const auto t0 = Clock::now();
    opt->step();
    p.mutable_grad().zero_();
    t.push_back(since(t0));
    p.mutable_grad().normal_();
  }
  return median(t) / double(kParams);
}

}  // namespace

void calibrate_layers(Calibration& cal, const std::vector<LayerProbe>& probes, bool refresh, std::ostream& log) {
  for (const LayerProbe& p : probes) {
    LayerTiming& t = cal.layers[p.key];
    if (refresh) t = LayerTiming{};
    std::vector<int64_t> todo;
    for (int64_t n : p.rows) {
      if (!std::binary_search(t.rows.begin(), t.rows.end(), n)) todo.push_back(n);
    }
    if (todo.empty()) continue;
    const auto t0 = Clock::now();
    std::unique_ptr<StageModel> model = build(p);
    for (int64_t n : todo) {
      const Times m = time_layer(*model, p, n);
      const size_t at = size_t(std::lower_bound(t.rows.begin(), t.rows.end(), n) - t.rows.begin());
      t.rows.insert(t.rows.begin() + std::ptrdiff_t(at), n);
      t.f.insert(t.f.begin() + std::ptrdiff_t(at), m.f);
      t.b.insert(t.b.begin() + std::ptrdiff_t(at), m.b);
      t.i.insert(t.i.begin() + std::ptrdiff_t(at), m.i);
      t.w.insert(t.w.begin() + std::ptrdiff_t(at), m.w);
    }
    const int64_t big = todo.back();
    log << "  layer " << p.key << ": " << todo.size() << " micro-batch sizes " << todo.front() << ".." << big << " rows ("
        << since(t0) << " s); at " << big << " rows F " << 1e3 * layer_seconds(cal, p.key, 'F', big) << " ms, B "
        << 1e3 * layer_seconds(cal, p.key, 'B', big) << " ms, I " << 1e3 * layer_seconds(cal, p.key, 'I', big)
        << " ms, W " << 1e3 * layer_seconds(cal, p.key, 'W', big) << " ms\n";
  }
}

void calibrate_system(Calibration& cal, std::ostream& log) {
  constexpr int64_t kRows = 256, kCols = 1024;  // 1 MiB of float32
  std::vector<float> x(size_t(kRows * kCols));
  for (size_t k = 0; k < x.size(); ++k) x[k] = float((k * 2654435761u) % 2001) / 1000.0f - 1.0f;
  std::vector<float> back(x.size());
  for (int bits : {32, 16, 8, 4}) {
    std::vector<uint8_t> buf(encoded_size(kRows, kCols, bits));
    std::vector<double> enc, sto, dec;
    for (int r = 0; r < 15; ++r) {
      auto t0 = Clock::now();
      encode(x.data(), kRows, kCols, bits, false, 1, buf.data());
      enc.push_back(since(t0));
      t0 = Clock::now();
      encode(x.data(), kRows, kCols, bits, bits < 32, uint64_t(r), buf.data());
      sto.push_back(since(t0));
      t0 = Clock::now();
      decode(buf.data(), kRows, kCols, bits, back.data());
      dec.push_back(since(t0));
    }
    cal.encode_s_per_mib[bits] = median(enc);
    cal.encode_stochastic_s_per_mib[bits] = median(sto);
    cal.decode_s_per_mib[bits] = median(dec);
    log << "  codec " << bits << " bits: encode " << 1e6 * median(enc) << " us/MiB (stochastic " << 1e6 * median(sto)
        << "), decode " << 1e6 * median(dec) << " us/MiB\n";
  }
  cal.latency_s = tcp_latency();
  log << "  message latency (TCP loopback, one way): " << 1e6 * cal.latency_s << " us\n";
  cal.sgd_s_per_param = optimizer_seconds_per_param(false);
  cal.adamw_s_per_param = optimizer_seconds_per_param(true);
  log << "  optimizer step: SGD " << 1e9 * cal.sgd_s_per_param << " ns/parameter, AdamW "
      << 1e9 * cal.adamw_s_per_param << " ns/parameter\n";
}

Calibration load_or_calibrate(const std::string& path, bool refresh, const std::string& cpu, const std::string& blas,
                              int64_t threads, const std::vector<LayerProbe>& probes, std::ostream& log) {
  Calibration cal;
  const bool have = !refresh && std::filesystem::exists(path);
  if (have) cal = read_calibration_file(path);
  std::vector<LayerProbe> missing;
  for (const LayerProbe& p : probes) {
    bool seen = false;
    for (const auto& q : missing) seen = seen || q.key == p.key;
    if (seen) continue;
    bool measured = have;
    for (int64_t n : p.rows) measured = measured && has_rows(cal, p.key, n);
    if (!measured) missing.push_back(p);
  }
  if (have && missing.empty()) return cal;

  const auto t0 = Clock::now();
  log << "calibrating on this machine (" << cpu << ", " << blas << ", " << threads << " thread"
      << (threads > 1 ? "s" : "") << ")" << (have ? ": layers not measured yet" : "") << "\n";
  if (!have) {
    cal = Calibration{};
    cal.cpu = cpu;
    cal.blas = blas;
    cal.threads = threads;
    calibrate_system(cal, log);
  }
  calibrate_layers(cal, missing, /*refresh=*/false, log);
  cal.seconds = since(t0);
  const std::time_t now = std::time(nullptr);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M", std::localtime(&now));
  cal.measured_at = when;
  try {
    write_calibration_file(path, cal);
  } catch (const FileError& e) {
    log << "warning: the calibration cache is not written: " << e.what() << "\n";
  }
  char took[64];
  std::snprintf(took, sizeof(took), "%.1f", cal.seconds);
  log << "calibration took " << took << " s, written to " << path << "\n";
  return cal;
}

}  // namespace arceus::plan
