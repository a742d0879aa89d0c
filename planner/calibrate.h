// The micro-benchmarks behind a Calibration (planner/calibration.h), run on this machine with
// the BLAS and the thread count already set by the caller. The only planner file with torch
// (calibrate.cpp, library arceus_calibrate); this header is torch-free.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "planner/calibration.h"

namespace arceus::plan {

// One layer to time, built as the trainer builds it (make_mlp_slice / make_gpt_slice of one
// layer), at the micro-batch sizes `rows`.
struct LayerProbe {
  std::string key;
  bool transformer = false;
  std::vector<int64_t> layer_sizes;  // MLP
  int64_t layer = 0;
  int64_t layers = 0;                // the model's layer count (the last one computes the loss)
  int64_t vocab = 0, context = 0, n_emb = 0, n_heads = 0, n_blocks = 0;  // GPT
  double dropout = 0;
  std::vector<int64_t> rows;
};

// Times every (probe, rows) not yet in `cal` (all of them with `refresh`): forward, backward,
// and the split backward's I and W, as the stage worker runs them; a line per layer to `log`.
void calibrate_layers(Calibration& cal, const std::vector<LayerProbe>& probes, bool refresh, std::ostream& log);

// Codec seconds per MiB at 32/16/8/4 bits, one message's latency (a TCP ping-pong over
// loopback, as Open MPI's TCP transport sends), the optimizers' seconds per parameter.
void calibrate_system(Calibration& cal, std::ostream& log);

// The calibration `arceus plan` predicts with: the cache file at `path` (not read with
// `refresh`) when it holds every probe at each of its rows; else what is missing is measured
// (everything, with the system's costs, when there is no cache: a new Calibration of `cpu`,
// `blas`, `threads`), stamped with the local time and how long it took, and written back to
// `path` (a failure to write is a warning on `log`, not an error). Probes with a key already
// seen are skipped (a GPT's blocks share one). PlanError when the cache is not a calibration.
Calibration load_or_calibrate(const std::string& path, bool refresh, const std::string& cpu, const std::string& blas,
                              int64_t threads, const std::vector<LayerProbe>& probes, std::ostream& log);

}  // namespace arceus::plan
