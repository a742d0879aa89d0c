#include "ranks/executor.h"

#include <exception>
#include <string>

#include "common/errors.h"

namespace arceus {

void execute(const Program& program, const ActionHandlers& h, int64_t stage) {
  for (size_t i = 0; i < program.size(); ++i) {
    const Action& a = program[i];
    const ActionHandlers::Handler* handler = nullptr;
    switch (a.kind) {
      case ActionKind::Forward: handler = &h.forward; break;
      case ActionKind::Backward: handler = &h.backward; break;
      case ActionKind::InputGrad: handler = &h.input_grad; break;
      case ActionKind::WeightGrad: handler = &h.weight_grad; break;
    }
    auto where = [&] {
      return "[executor] stage " + std::to_string(stage) + ", action " + std::to_string(i + 1) + " of " +
             std::to_string(program.size()) + " (" + to_string(a) + "): ";
    };
    if (!handler || !*handler) throw ScheduleError(where() + "no handler for this kind of action");
    try {
      (*handler)(a.chunk, a.micro_batch);
      if (h.between) h.between();
    } catch (...) {
      rethrow_with(where());
    }
  }
}

}  // namespace arceus
