// Reading typed values out of a YAML tree with messages that name the source, the full key
// path, the value as written and what was expected: the scalar decoders, the error context (the
// source name, where each --set came from) and Section, one map of the document checked against
// the keys the config describes (config/fields.h). Internal to config/.
#pragma once

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "config/config.h"

namespace arceus::config_reader {

// Allowed keys of every map of the document, by key path ("" = the top level), in the order of
// config/fields.h. A path listed here is a section (a map); any other known path is a value.
const std::map<std::string, std::vector<std::string>>& schema();
bool is_section(const std::string& path);

std::string join_path(const std::string& parent, const std::string& key);
std::string join_list(const std::vector<std::string>& items, const char* sep = ", ");
std::string quoted_list(const std::vector<std::string>& items);
// The candidate closest to `word` (case-insensitively) if within edit distance 2, else "".
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

// Scalar decoding. Typed values (integers, numbers, booleans) must be plain YAML scalars: a
// quoted "5" is a string, not an integer.
inline bool is_plain_scalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() != "!"; }

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

std::optional<double> decode_number(const YAML::Node& node);
std::optional<bool> decode_bool(const YAML::Node& node);
// Shortest text that parses back to exactly `v`; always recognisable as a float.
std::string format_double(double v);
std::string format_list(const std::vector<double>& values);
std::string count(size_t n, const std::string& noun);
// The value as written, for messages: numbers bare, other scalars in quotes, collections in
// flow style, null as "an empty value".
std::string describe(const YAML::Node& node);

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

inline std::string expected_got(const std::string& expectation, const YAML::Node& node) {
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

  // 'auto' (stored as 0) or an integer >= min (partition.stages).
  void auto_or(const std::string& key, int64_t& out, int64_t min, const std::string& expectation) const {
    const Entry* e = find(key);
    if (!e) return;
    if (e->value.IsScalar() && e->value.Scalar() == "auto") {
      out = 0;
      return;
    }
    out = decode_int<int64_t>(e->value, join_path(path_, key), e->mark, min, expectation);
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



// The sections of one document, each made (its keys checked against the schema) when first used,
// so a document is checked in the order its keys are read.
class Document {
 public:
  Document(const Context& ctx, const YAML::Node& root) : ctx_(ctx), root_(root) {}

  // The map at `path` ("" = the top level, "dataset_config.normalize").
  const Section& section(const std::string& path) {
    auto it = sections_.find(path);
    if (it != sections_.end()) return *it->second;
    std::unique_ptr<Section> made;
    if (path.empty()) {
      made = std::make_unique<Section>(ctx_, root_, "", root_.IsDefined() ? root_.Mark() : YAML::Mark::null_mark());
    } else {
      const auto [parent, name] = split(path);
      made = std::make_unique<Section>(section(parent).section(name));
    }
    return *sections_.emplace(path, std::move(made)).first->second;
  }

  // Whether the document holds the dotted key.
  bool has(const std::string& key) {
    const auto [parent, name] = split(key);
    return section(parent).has(name);
  }

  // An error about the dotted key (at its line, or its --set).
  [[noreturn]] void fail(const std::string& key, const std::string& what) {
    const auto [parent, name] = split(key);
    section(parent).fail(name, what);
  }

  // "a.b.c" -> {"a.b", "c"}; "resume" -> {"", "resume"}.
  static std::pair<std::string, std::string> split(const std::string& key) {
    const size_t dot = key.rfind('.');
    if (dot == std::string::npos) return {"", key};
    return {key.substr(0, dot), key.substr(dot + 1)};
  }

 private:
  const Context& ctx_;
  YAML::Node root_;
  std::map<std::string, std::unique_ptr<Section>> sections_;
};

}  // namespace arceus::config_reader
