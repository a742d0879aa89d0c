// What `arceus plan` does around the model (launcher/plan.cpp only wires it): the cluster and
// the search space from the command's options, the best configuration per host count, and the
// answer as markdown tables or JSON. Torch-free and MPI-free, like the rest of the planner.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "planner/calibration.h"
#include "planner/planner.h"

namespace arceus::plan {

// --schedules, --micro-batches, --bits, --gradient-bits and --replicas (comma lists; replicas
// "" = every count the hosts allow) as the space to search; PlanError naming the bad value (an
// unknown schedule: the schedule registry's error).
SearchSpace search_space(const std::string& schedules, const std::string& micro_batches, const std::string& bits,
                         const std::string& gradient_bits = "32,16,8,4", const std::string& replicas = "");

// The hosts: the hostfile's (`hostfile` not empty), else `count` hosts host1..hostN (host1 with
// 2 slots: rank 0 and worker rank 1). `host_speed` ("" = as they are; one factor F, or F,F,... one
// per host) sets their speeds; then every speed is multiplied by `core_factor`. PlanError
// naming --host-speed's value when it is not that.
std::vector<Host> cluster_hosts(const std::string& hostfile, int64_t count, const std::string& host_speed,
                                double core_factor);

// The best configuration of each host count h = first..last, on the first h hosts of
// `cluster`; `all` is the search on every host of `cluster` (reused for h = its size). Empty
// unless 0 < first < last.
std::vector<std::pair<int64_t, Ranked>> best_per_host_count(const ModelSpec& model, const Calibration& cal,
                                                            const ClusterSpec& cluster, const SearchSpace& space,
                                                            int64_t first, int64_t last,
                                                            const std::vector<Ranked>& all);

// Everything `arceus plan` answers with.
struct PlanAnswer {
  std::string config;                 // the job file, as given
  std::vector<std::string> sets;      // its --set overrides
  std::string hostfile;               // "" with --hosts
  ClusterSpec cluster;
  ModelSpec model;
  std::string calibration_file;
  Calibration calibration;
  Candidate given;                    // the configuration as the job file has it
  Prediction given_prediction;        // not ok, with the error, when it cannot be predicted
  std::vector<Ranked> ranked;         // best first
  std::vector<std::pair<int64_t, Ranked>> scaling;  // best_per_host_count
  double plan_seconds = 0;            // how long the prediction and the search took
  int top = 10;                       // rows of the ranked table
};

// The command that trains `c` (mpirun on the hostfile, or in one process).
std::string train_command(const PlanAnswer& answer, const Candidate& c);

// --json: given.predicted_<unit>_per_second, alternatives, best (with its command), scaling.
std::string answer_json(const PlanAnswer& answer);

// The tables: the question, the prediction as given, the ranked configurations, the best with
// its command, and the scaling table when there is one.
void print_answer(const PlanAnswer& answer, std::ostream& out);

}  // namespace arceus::plan
