#include "ranks/wire.h"

#include <sstream>

namespace arceus {

const char* kind_name(MsgKind kind) {
  switch (kind) {
    case MsgKind::Control: return "control";
    case MsgKind::Input: return "input";
    case MsgKind::Labels: return "labels";
    case MsgKind::Activation: return "activation";
    case MsgKind::Gradient: return "gradient";
    case MsgKind::Metrics: return "metrics";
    case MsgKind::Stats: return "stats";
    case MsgKind::State: return "state";
    case MsgKind::Norm: return "norm";
    case MsgKind::Sync: return "sync";
    case MsgKind::Replica: return "replica";
    case MsgKind::Feed: return "feed";
  }
  return "unknown";
}

namespace {
template <typename T>
void expect_field(std::ostringstream& errors, const char* field, T got, T expected) {
  if (got != expected) {
    errors << " " << field << "=" << +got << " (expected " << +expected << ")";
  }
}
}  // namespace

void check_header(const WireHeader& got, const WireHeader& expected, uint64_t received_bytes,
                  const std::string& from) {
  std::ostringstream head;
  head << "[wire] bad " << kind_name(static_cast<MsgKind>(expected.kind)) << " message from " << from
       << ":";
  if (received_bytes < sizeof(WireHeader)) {
    head << " " << received_bytes << " bytes received, shorter than the " << sizeof(WireHeader)
         << "-byte header";
    throw WireError(head.str());
  }
  std::ostringstream errors;
  if (got.magic != kWireMagic) {
    errors << " magic=0x" << std::hex << got.magic << " (expected 0x" << kWireMagic << ")" << std::dec;
    throw WireError(head.str() + errors.str());
  }
  expect_field(errors, "version", got.version, expected.version);
  expect_field(errors, "kind", got.kind, expected.kind);
  expect_field(errors, "step", got.step, expected.step);
  expect_field(errors, "micro_batch", got.micro_batch, expected.micro_batch);
  expect_field(errors, "chunk", got.chunk, expected.chunk);
  expect_field(errors, "bits", got.bits, expected.bits);
  expect_field(errors, "rows", got.rows, expected.rows);
  expect_field(errors, "cols", got.cols, expected.cols);
  expect_field(errors, "payload_bytes", got.payload_bytes, expected.payload_bytes);
  if (received_bytes != sizeof(WireHeader) + got.payload_bytes) {
    errors << " received " << received_bytes << " bytes but the header announces "
           << sizeof(WireHeader) + got.payload_bytes;
  }
  if (!errors.str().empty()) throw WireError(head.str() + errors.str());
}

}  // namespace arceus
