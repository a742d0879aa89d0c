// `arceus plan CONFIG (--hostfile F | --hosts N|a..b) --link RATE ...`: predicts the job's
// throughput on a cluster before it exists and ranks the configurations (planner/). No MPI.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace arceus {

struct PlanOptions {
  std::string config;
  std::vector<std::string> sets;
  std::string hostfile;
  std::string hosts;             // "N" or "a..b"
  int cores_per_host = 1;
  std::string link;
  std::string host_speed;        // "F" or "F,F,..."
  std::string bits = "32,16,8,4";
  std::string gradient_bits = "32,16,8,4";  // the replicas' gradient sums (R > 1)
  std::string replicas;          // R to consider, "1,2,4"; "" = every count the hosts allow
  bool no_flush = false;         // also search training.pipeline_flush false
  std::string diloco;            // DiLoCo's H to consider with replicas; "" = the job's diloco.inner_steps; "none"
  std::string schedules = "1f1b,eager1f1b,gpipe,zb1p,interleaved";
  std::string micro_batches = "1,2,4,8,16,32";
  int top = 10;
  bool json = false;
  bool calibrate = false;        // measure everything again
  std::string calibration;       // a calibration file instead of the cache
};

CLI::App* add_plan_command(CLI::App& app, PlanOptions& options);
int run_plan(const PlanOptions& options);

}  // namespace arceus
