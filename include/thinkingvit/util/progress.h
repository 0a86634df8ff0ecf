#pragma once
// Progress of long work: a bar with rate and ETA on a terminal, periodic log lines otherwise.

#include <chrono>
#include <cstdint>
#include <string>

namespace thinkingvit::util {

class Progress {
 public:
  // `unit` names what is counted ("batch", "img").
  Progress(std::string label, int64_t total, std::string unit = "it");
  ~Progress();
  // `done` items finished so far; `extra` is appended (e.g. "loss 0.53").
  void update(int64_t done, const std::string& extra = "");
  // The final state, unless the last line printed already showed it.
  void finish(const std::string& extra = "");

 private:
  std::string label_, unit_;
  int64_t total_;
  bool tty_;
  bool finished_ = false;
  int64_t printed_done_ = -1;  // what the last line printed showed
  std::string printed_extra_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace thinkingvit::util
