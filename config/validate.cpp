// Checks that span several keys: which keys apply (the model's type, the dataset's name), shapes
// that must agree, and the operator's limits on sizes. Single keys are checked by their rule in
// config/fields.h as they are read.
#include "config/validate.h"

#include <string>

#include "config/fields.h"
#include "config/reader.h"

namespace arceus::config_reader {
namespace {

bool in_scope(Scope scope, const Config& c) {
  switch (scope) {
    case Scope::Always: return true;
    case Scope::Mlp: return c.model.type != "transformer";
    case Scope::Transformer: return c.model.type == "transformer";
    case Scope::Text: return c.dataset.name == "text";
    case Scope::NotText: return c.dataset.name != "text";
    case Scope::Diloco: return c.training.sync == "diloco";
  }
  return true;
}

// Why a key present where it does not apply is refused: the setting that excludes it.
std::string refusal(const Key& key, const Config& c) {
  switch (key.scope) {
    case Scope::Transformer:
      return "is a transformer setting, but model_config.type is '" + c.model.type +
             "' (set type: transformer, or remove the key)";
    case Scope::Mlp:
      return "is an mlp setting, but model_config.type is 'transformer' (its shape is context, n_emb, n_heads "
             "and n_blocks)";
    case Scope::Text: return "is a text setting, but dataset_config.name is '" + c.dataset.name + "'";
    case Scope::NotText: return "does not apply to name 'text' (" + std::string(key.instead) + ")";
    case Scope::Diloco:
      return "is a DiLoCo setting, but training.sync is '" + c.training.sync +
             "' (set training.sync: diloco, or remove the key)";
    case Scope::Always: break;
  }
  return "";
}

// Refuses every key under `prefix` that the document holds where it does not apply.
void refuse_out_of_scope(Document& doc, const Config& c, const std::string& prefix) {
  visit_fields(c, [&](const Key& key, const auto&, const auto&) {
    if (std::string(key.path).rfind(prefix, 0) != 0 || in_scope(key.scope, c)) return;
    if (doc.has(key.path)) doc.fail(key.path, refusal(key, c));
  });
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
  s.check_limit("layer_sizes", params, "max_parameters", l.max_parameters, with_commas(params) + " parameters in total");
}

void validate_model(const Section& s, const ModelConfig& m) {
  if (m.type == "transformer" && m.n_emb % m.n_heads != 0) {
    const std::string what = "n_emb = " + std::to_string(m.n_emb) + " is not a multiple of n_heads = " +
                             std::to_string(m.n_heads) + " (head size = n_emb / n_heads)";
    // Name the key the user wrote (n_heads when both or neither were written).
    if (s.has("n_emb") && !s.has("n_heads")) s.fail("n_emb", "expected a multiple of n_heads: " + what);
    s.fail("n_heads", "expected a divisor of n_emb: " + what);
  }
  check_model_limits(s, m);
}

void validate_dataset(const Section& s, const DatasetConfig& d) {
  if (d.name == "text" && d.source.empty()) {
    s.fail("source", "is required for name 'text': the path of a UTF-8 text file, e.g. "
                     "/usr/share/common-licenses/GPL-3");
  }
  const Limits& l = s.limits();
  s.check_limit("batch_size", d.batch_size, "max_batch_size", l.max_batch_size,
                "batch size " + with_commas(d.batch_size));
  s.check_limit("val_batch_size", d.val_batch_size, "max_batch_size", l.max_batch_size,
                "batch size " + with_commas(d.val_batch_size));
  s.check_limit("windows_per_epoch", d.windows_per_epoch, "max_windows_per_epoch", l.max_windows_per_epoch,
                with_commas(d.windows_per_epoch) + " windows");
  if (d.normalize.mean.size() != d.normalize.std.size()) {
    s.fail("normalize", "expected mean and std of the same length (one value per channel), got "
                        "mean " + format_list(d.normalize.mean) + " (" + count(d.normalize.mean.size(), "value") +
                            ") and std " + format_list(d.normalize.std) + " (" +
                            count(d.normalize.std.size(), "value") + ")");
  }
  if (d.name == "synthetic") {
    const Section syn = s.section("synthetic");
    const SyntheticConfig& y = d.synthetic;
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

void validate_training(const Section& s, const TrainingConfig& t) {
  if (!t.pipeline_flush) {
    const ScheduleInfo& info = find_schedule(t.schedule);
    if (!info.stream_warmup) {
      s.fail("pipeline_flush", "is false, which needs training.schedule " + quoted_list(streamed_schedule_choices()) +
                                   ", but training.schedule is '" + t.schedule + "': " + info.not_streamed_because);
    }
    if (t.grad_clip > 0) {
      s.fail("pipeline_flush", "is false, but training.grad_clip is " + format_double(t.grad_clip) +
                                   ": clipping needs every stage's gradient norm of a step before any stage's update, "
                                   "which is the flush (set grad_clip: 0 or pipeline_flush: true)");
    }
    if (t.sync == "diloco") {
      s.fail("pipeline_flush", "is false, but training.sync is 'diloco': DiLoCo's replicas without a flush are "
                                   "not built (set pipeline_flush: true)");
    }
  }
  if (t.min_learning_rate > t.learning_rate) {
    s.fail("min_learning_rate", "expected at most learning_rate = " + format_double(t.learning_rate) + ", got " +
                                    format_double(t.min_learning_rate));
  }
}

void validate_partition(const Section& s, const PartitionConfig& p, const TrainingConfig& t) {
  if (p.chunks_per_rank > 1 && !find_schedule(t.schedule).multi_chunk) {
    s.fail("chunks_per_rank", "is " + std::to_string(p.chunks_per_rank) +
                                  ", which needs a multi-chunk training.schedule (" +
                                  quoted_list(schedule_choices(/*multi_chunk_only=*/true)) +
                                  "), but training.schedule is '" + t.schedule +
                                  "' (one chunk per stage rank; set chunks_per_rank: 1)");
  }
  if (p.chunks_per_rank > 1 && !p.layers.empty()) {
    s.fail("chunks_per_rank", "is " + std::to_string(p.chunks_per_rank) +
                                  ", but partition.layers is an explicit placement of one layer range per stage "
                                  "rank; remove partition.layers (method places the chunks) or set "
                                  "chunks_per_rank: 1");
  }
}

}  // namespace

bool applies(const Key& key, const Config& c) { return in_scope(key.scope, c); }

void check_model_scope(Document& doc, const Config& c) { refuse_out_of_scope(doc, c, "model_config."); }

void check_dataset_scope(Document& doc, const Config& c) {
  const bool text = c.dataset.name == "text";
  if (c.model.type == "transformer" && !text) {
    doc.fail("dataset_config.name", "expected 'text' for model_config.type 'transformer' (a character-level GPT "
                                    "trains on a text file), got '" + c.dataset.name + "'");
  }
  if (c.model.type != "transformer" && text) {
    doc.fail("dataset_config.name",
             "'text' needs model_config.type: transformer (model_config.type is '" + c.model.type + "')");
  }
  refuse_out_of_scope(doc, c, "dataset_config.");
}

void validate(Document& doc, const Config& c) {
  refuse_out_of_scope(doc, c, "diloco.");
  validate_model(doc.section("model_config"), c.model);
  validate_dataset(doc.section("dataset_config"), c.dataset);
  validate_training(doc.section("training"), c.training);
  validate_partition(doc.section("partition"), c.partition, c.training);
}

}  // namespace arceus::config_reader
