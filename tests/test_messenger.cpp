// Messenger: error feedback on gradient messages (communication.error_feedback).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "ranks/codec.h"
#include "ranks/loopback.h"
#include "ranks/messenger.h"

namespace arceus {
namespace {

// Rank 0 sends the same gradient K times at 4 bits with deterministic rounding, once with a
// residual and once without; rank 1 sums what it receives. Without error feedback every
// message repeats the same rounding error, so the sum drifts K times it; with it, the sum
// of the received messages stays within one quantization step of K times the true value.
TEST(Messenger, ErrorFeedbackKeepsTheSumOfReceivedGradientsWithinOneStep) {
  constexpr int kSteps = 50;
  constexpr int64_t kRows = 16, kCols = 33;
  at::manual_seed(3);
  const at::Tensor x = at::randn({kRows, kCols});
  at::Tensor sum_ef = at::zeros_like(x), sum_plain = at::zeros_like(x);
  at::Tensor first_residual, first_received;
  run_loopback(2, [&](Transport& t) {
    RankStats stats;
    Messenger msg(t, stats);
    at::Tensor residual;  // rank 0's
    for (uint32_t step = 0; step < kSteps; ++step) {
      if (t.rank() == 0) {
        Request a = msg.send_tensor(x, 1, MsgKind::Gradient, step, 0, 4, false, 0, 0, &residual);
        if (step == 0) first_residual = residual.clone();
        Request b = msg.send_tensor(x, 1, MsgKind::Gradient, step, 1, 4, false, 0);
        t.wait(a);
        t.wait(b);
      } else {
        Request a = msg.post_tensor(0, MsgKind::Gradient, 0, 4, kRows, kCols);
        Request b = msg.post_tensor(0, MsgKind::Gradient, 1, 4, kRows, kCols);
        const at::Tensor got = msg.finish_tensor(a, MsgKind::Gradient, step, 0, 4, kRows, kCols);
        if (step == 0) first_received = got.clone();
        sum_ef += got;
        sum_plain += msg.finish_tensor(b, MsgKind::Gradient, step, 1, 4, kRows, kCols);
      }
    }
  });
  // The first residual is exactly what the receiver did not get.
  EXPECT_TRUE(at::equal(first_residual, x - first_received));
  const at::Tensor target = x * static_cast<double>(kSteps);
  // One 4-bit step of each row: max|x| / 7 (the residual never exceeds it, so the scale of a
  // row of x + residual is at most 8/7 of x's).
  const at::Tensor step = x.abs().amax(1, true) * (8.0 / 7.0) / 7.0;
  const double ef_worst = ((sum_ef - target).abs() / step).max().item<double>();
  const double plain_worst = ((sum_plain - target).abs() / step).max().item<double>();
  EXPECT_LE(ef_worst, 1.0) << "error feedback: the sum drifted " << ef_worst << " steps";
  EXPECT_GE(plain_worst, 10.0) << "without error feedback the sum should drift (got " << plain_worst << " steps)";
}

}  // namespace
}  // namespace arceus
