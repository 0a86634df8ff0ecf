#pragma once
// Where a run's log lines go while it trains.

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <memory>

namespace thinkingvit::train {

// The log file (rank 0) or a quieter console (other ranks), undone when training ends.
class LogGuard {
 public:
  void to_file(const std::filesystem::path& path) {
    sink_ = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path.string());
    spdlog::default_logger()->sinks().push_back(sink_);
    // Every line reaches the file at once: a killed run's log ends with its last line.
    spdlog::default_logger()->flush_on(spdlog::level::info);
  }
  void warnings_only() { spdlog::default_logger()->set_level(spdlog::level::warn); }
  ~LogGuard() {
    auto& sinks = spdlog::default_logger()->sinks();
    if (sink_) sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    spdlog::default_logger()->set_level(level_);
    spdlog::default_logger()->flush_on(flush_level_);
  }

 private:
  std::shared_ptr<spdlog::sinks::sink> sink_;
  spdlog::level::level_enum level_ = spdlog::default_logger()->level();
  spdlog::level::level_enum flush_level_ = spdlog::default_logger()->flush_level();
};

}  // namespace thinkingvit::train
