#include "launcher/shared_options.h"

#include <CLI/CLI.hpp>

#include "launcher/blas.h"

namespace arceus {

CLI::Option* add_threads_option(CLI::App& cmd, std::string& threads, const std::string& help) {
  return cmd.add_option("--threads", threads, help)->default_val("auto")->check(check_threads_option);
}

CLI::Option* add_set_option(CLI::App& cmd, std::vector<std::string>& sets, const std::string& help) {
  return cmd.add_option("--set", sets, help)->allow_extra_args(false);
}

}  // namespace arceus
