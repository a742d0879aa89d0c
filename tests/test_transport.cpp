// The in-process transport keeps MPI's point-to-point contract: messages between one
// (source, tag) pair arrive in the order sent, receives match by exact source and tag
// whatever the posting order, a message longer than the posted receive is an error, a
// failure of one rank ends the others' waits, and a wait for a message never sent times out.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>

#include "common/errors.h"
#include "ranks/loopback.h"

namespace arceus {
namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string text(const Request& r) {
  return std::string(r.buffer().begin(), r.buffer().begin() + static_cast<std::ptrdiff_t>(r.received_bytes()));
}

TEST(Loopback, OrderPerSourceAndTagAndExactMatching) {
  auto w = loopback_world(3);
  // Rank 1 sends two messages on tag 5 and one on tag 6 before anything is posted.
  Request a = w[1]->isend(bytes("first"), 0, 5);
  Request b = w[1]->isend(bytes("second"), 0, 5);
  Request c = w[1]->isend(bytes("other tag"), 0, 6);
  Request d = w[2]->isend(bytes("other source"), 0, 5);
  for (Request* r : {&a, &b, &c, &d}) EXPECT_TRUE(w[1]->test(*r));  // sends complete at once
  // Receives posted in another order still match by (source, tag), in send order per pair.
  Request r6 = w[0]->irecv(64, 1, 6);
  Request r2 = w[0]->irecv(64, 2, 5);
  Request r5a = w[0]->irecv(64, 1, 5);
  Request r5b = w[0]->irecv(64, 1, 5);
  for (Request* r : {&r6, &r2, &r5a, &r5b}) w[0]->wait(*r);
  EXPECT_EQ(text(r6), "other tag");
  EXPECT_EQ(text(r2), "other source");
  EXPECT_EQ(text(r5a), "first");
  EXPECT_EQ(text(r5b), "second");
}

TEST(Loopback, PostedReceiveIsFilledByALaterSend) {
  auto w = loopback_world(2);
  Request r = w[1]->irecv(16, 0, 9);
  EXPECT_FALSE(w[1]->test(r));
  Request s = w[0]->isend(bytes("late"), 1, 9);
  EXPECT_TRUE(w[1]->test(r));
  EXPECT_EQ(text(r), "late");
  EXPECT_EQ(r.peer(), 0);
}

TEST(Loopback, TruncationNamesTheSizes) {
  auto w = loopback_world(2);
  Request s = w[0]->isend(bytes("too long"), 1, 1);
  try {
    Request r = w[1]->irecv(4, 0, 1);
    FAIL() << "no error";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("has 8 bytes, the receive posted 4"), std::string::npos) << e.what();
  }
}

TEST(Loopback, BroadcastAndHosts) {
  std::atomic<int> agreed{0};
  run_loopback(4, [&](Transport& t) {
    std::vector<uint8_t> b = t.rank() == 0 ? bytes("the job") : std::vector<uint8_t>{};
    t.broadcast(b, 0);
    if (std::string(b.begin(), b.end()) == "the job") ++agreed;
    EXPECT_EQ(t.all_hosts().size(), 4u);
    EXPECT_TRUE(t.in_process());
  });
  EXPECT_EQ(agreed.load(), 4);
}

TEST(Loopback, OneRankFailingEndsTheOthersWaits) {
  try {
    run_loopback(3, [](Transport& t) {
      if (t.rank() == 2) throw std::runtime_error("stage 2 broke");
      Request r = t.irecv(8, 2, 1);  // never sent: would wait forever without the failure
      t.wait(r);
    });
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_EQ(std::string(e.what()), "stage 2 broke");  // the cause, not "another rank failed"
  }
}

TEST(Loopback, AWaitForAMessageNeverSentTimesOut) {
  try {
    run_loopback(2, [](Transport& t) {
      if (t.rank() != 1) return;
      Request r = t.irecv(8, 0, 3);
      t.wait(r);
    }, /*timeout_seconds=*/0.2);
    FAIL() << "no error";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 waited"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("from rank 0 (tag 3)"), std::string::npos) << e.what();
    EXPECT_EQ(e.peer(), 0);
    EXPECT_EQ(e.tag(), 3);
    EXPECT_EQ(e.operation(), "receive");
  }
}

// A transport error wrapped with where it happened (as the executor and the orchestrator do)
// keeps its whole message in what() and its fields for whoever looks (the REST shim names the
// device behind the peer).
TEST(Errors, RethrowWithKeepsTheErrorNested) {
  try {
    try {
      try {
        throw TransportError("[transport] rank 0 waited 9 s for a message from rank 2 (tag 7)", 2, 7, "receive");
      } catch (const TransportError&) {
        rethrow_with("[executor] stage 1, action 3 of 8 (F0.1): ");
      }
    } catch (const std::exception&) {
      rethrow_with("", " (epoch 1, global step 5)");
    }
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_EQ(std::string(e.what()),
              "[executor] stage 1, action 3 of 8 (F0.1): [transport] rank 0 waited 9 s for a message from rank 2 "
              "(tag 7) (epoch 1, global step 5)");
    const auto t = find_error<TransportError>(e);
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(t->peer(), 2);
    EXPECT_EQ(t->tag(), 7);
    EXPECT_FALSE(find_error<std::invalid_argument>(e).has_value());
  }
}

// One table of categories: every set-up category is told apart from the runtime ones by its tag.
TEST(Errors, CategoriesByTag) {
  ASSERT_NE(error_category_of("[config] x.yaml: training.epochs: ..."), nullptr);
  EXPECT_TRUE(error_category_of("[config] x")->set_up);
  EXPECT_TRUE(error_category_of("[partition] 4 stages but ...")->set_up);
  EXPECT_FALSE(error_category_of("[transport] rank 0 waited")->set_up);
  EXPECT_FALSE(error_category_of("[wire] bad magic")->set_up);
  EXPECT_EQ(error_category_of("no tag here"), nullptr);
  EXPECT_EQ(error_category_of("[configx] not a tag"), nullptr);
}

}  // namespace
}  // namespace arceus

namespace arceus {
namespace {

// Transport::split and a group's allreduce on the in-process transport, as MPI does them: the
// ranks of one color, ordered by key; every member gets the same sum.
TEST(Loopback, SplitGroupsAndAllreduce) {
  std::atomic<int> checked{0};
  run_loopback(5, [&](Transport& t) {
    const int color = t.rank() == 0 ? -1 : t.rank() % 2;  // {1, 3} and {2, 4}; rank 0 in none
    std::unique_ptr<Group> g = t.split(color, -t.rank());  // descending ranks
    if (t.rank() == 0) {
      EXPECT_EQ(g, nullptr);
      return;
    }
    ASSERT_NE(g, nullptr);
    const std::vector<int> expected = t.rank() % 2 ? std::vector<int>{3, 1} : std::vector<int>{4, 2};
    EXPECT_EQ(g->members(), expected);
    EXPECT_EQ(g->members()[static_cast<size_t>(g->rank())], t.rank());
    for (int round = 0; round < 3; ++round) {
      std::vector<float> mine{float(t.rank()), 0.5f * float(round)};
      std::vector<uint8_t> bytes(sizeof(float) * mine.size());
      std::memcpy(bytes.data(), mine.data(), bytes.size());
      Request r = g->iallreduce_sum(std::move(bytes));
      t.wait(r);
      std::vector<float> sum(2);
      std::memcpy(sum.data(), r.buffer().data(), sizeof(float) * 2);
      EXPECT_EQ(sum[0], float(expected[0] + expected[1]));
      EXPECT_EQ(sum[1], 1.0f * float(round));
    }
    ++checked;
  });
  EXPECT_EQ(checked.load(), 4);
}

}  // namespace
}  // namespace arceus
