// The operator's limits: defaults in limits.h, ARCEUS_LIMIT_<NAME> in the environment.
#include "config/limits.h"

#include <cctype>
#include <charconv>
#include <cstring>

extern char** environ;

namespace arceus {

const std::vector<LimitInfo>& limit_table() {
  static const std::vector<LimitInfo> kTable = {
      {"max_layers", &Limits::max_layers},
      {"max_layer_width", &Limits::max_layer_width},
      {"max_parameters", &Limits::max_parameters},
      {"max_batch_size", &Limits::max_batch_size},
      {"max_windows_per_epoch", &Limits::max_windows_per_epoch},
      {"max_synthetic_values", &Limits::max_synthetic_values},
      {"max_nesting", &Limits::max_nesting},
  };
  return kTable;
}

Limits no_limits() {
  Limits l;
  for (const LimitInfo& info : limit_table()) l.*(info.field) = INT64_MAX;
  return l;
}

std::string limit_variable(const std::string& name) {
  std::string var = "ARCEUS_LIMIT_";
  for (char c : name) var += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return var;
}

Limits limits_from_environment() {
  static const std::string kPrefix = "ARCEUS_LIMIT_";
  Limits limits;
  for (char** env = environ; env != nullptr && *env != nullptr; ++env) {
    const std::string entry = *env;
    if (entry.compare(0, kPrefix.size(), kPrefix) != 0) continue;
    const size_t eq = entry.find('=');
    const std::string var = entry.substr(0, eq);
    const std::string value = eq == std::string::npos ? std::string() : entry.substr(eq + 1);
    const LimitInfo* info = nullptr;
    std::string known;
    for (const LimitInfo& l : limit_table()) {
      if (limit_variable(l.name) == var) info = &l;
      known += (known.empty() ? "" : ", ") + limit_variable(l.name);
    }
    if (!info) throw LimitError("[limits] unknown environment variable " + var + " (the limits are " + known + ")");
    int64_t v = 0;
    const bool digits = !value.empty() && value.find_first_not_of("0123456789") == std::string::npos;
    const auto r = std::from_chars(value.data(), value.data() + value.size(), v);
    if (!digits || r.ec != std::errc() || r.ptr != value.data() + value.size() || v < 1) {
      throw LimitError("[limits] " + var + "='" + value + "': expected a positive integer (digits only, at most " +
                       with_commas(INT64_MAX) + ")");
    }
    limits.*(info->field) = v;
  }
  return limits;
}

const Limits& operator_limits() {
  static const Limits kLimits = limits_from_environment();
  return kLimits;
}

std::string with_commas(int64_t n) {
  const bool negative = n < 0;
  std::string digits = std::to_string(n);
  if (negative) digits.erase(0, 1);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return negative ? "-" + out : out;
}

std::string above_limit(const char* name, int64_t limit) {
  return std::string("above the limit ") + name + " = " + with_commas(limit);
}

std::string raise_hint(const char* name) {
  return "; raise it with " + limit_variable(name) + " in arceus's environment";
}

}  // namespace arceus
