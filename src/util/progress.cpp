#include "thinkingvit/util/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace thinkingvit::util {

namespace {

std::string clock_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buf;
}

}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      tty_(::isatty(STDERR_FILENO) == 1) {
  start_ = last_print_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (tty_ && !finished_) std::fputc('\n', stderr);
}

void Progress::update(int64_t done, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  const bool last = done >= total_;
  if (!last && since < (tty_ ? 0.2 : 30.0)) return;
  last_print_ = now;
  printed_done_ = done;
  printed_extra_ = extra;
  const double rate = elapsed > 0 ? done / elapsed : 0.0;
  const double eta = rate > 0 ? (total_ - done) / rate : 0.0;
  char stats[160];
  std::snprintf(stats, sizeof stats, "%lld/%lld [%s<%s, %.1f %s/s]", static_cast<long long>(done),
                static_cast<long long>(total_), clock_text(elapsed).c_str(),
                clock_text(eta).c_str(), rate, unit_.c_str());
  if (tty_) {
    constexpr int kWidth = 24;
    const int filled = total_ > 0 ? static_cast<int>(kWidth * done / total_) : 0;
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r%s |%s| %s %s\x1b[K", label_.c_str(), bar.c_str(), stats,
                 extra.c_str());
    std::fflush(stderr);
  } else {
    spdlog::info("{} {} {}", label_, stats, extra);
  }
}

void Progress::finish(const std::string& extra) {
  if (finished_) return;
  if (printed_done_ != total_ || printed_extra_ != extra) update(total_, extra);
  if (tty_) std::fputc('\n', stderr);
  finished_ = true;
}

}  // namespace thinkingvit::util
