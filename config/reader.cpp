// The scalar decoders and message helpers of config/reader.h.
#include "config/reader.h"

#include <algorithm>
#include <set>

namespace arceus::config_reader {

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string join_list(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::vector<std::string> q;
  for (const auto& s : items) q.push_back("'" + s + "'");
  return join_list(q);
}

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
size_t edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1, 0));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

}  // namespace

// The candidate closest to `word` (case-insensitively) if within edit distance 2, else "".
std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = 3;
  const std::string w = lower(word);
  for (const auto& c : candidates) {
    const size_t dist = edit_distance(w, lower(c));
    if (dist < best_distance && dist < c.size()) {
      best = c;
      best_distance = dist;
    }
  }
  return best;
}

// A YAML number: an integer or float literal, or one of YAML's .inf / .nan spellings.
std::optional<double> decode_number(const YAML::Node& node) {
  if (!is_plain_scalar(node)) return std::nullopt;
  std::string text = node.Scalar();
  static const std::set<std::string> kPosInf = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
  static const std::set<std::string> kNegInf = {"-.inf", "-.Inf", "-.INF"};
  static const std::set<std::string> kNan = {".nan", ".NaN", ".NAN"};
  if (kPosInf.count(text)) return std::numeric_limits<double>::infinity();
  if (kNegInf.count(text)) return -std::numeric_limits<double>::infinity();
  if (kNan.count(text)) return std::numeric_limits<double>::quiet_NaN();
  if (!text.empty() && text[0] == '+') text.erase(0, 1);
  if (text.empty()) return std::nullopt;
  bool has_digit = false;
  for (char c : text) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      has_digit = true;
    } else if (c != '-' && c != '.' && c != 'e' && c != 'E' && c != '+') {
      return std::nullopt;  // rejects hex, "inf", "nan", "1_000", ...
    }
  }
  if (!has_digit) return std::nullopt;
  double value = 0.0;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec != std::errc() || result.ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<bool> decode_bool(const YAML::Node& node) {
  if (!is_plain_scalar(node)) return std::nullopt;
  bool value = false;
  if (!YAML::convert<bool>::decode(node, value)) return std::nullopt;
  return value;
}

// Shortest text that parses back to exactly `v`; always recognisable as a float.
std::string format_double(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), v);
  std::string text(buf, result.ptr);
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

std::string format_list(const std::vector<double>& values) {
  std::vector<std::string> parts;
  for (double v : values) parts.push_back(format_double(v));
  return "[" + join_list(parts) + "]";
}

std::string count(size_t n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

namespace {

bool looks_numeric(const YAML::Node& node) {
  int64_t i = 0;
  return decode_integer(node, i) != IntStatus::kNotInteger || decode_number(node).has_value();
}

}  // namespace

// The value as written, for messages: numbers bare, other scalars in quotes, collections in
// flow style, null as "an empty value".
std::string describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "an empty value";
  if (node.IsScalar()) {
    if (node.Tag() == "!") {
      // A quoted "5" or "true" is a string; say so, since it reads like the expected type.
      YAML::Node plain(node.Scalar());
      if (looks_numeric(plain) || decode_bool(plain)) {
        return "the quoted string \"" + node.Scalar() + "\"";
      }
      return "'" + node.Scalar() + "'";
    }
    if (looks_numeric(node)) return node.Scalar();
    return "'" + node.Scalar() + "'";
  }
  YAML::Emitter out;
  out.SetSeqFormat(YAML::Flow);
  out.SetMapFormat(YAML::Flow);
  out << node;
  return out.good() ? std::string(out.c_str()) : std::string("<unprintable value>");
}

}  // namespace arceus::config_reader
