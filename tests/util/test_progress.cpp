#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "thinkingvit/util/progress.h"

namespace thinkingvit::testing {

namespace {

// The lines Progress logs while `body` runs (stderr is no terminal under ctest: log lines).
template <typename F>
std::vector<std::string> logged(F&& body) {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "progress-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_pattern("%v");
  spdlog::set_default_logger(logger);
  body();
  spdlog::set_default_logger(previous);
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST(Progress, TheLastLineIsLoggedOnce) {
  if (::isatty(STDERR_FILENO) == 1) GTEST_SKIP() << "stderr is a terminal: a bar, not log lines";
  const auto lines = logged([] {
    util::Progress progress("loader", 3, "img");
    progress.update(1);  // within 30 s of the start: no line
    progress.update(3);  // the last: a line
    progress.finish();   // shows what the last line showed: none
  });
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("loader 3/3 [", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(" img/s]"), std::string::npos) << lines[0];
}

TEST(Progress, FinishShowsWhatTheLastLineDidNot) {
  if (::isatty(STDERR_FILENO) == 1) GTEST_SKIP() << "stderr is a terminal: a bar, not log lines";
  const auto lines = logged([] {
    util::Progress stopped("eval", 4, "batch");
    stopped.update(2);
    stopped.finish();  // 2 of 4 shown by no line: 4/4
    util::Progress summed("train", 2, "batch");
    summed.update(2);
    summed.finish("loss 0.5");  // the same count, a new extra
  });
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].rfind("eval 4/4 [", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("train 2/2 [", 0), 0u) << lines[1];
  EXPECT_EQ(lines[2].rfind("train 2/2 [", 0), 0u) << lines[2];
  EXPECT_NE(lines[2].find("loss 0.5"), std::string::npos) << lines[2];
}

}  // namespace thinkingvit::testing
