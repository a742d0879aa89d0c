// What `arceus plan` measured on this machine (planner/calibrate.h measures it): seconds of
// each action kind per layer and micro-batch size, codec seconds per MiB per bit width, the
// per-message latency, and the optimizer's seconds per parameter. Cached as JSON in a file
// keyed by CPU model, BLAS kernel and thread count (its path, its reading and writing are
// here). Torch-free.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace arceus::plan {

// One layer type and size: seconds per call at each measured micro-batch size (rows =
// samples; sequences for a GPT layer). f: forward (with autograd recording, as in training);
// b: full backward; i, w: the split backward's input-gradient and weight-gradient parts.
struct LayerTiming {
  std::vector<int64_t> rows;  // ascending
  std::vector<double> f, b, i, w;
};

struct Calibration {
  std::string cpu;            // /proc/cpuinfo model name
  std::string blas;           // the BLAS as the launcher describes it (library, kernel)
  int64_t threads = 1;        // LibTorch/BLAS threads the micro-benchmarks ran with
  std::string measured_at;    // local time
  double seconds = 0;         // how long the last measurement took
  std::map<std::string, LayerTiming> layers;
  // Codec, seconds per MiB of float input: encode (deterministic: activations; stochastic:
  // gradients), decode. Index: bits.
  std::map<int, double> encode_s_per_mib, encode_stochastic_s_per_mib, decode_s_per_mib;
  double latency_s = 50e-6;   // one message, one way (TCP over loopback; the wire's latency is on top)
  double sgd_s_per_param = 1e-9;
  double adamw_s_per_param = 4e-9;
};

// Seconds of one call of `kind` ('F', 'B', 'I', 'W') of layer `key` at `rows`: linear between
// the measured sizes, proportional to rows outside them. PlanError (planner.h) when the layer
// was not measured.
double layer_seconds(const Calibration& cal, const std::string& key, char kind, int64_t rows);
bool has_rows(const Calibration& cal, const std::string& key, int64_t rows);
// Codec seconds for `bytes_float` bytes of float32 input.
double codec_seconds(const Calibration& cal, int bits, double bytes_float, bool encode, bool stochastic);

std::string to_json(const Calibration& cal);
// PlanError naming `what` (a file name) when the text is not a calibration.
Calibration calibration_from_json(const std::string& text, const std::string& what);

// The cache file `path` read; PlanError naming it when it cannot be read or is not a calibration.
Calibration read_calibration_file(const std::string& path);
// Writes `cal` to `path` (its directory created; write_atomically, common/atomic_file.h).
// FileError naming the path and the reason.
void write_calibration_file(const std::string& path, const Calibration& cal);

// The cache file: $ARCEUS_CALIBRATION_DIR, else $XDG_CACHE_HOME/arceus, else ~/.cache/arceus,
// then calibration-<cpu>-<blas>-<threads>.json with every character outside [A-Za-z0-9._-]
// replaced by '_'.
std::string calibration_path(const std::string& cpu, const std::string& blas, int64_t threads);

}  // namespace arceus::plan
