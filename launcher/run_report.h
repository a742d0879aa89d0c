// `arceus report RUN_DIR [-o FILE]`: the dashboard's charts for a batch run (finished or still
// running), from its summary.json and metrics.h5, as one self-contained HTML file: the data,
// the style and the script inline, nothing fetched. For SLURM users who never start the shim
// (the sbatch scripts call it at the end of a job).
#pragma once

#include <string>

namespace arceus {

struct ReportOptions {
  std::string run_dir;
  std::string output;  // "" = RUN_DIR/report.html
};

// The report's data: {"report": true, "run_dir", "generated_at", "job", "metrics", "logs"},
// the shapes of GET /api/jobs/<id> and GET /api/jobs/<id>/metrics. Throws std::runtime_error
// naming the file when summary.json is missing or not a run's summary; a metrics.h5 that is
// missing or unreadable (a run still writing it) is replaced by the epochs' step losses, and
// `warning` says so.
std::string report_data_json(const std::string& run_dir, std::string* warning);

// Writes the report (write_atomically: temporary file, fsync, rename); returns the exit code.
int run_report(const ReportOptions& options);

}  // namespace arceus
