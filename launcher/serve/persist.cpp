// The job table on disk (see persist.h).
#include "launcher/serve/persist.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "common/atomic_file.h"
#include "common/utc.h"
#include "config/config.h"
#include "launcher/serve/state.h"

namespace arceus::serve {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int kFormatVersion = 1;

json plan_json(const std::vector<LayerRange>& plan) {
  json out = json::array();
  for (const auto& r : plan) out.push_back({r.first, r.count});
  return out;
}

JobState state_from(const std::string& text, const std::string& where) {
  for (JobState st : {JobState::Created, JobState::Initialized, JobState::Queued, JobState::Training, JobState::Recovering,
                      JobState::Completed, JobState::Failed, JobState::Stopped}) {
    if (text == to_string(st)) return st;
  }
  throw std::runtime_error(where + ": state '" + text + "' is not a job state");
}

}  // namespace

void save_jobs(ServeState& s) {
  if (s.jobs_file.empty()) return;
  json jobs = json::array();
  for (const auto& [id, job] : s.jobs.all()) {
    jobs.push_back({{"id", id},
                    {"state", to_string(job->state)},
                    {"format", job->format},
                    {"config", to_yaml(job->config)},
                    {"train_config", job->train_request.is_null() ? json(nullptr) : json(to_yaml(job->train_config))},
                    {"train_request", job->train_request},
                    {"on_devices", job->on_devices || s.devices.on_devices(id)},
                    {"plan", plan_json(job->plan)},
                    {"replicas", job->replicas},
                    {"error", job->error},
                    {"created_at", job->created_at},
                    {"started_at", job->started_at},
                    {"finished_at", job->finished_at},
                    {"seconds", job->seconds},
                    {"epochs", job->epochs},
                    {"device_losses", job->losses},
                    {"restored", job->restored}});
  }
  const json table = {{"format", kFormatVersion}, {"written_at", utc_now()}, {"jobs", jobs}};
  try {
    fs::create_directories(fs::path(s.jobs_file).parent_path());
    write_atomically(s.jobs_file, table.dump(1) + "\n");
  } catch (const std::exception& e) {
    if (!s.jobs_file_failed) std::fprintf(stderr, "[serve] cannot write %s: %s (the job table is not kept)\n", s.jobs_file.c_str(), e.what());
    s.jobs_file_failed = true;
  }
}

std::string restore_jobs(ServeState& s) {
  if (s.jobs_file.empty() || !fs::exists(s.jobs_file)) return "";
  std::ifstream in(s.jobs_file);
  std::stringstream text;
  text << in.rdbuf();
  const json table = json::parse(text.str(), nullptr, false);
  const std::string file = s.jobs_file;
  if (!table.is_object() || !table.value("jobs", json()).is_array())
    throw std::runtime_error(file + " is not a job table (expected {\"format\": 1, \"jobs\": [...]}); move it away to start afresh");
  if (table.value("format", 0) != kFormatVersion)
    throw std::runtime_error(file + ": format " + table.value("format", json()).dump() + ", this server reads format " +
                             std::to_string(kFormatVersion));
  int requeued = 0, reinitialized = 0, kept = 0;
  for (const json& j : table["jobs"]) {
    const std::string where = file + ": job " + j.value("id", json()).dump();
    try {
      auto job = s.jobs.restore(j.at("id").get<int>(), &s.events);
      job->state = state_from(j.at("state").get<std::string>(), where);  // restored as saved, not moved
      job->format = j.value("format", "json");
      job->config = parse_config(j.at("config").get<std::string>(), {}, where);
      if (j.value("train_config", json()).is_string())
        job->train_config = parse_config(j["train_config"].get<std::string>(), {}, where);
      job->train_request = j.value("train_request", json());
      for (const json& r : j.value("plan", json::array())) job->plan.push_back(LayerRange{r.at(0), r.at(1)});
      job->replicas = j.value("replicas", int64_t(1));
      job->error = j.value("error", "");
      job->created_at = j.value("created_at", "");
      job->started_at = j.value("started_at", "");
      job->finished_at = j.value("finished_at", "");
      job->seconds = j.value("seconds", 0.0);
      job->epochs = j.value("epochs", json::array());
      job->losses = j.value("device_losses", json::array());
      job->restored = j.value("restored", 0);
      job->on_devices = j.value("on_devices", false);
      if (is_final(job->state) || job->state == JobState::Created || job->state == JobState::Initialized) {
        ++kept;
        continue;
      }
      // Interrupted by the restart.
      ++job->restored;
      job->epochs = json::array();  // the run starts again (from its checkpoint): its epochs come again
      if (j.value("on_devices", false)) {
        job->state = JobState::Initialized;
        job->config.resume = true;
        note(*job, "restored after a server restart: it was " + j.at("state").get<std::string>() +
                       " on devices; register them again and train: it resumes from its last checkpoint");
        ++reinitialized;
      } else {
        job->state = JobState::Queued;
        job->train_config.resume = true;
        s.jobs.enqueue(job->id);
        note(*job, "restored after a server restart: it was " + j.at("state").get<std::string>() +
                       "; queued again, it resumes from its last checkpoint");
        ++requeued;
      }
    } catch (const std::exception& e) {
      throw std::runtime_error(where + ": " + e.what() + " (move the file away to start afresh)");
    }
  }
  return "restored " + std::to_string(table["jobs"].size()) + " job(s) from " + file + ": " + std::to_string(kept) +
         " as they were, " + std::to_string(requeued) + " queued again to resume, " + std::to_string(reinitialized) +
         " on devices back to initialized";
}

}  // namespace arceus::serve
