// A config as JSON (the REST views): the same keys as to_yaml, with JSON's types.
#pragma once

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace arceus {

nlohmann::json config_json(const Config& config);

}  // namespace arceus
