// Job configuration: YAML text -> validated Config, and Config -> canonical YAML and JSON.
//
// Parsing goes in three steps: load the YAML tree, apply the --set overrides to that tree, then
// read every key the config describes (config/fields.h), each checked against its rule as it is
// read, and the checks that span keys (config/validate.cpp). Every failure is a ConfigError whose
// message names the source, the full key path, the value as written and what was expected.
// Emitting YAML or JSON, listing the keys and comparing configs walk the same description.
#include "config/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "config/config_json.h"
#include "config/fields.h"
#include "config/reader.h"
#include "config/validate.h"

namespace arceus {

namespace config_reader {

const std::map<std::string, std::vector<std::string>>& schema() {
  static const std::map<std::string, std::vector<std::string>> kSchema = [] {
    std::map<std::string, std::vector<std::string>> sections;
    const Config c;
    visit_fields(c, [&](const Key& key, const auto&, const auto&) {
      std::string parent;
      const std::string path = key.path;
      for (size_t start = 0;;) {
        const size_t dot = path.find('.', start);
        const std::string name = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        auto& keys = sections[parent];
        if (std::find(keys.begin(), keys.end(), name) == keys.end()) keys.push_back(name);
        if (dot == std::string::npos) break;
        parent = join_path(parent, name);
        start = dot + 1;
      }
    });
    return sections;
  }();
  return kSchema;
}

bool is_section(const std::string& path) { return schema().count(path) != 0; }

}  // namespace config_reader

namespace {

using namespace config_reader;

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
// Reading: one visitor over the description, each key read by its rule from its section.

class Reader {
 public:
  explicit Reader(Document& doc, const char* only = nullptr) : doc_(doc), only_(only) {}

  template <class T, class Rule>
  void operator()(const Key& key, T& value, const Rule& rule) {
    if (only_ && std::strcmp(key.path, only_) != 0) return;
    const auto [parent, name] = Document::split(key.path);
    read(doc_.section(parent), name, value, rule);
  }

 private:
  template <class T>
  static void read(const Section& s, const std::string& name, T& value, const Int& r) {
    if (r.max == std::numeric_limits<int64_t>::max()) {
      s.integer<T>(name, value, static_cast<T>(r.min), r.expectation);
    } else {
      s.integer_in<T>(name, value, static_cast<T>(r.min), static_cast<T>(r.max), r.expectation);
    }
  }
  static void read(const Section& s, const std::string& name, int& value, const IntOneOf& r) {
    s.int_choice(name, value, r.choices);
  }
  static void read(const Section& s, const std::string& name, double& value, const Number& r) {
    s.number(name, value, r.ok, r.expectation);
  }
  static void read(const Section& s, const std::string& name, bool& value, const Flag&) { s.boolean(name, value); }
  static void read(const Section& s, const std::string& name, std::string& value, const Text& r) {
    s.string(name, value, r.allow_empty);
  }
  static void read(const Section& s, const std::string& name, std::string& value, const OneOf& r) {
    s.choice(name, value, r.choices);
  }
  static void read(const Section& s, const std::string& name, std::vector<int64_t>& value, const IntList& r) {
    s.integer_list(name, value, r.min_size, r.min, r.expectation, r.item_expectation);
  }
  static void read(const Section& s, const std::string& name, std::vector<double>& value, const NumberList& r) {
    s.number_list(name, value, r.ok, r.expectation, r.item_expectation);
  }
  static void read(const Section& s, const std::string& name, std::vector<std::vector<int64_t>>& value,
                   const LayerLists&) {
    s.layer_lists(name, value);
  }
  static void read(const Section& s, const std::string& name, int64_t& value, const AutoOr& r) {
    s.auto_or(name, value, r.min, r.expectation);
  }

  Document& doc_;
  const char* only_;
};

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

Config defaults_for(const std::string& model_type) {
  Config c;
  c.model.type = model_type;
  if (model_type == "transformer") apply_transformer_defaults(c);
  return c;
}

// The keys that decide which others apply are read first: the model's type (which also sets
// the transformer's defaults), then the dataset's name.
Config read_config(const Context& ctx, const YAML::Node& root) {
  Document doc(ctx, root);
  Config config;
  visit_fields(config, Reader(doc, "model_config.type"));
  if (config.model.type == "transformer") apply_transformer_defaults(config);
  check_model_scope(doc, config);
  visit_fields(config, Reader(doc, "dataset_config.name"));
  check_dataset_scope(doc, config);
  visit_fields(config, Reader(doc));
  validate(doc, config);
  return config;
}

// ---------------------------------------------------------------------------------------------
// Writing: each value as YAML, JSON or text.

void emit(YAML::Emitter& out, const std::string& v) { out << v; }
void emit(YAML::Emitter& out, int64_t v) { out << std::to_string(v); }
void emit(YAML::Emitter& out, uint64_t v) { out << std::to_string(v); }
void emit(YAML::Emitter& out, int v) { out << std::to_string(v); }
void emit(YAML::Emitter& out, double v) { out << format_double(v); }
void emit(YAML::Emitter& out, bool v) { out << v; }
void emit(YAML::Emitter& out, const std::vector<double>& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (double v : values) out << format_double(v);
  out << YAML::EndSeq;
}
void emit(YAML::Emitter& out, const std::vector<int64_t>& values) {
  out << YAML::Flow << YAML::BeginSeq;
  for (int64_t v : values) out << std::to_string(v);
  out << YAML::EndSeq;
}
void emit(YAML::Emitter& out, const std::vector<std::vector<int64_t>>& lists) {
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto& list : lists) emit(out, list);
  out << YAML::EndSeq;
}

// A value as one line of YAML flow text ("[784, 128, 10]", "auto"): the key list, comparisons.
template <class T, class Rule>
std::string text_of(const T& value, const Rule&) {
  YAML::Emitter out;
  emit(out, value);
  return out.c_str();
}
std::string text_of(const int64_t& value, const AutoOr&) { return value == 0 ? "auto" : std::to_string(value); }

template <class T, class Rule>
nlohmann::json json_of(const T& value, const Rule&) {
  return value;
}
nlohmann::json json_of(const int64_t& value, const AutoOr&) {
  return value == 0 ? nlohmann::json("auto") : nlohmann::json(value);
}

// The keys that apply to `c`, as nested maps in the description's order.
class YamlWriter {
 public:
  explicit YamlWriter(const Config& c) : c_(c) { out_ << YAML::BeginMap; }

  template <class T, class Rule>
  void operator()(const Key& key, const T& value, const Rule& rule) {
    if (!applies(key, c_)) return;
    const std::vector<std::string> parts = split_path(key.path);
    size_t common = 0;
    while (common < open_.size() && common + 1 < parts.size() && open_[common] == parts[common]) ++common;
    for (; open_.size() > common; open_.pop_back()) out_ << YAML::EndMap;
    for (size_t i = common; i + 1 < parts.size(); ++i) {
      out_ << YAML::Key << parts[i] << YAML::Value << YAML::BeginMap;
      open_.push_back(parts[i]);
    }
    out_ << YAML::Key << parts.back() << YAML::Value;
    if constexpr (std::is_same_v<Rule, AutoOr>) {
      out_ << text_of(value, rule);
    } else {
      emit(out_, value);
    }
  }

  std::string finish() {
    for (; !open_.empty(); open_.pop_back()) out_ << YAML::EndMap;
    out_ << YAML::EndMap;
    if (!out_.good()) throw ConfigError("[config] cannot emit YAML: " + out_.GetLastError());
    return std::string(out_.c_str()) + "\n";
  }

 private:
  const Config& c_;
  YAML::Emitter out_;
  std::vector<std::string> open_;  // the sections open, outermost first
};

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
  YamlWriter writer(c);
  visit_fields(c, writer);
  return writer.finish();
}

nlohmann::json config_json(const Config& c) {
  nlohmann::json out = nlohmann::json::object();
  visit_fields(c, [&](const Key& key, const auto& value, const auto& rule) {
    if (!applies(key, c)) return;
    nlohmann::json* at = &out;
    for (const std::string& part : split_path(key.path)) at = &(*at)[part];
    *at = json_of(value, rule);
  });
  return out;
}

std::vector<std::string> config_differences(const Config& a, const Config& b) {
  std::vector<std::string> texts;
  visit_fields(a, [&](const Key&, const auto& value, const auto& rule) { texts.push_back(text_of(value, rule)); });
  std::vector<std::string> out;
  size_t i = 0;
  visit_fields(b, [&](const Key& key, const auto& value, const auto& rule) {
    const std::string text = text_of(value, rule);
    if (text != texts[i++]) out.push_back(std::string(key.path) + ": " + texts[i - 1] + " vs " + text);
  });
  return out;
}

std::vector<ConfigKeyInfo> config_keys() {
  const Config mlp = defaults_for("mlp"), transformer = defaults_for("transformer");
  std::vector<std::string> transformer_texts;
  visit_fields(transformer,
               [&](const Key&, const auto& value, const auto& rule) { transformer_texts.push_back(text_of(value, rule)); });
  std::vector<ConfigKeyInfo> keys;
  visit_fields(mlp, [&](const Key& key, const auto& value, const auto& rule) {
    ConfigKeyInfo info;
    info.key = key.path;
    info.help = key.help;
    info.default_value = text_of(value, rule);
    const std::string& t = transformer_texts[keys.size()];
    // (model_config.type is what makes the transformer's defaults: not one of them)
    if (t != info.default_value && key.scope == Scope::Always && info.key != "model_config.type") {
      info.transformer_default = t;
    }
    switch (key.scope) {
      case Scope::Always: break;
      case Scope::Mlp: info.applies_to = "mlp"; break;
      case Scope::Transformer:
        info.applies_to = "transformer";
        info.default_value = t;
        break;
      case Scope::Text:
        info.applies_to = "text";
        info.default_value = t;
        break;
      case Scope::NotText: info.applies_to = "not text"; break;
      case Scope::Diloco: info.applies_to = "training.sync diloco"; break;
    }
    keys.push_back(std::move(info));
  });
  return keys;
}

std::string format_config_keys(bool markdown) {
  const std::vector<ConfigKeyInfo> keys = config_keys();
  std::ostringstream out;
  if (markdown) {
    out << "| key | default | applies to | meaning |\n|---|---|---|---|\n";
    for (const auto& k : keys) {
      std::string def = "`" + k.default_value + "`";
      if (!k.transformer_default.empty()) def += " (transformer: `" + k.transformer_default + "`)";
      std::string help;
      for (char c : k.help) help += c == '|' ? std::string("\\|") : std::string(1, c);
      out << "| `" << k.key << "` | " << def << " | " << (k.applies_to.empty() ? "all" : k.applies_to) << " | " << help
          << " |\n";
    }
    return out.str();
  }
  size_t kw = 0, dw = 0;
  for (const auto& k : keys) {
    kw = std::max(kw, k.key.size());
    dw = std::max(dw, k.default_value.size());
  }
  for (const auto& k : keys) {
    out << k.key << std::string(kw + 2 - k.key.size(), ' ') << k.default_value
        << std::string(dw + 2 - k.default_value.size(), ' ') << k.help;
    if (!k.applies_to.empty()) out << " [" << k.applies_to << " only]";
    if (!k.transformer_default.empty()) out << " [transformer: " << k.transformer_default << "]";
    out << "\n";
  }
  return out.str();
}

}  // namespace arceus
