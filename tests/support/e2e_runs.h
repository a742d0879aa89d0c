// The end-to-end suite's runs (test_e2e.cpp, test_e2e_replicas.cpp): `mpirun -np N arceus
// train CONFIG --quiet --set ...` with a timeout, its output, summary.json and the processes it
// left, and the E2E fixture. Internal linkage: each test file gets its own copy.
#pragma once

#include "storage/storage.h"
#include "process.h"
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#ifndef TEST_CONFIG_DIR
#define TEST_CONFIG_DIR ""
#endif

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace arceus::test;

// ---------------------------------------------------------------------------------------
// Configuration of the suite (arceus_bin() and mpiexec() come from support/process.h).

std::string config_path(const std::string& name) { return (fs::path(TEST_CONFIG_DIR) / name).string(); }
double run_timeout() { return std::atof(env_or("ARCEUS_E2E_TIMEOUT", "120").c_str()); }

// The synthetic job of tests/configs/e2e_synthetic.yaml: 4 layers, 1024 training samples in
// batches of 64 (16 steps per epoch), 256 validation samples, 2 epochs.
const char* kSynthetic = "e2e_synthetic.yaml";
constexpr int kSyntheticLayers = 4;
constexpr int kSyntheticSteps = 16;

// Short, exactly reproducible runs for the equivalence tests: 32-bit messages (lossless),
// batches of 32, 20 steps of one epoch.
std::vector<std::string> equivalence_sets() {
  return {"communication.quantization_bits=32", "training.epochs=1", "training.max_steps=20",
          "dataset_config.batch_size=32"};
}
constexpr size_t kEquivalenceSteps = 20;

// ---------------------------------------------------------------------------------------
// Processes.

std::string proc_cmdline(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                        "_-./=:,+@%") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

struct RunResult {
  int np = 0;
  std::string command;    // shell-quoted, for a repro
  int exit_code = -1;     // the exit status, or 128 + signal
  bool timed_out = false;
  double seconds = 0;
  std::string output;     // stdout and stderr of mpirun and every rank
  fs::path out_dir;
  bool has_summary = false;
  json summary;
  std::string summary_error;
  std::vector<std::string> leftovers;  // processes of the run still alive after mpirun exited
  size_t ranks_seen = 0;               // arceus processes observed while the run lasted

  std::string describe() const {
    std::ostringstream os;
    os << "\n  command: " << command << "\n  exit code " << exit_code << (timed_out ? " (TIMED OUT, killed)" : "")
       << " after " << std::fixed << std::setprecision(1) << seconds << " s; " << ranks_seen
       << " arceus process(es) seen";
    if (!leftovers.empty()) {
      os << "\n  processes left running after mpirun exited:";
      for (const auto& l : leftovers) os << "\n    " << l;
    }
    if (!summary_error.empty()) os << "\n  summary.json: " << summary_error;
    constexpr size_t kTail = 6000;
    os << "\n  output" << (output.size() > kTail ? " (tail)" : "") << ":\n"
       << (output.size() > kTail ? output.substr(output.size() - kTail) : output);
    return os.str();
  }
};

// Runs `mpirun -np N --allow-run-as-root --oversubscribe arceus train CONFIG --quiet
// --set output.dir=DIR SETS...` with stdout+stderr going to DIR.log; kills every process of
// the run after `timeout` seconds.
// `prefix` goes before mpirun (e.g. the supervisor: arceus run --max-restarts 1 --); `watch`,
// when given, is called every 20 ms with the run's processes seen so far (to inject faults).
// `mpi_options` go after mpirun's own (e.g. -wdir DIR), `suffix` after the sets (e.g. `: -np 2
// -wdir DIR2 arceus train ...`, a second application context).
RunResult run_arceus(const fs::path& work, int np, const std::string& config, const std::vector<std::string>& sets,
                     double timeout, const std::vector<std::string>& prefix = {},
                     const std::function<void(const Processes&)>& watch = nullptr,
                     const std::vector<std::string>& mpi_options = {}, const std::vector<std::string>& suffix = {}) {
  RunResult r;
  r.np = np;
  r.out_dir = work;
  const fs::path log = work.string() + ".log";
  std::vector<std::string> args = prefix;
  for (const std::string& a : {mpiexec(), std::string("-np"), std::to_string(np), std::string("--allow-run-as-root"),
                               std::string("--oversubscribe")})
    args.push_back(a);
  args.insert(args.end(), mpi_options.begin(), mpi_options.end());
  for (const std::string& a : {arceus_bin(), std::string("train"), config, std::string("--quiet"), std::string("--set"),
                               "output.dir=" + work.string()})
    args.push_back(a);
  for (const auto& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  args.insert(args.end(), suffix.begin(), suffix.end());
  for (const auto& a : args) r.command += (r.command.empty() ? "" : " ") + shell_quote(a);

  const auto t0 = Clock::now();
  const pid_t pid = spawn(args, log);
  if (pid < 0) {
    r.output = std::string("fork failed: ") + std::strerror(errno);
    return r;
  }

  Processes seen;  // every process of the run we observed
  std::set<pid_t> ranks;
  auto observe = [&] {
    for (const auto& [p, start] : descendants(pid)) {
      if (seen.emplace(p, start).second && proc_cmdline(p).find("arceus") != std::string::npos &&
          proc_cmdline(p).find(" train ") != std::string::npos)
        ranks.insert(p);
    }
  };

  int status = 0;
  auto last_observe = Clock::now() - std::chrono::seconds(1);
  bool exited = false;
  while (!exited) {
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      exited = true;
      break;
    }
    if (seconds_since(t0) > timeout) {
      r.timed_out = true;
      observe();
      // mpirun terminates its job on SIGTERM; give it a few seconds, then SIGKILL everything.
      kill(pid, SIGTERM);
      const auto k0 = Clock::now();
      while (seconds_since(k0) < 10) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
          exited = true;
          break;
        }
        observe();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (!exited) {
        observe();
        kill(-pid, SIGKILL);
        kill_running(seen);
        waitpid(pid, &status, 0);
        exited = true;
      }
      break;
    }
    if (watch) {
      observe();
      watch(seen);
    } else if (Clock::now() - last_observe > std::chrono::milliseconds(200)) {
      observe();
      last_observe = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.seconds = seconds_since(t0);
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.exit_code = 128 + WTERMSIG(status);
  }
  r.ranks_seen = ranks.size();

  // Every process of the run must be gone once mpirun has returned (a short grace period for
  // processes that are just finishing; none after a timeout). Any that is not is reported,
  // then killed.
  for (const pid_t p : survivors(seen, r.timed_out ? 0 : 3)) {
    r.leftovers.push_back("pid " + std::to_string(p) + ": " + proc_cmdline(p));
    kill(p, SIGKILL);
  }

  r.output = read_text(log);
  const fs::path summary = work / "summary.json";
  std::error_code ec;
  if (fs::exists(summary, ec)) {
    try {
      r.summary = json::parse(read_text(summary));
      r.has_summary = true;
    } catch (const std::exception& e) {
      r.summary_error = std::string("unparsable: ") + e.what();
    }
  } else {
    r.summary_error = "not written";
  }
  std::printf("[  run     ] np=%d %5.1f s exit %d%s: %s\n", np, r.seconds, r.exit_code,
              r.timed_out ? " TIMED OUT" : "", r.command.c_str());
  std::fflush(stdout);
  return r;
}

// ---------------------------------------------------------------------------------------
// Checks on a run.

// Small MNIST-format files: N images of side x side pixels (label i % 10; the pixel of the
// label is bright), optionally with the train-images data cut short.
void write_be32(std::ofstream& out, uint32_t v) {
  const char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  out.write(b, 4);
}

void write_idx(const fs::path& path, uint32_t magic, const std::vector<uint32_t>& dims,
               const std::vector<uint8_t>& data, size_t keep_bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  write_be32(out, magic);
  for (uint32_t d : dims) write_be32(out, d);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(std::min(keep_bytes, data.size())));
}

// `shade` changes one pixel of every training image (a different copy of the files).
void write_small_mnist(const fs::path& dir, uint32_t side, bool truncate_train_images, uint8_t shade = 0) {
  fs::create_directories(dir);
  auto split = [&](const std::string& prefix, uint32_t n, bool truncate) {
    std::vector<uint8_t> images(size_t(n) * side * side), labels(n);
    for (uint32_t i = 0; i < n; ++i) {
      labels[i] = static_cast<uint8_t>(i % 10);
      for (uint32_t p = 0; p < side * side; ++p)
        images[size_t(i) * side * side + p] = static_cast<uint8_t>(p == labels[i] ? 250 : (i * 7 + p * 13) % 40);
      if (prefix == "train") images[size_t(i) * side * side + side * side - 1] += shade;
    }
    write_idx(dir / (prefix + "-images-idx3-ubyte"), 0x00000803, {n, side, side}, images,
              truncate ? images.size() - side * side - 5 : images.size());
    write_idx(dir / (prefix + "-labels-idx1-ubyte"), 0x00000801, {n}, labels, labels.size());
  };
  split("train", 64, truncate_train_images);
  split("t10k", 32, false);
}

// Every parameter and optimizer tensor of a run's checkpoint, by name.
std::map<std::string, arceus::NamedArray> tensors_of(const RunResult& r) {
  std::map<std::string, arceus::NamedArray> out;
  const arceus::CheckpointData ck = arceus::read_checkpoint((r.out_dir / "checkpoint.h5").string());
  for (const auto& a : ck.parameters) out[a.name] = a;
  for (const auto& a : ck.optimizer) out[a.name] = a;
  return out;
}

::testing::AssertionResult Completed(const RunResult& r) {
  if (r.timed_out) return ::testing::AssertionFailure() << "the run did not finish (hang?)" << r.describe();
  if (r.exit_code != 0) return ::testing::AssertionFailure() << "non-zero exit" << r.describe();
  if (!r.leftovers.empty()) return ::testing::AssertionFailure() << "ranks left running" << r.describe();
  if (!r.has_summary) return ::testing::AssertionFailure() << "no summary.json" << r.describe();
  if (r.summary.value("state", "") != "completed")
    return ::testing::AssertionFailure() << "summary state is " << r.summary.value("state", "<none>")
                                         << ", expected completed" << r.describe();
  return ::testing::AssertionSuccess();
}

// A setup error: the run ends by itself (no timeout, no process left), with a non-zero exit
// and exactly one error line from arceus, which contains every one of `phrases`.
::testing::AssertionResult FailsCleanly(const RunResult& r, const std::vector<std::string>& phrases) {
  if (r.timed_out) return ::testing::AssertionFailure() << "the failing run did not end (hang)" << r.describe();
  if (!r.leftovers.empty()) return ::testing::AssertionFailure() << "ranks left running" << r.describe();
  if (r.exit_code == 0) return ::testing::AssertionFailure() << "exit code 0 for a bad job" << r.describe();
  std::vector<std::string> errors;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);) {
    // "error: ..." (set-up on rank 0) or "[rank N on HOST] error: ..." (a rank's exception)
    if (line.rfind("error: ", 0) == 0 || (line.rfind("[rank ", 0) == 0 && line.find("] error: ") != std::string::npos))
      errors.push_back(line);
  }
  if (errors.size() != 1)
    return ::testing::AssertionFailure() << "expected exactly one error line from arceus, got " << errors.size()
                                         << r.describe();
  for (const auto& p : phrases) {
    if (errors[0].find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "the error message lacks \"" << p << "\": " << errors[0]
                                           << r.describe();
  }
  if (r.has_summary && r.summary.value("state", "") == "completed")
    return ::testing::AssertionFailure() << "a failed run left a summary.json in state completed" << r.describe();
  return ::testing::AssertionSuccess();
}

std::vector<double> step_losses(const RunResult& r, size_t epoch = 0) {
  std::vector<double> out;
  if (!r.has_summary || !r.summary.contains("epochs") || r.summary["epochs"].size() <= epoch) return out;
  for (const auto& v : r.summary["epochs"][epoch].value("step_losses", json::array())) out.push_back(v.get<double>());
  return out;
}

// Per-step losses equal within `tol` (absolute), for exactly `steps` steps. The failure lists
// every step: step, reference, actual, error.
[[maybe_unused]] ::testing::AssertionResult LossesMatch(const std::vector<double>& ref, const std::vector<double>& got, double tol,
                                       size_t steps) {
  bool ok = ref.size() == steps && got.size() == steps;
  double worst = 0;
  for (size_t i = 0; i < std::min(ref.size(), got.size()); ++i) {
    const double err = std::abs(ref[i] - got[i]);
    if (!(err <= tol)) ok = false;  // NaN fails too
    worst = std::max(worst, err);
  }
  if (ok) return ::testing::AssertionSuccess() << "max error " << worst;
  std::ostringstream os;
  os << "per-step losses differ (tolerance " << tol << "; " << ref.size() << " reference steps, " << got.size()
     << " actual, " << steps << " expected)\n";
  os << "  step  reference       actual          error\n";
  for (size_t i = 0; i < std::max(ref.size(), got.size()); ++i) {
    os << "  " << std::setw(4) << i << "  ";
    os << std::setprecision(9) << std::setw(14) << (i < ref.size() ? ref[i] : NAN) << "  " << std::setw(14)
       << (i < got.size() ? got[i] : NAN) << "  ";
    if (i < ref.size() && i < got.size()) {
      const double err = std::abs(ref[i] - got[i]);
      os << std::setprecision(3) << err << (err <= tol ? "" : "  <-- exceeds");
    }
    os << "\n";
  }
  return ::testing::AssertionFailure() << os.str();
}

// ---------------------------------------------------------------------------------------
// The fixture: one scratch directory per test (kept when the test fails), and the check that
// the suite can run at all.

class E2E : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string mpi = mpiexec();
    if (mpi.empty() || access(mpi.c_str(), X_OK) != 0)
      GTEST_SKIP() << "no mpirun: MPIEXEC_EXECUTABLE was not found by CMake (or ARCEUS_E2E_MPIEXEC='" << mpi
                   << "' is not executable); the end-to-end tests need Open MPI";
    const std::string bin = arceus_bin();
    ASSERT_FALSE(bin.empty()) << "ARCEUS_BIN is not defined";
    ASSERT_EQ(access(bin.c_str(), X_OK), 0) << "the arceus binary " << bin << " is missing: build target arceus";
    ASSERT_TRUE(fs::is_regular_file(config_path(kSynthetic))) << config_path(kSynthetic);

    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "." + info->name();
    for (char& c : name)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_') c = '_';
    const std::string base = env_or("TMPDIR", "/tmp");
    std::string tmpl = (fs::path(base) / ("arceus-e2e-" + name + "-XXXXXX")).string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl << ": " << std::strerror(errno);
    scratch_ = tmpl;
  }

  void TearDown() override {
    if (scratch_.empty()) return;
    if (HasFailure()) {
      std::printf("[  kept    ] outputs of this failed test: %s\n", scratch_.c_str());
    } else {
      std::error_code ec;
      fs::remove_all(scratch_, ec);
    }
  }

  // One run into a fresh output directory under the scratch directory.
  RunResult run(int np, const std::vector<std::string>& sets, const std::string& config = config_path(kSynthetic)) {
    const fs::path dir = scratch_ / ("run" + std::to_string(++runs_) + "-np" + std::to_string(np));
    return run_arceus(dir, np, config, sets, run_timeout());
  }

  // The 1-rank reference losses of equivalence_sets() (sequential, M=1), computed once per
  // process.
  std::vector<double> reference_losses(std::string* why) {
    static std::vector<double> cached;
    if (!cached.empty()) return cached;
    std::vector<std::string> sets = equivalence_sets();
    sets.push_back("training.schedule=sequential");
    sets.push_back("training.micro_batches=1");
    const RunResult r = run(1, sets);
    const auto ok = Completed(r);
    if (!ok) {
      *why = std::string("the 1-rank reference run failed: ") + ok.message();
      return {};
    }
    cached = step_losses(r);
    if (cached.size() != kEquivalenceSteps) {
      *why = "the reference run has " + std::to_string(cached.size()) + " step losses, expected " +
             std::to_string(kEquivalenceSteps) + r.describe();
      cached.clear();
    }
    return cached;
  }

  fs::path scratch_;
  int runs_ = 0;
};

}  // namespace
