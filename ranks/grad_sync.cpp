#include "ranks/grad_sync.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ranks/codec.h"
#include "ranks/sync_buckets.h"
#include "ranks/timing.h"

namespace arceus {

namespace {

constexpr int64_t kRow = kSyncRow;  // ranks/sync_buckets.h: the buckets and the ring's slices

}  // namespace

struct GradientSync::Impl {
  struct Param {
    at::Tensor tensor;
    size_t chunk = 0;       // local chunk index
    size_t bucket = 0;
    int64_t offset = 0;     // in the bucket, floats
    bool filled = false;    // its final gradient is in the bucket this step
  };
  struct Bucket {
    std::vector<size_t> params;
    int64_t size = 0;    // floats
    int64_t padded = 0;  // ring: a multiple of R * kRow
    std::vector<float> data;  // this step's gradients, then their sum
    size_t filled = 0;
    bool started = false, done = false;
    Request request;             // 32 bits: the allreduce
    std::vector<float> residual;  // ring: error feedback (what this rank's quantization left out)
  };
  // The ring of the bucket in flight (buckets go round one after another, so that every
  // member posts each (bucket, hop) in the same order).
  struct Ring {
    size_t bucket = 0;
    int hop = 0;
    Request recv;
    std::vector<float> residual;                // this step's errors, replacing the bucket's
    std::vector<std::vector<uint8_t>> encoded;  // all-gather: each slice's final encoding
  };

  Impl(std::vector<std::vector<at::Tensor>> chunks, Group& g, Messenger& m, RankStats& s, int b)
      : group(g), msg(m), stats(s), bits(b), ranks(g.size()) {
    if (ranks > 128) {
      throw std::invalid_argument("[partition] " + std::to_string(ranks) +
                                  " replicas: the gradient ring numbers its hops in a message's micro-batch field "
                                  "(at most 128 replicas)");
    }
    armed.assign(chunks.size(), false);
    backwards.assign(chunks.size(), 0);
    // Reverse model order: the last chunk's last parameter first, as the backward finishes them.
    for (size_t k = chunks.size(); k-- > 0;) {
      for (size_t j = chunks[k].size(); j-- > 0;) {
        Param p;
        p.tensor = chunks[k][j];
        p.chunk = k;
        params.push_back(p);
      }
    }
    std::vector<int64_t> sizes;
    for (const Param& p : params) sizes.push_back(p.tensor.numel());
    const std::vector<size_t> bucket_of = sync_bucket_of(sizes);
    for (size_t i = 0; i < params.size(); ++i) {
      Param& p = params[i];
      if (bucket_of[i] == buckets.size()) buckets.emplace_back();
      Bucket& b = buckets.back();
      p.bucket = buckets.size() - 1;
      p.offset = b.size;
      b.params.push_back(i);
      b.size += sizes[i];
    }
    for (Bucket& b : buckets) {
      b.padded = sync_padded_floats(b.size, ranks);
      b.data.assign(static_cast<size_t>(bits == 32 ? b.size : b.padded), 0.0f);
      if (bits < 32) b.residual.assign(static_cast<size_t>(b.padded), 0.0f);
    }
    for (size_t i = 0; i < params.size(); ++i) {
      params[i].tensor.register_hook([this, i](const at::Tensor& g) { on_grad(i, g); });
    }
  }

  // A parameter's incoming gradient during the backward; on its chunk's last backward of the
  // step this plus what .grad holds is its final gradient (AccumulateGrad adds them next).
  void on_grad(size_t i, const at::Tensor& g) {
    Param& p = params[i];
    if (!armed[p.chunk] || p.filled) return;
    const at::Tensor grad = p.tensor.grad();
    fill(p, grad.defined() ? at::add(grad, g) : g);
    start_ready();
    progress();
  }

  void fill(Param& p, const at::Tensor& value) {
    Bucket& b = buckets[p.bucket];
    float* at = b.data.data() + p.offset;
    const int64_t n = p.tensor.numel();
    if (value.defined()) {
      const at::Tensor v = value.detach().to(at::kFloat).contiguous();
      std::memcpy(at, v.data_ptr<float>(), static_cast<size_t>(n) * sizeof(float));
    } else {
      std::fill(at, at + n, 0.0f);
    }
    p.filled = true;
    ++b.filled;
  }

  // Starts the full buckets, in bucket order.
  void start_ready() {
    while (next_start < buckets.size() && buckets[next_start].filled == buckets[next_start].params.size()) {
      start(next_start++);
    }
  }

  void start(size_t k) {
    Bucket& b = buckets[k];
    b.started = true;
    if (bits == 32) {
      std::vector<uint8_t> bytes(b.data.size() * sizeof(float));
      std::memcpy(bytes.data(), b.data.data(), bytes.size());
      b.request = group.iallreduce_sum(std::move(bytes));
      // Counted as a ring would move it: 2(R-1)/R of the bucket out of this rank.
      const uint64_t moved = static_cast<uint64_t>(2 * (ranks - 1) * b.size * 4 / ranks);
      stats.bytes_raw += moved;
      stats.bytes_wire += moved;
      stats.messages += static_cast<uint64_t>(2 * (ranks - 1));
      return;
    }
    ring_queue.push_back(k);
    if (!ring) begin_ring();
  }

  // --- the ring (16/8/4 bits) ---------------------------------------------------------------

  int next_rank() const { return group.members()[static_cast<size_t>((group.rank() + 1) % ranks)]; }
  int prev_rank() const { return group.members()[static_cast<size_t>((group.rank() + ranks - 1) % ranks)]; }
  int64_t slice_floats(const Bucket& b) const { return b.padded / ranks; }
  float* slice(Bucket& b, int64_t j) { return b.data.data() + ((j % ranks + ranks) % ranks) * slice_floats(b); }
  int64_t mod(int64_t j) const { return (j % ranks + ranks) % ranks; }

  void begin_ring() {
    ring = std::make_unique<Ring>();
    ring->bucket = ring_queue.front();
    ring_queue.erase(ring_queue.begin());
    Bucket& b = buckets[ring->bucket];
    // This rank's contribution: its gradients plus what its quantization left out last step.
    for (size_t i = 0; i < b.data.size(); ++i) b.data[i] += b.residual[i];
    ring->residual.assign(b.data.size(), 0.0f);
    ring->encoded.assign(static_cast<size_t>(ranks), {});
    hop();
  }

  // Encodes slice j's current values, recording the error into this step's residual.
  std::vector<uint8_t> encode_slice(Bucket& b, int64_t j) {
    const auto t0 = Clock::now();
    const int64_t n = slice_floats(b), rows = n / kRow;
    std::vector<uint8_t> out(encoded_size(rows, kRow, bits));
    float* x = slice(b, j);
    encode(x, rows, kRow, bits, false, 0, out.data());
    std::vector<float> back(static_cast<size_t>(n));
    decode(out.data(), rows, kRow, bits, back.data());
    float* err = ring->residual.data() + mod(j) * n;
    for (int64_t i = 0; i < n; ++i) err[i] += x[i] - back[static_cast<size_t>(i)];
    stats.codec += seconds_since(t0);
    return out;
  }

  // Posts hop `ring->hop`'s receive and sends its message. Hops 0..R-2 reduce-scatter (send the
  // partial sum of slice me-h, receive slice me-h-1), hops R-1..2R-3 all-gather (send the final
  // encoding of slice me+1-g, receive slice me-g's).
  void hop() {
    Bucket& b = buckets[ring->bucket];
    const int h = ring->hop, me = group.rank();
    const int64_t rows = slice_floats(b) / kRow;
    ring->recv = msg.post_tensor(prev_rank(), MsgKind::Sync, h, bits, rows, kRow);
    std::vector<uint8_t> payload;
    if (h < ranks - 1) {
      payload = encode_slice(b, me - h);
    } else {
      const int64_t g = h - (ranks - 1), j = mod(me + 1 - g);
      if (g == 0) {  // this rank's slice is complete: its final encoding, decoded here too
        ring->encoded[size_t(j)] = encode_slice(b, j);
        decode_slice(b, j, ring->encoded[size_t(j)].data());
      }
      payload = ring->encoded[size_t(j)];
    }
    sends.push_back(msg.send_encoded(std::move(payload), next_rank(), MsgKind::Sync, step, h, bits, rows, kRow));
  }

  void decode_slice(Bucket& b, int64_t j, const uint8_t* bytes) {
    const auto t0 = Clock::now();
    const int64_t n = slice_floats(b);
    decode(bytes, n / kRow, kRow, bits, slice(b, j));
    stats.codec += seconds_since(t0);
  }

  // The current hop's message is in: add it (reduce-scatter) or keep and decode it (all-gather).
  void received() {
    Bucket& b = buckets[ring->bucket];
    const int h = ring->hop, me = group.rank();
    const int64_t n = slice_floats(b), rows = n / kRow;
    const uint8_t* bytes = msg.finish_encoded(ring->recv, MsgKind::Sync, step, h, bits, rows, kRow);
    if (h < ranks - 1) {
      const auto t0 = Clock::now();
      std::vector<float> got(static_cast<size_t>(n));
      decode(bytes, rows, kRow, bits, got.data());
      float* x = slice(b, me - h - 1);
      for (int64_t i = 0; i < n; ++i) x[i] += got[static_cast<size_t>(i)];
      stats.codec += seconds_since(t0);
    } else {
      const int64_t j = mod(me - (h - (ranks - 1)));
      ring->encoded[size_t(j)].assign(bytes, bytes + encoded_size(rows, kRow, bits));
      decode_slice(b, j, bytes);
    }
    ring->recv = Request();
    if (++ring->hop < 2 * (ranks - 1)) {
      hop();
      return;
    }
    b.residual = std::move(ring->residual);
    b.done = true;
    ring.reset();
    if (!ring_queue.empty()) begin_ring();
  }

  void progress() {
    for (auto& s : sends) msg.transport().test(s);
    if (bits == 32) {
      for (Bucket& b : buckets) {
        if (b.started && !b.done && msg.transport().test(b.request)) take_sum(b);
      }
      return;
    }
    while (ring && msg.transport().test(ring->recv)) received();
  }

  void take_sum(Bucket& b) {
    std::memcpy(b.data.data(), b.request.buffer().data(), b.data.size() * sizeof(float));
    b.request = Request();
    b.done = true;
  }

  void finish() {
    const auto t0 = Clock::now();
    // A chunk whose last backward did not run this step (a replica with no rows): its
    // gradients as they are, zeros where there are none.
    for (Param& p : params) {
      if (!p.filled) fill(p, p.tensor.grad());
    }
    start_ready();
    if (bits == 32) {
      for (Bucket& b : buckets) {
        if (b.done) continue;
        msg.transport().wait(b.request, Transport::Pace::Busy);
        take_sum(b);
      }
    } else {
      while (ring) {
        msg.transport().wait(ring->recv, Transport::Pace::Busy);
        received();
      }
    }
    msg.transport().wait_all(sends);
    sends.clear();
    at::NoGradGuard no_grad;
    for (Param& p : params) {
      const Bucket& b = buckets[p.bucket];
      const at::Tensor sum =
          at::from_blob(const_cast<float*>(b.data.data()) + p.offset, p.tensor.sizes(), at::kFloat);
      if (p.tensor.grad().defined()) {
        p.tensor.mutable_grad().copy_(sum);
      } else {
        p.tensor.mutable_grad() = sum.clone();
      }
    }
    stats.sync += seconds_since(t0);
  }

  void begin_step(uint32_t s, int64_t m) {
    step = s;
    micro_batches = m;
    std::fill(armed.begin(), armed.end(), false);
    std::fill(backwards.begin(), backwards.end(), 0);
    for (Param& p : params) p.filled = false;
    for (Bucket& b : buckets) {
      b.filled = 0;
      b.started = b.done = false;
      if (bits < 32) std::fill(b.data.begin(), b.data.end(), 0.0f);  // the padding stays zero
    }
    next_start = 0;
  }

  Group& group;
  Messenger& msg;
  RankStats& stats;
  int bits;
  int ranks;
  std::vector<Param> params;
  std::vector<Bucket> buckets;
  std::vector<bool> armed;         // per local chunk: its last backward of the step is running
  std::vector<int64_t> backwards;  // per local chunk: weight-gradient backwards done this step
  size_t next_start = 0;
  std::vector<size_t> ring_queue;
  std::unique_ptr<Ring> ring;
  std::vector<Request> sends;
  uint32_t step = 0;
  int64_t micro_batches = 1;
};

GradientSync::GradientSync(std::vector<std::vector<at::Tensor>> chunks, Group& group, Messenger& messenger,
                           RankStats& stats, int bits)
    : impl_(std::make_unique<Impl>(std::move(chunks), group, messenger, stats, bits)) {}

GradientSync::~GradientSync() = default;

void GradientSync::begin_step(uint32_t step, int64_t micro_batches) { impl_->begin_step(step, micro_batches); }

void GradientSync::before_backward(size_t k) {
  impl_->armed[k] = impl_->backwards[k] + 1 == impl_->micro_batches;
}

void GradientSync::after_backward(size_t k) {
  ++impl_->backwards[k];
  impl_->armed[k] = false;
}

void GradientSync::progress() { impl_->progress(); }
void GradientSync::finish() { impl_->finish(); }

int64_t GradientSync::floats() const {
  int64_t n = 0;
  for (const auto& b : impl_->buckets) n += b.size;
  return n;
}

}  // namespace arceus
