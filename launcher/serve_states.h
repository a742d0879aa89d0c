// The REST shim's states: a job's and a device's. Text only at the edges (to_string for JSON,
// events and logs).
#pragma once

#include "ranks/run_state.h"

namespace arceus {

// created -> initialized -> queued -> training -> completed | failed | stopped; a transformer
// may go from created to queued (train places it); queued -> stopped (stopped while waiting).
enum class JobState { Created, Initialized, Queued, Training, Completed, Failed, Stopped };

inline const char* to_string(JobState s) {
  switch (s) {
    case JobState::Created: return "created";
    case JobState::Initialized: return "initialized";
    case JobState::Queued: return "queued";
    case JobState::Training: return "training";
    case JobState::Completed: return "completed";
    case JobState::Failed: return "failed";
    case JobState::Stopped: return "stopped";
  }
  return "?";
}

// JSON (nlohmann finds these by ADL): the text, never the enum's number.
template <class Json>
void to_json(Json& j, JobState s) {
  j = to_string(s);
}

inline bool is_final(JobState s) { return s == JobState::Completed || s == JobState::Failed || s == JobState::Stopped; }

// The job state a finished run leaves.
inline JobState job_state_of(RunState r) {
  switch (r) {
    case RunState::Completed: return JobState::Completed;
    case RunState::Stopped: return JobState::Stopped;
    case RunState::Failed: return JobState::Failed;
    case RunState::Running: break;
  }
  return JobState::Training;
}

// registered -> connected (rank 0 accepted its connect); unregistered (DELETE) from either.
enum class DeviceState { Registered, Connected, Unregistered };

inline const char* to_string(DeviceState s) {
  switch (s) {
    case DeviceState::Registered: return "registered";
    case DeviceState::Connected: return "connected";
    case DeviceState::Unregistered: return "unregistered";
  }
  return "?";
}

template <class Json>
void to_json(Json& j, DeviceState s) {
  j = to_string(s);
}

}  // namespace arceus
