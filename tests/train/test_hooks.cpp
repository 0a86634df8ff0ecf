#include <gtest/gtest.h>

#include <cstdlib>

#include "../test_util.h"
#include "thinkingvit/train/hooks.h"

namespace thinkingvit::testing {

namespace {

// THINKINGVIT_KILL_AT set for one scope (the subprocess tests set it for `thinkingvit train`).
class KillAt {
 public:
  explicit KillAt(const char* value) {
    if (const char* old = std::getenv("THINKINGVIT_KILL_AT")) previous_ = old;
    if (value) {
      ::setenv("THINKINGVIT_KILL_AT", value, 1);
    } else {
      ::unsetenv("THINKINGVIT_KILL_AT");
    }
  }
  ~KillAt() {
    if (previous_.empty()) {
      ::unsetenv("THINKINGVIT_KILL_AT");
    } else {
      ::setenv("THINKINGVIT_KILL_AT", previous_.c_str(), 1);
    }
  }

 private:
  std::string previous_;
};

}  // namespace

TEST(Hooks, TheEnvironmentVariableFillsTheHooks) {
  {
    const KillAt unset(nullptr);
    EXPECT_TRUE(train::hooks_from_environment().point.empty());
  }
  {
    const KillAt empty("");
    EXPECT_TRUE(train::hooks_from_environment().point.empty());
  }
  {
    const KillAt all_ranks("pause:7");
    const auto h = train::hooks_from_environment();
    EXPECT_EQ(h.point, "pause");
    EXPECT_EQ(h.batch, 7);
    EXPECT_EQ(h.rank, -1);
    EXPECT_EQ(h.stop_after_epochs, -1);
  }
  {
    const KillAt one_rank("checkpoint:12:1");
    const auto h = train::hooks_from_environment();
    EXPECT_EQ(h.point, "checkpoint");
    EXPECT_EQ(h.batch, 12);
    EXPECT_EQ(h.rank, 1);
  }
  const KillAt bad("checkpoint");
  expect_error([] { train::hooks_from_environment(); },
               {"THINKINGVIT_KILL_AT: expected POINT:BATCH[:RANK], found 'checkpoint'"});
}

// A hook with a rank acts on that rank alone, at its batch alone.
TEST(Hooks, FaultPointsActOnTheirRankAndBatch) {
  train::TrainHooks h;
  h.point = "nan";
  h.batch = 3;
  h.rank = 1;
  EXPECT_TRUE(train::FaultPoints(h, 1).poisons(3));
  EXPECT_FALSE(train::FaultPoints(h, 1).poisons(2));
  EXPECT_FALSE(train::FaultPoints(h, 0).poisons(3));
  h.rank = -1;
  EXPECT_TRUE(train::FaultPoints(h, 0).poisons(3));
  EXPECT_FALSE(train::FaultPoints().poisons(3));
  // Other points at other batches do nothing (a kill would end this test).
  h.point = "batch";
  train::FaultPoints(h, 0)("batch", 2);
  train::FaultPoints(h, 0)("forward", 3);
}

}  // namespace thinkingvit::testing
