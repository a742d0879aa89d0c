// arceus plan's model and search (planner/), on a fixed synthetic calibration so that every
// figure is deterministic. Torch-free.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>

#include "planner/planner.h"
#include "planner/simulate_links.h"
#include "ranks/schedule/registry.h"
#include "ranks/codec.h"
#include "ranks/schedule/simulate.h"
#include "ranks/steps.h"
#include "ranks/sync_buckets.h"

namespace arceus::plan {
namespace {

// A layer whose every action costs `ms_per_row` ms per row (F 1x, B 2x, I 1x, W 1x).
LayerTiming linear_timing(double ms_per_row) {
  LayerTiming t;
  for (int64_t n : {1, 4096}) {
    t.rows.push_back(n);
    const double f = 1e-3 * ms_per_row * double(n);
    t.f.push_back(f);
    t.b.push_back(2 * f);
    t.i.push_back(f);
    t.w.push_back(f);
  }
  return t;
}

Calibration synthetic_calibration() {
  Calibration cal;
  cal.cpu = "test";
  cal.blas = "test";
  cal.layers["heavy"] = linear_timing(0.02);
  cal.layers["light"] = linear_timing(0.0005);
  for (int bits : {32, 16, 8, 4}) {
    cal.encode_s_per_mib[bits] = 40e-6;
    cal.encode_stochastic_s_per_mib[bits] = 120e-6;
    cal.decode_s_per_mib[bits] = 20e-6;
  }
  cal.latency_s = 40e-6;
  cal.sgd_s_per_param = 1e-9;
  cal.adamw_s_per_param = 4e-9;
  return cal;
}

// `layers` layers of `key`, each sending `width` floats per row onward.
ModelSpec model_of(int64_t layers, const std::string& key, int64_t width, int64_t batch) {
  ModelSpec m;
  m.batch = batch;
  m.in_width = width;
  for (int64_t l = 0; l < layers; ++l) {
    LayerSpec s;
    s.key = key;
    s.parameters = width * width;
    s.out_width = width;
    s.activation_bytes = 8.0 * double(width);
    m.layers.push_back(s);
  }
  for (int bits : {32, 16, 8, 4}) m.flop_costs[bits] = std::vector<double>(size_t(layers), 1.0);
  return m;
}

ClusterSpec cluster_of(const std::vector<double>& speeds, const std::string& link) {
  ClusterSpec c;
  for (size_t k = 0; k < speeds.size(); ++k) c.hosts.push_back(Host{"h" + std::to_string(k + 1), speeds[k], 1});
  c.link_bits_per_second = parse_link_rate(link);
  c.link_name = link;
  return c;
}

Candidate pipeline(const ModelSpec& m, int64_t stages, const std::string& schedule, int64_t micro_batches, int bits) {
  Candidate c;
  c.stages = stages;
  c.micro_batches = micro_batches;
  c.schedule = schedule;
  c.bits = bits;
  c.chunks = flop_balanced(m, stages, 1, bits);
  c.partition = "balanced";
  return c;
}

TEST(Planner, OneStageIsTheCalibratedSingleProcessRate) {
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(6, "heavy", 512, 256);
  const ClusterSpec cluster = cluster_of({1.0}, "unlimited");
  Candidate c;
  c.stages = 1;
  c.micro_batches = 4;
  c.chunks = {LayerRange{0, 6}};
  c.in_process = true;
  const Prediction p = predict(m, cal, cluster, c);
  ASSERT_TRUE(p.ok) << p.error;
  // The single process: every layer's forward and backward at each micro-batch size, then the
  // optimizer over every parameter.
  double step = 0;
  for (int64_t n : micro_batch_sizes(256, 4)) {
    for (int l = 0; l < 6; ++l) step += layer_seconds(cal, "heavy", 'F', n) + layer_seconds(cal, "heavy", 'B', n);
  }
  step += 6.0 * 512 * 512 * cal.sgd_s_per_param;
  const double expected = 256.0 / step;
  EXPECT_NEAR(p.rate, expected, 1e-9 * expected) << "predicted " << p.rate << ", calibrated single process " << expected;
  EXPECT_NEAR(p.bubble, 0.0, 1e-9);
  EXPECT_EQ(p.bound, "compute (stage 1)");
}

TEST(Planner, FreeMessagesGiveTheValidatorsMakespan) {
  // No link limit, no latency, no codec: the link simulation is the validator's simulation.
  Calibration cal = synthetic_calibration();
  cal.latency_s = 0;
  for (auto* m : {&cal.encode_s_per_mib, &cal.encode_stochastic_s_per_mib, &cal.decode_s_per_mib}) {
    for (auto& [bits, s] : *m) s = 0;
  }
  cal.sgd_s_per_param = 0;
  const ModelSpec m = model_of(6, "heavy", 1, 64);
  ClusterSpec cluster = cluster_of({1, 1, 1}, "unlimited");
  for (const std::string schedule : {"1f1b", "gpipe", "zb1p", "eager1f1b"}) {
    const Candidate c = pipeline(m, 3, schedule, 4, 32);
    const Prediction p = predict(m, cal, cluster, c);
    ASSERT_TRUE(p.ok) << p.error;
    ActionCosts costs;
    const double f = layer_seconds(cal, "heavy", 'F', 16) * 2;  // two layers per chunk
    costs.forward = f;
    costs.backward = 2 * f;
    costs.input_grad = f;
    costs.weight_grad = f;
    const Simulation s = simulate(training_programs(schedule, {3, 1, 4}), {3, 1, 4}, costs, true);
    ASSERT_TRUE(s.ok);
    // the wire still copies each message at memory speed (1 float per row: negligible)
    EXPECT_NEAR(p.step_seconds, s.makespan, 1e-3 * s.makespan) << schedule;
  }
}

TEST(Planner, AddingAHostNeverPredictsASlowerBest) {
  const Calibration cal = synthetic_calibration();
  const std::vector<double> speeds{1.0, 0.4, 1.0, 0.25, 0.8, 1.0};
  // Every shape R x S and schedule; fewer M and widths than the default space, to keep it quick.
  SearchSpace space;
  space.micro_batches = {1, 4, 16};
  space.bits = {32, 8};
  space.gradient_bits = {32, 8};
  for (const std::string link : {"unlimited", "1gbit", "100mbit"}) {
    for (const int64_t width : {64, 4096}) {
      const ModelSpec m = model_of(8, "heavy", width, 512);
      double previous = 0;
      for (size_t h = 1; h <= speeds.size(); ++h) {
        const ClusterSpec cluster = cluster_of(std::vector<double>(speeds.begin(), speeds.begin() + h), link);
        const auto ranked = search(m, cal, cluster, space);
        ASSERT_FALSE(ranked.empty());
        EXPECT_GE(ranked.front().prediction.rate, previous * (1 - 1e-12))
            << h << " hosts, " << link << ", width " << width << ": " << ranked.front().prediction.rate << " < "
            << previous << " with one host fewer";
        previous = ranked.front().prediction.rate;
      }
    }
  }
}

TEST(Planner, FewerBitsPayOnlyWhenTheLinkIsTheBound) {
  const Calibration cal = synthetic_calibration();
  // Link-bound: one wide boundary, little compute, 100 Mbit/s.
  {
    const ModelSpec m = model_of(2, "light", 4096, 256);
    const ClusterSpec cluster = cluster_of({1, 1}, "100mbit");
    const Prediction p32 = predict(m, cal, cluster, pipeline(m, 2, "eager1f1b", 4, 32));
    const Prediction p8 = predict(m, cal, cluster, pipeline(m, 2, "eager1f1b", 4, 8));
    ASSERT_TRUE(p32.ok && p8.ok);
    EXPECT_EQ(p32.bound.rfind("link", 0), 0u) << p32.bound;
    EXPECT_GT(p8.rate, 2.0 * p32.rate) << "32 bits " << p32.rate << ", 8 bits " << p8.rate;
  }
  // Compute-bound: narrow boundaries, heavy layers, unlimited link.
  {
    const ModelSpec m = model_of(4, "heavy", 256, 256);
    const ClusterSpec cluster = cluster_of({1, 1}, "unlimited");
    const Prediction p32 = predict(m, cal, cluster, pipeline(m, 2, "1f1b", 4, 32));
    const Prediction p8 = predict(m, cal, cluster, pipeline(m, 2, "1f1b", 4, 8));
    ASSERT_TRUE(p32.ok && p8.ok);
    EXPECT_EQ(p32.bound.rfind("compute", 0), 0u) << p32.bound;
    EXPECT_NEAR(p8.rate / p32.rate, 1.0, 0.01) << "32 bits " << p32.rate << ", 8 bits " << p8.rate;
  }
}

TEST(Planner, BadLinkAndHostsNameTheValueAndTheForm) {
  for (const std::string bad : {"fast", "100", "100mb", "-1gbit", ""}) {
    try {
      parse_link_rate(bad);
      FAIL() << "'" << bad << "' accepted";
    } catch (const PlanError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("'" + bad + "'"), std::string::npos) << m;
      for (const char* form : {"100mbit", "1gbit", "unlimited"}) EXPECT_NE(m.find(form), std::string::npos) << m;
    }
  }
  EXPECT_DOUBLE_EQ(parse_link_rate("100mbit"), 1e8);
  EXPECT_DOUBLE_EQ(parse_link_rate("1gbit"), 1e9);
  EXPECT_DOUBLE_EQ(parse_link_rate("2.5gbit"), 2.5e9);
  EXPECT_DOUBLE_EQ(parse_link_rate("unlimited"), 0);
  EXPECT_EQ(parse_host_range("1..6"), (std::pair<int64_t, int64_t>(1, 6)));
  EXPECT_THROW(parse_host_range("6..1"), PlanError);
  EXPECT_THROW(parse_host_range("many"), PlanError);
}

TEST(Planner, BadHostfileNamesTheLineAndTheForm) {
  const std::string path = testing::TempDir() + "/plan_hostfile";
  {
    std::ofstream f(path);
    f << "# a comment\nlaptop-1.local slots=2   # arceus: speed=1.5\n\nlaptop-2.local slots=1\n";
  }
  const auto hosts = parse_hostfile(path);
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0].name, "laptop-1.local");
  EXPECT_EQ(hosts[0].slots, 2);
  EXPECT_DOUBLE_EQ(hosts[0].speed, 1.5);
  EXPECT_DOUBLE_EQ(hosts[1].speed, 1.0);
  for (const std::string bad : {"laptop-1 slots=x\n", "laptop-1 slots=1 # arceus: speed=fast\n", "laptop-1 cores=2\n"}) {
    {
      std::ofstream f(path);
      f << "ok-host slots=1\n" << bad;
    }
    try {
      parse_hostfile(path);
      FAIL() << bad << " accepted";
    } catch (const PlanError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("line 2"), std::string::npos) << m;
      EXPECT_NE(m.find("slots=N"), std::string::npos) << m;
    }
  }
  EXPECT_THROW(parse_hostfile(path + ".missing"), PlanError);
  std::remove(path.c_str());
}

TEST(Planner, PlanSpeedOverTheDefaultSpace) {
  // Reported, not asserted: the default space on 6 hosts for a 13-layer model.
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(13, "heavy", 1024, 2048);
  const ClusterSpec cluster = cluster_of({1, 1, 1, 1, 1, 1}, "1gbit");
  const auto t0 = std::chrono::steady_clock::now();
  const auto ranked = search(m, cal, cluster, SearchSpace{});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(ranked.empty());
  std::printf("[ plan speed ] %zu configurations on 6 hosts in %.3f s (target < 2 s)\n", ranked.size(), s);
  RecordProperty("plan_seconds", std::to_string(s));
}

// --- replicas -------------------------------------------------------------------------------

// R replicas of an S-stage pipeline (flop-balanced), `gradient_bits` for their sums.
Candidate replicated(const ModelSpec& m, int64_t replicas, int64_t stages, const std::string& schedule,
                     int64_t micro_batches, int bits, int gradient_bits) {
  Candidate c = pipeline(m, stages, schedule, micro_batches, bits);
  c.replicas = replicas;
  c.gradient_bits = gradient_bits;
  if (stages == 1) c.partition = "whole";
  return c;
}

TEST(PlannerReplicas, OneReplicaPredictsWhatThePlannerPredictedBeforeReplicas) {
  // Recorded (hexfloat) from the planner before replicas (commit 9449554) for these four
  // pipelines: step seconds, bubble, busiest link's utilisation, peak memory, bound.
  struct Expected {
    double step, bubble, link, memory;
    const char* bound;
  };
  const Expected expected[] = {
      {0x1.2dcd57a90aae3p-4, 0x1.bb836be9d576p-2, 0x1.e95b8984816a3p-6, 0x1.7025p+22, "compute (stage 2)"},
      {0x1.14eadb9c16a34p-1, 0x1.e72d564a90555p-1, 0x1.4a746be6ebf5bp-1, 0x1.200028p+27, "link (host 1 -> host 2)"},
      {0x1.2b0bb4e69275fp-3, 0x1.d0044802eea3ep-2, 0x1.34aae60137546p-2, 0x1.48128p+24, "compute (stage 2)"},
      {0x1.9243ce86c2454p-4, 0x1.b5a0a01516f5p-1, 0x1.6be9ab0fd21e2p-1, 0x1.40014p+26, "link (host 1 -> host 2)"},
  };
  struct Case {
    int64_t layers;
    const char* key;
    int64_t width, batch, stages;
    const char* schedule;
    int64_t micro_batches;
    int bits;
    const char* link;
    bool clip;
  };
  const Case cases[] = {{6, "heavy", 512, 256, 3, "1f1b", 4, 8, "1gbit", false},
                        {2, "light", 4096, 256, 2, "eager1f1b", 4, 32, "100mbit", false},
                        {8, "heavy", 1024, 512, 4, "zb1p", 8, 4, "100mbit", true},
                        {8, "light", 2048, 512, 4, "interleaved", 8, 16, "1gbit", true}};
  const Calibration cal = synthetic_calibration();
  for (size_t k = 0; k < 4; ++k) {
    const Case& c = cases[k];
    ModelSpec m = model_of(c.layers, c.key, c.width, c.batch);
    m.grad_clip = c.clip;
    std::vector<double> speeds(size_t(c.stages), 1.0);
    speeds[1] = 0.5;
    Candidate cand = pipeline(m, c.stages, c.schedule, c.micro_batches, c.bits);
    if (std::string(c.schedule) == "interleaved") {
      cand.chunks_per_rank = 2;
      cand.chunks = flop_balanced(m, c.stages, 2, c.bits);
    }
    const Prediction p = predict(m, cal, cluster_of(speeds, c.link), cand);
    ASSERT_TRUE(p.ok) << p.error;
    double memory = 0;
    for (double b : p.host_memory) memory = std::max(memory, b);
    EXPECT_EQ(p.step_seconds, expected[k].step) << "case " << k;
    EXPECT_EQ(p.bubble, expected[k].bubble) << "case " << k;
    EXPECT_EQ(p.link_utilisation, expected[k].link) << "case " << k;
    EXPECT_EQ(memory, expected[k].memory) << "case " << k;
    EXPECT_EQ(p.bound, expected[k].bound) << "case " << k;
    EXPECT_TRUE(p.sync_bytes_out.empty());
  }
}

TEST(PlannerReplicas, AComputeBoundModelScalesWithReplicasOnAnUnlimitedLink) {
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(4, "heavy", 64, 512);  // heavy layers, few parameters
  Candidate one;
  one.micro_batches = 4;
  one.chunks = {LayerRange{0, 4}};
  one.in_process = true;
  const double alone = predict(m, cal, cluster_of({1.0}, "unlimited"), one).rate;
  for (const int64_t R : {2, 4}) {
    for (const int gb : {32, 8}) {
      const ClusterSpec cluster = cluster_of(std::vector<double>(size_t(R), 1.0), "unlimited");
      const Prediction p = predict(m, cal, cluster, replicated(m, R, 1, "1f1b", 4, 32, gb));
      ASSERT_TRUE(p.ok) << p.error;
      EXPECT_GT(p.rate, 0.9 * double(R) * alone) << R << " replicas, " << gb << "-bit sums: " << p.rate
                                                  << " samples/s, one process " << alone;
      EXPECT_LE(p.rate, double(R) * alone * (1 + 1e-9));
      EXPECT_EQ(p.bound.rfind("compute", 0), 0u) << p.bound;
    }
  }
}

TEST(PlannerReplicas, SyncBytesPerRankAreTheRingFormula) {
  const Calibration cal = synthetic_calibration();
  // 4 layers of 1024 x 1024 (+ bias): several buckets per stage.
  ModelSpec m = model_of(4, "light", 1024, 256);
  for (LayerSpec& l : m.layers) {
    l.parameters = 1024 * 1024 + 1024;
    l.tensors = {1024 * 1024, 1024};
  }
  const int64_t R = 3, S = 2;
  const ClusterSpec cluster = cluster_of(std::vector<double>(size_t(R * S), 1.0), "1gbit");
  for (const int gb : {32, 16, 8, 4}) {
    const Candidate c = replicated(m, R, S, "1f1b", 4, 8, gb);
    const Prediction p = predict(m, cal, cluster, c);
    ASSERT_TRUE(p.ok) << p.error;
    ASSERT_EQ(p.sync_bytes_out.size(), size_t(R * S));
    for (int64_t k = 0; k < R * S; ++k) {
      // stage k % S holds two layers; its tensors in the order the backward finishes them
      const int64_t s = k % S;
      std::vector<int64_t> tensors;
      for (int64_t l = c.chunks[size_t(s)].end() - 1; l >= c.chunks[size_t(s)].first; --l) {
        tensors.push_back(1024);
        tensors.push_back(1024 * 1024);
      }
      const std::vector<size_t> bucket_of = sync_bucket_of(tensors);
      std::vector<int64_t> buckets(bucket_of.back() + 1, 0);
      for (size_t t = 0; t < tensors.size(); ++t) buckets[bucket_of[t]] += tensors[t];
      double expected = 0;
      int64_t params = 0;
      for (int64_t b : buckets) {
        params += b;
        const int64_t slice_rows = sync_padded_floats(b, R) / R / kSyncRow;
        expected += gb == 32 ? 2.0 * double(R - 1) * 4.0 * double(b) / double(R)
                             : 2.0 * double(R - 1) * (40.0 + double(encoded_size(slice_rows, kSyncRow, gb)));
      }
      EXPECT_EQ(params, 2 * (1024 * 1024 + 1024));
      EXPECT_NEAR(p.sync_bytes_out[size_t(k)], expected, 1e-6 * expected) << "rank " << k << ", " << gb << " bits";
      if (gb == 32) {  // 2(R-1)/R of the stage's gradient bytes out of every member
        EXPECT_NEAR(p.sync_bytes_out[size_t(k)], 2.0 * (R - 1) / R * 4.0 * double(params), 1e-3);
      }
    }
  }
}

TEST(PlannerReplicas, SyncOverlapsTheBackwardOfTheEarlierLayers) {
  // Four layers of a million parameters each: four buckets, the last layers' summed while the
  // backward goes on through the first ones (their rings about as long as the backward), so only
  // the first layer's bucket waits after it: the step is longer than the compute alone and
  // shorter than the compute followed by every bucket's ring.
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(4, "heavy", 1000, 256);
  const int64_t R = 2;
  const ClusterSpec cluster = cluster_of({1.0, 1.0}, "10gbit");
  const Prediction p = predict(m, cal, cluster, replicated(m, R, 1, "1f1b", 1, 32, 32));
  ASSERT_TRUE(p.ok) << p.error;
  const double compute = *std::max_element(p.stage_busy.begin(), p.stage_busy.end());
  double ring = 0;  // every bucket's 2(R-1) hops on the wire, one after another
  for (const LayerSpec& l : m.layers) ring += 2.0 * (R - 1) * (4.0 * double(l.parameters) / R) * 1.04 * 8 / 1e10;
  EXPECT_GT(p.step_seconds, compute + ring / 4) << "the first layer's bucket is summed after the backward";
  EXPECT_LT(p.step_seconds, compute + ring / 2) << "compute " << compute << " s, rings " << ring << " s";
  EXPECT_GT(p.sync_seconds, 0.0);
}

TEST(PlannerReplicas, ASlowLinkMakes32BitReplicasLoseToFewerHosts) {
  const Calibration cal = synthetic_calibration();
  // Moderate compute, many parameters: 8 MiB of gradients per step.
  const ModelSpec m = model_of(4, "heavy", 724, 256);
  Candidate one;
  one.micro_batches = 4;
  one.chunks = {LayerRange{0, 4}};
  one.in_process = true;
  const double alone = predict(m, cal, cluster_of({1.0}, "unlimited"), one).rate;
  const Prediction fast = predict(m, cal, cluster_of({1, 1}, "unlimited"), replicated(m, 2, 1, "1f1b", 4, 8, 32));
  const Prediction slow = predict(m, cal, cluster_of({1, 1}, "100mbit"), replicated(m, 2, 1, "1f1b", 4, 8, 32));
  ASSERT_TRUE(fast.ok && slow.ok) << fast.error << slow.error;
  EXPECT_GT(fast.rate, 1.5 * alone) << "unlimited: " << fast.rate << " vs one host " << alone;
  EXPECT_LT(slow.rate, alone) << "100mbit: " << slow.rate << " vs one host " << alone;
  EXPECT_EQ(slow.bound.rfind("link", 0), 0u) << slow.bound;
  // The search on 2 hosts at 100 Mbit/s with 32-bit sums only does not pick those replicas.
  SearchSpace space;
  space.gradient_bits = {32};
  const auto ranked = search(m, cal, cluster_of({1, 1}, "100mbit"), space);
  ASSERT_FALSE(ranked.empty());
  EXPECT_EQ(ranked.front().candidate.replicas, 1) << ranked.front().prediction.rate;
  // Compressed sums make them pay again.
  const Prediction packed = predict(m, cal, cluster_of({1, 1}, "100mbit"), replicated(m, 2, 1, "1f1b", 4, 8, 4));
  ASSERT_TRUE(packed.ok) << packed.error;
  EXPECT_GT(packed.rate, 3 * slow.rate) << "4-bit sums " << packed.rate << ", 32-bit " << slow.rate;
}

TEST(PlannerReplicas, GradientBitsBelow32AreOfferedOnlyWithReplicas) {
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(4, "heavy", 256, 256);
  const auto ranked = search(m, cal, cluster_of({1, 1, 1, 1}, "1gbit"), SearchSpace{});
  std::set<std::pair<int64_t, int64_t>> shapes;
  std::set<int> widths;
  for (const Ranked& r : ranked) {
    const Candidate& c = r.candidate;
    shapes.insert({c.replicas, c.stages});
    EXPECT_LE(c.replicas * c.stages, 4);
    if (c.replicas == 1) {
      EXPECT_EQ(c.gradient_bits, 32) << c.stages << " stages, " << c.schedule;
    } else {
      widths.insert(c.gradient_bits);
    }
  }
  EXPECT_EQ(widths, (std::set<int>{32, 16, 8, 4}));
  for (const auto& shape : {std::pair<int64_t, int64_t>{1, 1}, {1, 4}, {2, 1}, {2, 2}, {3, 1}, {4, 1}}) {
    EXPECT_EQ(shapes.count(shape), 1u) << shape.first << " x " << shape.second;
  }
  SearchSpace only_one;
  only_one.replicas = {1};
  for (const Ranked& r : search(m, cal, cluster_of({1, 1, 1, 1}, "1gbit"), only_one)) {
    EXPECT_EQ(r.candidate.replicas, 1);
  }
}

TEST(PlannerReplicas, DilocoSpreadsOneSumOverItsRound) {
  // The model of ASlowLinkMakes32BitReplicasLoseToFewerHosts: 8 MiB of gradients per step,
  // which 100 Mbit/s cannot sum every step.
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(4, "heavy", 724, 256);
  const ClusterSpec slow = cluster_of({1, 1}, "100mbit");
  Candidate one;
  one.micro_batches = 4;
  one.chunks = {LayerRange{0, 4}};
  one.in_process = true;
  const double alone = predict(m, cal, cluster_of({1.0}, "unlimited"), one).rate;
  const Prediction every_step = predict(m, cal, slow, replicated(m, 2, 1, "1f1b", 4, 8, 32));
  auto diloco = [&](int64_t H, const ClusterSpec& cluster) {
    Candidate c = replicated(m, 2, 1, "1f1b", 4, 8, 32);
    c.diloco_inner_steps = H;
    return predict(m, cal, cluster, c);
  };
  const Prediction h1 = diloco(1, slow), h10 = diloco(10, slow), h50 = diloco(50, slow), h200 = diloco(200, slow);
  ASSERT_TRUE(every_step.ok && h1.ok && h50.ok) << every_step.error << h1.error << h50.error;
  // One inner step per round: the whole sum after the backward, none of it hidden behind it.
  EXPECT_LE(h1.rate, 1.001 * every_step.rate) << "H=1 " << h1.rate << ", every step " << every_step.rate;
  // Longer rounds: the same sum over more steps.
  EXPECT_LT(h10.rate, h50.rate);
  EXPECT_LT(h50.rate, h200.rate);
  // (a round's 8 MiB at 100 Mbit/s is ~0.7 s: ~13 ms a step at H=50, against ~32 ms of compute)
  EXPECT_GT(h50.rate, 1.25 * alone) << "H=50 on 100mbit " << h50.rate << " vs one host " << alone;
  EXPECT_GT(h200.rate, 1.7 * alone) << "H=200 on 100mbit " << h200.rate << " vs one host " << alone;
  EXPECT_LT(h200.rate, 2.0 * alone) << "two hosts never more than twice one";
  ASSERT_EQ(h1.sync_bytes_out.size(), 2u);
  EXPECT_NEAR(h50.sync_bytes_out[0], h1.sync_bytes_out[0] / 50, 1e-6 * h1.sync_bytes_out[0]);
  EXPECT_NEAR(h50.sync_seconds * 50, h1.sync_seconds, 1e-6 * h1.sync_seconds);  // a round's exchange: the same
  // Unlimited link: H only spreads an exchange that costs little already.
  const Prediction fast = diloco(50, cluster_of({1, 1}, "unlimited"));
  EXPECT_GE(fast.rate, h50.rate);
  // One replica has nothing to average.
  Candidate lone = replicated(m, 1, 1, "1f1b", 4, 8, 32);
  lone.in_process = false;
  lone.diloco_inner_steps = 50;
  const Prediction refused = predict(m, cal, cluster_of({1}, "100mbit"), lone);
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.error.find("2 or more replicas"), std::string::npos) << refused.error;
  // The search proposes DiLoCo only when asked for an H, and then picks it for 2 replicas on this link.
  SearchSpace space;
  space.gradient_bits = {32};
  space.replicas = {2};
  EXPECT_EQ(search(m, cal, slow, space).front().candidate.diloco_inner_steps, 0);
  space.diloco_inner_steps = {50};
  const auto ranked = search(m, cal, slow, space);
  ASSERT_FALSE(ranked.empty());
  EXPECT_EQ(ranked.front().candidate.diloco_inner_steps, 50);
  EXPECT_EQ(ranked.front().candidate.replicas, 2);
}

TEST(PlannerReplicas, FeedLocalSendsRowIndicesNotInputs) {
  // Wide inputs (4096 floats a row), light layers: with replicas on 100 Mbit/s, rank 0's inputs
  // to replica 1 (on host 2) are the bound; with feed local only their int32 indices travel.
  const Calibration cal = synthetic_calibration();
  ModelSpec m = model_of(2, "light", 64, 256);
  m.in_width = 4096;
  const Candidate c = replicated(m, 2, 1, "1f1b", 4, 32, 8);
  const Prediction sent = predict(m, cal, cluster_of({1, 1}, "100mbit"), c);
  m.feed_local = true;
  const Prediction local = predict(m, cal, cluster_of({1, 1}, "100mbit"), c);
  ASSERT_TRUE(sent.ok && local.ok) << sent.error << local.error;
  EXPECT_EQ(sent.bound.rfind("link", 0), 0u) << sent.bound;
  EXPECT_GT(local.rate, 4 * sent.rate) << "feed local " << local.rate << ", inputs sent " << sent.rate;
  EXPECT_LT(local.link_utilisation, sent.link_utilisation);
}

TEST(PlannerReplicas, UnequalSharesAndShapesThatDoNotFit) {
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(4, "heavy", 64, 10);  // 10 rows over 3 replicas: 4, 3, 3
  const Prediction p = predict(m, cal, cluster_of({1, 1, 1}, "1gbit"), replicated(m, 3, 1, "1f1b", 4, 32, 8));
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_GT(p.stage_busy[0], p.stage_busy[1]);  // the 4-row share
  const Prediction too_many = predict(m, cal, cluster_of({1, 1, 1}, "1gbit"), replicated(m, 2, 2, "1f1b", 4, 32, 8));
  EXPECT_FALSE(too_many.ok);
  EXPECT_EQ(too_many.error, "2 replicas x 2 stages need 4 hosts (one worker per host), the cluster has 3");
  const ModelSpec tiny = model_of(4, "heavy", 64, 2);
  const Prediction no_rows = predict(tiny, cal, cluster_of({1, 1, 1}, "1gbit"), replicated(tiny, 3, 1, "1f1b", 1, 32, 8));
  EXPECT_FALSE(no_rows.ok);
  EXPECT_EQ(no_rows.error, "3 replicas but batch_size 2 (a replica without rows)");
}

TEST(PlannerReplicas, SyncBuckets) {
  // Reverse model order; a bucket closes before the tensor that would take it past 4 MiB.
  const int64_t cap = kSyncBucketFloats;
  EXPECT_EQ(sync_bucket_of({10, 20, 30}), (std::vector<size_t>{0, 0, 0}));
  EXPECT_EQ(sync_bucket_of({cap - 10, 10, 1}), (std::vector<size_t>{0, 0, 1}));
  EXPECT_EQ(sync_bucket_of({5, cap + 7, 3}), (std::vector<size_t>{0, 1, 2}));  // a larger tensor alone
  EXPECT_EQ(sync_padded_floats(1, 3), 3 * kSyncRow);
  EXPECT_EQ(sync_padded_floats(2 * kSyncRow, 2), 2 * kSyncRow);
  EXPECT_EQ(gradient_bits_accuracy_cost(32), "");
  EXPECT_NE(gradient_bits_accuracy_cost(8).find("2.0e-4"), std::string::npos);
}

}  // namespace
}  // namespace arceus::plan

namespace arceus::plan {
namespace {

// training.pipeline_flush false: on a link-bound pipeline the stream keeps the link busy
// across step boundaries (faster, the link nearer its bound); on free messages and with
// M >= S the stream saves the fill of every step but one in kStreamSteps; what cannot run
// without a flush is refused with the reason; the search offers it only when asked.
TEST(PlannerNoFlush, FasterWhereTheFlushLeavesTheLinkIdle) {
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(2, "light", 4096, 256);
  const ClusterSpec cluster = cluster_of({1, 1}, "100mbit");
  Candidate flushed = pipeline(m, 2, "eager1f1b", 4, 32);
  Candidate stream = flushed;
  stream.pipeline_flush = false;
  const Prediction a = predict(m, cal, cluster, flushed), b = predict(m, cal, cluster, stream);
  ASSERT_TRUE(a.ok && b.ok) << a.error << b.error;
  EXPECT_GT(b.rate, 1.2 * a.rate) << "flush " << a.rate << ", no flush " << b.rate;
  EXPECT_GT(b.link_utilisation, a.link_utilisation);
  EXPECT_GT(b.link_utilisation, 0.85);
  EXPECT_LE(b.link_utilisation, 1.0 + 1e-9);
  // Two weight versions and the optimizer's copy: more memory.
  EXPECT_GT(b.host_memory[0], a.host_memory[0]);

  const ClusterSpec free_links = cluster_of({1, 1}, "unlimited");
  const ModelSpec heavy = model_of(4, "heavy", 256, 256);
  Candidate h = pipeline(heavy, 2, "1f1b", 8, 32);
  const Prediction hf = predict(heavy, cal, free_links, h);
  h.pipeline_flush = false;
  const Prediction hs = predict(heavy, cal, free_links, h);
  ASSERT_TRUE(hf.ok && hs.ok);
  EXPECT_GT(hs.rate, hf.rate);
  EXPECT_LT(hs.bubble, hf.bubble);
}

TEST(PlannerNoFlush, RefusedWhereItCannotRunAndSearchedOnlyWhenAsked) {
  const Calibration cal = synthetic_calibration();
  const ModelSpec m = model_of(2, "light", 4096, 256);
  const ClusterSpec cluster = cluster_of({1, 1}, "100mbit");
  Candidate c = pipeline(m, 2, "zb1p", 4, 32);
  c.pipeline_flush = false;
  EXPECT_EQ(predict(m, cal, cluster, c).error, "training.pipeline_flush false with schedule zb1p (1f1b or eager1f1b only)");
  ModelSpec clipped = m;
  clipped.grad_clip = true;
  c.schedule = "1f1b";
  EXPECT_EQ(predict(clipped, cal, cluster, c).error,
            "training.pipeline_flush false with gradient clipping (it needs the flush)");

  SearchSpace space;
  space.bits = {32};
  space.micro_batches = {4};
  const auto count = [&](const SearchSpace& s) {
    int n = 0;
    for (const Ranked& r : search(m, cal, cluster, s)) n += r.candidate.pipeline_flush ? 0 : 1;
    return n;
  };
  EXPECT_EQ(count(space), 0);
  space.no_flush = true;
  const std::vector<Ranked> ranked = search(m, cal, cluster, space);
  EXPECT_GT(count(space), 0);
  for (const Ranked& r : ranked) {
    if (r.candidate.pipeline_flush) continue;
    EXPECT_EQ(r.candidate.replicas, 1);
    EXPECT_TRUE(r.candidate.schedule == "1f1b" || r.candidate.schedule == "eager1f1b") << r.candidate.schedule;
  }
  EXPECT_NE(no_flush_accuracy_cost().find("one step late"), std::string::npos);
}

}  // namespace
}  // namespace arceus::plan
