#include "ranks/executor.h"

#include <exception>
#include <string>

#include "ranks/wire.h"

namespace arceus {

namespace {

// Rethrows the current exception with `where` prepended, keeping its type for the errors
// the launcher tells apart (wire and transport errors).
[[noreturn]] void rethrow_with(const std::string& where) {
  try {
    throw;
  } catch (const WireError& e) {
    throw WireError(where + e.what());
  } catch (const ScheduleError& e) {
    throw ScheduleError(where + e.what());
  } catch (const std::exception& e) {
    throw std::runtime_error(where + e.what());
  }
}

}  // namespace

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
