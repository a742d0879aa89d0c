// Wire format: every message is a WireHeader followed by its payload, in one MPI message.
// Torch-free and MPI-free so it can be unit-tested alone.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace arceus {

class WireError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t kWireMagic = 0x41524345;  // "ARCE"
inline constexpr uint16_t kWireVersion = 3;  // 2: learning rate in ControlPayload, Norm; 3: chunk

// What a message carries. Values are part of the wire format: never renumber.
enum class MsgKind : uint16_t {
  Control = 1,     // orchestrator -> stage: what to do next (ControlPayload)
  Input = 2,       // orchestrator -> first stage: a micro-batch of inputs (codec payload)
  Labels = 3,      // orchestrator -> last stage: int32 labels of a micro-batch
  Activation = 4,  // stage k -> stage k+1 (codec payload)
  Gradient = 5,    // stage k+1 -> stage k (codec payload)
  Metrics = 6,     // last stage -> orchestrator: loss sum, correct, count of a step
  Stats = 7,       // stage -> orchestrator: timing and byte counters of an epoch
  State = 8,       // checkpoint state: stage -> orchestrator (save), orchestrator -> stage
                   // (resume); micro_batch 0 carries the size, micro_batch 1 the bytes
  Norm = 9,        // gradient clipping: stage -> orchestrator the squared norm of its gradients,
                   // orchestrator -> stage the global norm (one double each way)
  Sync = 10,       // replicas' gradient ring: one hop of a bucket's slice (codec payload;
                   // micro_batch = the hop)
  Replica = 11,    // checkpoint: a replica's parameter hash, stage -> orchestrator (uint64)
  Feed = 12,       // dataset_config.feed local: a first stage's check of its own copy of the data
                   // (a JSON blob, stage -> orchestrator, before training)
};
const char* kind_name(MsgKind kind);

// bits value for payloads that are not codec-encoded floats.
inline constexpr uint8_t kBitsRaw = 0;

struct WireHeader {
  uint32_t magic = kWireMagic;
  uint16_t version = kWireVersion;
  uint16_t kind = 0;         // MsgKind
  uint32_t step = 0;         // global step counter of the sender (checked by the receiver)
  uint16_t micro_batch = 0;  // index within the step
  uint8_t bits = kBitsRaw;   // 32 | 16 | 8 | 4 for codec payloads, 0 for raw structs
  uint8_t chunk = 0;         // activations and gradients: the chunk that receives it; else 0
  int64_t rows = 0;          // shape of a codec payload [rows, cols]
  int64_t cols = 0;
  uint64_t payload_bytes = 0;
};
static_assert(sizeof(WireHeader) == 40, "WireHeader is part of the wire format");

// Throws WireError naming the field, the value received and the value expected, and `from`
// (e.g. "rank 2 (stage 2)"). Checks magic, version, kind, step, micro_batch, bits, shape
// and payload size; `received_bytes` is what MPI delivered in total.
void check_header(const WireHeader& got, const WireHeader& expected, uint64_t received_bytes,
                  const std::string& from);

// Tags: kind in the high 4 bits, then the chunk's round (chunk / S: which of a rank's
// chunks, 0..kMaxChunksPerRank-1) in 3 bits, then the micro-batch in 8 bits. The largest tag,
// Norm/7/255 = 20479, stays under 32767, the MPI_TAG_UB every MPI guarantees. Every (kind,
// round, micro-batch) has its own tag, and MPI's per-(source, tag) ordering keeps
// consecutive steps apart. Chunks of one job: at most kMaxChunks (the header's chunk field).
inline constexpr int kMaxMicroBatches = 256;
inline constexpr int kMaxChunksPerRank = 8;
inline constexpr int kMaxChunks = 255;
inline int make_tag(MsgKind kind, int64_t micro_batch, int64_t round = 0) {
  return (static_cast<int>(kind) * kMaxChunksPerRank + static_cast<int>(round)) * kMaxMicroBatches +
         static_cast<int>(micro_batch);
}

// Control messages (payload of MsgKind::Control).
// Outer: training.sync diloco, a round's end (the replicas' outer step).
enum class Command : uint32_t { Train = 1, Eval = 2, EpochEnd = 3, Stop = 4, Checkpoint = 5, Outer = 6 };
struct ControlPayload {
  uint32_t command = 0;  // Command
  uint32_t reserved = 0;
  int64_t rows = 0;           // samples in this batch
  int64_t micro_batches = 0;  // M for this batch (already capped at rows)
  double learning_rate = 0;   // Train: the rate of this step (rank 0 owns warm-up and decay)
};
static_assert(sizeof(ControlPayload) == 32, "ControlPayload is part of the wire format");

struct MetricsPayload {
  double loss_sum = 0;  // sum over the batch's targets (samples; tokens for a GPT) of their loss
  int64_t correct = 0;
  int64_t count = 0;    // targets: rows for an MLP, rows x context for a GPT
};
static_assert(sizeof(MetricsPayload) == 24, "MetricsPayload is part of the wire format");

}  // namespace arceus
