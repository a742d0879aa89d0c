// HDF5 files a run leaves: checkpoint.h5 (resume, eval, inspect) and metrics.h5 (per step,
// per epoch, per rank). Torch-free and MPI-free: tensors travel as NamedArray.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace arceus {

// Missing, corrupt or mismatched files; the message names the file and the problem.
class StorageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A float32 tensor under its global name (e.g. "layers.2.weight"), row-major.
struct NamedArray {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;  // product(shape) values
};

// A named byte string (RNG states).
struct NamedBytes {
  std::string name;
  std::vector<uint8_t> bytes;
};

// Everything needed to resume exactly. Layout in the file:
//   /               attributes: format = "arceus-checkpoint", version = 1, config (YAML text),
//                   epoch, step, global_step, plus every entry of `attributes`
//   /parameters/<name>   float32 datasets with their shapes
//   /optimizer/<name>    float32 datasets: per-parameter optimizer state, named
//                        "<parameter>:<state>" (e.g. "layers.0.weight:momentum_buffer")
//   /rng/<name>          uint8 datasets (e.g. "stage0" = that stage's torch generator state)
struct CheckpointData {
  std::string config_yaml;
  int64_t epoch = 0;         // completed epochs
  int64_t step = 0;          // completed steps of epoch `epoch + 1` (0 at an epoch boundary)
  uint64_t global_step = 0;  // the runtime's batch counter (seeds stochastic rounding)
  std::map<std::string, std::string> attributes;  // e.g. optimizer, world_size, written_at
  std::vector<NamedArray> parameters;
  std::vector<NamedArray> optimizer;
  std::vector<NamedBytes> rng;
};

// Writes `path` atomically: to "<path>.tmp" first, flushed and closed, then fsynced and renamed
// over `path` (replace_atomically, common/atomic_file.h), so a crash mid-write leaves the
// previous checkpoint intact. Creates the directory.
void write_checkpoint(const std::string& path, const CheckpointData& data);

// The first half of write_checkpoint, not atomic: writes the checkpoint straight to `path`
// (truncating it) and closes it. write_checkpoint calls it with "<path>.tmp"; tests call it
// to simulate a crash between the temporary file and the rename.
void write_checkpoint_file(const std::string& path, const CheckpointData& data);

// Reads a checkpoint; StorageError for a missing file, a file that is not HDF5 (or is
// truncated), or one that is not an arceus checkpoint (format/version attributes).
CheckpointData read_checkpoint(const std::string& path);

// `arceus inspect`: the config, epoch/step, then each parameter and optimizer tensor's name,
// shape and L2 norm, one per line.
void print_checkpoint(const CheckpointData& data, std::ostream& out);

// Metrics, appended as training goes (HDF5 files with chunked, extendible 1-D datasets: one
// group per table, one dataset per column, so pandas reads a table as
// pd.DataFrame({k: f["steps"][k][:] for k in f["steps"]})).
struct StepRow {
  int64_t epoch = 0, step = 0;  // step within the epoch, 1-based
  double loss = 0, accuracy = 0, samples_per_second = 0;
  double bytes_raw = 0, bytes_wire = 0;  // messages of this step, all ranks
};
struct EpochRow {
  int64_t epoch = 0;
  double train_loss = 0, train_accuracy = 0, val_loss = 0, val_accuracy = 0, seconds = 0;
  double samples_per_second = 0, bytes_raw = 0, bytes_wire = 0;
};
struct RankRow {
  int64_t epoch = 0, rank = 0, stage = 0;  // stage -1 = orchestrator
  double forward = 0, backward = 0, optimizer = 0, codec = 0, comm_wait = 0, idle = 0;
  double wall = 0, cpu = 0, gflops = 0;
  int64_t replica = 0;  // 0 without replicas (and for rank 0)
  double sync = 0;      // replicas: seconds waiting for the gradient sums after the backward
};

class MetricsFile {
 public:
  // Creates `path` (groups /steps, /epochs, /ranks), or with `append` opens an existing one
  // (resume) and keeps its rows; creates it when missing.
  MetricsFile(const std::string& path, bool append);
  ~MetricsFile();
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;

  void append(const StepRow& row);
  void append(const EpochRow& row);
  void append(const RankRow& row);
  void flush();  // H5Fflush: rows so far survive a crash

  // Resume: drops the rows written after a checkpoint at (`epochs_done` completed epochs,
  // `step_in_next_epoch` completed steps of epoch epochs_done + 1), i.e. the CheckpointData's
  // epoch and step, so that the resumed run's rows do not appear twice. Kept:
  //   steps          epoch <= epochs_done, or epoch == epochs_done + 1 and step <= step_in_next_epoch
  //   epochs, ranks  epoch <= epochs_done
  // Rows are appended in training order, so the kept rows are a prefix; each table is cut
  // before its first row past the checkpoint (rows after it are dropped even if they would
  // pass), buffered rows included. The columns are shrunk with H5Dset_extent and the file is
  // flushed; a crash between two columns leaves unequal lengths, which the next append-mode
  // open cuts to the shortest (the kept prefix). Returns the number of rows dropped, all
  // tables together. StorageError for negative arguments or after a failed write.
  int64_t truncate_after(int64_t epochs_done, int64_t step_in_next_epoch);

  // Rows per table (for tests).
  int64_t rows(const std::string& table) const;

 private:
  friend void print_metrics(const std::string& path, std::ostream& out);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `arceus inspect metrics.h5`: each table's row count and its last row, one line per table.
// StorageError when the file is missing, unreadable or not a metrics file.
void print_metrics(const std::string& path, std::ostream& out);

// Reads one column of a metrics table (tests, tools).
std::vector<double> read_metrics_column(const std::string& path, const std::string& table, const std::string& column);

}  // namespace arceus
