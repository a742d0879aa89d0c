// The error categories, in one table, and how an error keeps its type and fields on its way up.
//
// Every message arceus prints for an error starts with its category's tag: "[config] ...",
// "[transport] ...". The table says what each category covers and whether running the same
// command again can help: a set-up error (a bad config, data file, partition) fails the same
// way every time, so `arceus run` does not restart it; a peer that died or a bad message may
// not happen again. Header-only, no dependencies.
#pragma once

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace arceus {

struct ErrorCategory {
  const char* tag;     // the message starts with "[tag] "
  bool set_up;         // found before training: a restart fails the same way
  const char* covers;  // one line for docs and messages
};

inline const std::vector<ErrorCategory>& error_categories() {
  static const std::vector<ErrorCategory> kCategories = {
      {"config", true, "the job's YAML, a --set or a REST body"},
      {"data", true, "a dataset file: missing, malformed or of the wrong size"},
      {"text", true, "a text dataset: not UTF-8, too short for the context"},
      {"partition", true, "stages, ranks and layers that do not fit"},
      {"schedule", true, "a schedule that does not take the job's shape"},
      {"checkpoint", true, "a checkpoint that does not match the model, or cannot be read"},
      {"model", true, "a model that does not match the data"},
      {"output", true, "an output directory that cannot be written"},
      {"limits", true, "a size above the operator's input limits"},
      {"wire", false, "a message whose header or size is not what the receiver expected"},
      {"codec", false, "a tensor the codec cannot encode (e.g. not finite)"},
      {"transport", false, "a peer gone or stuck past the wait limit"},
      {"mpi", false, "an MPI call that failed"},
      {"loopback", false, "the in-process transport: a rank of the same process failed"},
      {"executor", false, "an action of a schedule that failed on a stage"},
      {"replicas", false, "replicas of a stage whose parameters differ at a checkpoint"},
  };
  return kCategories;
}

// The category of a message "[tag] ...", or nullptr.
inline const ErrorCategory* error_category_of(const std::string& message) {
  for (const ErrorCategory& c : error_categories()) {
    const std::string prefix = "[" + std::string(c.tag) + "]";
    if (message.compare(0, prefix.size(), prefix) == 0) return &c;
  }
  return nullptr;
}

// Rethrows the exception being handled with `before` and `after` around its message. The
// original stays nested inside (std::throw_with_nested), so its type and fields can still be
// found with find_error. Call only inside a catch block.
[[noreturn]] inline void rethrow_with(const std::string& before, const std::string& after = "") {
  try {
    throw;
  } catch (const std::exception& e) {
    std::throw_with_nested(std::runtime_error(before + e.what() + after));
  }
}

// The first error of type E in `e` or the errors nested inside it (rethrow_with), by copy.
template <class E>
std::optional<E> find_error(const std::exception& e) {
  if (const auto* found = dynamic_cast<const E*>(&e)) return *found;
  try {
    std::rethrow_if_nested(e);
  } catch (const std::exception& inner) {
    return find_error<E>(inner);
  } catch (...) {
  }
  return std::nullopt;
}

}  // namespace arceus
