// arceus: pipeline-parallel training launched by mpirun. main() only wires things together:
// BLAS set-up, command line, MPI start-up, then the runtime in ranks/.
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
#include "launcher/plan.h"
#include "launcher/rendezvous.h"
#include "launcher/run_report.h"
#include "launcher/supervisor.h"
#include "ranks/mpi_transport.h"
#include "storage/storage.h"

namespace {

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

}  // namespace

int main(int argc, char** argv) {
  arceus::ensure_blas(argv);

  CLI::App app{kDescription, "arceus"};
  app.require_subcommand(1);
  arceus::TrainOptions options;
  std::vector<std::string> sets;

  auto* train = app.add_subcommand("train", "Train the model described by a YAML job file");
  train->add_option("config", options.config_path, "YAML job file (see configs/ and docs/configuration.md)")
      ->required();
  train->add_option("--set", sets,
                    "Override one config key, KEY=VALUE with a dotted key, e.g. --set training.epochs=1 "
                    "--set communication.quantization_bits=4 (repeatable; validated like the file)")
      ->allow_extra_args(false);  // one KEY=VALUE per --set, so `--set a=1 CONFIG` keeps CONFIG
  train->add_option("--threads", options.threads,
                    "LibTorch/BLAS threads per stage rank: 'auto' divides a host's cores among the stage "
                    "ranks it runs (rank 0 and idle ranks use 1), or a positive integer")
      ->default_val("auto")
      ->check(arceus::check_threads_option);
  train->add_flag("--quiet", options.quiet, "No live progress line or timing table (epoch summaries only)");
  std::string progress = "auto";
  train->add_option("--progress", progress,
                    "Progress display: 'bar' rewrites one line (\\r), 'lines' prints a line every fifth of an "
                    "epoch (for logs and SLURM output files), 'none'; 'auto' (default) is 'bar' on an "
                    "interactive terminal outside mpirun/srun, else 'lines'")
      ->check(CLI::IsMember({"auto", "bar", "lines", "none"}));

  arceus::ServeOptions serve_options;
  CLI::App* serve = arceus::add_serve_command(app, serve_options, options);
  train->add_option("--resume", options.resume,
                    "Continue from this checkpoint.h5 (its epoch and step; parameters by layer name, so the "
                    "number of ranks may differ). `resume: true` in the config resumes from "
                    "<output.dir>/checkpoint.h5 when it exists");

  arceus::DeviceOptions device_options;
  CLI::App* device = arceus::add_device_command(app, device_options, options);

  std::string eval_checkpoint;
  auto* eval = app.add_subcommand("eval", "Validation loss and accuracy of a checkpoint (one process)");
  eval->add_option("config", options.config_path, "YAML job file (model and validation data)")->required();
  eval->add_option("--checkpoint", eval_checkpoint, "checkpoint.h5 to evaluate")->required();
  eval->add_option("--set", sets, "Override one config key, KEY=VALUE (repeatable)")->allow_extra_args(false);
  eval->add_option("--threads", options.threads, "LibTorch/BLAS threads ('auto' = all cores)")
      ->default_val("auto")
      ->check(arceus::check_threads_option);

  std::string inspect_path;
  auto* inspect = app.add_subcommand(
      "inspect", "Print a checkpoint's config, epoch/step and tensors (name, shape, norm), or a metrics.h5's tables");
  inspect->add_option("file", inspect_path, "checkpoint.h5 or metrics.h5")->required();

  arceus::GenerateOptions gen;
  auto* generate = app.add_subcommand("generate", "Sample text from a transformer checkpoint (one process)");
  generate->add_option("--checkpoint", gen.checkpoint, "checkpoint.h5 of a transformer job")->required();
  generate->add_option("--prompt", gen.prompt, "Text to continue (its characters must be in the training text)")
      ->default_val("");
  generate->add_option("--tokens", gen.tokens, "Characters to generate")->default_val(200)->check(CLI::NonNegativeNumber);
  generate->add_option("--temperature", gen.temperature, "Sampling temperature; 0 = always the likeliest character")
      ->default_val(0.8)
      ->check(CLI::NonNegativeNumber);
  generate->add_option("--seed", gen.seed, "Seed of the sampling")->default_val(1);
  generate->add_option("--threads", gen.threads, "LibTorch/BLAS threads")->default_val(1)->check(CLI::PositiveNumber);

  arceus::PredictOptions pred;
  auto* predict = app.add_subcommand("predict", "Class probabilities of one input from an MLP checkpoint (one process)");
  predict->add_option("--checkpoint", pred.checkpoint, "checkpoint.h5 of an MLP job")->required();
  predict->add_option("--pixels", pred.pixels,
                      "The input as JSON: 28 rows of 28 pixels in [0, 1] or a flat list of the input width, "
                      "or @FILE to read it from a file (the body of POST /api/jobs/<id>/predict also works)")
      ->required();

  arceus::ReportOptions report;
  auto* report_cmd = app.add_subcommand("report", "One self-contained HTML file with a run's charts (no server)");
  report_cmd->add_option("run_dir", report.run_dir, "A run's output.dir (summary.json, metrics.h5)")->required();
  report_cmd->add_option("-o,--output", report.output, "The HTML file to write (default RUN_DIR/report.html)");

  arceus::PlanOptions plan_options;
  CLI::App* plan_cmd = arceus::add_plan_command(app, plan_options);

  arceus::SuperviseOptions supervise;
  auto* run_cmd = app.add_subcommand(
      "run", "Run a training command, restarting it from its latest checkpoint when it fails (a supervisor outside MPI)");
  run_cmd->add_option("--max-restarts", supervise.max_restarts, "Restarts at most")
      ->default_val(3)
      ->check(CLI::NonNegativeNumber);
  run_cmd->add_option("--pause", supervise.pause, "Seconds between a failure and the restart")
      ->default_val(3)
      ->check(CLI::NonNegativeNumber);
  run_cmd->add_option("command", supervise.command, "-- then the command, e.g. mpirun -np 3 build/arceus train CONFIG")
      ->required();
  run_cmd->prefix_command();  // everything after the options (and `--`) is the command

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; any usage error exits 2 (CLI11's own codes are above 100).
    const int code = is_rank_zero_before_init() ? app.exit(e) : e.get_exit_code();
    return code == 0 ? 0 : 2;
  }

  if (generate->parsed()) {  // no MPI needed
    arceus::set_blas_threads(gen.threads);
    return arceus::run_generate(gen);
  }

  if (predict->parsed()) {  // no MPI needed
    arceus::set_blas_threads(1);
    return arceus::run_predict(pred);
  }
  if (report_cmd->parsed()) return arceus::run_report(report);  // no MPI, no torch
  if (plan_cmd->parsed()) return arceus::run_plan(plan_options);  // no MPI
  if (run_cmd->parsed()) return arceus::run_supervised(supervise);  // outside MPI

  if (inspect->parsed()) {  // no MPI needed
    try {
      try {
        arceus::print_checkpoint(arceus::read_checkpoint(inspect_path), std::cout);
      } catch (const arceus::StorageError& checkpoint_error) {
        // metrics.h5 is HDF5 too: its tables instead; neither: the checkpoint reader's error.
        try {
          arceus::print_metrics(inspect_path, std::cout);
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
  if (serve->parsed()) {
    const int code = arceus::serve_under_mpirun_if_needed(serve_options.host, serve_options.ompi_server, argv);
    if (code >= 0) return code;
  }

  // A device joins the server's MPI world: it runs under an mpirun that knows the server's
  // rendezvous, re-executing itself under one if needed (before MPI starts).
  if (device->parsed()) arceus::device_reexec_if_needed(device_options, argv);

  // Under a launcher, stdout is a pty that Open MPI forwards (to a pipe or a file as often as
  // to a terminal): \r-rewritten lines would pile up in logs.
  options.progress = progress;
  if (progress == "auto") {
    const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("SLURM_JOB_ID");
    options.progress = (isatty(STDOUT_FILENO) && !launched) ? "bar" : "lines";
  }

  arceus::MpiTransport* comm = nullptr;
  try {
    comm = &arceus::MpiTransport::init(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }

  int code = 0;
  try {
    for (const auto& s : sets) options.overrides.push_back(arceus::parse_override(s));
    const arceus::BlasInfo blas = arceus::blas_info();
    options.blas = blas.describe();
    options.set_threads = arceus::set_blas_threads;
    if (device->parsed()) {
      code = arceus::run_device(*comm, device_options, options);
    } else if (eval->parsed()) {
      code = arceus::run_eval(*comm, options, eval_checkpoint);
    } else {
      code = serve->parsed() ? arceus::run_serve(*comm, serve_options, options) : arceus::run_train(*comm, options);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[rank %d on %s] error: %s\n", comm->rank(), comm->host().c_str(), e.what());
    if (comm->size() > 1) comm->abort(1);
    code = 1;
  }
  arceus::MpiTransport::finalize();
  return code;
}
