// arceus plan's model and search (planner/), on a fixed synthetic calibration so that every
// figure is deterministic. Torch-free.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "planner/planner.h"
#include "planner/simulate_links.h"
#include "ranks/schedule/registry.h"
#include "ranks/schedule/simulate.h"
#include "ranks/steps.h"

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
  for (const std::string link : {"unlimited", "1gbit", "100mbit"}) {
    for (const int64_t width : {64, 4096}) {
      const ModelSpec m = model_of(8, "heavy", width, 512);
      double previous = 0;
      for (size_t h = 1; h <= speeds.size(); ++h) {
        const ClusterSpec cluster = cluster_of(std::vector<double>(speeds.begin(), speeds.begin() + h), link);
        const auto ranked = search(m, cal, cluster, SearchSpace{});
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

}  // namespace
}  // namespace arceus::plan
