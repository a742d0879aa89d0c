// Job configuration: YAML text -> validated Config, and Config -> canonical YAML.
//
// Parsing goes in three steps: load the YAML tree, apply the --set overrides to that tree, then
// walk the tree section by section, checking every key against the schema below and every value
// against its type and range. Every failure is a ConfigError whose message names the source, the
// full key path, the value as written and what was expected.
#include "config/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "ranks/schedule/registry.h"

namespace arceus {
namespace {

// ---------------------------------------------------------------------------------------------
// Schema: allowed keys of every map in the document, by key path ("" = the top level).
// A path listed here is a section (a map); any other known path is a value.

const std::map<std::string, std::vector<std::string>>& schema() {
  static const std::map<std::string, std::vector<std::string>> kSchema = {
      {"",
       {"model_config", "dataset_config", "training", "communication", "partition", "output",
        "resume"}},
      {"model_config",
       {"type", "layer_sizes", "context", "n_emb", "n_heads", "n_blocks", "dropout"}},
      {"dataset_config",
       {"name", "root", "source", "windows_per_epoch", "batch_size", "val_batch_size",
        "normalize", "shuffle", "max_train_samples", "max_val_samples", "synthetic"}},
      {"dataset_config.normalize", {"mean", "std"}},
      {"dataset_config.synthetic", {"train_size", "val_size", "features", "classes", "noise"}},
      {"training",
       {"epochs", "learning_rate", "optimizer", "momentum", "weight_decay", "micro_batches",
        "schedule", "seed", "max_steps", "lr_schedule", "warmup_steps", "min_learning_rate",
        "grad_clip"}},
      {"communication", {"quantization_bits", "stochastic_rounding", "error_feedback"}},
      {"partition", {"method", "stages", "layers", "chunks_per_rank"}},
      {"output",
       {"dir", "checkpoint_every", "checkpoint_every_steps", "metrics", "sample_tokens",
        "sample_temperature"}},
  };
  return kSchema;
}

bool is_section(const std::string& path) { return schema().count(path) != 0; }

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string join_list(const std::vector<std::string>& items, const char* sep = ", ") {
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

// ---------------------------------------------------------------------------------------------
// Scalar decoding. Typed values (integers, numbers, booleans) must be plain YAML scalars: a
// quoted "5" is a string, not an integer.

bool is_plain_scalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() != "!"; }

enum class IntStatus { kOk, kNotInteger, kOutOfRange };

// Decimal integer literal: optional sign, then digits only ("5", "-1", "+3"; not "5.0", "1e3").
template <typename T>
IntStatus decode_integer(const YAML::Node& node, T& out) {
  if (!is_plain_scalar(node)) return IntStatus::kNotInteger;
  std::string text = node.Scalar();
  if (!text.empty() && text[0] == '+') text.erase(0, 1);
  const size_t digits_from = (!text.empty() && text[0] == '-') ? 1 : 0;
  if (text.size() == digits_from) return IntStatus::kNotInteger;
  for (size_t i = digits_from; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return IntStatus::kNotInteger;
  }
  if (std::is_unsigned<T>::value && digits_from == 1) {
    // "-0" is zero; any other negative value is out of an unsigned type's range.
    bool all_zero = text.find_first_not_of('0', 1) == std::string::npos;
    if (!all_zero) return IntStatus::kOutOfRange;
    out = 0;
    return IntStatus::kOk;
  }
  T value{};
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec == std::errc::result_out_of_range) return IntStatus::kOutOfRange;
  if (result.ec != std::errc() || result.ptr != text.data() + text.size()) {
    return IntStatus::kNotInteger;
  }
  out = value;
  return IntStatus::kOk;
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

bool looks_numeric(const YAML::Node& node) {
  int64_t i = 0;
  return decode_integer(node, i) != IntStatus::kNotInteger || decode_number(node).has_value();
}

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

// ---------------------------------------------------------------------------------------------
// Error context: the source name and where each overridden path came from.

class Context {
 public:
  Context(std::string source, const Limits& limits) : source_(std::move(source)), limits_(limits) {}

  void add_override(const Override& o) { overrides_.push_back(o); }
  const Limits& limits() const { return limits_; }

  // "[config] <source>: <path>: <what><location><extra>"
  [[noreturn]] void fail(const std::string& path, const YAML::Mark& mark, const std::string& what,
                         const std::string& extra = "") const {
    std::string message = "[config] " + source_ + ": ";
    if (!path.empty()) message += path + ": ";
    message += what + location(path, mark) + extra;
    throw ConfigError(message);
  }

  [[noreturn]] void fail_general(const std::string& what) const {
    throw ConfigError("[config] " + source_ + ": " + what);
  }

 private:
  // " (from --set k=v)" when the path (or an enclosing section) was set on the command line,
  // else " (line N)" when the file position is known.
  std::string location(const std::string& path, const YAML::Mark& mark) const {
    for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it) {
      const std::string& key = it->key;
      if (path.compare(0, key.size(), key) == 0 &&
          (path.size() == key.size() || path[key.size()] == '.' || path[key.size()] == '[')) {
        return " (from --set " + key + "=" + it->value + ")";
      }
    }
    if (!mark.is_null()) return " (line " + std::to_string(mark.line + 1) + ")";
    return "";
  }

  std::string source_;
  const Limits& limits_;
  std::vector<Override> overrides_;
};

std::string expected_got(const std::string& expectation, const YAML::Node& node) {
  return "expected " + expectation + ", got " + describe(node);
}

// ---------------------------------------------------------------------------------------------
// One map of the document: checks its keys against the schema and reads typed values.

class Section {
 public:
  Section(const Context& ctx, const YAML::Node& node, std::string path, const YAML::Mark& mark)
      : ctx_(ctx), path_(std::move(path)) {
    if (!node.IsDefined() || node.IsNull()) return;  // absent or empty section: all defaults
    if (!node.IsMap()) {
      ctx_.fail(path_.empty() ? std::string() : path_, mark.is_null() ? node.Mark() : mark,
                expected_got(path_.empty() ? "a map of sections (model_config, training, ...)"
                                           : "a map of keys (" + join_list(allowed()) + ")",
                             node));
    }
    const auto& keys = allowed();
    for (const auto& entry : node) {
      const YAML::Node& key = entry.first;
      if (!key.IsScalar()) {
        ctx_.fail(path_, key.Mark(), "keys must be plain names, got " + describe(key));
      }
      const std::string name = key.Scalar();
      const std::string full = join_path(path_, name);
      if (std::find(keys.begin(), keys.end(), name) == keys.end()) {
        ctx_.fail(full, key.Mark(), path_.empty() ? "unknown section" : "unknown key",
                  unknown_key_details(path_, name));
      }
      if (entries_.count(name)) ctx_.fail(full, key.Mark(), "duplicate key");
      entries_.emplace(name, Entry{entry.second, key.Mark()});
    }
  }

  // "; did you mean 'epochs'? Allowed keys in 'training': epochs, learning_rate, ..."
  static std::string unknown_key_details(const std::string& section, const std::string& name) {
    const auto& keys = schema().at(section);
    std::string out = suggestion_suffix(name, keys);
    out += out.empty() ? "; allowed " : " Allowed ";
    if (section.empty()) return out + "sections: " + join_list(keys);
    return out + "keys in '" + section + "': " + join_list(keys);
  }

  static std::string suggestion_suffix(const std::string& name,
                                       const std::vector<std::string>& keys) {
    const std::string guess = closest(name, keys);
    return guess.empty() ? std::string() : "; did you mean '" + guess + "'?";
  }

  bool has(const std::string& key) const { return find(key) != nullptr; }

  // An error about `key` of this section as a whole (cross-field checks).
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    const Entry* e = find(key);
    ctx_.fail(join_path(path_, key), e ? e->mark : YAML::Mark::null_mark(), what);
  }

  const Limits& limits() const { return ctx_.limits(); }

  // Fails when `value` is above `limit` (the field `name` of Limits): "<path><index>: <what>,
  // above the limit <name> = <limit> (line N); raise it with ARCEUS_LIMIT_<NAME> ...".
  void check_limit(const std::string& key, int64_t value, const char* name, int64_t limit,
                   const std::string& what, const std::string& index = "") const {
    if (value <= limit) return;
    const Entry* e = find(key);
    ctx_.fail(join_path(path_, key) + index, e ? e->mark : YAML::Mark::null_mark(),
              what + ", " + above_limit(name, limit), raise_hint(name));
  }

  Section section(const std::string& key) const {
    const Entry* e = find(key);
    return e ? Section(ctx_, e->value, join_path(path_, key), e->mark)
             : Section(ctx_, YAML::Node(), join_path(path_, key), YAML::Mark::null_mark());
  }

  // Integer >= min (T = int64_t, int or uint64_t).
  template <typename T>
  void integer(const std::string& key, T& out, T min, const std::string& expectation) const {
    const Entry* e = find(key);
    if (!e) return;
    out = decode_int<T>(e->value, join_path(path_, key), e->mark, min, expectation);
  }

  // Integer in [min, max].
  template <typename T>
  void integer_in(const std::string& key, T& out, T min, T max,
                  const std::string& expectation) const {
    const Entry* e = find(key);
    if (!e) return;
    const std::string full = join_path(path_, key);
    const T value = decode_int<T>(e->value, full, e->mark, min, expectation);
    if (value > max) ctx_.fail(full, e->mark, expected_got(expectation, e->value));
    out = value;
  }

  // Finite number satisfying `ok`.
  template <typename Pred>
  void number(const std::string& key, double& out, Pred ok, const std::string& expectation) const {
    const Entry* e = find(key);
    if (!e) return;
    out = decode_num(e->value, join_path(path_, key), e->mark, ok, expectation);
  }

  void boolean(const std::string& key, bool& out) const {
    const Entry* e = find(key);
    if (!e) return;
    const auto value = decode_bool(e->value);
    if (!value) {
      ctx_.fail(join_path(path_, key), e->mark,
                expected_got("a boolean (true/false, yes/no)", e->value));
    }
    out = *value;
  }

  // Any scalar as text. A null value means "" when allow_empty.
  void string(const std::string& key, std::string& out, bool allow_empty) const {
    const Entry* e = find(key);
    if (!e) return;
    const std::string expectation = allow_empty ? "a string" : "a non-empty string";
    if (allow_empty && e->value.IsNull()) {
      out.clear();
      return;
    }
    if (!e->value.IsScalar() || (!allow_empty && e->value.Scalar().empty())) {
      ctx_.fail(join_path(path_, key), e->mark, expected_got(expectation, e->value));
    }
    out = e->value.Scalar();
  }

  // One of `choices` (exact, case-sensitive); `unsupported` maps known-but-unavailable values
  // to an explanation.
  void choice(const std::string& key, std::string& out, const std::vector<std::string>& choices,
              const std::map<std::string, std::string>& unsupported = {}) const {
    const Entry* e = find(key);
    if (!e) return;
    const std::string full = join_path(path_, key);
    const std::string expectation = "one of " + quoted_list(choices);
    if (!e->value.IsScalar()) ctx_.fail(full, e->mark, expected_got(expectation, e->value));
    const std::string value = e->value.Scalar();
    if (std::find(choices.begin(), choices.end(), value) != choices.end()) {
      out = value;
      return;
    }
    const auto it = unsupported.find(value);
    if (it != unsupported.end()) {
      ctx_.fail(full, e->mark,
                "'" + value + "' " + it->second + "; expected " + quoted_list(choices));
    }
    ctx_.fail(full, e->mark, expected_got(expectation, e->value),
              suggestion_suffix(value, choices));
  }

  // A non-empty list of integers >= min.
  void integer_list(const std::string& key, std::vector<int64_t>& out, size_t min_size,
                    int64_t min, const std::string& list_expectation,
                    const std::string& item_expectation) const {
    const Entry* e = find(key);
    if (!e) return;
    const std::string full = join_path(path_, key);
    if (!e->value.IsSequence() || e->value.size() < min_size) {
      ctx_.fail(full, e->mark, expected_got(list_expectation, e->value));
    }
    out = decode_int_list(e->value, full, e->mark, min, item_expectation);
  }

  // A non-empty list of finite numbers satisfying `ok`.
  template <typename Pred>
  void number_list(const std::string& key, std::vector<double>& out, Pred ok,
                   const std::string& list_expectation,
                   const std::string& item_expectation) const {
    const Entry* e = find(key);
    if (!e) return;
    const std::string full = join_path(path_, key);
    if (!e->value.IsSequence() || e->value.size() == 0) {
      ctx_.fail(full, e->mark, expected_got(list_expectation, e->value));
    }
    std::vector<double> values;
    for (size_t i = 0; i < e->value.size(); ++i) {
      const YAML::Node item = e->value[i];
      values.push_back(decode_num(item, full + "[" + std::to_string(i) + "]", item_mark(item, *e),
                                  ok, item_expectation));
    }
    out = std::move(values);
  }

  // An integer from `choices`.
  void int_choice(const std::string& key, int& out, const std::vector<int>& choices) const {
    const Entry* e = find(key);
    if (!e) return;
    std::vector<std::string> names;
    for (int c : choices) names.push_back(std::to_string(c));
    const std::string expectation = "one of " + join_list(names);
    int value = 0;
    if (decode_integer(e->value, value) != IntStatus::kOk ||
        std::find(choices.begin(), choices.end(), value) == choices.end()) {
      ctx_.fail(join_path(path_, key), e->mark, expected_got(expectation, e->value));
    }
    out = value;
  }

  // partition.stages: 'auto' (stored as 0) or an integer >= 1.
  void stages(const std::string& key, int64_t& out) const {
    const Entry* e = find(key);
    if (!e) return;
    if (e->value.IsScalar() && e->value.Scalar() == "auto") {
      out = 0;
      return;
    }
    out = decode_int<int64_t>(e->value, join_path(path_, key), e->mark, 1,
                              "'auto' or a positive integer");
  }

  // partition.layers: a list of non-empty lists of integers >= 0.
  void layer_lists(const std::string& key, std::vector<std::vector<int64_t>>& out) const {
    const Entry* e = find(key);
    if (!e) return;
    const std::string full = join_path(path_, key);
    const std::string expectation =
        "a list of non-empty lists of layer indices, e.g. [[0, 1], [2]]";
    if (!e->value.IsSequence()) ctx_.fail(full, e->mark, expected_got(expectation, e->value));
    std::vector<std::vector<int64_t>> lists;
    for (size_t i = 0; i < e->value.size(); ++i) {
      const YAML::Node stage = e->value[i];
      const std::string stage_path = full + "[" + std::to_string(i) + "]";
      if (!stage.IsSequence() || stage.size() == 0) {
        ctx_.fail(stage_path, item_mark(stage, *e),
                  expected_got("a non-empty list of layer indices (one list per stage)", stage));
      }
      lists.push_back(decode_int_list(stage, stage_path, item_mark(stage, *e), 0,
                                      "a non-negative integer (layer index)"));
    }
    out = std::move(lists);
  }

 private:
  struct Entry {
    YAML::Node value;
    YAML::Mark mark;  // of the key: values that are null have no useful position of their own
  };

  const std::vector<std::string>& allowed() const { return schema().at(path_); }

  const Entry* find(const std::string& key) const {
    const auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
  }

  static YAML::Mark item_mark(const YAML::Node& item, const Entry& parent) {
    const YAML::Mark m = item.Mark();
    return m.is_null() ? parent.mark : m;
  }

  template <typename T>
  T decode_int(const YAML::Node& node, const std::string& path, const YAML::Mark& mark, T min,
               const std::string& expectation) const {
    T value{};
    const IntStatus status = decode_integer(node, value);
    if (status == IntStatus::kOutOfRange) {
      ctx_.fail(path, mark,
                expected_got(expectation + " (at most " +
                                 std::to_string(std::numeric_limits<T>::max()) + ")",
                             node));
    }
    if (status != IntStatus::kOk || value < min) {
      ctx_.fail(path, mark, expected_got(expectation, node));
    }
    return value;
  }

  std::vector<int64_t> decode_int_list(const YAML::Node& seq, const std::string& path,
                                       const YAML::Mark& mark, int64_t min,
                                       const std::string& item_expectation) const {
    std::vector<int64_t> values;
    for (size_t i = 0; i < seq.size(); ++i) {
      const YAML::Node item = seq[i];
      const YAML::Mark m = item.Mark();
      values.push_back(decode_int<int64_t>(item, path + "[" + std::to_string(i) + "]",
                                           m.is_null() ? mark : m, min, item_expectation));
    }
    return values;
  }

  template <typename Pred>
  double decode_num(const YAML::Node& node, const std::string& path, const YAML::Mark& mark,
                    Pred ok, const std::string& expectation) const {
    const auto value = decode_number(node);
    if (!value || !std::isfinite(*value) || !ok(*value)) {
      ctx_.fail(path, mark, expected_got(expectation, node));
    }
    return *value;
  }

  const Context& ctx_;
  std::string path_;
  std::map<std::string, Entry> entries_;
};

// ---------------------------------------------------------------------------------------------
// Nesting, checked on each loaded tree before anything else walks it: describe(), the emitter and
// the section readers recurse. (yaml-cpp's parser itself stops at depth 2000.)

// Node visits of one check; each use of an alias counts, so a document of aliases of aliases
// (which would take exponential time to walk) stops here. A config has a few hundred nodes.
constexpr size_t kMaxNodes = size_t{1} << 20;

// Fails when `root` nests maps and lists more than max_nesting levels deep (a top-level map is
// level 1, so `model_config: {layer_sizes: [..]}` is 3). `what` names the tree in messages.
void check_nesting(const Context& ctx, const YAML::Node& root, const std::string& what) {
  const int64_t limit = ctx.limits().max_nesting;
  std::vector<std::pair<YAML::Node, int64_t>> stack{{root, 0}};
  size_t visits = 0;
  while (!stack.empty()) {
    const YAML::Node node = stack.back().first;
    const int64_t depth = stack.back().second + 1;
    stack.pop_back();
    if (!node.IsDefined() || !(node.IsMap() || node.IsSequence())) continue;
    if (depth > limit) {
      ctx.fail("", node.Mark(),
               what + " nests maps and lists more than " + with_commas(limit) + " levels deep, " +
                   above_limit("max_nesting", limit),
               raise_hint("max_nesting"));
    }
    for (const auto& item : node) {
      if ((visits += 2) > kMaxNodes) {
        ctx.fail_general(what + " has more than " + with_commas(static_cast<int64_t>(kMaxNodes)) +
                         " values (each use of an alias counted): not a job config");
      }
      if (node.IsMap()) {
        stack.emplace_back(item.first, depth);
        stack.emplace_back(item.second, depth);
      } else {
        stack.emplace_back(static_cast<const YAML::Node&>(item), depth);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Documents. yaml-cpp 0.7's LoadAll never returns for a ',' outside [ ] and { } (e.g. the text
// ","): each call of Parser::HandleNextDocument makes an empty document without consuming the
// token, and LoadAll keeps them all until memory runs out (found by tests/fuzz/fuzz_config).
// So documents are counted here, up to two, with an event handler that keeps nothing.

class DocumentCounter : public YAML::EventHandler {
 public:
  int documents = 0;
  YAML::Mark second;  // where the second document starts

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents == 2) second = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The first document of `text` (a null node when there is none); fails unless it is the only one.
YAML::Node load_single_document(const Context& ctx, const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentCounter counter;
  while (counter.documents < 2 && parser.HandleNextDocument(counter)) {
  }
  if (counter.documents > 1) {
    ctx.fail_general("expected a single YAML document, found 2 or more (the second starts at line " +
                     std::to_string(counter.second.line + 1) + ", column " + std::to_string(counter.second.column + 1) +
                     ": after a '---', or at a ',' outside [ ] and { })");
  }
  return counter.documents == 0 ? YAML::Node() : YAML::Load(text);
}

// ---------------------------------------------------------------------------------------------
// Overrides: applied to the YAML tree before validation.

std::vector<std::string> split_path(const std::string& key) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

// Checks that every component of the override's key path exists in the schema.
void check_override_path(const Context& ctx, const Override& o,
                         const std::vector<std::string>& parts) {
  const std::string from = " (from --set " + o.key + "=" + o.value + ")";
  std::string parent;
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    const std::string full = join_path(parent, part);
    if (part.empty()) {
      ctx.fail_general("--set " + o.key + "=" + o.value + ": empty component in key path '" +
                       o.key + "'");
    }
    if (!is_section(parent)) {
      ctx.fail_general(full + ": unknown key" + from + "; '" + parent +
                       "' is a value, not a section");
    }
    const auto& keys = schema().at(parent);
    if (std::find(keys.begin(), keys.end(), part) == keys.end()) {
      ctx.fail_general(full + ": " + (parent.empty() ? "unknown section" : "unknown key") + from +
                       Section::unknown_key_details(parent, part));
    }
    parent = full;
  }
}

// node[parts[i]]...[parts.back()] = value, creating missing (or empty) maps on the way.
void set_path(const Context& ctx, const Override& o, YAML::Node node,
              const std::vector<std::string>& parts, size_t i, const YAML::Node& value) {
  if (i + 1 == parts.size()) {
    node[parts[i]] = value;
    return;
  }
  const YAML::Node& const_node = node;
  const YAML::Node existing = const_node[parts[i]];
  if (!existing.IsDefined() || existing.IsNull()) {
    node[parts[i]] = YAML::Node(YAML::NodeType::Map);
  } else if (!existing.IsMap()) {
    std::string path;
    for (size_t k = 0; k <= i; ++k) path = join_path(path, parts[k]);
    ctx.fail(path, existing.Mark(),
             "cannot apply --set " + o.key + "=" + o.value + ": '" + path +
                 "' is not a map, got " + describe(existing));
  }
  set_path(ctx, o, node[parts[i]], parts, i + 1, value);
}

void apply_override(const Context& ctx, YAML::Node& root, const Override& o) {
  const std::vector<std::string> parts = split_path(o.key);
  check_override_path(ctx, o, parts);
  YAML::Node value;
  try {
    value = YAML::Load(o.value);
  } catch (const YAML::Exception& e) {
    ctx.fail_general("--set " + o.key + "=" + o.value + ": invalid YAML value: " + e.msg);
  }
  check_nesting(ctx, value, "--set " + o.key + "=" + o.value + ": the value");
  if (!root.IsDefined() || root.IsNull()) {
    root.reset(YAML::Node(YAML::NodeType::Map));
  } else if (!root.IsMap()) {
    return;  // reported by the top-level check
  }
  set_path(ctx, o, root, parts, 0, value);
}

// ---------------------------------------------------------------------------------------------
// Section readers.

// training.schedule's choices: the registry's names, in its order (only the multi-chunk ones
// with `multi_chunk_only`).
std::vector<std::string> schedule_choices(bool multi_chunk_only = false) {
  std::vector<std::string> names;
  for (const ScheduleInfo& info : schedules()) {
    if (!multi_chunk_only || info.multi_chunk) names.push_back(info.name);
  }
  return names;
}

// The model's size against the operator's limits: layers, each width, parameters in total. The
// widths are checked first, so the products below stay far from int64 overflow.
void check_model_limits(const Section& s, const ModelConfig& m) {
  const Limits& l = s.limits();
  if (m.type == "transformer") {
    s.check_limit("n_blocks", m.n_blocks + 2, "max_layers", l.max_layers,
                  with_commas(m.n_blocks) + " blocks make " + with_commas(m.n_blocks + 2) +
                      " layers (embeddings, blocks, head)");
    s.check_limit("n_emb", m.n_emb, "max_layer_width", l.max_layer_width, "width " + with_commas(m.n_emb));
    s.check_limit("context", m.context, "max_layer_width", l.max_layer_width,
                  "context " + with_commas(m.context) + " (the position embedding's rows)");
    // Without the token embedding and the head: their size is the text's vocabulary.
    const int64_t c = m.n_emb;
    const int64_t params = m.context * c + m.n_blocks * (12 * c * c + 10 * c) + 2 * c;
    const char* key = s.has("n_emb") ? "n_emb" : s.has("n_blocks") ? "n_blocks" : "context";
    s.check_limit(key, params, "max_parameters", l.max_parameters,
                  with_commas(params) + " parameters without the token embedding and head (context " +
                      with_commas(m.context) + ", n_emb " + with_commas(c) + ", n_blocks " +
                      with_commas(m.n_blocks) + ")");
    return;
  }
  const int64_t layers = static_cast<int64_t>(m.layer_sizes.size()) - 1;
  s.check_limit("layer_sizes", layers, "max_layers", l.max_layers,
                with_commas(layers + 1) + " widths make " + with_commas(layers) + " layers");
  for (size_t i = 0; i < m.layer_sizes.size(); ++i) {
    s.check_limit("layer_sizes", m.layer_sizes[i], "max_layer_width", l.max_layer_width,
                  "width " + with_commas(m.layer_sizes[i]), "[" + std::to_string(i) + "]");
  }
  int64_t params = 0;
  for (size_t i = 0; i + 1 < m.layer_sizes.size(); ++i) {
    params += m.layer_sizes[i] * m.layer_sizes[i + 1] + m.layer_sizes[i + 1];  // weight + bias
  }
  s.check_limit("layer_sizes", params, "max_parameters", l.max_parameters,
                with_commas(params) + " parameters in total");
}

void read_model(const Section& s, ModelConfig& m) {
  s.choice("type", m.type, {"mlp", "transformer"});
  // Keys of the other model type first: the fix is to remove the key, whatever its value.
  const bool transformer = m.type == "transformer";
  for (const char* key : {"context", "n_emb", "n_heads", "n_blocks", "dropout"}) {
    if (!transformer && s.has(key)) {
      s.fail(key, "is a transformer setting, but model_config.type is '" + m.type +
                      "' (set type: transformer, or remove the key)");
    }
  }
  if (transformer && s.has("layer_sizes")) {
    s.fail("layer_sizes", "is an mlp setting, but model_config.type is 'transformer' (its "
                          "shape is context, n_emb, n_heads and n_blocks)");
  }
  s.integer_list("layer_sizes", m.layer_sizes, 2, 1,
                 "a list of at least 2 positive integers (input, hidden..., output widths)",
                 "a positive integer (layer width)");
  s.integer<int64_t>("context", m.context, 1, "a positive integer (tokens per sequence)");
  s.integer<int64_t>("n_emb", m.n_emb, 1, "a positive integer (embedding width)");
  s.integer<int64_t>("n_heads", m.n_heads, 1, "a positive integer (attention heads)");
  s.integer<int64_t>("n_blocks", m.n_blocks, 1, "a positive integer (transformer blocks)");
  s.number(
      "dropout", m.dropout, [](double v) { return v >= 0 && v < 1; }, "a number in [0, 1)");
  if (transformer && m.n_emb % m.n_heads != 0) {
    const std::string what = "n_emb = " + std::to_string(m.n_emb) + " is not a multiple of n_heads = " +
                             std::to_string(m.n_heads) + " (head size = n_emb / n_heads)";
    // Name the key the user wrote (n_heads when both or neither were written).
    if (s.has("n_emb") && !s.has("n_heads")) s.fail("n_emb", "expected a multiple of n_heads: " + what);
    s.fail("n_heads", "expected a divisor of n_emb: " + what);
  }
  check_model_limits(s, m);
}

void read_dataset(const Section& s, DatasetConfig& d, const ModelConfig& m) {
  // The original's transformer jobs give only dataset_config.source: text is implied
  // (apply_transformer_defaults set it).
  s.choice("name", d.name, {"MNIST", "FashionMNIST", "synthetic", "text"});
  s.string("root", d.root, /*allow_empty=*/true);
  s.string("source", d.source, /*allow_empty=*/true);
  s.integer<int64_t>("windows_per_epoch", d.windows_per_epoch, 0,
                     "a non-negative integer (0 = train characters / context)");
  const bool text = d.name == "text";
  if (m.type == "transformer" && !text) {
    s.fail("name", "expected 'text' for model_config.type 'transformer' (a character-level GPT "
                   "trains on a text file), got '" + d.name + "'");
  }
  if (m.type != "transformer" && text) {
    s.fail("name", "'text' needs model_config.type: transformer (model_config.type is '" +
                       m.type + "')");
  }
  if (text && d.source.empty()) {
    s.fail("source", "is required for name 'text': the path of a UTF-8 text file, e.g. "
                     "/usr/share/common-licenses/GPL-3");
  }
  if (!text) {
    for (const char* key : {"source", "windows_per_epoch"}) {
      if (s.has(key)) s.fail(key, "is a text setting, but dataset_config.name is '" + d.name + "'");
    }
  }
  if (text && s.has("max_train_samples")) {
    s.fail("max_train_samples", "does not apply to name 'text' (use windows_per_epoch for the "
                                "windows per epoch, max_val_samples to cap validation windows)");
  }
  s.integer<int64_t>("batch_size", d.batch_size, 1, "a positive integer");
  s.integer<int64_t>("val_batch_size", d.val_batch_size, 1, "a positive integer");
  const Limits& l = s.limits();
  s.check_limit("batch_size", d.batch_size, "max_batch_size", l.max_batch_size,
                "batch size " + with_commas(d.batch_size));
  s.check_limit("val_batch_size", d.val_batch_size, "max_batch_size", l.max_batch_size,
                "batch size " + with_commas(d.val_batch_size));
  s.check_limit("windows_per_epoch", d.windows_per_epoch, "max_windows_per_epoch", l.max_windows_per_epoch,
                with_commas(d.windows_per_epoch) + " windows");
  s.boolean("shuffle", d.shuffle);
  s.integer<int64_t>("max_train_samples", d.max_train_samples, 0,
                     "a non-negative integer (0 = all)");
  s.integer<int64_t>("max_val_samples", d.max_val_samples, 0, "a non-negative integer (0 = all)");

  const Section norm = s.section("normalize");
  norm.number_list(
      "mean", d.normalize.mean, [](double) { return true; },
      "a non-empty list of numbers (one per channel)", "a finite number");
  norm.number_list(
      "std", d.normalize.std, [](double v) { return v > 0; },
      "a non-empty list of positive numbers (one per channel)", "a positive finite number");
  if (d.normalize.mean.size() != d.normalize.std.size()) {
    s.fail("normalize", "expected mean and std of the same length (one value per channel), got "
                        "mean " + format_list(d.normalize.mean) + " (" +
                            count(d.normalize.mean.size(), "value") + ") and std " +
                            format_list(d.normalize.std) + " (" +
                            count(d.normalize.std.size(), "value") + ")");
  }

  const Section syn = s.section("synthetic");
  SyntheticConfig& y = d.synthetic;
  syn.integer<int64_t>("train_size", y.train_size, 1, "a positive integer");
  syn.integer<int64_t>("val_size", y.val_size, 1, "a positive integer");
  syn.integer<int64_t>("features", y.features, 1, "a positive integer");
  syn.integer<int64_t>("classes", y.classes, 1, "a positive integer");
  syn.number(
      "noise", y.noise, [](double v) { return v >= 0; }, "a non-negative finite number");
  if (d.name == "synthetic") {
    // Generated at start-up: class centres [classes, features], then [samples, features].
    syn.check_limit("features", y.features, "max_layer_width", l.max_layer_width, "width " + with_commas(y.features));
    syn.check_limit("classes", y.classes, "max_layer_width", l.max_layer_width, "width " + with_commas(y.classes));
    int64_t samples = 0, values = 0;
    if (__builtin_add_overflow(y.train_size, y.val_size, &samples) ||
        __builtin_mul_overflow(samples, y.features, &values)) {
      values = INT64_MAX;
    }
    s.check_limit("synthetic", values, "max_synthetic_values", l.max_synthetic_values,
                  "(train_size " + with_commas(y.train_size) + " + val_size " + with_commas(y.val_size) +
                      ") x features " + with_commas(y.features) + " = " +
                      (values == INT64_MAX ? std::string("more than 2^63") : with_commas(values)) + " values");
    s.check_limit("synthetic", y.classes * y.features, "max_synthetic_values", l.max_synthetic_values,
                  "classes " + with_commas(y.classes) + " x features " + with_commas(y.features) + " = " +
                      with_commas(y.classes * y.features) + " values (the class centres)");
  }
}

void read_training(const Section& s, TrainingConfig& t) {
  s.integer<int64_t>("epochs", t.epochs, 1, "a positive integer");
  s.number(
      "learning_rate", t.learning_rate, [](double v) { return v > 0; },
      "a positive finite number");
  s.choice("optimizer", t.optimizer, {"sgd", "adamw"});
  s.number(
      "momentum", t.momentum, [](double v) { return v >= 0 && v < 1; },
      "a number in [0, 1)");
  s.number(
      "weight_decay", t.weight_decay, [](double v) { return v >= 0; },
      "a non-negative finite number");
  s.integer<int64_t>("micro_batches", t.micro_batches, 1, "a positive integer");
  s.choice("schedule", t.schedule, schedule_choices());
  s.integer<uint64_t>("seed", t.seed, 0, "a non-negative integer");
  s.integer<int64_t>("max_steps", t.max_steps, 0, "a non-negative integer (0 = whole epoch)");
  s.choice("lr_schedule", t.lr_schedule, {"constant", "cosine"});
  s.integer<int64_t>("warmup_steps", t.warmup_steps, 0, "a non-negative integer (0 = no warm-up)");
  s.number(
      "min_learning_rate", t.min_learning_rate, [](double v) { return v >= 0; },
      "a non-negative finite number");
  s.number(
      "grad_clip", t.grad_clip, [](double v) { return v >= 0; },
      "a non-negative finite number (max global gradient norm; 0 = off)");
  if (t.min_learning_rate > t.learning_rate) {
    s.fail("min_learning_rate", "expected at most learning_rate = " +
                                    format_double(t.learning_rate) + ", got " +
                                    format_double(t.min_learning_rate));
  }
}

void read_communication(const Section& s, CommunicationConfig& c) {
  s.int_choice("quantization_bits", c.quantization_bits, {32, 16, 8, 4});
  s.boolean("stochastic_rounding", c.stochastic_rounding);
  s.boolean("error_feedback", c.error_feedback);
}

void read_partition(const Section& s, PartitionConfig& p, const TrainingConfig& t) {
  s.choice("method", p.method, {"uniform", "balanced"});
  s.stages("stages", p.stages);
  s.layer_lists("layers", p.layers);
  s.integer_in<int64_t>("chunks_per_rank", p.chunks_per_rank, 1, 8,
                        "an integer from 1 to 8 (chunks per stage rank)");
  if (p.chunks_per_rank > 1 && !find_schedule(t.schedule).multi_chunk) {
    s.fail("chunks_per_rank",
           "is " + std::to_string(p.chunks_per_rank) +
               ", which needs a multi-chunk training.schedule (" +
               quoted_list(schedule_choices(/*multi_chunk_only=*/true)) +
               "), but training.schedule is '" + t.schedule +
               "' (one chunk per stage rank; set chunks_per_rank: 1)");
  }
  if (p.chunks_per_rank > 1 && !p.layers.empty()) {
    s.fail("chunks_per_rank",
           "is " + std::to_string(p.chunks_per_rank) +
               ", but partition.layers is an explicit placement of one layer range per stage "
               "rank; remove partition.layers (method places the chunks) or set "
               "chunks_per_rank: 1");
  }
}

void read_output(const Section& s, OutputConfig& o) {
  s.string("dir", o.dir, false);
  s.integer<int64_t>("checkpoint_every", o.checkpoint_every, 0,
                     "a non-negative integer (epochs between checkpoints; 0 = only at the end)");
  s.integer<int64_t>("checkpoint_every_steps", o.checkpoint_every_steps, 0,
                     "a non-negative integer (steps between checkpoints; 0 = off)");
  s.boolean("metrics", o.metrics);
  s.integer<int64_t>("sample_tokens", o.sample_tokens, 0,
                     "a non-negative integer (characters sampled after each epoch; 0 = off)");
  s.number(
      "sample_temperature", o.sample_temperature, [](double v) { return v >= 0; },
      "a non-negative finite number (0 = argmax)");
}

// A transformer job that gives only its type and text (the original's REST body) trains with
// the original's GPT hyperparameters rather than the MLP's defaults: AdamW lr 1e-3, weight
// decay 0.01, batch 128, and 50 batches of random windows per epoch. Keys in the document
// still override these.
void apply_transformer_defaults(Config& c) {
  c.training.optimizer = "adamw";
  c.training.learning_rate = 1e-3;
  c.training.weight_decay = 0.01;
  c.dataset.name = "text";
  c.dataset.batch_size = 128;
  c.dataset.val_batch_size = 64;
  c.dataset.windows_per_epoch = 50 * 128;
}

Config read_config(const Context& ctx, const YAML::Node& root) {
  Config config;
  const Section top(ctx, root, "", root.IsDefined() ? root.Mark() : YAML::Mark::null_mark());
  read_model(top.section("model_config"), config.model);
  if (config.model.type == "transformer") apply_transformer_defaults(config);
  read_dataset(top.section("dataset_config"), config.dataset, config.model);
  read_training(top.section("training"), config.training);
  read_communication(top.section("communication"), config.communication);
  read_partition(top.section("partition"), config.partition, config.training);
  read_output(top.section("output"), config.output);
  top.boolean("resume", config.resume);
  return config;
}

// ---------------------------------------------------------------------------------------------
// Emission.

void emit_doubles(YAML::Emitter& out, const std::vector<double>& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (double v : values) out << format_double(v);
  out << YAML::EndSeq;
}

void emit_ints(YAML::Emitter& out, const std::vector<int64_t>& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (int64_t v : values) out << std::to_string(v);
  out << YAML::EndSeq;
}

}  // namespace

Override parse_override(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos) {
    throw ConfigError("[config] --set '" + assignment +
                      "': expected key=value, e.g. training.epochs=3");
  }
  std::string key = assignment.substr(0, eq);
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  key.erase(key.begin(), std::find_if(key.begin(), key.end(), not_space));
  key.erase(std::find_if(key.rbegin(), key.rend(), not_space).base(), key.end());
  if (key.empty()) {
    throw ConfigError("[config] --set '" + assignment +
                      "': empty key; expected key=value, e.g. training.epochs=3");
  }
  return Override{key, assignment.substr(eq + 1)};
}

Config parse_config(const std::string& yaml_text, const std::vector<Override>& overrides,
                    const std::string& source, const Limits& limits) {
  Context ctx(source, limits);
  YAML::Node root;
  try {
    root = load_single_document(ctx, yaml_text);
  } catch (const YAML::Exception& e) {
    std::string where;
    if (!e.mark.is_null()) {
      where = " at line " + std::to_string(e.mark.line + 1) + ", column " +
              std::to_string(e.mark.column + 1);
    }
    ctx.fail_general("invalid YAML" + where + ": " + e.msg);
  }
  try {
    check_nesting(ctx, root, "the document");
    for (const Override& o : overrides) {
      ctx.add_override(o);
      apply_override(ctx, root, o);
    }
    return read_config(ctx, root);
  } catch (const YAML::Exception& e) {
    // Not expected (values are inspected before conversion), but never leak a yaml-cpp type.
    ctx.fail_general(std::string("unexpected YAML error: ") + e.what());
  }
}

Config load_config_file(const std::string& path, const std::vector<Override>& overrides,
                        const Limits& limits) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) {
    throw ConfigError("[config] cannot read '" + path + "': " + std::strerror(errno));
  }
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), file)) > 0) text.append(buf, n);
  const int read_errno = errno;
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) {
    throw ConfigError("[config] cannot read '" + path + "': " + std::strerror(read_errno));
  }
  return parse_config(text, overrides, path, limits);
}

std::string to_yaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;

  out << YAML::Key << "model_config" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "type" << YAML::Value << c.model.type;
  if (c.model.type == "transformer") {
    out << YAML::Key << "context" << YAML::Value << std::to_string(c.model.context);
    out << YAML::Key << "n_emb" << YAML::Value << std::to_string(c.model.n_emb);
    out << YAML::Key << "n_heads" << YAML::Value << std::to_string(c.model.n_heads);
    out << YAML::Key << "n_blocks" << YAML::Value << std::to_string(c.model.n_blocks);
    out << YAML::Key << "dropout" << YAML::Value << format_double(c.model.dropout);
  } else {
    out << YAML::Key << "layer_sizes" << YAML::Value;
    emit_ints(out, c.model.layer_sizes);
  }
  out << YAML::EndMap;

  const DatasetConfig& d = c.dataset;
  out << YAML::Key << "dataset_config" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << d.name;
  out << YAML::Key << "root" << YAML::Value << d.root;
  if (d.name == "text") {
    out << YAML::Key << "source" << YAML::Value << d.source;
    out << YAML::Key << "windows_per_epoch" << YAML::Value << std::to_string(d.windows_per_epoch);
  }
  out << YAML::Key << "batch_size" << YAML::Value << std::to_string(d.batch_size);
  out << YAML::Key << "val_batch_size" << YAML::Value << std::to_string(d.val_batch_size);
  out << YAML::Key << "normalize" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "mean" << YAML::Value;
  emit_doubles(out, d.normalize.mean);
  out << YAML::Key << "std" << YAML::Value;
  emit_doubles(out, d.normalize.std);
  out << YAML::EndMap;
  out << YAML::Key << "shuffle" << YAML::Value << d.shuffle;
  if (d.name != "text") {
    out << YAML::Key << "max_train_samples" << YAML::Value << std::to_string(d.max_train_samples);
  }
  out << YAML::Key << "max_val_samples" << YAML::Value << std::to_string(d.max_val_samples);
  out << YAML::Key << "synthetic" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "train_size" << YAML::Value << std::to_string(d.synthetic.train_size);
  out << YAML::Key << "val_size" << YAML::Value << std::to_string(d.synthetic.val_size);
  out << YAML::Key << "features" << YAML::Value << std::to_string(d.synthetic.features);
  out << YAML::Key << "classes" << YAML::Value << std::to_string(d.synthetic.classes);
  out << YAML::Key << "noise" << YAML::Value << format_double(d.synthetic.noise);
  out << YAML::EndMap;
  out << YAML::EndMap;

  const TrainingConfig& t = c.training;
  out << YAML::Key << "training" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "epochs" << YAML::Value << std::to_string(t.epochs);
  out << YAML::Key << "learning_rate" << YAML::Value << format_double(t.learning_rate);
  out << YAML::Key << "optimizer" << YAML::Value << t.optimizer;
  out << YAML::Key << "momentum" << YAML::Value << format_double(t.momentum);
  out << YAML::Key << "weight_decay" << YAML::Value << format_double(t.weight_decay);
  out << YAML::Key << "micro_batches" << YAML::Value << std::to_string(t.micro_batches);
  out << YAML::Key << "schedule" << YAML::Value << t.schedule;
  out << YAML::Key << "seed" << YAML::Value << std::to_string(t.seed);
  out << YAML::Key << "max_steps" << YAML::Value << std::to_string(t.max_steps);
  out << YAML::Key << "lr_schedule" << YAML::Value << t.lr_schedule;
  out << YAML::Key << "warmup_steps" << YAML::Value << std::to_string(t.warmup_steps);
  out << YAML::Key << "min_learning_rate" << YAML::Value << format_double(t.min_learning_rate);
  out << YAML::Key << "grad_clip" << YAML::Value << format_double(t.grad_clip);
  out << YAML::EndMap;

  out << YAML::Key << "communication" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "quantization_bits" << YAML::Value
      << std::to_string(c.communication.quantization_bits);
  out << YAML::Key << "stochastic_rounding" << YAML::Value << c.communication.stochastic_rounding;
  out << YAML::Key << "error_feedback" << YAML::Value << c.communication.error_feedback;
  out << YAML::EndMap;

  const PartitionConfig& p = c.partition;
  out << YAML::Key << "partition" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "method" << YAML::Value << p.method;
  out << YAML::Key << "stages" << YAML::Value
      << (p.stages == 0 ? std::string("auto") : std::to_string(p.stages));
  out << YAML::Key << "layers" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& stage : p.layers) emit_ints(out, stage);
  out << YAML::EndSeq;
  out << YAML::Key << "chunks_per_rank" << YAML::Value << std::to_string(p.chunks_per_rank);
  out << YAML::EndMap;

  out << YAML::Key << "output" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dir" << YAML::Value << c.output.dir;
  out << YAML::Key << "checkpoint_every" << YAML::Value << std::to_string(c.output.checkpoint_every);
  out << YAML::Key << "checkpoint_every_steps" << YAML::Value << std::to_string(c.output.checkpoint_every_steps);
  out << YAML::Key << "metrics" << YAML::Value << c.output.metrics;
  out << YAML::Key << "sample_tokens" << YAML::Value << std::to_string(c.output.sample_tokens);
  out << YAML::Key << "sample_temperature" << YAML::Value << format_double(c.output.sample_temperature);
  out << YAML::EndMap;
  out << YAML::Key << "resume" << YAML::Value << c.resume;

  out << YAML::EndMap;
  if (!out.good()) throw ConfigError("[config] cannot emit YAML: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace arceus
