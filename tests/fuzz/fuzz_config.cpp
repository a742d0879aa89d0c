// Fuzz target: the YAML config parser and --set (config/config.h).
//
// Input: the YAML text, then --set assignments each after a NUL byte
// ("training: {epochs: 2}\0dataset_config.batch_size=64"). The contract checked:
// - parse_override and parse_config return or throw ConfigError: no other exception, no crash,
//   no sanitizer report, within the default limits (config/limits.h);
// - a Config they return emits YAML (to_yaml) that parses back, to the same YAML: rank 0
//   broadcasts that text, and serve's train re-parses it with the train body's overrides.
#include <cstddef>
#include <cstdint>

#include "config/config.h"
#include "tests/fuzz/fuzz.h"

using namespace arceus;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> parts = fuzz::split_nul(fuzz::text(data, size));
  Config config;
  try {
    std::vector<Override> overrides;
    for (size_t i = 1; i < parts.size(); ++i) overrides.push_back(parse_override(parts[i]));
    config = parse_config(parts[0], overrides, "<fuzz>");
  } catch (const ConfigError&) {
    return 0;
  }
  std::string yaml;
  try {
    yaml = to_yaml(config);
    const std::string again = to_yaml(parse_config(yaml, {}, "<to_yaml>"));
    if (again != yaml) fuzz::violated("to_yaml(parse_config(to_yaml(c))) differs:\n" + yaml + "---\n" + again);
  } catch (const ConfigError& e) {
    fuzz::violated(std::string("an accepted config does not round-trip: ") + e.what() + "\n" + yaml);
  }
  return 0;
}
