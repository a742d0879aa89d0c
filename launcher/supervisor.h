// `arceus run [--max-restarts N] [--pause S] -- COMMAND...`: a supervisor outside the MPI job,
// as torchrun is. It runs COMMAND (e.g. `mpirun -np 3 build/arceus train CONFIG ...` or the
// same with srun), and when it fails starts it again from the latest checkpoint of the job's
// output.dir (adding `--resume <output.dir>/checkpoint.h5`), at most N times, after a pause.
// A failure before the first checkpoint restarts from the beginning; a set-up error (config,
// data, partition, checkpoint: the run printed "error: [..." before training) or a usage
// error (exit 2) is not retried: it would fail the same way.
//
// Each restart is logged with the failed rank and host (from Open MPI's or the job's own
// message), the step the run had reached (ARCEUS_PROGRESS_FILE, written by rank 0 every step)
// and the step it resumes from; the list goes into summary.json as `restarts` with the total of
// steps redone (`steps_redone`).
#pragma once

#include <string>
#include <vector>

namespace arceus {

struct SuperviseOptions {
  int max_restarts = 3;
  double pause = 3.0;           // seconds between a failure and the restart
  std::vector<std::string> command;
};

int run_supervised(const SuperviseOptions& options);

}  // namespace arceus
