// End-to-end tests of replicas under real mpirun (the in-process suite, pipeline_tests'
// Replicas.*, covers every schedule x R x S x M): every parameter and optimizer tensor of the
// checkpoint equals the 1-rank reference's; worlds that do not fit are clear errors.
#include "support/e2e_runs.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class ReplicasMpi : public E2E {};

// R = 2 replicas of S = 1 (np 3) and of S = 2 (np 5), at 32 bits: the reference's tensors, and
// summary.json names the replicas and the synchronisation's bytes between them.
TEST_F(ReplicasMpi, MatchTheReferenceUnderMpirun) {
  std::vector<std::string> sets = equivalence_sets();
  sets.push_back("training.micro_batches=2");
  sets.push_back("training.grad_clip=1.0");
  const RunResult ref = run(1, sets);
  ASSERT_TRUE(Completed(ref));
  const auto want = tensors_of(ref);
  for (const auto& [np, stages] : std::vector<std::pair<int, int>>{{3, 1}, {5, 2}}) {
    SCOPED_TRACE("np=" + std::to_string(np) + " S=" + std::to_string(stages));
    std::vector<std::string> s = sets;
    s.push_back("training.schedule=1f1b");
    s.push_back("partition.replicas=2");
    s.push_back("partition.stages=" + std::to_string(stages));
    const RunResult r = run(np, s);
    ASSERT_TRUE(Completed(r));
    EXPECT_EQ(r.summary.value("replicas", 0), 2) << r.describe();
    ASSERT_EQ(r.summary["stages"].size(), size_t(stages)) << r.describe();
    // Replica-major: replica r's stage s on rank 1 + r*S + (s-1).
    for (int k = 0; k < stages; ++k)
      EXPECT_EQ(r.summary["stages"][size_t(k)]["replica_ranks"], json::array({1 + k, 1 + stages + k})) << r.describe();
    // The stage groups' rings: replica 0's stage 1 sends its share of the sums to replica 1's.
    bool sync_link = false;
    for (const auto& l : r.summary["step_links"])
      if (l["from"] == 1 && l["to"] == 1 + stages) sync_link = true;
    EXPECT_TRUE(sync_link) << r.summary["step_links"].dump();
    const auto got = tensors_of(r);
    ASSERT_EQ(got.size(), want.size()) << r.describe();
    double worst = 0;
    for (const auto& [name, a] : want) {
      ASSERT_TRUE(got.count(name)) << name << r.describe();
      for (size_t i = 0; i < a.data.size(); ++i) worst = std::max(worst, double(std::abs(a.data[i] - got.at(name).data[i])));
    }
    EXPECT_LE(worst, 1e-6) << r.command;
    std::printf("[  result  ] 2 replicas x %d stage(s), np=%d: %zu tensors, max abs difference %g\n", stages, np,
                want.size(), worst);
    for (const auto& t : r.summary["epochs"][0]["timing"]) {
      if (t["stage"].get<int>() >= 1) {
        EXPECT_TRUE(t.contains("replica") && t.contains("sync_s")) << t.dump();
      }
    }
  }
}

// A world that does not fit names every number; every rank exits.
TEST_F(ReplicasMpi, ErrorWhenTheWorldDoesNotFit) {
  const RunResult r = run(4, {"partition.replicas=2", "partition.stages=2"});
  EXPECT_TRUE(FailsCleanly(r, {"[partition] 2 replicas x 2 stages need 5 ranks (rank 0 + 4 workers)",
                               "mpirun -np 4 gave 3 workers"}));
}

// replicas: 2 with stages auto on np 3 is 2 replicas of one stage (S = (world - 1) / R).
TEST_F(ReplicasMpi, StagesAuto) {
  const RunResult r = run(3, {"partition.replicas=2", "training.epochs=1"});
  ASSERT_TRUE(Completed(r));
  EXPECT_EQ(r.summary.value("replicas", 0), 2) << r.describe();
  EXPECT_EQ(r.summary["stages"].size(), 1u) << r.describe();
}

// The default job (configs/fashion_mnist_mlp.yaml, 5 epochs) as 2 replicas: with 8-bit gradient
// sums (the ring with error feedback) it reaches at least the validation accuracy of 32-bit sums
// minus 0.5 points.
TEST_F(ReplicasMpi, DefaultJobWithEightBitGradients) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist"))
    GTEST_SKIP() << "/usr/share/datasets/fashion-mnist is missing (Debian package dataset-fashion-mnist)";
  const std::string config = (fs::path(TEST_CONFIG_DIR).parent_path().parent_path() / "configs" /
                              "fashion_mnist_mlp.yaml").string();
  double accuracy[2] = {0, 0};
  int k = 0;
  for (const int bits : {32, 8}) {
    const RunResult r = run(3, {"partition.replicas=2", "communication.gradient_bits=" + std::to_string(bits),
                                "output.checkpoint_every=0"},
                            config);
    ASSERT_TRUE(Completed(r));
    ASSERT_EQ(r.summary["epochs"].size(), 5u) << r.describe();
    accuracy[k++] = r.summary["final"]["val_accuracy"].get<double>();
  }
  std::printf("[  result  ] default job, 2 replicas, 5 epochs: val accuracy %.2f%% with 32-bit gradient sums, %.2f%% "
              "with 8-bit\n",
              100 * accuracy[0], 100 * accuracy[1]);
  EXPECT_GE(accuracy[1], accuracy[0] - 0.005);
}

}  // namespace

namespace {

// dataset_config.feed local: each replica's first stage reads the files at the same path as
// rank 0 (here relative, from each application context's working directory). A copy that
// differs, or none, is an error at start-up naming the rank, its host and the data; the same
// files train.
TEST_F(ReplicasMpi, LocalFeedChecksEveryReplicasFiles) {
  const fs::path a = scratch_ / "a", b = scratch_ / "b", c = scratch_ / "c";
  write_small_mnist(a / "mnist", 4, false);
  write_small_mnist(b / "mnist", 4, false);
  write_small_mnist(c / "mnist", 4, false, /*shade=*/3);
  const std::vector<std::string> sets = {"dataset_config.name=MNIST", "dataset_config.root=mnist",
                                         "model_config.layer_sizes=[16,24,10]", "dataset_config.batch_size=16",
                                         "dataset_config.val_batch_size=32", "training.epochs=1",
                                         "partition.replicas=2", "dataset_config.feed=local"};
  // Rank 0 in a/, the two replicas in `other`: the same args, a second application context.
  auto run_with = [&](const fs::path& other, const std::string& name) {
    std::vector<std::string> suffix = {":", "-np", "2", "-wdir", other.string(), arceus_bin(), "train",
                                       config_path(kSynthetic), "--quiet", "--set",
                                       "output.dir=" + (scratch_ / name).string()};
    for (const auto& s : sets) suffix.insert(suffix.end(), {"--set", s});
    return run_arceus(scratch_ / name, 1, config_path(kSynthetic), sets, run_timeout(), {}, nullptr,
                      {"-wdir", a.string()}, suffix);
  };
  const RunResult same = run_with(b, "same");
  ASSERT_TRUE(Completed(same));
  EXPECT_EQ(same.summary["epochs"][0].value("train_samples", -1), 64) << same.describe();
  const RunResult differ = run_with(c, "differ");
  EXPECT_TRUE(FailsCleanly(differ, {"[data] dataset_config.feed local: rank 1 on ", "checksum", "the files differ",
                                    "mnist"}));
  fs::create_directories(scratch_ / "nowhere");  // a working directory without the files
  const RunResult missing = run_with(scratch_ / "nowhere", "missing");
  EXPECT_TRUE(FailsCleanly(missing, {"[data] dataset_config.feed local: rank 1 on ", "mnist"}));
}

}  // namespace
