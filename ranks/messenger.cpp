#include "ranks/messenger.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include "ranks/codec.h"

namespace arceus {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

WireHeader make_header(MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows, int64_t cols,
                       uint64_t payload, int64_t chunk) {
  WireHeader h;
  h.kind = static_cast<uint16_t>(kind);
  h.step = step;
  h.micro_batch = static_cast<uint16_t>(mb);
  h.bits = static_cast<uint8_t>(bits);
  h.chunk = static_cast<uint8_t>(chunk);
  h.rows = rows;
  h.cols = cols;
  h.payload_bytes = payload;
  return h;
}

std::string describe_peer(int rank) {
  return rank == 0 ? std::string("rank 0 (orchestrator)")
                   : "rank " + std::to_string(rank) + " (stage " + std::to_string(rank) + ")";
}

Request Messenger::send_tensor(const at::Tensor& t, int dest, MsgKind kind, uint32_t step, int64_t mb, int bits,
                               bool stochastic, uint64_t seed, int64_t chunk, at::Tensor* residual) {
  const auto t0 = Clock::now();
  at::Tensor x = t.detach().to(at::kFloat).contiguous();
  const int64_t rows = x.size(0), cols = x.numel() / std::max<int64_t>(1, x.size(0));
  if (residual && residual->defined() && residual->sizes().equals(x.sizes())) x = (x + *residual).contiguous();
  const size_t payload = encoded_size(rows, cols, bits);
  std::vector<uint8_t> buf(sizeof(WireHeader) + payload);
  const WireHeader h = make_header(kind, step, mb, bits, rows, cols, payload, chunk);
  std::memcpy(buf.data(), &h, sizeof h);
  encode(x.data_ptr<float>(), rows, cols, bits, stochastic, seed, buf.data() + sizeof(WireHeader));
  if (residual) {
    at::Tensor got = at::empty_like(x);
    decode(buf.data() + sizeof(WireHeader), rows, cols, bits, got.data_ptr<float>());
    *residual = x - got;
  }
  stats_.codec += seconds_since(t0);
  count(sizeof(WireHeader) + static_cast<uint64_t>(rows * cols) * 4, buf.size());
  return transport_.isend(std::move(buf), dest, make_tag(kind, mb, round_of(chunk)));
}

Request Messenger::send_encoded(std::vector<uint8_t> payload, int dest, MsgKind kind, uint32_t step, int64_t mb,
                                int bits, int64_t rows, int64_t cols) {
  if (payload.size() != encoded_size(rows, cols, bits)) {
    throw CodecError("[codec] an encoded [" + std::to_string(rows) + ", " + std::to_string(cols) + "] payload at " +
                     std::to_string(bits) + " bits has " + std::to_string(encoded_size(rows, cols, bits)) +
                     " bytes, got " + std::to_string(payload.size()));
  }
  std::vector<uint8_t> buf(sizeof(WireHeader) + payload.size());
  const WireHeader h = make_header(kind, step, mb, bits, rows, cols, payload.size());
  std::memcpy(buf.data(), &h, sizeof h);
  std::memcpy(buf.data() + sizeof h, payload.data(), payload.size());
  count(sizeof(WireHeader) + static_cast<uint64_t>(rows * cols) * 4, buf.size());
  return transport_.isend(std::move(buf), dest, make_tag(kind, mb));
}

const uint8_t* Messenger::finish_encoded(Request& r, MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows,
                                         int64_t cols) {
  transport_.wait(r);
  WireHeader got;
  std::memcpy(&got, r.buffer().data(), std::min(sizeof got, r.received_bytes()));
  const WireHeader want = make_header(kind, step, mb, bits, rows, cols, encoded_size(rows, cols, bits));
  check_header(got, want, r.received_bytes(), describe_peer(r.peer()));
  return r.buffer().data() + sizeof(WireHeader);
}

Request Messenger::post_tensor(int source, MsgKind kind, int64_t mb, int bits, int64_t rows, int64_t cols,
                               int64_t chunk) {
  return transport_.irecv(sizeof(WireHeader) + encoded_size(rows, cols, bits), source,
                          make_tag(kind, mb, round_of(chunk)));
}

at::Tensor Messenger::finish_tensor(Request& r, MsgKind kind, uint32_t step, int64_t mb, int bits, int64_t rows,
                                    int64_t cols, int64_t chunk) {
  transport_.wait(r);
  const auto t0 = Clock::now();
  WireHeader got;
  std::memcpy(&got, r.buffer().data(), std::min(sizeof got, r.received_bytes()));
  const WireHeader want = make_header(kind, step, mb, bits, rows, cols, encoded_size(rows, cols, bits), chunk);
  check_header(got, want, r.received_bytes(), describe_peer(r.peer()));
  at::Tensor out = at::empty({rows, cols}, at::kFloat);
  decode(r.buffer().data() + sizeof(WireHeader), rows, cols, bits, out.data_ptr<float>());
  stats_.codec += seconds_since(t0);
  return out;
}

void Messenger::check_raw(Request& r, MsgKind kind, uint32_t step, int64_t mb, size_t bytes, int64_t rows) {
  transport_.wait(r);
  WireHeader got;
  std::memcpy(&got, r.buffer().data(), std::min(sizeof got, r.received_bytes()));
  const WireHeader want = make_header(kind, step, mb, kBitsRaw, rows, 1, bytes);
  check_header(got, want, r.received_bytes(), describe_peer(r.peer()));
}

void Messenger::send_blob(const std::vector<uint8_t>& bytes, int dest, uint32_t step, MsgKind kind) {
  const uint64_t n = bytes.size();
  Request a = send_raw(&n, 1, dest, kind, step, 0);
  Request b = send_raw(bytes.data(), bytes.size(), dest, kind, step, 1);
  transport_.wait(a);
  transport_.wait(b);
}

std::vector<uint8_t> Messenger::receive_blob(int source, uint32_t step, MsgKind kind) {
  const uint64_t n = receive_one<uint64_t>(source, kind, step, 0);
  Request b = post_raw<uint8_t>(source, kind, 1, n);
  return finish_raw<uint8_t>(b, kind, step, 1, n);
}

}  // namespace arceus
