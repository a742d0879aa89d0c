// What a job reports: the per-rank timing table, the measured and simulated bubble, the
// summary.json skeleton and its atomic writer, the console progress line. Torch-free.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ranks/job.h"
#include "ranks/rank_stats.h"
#include "ranks/run_state.h"
#include "ranks/timing.h"

namespace arceus {

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string human_bytes(double bytes);

// One rank's entry of summary.json's epochs[].timing.
nlohmann::json stats_to_json(const RankStats& s, const std::string& host, int rank, int64_t replica = 0);

// The timing table printed after each epoch: a header line and one line per entry of `all`.
// `hosts` by transport rank.
std::vector<std::string> timing_table(const Job& job, const std::vector<RankStats>& all,
                                      const std::vector<std::string>& hosts);
// The rank a stats entry is reported under: the process rank (every stage is in rank 0's
// process in the in-process run).
int reported_rank(const Job& job, const RankStats& s);
// The replica a stage rank's statistics belong to (0 for rank 0 and without replicas).
int64_t replica_of(const Job& job, const RankStats& s);

// Mean over the stage ranks of the idle fraction inside training steps.
double measured_bubble(const std::vector<RankStats>& all);
// The bubble of the job's action lists for M micro-batches, from the validator's simulation:
// a chunk's forward costs what the partition cost model estimates for its layers, a backward
// two forwards, I and W one each; messages are free.
double simulated_bubble(const Job& job, int64_t micro_batches);

// Bytes (float32-equivalent, on the wire) of one training step of `rows` samples on all
// ranks, from the message shapes: inputs, labels, activations and gradients between chunks on
// different stages, control and metrics. Zero in the in-process run (no network).
std::pair<double, double> step_message_bytes(const Job& job, int64_t rows);

// The same messages by (sending, receiving) transport rank.
struct LinkBytes {
  int from = 0, to = 0;
  double raw = 0, wire = 0;
};
std::vector<LinkBytes> step_links(const Job& job, int64_t rows);

// summary.json before the first epoch: run shape, ranks with roles and hosts, stages with
// layers, parameters and estimated cost. `hosts` by transport rank.
nlohmann::json initial_summary(const Job& job, const std::string& blas, const std::vector<std::string>& hosts);

// Writes `summary` with "state" = state to <dir>/summary.json (write_atomically: temporary
// file, fsync, rename, directory fsync); a failure is printed, not thrown.
void write_summary_file(const std::string& dir, nlohmann::json& summary, RunState state);

class Progress {
 public:
  // mode: "bar" (one line rewritten with \r), "lines" (a line every fifth of an epoch), "none".
  // unit: what the rate counts ("samples", "tokens").
  Progress(bool quiet, const std::string& mode, std::string unit)
      : quiet_(quiet || mode == "none"), tty_(mode == "bar"), unit_(std::move(unit)) {}
  void update(int64_t epoch, int64_t epochs, int64_t k, int64_t n, double rate, double loss, double acc);

 private:
  bool quiet_, tty_;
  std::string unit_;
  Clock::time_point last_ = Clock::now() - std::chrono::seconds(1);
};

// With ARCEUS_PROGRESS_FILE set (by `arceus run`, the restart supervisor), rank 0 overwrites
// that file after every training step with one fixed-width line "epoch step steps_per_epoch":
// where a run that fails had got to. One pwrite per step; nothing without the variable.
class ProgressFile {
 public:
  ProgressFile();
  ~ProgressFile();
  ProgressFile(const ProgressFile&) = delete;
  ProgressFile& operator=(const ProgressFile&) = delete;
  void step(int64_t epoch, int64_t step, int64_t steps_per_epoch);

 private:
  int fd_ = -1;
};

}  // namespace arceus
