// The message layer: tensors through the codec, plain structs raw, each message a WireHeader
// (wire.h) and its payload sent over a Transport; every received header is checked against
// what the receiver expects. Counts codec time and bytes into a RankStats.
#pragma once

#include <ATen/Tensor.h>

#include <cstring>
#include <vector>

#include "ranks/rank_stats.h"
#include "ranks/transport.h"
#include "ranks/wire.h"

namespace arceus {

WireHeader make_header(MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows, int64_t cols,
                       uint64_t payload, int64_t chunk = 0);
// "rank 0 (orchestrator)" / "rank 2 (stage 2)", for error messages.
std::string describe_peer(int rank);

class Messenger {
 public:
  // `stages`: S, to place a chunk's messages on the tag of its round (chunk / S).
  Messenger(Transport& transport, RankStats& stats, int64_t stages = 1)
      : transport_(transport), stats_(stats), stages_(stages) {}

  // A float tensor [rows, cols...] as codec rows [rows, numel / rows] at `bits`. `chunk`: the
  // chunk that receives it (activations, gradients), 0 otherwise.
  // With `residual` (error feedback): t + *residual is sent (when *residual has t's shape),
  // and *residual becomes what the receiver will not get: (t + *residual) - decode(encoded).
  Request send_tensor(const at::Tensor& t, int dest, MsgKind kind, uint32_t step, int64_t mb, int bits,
                      bool stochastic, uint64_t seed, int64_t chunk = 0, at::Tensor* residual = nullptr);
  Request post_tensor(int source, MsgKind kind, int64_t mb, int bits, int64_t rows, int64_t cols, int64_t chunk = 0);
  // Waits for a posted tensor, checks its header, decodes it: [rows, cols] float32.
  at::Tensor finish_tensor(Request& r, MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows,
                           int64_t cols, int64_t chunk = 0);

  // An already codec-encoded [rows, cols] payload at `bits` (forwarded unchanged, e.g. by the
  // replicas' ring), counted as rows * cols floats raw. post_tensor posts its receive;
  // finish_encoded checks the header and returns the payload (valid while `r` lives).
  Request send_encoded(std::vector<uint8_t> payload, int dest, MsgKind kind, uint32_t step, int64_t mb, int bits,
                       int64_t rows, int64_t cols);
  const uint8_t* finish_encoded(Request& r, MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows,
                                int64_t cols);

  // Trivially copyable items, raw. State messages (checkpoint and sample gathers) are not
  // counted: the byte counters measure the training traffic and its compression.
  template <typename T>
  Request send_raw(const T* items, size_t n, int dest, MsgKind kind, uint32_t step, int64_t mb) {
    const WireHeader h = make_header(kind, step, mb, kBitsRaw, static_cast<int64_t>(n), 1, n * sizeof(T));
    std::vector<uint8_t> buf(sizeof(WireHeader) + n * sizeof(T));
    std::memcpy(buf.data(), &h, sizeof h);
    if (n) std::memcpy(buf.data() + sizeof h, items, n * sizeof(T));
    if (kind != MsgKind::State) count(buf.size(), buf.size());
    return transport_.isend(std::move(buf), dest, make_tag(kind, mb));
  }
  template <typename T>
  Request post_raw(int source, MsgKind kind, int64_t mb, size_t n) {
    return transport_.irecv(sizeof(WireHeader) + n * sizeof(T), source, make_tag(kind, mb));
  }
  template <typename T>
  std::vector<T> finish_raw(Request& r, MsgKind kind, uint32_t step, int64_t mb, size_t n) {
    check_raw(r, kind, step, mb, n * sizeof(T), static_cast<int64_t>(n));
    std::vector<T> out(n);
    if (n) std::memcpy(out.data(), r.buffer().data() + sizeof(WireHeader), n * sizeof(T));
    return out;
  }
  template <typename T>
  T receive_one(int source, MsgKind kind, uint32_t step, int64_t mb = 0) {
    Request r = post_raw<T>(source, kind, mb, 1);
    return finish_raw<T>(r, kind, step, mb, 1)[0];
  }

  // Variable-size bytes as two messages of `kind` (State unless said): the size (micro-batch
  // 0), then the bytes (1).
  void send_blob(const std::vector<uint8_t>& bytes, int dest, uint32_t step, MsgKind kind = MsgKind::State);
  std::vector<uint8_t> receive_blob(int source, uint32_t step, MsgKind kind = MsgKind::State);

  Transport& transport() { return transport_; }

 private:
  void check_raw(Request& r, MsgKind kind, uint32_t step, int64_t mb, size_t bytes, int64_t rows);
  void count(uint64_t raw, uint64_t wire) {
    stats_.bytes_raw += raw;
    stats_.bytes_wire += wire;
    stats_.messages += 1;
  }
  int64_t round_of(int64_t chunk) const { return chunk / stages_; }

  Transport& transport_;
  RankStats& stats_;
  int64_t stages_;
};

}  // namespace arceus
