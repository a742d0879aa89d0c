// Rank 0 during a job: the epoch loop (training batches kept one ahead in the pipeline,
// validation), the learning-rate schedule, checkpoints and restore, samples of a transformer,
// and what the job reports (progress, timing, summary.json, metrics.h5).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ranks/job.h"
#include "ranks/trainer.h"
#include "ranks/transport.h"
#include "storage/storage.h"

namespace arceus {

struct DataSplits;

class Orchestrator {
 public:
  // `hosts` by transport rank.
  Orchestrator(Job& job, DataSplits& data, Transport& transport, const TrainOptions& options,
               std::vector<std::string> hosts, JobObserver* observer);
  ~Orchestrator();

  // Trains the job (from `resume` when set), then stops the workers. Returns Completed or
  // Stopped.
  RunState run();
  void set_resume(CheckpointData checkpoint);
  // Sends the stages `weights` (parameters by global name), evaluates the validation split,
  // stops the workers. Returns (loss, accuracy).
  std::pair<double, double> evaluate(const CheckpointData& weights);

  const nlohmann::json& summary() const;
  // Records the error in summary.json with state "failed".
  void fail(const std::string& error);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace arceus
