// End-to-end tests: run `mpirun -np N arceus train CONFIG --quiet --set ...` as a user would
// and check the exit status, the captured output and <output.dir>/summary.json.
//
// No LibTorch here: this binary only spawns processes and reads JSON. Every run has a
// timeout (a hang is a failure, and every process the run started is killed), and after a
// run every rank process that was seen must be gone.
//
// Paths come from CMake (ARCEUS_BIN, MPIEXEC, TEST_CONFIG_DIR) and may be overridden with the
// environment variables ARCEUS_E2E_BIN, ARCEUS_E2E_MPIEXEC and ARCEUS_E2E_TIMEOUT (seconds
// per run). Without an mpirun every test is skipped, with the reason.
#include "support/e2e_runs.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---------------------------------------------------------------------------------------
// 1. Training on 1..4 ranks: completes, the stages cover the layers, the model learns.

class SyntheticTraining : public E2E, public ::testing::WithParamInterface<int> {};

TEST_P(SyntheticTraining, CompletesAndLearns) {
  const int np = GetParam();
  const RunResult r = run(np, {});
  ASSERT_TRUE(Completed(r));
  const json& s = r.summary;
  const std::string ctx = r.describe();

  EXPECT_EQ(s.value("world_size", -1), np) << ctx;
  ASSERT_TRUE(s.contains("ranks") && s["ranks"].is_array()) << ctx;
  EXPECT_EQ(s["ranks"].size(), static_cast<size_t>(np)) << ctx;

  // Stages: np-1 of them (1 alone), on ranks 1..np-1 (rank 0 alone), covering the 4 layers
  // contiguously, in order.
  const size_t want_stages = np == 1 ? 1 : static_cast<size_t>(np - 1);
  ASSERT_TRUE(s.contains("stages") && s["stages"].is_array()) << ctx;
  ASSERT_EQ(s["stages"].size(), want_stages) << s["stages"].dump() << ctx;
  int64_t next = 0;
  for (size_t k = 0; k < want_stages; ++k) {
    const json& st = s["stages"][k];
    SCOPED_TRACE("stage " + st.dump());
    EXPECT_EQ(st.value("stage", -1), static_cast<int>(k) + 1);
    EXPECT_EQ(st.value("rank", -1), np == 1 ? 0 : static_cast<int>(k) + 1);
    ASSERT_TRUE(st.contains("layers") && st["layers"].is_array() && st["layers"].size() == 2);
    const int64_t first = st["layers"][0].get<int64_t>(), last = st["layers"][1].get<int64_t>();
    EXPECT_EQ(first, next) << "stage " << k + 1 << " does not start where the previous one ended";
    EXPECT_GE(last, first) << "empty stage";
    EXPECT_GT(st.value("parameters", int64_t{0}), 0);
    next = last + 1;
  }
  EXPECT_EQ(next, kSyntheticLayers) << "the stages do not end at the last layer: " << s["stages"].dump();

  // Two epochs of 16 steps over all samples; finite losses; the loss goes down; well above
  // chance (10 classes: 0.1) on the validation split.
  ASSERT_TRUE(s.contains("epochs") && s["epochs"].size() == 2) << ctx;
  for (const auto& e : s["epochs"]) {
    EXPECT_EQ(e.value("steps", -1), kSyntheticSteps) << ctx;
    EXPECT_EQ(e.value("train_samples", -1), 1024) << ctx;
    EXPECT_EQ(e.value("val_samples", -1), 256) << ctx;
    EXPECT_EQ(e.value("step_losses", json::array()).size(), static_cast<size_t>(kSyntheticSteps)) << ctx;
    for (const auto& l : e.value("step_losses", json::array())) EXPECT_TRUE(std::isfinite(l.get<double>())) << ctx;
  }
  const double loss1 = s["epochs"][0].value("train_loss", NAN), loss2 = s["epochs"][1].value("train_loss", NAN);
  EXPECT_LT(loss2, loss1) << "train loss did not decrease from epoch 1 to 2" << ctx;
  EXPECT_LT(s["epochs"][1].value("val_loss", NAN), s["epochs"][0].value("val_loss", NAN)) << ctx;
  const double acc = s["final"].value("val_accuracy", 0.0);
  EXPECT_GT(acc, 0.6) << "final validation accuracy " << acc << " (chance: 0.1)" << ctx;
  std::printf("[  result  ] np=%d: train loss %.4f -> %.4f, final val accuracy %.4f\n", np, loss1, loss2, acc);

  // Messages only when there are stage ranks; 8-bit messages are smaller than the raw data.
  const uint64_t raw = s.value("bytes_raw", uint64_t{0}), wire = s.value("bytes_wire", uint64_t{0});
  if (np == 1) {
    EXPECT_EQ(wire, 0u) << ctx;
  } else {
    EXPECT_GT(wire, 0u) << ctx;
    EXPECT_LT(wire, raw) << ctx;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, SyntheticTraining, ::testing::Values(1, 2, 3, 4),
                         [](const ::testing::TestParamInfo<int>& i) { return "np" + std::to_string(i.param); });

// ---------------------------------------------------------------------------------------
// 2. The pipeline computes the same function as one rank: 32-bit messages, sequential
// schedule, M=1, 3 ranks (2 stages) against the 1-rank reference, 20 steps.

TEST_F(E2E, PipelineMatchesSingleRankReference) {
  std::string why;
  const std::vector<double> ref = reference_losses(&why);
  ASSERT_FALSE(ref.empty()) << why;
  std::vector<std::string> sets = equivalence_sets();
  sets.push_back("training.schedule=sequential");
  sets.push_back("training.micro_batches=1");
  const RunResult r = run(3, sets);
  ASSERT_TRUE(Completed(r));
  ASSERT_EQ(r.summary["stages"].size(), 2u) << r.describe();
  const auto match = LossesMatch(ref, step_losses(r), 1e-5, kEquivalenceSteps);
  EXPECT_TRUE(match) << r.command;
  std::printf("[  result  ] 3 ranks vs 1 rank, 20 steps: %s\n", match.message());
}

// ---------------------------------------------------------------------------------------
// 3. Every schedule and micro-batch count gives the reference's losses (32-bit messages).

class ScheduleEquivalence : public E2E, public ::testing::WithParamInterface<std::tuple<std::string, int>> {};

TEST_P(ScheduleEquivalence, MatchesReferenceForEveryM) {
  const auto& [schedule, np] = GetParam();
  std::string why;
  const std::vector<double> ref = reference_losses(&why);
  ASSERT_FALSE(ref.empty()) << why;
  for (int m : {1, 2, 4, 8}) {
    SCOPED_TRACE(schedule + ", np=" + std::to_string(np) + ", M=" + std::to_string(m));
    std::vector<std::string> sets = equivalence_sets();
    sets.push_back("training.schedule=" + schedule);
    sets.push_back("training.micro_batches=" + std::to_string(m));
    const RunResult r = run(np, sets);
    EXPECT_TRUE(Completed(r));
    if (!r.has_summary) continue;
    EXPECT_EQ(r.summary.value("schedule", ""), schedule) << r.describe();
    EXPECT_EQ(r.summary.value("micro_batches", -1), m) << r.describe();
    EXPECT_EQ(r.summary["stages"].size(), static_cast<size_t>(np - 1)) << r.describe();
    const auto match = LossesMatch(ref, step_losses(r), 1e-4, kEquivalenceSteps);
    EXPECT_TRUE(match) << r.command;
    std::printf("[  result  ] %s np=%d M=%d: %s\n", schedule.c_str(), np, m, match.message());
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, ScheduleEquivalence,
                         ::testing::Combine(::testing::Values("gpipe", "1f1b", "zb1p"), ::testing::Values(2, 3, 4)),
                         [](const ::testing::TestParamInfo<std::tuple<std::string, int>>& i) {
                           return std::get<0>(i.param) + "_np" + std::to_string(std::get<1>(i.param));
                         });

// The largest absolute difference between `want` and the checkpoint tensors of `r`, which must
// have the same names and shapes (a fatal failure otherwise).
double max_difference(const std::map<std::string, arceus::NamedArray>& want, const RunResult& r) {
  const auto got = tensors_of(r);
  double worst = 0;
  EXPECT_EQ(got.size(), want.size()) << r.describe();
  for (const auto& [name, a] : want) {
    if (!got.count(name)) {
      ADD_FAILURE() << "no tensor " << name << r.describe();
      return INFINITY;
    }
    const auto& b = got.at(name);
    if (a.shape != b.shape) {
      ADD_FAILURE() << "tensor " << name << " has another shape";
      return INFINITY;
    }
    for (size_t i = 0; i < a.data.size(); ++i) worst = std::max(worst, double(std::abs(a.data[i] - b.data[i])));
  }
  return worst;
}

// 3b. Under real mpirun, the new schedules leave every parameter and optimizer tensor of the
// checkpoint equal to the 1-rank reference's (the in-process suite pipeline_tests covers every
// schedule x S x v x M; this is the smaller set over MPI).
TEST_F(E2E, EveryTensorMatchesTheReferenceUnderMpirun) {
  std::vector<std::string> sets = equivalence_sets();
  sets.push_back("training.micro_batches=4");
  const RunResult ref = run(1, sets);
  ASSERT_TRUE(Completed(ref));
  const auto want = tensors_of(ref);
  ASSERT_FALSE(want.empty());
  for (const auto& [np, schedule, v] : std::vector<std::tuple<int, std::string, int>>{
           {3, "1f1b", 1}, {3, "zb1p", 1}, {4, "zb1p", 1}, {3, "interleaved", 2}}) {
    SCOPED_TRACE("np=" + std::to_string(np) + " " + schedule + " v=" + std::to_string(v));
    std::vector<std::string> s = sets;
    s.push_back("training.schedule=" + schedule);
    s.push_back("partition.chunks_per_rank=" + std::to_string(v));
    const RunResult r = run(np, s);
    ASSERT_TRUE(Completed(r));
    double worst = 0;
    ASSERT_NO_FATAL_FAILURE(worst = max_difference(want, r));
    EXPECT_LE(worst, 1e-6) << r.command;
    std::printf("[  result  ] %s np=%d v=%d: %zu tensors, max abs difference %g\n", schedule.c_str(), np, v,
                want.size(), worst);
  }
}

// Without the flush (training.pipeline_flush false) under mpirun: the in-process run of the
// same keys is the one-stage stream, the same delayed update (tests/test_no_flush.cpp proves
// it against a plain reference); a 3- and a 4-stage run equal it tensor for tensor.
TEST_F(E2E, NoFlushMatchesItsOneRankRunUnderMpirun) {
  std::vector<std::string> sets = equivalence_sets();
  for (const char* s : {"training.micro_batches=4", "training.schedule=eager1f1b", "training.pipeline_flush=false"})
    sets.push_back(s);
  const RunResult ref = run(1, sets);
  ASSERT_TRUE(Completed(ref));
  const auto want = tensors_of(ref);
  ASSERT_FALSE(want.empty());
  for (int np : {3, 4}) {
    const RunResult r = run(np, sets);
    ASSERT_TRUE(Completed(r));
    double worst = 0;
    ASSERT_NO_FATAL_FAILURE(worst = max_difference(want, r));
    EXPECT_LE(worst, 1e-6) << r.command;
    std::printf("[  result  ] no flush np=%d: %zu tensors, max abs difference %g\n", np, want.size(), worst);
  }
}

// ---------------------------------------------------------------------------------------
// 4. Four stages with 1F1B (np=5, one layer per stage) finish, with 1 and with 16
// micro-batches; a hang would hit the timeout and fail.

class FourStage1F1B : public E2E, public ::testing::WithParamInterface<int> {};

TEST_P(FourStage1F1B, Completes) {
  const int m = GetParam();
  const RunResult r = run(5, {"training.schedule=1f1b", "training.micro_batches=" + std::to_string(m)});
  ASSERT_TRUE(Completed(r));
  ASSERT_EQ(r.summary["stages"].size(), 4u) << r.describe();
  for (size_t k = 0; k < 4; ++k)
    EXPECT_EQ(r.summary["stages"][k]["layers"], json::array({k, k})) << r.describe();
  ASSERT_EQ(r.summary["epochs"].size(), 2u) << r.describe();
  EXPECT_EQ(r.summary["epochs"][1].value("steps", -1), kSyntheticSteps) << r.describe();
  EXPECT_GT(r.summary["final"].value("val_accuracy", 0.0), 0.6) << r.describe();
}

INSTANTIATE_TEST_SUITE_P(Micro, FourStage1F1B, ::testing::Values(1, 16),
                         [](const ::testing::TestParamInfo<int>& i) { return "M" + std::to_string(i.param); });

// ---------------------------------------------------------------------------------------
// 5. Bytes on the wire: 8-bit messages are about a quarter of 32-bit ones, 4-bit no more
// than 8-bit; the raw (float32-equivalent) byte count does not depend on the bit width.

TEST_F(E2E, WireBytesShrinkWithBits) {
  // Wide inputs and batches so that the per-message headers and per-row scales are small.
  const std::vector<std::string> wide{"dataset_config.synthetic.features=256", "model_config.layer_sizes=[256,48,40,24,10]",
                                      "dataset_config.batch_size=256", "training.epochs=1"};
  std::map<int, RunResult> runs;
  for (int bits : {32, 8, 4}) {
    std::vector<std::string> sets = wide;
    sets.push_back("communication.quantization_bits=" + std::to_string(bits));
    runs[bits] = run(3, sets);
    ASSERT_TRUE(Completed(runs[bits])) << bits << " bits";
  }
  auto raw = [&](int b) { return runs[b].summary.value("bytes_raw", uint64_t{0}); };
  auto wire = [&](int b) { return runs[b].summary.value("bytes_wire", uint64_t{0}); };
  ASSERT_GT(wire(32), 0u);
  EXPECT_EQ(wire(32), raw(32)) << "32-bit messages are the raw data";
  const double r8 = double(wire(8)) / double(wire(32)), r4 = double(wire(4)) / double(wire(32));
  std::printf("[  result  ] bytes_wire: 32-bit %llu, 8-bit %llu (%.4f), 4-bit %llu (%.4f); bytes_raw %llu\n",
              (unsigned long long)wire(32), (unsigned long long)wire(8), r8, (unsigned long long)wire(4), r4,
              (unsigned long long)raw(32));
  EXPECT_LE(r8, 0.27) << "bytes_wire(8) / bytes_wire(32) = " << wire(8) << " / " << wire(32) << " = " << r8;
  EXPECT_LE(wire(4), wire(8)) << "4-bit messages are larger than 8-bit ones (ratio to 32-bit: " << r4 << ")";
  EXPECT_EQ(raw(8), raw(32)) << "bytes_raw differs between 8 and 32 bits";
  EXPECT_EQ(raw(4), raw(32)) << "bytes_raw differs between 4 and 32 bits";
  for (int b : {32, 8, 4}) {
    const auto& e = runs[b].summary["epochs"];
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].value("bytes_wire", uint64_t{0}), wire(b)) << "per-epoch and total bytes disagree at " << b;
  }
}

// ---------------------------------------------------------------------------------------
// 6. Set-up errors: every rank exits, non-zero, one clear message, no hang.

TEST_F(E2E, ErrorMoreStagesThanLayers) {
  // np=5 asks for 4 stages; the model has 3 layers.
  const RunResult r = run(5, {"model_config.layer_sizes=[32,24,16,10]"});
  EXPECT_TRUE(FailsCleanly(r, {"4 stages", "3 layers"}));
}

TEST_F(E2E, ErrorFirstLayerWidthMismatch) {
  const RunResult r = run(3, {"model_config.layer_sizes=[30,48,40,24,10]"});
  EXPECT_TRUE(FailsCleanly(r, {"layer_sizes[0]", "30", "32"}));
}

TEST_F(E2E, ErrorMnistRootMissing) {
  const fs::path missing = scratch_ / "no-such-mnist-dir";
  const RunResult r = run(3, {"dataset_config.name=MNIST", "dataset_config.root=" + missing.string(),
                              "model_config.layer_sizes=[784,32,10]"});
  EXPECT_TRUE(FailsCleanly(r, {missing.string(), "does not exist"}));
}


TEST_F(E2E, SmallIdxFilesTrain) {
  // The control for the next test: the same files, not truncated, are a valid data set.
  const fs::path root = scratch_ / "mnist-ok";
  write_small_mnist(root, 4, false);
  const RunResult r = run(2, {"dataset_config.name=MNIST", "dataset_config.root=" + root.string(),
                              "model_config.layer_sizes=[16,24,10]", "dataset_config.batch_size=16",
                              "dataset_config.val_batch_size=32", "training.epochs=1"});
  ASSERT_TRUE(Completed(r));
  EXPECT_EQ(r.summary["epochs"][0].value("train_samples", -1), 64) << r.describe();
  EXPECT_EQ(r.summary["epochs"][0].value("val_samples", -1), 32) << r.describe();
}

TEST_F(E2E, ErrorTruncatedIdxFile) {
  const fs::path root = scratch_ / "mnist-truncated";
  write_small_mnist(root, 4, true);
  const RunResult r = run(3, {"dataset_config.name=MNIST", "dataset_config.root=" + root.string(),
                              "model_config.layer_sizes=[16,24,10]", "dataset_config.batch_size=16"});
  EXPECT_TRUE(FailsCleanly(r, {"truncated", "train-images-idx3-ubyte"}));
}

TEST_F(E2E, ErrorUnknownKeyFromSet) {
  const RunResult r = run(3, {"training.learning_rat=0.2"});
  EXPECT_TRUE(FailsCleanly(r, {"training.learning_rat", "did you mean", "learning_rate"}));
}

TEST_F(E2E, ErrorUnknownKeyInFile) {
  const RunResult r = run(3, {}, config_path("e2e_unknown_key.yaml"));
  EXPECT_TRUE(FailsCleanly(r, {"lerning_rate", "did you mean", "learning_rate"}));
}

TEST_F(E2E, ErrorOutputDirUnwritable) {
  // Caught in rank 0's set-up, before any training: one message naming the key and the path.
  const fs::path blocker = scratch_ / "a-regular-file";
  std::ofstream(blocker) << "not a directory\n";
  const fs::path out = blocker / "out";
  const RunResult r = run(3, {"output.dir=" + out.string()});  // the later --set wins
  EXPECT_TRUE(FailsCleanly(r, {"output.dir", out.string()}));
}

// ---------------------------------------------------------------------------------------
// 7. Determinism: stochastic rounding is seeded, so two identical 8-bit runs agree exactly.

TEST_F(E2E, StochasticRoundingIsDeterministic) {
  std::vector<std::string> sets{"communication.quantization_bits=8", "communication.stochastic_rounding=true",
                                "training.epochs=1", "training.max_steps=20", "dataset_config.batch_size=32",
                                "training.schedule=1f1b", "training.micro_batches=2"};
  const RunResult a = run(3, sets);
  ASSERT_TRUE(Completed(a));
  const RunResult b = run(3, sets);
  ASSERT_TRUE(Completed(b));
  const auto la = step_losses(a), lb = step_losses(b);
  ASSERT_EQ(la.size(), kEquivalenceSteps) << a.describe();
  EXPECT_TRUE(LossesMatch(la, lb, 0.0, kEquivalenceSteps)) << a.command;
  EXPECT_EQ(a.summary["final"].value("val_loss", NAN), b.summary["final"].value("val_loss", NAN));
  EXPECT_EQ(a.summary.value("bytes_wire", uint64_t{0}), b.summary.value("bytes_wire", uint64_t{0}));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// 8. Checkpoints: exact resume, resume on a different number of ranks, bad checkpoints,
//    eval and inspect. Runs use the same output directory; `resume=true` continues from
//    its checkpoint.h5.

namespace checkpoints {

std::map<std::string, std::vector<float>> tensors(const fs::path& file, bool with_optimizer) {
  const arceus::CheckpointData ck = arceus::read_checkpoint(file.string());
  std::map<std::string, std::vector<float>> out;
  for (const auto& a : ck.parameters) out[a.name] = a.data;
  if (with_optimizer)
    for (const auto& a : ck.optimizer) out["opt/" + a.name] = a.data;
  return out;
}

// Largest absolute difference over every tensor; a missing tensor or a shape change is +inf.
double max_difference(const std::map<std::string, std::vector<float>>& a,
                      const std::map<std::string, std::vector<float>>& b, std::string* where) {
  if (a.size() != b.size()) {
    *where = "tensor count " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
    return INFINITY;
  }
  double worst = 0;
  for (const auto& [name, va] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.size() != va.size()) {
      *where = name + " missing or reshaped";
      return INFINITY;
    }
    for (size_t i = 0; i < va.size(); ++i) {
      const double d = std::fabs(double(va[i]) - double(it->second[i]));
      if (d > worst) {
        worst = d;
        *where = name + "[" + std::to_string(i) + "]";
      }
    }
  }
  return worst;
}

std::string run_plain(const std::vector<std::string>& args) {
  std::string cmd = shell_quote(arceus_bin());
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " 2>&1; echo \"exit=$?\"";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  return out;
}

}  // namespace checkpoints

class Checkpoint : public E2E {
 public:
  const fs::path& scratch() const { return scratch_; }
  // Exactly reproducible: 32-bit messages; momentum (in the config) makes optimizer state matter.
  struct Job {
    fs::path dir;
    std::vector<std::string> sets;
  };
  static Job sets(const fs::path& dir, int epochs, bool resume) {
    return {dir, {"communication.quantization_bits=32", "training.epochs=" + std::to_string(epochs),
                  std::string("resume=") + (resume ? "true" : "false")}};
  }
  // Runs into `job.dir` itself (the checkpoint lives there across runs).
  RunResult run(int np, const Job& job) {
    return run_arceus(job.dir, np, config_path(kSynthetic), job.sets, run_timeout());
  }
};

TEST_F(Checkpoint, ResumeOnTheSameRanksIsBitIdentical) {
  const fs::path straight = scratch_ / "straight", resumed = scratch_ / "resumed";
  const RunResult a = run(3, sets(straight, 2, false));
  ASSERT_TRUE(Completed(a));
  const RunResult b1 = run(3, sets(resumed, 1, false));
  ASSERT_TRUE(Completed(b1));
  ASSERT_TRUE(fs::exists(resumed / "checkpoint.h5")) << b1.describe();
  const RunResult b2 = run(3, sets(resumed, 2, true));
  ASSERT_TRUE(Completed(b2));
  EXPECT_NE(b2.output.find("resumed from epoch 1, step 0"), std::string::npos) << b2.describe();
  std::string where;
  const double d = checkpoints::max_difference(checkpoints::tensors(straight / "checkpoint.h5", true),
                                               checkpoints::tensors(resumed / "checkpoint.h5", true), &where);
  EXPECT_EQ(d, 0.0) << "2 epochs straight vs 1 + resumed 1 differ by " << d << " at " << where;
  // The resumed run's summary keeps the first run's epoch and adds the second.
  ASSERT_EQ(b2.summary["epochs"].size(), 2u) << b2.describe();
  EXPECT_EQ(b2.summary["epochs"][1]["val_loss"], a.summary["epochs"][1]["val_loss"]);
}

TEST_F(Checkpoint, ResumeOnOtherRankCountsMatchesWithinTolerance) {
  const fs::path straight = scratch_ / "straight";
  ASSERT_TRUE(Completed(run(5, sets(straight, 2, false))));  // 4 stages
  for (int np : {1, 2, 3}) {
    const fs::path dir = scratch_ / ("from4-to" + std::to_string(np));
    ASSERT_TRUE(Completed(run(5, sets(dir, 1, false))));
    const RunResult r = run(np, sets(dir, 2, true));
    ASSERT_TRUE(Completed(r));
    std::string where;
    const double d = checkpoints::max_difference(checkpoints::tensors(straight / "checkpoint.h5", false),
                                                 checkpoints::tensors(dir / "checkpoint.h5", false), &where);
    EXPECT_LT(d, 1e-5) << "written on 4 stages, resumed on np=" << np << ": max difference " << d << " at " << where;
  }
}

TEST_F(Checkpoint, LeftoverTempFileFromACrashIsHarmless) {
  const fs::path dir = scratch_ / "run";
  ASSERT_TRUE(Completed(run(2, sets(dir, 1, false))));
  const auto before = checkpoints::tensors(dir / "checkpoint.h5", true);
  // A writer killed between writing the temporary file and the rename leaves this behind.
  std::ofstream(dir / "checkpoint.h5.tmp") << "half a checkpoint";
  const RunResult r = run(2, sets(dir, 2, true));
  ASSERT_TRUE(Completed(r));
  EXPECT_NE(r.output.find("resumed from epoch 1"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists(dir / "checkpoint.h5.tmp")) << "the next write replaces the temporary file";
  (void)before;
}

TEST_F(Checkpoint, CorruptCheckpointIsAClearError) {
  const fs::path dir = scratch_ / "run";
  ASSERT_TRUE(Completed(run(2, sets(dir, 1, false))));
  const fs::path ck = dir / "checkpoint.h5";
  const auto size = fs::file_size(ck);
  fs::resize_file(ck, size / 2);  // truncated
  fs::remove(dir / "summary.json");  // the first run's (completed): a failed set-up writes none
  const RunResult r = run(3, sets(dir, 2, true));
  EXPECT_TRUE(FailsCleanly(r, {"checkpoint.h5"}));
  std::ofstream(ck, std::ios::trunc) << "not an HDF5 file at all";
  const RunResult r2 = run(3, sets(dir, 2, true));
  EXPECT_TRUE(FailsCleanly(r2, {"checkpoint.h5", "HDF5"}));
}

TEST_F(Checkpoint, CheckpointOfAnotherModelNamesTheTensor) {
  const fs::path dir = scratch_ / "run";
  ASSERT_TRUE(Completed(run(2, sets(dir, 1, false))));
  fs::remove(dir / "summary.json");  // the first run's (completed): a failed set-up writes none
  Job s = sets(dir, 2, true);
  s.sets.push_back("model_config.layer_sizes=[32,64,40,24,10]");
  const RunResult r = run(3, s);
  EXPECT_TRUE(FailsCleanly(r, {"layers.0.weight", "[48, 32]", "[64, 32]"}));
}

TEST_F(Checkpoint, EvalAndInspect) {
  const fs::path dir = scratch_ / "run";
  const RunResult r = run(3, sets(dir, 1, false));
  ASSERT_TRUE(Completed(r));
  const double acc = r.summary["final"]["val_accuracy"].get<double>();
  const std::string eval = checkpoints::run_plain({"eval", config_path(kSynthetic), "--checkpoint",
                                                   (dir / "checkpoint.h5").string(), "--set",
                                                   "communication.quantization_bits=32"});
  char want[64];
  std::snprintf(want, sizeof want, "val accuracy %.2f%%", 100 * acc);
  EXPECT_NE(eval.find(want), std::string::npos) << "expected '" << want << "' in:\n" << eval;
  EXPECT_NE(eval.find("exit=0"), std::string::npos) << eval;
  const std::string inspect = checkpoints::run_plain({"inspect", (dir / "checkpoint.h5").string()});
  for (const char* s : {"layers.0.weight", "[48, 32]", "layers.3.bias", "momentum_buffer", "epoch: 1", "exit=0"})
    EXPECT_NE(inspect.find(s), std::string::npos) << "'" << s << "' missing from:\n" << inspect;
  const std::string bad = checkpoints::run_plain({"inspect", (dir / "nope.h5").string()});
  EXPECT_NE(bad.find("does not exist"), std::string::npos) << bad;
  EXPECT_EQ(bad.find("exit=0"), std::string::npos) << bad;
}

TEST_F(Checkpoint, MetricsFileHasEveryStepAndEpoch) {
  const fs::path dir = scratch_ / "run";
  const RunResult r = run(3, sets(dir, 2, false));
  ASSERT_TRUE(Completed(r));
  const std::string m = (dir / "metrics.h5").string();
  const auto loss = arceus::read_metrics_column(m, "steps", "loss");
  ASSERT_EQ(loss.size(), 2u * kSyntheticSteps);
  const auto losses = step_losses(r, 0);
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_DOUBLE_EQ(loss[i], losses[i]) << "step " << i;
  const auto wire = arceus::read_metrics_column(m, "steps", "bytes_wire");
  const auto raw = arceus::read_metrics_column(m, "steps", "bytes_raw");
  EXPECT_GT(wire[0], 0.0);
  EXPECT_EQ(wire[0], raw[0]);  // 32-bit messages: the wire carries float32
  const auto val = arceus::read_metrics_column(m, "epochs", "val_accuracy");
  ASSERT_EQ(val.size(), 2u);
  EXPECT_DOUBLE_EQ(val[1], r.summary["final"]["val_accuracy"].get<double>());
  EXPECT_EQ(arceus::read_metrics_column(m, "ranks", "rank").size(), 2u * 3u);  // 3 ranks x 2 epochs
}

// A run interrupted after a mid-epoch checkpoint has written metrics rows past it; the
// resumed run drops them before writing those steps again, so metrics.h5 ends up exactly like
// a straight run's. The checkpoint after 5 steps of epoch 1 comes from a 1-epoch run of 5
// steps (training.max_steps=5: the data order and the constant learning rate do not depend on
// the epoch's length), relabelled as 0 epochs + 5 steps with the step counter a straight run
// has there (5; the short run's also counts its validation batch). That this is a valid resume
// point is checked too: the final parameters equal the straight run's bit for bit.
TEST_F(Checkpoint, ResumeFromAMidEpochCheckpointDropsTheMetricsRowsPastIt) {
  const fs::path straight = scratch_ / "straight", prefix = scratch_ / "prefix", resumed = scratch_ / "resumed";
  const RunResult a = run(3, sets(straight, 2, false));
  ASSERT_TRUE(Completed(a));
  Job p = sets(prefix, 1, false);
  p.sets.push_back("training.max_steps=5");
  ASSERT_TRUE(Completed(run(3, p)));

  arceus::CheckpointData ck = arceus::read_checkpoint((prefix / "checkpoint.h5").string());
  ASSERT_EQ(ck.epoch, 1);
  ASSERT_EQ(ck.step, 0);
  ck.epoch = 0;
  ck.step = 5;
  ck.global_step = 5;
  ck.config_yaml = arceus::read_checkpoint((straight / "checkpoint.h5").string()).config_yaml;
  fs::create_directories(resumed);
  arceus::write_checkpoint((resumed / "checkpoint.h5").string(), ck);
  // The interrupted run got to the end of epoch 2 before it died: every row is there.
  fs::copy_file(straight / "metrics.h5", resumed / "metrics.h5");

  const RunResult r = run(3, sets(resumed, 2, true));
  ASSERT_TRUE(Completed(r));
  EXPECT_NE(r.output.find("resumed from epoch 0, step 5"), std::string::npos) << r.describe();
  // 27 step rows (steps 6..16 of epoch 1, epoch 2), 2 epoch rows, 2 x 3 rank rows.
  EXPECT_NE(r.output.find("metrics.h5: dropped 35 row(s) written after the checkpoint (epoch 0, step 5)"),
            std::string::npos)
      << r.describe();

  const std::string ma = (straight / "metrics.h5").string(), mr = (resumed / "metrics.h5").string();
  std::vector<double> epoch, step;
  for (double e : {1.0, 2.0}) {
    for (int k = 1; k <= kSyntheticSteps; ++k) {
      epoch.push_back(e);
      step.push_back(k);
    }
  }
  EXPECT_EQ(arceus::read_metrics_column(mr, "steps", "epoch"), epoch);
  EXPECT_EQ(arceus::read_metrics_column(mr, "steps", "step"), step);
  // Rows 1..5 kept from the interrupted run, 6..32 written again by an exact resume.
  EXPECT_EQ(arceus::read_metrics_column(mr, "steps", "loss"), arceus::read_metrics_column(ma, "steps", "loss"));
  EXPECT_EQ(arceus::read_metrics_column(mr, "epochs", "epoch"), (std::vector<double>{1, 2}));
  EXPECT_EQ(arceus::read_metrics_column(mr, "epochs", "val_loss"), arceus::read_metrics_column(ma, "epochs", "val_loss"));
  EXPECT_EQ(arceus::read_metrics_column(mr, "ranks", "epoch"), (std::vector<double>{1, 1, 1, 2, 2, 2}));
  EXPECT_EQ(arceus::read_metrics_column(mr, "ranks", "rank"), arceus::read_metrics_column(ma, "ranks", "rank"));

  std::string where;
  const double d = checkpoints::max_difference(checkpoints::tensors(straight / "checkpoint.h5", true),
                                               checkpoints::tensors(resumed / "checkpoint.h5", true), &where);
  EXPECT_EQ(d, 0.0) << "2 epochs straight vs resumed after 5 steps differ by " << d << " at " << where;
}

// ---------------------------------------------------------------------------------------
// 7. The transformer: a tiny GPT (4 layers) on tests/configs/e2e_hello.txt ("hello world! "
//    x 40). Equivalence with the 1-rank reference (32-bit messages, dropout 0, with warm-up,
//    cosine decay and global-norm clipping so that the learning rate and the norm exchange are
//    covered), memorisation on 1 and 3 ranks, resume, generate, eval and the text errors.

namespace gpt {

const char* kConfig = "e2e_gpt.yaml";
constexpr size_t kSteps = 20;

std::string source() { return "dataset_config.source=" + config_path("e2e_hello.txt"); }

// 2 epochs of 10 steps; 0.3 is below this model's gradient norm for the first steps, so
// clipping changes the update (checked below through grad_norm_mean).
std::vector<std::string> equivalence_sets() {
  return {source(),
          "communication.quantization_bits=32",
          "training.lr_schedule=cosine",
          "training.warmup_steps=5",
          "training.min_learning_rate=0.0003",
          "training.grad_clip=0.3"};
}

std::vector<double> all_step_losses(const RunResult& r) {
  std::vector<double> out;
  for (size_t e = 0; r.has_summary && e < r.summary["epochs"].size(); ++e)
    for (double v : step_losses(r, e)) out.push_back(v);
  return out;
}

}  // namespace gpt

class Gpt : public E2E {
 protected:
  RunResult run_gpt(int np, std::vector<std::string> sets) {
    sets.insert(sets.begin(), gpt::source());
    return run(np, sets, config_path(gpt::kConfig));
  }
};

TEST_F(Gpt, PipelineMatchesSingleRankReference) {
  const RunResult ref = run_gpt(1, gpt::equivalence_sets());
  ASSERT_TRUE(Completed(ref));
  const auto want = gpt::all_step_losses(ref);
  ASSERT_EQ(want.size(), gpt::kSteps) << ref.describe();
  // Clipping was active: the mean global norm of the first epoch exceeds the threshold.
  ASSERT_TRUE(ref.summary["epochs"][0].contains("grad_norm_mean")) << ref.describe();
  EXPECT_GT(ref.summary["epochs"][0]["grad_norm_mean"].get<double>(), 0.3) << ref.describe();
  for (const auto& [np, schedule, m] : std::vector<std::tuple<int, std::string, int>>{
           {3, "1f1b", 2}, {4, "gpipe", 4}, {5, "1f1b", 3}}) {
    SCOPED_TRACE("np=" + std::to_string(np) + " " + schedule + " M=" + std::to_string(m));
    std::vector<std::string> sets = gpt::equivalence_sets();
    sets.push_back("training.schedule=" + schedule);
    sets.push_back("training.micro_batches=" + std::to_string(m));
    const RunResult r = run_gpt(np, sets);
    ASSERT_TRUE(Completed(r));
    EXPECT_EQ(r.summary["stages"].size(), static_cast<size_t>(np - 1)) << r.describe();
    const auto match = LossesMatch(want, gpt::all_step_losses(r), 1e-4, gpt::kSteps);
    EXPECT_TRUE(match) << r.command;
    EXPECT_NEAR(r.summary["epochs"][0]["grad_norm_mean"].get<double>(),
                ref.summary["epochs"][0]["grad_norm_mean"].get<double>(), 1e-4);
    std::printf("[  result  ] GPT np=%d %s M=%d vs 1 rank, %zu steps: %s\n", np, schedule.c_str(), m, gpt::kSteps,
                match.message());
  }
}

TEST_F(Gpt, MemorisesTheTinyTextOnOneAndThreeRanks) {
  for (int np : {1, 3}) {
    SCOPED_TRACE("np=" + std::to_string(np));
    const RunResult r = run_gpt(np, {"training.epochs=6"});  // 60 steps, 8-bit messages
    ASSERT_TRUE(Completed(r));
    const double loss = r.summary["epochs"][3]["train_loss"].get<double>();
    const double val = r.summary["final"]["val_loss"].get<double>();
    EXPECT_LT(loss, 0.5) << "the 4th epoch's mean training loss (steps 31-40)" << r.describe();
    EXPECT_LT(val, 0.5) << "validation loss" << r.describe();
    EXPECT_GT(r.summary["epochs"][0]["tokens_per_second"].get<double>(), 0.0);
    std::printf("[  result  ] GPT np=%d: train loss %.4f over steps 31-40, val loss %.4f after 60\n", np, loss, val);
    // Greedy continuation reproduces the text.
    const std::string greedy = checkpoints::run_plain({"generate", "--checkpoint", (r.out_dir / "checkpoint.h5").string(),
                                                       "--prompt", "hello w", "--tokens", "13", "--temperature", "0"});
    EXPECT_NE(greedy.find("hello world! hello w\n"), std::string::npos) << greedy;
    EXPECT_NE(greedy.find("exit=0"), std::string::npos) << greedy;
  }
}

TEST_F(Gpt, ResumeIsBitIdenticalAndGenerateEvalWork) {
  // Dropout on: resuming must restore each stage's random stream too.
  const std::vector<std::string> common{"model_config.dropout=0.1", "communication.quantization_bits=32",
                                        "output.sample_tokens=40"};
  const fs::path straight = scratch_ / "straight", resumed = scratch_ / "resumed";
  auto with = [&](const fs::path& dir, int epochs, bool resume) {
    std::vector<std::string> s = common;
    s.push_back(gpt::source());
    s.push_back("training.epochs=" + std::to_string(epochs));
    s.push_back(std::string("resume=") + (resume ? "true" : "false"));
    return run_arceus(dir, 3, config_path(gpt::kConfig), s, run_timeout());
  };
  const RunResult a = with(straight, 2, false);
  ASSERT_TRUE(Completed(a));
  ASSERT_TRUE(Completed(with(resumed, 1, false)));
  const RunResult b = with(resumed, 2, true);
  ASSERT_TRUE(Completed(b));
  std::string where;
  const double d = checkpoints::max_difference(checkpoints::tensors(straight / "checkpoint.h5", true),
                                               checkpoints::tensors(resumed / "checkpoint.h5", true), &where);
  EXPECT_EQ(d, 0.0) << "2 epochs straight vs 1 + resumed 1 differ by " << d << " at " << where;

  // The per-epoch sample: in the log, summary.json and samples.txt, from the vocabulary.
  const std::string sample = a.summary["epochs"][1].value("sample", "");
  EXPECT_EQ(sample.size(), 40u) << a.describe();
  EXPECT_EQ(sample.find_first_not_of("hello wrd!"), std::string::npos) << sample;
  const std::string samples = read_text(straight / "samples.txt");
  EXPECT_NE(samples.find("=== epoch 2 ===\n" + sample), std::string::npos) << samples;

  const std::string ck = (straight / "checkpoint.h5").string();
  const std::string sampled = checkpoints::run_plain({"generate", "--checkpoint", ck, "--prompt", "hello w",
                                                      "--tokens", "13", "--seed", "3"});
  EXPECT_EQ(sampled.rfind("hello w", 0), 0u) << sampled;
  EXPECT_EQ(sampled.find("\nexit=0"), 20u) << "prompt + 13 characters, then a newline:\n" << sampled;
  const std::string unknown = checkpoints::run_plain({"generate", "--checkpoint", ck, "--prompt", "xyz"});
  EXPECT_NE(unknown.find("'x'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("not in the vocabulary"), std::string::npos) << unknown;
  EXPECT_EQ(unknown.find("exit=0"), std::string::npos) << unknown;

  const std::string eval = checkpoints::run_plain({"eval", config_path(gpt::kConfig), "--checkpoint", ck, "--set",
                                                   gpt::source(), "--set", "model_config.dropout=0.1"});
  char want[64];
  std::snprintf(want, sizeof want, "val loss %.4f", a.summary["final"]["val_loss"].get<double>());
  EXPECT_NE(eval.find(want), std::string::npos) << "expected '" << want << "' in:\n" << eval;

  // An MLP checkpoint is not a transformer's.
  const fs::path mlp = scratch_ / "mlp";
  ASSERT_TRUE(Completed(run_arceus(mlp, 1, config_path(kSynthetic), {"training.epochs=1"}, run_timeout())));
  const std::string wrong = checkpoints::run_plain({"generate", "--checkpoint", (mlp / "checkpoint.h5").string()});
  EXPECT_NE(wrong.find("needs a transformer checkpoint"), std::string::npos) << wrong;
}

TEST_F(Gpt, TextErrorsEndEveryRank) {
  const fs::path dir = scratch_ / "texts";
  fs::create_directories(dir);
  std::ofstream(dir / "empty.txt").close();
  std::ofstream(dir / "short.txt") << "hello world";  // 11 characters < 10 x context + 1
  std::ofstream(dir / "latin1.txt") << std::string(300, 'a') << "caf\xe9" << std::string(300, 'b');
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases{
      {(dir / "missing.txt").string(), {"missing.txt", "does not exist"}},
      {(dir / "empty.txt").string(), {"empty.txt", "empty"}},
      {(dir / "short.txt").string(), {"short.txt", "11 characters"}},
      {(dir / "latin1.txt").string(), {"latin1.txt", "UTF-8", "303"}},
  };
  for (const auto& [path, phrases] : cases) {
    SCOPED_TRACE(path);
    const RunResult r = run(3, {"dataset_config.source=" + path}, config_path(gpt::kConfig));
    EXPECT_TRUE(FailsCleanly(r, phrases));
  }
  // A vocabulary that differs from the checkpoint's is refused on resume.
  const fs::path ckdir = scratch_ / "vocab";
  ASSERT_TRUE(Completed(run_arceus(ckdir, 2, config_path(gpt::kConfig), {gpt::source(), "training.epochs=1"},
                                   run_timeout())));
  std::ofstream(dir / "other.txt") << [] { std::string s; for (int i = 0; i < 40; ++i) s += "hello there! "; return s; }();
  fs::remove(ckdir / "summary.json");
  const RunResult r = run_arceus(ckdir, 2, config_path(gpt::kConfig),
                                 {"dataset_config.source=" + (dir / "other.txt").string(), "training.epochs=2", "resume=true"},
                                 run_timeout());
  EXPECT_TRUE(FailsCleanly(r, {"different vocabulary", "U+0074 't'"}));
}

// ---------------------------------------------------------------------------------------
// Faults: `arceus run`, the restart supervisor.

namespace faults {

// The MPI rank of a process (Open MPI puts it in each rank's environment), or -1.
int mpi_rank_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string key = std::string("OMPI_COMM_WORLD_RANK=");
  size_t pos = 0;
  while (pos < env.size()) {
    const size_t end = env.find('\0', pos);
    const std::string item = env.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (item.rfind(key, 0) == 0) return std::atoi(item.c_str() + key.size());
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return -1;
}

// The global training step in the run's progress file (ARCEUS_PROGRESS_FILE of `arceus run`).
int64_t progress_step(const fs::path& file) {
  std::ifstream in(file);
  int64_t epoch = 0, step = 0, steps = 0;
  if (!(in >> epoch >> step >> steps)) return -1;
  return (epoch - 1) * steps + step;
}

}  // namespace faults

// A stage rank killed with SIGKILL at a chosen step of a 4-rank run under `arceus run
// --max-restarts 1`: the supervisor restarts the job from the step checkpoint before the kill,
// the job finishes, and at 32 bits its parameters equal an uninterrupted run's exactly;
// summary.json records the restart (rank, step reached, step resumed from, steps redone).
// Rank `victim` of an np-rank run (with `extra` sets) is SIGKILLed mid-epoch under `arceus run`:
// the run restarts from its last checkpoint and ends with the uninterrupted run's tensors.
void expect_restart_after_kill(Checkpoint& t, int np, const std::vector<std::string>& extra, int victim_rank) {
  const fs::path straight = t.scratch() / ("straight" + std::to_string(victim_rank) + std::to_string(np)),
                 faulty = t.scratch() / ("faulty" + std::to_string(victim_rank) + std::to_string(np));
  constexpr int kEpochs = 3, kEvery = 4;
  Checkpoint::Job s = t.sets(straight, kEpochs, false);
  for (const auto& e : extra) s.sets.push_back(e);
  s.sets.push_back("output.checkpoint_every_steps=" + std::to_string(kEvery));
  const RunResult a = t.run(np, s);
  ASSERT_TRUE(Completed(a));

  Checkpoint::Job f = t.sets(faulty, kEpochs, false);
  for (const auto& e : extra) f.sets.push_back(e);
  f.sets.push_back("output.checkpoint_every_steps=" + std::to_string(kEvery));
  constexpr int64_t kKillAt = kSyntheticSteps + 6;  // epoch 2, step 6 (or a little later: the watch polls)
  bool killed = false;
  pid_t victim = 0;
  const RunResult b = run_arceus(
      faulty, np, config_path(kSynthetic), f.sets, run_timeout(),
      {arceus_bin(), "run", "--max-restarts", "1", "--pause", "0.5", "--"}, [&](const Processes& seen) {
        if (killed || faults::progress_step(faulty / ".progress") < kKillAt) return;
        for (const auto& [pid, start] : seen) {
          if (still_running(pid, start) && faults::mpi_rank_of(pid) == victim_rank && ::kill(pid, SIGKILL) == 0) {
            victim = pid;
            killed = true;
            return;
          }
        }
      });
  ASSERT_TRUE(killed) << "no rank " << victim_rank << " process found to kill" << b.describe();
  ASSERT_TRUE(Completed(b));
  EXPECT_NE(b.output.find("[run] rank " + std::to_string(victim_rank) + " on "), std::string::npos) << b.describe();
  EXPECT_NE(b.output.find("restarting in"), std::string::npos) << b.describe();
  ASSERT_TRUE(b.summary.contains("restarts")) << b.describe();
  ASSERT_EQ(b.summary["restarts"].size(), 1u) << b.summary.dump(1);
  const json& r = b.summary["restarts"][0];
  EXPECT_EQ(r["failed_rank"], victim_rank) << r.dump();
  const int64_t reached = (r["reached"]["epoch"].get<int64_t>() - 1) * kSyntheticSteps + r["reached"]["step"].get<int64_t>();
  // The checkpoint's epoch counts the completed epochs, its step those of the next.
  const int64_t resumed = r["resumed_from"]["epoch"].get<int64_t>() * kSyntheticSteps + r["resumed_from"]["step"].get<int64_t>();
  EXPECT_GE(reached, kKillAt) << r.dump();
  EXPECT_LT(reached, kEpochs * kSyntheticSteps) << r.dump();
  // The last checkpoint at or before the step reached (the one at that very step may not have
  // been written when the rank died).
  EXPECT_EQ(resumed % kEvery, 0) << r.dump();
  EXPECT_LE(resumed, reached) << r.dump();
  EXPECT_GE(resumed, reached - kEvery) << r.dump();
  EXPECT_EQ(r["steps_redone"].get<int64_t>(), reached - resumed) << r.dump();
  EXPECT_EQ(b.summary["steps_redone"], r["steps_redone"]);

  std::string where;
  const double d = checkpoints::max_difference(checkpoints::tensors(straight / "checkpoint.h5", true),
                                               checkpoints::tensors(faulty / "checkpoint.h5", true), &where);
  EXPECT_EQ(d, 0.0) << "uninterrupted vs killed and restarted differ by " << d << " at " << where;
  const double acc_a = a.summary["final"]["val_accuracy"].get<double>(), acc_b = b.summary["final"]["val_accuracy"].get<double>();
  EXPECT_NEAR(acc_b, acc_a, 0.005);
  std::printf("[  faults  ] np=%d: rank %d (pid %d) killed at step %lld; restarted from step %lld; %lld steps redone; val "
              "accuracy %.4f vs %.4f uninterrupted\n",
              np, victim_rank, int(victim), (long long)reached, (long long)resumed, (long long)r["steps_redone"].get<int64_t>(), acc_b,
              acc_a);
}

TEST_F(Checkpoint, KilledStageRankIsRestartedFromTheLastCheckpoint) { expect_restart_after_kill(*this, 4, {}, 2); }

// A replica's rank killed mid-step: every rank exits (the other replica's sum never completes,
// rank 0's metrics never come), and `arceus run` restarts from the checkpoint to the same tensors.
TEST_F(Checkpoint, KilledReplicaRankIsRestartedFromTheLastCheckpoint) {
  expect_restart_after_kill(*this, 5, {"partition.replicas=2", "partition.stages=2"}, 3);
}

// A config error is not retried: `arceus run --max-restarts 3` exits 1 after one try.
TEST_F(Checkpoint, ConfigErrorIsNotRetried) {
  const fs::path dir = scratch_ / "bad";
  const RunResult r = run_arceus(dir, 3, config_path(kSynthetic), {"model_config.layer_sizes=[32,10,0]"}, run_timeout(),
                                 {arceus_bin(), "run", "--max-restarts", "3", "--pause", "0", "--"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.output.find("layer_sizes"), std::string::npos) << "the job's own message: " << r.describe();
  EXPECT_NE(r.output.find("not retried"), std::string::npos) << r.describe();
  EXPECT_EQ(r.output.find("restarting"), std::string::npos) << r.describe();

  // A data error found when the job starts (the config is valid): one try too.
  const RunResult d = run_arceus(scratch_ / "data", 3, config_path(kSynthetic),
                                 {"model_config.layer_sizes=[31,10]"}, run_timeout(),
                                 {arceus_bin(), "run", "--max-restarts", "3", "--pause", "0", "--"});
  EXPECT_EQ(d.exit_code, 1) << d.describe();
  size_t attempts = 0;
  for (size_t p = d.output.find("[run] attempt "); p != std::string::npos; p = d.output.find("[run] attempt ", p + 1))
    ++attempts;
  EXPECT_EQ(attempts, 1u) << d.describe();
  EXPECT_NE(d.output.find("not retried"), std::string::npos) << d.describe();
}
