// arceus: pipeline-parallel training launched by mpirun. main() only wires things together:
// BLAS set-up, command line, MPI start-up, then the runtime in ranks/.
//
// The commands are one table (kCommands): how each adds its subcommand and options, whether
// it needs MPI, and what it runs. Exit codes: 0 done (and --help), 2 usage error, 1 any
// other error (a command may return its own: plan's errors in its command line are 2).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <unistd.h>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "config/config.h"
#include "launcher/blas.h"
#include "launcher/serve.h"
#include "launcher/commands.h"
#include "launcher/device.h"
#include "launcher/job_runner.h"
#include "launcher/plan.h"
#include "launcher/rendezvous.h"
#include "launcher/run_report.h"
#include "launcher/shared_options.h"
#include "launcher/supervisor.h"
#include "ranks/mpi_transport.h"
#include "storage/storage.h"

namespace {

using arceus::add_set_option;
using arceus::add_threads_option;

// Before MPI_Init we do not know our rank; the launchers tell us through the environment.
bool is_rank_zero_before_init() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v) == 0;
  }
  return true;
}

const char* kDescription =
    "arceus: pipeline-parallel neural-network training over MPI.\n"
    "Rank 0 orchestrates; ranks 1..N-1 each own a contiguous slice of the model's layers.\n"
    "Activations and gradients travel as quantized (32/16/8/4-bit) point-to-point messages.\n"
    "Run it under mpirun, e.g.:  mpirun -np 3 arceus train configs/fashion_mnist_mlp.yaml\n"
    "Without mpirun (or with -np 1) rank 0 trains alone: the reference run.";

// What the command line fills in; each command reads its part.
struct Cli {
  // The per-job options of train, eval, serve and device (serve and device take --threads and
  // --quiet into it).
  arceus::TrainOptions train;
  std::vector<std::string> sets;  // train, eval: --set KEY=VALUE, parsed once MPI is up
  std::string progress = "auto";  // train: resolved before MPI starts
  std::string eval_checkpoint;
  std::string inspect_path;
  arceus::ServeOptions serve;
  arceus::DeviceOptions device;
  std::string job_spec;  // job-runner --spec
  arceus::GenerateOptions generate;
  arceus::PredictOptions predict;
  arceus::ReportOptions report;
  arceus::PlanOptions plan;
  arceus::SuperviseOptions supervise;
  bool config_markdown = false;  // config keys --markdown
};

// One subcommand. A command without MPI runs alone (`run` gets no transport) and its result is
// the exit code; one with MPI may first re-execute itself under mpirun (`before_mpi`: a result
// >= 0 ends the process with it), then runs on every rank of the world.
struct Command {
  CLI::App* (*add_options)(CLI::App& app, Cli& cli);  // adds the subcommand, bound to `cli`
  bool needs_mpi;
  int (*run)(Cli& cli, arceus::MpiTransport* comm);  // comm: the world when needs_mpi, else null
  int (*before_mpi)(Cli& cli, char** argv) = nullptr;
};

// ---------------------------------------------------------------------------------------
// Each command's options (help texts, defaults and checks as `arceus <command> --help` shows).

CLI::App* add_train(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand("train", "Train the model described by a YAML job file");
  cmd->add_option("config", cli.train.config_path,
                  "YAML job file (see configs/ and docs/configuration.md)")
      ->required();
  add_set_option(*cmd, cli.sets,
                 "Override one config key, KEY=VALUE with a dotted key, e.g. --set training.epochs=1 "
                 "--set communication.quantization_bits=4 (repeatable; validated like the file)");
  add_threads_option(*cmd, cli.train.threads,
                     "LibTorch/BLAS threads per stage rank: 'auto' divides a host's cores among the stage "
                     "ranks it runs (rank 0 and idle ranks use 1), or a positive integer");
  cmd->add_flag("--quiet", cli.train.quiet, "No live progress line or timing table (epoch summaries only)");
  cmd->add_option("--progress", cli.progress,
                  "Progress display: 'bar' rewrites one line (\\r), 'lines' prints a line every fifth of an "
                  "epoch (for logs and SLURM output files), 'none'; 'auto' (default) is 'bar' on an "
                  "interactive terminal outside mpirun/srun, else 'lines'")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}));
  cmd->add_option("--resume", cli.train.resume,
                  "Continue from this checkpoint.h5 (its epoch and step; parameters by layer name, so the "
                  "number of ranks may differ). `resume: true` in the config resumes from "
                  "<output.dir>/checkpoint.h5 when it exists");
  return cmd;
}

CLI::App* add_serve(CLI::App& app, Cli& cli) { return arceus::add_serve_command(app, cli.serve, cli.train); }

CLI::App* add_device(CLI::App& app, Cli& cli) { return arceus::add_device_command(app, cli.device, cli.train); }

CLI::App* add_eval(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand("eval", "Validation loss and accuracy of a checkpoint (one process)");
  cmd->add_option("config", cli.train.config_path, "YAML job file (model and validation data)")->required();
  cmd->add_option("--checkpoint", cli.eval_checkpoint, "checkpoint.h5 to evaluate")->required();
  add_set_option(*cmd, cli.sets, "Override one config key, KEY=VALUE (repeatable)");
  add_threads_option(*cmd, cli.train.threads, "LibTorch/BLAS threads ('auto' = all cores)");
  return cmd;
}

CLI::App* add_inspect(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand(
      "inspect", "Print a checkpoint's config, epoch/step and tensors (name, shape, norm), or a metrics.h5's tables");
  cmd->add_option("file", cli.inspect_path, "checkpoint.h5 or metrics.h5")->required();
  return cmd;
}

CLI::App* add_generate(CLI::App& app, Cli& cli) {
  arceus::GenerateOptions& gen = cli.generate;
  auto* cmd = app.add_subcommand("generate", "Sample text from a transformer checkpoint (one process)");
  cmd->add_option("--checkpoint", gen.checkpoint, "checkpoint.h5 of a transformer job")->required();
  cmd->add_option("--prompt", gen.prompt, "Text to continue (its characters must be in the training text)")
      ->default_val("");
  cmd->add_option("--tokens", gen.tokens, "Characters to generate")->default_val(200)->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", gen.temperature, "Sampling temperature; 0 = always the likeliest character")
      ->default_val(0.8)
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", gen.seed, "Seed of the sampling")->default_val(1);
  // An integer, 1 by default: one process samples (not the stage ranks' 'auto').
  cmd->add_option("--threads", gen.threads, "LibTorch/BLAS threads")->default_val(1)->check(CLI::PositiveNumber);
  return cmd;
}

CLI::App* add_predict(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand("predict", "Class probabilities of one input from an MLP checkpoint (one process)");
  cmd->add_option("--checkpoint", cli.predict.checkpoint, "checkpoint.h5 of an MLP job")->required();
  cmd->add_option("--pixels", cli.predict.pixels,
                  "The input as JSON: 28 rows of 28 pixels in [0, 1] or a flat list of the input width, "
                  "or @FILE to read it from a file (the body of POST /api/jobs/<id>/predict also works)")
      ->required();
  return cmd;
}

CLI::App* add_report(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand("report", "One self-contained HTML file with a run's charts (no server)");
  cmd->add_option("run_dir", cli.report.run_dir, "A run's output.dir (summary.json, metrics.h5)")->required();
  cmd->add_option("-o,--output", cli.report.output, "The HTML file to write (default RUN_DIR/report.html)");
  return cmd;
}

CLI::App* add_plan(CLI::App& app, Cli& cli) { return arceus::add_plan_command(app, cli.plan); }

CLI::App* add_config(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand("config", "About job files: `arceus config keys` lists every key, its default and its meaning");
  auto* keys = cmd->add_subcommand("keys", "Every config key with its default and one line of help (from config/fields.h)");
  keys->add_flag("--markdown", cli.config_markdown, "As the Markdown table of docs/configuration.md");
  cmd->require_subcommand(1);
  return cmd;
}

CLI::App* add_run(CLI::App& app, Cli& cli) {
  arceus::SuperviseOptions& s = cli.supervise;
  auto* cmd = app.add_subcommand(
      "run", "Run a training command, restarting it from its latest checkpoint when it fails (a supervisor outside MPI)");
  cmd->add_option("--max-restarts", s.max_restarts, "Restarts at most")->default_val(3)->check(CLI::NonNegativeNumber);
  cmd->add_option("--pause", s.pause, "Seconds between a failure and the restart")
      ->default_val(3)
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("command", s.command, "-- then the command, e.g. mpirun -np 3 build/arceus train CONFIG")
      ->required();
  cmd->prefix_command();  // everything after the options (and `--`) is the command
  return cmd;
}

// ---------------------------------------------------------------------------------------
// What the commands without a runner of their own run.

// A checkpoint, else (metrics.h5 is HDF5 too) a metrics file's tables; neither: the checkpoint
// reader's error.
int run_inspect(const std::string& path) {
  try {
    try {
      arceus::print_checkpoint(arceus::read_checkpoint(path), std::cout);
    } catch (const arceus::StorageError& checkpoint_error) {
      try {
        arceus::print_metrics(path, std::cout);
      } catch (const arceus::StorageError&) {
        throw checkpoint_error;
      }
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

// `arceus serve` without mpirun: under one that knows an ompi-server, so devices can join.
int serve_before_mpi(Cli& cli, char** argv) {
  return arceus::serve_under_mpirun_if_needed(cli.serve.host, cli.serve.ompi_server, argv);
}

// A device joins the server's MPI world: it runs under an mpirun that knows the server's
// rendezvous, re-executing itself under one if needed (before MPI starts).
int device_before_mpi(Cli& cli, char** argv) { return arceus::device_agent_if_needed(cli.device, cli.train, argv); }

// `arceus job-runner --spec DIR` (hidden): a job of arceus serve on devices, started by it.
CLI::App* add_job_runner(CLI::App& app, Cli& cli) {
  auto* cmd = app.add_subcommand("job-runner", "A job of arceus serve on devices (started by the server)");
  cmd->group("");  // not in --help: users never run it
  cmd->add_option("--spec", cli.job_spec, "The job's directory (config.yaml, run.json)")->required();
  return cmd;
}

// In help order.
const Command kCommands[] = {
    {add_train, true, [](Cli& cli, arceus::MpiTransport* comm) { return arceus::run_train(*comm, cli.train); }},
    {add_serve, true,
     [](Cli& cli, arceus::MpiTransport* comm) { return arceus::run_serve(*comm, cli.serve, cli.train); },
     serve_before_mpi},
    {add_device, true,
     [](Cli& cli, arceus::MpiTransport* comm) { return arceus::run_device(*comm, cli.device, cli.train); },
     device_before_mpi},
    {add_job_runner, true,
     [](Cli& cli, arceus::MpiTransport* comm) { return arceus::run_job_runner(*comm, cli.job_spec, cli.train); }},
    {add_eval, true,
     [](Cli& cli, arceus::MpiTransport* comm) { return arceus::run_eval(*comm, cli.train, cli.eval_checkpoint); }},
    {add_inspect, false, [](Cli& cli, arceus::MpiTransport*) { return run_inspect(cli.inspect_path); }},
    {add_generate, false,
     [](Cli& cli, arceus::MpiTransport*) {
       arceus::set_blas_threads(cli.generate.threads);
       return arceus::run_generate(cli.generate);
     }},
    {add_predict, false,
     [](Cli& cli, arceus::MpiTransport*) {
       arceus::set_blas_threads(1);
       return arceus::run_predict(cli.predict);
     }},
    {add_report, false, [](Cli& cli, arceus::MpiTransport*) { return arceus::run_report(cli.report); }},  // no torch
    {add_plan, false, [](Cli& cli, arceus::MpiTransport*) { return arceus::run_plan(cli.plan); }},
    {add_run, false, [](Cli& cli, arceus::MpiTransport*) { return arceus::run_supervised(cli.supervise); }},
    {add_config, false,
     [](Cli& cli, arceus::MpiTransport*) {
       std::cout << arceus::format_config_keys(cli.config_markdown);
       return 0;
     }},
};

// Under a launcher, stdout is a pty that Open MPI forwards (to a pipe or a file as often as
// to a terminal): \r-rewritten lines would pile up in logs.
std::string resolve_progress(const std::string& progress) {
  if (progress != "auto") return progress;
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("SLURM_JOB_ID");
  return (isatty(STDOUT_FILENO) && !launched) ? "bar" : "lines";
}

// Starts MPI, runs `command` on this rank, ends MPI. A rank's error is printed with its rank
// and host and aborts the world (the other ranks may be waiting for this one).
int run_under_mpi(const Command& command, Cli& cli, int* argc, char*** argv) {
  cli.train.progress = resolve_progress(cli.progress);
  arceus::MpiTransport* comm = nullptr;
  try {
    comm = &arceus::MpiTransport::init(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  int code = 0;
  try {
    for (const auto& s : cli.sets) cli.train.overrides.push_back(arceus::parse_override(s));
    cli.train.blas = arceus::blas_info().describe();
    cli.train.set_threads = arceus::set_blas_threads;
    code = command.run(cli, comm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d on %s] error: %s\n", comm->rank(), comm->host().c_str(), e.what());
    if (comm->size() > 1) comm->abort(1);
    code = 1;
  }
  arceus::MpiTransport::finalize();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  arceus::ensure_blas(argv);

  CLI::App app{kDescription, "arceus"};
  app.require_subcommand(1);
  Cli cli;
  std::vector<CLI::App*> subcommands;
  for (const Command& c : kCommands) subcommands.push_back(c.add_options(app, cli));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; any usage error exits 2 (CLI11's own codes are above 100).
    const int code = is_rank_zero_before_init() ? app.exit(e) : e.get_exit_code();
    return code == 0 ? 0 : 2;
  }

  for (size_t k = 0; k < subcommands.size(); ++k) {
    if (!subcommands[k]->parsed()) continue;
    const Command& command = kCommands[k];
    if (!command.needs_mpi) return command.run(cli, nullptr);
    if (command.before_mpi) {
      const int code = command.before_mpi(cli, argv);
      if (code >= 0) return code;
    }
    return run_under_mpi(command, cli, &argc, &argv);
  }
  return 2;  // not reached: require_subcommand(1)
}
