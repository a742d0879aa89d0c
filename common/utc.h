// The time now as ISO 8601 UTC ("2026-12-01T11:34:24Z"): job and report timestamps.
#pragma once

#include <ctime>
#include <string>

namespace arceus {

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace arceus
