// The command-line options several commands share, each defined once: its form, default and
// check. The help text stays each command's own (what the option means for that command).
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace arceus {

// --threads (train, eval, serve, device): "auto" (the default) or a positive integer
// (check_threads_option, launcher/blas.h).
CLI::Option* add_threads_option(CLI::App& cmd, std::string& threads, const std::string& help);

// --set KEY=VALUE (train, eval, plan), repeatable. One KEY=VALUE per --set, so that
// `--set a=1 CONFIG` keeps CONFIG as the positional argument.
CLI::Option* add_set_option(CLI::App& cmd, std::vector<std::string>& sets, const std::string& help);

}  // namespace arceus
