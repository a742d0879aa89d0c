// Wire header checks name the field, the value received and the value expected.
#include <gtest/gtest.h>

#include <set>

#include "ranks/wire.h"

namespace arceus {
namespace {

WireHeader header() {
  WireHeader h;
  h.kind = static_cast<uint16_t>(MsgKind::Activation);
  h.step = 7;
  h.micro_batch = 2;
  h.bits = 8;
  h.rows = 64;
  h.cols = 128;
  h.payload_bytes = 64 * 4 + 64 * 128;
  return h;
}

std::string error_of(const WireHeader& got, uint64_t received) {
  try {
    check_header(got, header(), received, "rank 1 (stage 1)");
  } catch (const WireError& e) {
    return e.what();
  }
  return "";
}

const uint64_t kFull = sizeof(WireHeader) + 64 * 4 + 64 * 128;

TEST(Wire, GoodHeaderPasses) { EXPECT_EQ(error_of(header(), kFull), ""); }

TEST(Wire, BadMagicIsNamed) {
  WireHeader h = header();
  h.magic = 0xdeadbeef;
  const std::string e = error_of(h, kFull);
  EXPECT_NE(e.find("magic=0xdeadbeef"), std::string::npos) << e;
  EXPECT_NE(e.find("rank 1 (stage 1)"), std::string::npos) << e;
}

TEST(Wire, EachMismatchNamesReceivedAndExpected) {
  WireHeader h = header();
  h.step = 8;
  h.bits = 4;
  h.rows = 32;
  const std::string e = error_of(h, kFull);
  EXPECT_NE(e.find("step=8 (expected 7)"), std::string::npos) << e;
  EXPECT_NE(e.find("bits=4 (expected 8)"), std::string::npos) << e;
  EXPECT_NE(e.find("rows=32 (expected 64)"), std::string::npos) << e;
  EXPECT_NE(e.find("activation"), std::string::npos) << e;
}

TEST(Wire, ShortMessageIsAnError) {
  const std::string e = error_of(header(), 12);
  EXPECT_NE(e.find("12 bytes received"), std::string::npos) << e;
  const std::string e2 = error_of(header(), kFull - 1);
  EXPECT_NE(e2.find("header announces"), std::string::npos) << e2;
}

TEST(Wire, TagsAreDistinctPerKindRoundAndMicroBatch) {
  std::set<int> tags;
  for (auto k : {MsgKind::Control, MsgKind::Input, MsgKind::Labels, MsgKind::Activation, MsgKind::Gradient,
                 MsgKind::Metrics, MsgKind::Stats, MsgKind::State, MsgKind::Norm, MsgKind::Sync, MsgKind::Replica, MsgKind::Feed})
    for (int round = 0; round < kMaxChunksPerRank; ++round)
      for (int mb = 0; mb < kMaxMicroBatches; ++mb)
        EXPECT_TRUE(tags.insert(make_tag(k, mb, round)).second) << kind_name(k) << " round " << round << " mb " << mb;
  // MPI guarantees tags up to 32767.
  EXPECT_LE(make_tag(MsgKind::Feed, kMaxMicroBatches - 1, kMaxChunksPerRank - 1), 32767);
}

TEST(Wire, ChunkMismatchIsNamed) {
  WireHeader got = header();
  got.chunk = 3;
  const std::string e = error_of(got, kFull);
  EXPECT_NE(e.find("chunk=3 (expected 0)"), std::string::npos) << e;
}

}  // namespace
}  // namespace arceus
