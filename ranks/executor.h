// Runs one rank's schedule program (ranks/schedule/): each action goes to the handler of its
// kind. The handlers own what an action means (the stage worker's compute and messages); the
// executor owns the order and names the failing action in errors.
#pragma once

#include <cstdint>
#include <functional>

#include "ranks/schedule/action.h"

namespace arceus {

struct ActionHandlers {
  using Handler = std::function<void(int64_t chunk, int64_t micro_batch)>;
  Handler forward, backward, input_grad, weight_grad;
  std::function<void()> between;  // after every action (e.g. reaping finished sends)
};

// Runs `program` in order. An action whose kind has no handler is a ScheduleError; an error
// inside a handler is rethrown with the action and its position in the program prepended,
// e.g. "[executor] stage 2, action 7 of 24 (B1.3): ...".
void execute(const Program& program, const ActionHandlers& handlers, int64_t stage);

}  // namespace arceus
