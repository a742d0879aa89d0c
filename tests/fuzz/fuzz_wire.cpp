// Fuzz target: the wire header check and the codec decode of a received payload
// (ranks/wire.h, ranks/codec.h).
//
// Input: 8 bytes saying what the receiver expects (kind, bits, rows, cols, step, micro-batch,
// chunk: byte 0 -> kind 1..9, byte 1 -> bits 0/32/16/8/4, bytes 2 and 3 -> rows and cols
// 0..255, bytes 4-5 -> step, 6 -> micro-batch, 7 -> chunk), then the received message: a
// 40-byte WireHeader and its payload. The contract checked:
// - check_header accepts the message or throws WireError; when it accepts, the payload is
//   exactly the expected matrix's encoded size and decodes (the messenger's path);
// - for any header whatever, decoding the payload with the header's own shape and bits (a
//   receiver that trusted it) reads only the payload or throws CodecError.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ranks/codec.h"
#include "ranks/wire.h"
#include "tests/fuzz/fuzz.h"

using namespace arceus;

namespace {

constexpr size_t kSpec = 8;
const uint8_t kBits[5] = {kBitsRaw, 32, 16, 8, 4};

WireHeader expected_header(const uint8_t* spec) {
  WireHeader h;
  h.kind = static_cast<uint16_t>(1 + spec[0] % 9);
  h.bits = kBits[spec[1] % 5];
  h.rows = spec[2];
  h.cols = spec[3];
  h.step = static_cast<uint32_t>(spec[4] | (spec[5] << 8));
  h.micro_batch = spec[6];
  h.chunk = spec[7];
  h.payload_bytes = h.bits == kBitsRaw ? static_cast<uint64_t>(h.rows * h.cols) * 4 : encoded_size(h.rows, h.cols, h.bits);
  return h;
}

// decode(payload, bytes, rows, cols, bits) into a matrix sized when the payload's size fits.
void decode_payload(const uint8_t* payload, size_t bytes, int64_t rows, int64_t cols, int bits) {
  std::vector<float> out;
  if (encoded_size(rows, cols, bits) == bytes) out.resize(static_cast<size_t>(rows) * static_cast<size_t>(cols));
  decode(payload, bytes, rows, cols, bits, out.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kSpec) return 0;
  const WireHeader want = expected_header(data);
  const uint8_t* message = data + kSpec;
  const size_t received = size - kSpec;
  WireHeader got;
  std::memset(&got, 0, sizeof got);
  std::memcpy(&got, message, std::min(sizeof got, received));  // as Messenger does
  const uint8_t* payload = message + sizeof(WireHeader);
  const size_t payload_bytes = received > sizeof(WireHeader) ? received - sizeof(WireHeader) : 0;

  bool accepted = true;
  try {
    check_header(got, want, received, "rank 1 (stage 1)");
  } catch (const WireError&) {
    accepted = false;
  }
  if (accepted && want.bits != kBitsRaw) {
    try {
      decode_payload(payload, payload_bytes, want.rows, want.cols, want.bits);
    } catch (const CodecError& e) {
      fuzz::violated(std::string("check_header accepted a payload the codec refuses: ") + e.what());
    }
  }
  if (received >= sizeof(WireHeader)) {
    try {
      decode_payload(payload, payload_bytes, got.rows, got.cols, got.bits);
    } catch (const CodecError&) {
    }
  }
  return 0;
}
