#include "ranks/job.h"

#include <map>
#include <set>

#include "storage/storage.h"

namespace arceus {

std::string transformer_layer_name(const Config& c, int64_t layer) {
  if (layer == 0) return "embed";
  if (layer == c.model.n_blocks + 1) return "head";
  return "blocks." + std::to_string(layer - 1);
}


GptConfig gpt_config_of(const Config& c, int64_t vocab) {
  GptConfig g;
  g.vocab_size = vocab;
  g.context = c.model.context;
  g.n_emb = c.model.n_emb;
  g.n_heads = c.model.n_heads;
  g.n_blocks = c.model.n_blocks;
  g.dropout = c.model.dropout;
  return g;
}

void finish_job(Job& job) {
  if (job.transformer()) {
    job.gpt_config = gpt_config_of(job.config, job.classes);
    job.seq = job.config.model.context;
  }
}

std::vector<std::pair<std::string, std::vector<int64_t>>> parameter_shapes(const Config& c, int64_t vocab) {
  if (is_transformer(c)) return gpt_parameter_shapes(gpt_config_of(c, vocab));
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (size_t i = 0; i + 1 < c.model.layer_sizes.size(); ++i) {
    const int64_t in = c.model.layer_sizes[i], out = c.model.layer_sizes[i + 1];
    shapes.push_back({"layers." + std::to_string(i) + ".weight", {out, in}});
    shapes.push_back({"layers." + std::to_string(i) + ".bias", {out}});
  }
  return shapes;
}

int64_t layer_of(const Job& job, const std::string& name) {
  if (job.transformer()) return gpt_layer_of(name, job.gpt_config);
  const size_t a = name.find('.'), b = name.find('.', a + 1);  // "layers.<i>.<what>"
  return std::stoll(name.substr(a + 1, b - a - 1));
}

std::vector<int64_t> stage_parameter_counts(const Job& job) {
  std::vector<int64_t> counts(static_cast<size_t>(job.stages()), 0);
  for (const auto& [name, shape] : parameter_shapes(job.config, job.classes)) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    const int64_t layer = layer_of(job, name);
    for (int64_t s = 1; s <= job.stages(); ++s)
      if (job.placement.holds_layer(s, layer)) counts[static_cast<size_t>(s - 1)] += n;
  }
  return counts;
}

std::vector<double> stage_cost_estimates(const Job& job) {
  const std::vector<double> chunk = stage_costs(layer_costs(job.config, job.classes), job.placement.chunks);
  std::vector<double> out(static_cast<size_t>(job.stages()), 0.0);
  for (int64_t c = 0; c < job.placement.chunk_count(); ++c)
    out[static_cast<size_t>(job.placement.stage_of_chunk(c) - 1)] += chunk[static_cast<size_t>(c)];
  return out;
}

int64_t boundary_width(const Job& job, int64_t chunk) {
  if (job.transformer()) return job.config.model.n_emb;
  return job.config.model.layer_sizes[size_t(job.placement.chunks[size_t(chunk)].end())];
}

void check_checkpoint_matches(const CheckpointData& ck, const Config& c, int64_t vocab, const std::string& path) {
  std::map<std::string, std::vector<int64_t>> have;
  for (const auto& a : ck.parameters) have[a.name] = a.shape;
  auto shape_str = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  const std::string head = "[checkpoint] '" + path + "' does not match " +
                           (is_transformer(c) ? std::string("the transformer (model_config and the text's vocabulary of ") +
                                            std::to_string(vocab) + ")"
                                      : std::string("model_config.layer_sizes")) +
                           ": ";
  std::set<std::string> expected;
  for (const auto& [name, shape] : parameter_shapes(c, vocab)) {
    expected.insert(name);
    auto it = have.find(name);
    if (it == have.end()) throw StorageError(head + "it has no tensor '" + name + "' (the model expects " + shape_str(shape) + ")");
    if (it->second != shape) {
      throw StorageError(head + "tensor '" + name + "' is " + shape_str(it->second) + " in the checkpoint but the model expects " +
                         shape_str(shape));
    }
  }
  for (const auto& [name, shape] : have)
    if (!expected.count(name)) throw StorageError(head + "it has tensor '" + name + "' " + shape_str(shape) + " that the model does not");
}

}  // namespace arceus
