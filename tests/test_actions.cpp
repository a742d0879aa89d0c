// Unit tests for ranks/schedule/: the generators (exact orders, every shape), the registry,
// the validator (each kind of broken program), simulated bubbles and activation memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <tuple>
#include <sstream>
#include <string>
#include <vector>

#include "ranks/schedule/dataflow.h"
#include "ranks/schedule/registry.h"
#include "ranks/schedule/simulate.h"
#include "ranks/schedule/stream.h"

namespace arceus {
namespace {

// "F0.0 F0.1 B0.0" -> the actions, in order.
Program parse(const std::string& text) {
  Program p;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    const size_t dot = word.find('.');
    p.push_back(Action{static_cast<ActionKind>(word[0]), std::stoi(word.substr(1, dot - 1)),
                       std::stoi(word.substr(dot + 1))});
  }
  return p;
}

std::string text(const Program& p) {
  std::string out;
  for (const Action& a : p) out += (out.empty() ? "" : " ") + to_string(a);
  return out;
}

std::vector<std::string> texts(const std::vector<Program>& programs) {
  std::vector<std::string> out;
  for (const Program& p : programs) out.push_back(text(p));
  return out;
}

PipelineShape shape(int64_t S, int64_t v, int64_t M) {
  PipelineShape s;
  s.ranks = S;
  s.chunks_per_rank = v;
  s.micro_batches = M;
  return s;
}

// Unit costs: F = 1, B = 2, I = W = 1 (the ActionCosts defaults).
Simulation run(const std::string& name, const PipelineShape& s) {
  return simulate(training_programs(name, s), s, ActionCosts{}, true);
}

double bubble(const std::string& name, int64_t S, int64_t v, int64_t M) {
  const Simulation sim = run(name, shape(S, v, M));
  EXPECT_TRUE(sim.ok) << name << " " << to_string(shape(S, v, M)) << ": " << sim.error;
  return sim.bubble;
}

std::string error_of(const std::string& name, const PipelineShape& s) {
  try {
    training_programs(name, s);
  } catch (const ScheduleError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a ScheduleError for " << name << " with " << to_string(s);
  return "";
}

void expect_contains(const std::string& message, const std::vector<std::string>& parts) {
  for (const auto& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "message lacks '" << part << "':\n"
                                                     << message;
  }
}

// The most micro-batches of one chunk walk of program `p` holds between an action of kind
// `from` and one of a kind in `until` (e.g. F .. B: activations held).
int64_t peak_held(const Program& p, ActionKind from, std::vector<ActionKind> until) {
  int64_t held = 0, peak = 0;
  for (const Action& a : p) {
    if (a.kind == from) peak = std::max(peak, ++held);
    if (std::find(until.begin(), until.end(), a.kind) != until.end()) --held;
  }
  return peak;
}

// ---------------------------------------------------------------------------------------------
// Registry.

TEST(ScheduleRegistry, NamesAndFlagsInOrder) {
  EXPECT_EQ(schedule_names(), "sequential, gpipe, 1f1b, eager1f1b, interleaved, zb1p, looped_bfs");
  ASSERT_EQ(schedules().size(), 7u);
  for (const ScheduleInfo& info : schedules()) {
    EXPECT_EQ(info.multi_chunk, info.name == "interleaved" || info.name == "looped_bfs") << info.name;
    EXPECT_EQ(info.split_backward, info.name == "zb1p") << info.name;
    EXPECT_FALSE(info.summary.empty()) << info.name;
    EXPECT_EQ(&find_schedule(info.name), &info);
  }
}

// `arceus plan` searches the schedules the registry marks; one it leaves out says why.
TEST(ScheduleRegistry, PlannedSchedulesOrAReason) {
  std::vector<std::string> planned;
  for (const ScheduleInfo& info : schedules()) {
    if (info.planned) planned.push_back(info.name);
    EXPECT_EQ(std::string(info.not_planned_because).empty(), info.planned) << info.name;
  }
  EXPECT_EQ(planned_schedule_names(), planned);
  EXPECT_GE(planned.size(), 4u);
}

TEST(ScheduleRegistry, UnknownNameListsTheSchedules) {
  try {
    find_schedule("pipedream");
    FAIL() << "expected a ScheduleError";
  } catch (const ScheduleError& e) {
    EXPECT_EQ(std::string(e.what()),
              "[schedule] unknown schedule 'pipedream' (expected sequential, gpipe, 1f1b, "
              "eager1f1b, interleaved, zb1p, looped_bfs)");
  }
  EXPECT_THROW(training_programs("1F1B", shape(2, 1, 2)), ScheduleError);
}

TEST(ScheduleRegistry, BadShapesAreRejected) {
  expect_contains(error_of("1f1b", shape(0, 1, 4)), {"[schedule] 1f1b with S=0, v=1, M=4", "S"});
  expect_contains(error_of("gpipe", shape(2, 1, 0)), {"M=0", "training.micro_batches"});
  expect_contains(error_of("interleaved", shape(2, 0, 4)), {"v=0", "partition.chunks_per_rank"});
  EXPECT_THROW(forward_programs(shape(0, 1, 1)), ScheduleError);
  // A generator called directly checks too.
  for (const ScheduleInfo& info : schedules()) {
    if (!info.multi_chunk) {
      EXPECT_THROW(info.generate(shape(2, 2, 4)), ScheduleError) << info.name;
    }
    EXPECT_THROW(info.generate(shape(2, 1, 0)), ScheduleError) << info.name;
  }
}

// Every schedule over S 1..8, v 1..4, M 1..32: v > 1 is rejected for exactly the single-chunk
// schedules (naming partition.chunks_per_rank and the schedules that take it); every other
// shape generates programs that simulate() accepts, with every action once.
TEST(ScheduleRegistry, EveryShapeIsValidOrRejectedByTheChunkRule) {
  std::map<std::string, int> accepted, rejected;
  for (const ScheduleInfo& info : schedules()) {
    for (int64_t S = 1; S <= 8; ++S) {
      for (int64_t v = 1; v <= 4; ++v) {
        for (int64_t M = 1; M <= 32; ++M) {
          const PipelineShape s = shape(S, v, M);
          if (v > 1 && !info.multi_chunk) {
            expect_contains(error_of(info.name, s),
                            {"[schedule] " + info.name + " with " + to_string(s),
                             "partition.chunks_per_rank = " + std::to_string(v), "(interleaved, looped_bfs)"});
            ++rejected[info.name];
            continue;
          }
          const std::vector<Program> programs = training_programs(info.name, s);
          ASSERT_EQ(programs.size(), static_cast<size_t>(S));
          const size_t per_rank = static_cast<size_t>(v * M * (info.split_backward ? 3 : 2));
          for (const Program& p : programs) ASSERT_EQ(p.size(), per_rank) << info.name;
          for (const Program& p : programs) {
            for (const Action& a : p) {
              const bool split =
                  a.kind == ActionKind::InputGrad || a.kind == ActionKind::WeightGrad;
              ASSERT_FALSE(info.split_backward ? a.kind == ActionKind::Backward : split)
                  << info.name << ": " << to_string(a);
            }
          }
          const Simulation sim = simulate(programs, s, ActionCosts{}, true);
          ASSERT_TRUE(sim.ok) << info.name << " " << to_string(s) << ": " << sim.error;
          ASSERT_EQ(sim.busy.size(), static_cast<size_t>(S));
          ++accepted[info.name];
        }
      }
    }
  }
  for (const char* name : {"sequential", "gpipe", "1f1b", "zb1p"}) {
    EXPECT_EQ(accepted[name], 8 * 32) << name;
    EXPECT_EQ(rejected[name], 8 * 3 * 32) << name;
  }
  for (const char* name : {"interleaved", "looped_bfs"}) {
    EXPECT_EQ(accepted[name], 8 * 4 * 32) << name;
    EXPECT_EQ(rejected[name], 0) << name;
  }
}

// Looped BFS: rank r runs F of chunk r for every micro-batch, then of chunk r + S, ..., then
// B chunk by chunk in reverse; its bubble is gpipe's over S*v chunks held v to a rank.
TEST(ScheduleLoopedBfs, OrderAndBubble) {
  EXPECT_EQ(texts(training_programs("looped_bfs", shape(2, 2, 2)))[0],
            "F0.0 F0.1 F2.0 F2.1 B2.0 B2.1 B0.0 B0.1");
  EXPECT_EQ(texts(training_programs("looped_bfs", shape(2, 2, 2)))[1],
            "F1.0 F1.1 F3.0 F3.1 B3.0 B3.1 B1.0 B1.1");
  // v = 1: gpipe exactly.
  for (int64_t S = 1; S <= 4; ++S)
    for (int64_t M : {1, 3, 8})
      EXPECT_EQ(training_programs("looped_bfs", shape(S, 1, M)), training_programs("gpipe", shape(S, 1, M)));
}

TEST(ScheduleRegistry, ForwardProgramsRunEveryChunkInOrder) {
  EXPECT_EQ(
      texts(forward_programs(shape(2, 2, 3))),
      (std::vector<std::string>{"F0.0 F0.1 F0.2 F2.0 F2.1 F2.2", "F1.0 F1.1 F1.2 F3.0 F3.1 F3.2"}));
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t v = 1; v <= 4; ++v) {
      for (int64_t M : {1, 3, 8}) {
        const Simulation sim = simulate(forward_programs(shape(S, v, M)), shape(S, v, M),
                                        ActionCosts{}, /*training=*/false);
        EXPECT_TRUE(sim.ok) << to_string(shape(S, v, M)) << ": " << sim.error;
      }
    }
  }
  // Forward programs are not training programs: every backward is missing.
  const Simulation sim =
      simulate(forward_programs(shape(2, 1, 2)), shape(2, 1, 2), ActionCosts{}, true);
  EXPECT_FALSE(sim.ok);
  expect_contains(sim.error, {"missing the backward", "B0.0"});
}

TEST(ScheduleActions, ChunksOfRankAndNames) {
  EXPECT_EQ(chunks_of_rank(1, shape(3, 3, 1)), (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(chunks_of_rank(0, shape(1, 2, 1)), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(rank_of_chunk(7, 3), 1);
  EXPECT_EQ(to_string(Action{ActionKind::InputGrad, 3, 12}), "I3.12");
  EXPECT_EQ(to_string(shape(3, 2, 8)), "S=3, v=2, M=8");
}

// ---------------------------------------------------------------------------------------------
// Exact orders.

TEST(ScheduleOrders, Sequential) {
  EXPECT_EQ(
      texts(training_programs("sequential", shape(2, 1, 3))),
      (std::vector<std::string>{"F0.0 B0.0 F0.1 B0.1 F0.2 B0.2", "F1.0 B1.0 F1.1 B1.1 F1.2 B1.2"}));
}

TEST(ScheduleOrders, GPipe) {
  EXPECT_EQ(
      texts(training_programs("gpipe", shape(3, 1, 3))),
      (std::vector<std::string>{"F0.0 F0.1 F0.2 B0.0 B0.1 B0.2", "F1.0 F1.1 F1.2 B1.0 B1.1 B1.2",
                                "F2.0 F2.1 F2.2 B2.0 B2.1 B2.2"}));
}

TEST(ScheduleOrders, OneFOneB) {
  // Stage k warms up with min(S-1-k, M) forwards; the last stage alternates from the start.
  EXPECT_EQ(texts(training_programs("1f1b", shape(3, 1, 4))),
            (std::vector<std::string>{"F0.0 F0.1 F0.2 B0.0 F0.3 B0.1 B0.2 B0.3",
                                      "F1.0 F1.1 B1.0 F1.2 B1.1 F1.3 B1.2 B1.3",
                                      "F2.0 B2.0 F2.1 B2.1 F2.2 B2.2 F2.3 B2.3"}));
  // Fewer micro-batches than the warm-up: all forwards, then all backwards.
  EXPECT_EQ(texts(training_programs("1f1b", shape(4, 1, 2)))[0], "F0.0 F0.1 B0.0 B0.1");
  EXPECT_EQ(texts(training_programs("1f1b", shape(1, 1, 3)))[0], "F0.0 B0.0 F0.1 B0.1 F0.2 B0.2");
}

TEST(ScheduleOrders, InterleavedFollowsMegatron) {
  // S=2, v=2, M=4: rounds of 2 micro-batches; rank r warms up (S-1-r) + (v-1)*2 forwards, its
  // chunks ascending for forwards and descending for backwards within a round.
  EXPECT_EQ(
      texts(training_programs("interleaved", shape(2, 2, 4))),
      (std::vector<std::string>{
          "F0.0 F0.1 F2.0 F2.1 B2.0 F0.2 B2.1 F0.3 B0.0 F2.2 B0.1 F2.3 B2.2 B2.3 B0.2 B0.3",
          "F1.0 F1.1 F3.0 B3.0 F3.1 B3.1 F1.2 B1.0 F1.3 B1.1 F3.2 B3.2 F3.3 B3.3 B1.2 B1.3"}));
  // M = 5, S = 2: rounds of 3 and 2 (the larger first), never shorter than S.
  EXPECT_EQ(texts(training_programs("interleaved", shape(2, 2, 5)))[1],
            "F1.0 F1.1 F1.2 F3.0 B3.0 F3.1 B3.1 F3.2 B3.2 F1.3 B1.0 F1.4 B1.1 F3.3 B1.2 F3.4 "
            "B3.3 B3.4 B1.3 B1.4");
}

TEST(ScheduleOrders, InterleavedWithOneChunkIs1F1B) {
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t M = 1; M <= 32; ++M) {
      EXPECT_EQ(training_programs("interleaved", shape(S, 1, M)),
                training_programs("1f1b", shape(S, 1, M)))
          << to_string(shape(S, 1, M));
    }
  }
}

TEST(ScheduleOrders, ZeroBubbleH1) {
  // 1F1B's order with B -> I; rank k runs W(m) after I(m + k).
  EXPECT_EQ(
      texts(training_programs("zb1p", shape(2, 1, 4))),
      (std::vector<std::string>{"F0.0 F0.1 I0.0 W0.0 F0.2 I0.1 W0.1 F0.3 I0.2 W0.2 I0.3 W0.3",
                                "F1.0 I1.0 F1.1 I1.1 W1.0 F1.2 I1.2 W1.1 F1.3 I1.3 W1.2 W1.3"}));
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t M = 1; M <= 32; ++M) {
      const auto zb = training_programs("zb1p", shape(S, 1, M));
      const auto base = training_programs("1f1b", shape(S, 1, M));
      for (int64_t k = 0; k < S; ++k) {
        Program without_w;
        for (Action a : zb[k]) {
          if (a.kind == ActionKind::WeightGrad) continue;
          if (a.kind == ActionKind::InputGrad) a.kind = ActionKind::Backward;
          without_w.push_back(a);
        }
        EXPECT_EQ(without_w, base[k]) << to_string(shape(S, 1, M)) << " rank " << k;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The validator on broken programs: each is reported with the action named.

struct Broken {
  std::vector<std::string> programs;
  std::vector<std::string> in_error;
  std::string in_grid;  // the marked action, when there is one
};

Simulation check(const std::vector<std::string>& programs, const PipelineShape& s,
                 bool training = true) {
  std::vector<Program> p;
  for (const auto& t : programs) p.push_back(parse(t));
  return simulate(p, s, ActionCosts{}, training);
}

TEST(ScheduleValidator, BrokenProgramsAreNamed) {
  const std::vector<Broken> cases = {
      // a missing B
      {{"F0.0 F0.1 B0.0 B0.1", "F1.0 B1.0 F1.1"},
       {"missing the backward", "B1.1", "I1.1", "W1.1"},
       ""},
      // a missing F
      {{"F0.0 F0.1 B0.0 B0.1", "F1.0 B1.0 B1.1"}, {"missing F1.1"}, ""},
      // a duplicated F
      {{"F0.0 F0.1 B0.0 F0.1 B0.1", "F1.0 B1.0 F1.1 B1.1"},
       {"F0.1 appears twice", "rank 0 step 1", "rank 0 step 3"},
       "[F0.1]"},
      // an action on the wrong rank
      {{"F0.0 F0.1 B0.0 B0.1 B1.1", "F1.0 B1.0 F1.1"},
       {"rank 0 step 4", "B1.1 is on the wrong rank", "chunk 1 lives on stage rank 1"},
       "[B1.1]"},
      // chunk and micro-batch out of range
      {{"F0.0 F0.1 B0.0 B0.1 F2.0", "F1.0 B1.0 F1.1 B1.1"},
       {"F2.0", "chunk 2 out of range"},
       "[F2.0]"},
      {{"F0.0 F0.1 F0.2 B0.0 B0.1", "F1.0 B1.0 F1.1 B1.1"},
       {"F0.2", "micro-batch 2 out of range (0..1)"},
       "[F0.2]"},
      // a W before its I
      {{"F0.0 F0.1 I0.0 W0.1 I0.1 W0.0", "F1.0 I1.0 W1.0 F1.1 I1.1 W1.1"},
       {"rank 0 step 3", "W0.1 comes before I0.1 (step 4)"},
       "[W0.1]"},
      // both B and I for one micro-batch
      {{"F0.0 F0.1 B0.0 I0.0 W0.0 B0.1", "F1.0 B1.0 F1.1 B1.1"},
       {"both B0.0 (rank 0 step 2) and I0.0 (rank 0 step 3)", "either B or I and W"},
       "[I0.0]"},
      // an I without its W
      {{"F0.0 F0.1 I0.0 B0.1", "F1.0 B1.0 F1.1 B1.1"},
       {"I0.0 (rank 0 step 2) without its W0.0"},
       "[I0.0]"},
      // a B before its own F
      {{"F0.0 B0.1 F0.1 B0.0", "F1.0 B1.0 F1.1 B1.1"},
       {"B0.1 comes before F0.1 (step 2)"},
       "[B0.1]"},
      // one program too few
      {{"F0.0 F0.1 B0.0 B0.1"}, {"expected 2 programs (one per stage rank), got 1"}, ""},
  };
  for (const Broken& c : cases) {
    SCOPED_TRACE(c.programs[0]);
    const Simulation sim = check(c.programs, shape(2, 1, 2));
    EXPECT_FALSE(sim.ok);
    expect_contains(sim.error, c.in_error);
    if (!c.in_grid.empty()) expect_contains(sim.grid, {c.in_grid});
  }
  const Simulation fwd = check({"F0.0 B0.0", "F1.0"}, shape(2, 1, 1), /*training=*/false);
  EXPECT_FALSE(fwd.ok);
  expect_contains(fwd.error, {"B0.0 in a forward-only program"});
}

TEST(ScheduleValidator, DeadlockNamesEachStalledActionAndMarksIt) {
  // Rank 0 runs B0.0 (waiting for rank 1's B1.0) before F0.1, which rank 1 needs for F1.1,
  // which comes before B1.0: each waits on the other.
  const Simulation sim = check({"F0.0 B0.0 F0.1 B0.1", "F1.0 F1.1 B1.0 B1.1"}, shape(2, 1, 2));
  ASSERT_FALSE(sim.ok);
  EXPECT_EQ(sim.error,
            "deadlock: no rank can run its next action: rank 0 step 1 B0.0 waits for B1.0 "
            "(rank 1 step 2); rank 1 step 1 F1.1 waits for F0.1 (rank 0 step 2)");
  EXPECT_EQ(sim.grid,
            "slot   0      1      2\n"
            "rank 0 F0.0   [B0.0] (+2 more)\n"
            "rank 1 .      F1.0   [F1.1] (+2 more)\n");
}

TEST(ScheduleValidator, DeadlockBehindACycle) {
  // Rank 1 runs B1.1 (needs rank 2's B2.1) before F1.2; rank 2 runs F2.2 (needs F1.2) before
  // B2.1. Rank 0, not in the cycle, stalls behind it on B0.0.
  const Simulation sim = check({"F0.0 F0.1 F0.2 B0.0 B0.1 B0.2", "F1.0 F1.1 B1.1 F1.2 B1.0 B1.2",
                                "F2.0 B2.0 F2.1 F2.2 B2.1 B2.2"},
                               shape(3, 1, 3));
  ASSERT_FALSE(sim.ok);
  expect_contains(sim.error, {"deadlock", "rank 0 step 3 B0.0 waits for B1.0 (rank 1 step 4)",
                              "rank 1 step 2 B1.1 waits for B2.1 (rank 2 step 4)",
                              "rank 2 step 3 F2.2 waits for F1.2 (rank 1 step 3)"});
  expect_contains(sim.grid, {"[B0.0]", "[B1.1]", "[F2.2]"});
}

TEST(ScheduleValidator, GridOfAValidRun) {
  const Simulation sim = run("1f1b", shape(2, 1, 2));
  ASSERT_TRUE(sim.ok);
  EXPECT_EQ(sim.grid,
            "slot   0    1    2    3    4    5    6    7    8\n"
            "rank 0 F0.0 F0.1 .    .    B0.0 ~    .    B0.1 ~\n"
            "rank 1 .    F1.0 B1.0 ~    F1.1 B1.1 ~\n");
  EXPECT_DOUBLE_EQ(sim.makespan, 9);
  EXPECT_EQ(sim.busy, (std::vector<double>{6, 6}));
}

TEST(ScheduleValidator, StructuralErrorsShowTheProgramsByStep) {
  const Simulation sim = check({"F0.0 F0.1 B0.0 B0.1 B1.1", "F1.0 B1.0 F1.1"}, shape(2, 1, 2));
  ASSERT_FALSE(sim.ok);
  EXPECT_EQ(sim.grid,
            "step   0      1      2      3      4\n"
            "rank 0 F0.0   F0.1   B0.0   B0.1   [B1.1]\n"
            "rank 1 F1.0   B1.0   F1.1\n");
}

TEST(ScheduleValidator, CostsMustBePositive) {
  ActionCosts costs;
  costs.weight_grad = 0;
  const PipelineShape s = shape(2, 1, 2);
  const Simulation sim = simulate(training_programs("1f1b", s), s, costs, true);
  EXPECT_FALSE(sim.ok);
  expect_contains(sim.error, {"cost of W", "positive"});
}

// ---------------------------------------------------------------------------------------------
// Simulated bubbles, unit costs F = 1, B = 2, I = W = 1.

TEST(ScheduleBubble, GPipeAnd1F1BMatchTheFormula) {
  EXPECT_NEAR(bubble("1f1b", 2, 1, 4), 0.2, 1e-12);
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t M = 1; M <= 16; ++M) {
      const double theory = static_cast<double>(S - 1) / static_cast<double>(M + S - 1);
      for (const char* name : {"gpipe", "1f1b"}) {
        const Simulation sim = run(name, shape(S, 1, M));
        EXPECT_NEAR(sim.bubble, theory, 1e-12) << name << " " << to_string(shape(S, 1, M));
        EXPECT_DOUBLE_EQ(sim.makespan, 3.0 * static_cast<double>(M + S - 1));
      }
      EXPECT_NEAR(bubble("sequential", S, 1, M), 1.0 - 1.0 / static_cast<double>(S), 1e-12);
    }
  }
}

TEST(ScheduleBubble, ZeroBubbleH1AtMostHalfOf1F1B) {
  for (int64_t S : {2, 3, 4}) {
    for (int64_t M : {4, 8}) {
      const double zb = bubble("zb1p", S, 1, M), base = bubble("1f1b", S, 1, M);
      EXPECT_LE(zb, 0.5 * base) << "S=" << S << " M=" << M << ": zb1p " << zb << ", 1f1b " << base;
    }
  }
  // ZB-H1's step: 3M + (S-1) for F = I = W (1F1B: 3(M + S-1)) once M >= S.
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t M = S; M <= 32; ++M) {
      EXPECT_DOUBLE_EQ(run("zb1p", shape(S, 1, M)).makespan, 3.0 * M + (S - 1))
          << to_string(shape(S, 1, M));
    }
  }
}

TEST(ScheduleBubble, InterleavedTwoChunksAtMost065Of1F1B) {
  for (int64_t S : {2, 3, 4}) {
    for (int64_t M : {4, 8}) {
      const double inter = bubble("interleaved", S, 2, M), base = bubble("1f1b", S, 1, M);
      EXPECT_LE(inter, 0.65 * base)
          << "S=" << S << " M=" << M << ": interleaved " << inter << ", 1f1b " << base;
    }
  }
  // Megatron-LM's bubble (S-1)/(vM + S-1) once M >= S.
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t v = 1; v <= 4; ++v) {
      for (int64_t M = S; M <= 32; ++M) {
        const double theory = static_cast<double>(S - 1) / static_cast<double>(v * M + S - 1);
        EXPECT_NEAR(bubble("interleaved", S, v, M), theory, 1e-12) << to_string(shape(S, v, M));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Activation memory, from a walk of each rank's program.

TEST(ScheduleMemory, ZeroBubbleH1HoldsNoMoreThan1F1B) {
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t M = 1; M <= 32; ++M) {
      const auto zb = training_programs("zb1p", shape(S, 1, M));
      const auto base = training_programs("1f1b", shape(S, 1, M));
      int64_t base_peak = 0;
      for (int64_t k = 0; k < S; ++k) {
        base_peak =
            std::max(base_peak, peak_held(base[k], ActionKind::Forward, {ActionKind::Backward}));
      }
      EXPECT_EQ(base_peak, std::min(S, M));
      for (int64_t k = 0; k < S; ++k) {
        const int64_t held_1f1b = peak_held(base[k], ActionKind::Forward, {ActionKind::Backward});
        EXPECT_EQ(held_1f1b, std::min(S - k, M));
        // Between F and I (the full activations): what 1F1B holds on this rank.
        EXPECT_LE(peak_held(zb[k], ActionKind::Forward, {ActionKind::InputGrad}), held_1f1b)
            << to_string(shape(S, 1, M)) << " rank " << k;
        // Between F and W: at most 1F1B's peak (rank 0's), ZB-H1's "same peak memory".
        EXPECT_LE(peak_held(zb[k], ActionKind::Forward, {ActionKind::WeightGrad}), base_peak)
            << to_string(shape(S, 1, M)) << " rank " << k;
      }
      // Rank 0 keeps exactly 1F1B's bound also between F and W.
      EXPECT_EQ(peak_held(zb[0], ActionKind::Forward, {ActionKind::WeightGrad}), std::min(S, M));
    }
  }
}

// Eager 1F1B: rank k warms up 2(S-1-k)+1 forwards (capped at M), so it holds up to
// min(2(S-k), M) micro-batches between F and B; the same bubble as 1F1B when messages are free.
TEST(ScheduleMemory, EagerOneFOneBWarmsUpTwiceAsDeep) {
  for (int64_t S = 1; S <= 6; ++S) {
    for (int64_t M = 1; M <= 16; ++M) {
      const PipelineShape shape{S, 1, M};
      const auto eager = training_programs("eager1f1b", shape);
      const auto base = training_programs("1f1b", shape);
      for (int64_t k = 0; k < S; ++k) {
        int64_t warm = 0;
        while (warm < static_cast<int64_t>(eager[k].size()) && eager[k][warm].kind == ActionKind::Forward) ++warm;
        EXPECT_EQ(warm, std::min(M, 2 * (S - 1 - k) + 2))  // the warm-up, then the first pair's F
            << "S=" << S << " M=" << M << " rank " << k;
        EXPECT_EQ(peak_held(eager[k], ActionKind::Forward, {ActionKind::Backward}), std::min(M, 2 * (S - k)))
            << "S=" << S << " M=" << M << " rank " << k;
      }
      EXPECT_NEAR(simulate(eager, shape, ActionCosts{}, true).bubble, simulate(base, shape, ActionCosts{}, true).bubble,
                  1e-9)
          << "S=" << S << " M=" << M;
    }
  }
}

TEST(ScheduleMemory, InterleavedIsBoundedIndependentlyOfM) {
  // Rank r holds at most its warm-up + 1 chunk-micro-batches: (S-r) + (v-1) * (first round,
  // fewer than 2S micro-batches), like 1F1B's S-r but per chunk.
  for (int64_t S = 1; S <= 8; ++S) {
    for (int64_t v = 1; v <= 4; ++v) {
      for (int64_t M = 1; M <= 32; ++M) {
        const auto programs = training_programs("interleaved", shape(S, v, M));
        for (int64_t r = 0; r < S; ++r) {
          EXPECT_LE(peak_held(programs[r], ActionKind::Forward, {ActionKind::Backward}),
                    (S - r) + (v - 1) * std::min(M, 2 * S - 1))
              << to_string(shape(S, v, M)) << " rank " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

// Chunk costs from the cost model: a slower chunk stretches the step and idles the others.
TEST(Simulate, ChunkScaleWeighsEachChunksActions) {
  const PipelineShape s{2, 1, 4};
  const auto programs = training_programs("1f1b", s);
  ActionCosts even, uneven;
  uneven.chunk_scale = {1.0, 3.0};
  const Simulation a = simulate(programs, s, even, true), b = simulate(programs, s, uneven, true);
  ASSERT_TRUE(a.ok && b.ok) << a.error << b.error;
  EXPECT_DOUBLE_EQ(a.makespan, 15.0);  // 3 (M + S - 1)
  EXPECT_DOUBLE_EQ(b.busy[1], 3 * 4 * 3.0);
  EXPECT_GT(b.makespan, a.makespan);
  EXPECT_GT(b.bubble, a.bubble);  // rank 0 waits on the slow rank
  ActionCosts wrong;
  wrong.chunk_scale = {1.0};
  const Simulation c = simulate(programs, s, wrong, true);
  EXPECT_FALSE(c.ok);
  EXPECT_NE(c.error.find("chunk_scale has 1 entries for 2 chunks"), std::string::npos) << c.error;
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

// ---------------------------------------------------------------------------------------------
// The message rule (dataflow.h).

TEST(ScheduleDataflow, WhatEachActionConsumesAndSends) {
  const PipelineShape shape{2, 2, 3};  // chunks 0..3, chunk c on stage rank c % 2
  const auto f = [](int c, int m) { return Action{ActionKind::Forward, c, m}; };
  const auto b = [](int c, int m) { return Action{ActionKind::Backward, c, m}; };
  EXPECT_EQ(consumes(f(0, 1), shape), (std::vector<Message>{{Flow::Input, kOrchestrator, 0, 1}}));
  EXPECT_EQ(consumes(f(2, 1), shape), (std::vector<Message>{{Flow::Activation, 1, 2, 1}}));
  EXPECT_EQ(consumes(f(3, 0), shape),
            (std::vector<Message>{{Flow::Activation, 2, 3, 0}, {Flow::Labels, kOrchestrator, 3, 0}}));
  EXPECT_EQ(sends(f(3, 0), shape), std::nullopt) << "the last chunk's output is the loss";
  EXPECT_EQ(sends(f(1, 2), shape), (Message{Flow::Activation, 1, 2, 2}));
  EXPECT_EQ(consumes(b(3, 0), shape), std::vector<Message>{}) << "the last chunk's backward starts from its loss";
  EXPECT_EQ(consumes(b(1, 0), shape), (std::vector<Message>{{Flow::Gradient, 2, 1, 0}}));
  EXPECT_EQ(sends(b(1, 0), shape), (Message{Flow::Gradient, 1, 0, 0}));
  EXPECT_EQ(sends(b(0, 0), shape), std::nullopt);
  EXPECT_EQ((Message{Flow::Gradient, 2, 1, 0}).boundary(), 1) << "sized by chunk 1's output";
  EXPECT_EQ((Message{Flow::Activation, 2, 3, 0}).boundary(), 2);
  EXPECT_EQ(consumes(Action{ActionKind::WeightGrad, 1, 0}, shape), std::vector<Message>{});
  EXPECT_EQ(same_chunk_prerequisite(Action{ActionKind::WeightGrad, 1, 0}), (Action{ActionKind::InputGrad, 1, 0}));
  EXPECT_EQ(same_chunk_prerequisite(b(1, 0)), f(1, 0));
  EXPECT_EQ(same_chunk_prerequisite(f(1, 0)), std::nullopt);
  // S = 1 with two chunks: the activation between them stays in memory.
  EXPECT_TRUE(is_local(Message{Flow::Activation, 0, 1, 0}, PipelineShape{1, 2, 1}));
  EXPECT_FALSE(is_local(Message{Flow::Activation, 0, 1, 0}, shape));
  EXPECT_FALSE(is_local(Message{Flow::Input, kOrchestrator, 0, 0}, PipelineShape{1, 1, 1}));
  EXPECT_EQ(orchestrator_sends(2, shape),
            (std::vector<Message>{{Flow::Input, kOrchestrator, 0, 2}, {Flow::Labels, kOrchestrator, 3, 2}}));
}

// Every registered schedule's programs: each message between chunks is sent by exactly one
// action and consumed by exactly one, and every message rank 0 sends is consumed once.
TEST(ScheduleDataflow, EveryMessageIsSentAndConsumedOnce) {
  for (const ScheduleInfo& info : schedules()) {
    for (int64_t S = 1; S <= 4; ++S) {
      for (int64_t v = 1; v <= (info.multi_chunk ? 3 : 1); ++v) {
        for (int64_t M = 1; M <= 5; ++M) {
          const PipelineShape shape{S, v, M};
          SCOPED_TRACE(info.name + " " + to_string(shape));
          std::vector<Program> programs;
          try {
            programs = training_programs(info.name, shape);
          } catch (const ScheduleError&) {
            continue;  // a shape the schedule refuses (checked by the registry tests)
          }
          std::map<std::tuple<int, int64_t, int64_t, int64_t>, int> sent, consumed;
          const auto key = [](const Message& m) { return std::make_tuple(int(m.flow), m.from, m.to, m.micro_batch); };
          for (int64_t m = 0; m < M; ++m)
            for (const Message& msg : orchestrator_sends(m, shape)) ++sent[key(msg)];
          for (const Program& p : programs) {
            for (const Action& a : p) {
              if (const auto out = sends(a, shape)) ++sent[key(*out)];
              for (const Message& msg : consumes(a, shape)) ++consumed[key(msg)];
            }
          }
          EXPECT_EQ(sent, consumed);
          for (const auto& [k, n] : sent) EXPECT_EQ(n, 1);
        }
      }
    }
  }
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

// training.pipeline_flush false (stream.h): the steps' micro-batches run as one stream.

// One step, closed: the stream's rule is the schedule's own one-step order.
TEST(ScheduleStream, OneStepIsTheSchedulesOwnOrder) {
  for (const char* name : {"1f1b", "eager1f1b"}) {
    for (int64_t S = 1; S <= 4; ++S) {
      for (int64_t M = 1; M <= 8; ++M) {
        EXPECT_EQ(stream_programs(name, S, {M}), training_programs(name, shape(S, 1, M)))
            << name << " " << to_string(shape(S, 1, M));
      }
    }
  }
}

// Across step boundaries, the validator passes for S 1..4 and M 1..8 (and a short last step,
// as an epoch's last batch can be), and every rank's step t+1 starts after its step t-1 ended.
TEST(ScheduleStream, ValidAcrossStepBoundaries) {
  for (const char* name : {"1f1b", "eager1f1b"}) {
    for (int64_t S = 1; S <= 4; ++S) {
      for (int64_t M = 1; M <= 8; ++M) {
        for (const std::vector<int64_t>& steps : {std::vector<int64_t>{M, M, M, M}, std::vector<int64_t>{M, M, 1}}) {
          std::vector<Program> programs;
          ASSERT_NO_THROW(programs = stream_programs(name, S, steps)) << name << " S=" << S << " M=" << M;
          std::vector<int64_t> first{0};
          for (int64_t m : steps) first.push_back(first.back() + m);
          const auto step_of = [&](int64_t g) {
            return int64_t(std::upper_bound(first.begin(), first.end(), g) - first.begin()) - 1;
          };
          for (const Program& p : programs) {
            // Independently of the rule: at each F, every B of two steps before has run.
            std::map<int64_t, int64_t> backwards_done;
            for (const Action& a : p) {
              const int64_t t = step_of(a.micro_batch);
              if (a.kind == ActionKind::Backward) ++backwards_done[t];
              if (a.kind == ActionKind::Forward && t >= 2) {
                EXPECT_EQ(backwards_done[t - 2], steps[size_t(t - 2)]) << name << " S=" << S << " M=" << M;
              }
            }
          }
        }
      }
    }
  }
}

// With free messages and M >= S, no flush leaves one pipeline fill for the whole stream:
// K steps take 3(KM + S - 1), against K(3(M + S - 1)) with a flush at each.
TEST(ScheduleStream, OneFillForTheWholeStream) {
  for (int64_t S = 1; S <= 4; ++S) {
    for (int64_t M = S; M <= 8; ++M) {
      const std::vector<int64_t> steps(5, M);
      const int64_t total = 5 * M;
      const Simulation sim = simulate(stream_programs("1f1b", S, steps), shape(S, 1, total), ActionCosts{}, true);
      ASSERT_TRUE(sim.ok) << sim.error;
      EXPECT_DOUBLE_EQ(sim.makespan, 3.0 * double(total + S - 1)) << "S=" << S << " M=" << M;
    }
  }
}

// Rank 0 of S=2, M=2 over two steps: step 1's first forward before step 0's last backward.
TEST(ScheduleStream, ExactOrder) {
  const std::vector<Program> p = stream_programs("1f1b", 2, {2, 2});
  EXPECT_EQ(p[0], parse("F0.0 F0.1 B0.0 F0.2 B0.1 F0.3 B0.2 B0.3"));
  EXPECT_EQ(p[1], parse("F1.0 B1.0 F1.1 B1.1 F1.2 B1.2 F1.3 B1.3"));
  // S=4, M=1: rank 0 would warm up 3 forwards, but step 2 waits for step 0's backward.
  EXPECT_EQ(stream_programs("1f1b", 4, {1, 1, 1})[0], parse("F0.0 F0.1 B0.0 F0.2 B0.1 B0.2"));
}

TEST(ScheduleStream, SchedulesThatCannotAreNamedWithTheReason) {
  EXPECT_EQ(streamed_schedule_names(), "1f1b, eager1f1b");
  for (const ScheduleInfo& s : schedules()) {
    if (s.stream_warmup) continue;
    EXPECT_NE(std::string(s.not_streamed_because), "") << s.name;
    try {
      stream_programs(s.name, 2, {2, 2});
      ADD_FAILURE() << s.name;
    } catch (const ScheduleError& e) {
      EXPECT_NE(std::string(e.what()).find(s.name + " cannot run with training.pipeline_flush false: " +
                                           s.not_streamed_because), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("1f1b, eager1f1b"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace arceus
