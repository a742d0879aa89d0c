// The job table on disk: <output root>/jobs.json, rewritten atomically after every change of a
// job (created, placed, asked to train, started, ended, a device lost), so that a server that
// is started again (by hand, or by `arceus run` after a world rank died) lists its jobs and
// their runs, and goes on with the job it was running.
#pragma once

#include <string>

namespace arceus::serve {

struct ServeState;

// Writes the table to s.jobs_file (caller holds the lock; nothing when it is empty). A write
// that fails is reported once on stderr and does not fail the request.
void save_jobs(ServeState& s);

// Reads s.jobs_file, when it exists, into the empty job table (before the HTTP server starts).
// Final jobs come back as they ended. A job that was queued, training or recovering was
// interrupted: a job on the world's ranks is queued again with `resume: true` (from its last
// checkpoint, or step 0 without one); a job on devices goes back to initialized with
// `resume: true`, for its devices to register again. Returns a line for the log ("" when there
// was no table). Throws std::runtime_error naming the file and what is wrong with it.
std::string restore_jobs(ServeState& s);

}  // namespace arceus::serve
