// What `arceus plan` does around the model (planner/command.h) and its calibration cache
// (planner/calibration.h: read_calibration_file, write_calibration_file). Torch-free.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "planner/calibration.h"
#include "planner/command.h"
#include "planner/planner.h"
#include "support/errors.h"
#include "support/files.h"

namespace fs = std::filesystem;

namespace arceus::plan {
namespace {

class CalibrationFile : public ::testing::Test {
 protected:
  test::TempDir tmp_{"arceus_plan_"};
  fs::path dir_ = tmp_.path();
};

TEST_F(CalibrationFile, WrittenIntoANewDirectoryAndReadBack) {
  Calibration cal;
  cal.cpu = "test cpu";
  cal.blas = "test blas";
  cal.threads = 2;
  cal.measured_at = "2026-12-03 10:00";
  cal.layers["mlp 4x2 loss"] = LayerTiming{{1, 8}, {1e-6, 8e-6}, {2e-6, 16e-6}, {1e-6, 8e-6}, {1e-6, 8e-6}};
  cal.encode_s_per_mib[8] = 40e-6;
  const std::string path = (dir_ / "cache" / "arceus" / "calibration.json").string();
  write_calibration_file(path, cal);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(to_json(read_calibration_file(path)), to_json(cal));

  cal.threads = 4;  // replaced, not appended to
  write_calibration_file(path, cal);
  EXPECT_EQ(read_calibration_file(path).threads, 4);
}

TEST_F(CalibrationFile, AFileThatIsNotACalibrationIsNamed) {
  const std::string missing = (dir_ / "missing.json").string();
  std::string msg = test::expected_error<PlanError>([&] { read_calibration_file(missing); });
  EXPECT_NE(msg.find("'" + missing + "'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(ENOENT)), std::string::npos) << msg;

  const std::string other = (dir_ / "other.json").string();
  test::write_text(other, "{\"format\": \"something else\"}");
  msg = test::expected_error<PlanError>([&] { read_calibration_file(other); });
  EXPECT_NE(msg.find(other + " is not an arceus calibration"), std::string::npos) << msg;
}

TEST(PlanCommand, SearchSpaceFromTheOptions) {
  const SearchSpace s = search_space("1f1b,gpipe", "1,4", "32,4");
  EXPECT_EQ(s.schedules, (std::vector<std::string>{"1f1b", "gpipe"}));
  EXPECT_EQ(s.micro_batches, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(s.bits, (std::vector<int>{32, 4}));

  EXPECT_EQ(test::expected_error<PlanError>([] { search_space("1f1b", "1,x", "32"); }),
            "[plan] --micro-batches '1,x': expected counts M >= 1, e.g. 1,2,4,8");
  EXPECT_EQ(test::expected_error<PlanError>([] { search_space("1f1b", "1", "32,7"); }),
            "[plan] --bits '32,7': '7' is not a bit width (expected 32, 16, 8 or 4)");
  EXPECT_THROW(search_space("1f1b,nope", "1", "32"), std::exception);

  const SearchSpace r = search_space("1f1b", "4", "8", "32,8", "1,2,4");
  EXPECT_EQ(r.gradient_bits, (std::vector<int>{32, 8}));
  EXPECT_EQ(r.replicas, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_TRUE(search_space("1f1b", "4", "8").replicas.empty());  // every count the hosts allow
  EXPECT_EQ(test::expected_error<PlanError>([] { search_space("1f1b", "1", "32", "32,2"); }),
            "[plan] --gradient-bits '32,2': '2' is not a bit width (expected 32, 16, 8 or 4)");
  EXPECT_EQ(test::expected_error<PlanError>([] { search_space("1f1b", "1", "32", "32", "2,0"); }),
            "[plan] --replicas '2,0': '0' is not a replica count (expected R >= 1, e.g. 1,2,4)");
  EXPECT_EQ(search_space("1f1b", "4", "8", "8", "", "20,100").diloco_inner_steps, (std::vector<int64_t>{20, 100}));
  EXPECT_TRUE(search_space("1f1b", "4", "8", "8", "", "none").diloco_inner_steps.empty());
  EXPECT_TRUE(search_space("1f1b", "4", "8").diloco_inner_steps.empty());
  EXPECT_EQ(test::expected_error<PlanError>([] { search_space("1f1b", "1", "32", "32", "", "50,0"); }),
            "[plan] --diloco '50,0': '0' is not a count of inner steps (expected H >= 1, e.g. 50 or 20,100, or 'none')");
}

TEST(PlanCommand, ClusterHostsAndTheirSpeeds) {
  std::vector<Host> hosts = cluster_hosts("", 3, "", 1.0);
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[0].name, "host1");
  EXPECT_EQ(hosts[0].slots, 2);  // rank 0 and stage 1
  EXPECT_EQ(hosts[2].slots, 1);

  hosts = cluster_hosts("", 2, "0.5", 4.0);
  EXPECT_DOUBLE_EQ(hosts[0].speed, 2.0);
  EXPECT_DOUBLE_EQ(hosts[1].speed, 2.0);
  hosts = cluster_hosts("", 2, "1,3", 1.0);
  EXPECT_DOUBLE_EQ(hosts[1].speed, 3.0);

  const std::string expected = "expected a speed factor F > 0 (relative to this machine) or one per host, F,F,...";
  EXPECT_EQ(test::expected_error<PlanError>([] { cluster_hosts("", 3, "1,2", 1.0); }),
            "[plan] --host-speed '1,2' has 2 values for 3 hosts: " + expected);
  EXPECT_EQ(test::expected_error<PlanError>([] { cluster_hosts("", 3, "0", 1.0); }),
            "[plan] --host-speed '0': '0' is not a number > 0: " + expected);
}

TEST(PlanCommand, TrainCommandOfACandidate) {
  PlanAnswer a;
  a.config = "configs/x.yaml";
  a.sets = {"training.epochs=1"};
  Candidate c;
  c.in_process = true;
  c.micro_batches = 4;
  EXPECT_EQ(train_command(a, c),
            "build/arceus train configs/x.yaml --set 'training.epochs=1' --set training.micro_batches=4");
  c.in_process = false;
  c.stages = 2;
  c.schedule = "1f1b";
  c.bits = 8;
  c.partition = "balanced";
  EXPECT_EQ(train_command(a, c),
            "mpirun --hostfile HOSTFILE -np 3 build/arceus train configs/x.yaml --set 'training.epochs=1' "
            "--set training.schedule=1f1b --set training.micro_batches=4 --set communication.quantization_bits=8 "
            "--set partition.chunks_per_rank=1 --set partition.method=balanced --set partition.stages=2");
  c.pipeline_flush = false;
  EXPECT_EQ(train_command(a, c),
            "mpirun --hostfile HOSTFILE -np 3 build/arceus train configs/x.yaml --set 'training.epochs=1' "
            "--set training.schedule=1f1b --set training.micro_batches=4 --set communication.quantization_bits=8 "
            "--set partition.chunks_per_rank=1 --set training.pipeline_flush=false --set partition.method=balanced "
            "--set partition.stages=2");
}

TEST(PlanCommand, TrainCommandOfReplicas) {
  PlanAnswer a;
  a.config = "configs/x.yaml";
  a.hostfile = "hosts";
  Candidate c;
  c.replicas = 4;
  c.stages = 1;
  c.micro_batches = 2;
  c.schedule = "1f1b";
  c.bits = 8;
  c.gradient_bits = 4;
  c.chunks = {LayerRange{0, 3}};
  c.partition = "whole";
  EXPECT_EQ(train_command(a, c),
            "mpirun --hostfile hosts -np 5 build/arceus train configs/x.yaml --set training.schedule=1f1b "
            "--set training.micro_batches=2 --set communication.quantization_bits=8 --set partition.chunks_per_rank=1 "
            "--set partition.replicas=4 --set partition.stages=1 --set communication.gradient_bits=4");
  c.diloco_inner_steps = 50;
  c.gradient_bits = 8;
  EXPECT_EQ(train_command(a, c),
            "mpirun --hostfile hosts -np 5 build/arceus train configs/x.yaml --set training.schedule=1f1b "
            "--set training.micro_batches=2 --set communication.quantization_bits=8 --set partition.chunks_per_rank=1 "
            "--set partition.replicas=4 --set partition.stages=1 --set training.sync=diloco --set diloco.inner_steps=50 "
            "--set diloco.bits=8");
  c.diloco_inner_steps = 0;
  c.replicas = 2;
  c.stages = 2;
  c.gradient_bits = 32;
  c.chunks = {LayerRange{0, 1}, LayerRange{1, 2}};
  c.partition = "balanced";
  EXPECT_EQ(train_command(a, c),
            "mpirun --hostfile hosts -np 5 build/arceus train configs/x.yaml --set training.schedule=1f1b "
            "--set training.micro_batches=2 --set communication.quantization_bits=8 --set partition.chunks_per_rank=1 "
            "--set partition.method=balanced --set partition.replicas=2 --set partition.stages=2 "
            "--set communication.gradient_bits=32");
  c.partition = "timed";
  EXPECT_EQ(train_command(a, c),
            "mpirun --hostfile hosts -np 5 build/arceus train configs/x.yaml --set training.schedule=1f1b "
            "--set training.micro_batches=2 --set communication.quantization_bits=8 --set partition.chunks_per_rank=1 "
            "--set 'partition.layers=[[0],[1,2]]' --set partition.replicas=2 --set partition.stages=2 "
            "--set communication.gradient_bits=32");
}

TEST(PlanCommand, NoScalingTableWithoutARange) {
  EXPECT_TRUE(best_per_host_count(ModelSpec{}, Calibration{}, ClusterSpec{}, SearchSpace{}, 3, 3, {}).empty());
  EXPECT_TRUE(best_per_host_count(ModelSpec{}, Calibration{}, ClusterSpec{}, SearchSpace{}, 0, 0, {}).empty());
}

}  // namespace
}  // namespace arceus::plan
