// How a training run ends (summary.json's `state`, a job's result). Text only at the edges:
// to_string for JSON and logs.
#pragma once

namespace arceus {

enum class RunState { Running, Completed, Stopped, Failed };

inline const char* to_string(RunState s) {
  switch (s) {
    case RunState::Running: return "running";
    case RunState::Completed: return "completed";
    case RunState::Stopped: return "stopped";
    case RunState::Failed: return "failed";
  }
  return "?";
}

// JSON (nlohmann finds it by ADL): the text, never the enum's number.
template <class Json>
void to_json(Json& j, RunState s) {
  j = to_string(s);
}

}  // namespace arceus
