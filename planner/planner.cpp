// The cost of one configuration (predict) and the search over configurations.
#include "planner/planner.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <tuple>

#include "planner/simulate_links.h"
#include "ranks/codec.h"
#include "ranks/schedule/registry.h"
#include "ranks/schedule/stream.h"
#include "ranks/steps.h"
#include "ranks/sync_buckets.h"

namespace arceus::plan {
namespace {

// Without the flush, the steps of a stream simulated together: enough for the one pipeline
// fill to cost about a step in eight.
constexpr int64_t kStreamSteps = 8;

// The registry's entry of `name`, nullptr for a name it does not know (the search skips it).
const ScheduleInfo* registered(const std::string& name) {
  try {
    return &find_schedule(name);
  } catch (const std::exception&) {
    return nullptr;
  }
}

constexpr double kHeader = 40;  // ranks/wire.h WireHeader

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

double wire_bytes(int64_t rows, int64_t cols, int bits) {
  return kHeader + double(encoded_size(rows, cols, bits));
}

double optimizer_seconds_per_param(const ModelSpec& m, const Calibration& cal) {
  if (m.optimizer == "adamw") return cal.adamw_s_per_param;
  return cal.sgd_s_per_param * (m.momentum > 0 ? 1.5 : 1.0);
}

double state_bytes_per_param(const ModelSpec& m) {
  // weights + gradients + optimizer state
  return 8.0 + (m.optimizer == "adamw" ? 8.0 : (m.momentum > 0 ? 4.0 : 0.0));
}

}  // namespace

double parse_link_rate(const std::string& text) {
  const std::string expected =
      "expected a rate per direction such as 100mbit, 1gbit, 2.5gbit, 500kbit (1000-based, as tc counts) or unlimited";
  const std::string t = trim(text);
  if (t == "unlimited") return 0;
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(t, &pos);
  } catch (const std::exception&) {
    throw PlanError("[plan] --link '" + text + "': " + expected);
  }
  std::string unit = t.substr(pos);
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  double scale = 0;
  if (unit == "kbit") scale = 1e3;
  if (unit == "mbit") scale = 1e6;
  if (unit == "gbit") scale = 1e9;
  if (scale == 0 || !(value > 0) || !std::isfinite(value)) {
    throw PlanError("[plan] --link '" + text + "': " + expected);
  }
  return value * scale;
}

std::pair<int64_t, int64_t> parse_host_range(const std::string& text) {
  const std::string expected = "expected a host count N or a range a..b (1 <= a <= b <= 64), e.g. --hosts 3 or --hosts 1..6";
  const std::string t = trim(text);
  auto number = [&](const std::string& s) -> int64_t {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 3) {
      throw PlanError("[plan] --hosts '" + text + "': " + expected);
    }
    return std::stoll(s);
  };
  int64_t a, b;
  const size_t dots = t.find("..");
  if (dots == std::string::npos) {
    a = b = number(t);
  } else {
    a = number(t.substr(0, dots));
    b = number(t.substr(dots + 2));
  }
  if (a < 1 || b < a || b > 64) throw PlanError("[plan] --hosts '" + text + "': " + expected);
  return {a, b};
}

std::vector<Host> parse_hostfile(const std::string& path) {
  const std::string expected =
      "expected one host per line: 'NAME slots=N', optionally followed by '# arceus: speed=F' (F > 0, relative to "
      "this machine)";
  std::ifstream in(path);
  if (!in) throw PlanError("[plan] --hostfile '" + path + "': cannot open it");
  std::vector<Host> hosts;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = "[plan] --hostfile '" + path + "' line " + std::to_string(lineno) + ": ";
    std::string comment;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) {
      comment = trim(line.substr(hash + 1));
      line = line.substr(0, hash);
    }
    std::istringstream words(line);
    std::string name, word;
    if (!(words >> name)) continue;  // blank or comment-only
    Host h;
    h.name = name;
    while (words >> word) {
      const size_t eq = word.find('=');
      const std::string key = word.substr(0, eq), value = eq == std::string::npos ? "" : word.substr(eq + 1);
      if (key == "slots" || key == "max_slots" || key == "max-slots") {
        if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos || std::stoll(value) < 1) {
          throw PlanError(where + "'" + word + "': " + expected);
        }
        if (key == "slots") h.slots = std::stoll(value);
      } else {
        throw PlanError(where + "unknown token '" + word + "': " + expected);
      }
    }
    if (comment.rfind("arceus:", 0) == 0) {
      std::istringstream tokens(comment.substr(7));
      while (tokens >> word) {
        if (word.rfind("speed=", 0) != 0) throw PlanError(where + "'" + word + "' in the arceus comment: " + expected);
        size_t pos = 0;
        double v = 0;
        try {
          v = std::stod(word.substr(6), &pos);
        } catch (const std::exception&) {
          pos = 0;
        }
        if (pos == 0 || pos != word.size() - 6 || !(v > 0) || !std::isfinite(v)) {
          throw PlanError(where + "'" + word + "': " + expected);
        }
        h.speed = v;
      }
    }
    hosts.push_back(h);
  }
  if (hosts.empty()) throw PlanError("[plan] --hostfile '" + path + "' names no host: " + expected);
  return hosts;
}

std::string bits_accuracy_cost(int bits, bool transformer) {
  if (bits >= 8) return "";
  if (transformer) {
    return "4 bits: validation loss +0.031 nats after 50 steps (char GPT, 2.9208 vs 2.8894 at 32 bits; 8 bits "
           "2.8879); use 8 bits for transformers";
  }
  return "4 bits: validation accuracy 82.40% vs 82.50% at 32 bits, loss 0.4946 vs 0.4913 after 60 steps "
         "([784,4096,10], bench/cluster.py --suite bits)";
}

std::string gradient_bits_accuracy_cost(int gradient_bits) {
  if (gradient_bits >= 32) return "";
  const char* measured = gradient_bits == 16 ? "6.9e-5" : (gradient_bits == 8 ? "2.0e-4" : "2.9e-3");
  return std::to_string(gradient_bits) +
         "-bit gradient sums (a ring with error feedback): not the 32-bit sums; after 6 steps the largest parameter "
         "difference from 32 bits was " + measured +
         " (test MLP, 3 replicas, tests/test_replicas.cpp CompressedSync; 16 bits 6.9e-5, 8 bits 2.0e-4, 4 bits "
         "2.9e-3); the default job on 2 replicas after 5 epochs: 87.18% validation accuracy at 8 bits, 87.08% at 32";
}

std::string diloco_accuracy_cost(int64_t inner_steps) {
  return "DiLoCo (training.sync diloco, diloco.inner_steps " + std::to_string(inner_steps) +
         "): each replica trains alone between averages, not the synchronous mathematics; the default job on 2 "
         "replicas after 5 epochs: 87.19% validation accuracy at H=50 (8-bit pseudo-gradients), 87.11% at H=50 "
         "(4-bit), 87.49% at H=20 (8-bit), against 87.10% summing every step (docs/replicas.md)";
}

std::string partition_text(const Candidate& c) {
  std::string out;
  for (int64_t s = 0; s < c.stages; ++s) {
    if (s) out += "|";
    bool first = true;
    for (int64_t k = s; k < int64_t(c.chunks.size()); k += c.stages) {
      const LayerRange& r = c.chunks[size_t(k)];
      out += (first ? "" : ",") + std::to_string(r.first) + (r.count > 1 ? "-" + std::to_string(r.end() - 1) : "");
      first = false;
    }
  }
  return out;
}

std::string partition_layers_value(const Candidate& c) {
  std::string out = "[";
  for (size_t k = 0; k < c.chunks.size(); ++k) {
    out += k ? ",[" : "[";
    for (int64_t l = c.chunks[k].first; l < c.chunks[k].end(); ++l) {
      out += (l > c.chunks[k].first ? "," : "") + std::to_string(l);
    }
    out += "]";
  }
  return out + "]";
}

std::vector<LayerRange> flop_balanced(const ModelSpec& model, int64_t stages, int64_t v, int bits) {
  const auto it = model.flop_costs.find(bits);
  if (it == model.flop_costs.end()) throw PlanError("[plan] no partition cost model at " + std::to_string(bits) + " bits");
  return balanced_chunk_partition(it->second, stages, v);
}

std::vector<LayerRange> time_balanced(const ModelSpec& model, const Calibration& cal, int64_t stages,
                                      int64_t micro_batches, int64_t rows) {
  std::vector<double> costs;
  const auto sizes = micro_batch_sizes(rows > 0 ? rows : model.batch, micro_batches);
  for (const LayerSpec& l : model.layers) {
    double s = 0;
    for (int64_t n : sizes) s += layer_seconds(cal, l.key, 'F', n) + layer_seconds(cal, l.key, 'B', n);
    costs.push_back(s);
  }
  return balanced_partition(costs, stages);
}

std::map<std::string, std::vector<int64_t>> needed_rows(const ModelSpec& model, const SearchSpace& space,
                                                        int64_t given_micro_batches, int64_t max_replicas) {
  std::set<int64_t> rows;
  std::vector<int64_t> ms = space.micro_batches;
  ms.push_back(given_micro_batches);
  std::set<int64_t> shares{model.batch};
  for (int64_t r = 2; r <= std::min(max_replicas, model.batch); ++r) {
    if (!space.replicas.empty() && std::find(space.replicas.begin(), space.replicas.end(), r) == space.replicas.end()) {
      continue;
    }
    for (int64_t n : replica_shares(model.batch, r)) shares.insert(n);
  }
  for (int64_t share : shares) {
    for (int64_t m : ms) {
      if (m < 1) continue;
      for (int64_t n : micro_batch_sizes(share, m)) rows.insert(n);
    }
  }
  std::map<std::string, std::vector<int64_t>> out;
  for (const LayerSpec& l : model.layers) out[l.key] = std::vector<int64_t>(rows.begin(), rows.end());
  return out;
}

namespace {

// One replica's costs of a step: its micro-batches `sizes` (its share of the batch), its stage s
// on host first_host + s.
struct ReplicaCosts {
  StepCosts sc;
  std::vector<int64_t> params;      // per stage
  std::vector<double> buffers;      // per stage: the receives posted for the whole batch
  std::vector<double> feed_encode;  // per micro-batch: rank 0's encoding of its inputs (host 1's CPU)
};

ReplicaCosts replica_costs(const ModelSpec& model, const Calibration& cal, const ClusterSpec& cluster,
                           const Candidate& cand, const std::vector<int64_t>& sizes, int64_t first_host) {
  const int64_t S = cand.stages, C = S * cand.chunks_per_rank, M = int64_t(sizes.size());
  const int bits = cand.bits;
  const double seq = double(model.seq);
  ReplicaCosts out;
  StepCosts& sc = out.sc;
  auto grid = [&](int64_t n) { return std::vector<std::vector<double>>(size_t(n), std::vector<double>(size_t(M), 0)); };
  sc.f = sc.b = sc.i = sc.w = sc.held_bytes = grid(C);
  sc.act_bytes = sc.grad_bytes = sc.act_encode = sc.act_decode = sc.grad_encode = sc.grad_decode = grid(std::max<int64_t>(C - 1, 1));
  out.params.assign(size_t(S), 0);
  out.buffers.assign(size_t(S), 0);
  out.feed_encode.assign(size_t(M), 0);
  auto speed_of = [&](int64_t stage) { return cluster.hosts[size_t(first_host + stage)].speed; };
  for (int64_t c = 0; c < C; ++c) {
    const int64_t r = c % S;
    const double speed = speed_of(r);
    const LayerRange& range = cand.chunks[size_t(c)];
    for (int64_t l = range.first; l < range.end(); ++l) out.params[size_t(r)] += model.layers[size_t(l)].parameters;
    for (int64_t m = 0; m < M; ++m) {
      const int64_t n = sizes[size_t(m)];
      for (int64_t l = range.first; l < range.end(); ++l) {
        const LayerSpec& L = model.layers[size_t(l)];
        sc.f[size_t(c)][size_t(m)] += layer_seconds(cal, L.key, 'F', n) / speed;
        sc.b[size_t(c)][size_t(m)] += layer_seconds(cal, L.key, 'B', n) / speed;
        sc.i[size_t(c)][size_t(m)] += layer_seconds(cal, L.key, 'I', n) / speed;
        sc.w[size_t(c)][size_t(m)] += layer_seconds(cal, L.key, 'W', n) / speed;
        sc.held_bytes[size_t(c)][size_t(m)] += L.activation_bytes * double(n);
      }
      if (c == 0 && !cand.in_process && !model.transformer && !model.feed_local) {
        // inputs: rank 0 encodes them on host 1's CPU, the first stage decodes
        const double bytes = 4.0 * double(n) * double(model.in_width);
        if (first_host == 0) {
          sc.f[0][size_t(m)] += codec_seconds(cal, bits, bytes, true, false) + codec_seconds(cal, bits, bytes, false, false);
        } else {
          out.feed_encode[size_t(m)] = codec_seconds(cal, bits, bytes, true, false) / cluster.hosts[0].speed;
          sc.f[0][size_t(m)] += codec_seconds(cal, bits, bytes, false, false) / speed;
        }
        out.buffers[0] += wire_bytes(n, model.in_width, bits);
      }
      if (c + 1 < C && !cand.in_process) {
        const int64_t w = model.layers[size_t(range.end() - 1)].out_width;
        const double floats = 4.0 * double(n) * seq * double(w);
        const double wire = wire_bytes(n * model.seq, w, bits);
        sc.act_bytes[size_t(c)][size_t(m)] = sc.grad_bytes[size_t(c)][size_t(m)] = wire;
        const double s_send = speed_of(r), s_recv = speed_of((c + 1) % S);
        sc.act_encode[size_t(c)][size_t(m)] = codec_seconds(cal, bits, floats, true, false) / s_send;
        sc.act_decode[size_t(c)][size_t(m)] = codec_seconds(cal, bits, floats, false, false) / s_recv;
        sc.grad_encode[size_t(c)][size_t(m)] =
            codec_seconds(cal, bits, floats, true, model.stochastic_rounding && bits < 32) / s_recv;
        sc.grad_decode[size_t(c)][size_t(m)] = codec_seconds(cal, bits, floats, false, false) / s_send;
        if ((c + 1) % S != r) {  // receives posted for the whole batch
          out.buffers[size_t(r)] += wire;
          out.buffers[size_t((c + 1) % S)] += wire;
        }
      }
    }
  }
  if (!cand.in_process) {
    for (int64_t n : sizes) {
      sc.label_bytes.push_back(kHeader + 4.0 * double(n) * seq);
      // a GPT's inputs are token ids, raw int32 (never quantized)
      // (with feed local the rows' indices, int32: the stages read their own copy)
      sc.input_bytes.push_back(model.transformer  ? kHeader + 4.0 * double(n) * double(model.in_width)
                               : model.feed_local ? kHeader + 4.0 * double(n)
                                                  : wire_bytes(n, model.in_width, bits));
    }
  }
  for (int64_t r = 0; r < S; ++r) {
    sc.optimizer_s.push_back(double(out.params[size_t(r)]) * optimizer_seconds_per_param(model, cal) / speed_of(r));
  }
  sc.clip_round_trip = model.grad_clip && !cand.in_process;
  return out;
}

// Worker rank k's buckets of its stage's gradient sum (k = r*S + s): the stage's parameter
// tensors in the order the backward finishes them (its chunks from the last, each chunk's layers
// from the last), cut as the runtime cuts them (ranks/sync_buckets.h). A bucket is full, in each
// chunk it spans, when the backward has got through the layer of its last tensor there (that
// fraction of the chunk's calibrated backward at `rows`). Its ring: 2(R-1) hops of one slice
// (32 bits: MPI's allreduce, counted as a ring of bucket/R floats, no codec; 16/8/4 bits: the
// padded slice encoded, each hop's codec as grad_sync.cpp runs it).
std::vector<std::vector<SyncBucket>> sync_costs(const ModelSpec& model, const Calibration& cal,
                                                const ClusterSpec& cluster, const Candidate& cand, int64_t rows,
                                                std::vector<double>& memory) {
  const int64_t R = cand.replicas, S = cand.stages, C = S * cand.chunks_per_rank;
  const int gb = cand.gradient_bits;
  const char kind = find_schedule(cand.schedule).split_backward ? 'W' : 'B';
  std::vector<std::vector<SyncBucket>> out(size_t(R * S));
  for (int64_t s = 0; s < S; ++s) {
    std::vector<int64_t> floats, chunk_of;
    std::vector<double> fraction_of;
    for (int64_t c = C - S + s; c >= 0; c -= S) {
      const LayerRange& range = cand.chunks[size_t(c)];
      double total = 0, done = 0;
      for (int64_t l = range.first; l < range.end(); ++l) total += layer_seconds(cal, model.layers[size_t(l)].key, kind, rows);
      for (int64_t l = range.end() - 1; l >= range.first; --l) {
        const LayerSpec& L = model.layers[size_t(l)];
        done += layer_seconds(cal, L.key, kind, rows);
        const std::vector<int64_t> tensors = L.tensors.empty() ? std::vector<int64_t>{L.parameters} : L.tensors;
        for (auto t = tensors.rbegin(); t != tensors.rend(); ++t) {
          floats.push_back(*t);
          chunk_of.push_back(c);
          fraction_of.push_back(total > 0 ? done / total : 1.0);
        }
      }
    }
    const std::vector<size_t> bucket_of = sync_bucket_of(floats);
    const size_t buckets = bucket_of.empty() ? 0 : bucket_of.back() + 1;
    std::vector<int64_t> size(buckets, 0);
    std::vector<std::map<int64_t, double>> fills(buckets);
    for (size_t t = 0; t < floats.size(); ++t) {
      size[bucket_of[t]] += floats[t];
      double& f = fills[bucket_of[t]][chunk_of[t]];
      f = std::max(f, fraction_of[t]);
    }
    for (int64_t r = 0; r < R; ++r) {
      const int64_t k = r * S + s;
      const double speed = cluster.hosts[size_t(k)].speed;
      for (size_t b = 0; b < buckets; ++b) {
        SyncBucket sb;
        for (const auto& [c, f] : fills[b]) sb.fills.push_back({c, f});
        sb.send_s.assign(size_t(2 * (R - 1)), 0.0);
        const int64_t padded = sync_padded_floats(size[b], R), slice = padded / R;
        if (gb == 32) {
          sb.hop_bytes = 4.0 * double(size[b]) / double(R);
          memory[size_t(k)] += 8.0 * double(size[b]);  // the bucket and MPI's copy of it
        } else {
          sb.hop_bytes = wire_bytes(slice / kSyncRow, kSyncRow, gb);
          const double enc = codec_seconds(cal, gb, 4.0 * double(slice), true, false) / speed;
          const double dec = codec_seconds(cal, gb, 4.0 * double(slice), false, false) / speed;
          for (int64_t h = 0; h < 2 * (R - 1); ++h) {
            // reduce-scatter hops encode (and decode, for the error feedback); the first
            // all-gather hop encodes the finished slice and decodes it here too; the others forward
            sb.send_s[size_t(h)] = h < R - 1 ? enc + dec : (h == R - 1 ? enc + 2 * dec : 0.0);
          }
          sb.receive_s = dec;
          memory[size_t(k)] += 8.0 * double(padded);  // the bucket and its error-feedback residual
        }
        out[size_t(k)].push_back(sb);
      }
    }
  }
  return out;
}

}  // namespace

Prediction predict(const ModelSpec& model, const Calibration& cal, const ClusterSpec& cluster, const Candidate& cand) {
  Prediction out;
  const int64_t R = cand.replicas, S = cand.stages, v = cand.chunks_per_rank;
  if (S < 1 || v < 1 || int64_t(cand.chunks.size()) != S * v) {
    out.error = "the partition has " + std::to_string(cand.chunks.size()) + " chunks for " + std::to_string(S) +
                " stages x " + std::to_string(v);
    return out;
  }
  if (R < 1) {
    out.error = std::to_string(R) + " replicas (expected 1 or more)";
    return out;
  }
  if (R == 1 && S > int64_t(cluster.hosts.size())) {
    out.error = std::to_string(S) + " stages need " + std::to_string(S) + " hosts, the cluster has " +
                std::to_string(cluster.hosts.size());
    return out;
  }
  if (cand.diloco_inner_steps < 0 || (cand.diloco_inner_steps > 0 && R < 2)) {
    out.error = "diloco.inner_steps " + std::to_string(cand.diloco_inner_steps) + " with " + std::to_string(R) +
                " replica(s) (DiLoCo needs 2 or more replicas and H >= 1)";
    return out;
  }
  if (R > 1) {
    std::string why;
    if (R * S > int64_t(cluster.hosts.size())) {
      why = std::to_string(R) + " replicas x " + std::to_string(S) + (S == 1 ? " stage" : " stages") + " need " +
            std::to_string(R * S) + " hosts (one worker per host), the cluster has " +
            std::to_string(cluster.hosts.size());
    } else if (cand.in_process) {
      why = "replicas need mpirun (one process holds one replica)";
    } else if (R > model.batch) {
      why = std::to_string(R) + " replicas but batch_size " + std::to_string(model.batch) + " (a replica without rows)";
    } else if (cand.gradient_bits != 32 && cand.gradient_bits != 16 && cand.gradient_bits != 8 && cand.gradient_bits != 4) {
      why = "gradient_bits " + std::to_string(cand.gradient_bits) + " (expected 32, 16, 8 or 4)";
    }
    if (!why.empty()) {
      out.error = why;
      return out;
    }
  }
  if (!cand.pipeline_flush) {
    std::string why;
    const ScheduleInfo* info = registered(cand.schedule);
    if (R > 1) why = "replicas (their sums end each step)";
    else if (cand.in_process) why = "one process";
    else if (v > 1) why = "several chunks per rank";
    else if (!info || !info->stream_warmup) why = "schedule " + cand.schedule + " (1f1b or eager1f1b only)";
    else if (model.grad_clip) why = "gradient clipping (it needs the flush)";
    if (!why.empty()) {
      out.error = "training.pipeline_flush false with " + why;
      return out;
    }
  }
  const std::vector<int64_t> shares = replica_shares(model.batch, R);
  std::vector<PipelineRun> runs(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    const std::vector<int64_t> sizes = micro_batch_sizes(shares[size_t(r)], cand.micro_batches);
    runs[size_t(r)].shape = PipelineShape{S, v, int64_t(sizes.size())};
    if (r > 0 && runs[size_t(r)].shape.micro_batches == runs[size_t(r - 1)].shape.micro_batches) {
      runs[size_t(r)].programs = runs[size_t(r - 1)].programs;  // the same shape: the same (validated) lists
      continue;
    }
    try {
      if (!cand.pipeline_flush) {  // kStreamSteps steps as one stream (below: their costs tiled)
        const std::vector<int64_t> steps(size_t(kStreamSteps), int64_t(sizes.size()));
        runs[size_t(r)].programs = stream_programs(cand.schedule, S, steps);
        runs[size_t(r)].shape.micro_batches *= kStreamSteps;
      } else {
        runs[size_t(r)].programs = training_programs(cand.schedule, runs[size_t(r)].shape);
      }
    } catch (const std::exception& e) {
      out.error = e.what();
      return out;
    }
  }
  LinkModel links;
  links.hosts = int64_t(cluster.hosts.size());
  links.bits_per_second = cluster.link_bits_per_second;
  links.latency_s = cal.latency_s;
  for (int64_t k = 0; k < R * S; ++k) links.host_of_rank.push_back(k);
  std::vector<ReplicaCosts> costs;
  std::vector<double> sync_memory(size_t(R * S), 0);
  std::vector<std::vector<SyncBucket>> sync;
  try {
    for (int64_t r = 0; r < R; ++r) {
      costs.push_back(replica_costs(model, cal, cluster, cand,
                                    micro_batch_sizes(shares[size_t(r)], cand.micro_batches), r * S));
    }
    // rank 0 encodes every replica's inputs on host 1's CPU (replica 0's first stage's)
    for (int64_t r = 1; r < R; ++r) {
      auto& f0 = costs[0].sc.f[0];
      for (size_t m = 0; m < costs[size_t(r)].feed_encode.size(); ++m) {
        f0[std::min(m, f0.size() - 1)] += costs[size_t(r)].feed_encode[m];
      }
    }
    if (R > 1) {
      const int64_t last_rows = micro_batch_sizes(shares[0], cand.micro_batches).back();
      sync = sync_costs(model, cal, cluster, cand, last_rows, sync_memory);
    }
  } catch (const std::exception& e) {
    out.error = e.what();
    return out;
  }
  for (int64_t r = 0; r < R; ++r) runs[size_t(r)].costs = costs[size_t(r)].sc;
  // Without the flush one simulated "step" is kStreamSteps steps of the stream: every
  // micro-batch's costs repeated, and a stage's update before each later step's first forward
  // (the last one after its last action, as the simulation adds it).
  const double stream = cand.pipeline_flush ? 1.0 : double(kStreamSteps);
  if (!cand.pipeline_flush) {
    StepCosts& sc = runs[0].costs;
    const size_t m = sc.label_bytes.size();
    auto tile = [&](std::vector<double>& per_mb) {
      const std::vector<double> one = per_mb;
      for (int64_t k = 1; k < kStreamSteps; ++k) per_mb.insert(per_mb.end(), one.begin(), one.end());
    };
    for (auto* table : {&sc.f, &sc.b, &sc.i, &sc.w, &sc.act_bytes, &sc.grad_bytes, &sc.act_encode, &sc.act_decode,
                        &sc.grad_encode, &sc.grad_decode, &sc.held_bytes}) {
      for (auto& per_mb : *table) tile(per_mb);
    }
    tile(sc.label_bytes);
    tile(sc.input_bytes);
    for (size_t c = 0; c < sc.f.size(); ++c) {
      for (int64_t k = 1; k < kStreamSteps; ++k) sc.f[c][size_t(k) * m] += sc.optimizer_s[c];
    }
  }
  // DiLoCo: an inner step exchanges nothing between replicas; a round of H of them ends with
  // one sum of every parameter (the same buckets, started once the whole backward is done, as
  // the runtime starts them after the last inner step) and the outer step. The exchange costs
  // what the step with those sums takes beyond the step without them.
  const int64_t H = cand.diloco_inner_steps;
  const LinkSimulation sim = simulate_links(runs, H > 0 ? std::vector<std::vector<SyncBucket>>{} : sync, links);
  if (!sim.ok) {
    out.error = sim.error;
    return out;
  }
  auto link_busiest = [](const LinkSimulation& s) {
    double m = 0;
    for (size_t h = 0; h < s.up_busy.size(); ++h) m = std::max({m, s.up_busy[h], s.down_busy[h]});
    return m;
  };
  double round_extra = 0, round_link_extra = 0;  // DiLoCo: seconds and busiest-link seconds per round
  LinkSimulation with_sums;
  if (H > 0) {
    for (auto& rank : sync) {
      for (SyncBucket& b : rank) {
        for (auto& fill : b.fills) fill.second = 1.0;
      }
    }
    with_sums = simulate_links(runs, sync, links);
    if (!with_sums.ok) {
      out.error = with_sums.error;
      return out;
    }
    double outer = 0;  // the outer Nesterov step: an optimizer step's work over the same parameters
    for (int64_t k = 0; k < R * S; ++k) outer = std::max(outer, costs[size_t(k / S)].sc.optimizer_s[size_t(k % S)]);
    round_extra = std::max(0.0, with_sums.step_seconds - sim.step_seconds) + outer;
    round_link_extra = std::max(0.0, link_busiest(with_sums) - link_busiest(sim));
  }
  const int64_t K = R * S;
  const double steps = H > 0 ? double(H) : 1.0;
  out.ok = true;
  out.step_seconds = sim.step_seconds / stream + round_extra / steps;
  out.rate = double(model.batch) * model.units_per_sample() / out.step_seconds;
  out.stage_busy = sim.busy;  // compute and codec, then the optimizer step: the rank's work
  for (int64_t k = 0; k < K; ++k) {
    out.stage_busy[size_t(k)] = (out.stage_busy[size_t(k)] + costs[size_t(k / S)].sc.optimizer_s[size_t(k % S)]) / stream;
  }
  double busy_sum = 0;
  for (double b : out.stage_busy) busy_sum += b;
  out.bubble = std::max(0.0, 1.0 - busy_sum / double(K) / out.step_seconds);
  const double link_max = link_busiest(sim) / stream + round_link_extra / steps;
  out.link_utilisation = link_max / out.step_seconds;
  if (sim.pair_from >= 0) {
    out.busiest_link = "host " + std::to_string(sim.pair_from + 1) + " -> host " + std::to_string(sim.pair_to + 1);
  }
  const size_t busiest =
      size_t(std::max_element(out.stage_busy.begin(), out.stage_busy.end()) - out.stage_busy.begin());
  const double compute_max = out.stage_busy[busiest];
  if (link_max > compute_max && sim.pair_from >= 0) {
    out.bound = "link (" + out.busiest_link + ")";
  } else if (R == 1) {
    out.bound = "compute (stage " + std::to_string(busiest + 1) + ")";
  } else {
    out.bound = "compute (stage " + std::to_string(int64_t(busiest) % S + 1) + " of replica " +
                std::to_string(int64_t(busiest) / S) + ")";
  }
  out.host_memory.assign(cluster.hosts.size(), 0);
  for (int64_t k = 0; k < K; ++k) {
    const ReplicaCosts& rc = costs[size_t(k / S)];
    out.host_memory[size_t(k)] += double(rc.params[size_t(k % S)]) * state_bytes_per_param(model) +
                                  sim.peak_held_bytes[size_t(k)] + rc.buffers[size_t(k % S)];
    if (R > 1) out.host_memory[size_t(k)] += sync_memory[size_t(k)];
    // No flush: the second weight version with its gradients, and the optimizer's own copy
    if (!cand.pipeline_flush) out.host_memory[size_t(k)] += 12.0 * double(rc.params[size_t(k % S)]);
    // DiLoCo: the round's starting parameters and the outer momentum
    if (H > 0) out.host_memory[size_t(k)] += 8.0 * double(rc.params[size_t(k % S)]);
  }
  if (H > 0) {
    for (double b : with_sums.sync_bytes_out) out.sync_bytes_out.push_back(b / steps);
    out.sync_seconds = round_extra / steps;
    const double share = out.sync_seconds / out.step_seconds;
    if (share >= 0.1) out.bound += " + outer " + std::to_string(int(std::lround(100 * share))) + "%";
  } else if (R > 1) {
    out.sync_bytes_out = sim.sync_bytes_out;
    double wait = 0;
    for (double w : sim.sync_wait) wait += w;
    out.sync_seconds = wait / double(K);
    // Compute that waits for the sums after its backward is bound by both: say how much.
    const double share = out.sync_seconds / sim.step_seconds;
    if (out.bound.rfind("compute", 0) == 0 && share >= 0.1) {
      out.bound += " + sums " + std::to_string(int(std::lround(100 * share))) + "%";
    }
  }
  return out;
}

std::string no_flush_accuracy_cost() {
  return "no flush (training.pipeline_flush false): each update one step late (PipeDream-2BW); [784,4096,10] on "
         "Fashion-MNIST after the same 120 steps, SGD momentum 0.9: 81.10% validation accuracy against 84.75% with "
         "the flush at lr 0.02, 83.90% against 83.70% at lr 0.01 (docs/performance.md)";
}

std::vector<Ranked> search(const ModelSpec& model, const Calibration& cal, const ClusterSpec& cluster,
                           const SearchSpace& space) {
  std::vector<Ranked> out;
  const int64_t layers = int64_t(model.layers.size());
  const int64_t H = int64_t(cluster.hosts.size());
  std::vector<int64_t> replica_counts = space.replicas;
  if (replica_counts.empty()) {
    for (int64_t r = 1; r <= H; ++r) replica_counts.push_back(r);
  }
  auto add = [&](const Candidate& c) {
    Prediction p = predict(model, cal, cluster, c);
    if (p.ok) out.push_back({c, std::move(p)});
  };
  for (const int64_t R : replica_counts) {
    if (R < 1 || R > H || R > model.batch) continue;
    int64_t max_stages = std::min<int64_t>(H / R, layers);
    if (space.max_stages > 0) max_stages = std::min(max_stages, space.max_stages);
    const int64_t share = replica_shares(model.batch, R).front();  // the largest
    std::vector<int64_t> ms;
    for (int64_t m : space.micro_batches) {
      if (m >= 1 && m <= share) ms.push_back(m);
    }
    // (H, bits) of the replicas' sums: every step (H = 0), then DiLoCo's rounds
    std::vector<std::pair<int64_t, int>> syncs{{0, 32}};
    if (R > 1) {
      syncs.clear();
      for (int gb : space.gradient_bits) syncs.push_back({0, gb});
      for (int64_t h : space.diloco_inner_steps) {
        if (h < 1) continue;
        for (int gb : space.gradient_bits) syncs.push_back({h, gb});
      }
    }
    if (R == 1) {
      // One stage: the single process (no mpirun), every layer in one chunk, nothing on a link.
      for (int64_t m : ms) {
        Candidate c;
        c.stages = 1;
        c.micro_batches = m;
        c.schedule = schedules().front().name;  // one stage: the reference run's program F0 B0 F1 B1 ...
        c.bits = 32;
        c.chunks = {LayerRange{0, layers}};
        c.partition = "whole";
        c.in_process = true;
        add(c);
      }
    } else {
      // R replicas of one stage: the schedule only orders one rank's actions (and the
      // activation bits only encode a MLP's inputs, which feed local does not send); the schedules no faster than another with
      // no less memory are left out.
      std::vector<int> bits_at_one_stage = space.bits;
      if ((model.transformer || model.feed_local) && !bits_at_one_stage.empty()) {  // no activations travel
        bits_at_one_stage = {*std::max_element(space.bits.begin(), space.bits.end())};
      }
      for (int64_t m : ms) {
        for (int bits : bits_at_one_stage) {
          for (const auto& [h, gb] : syncs) {
            std::vector<Ranked> options;
            for (const std::string& name : space.schedules) {
              const ScheduleInfo* info = registered(name);
              if (!info || info->multi_chunk) continue;
              Candidate c;
              c.replicas = R;
              c.stages = 1;
              c.micro_batches = m;
              c.schedule = name;
              c.bits = bits;
              c.gradient_bits = gb;
              c.diloco_inner_steps = h;
              c.chunks = {LayerRange{0, layers}};
              c.partition = "whole";
              Prediction p = predict(model, cal, cluster, c);
              if (p.ok) options.push_back({c, std::move(p)});
            }
            auto memory = [](const Prediction& p) { return *std::max_element(p.host_memory.begin(), p.host_memory.end()); };
            std::vector<bool> dominated(options.size(), false);
            for (size_t a = 0; a < options.size(); ++a) {
              for (size_t b = 0; b < options.size() && !dominated[a]; ++b) {
                if (b == a) continue;
                const Prediction &pa = options[a].prediction, &pb = options[b].prediction;
                dominated[a] = pb.rate >= pa.rate && memory(pb) <= memory(pa) &&
                               (pb.rate > pa.rate || memory(pb) < memory(pa) || b < a);
              }
            }
            for (size_t a = 0; a < options.size(); ++a) {
              if (!dominated[a]) out.push_back(std::move(options[a]));
            }
          }
        }
      }
    }
    for (int64_t S = 2; S <= max_stages; ++S) {
      for (int64_t v : space.chunks_per_rank) {
        if (v < 1 || S * v > layers) continue;
        for (const std::string& name : space.schedules) {
          const ScheduleInfo* info = registered(name);
          if (!info || (v > 1) != info->multi_chunk) continue;  // multi-chunk schedules only with v > 1
          for (int64_t m : ms) {
            for (int bits : space.bits) {
              std::vector<std::pair<std::string, std::vector<LayerRange>>> parts;
              parts.push_back({"balanced", flop_balanced(model, S, v, bits)});
              if (v == 1) parts.push_back({"timed", time_balanced(model, cal, S, m, share)});
              parts.push_back({"uniform", uniform_partition(layers, S * v)});
              std::vector<std::vector<LayerRange>> seen;
              for (auto& [label, chunks] : parts) {
                if (std::find(seen.begin(), seen.end(), chunks) != seen.end()) continue;
                seen.push_back(chunks);
                for (const auto& [h, gb] : syncs) {
                  Candidate c;
                  c.replicas = R;
                  c.stages = S;
                  c.chunks_per_rank = v;
                  c.micro_batches = m;
                  c.schedule = name;
                  c.bits = bits;
                  c.gradient_bits = gb;
                  c.diloco_inner_steps = h;
                  c.chunks = chunks;
                  c.partition = label;
                  add(c);
                  if (space.no_flush && R == 1 && v == 1 && info->stream_warmup && !model.grad_clip) {
                    c.pipeline_flush = false;
                    add(c);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Ranked& a, const Ranked& b) { return a.prediction.rate > b.prediction.rate; });
  // Within 0.5% of the fastest (below what the model can tell apart), the safer configuration
  // goes first: fewer hosts, fewer stages, sums every step, the flush, more bits, more gradient bits,
  // fewer micro-batches.
  if (!out.empty()) {
    const double top = out.front().prediction.rate;
    size_t best = 0;
    auto key = [&](size_t k) {
      const Candidate& c = out[k].candidate;
      return std::make_tuple(c.replicas * c.stages, c.stages, c.diloco_inner_steps > 0, !c.pipeline_flush, -c.bits,
                             -c.gradient_bits, c.micro_batches);
    };
    for (size_t k = 1; k < out.size() && out[k].prediction.rate >= 0.995 * top; ++k) {
      if (key(k) < key(best)) best = k;
    }
    std::rotate(out.begin(), out.begin() + std::ptrdiff_t(best), out.begin() + std::ptrdiff_t(best) + 1);
  }
  return out;
}

}  // namespace arceus::plan
