#pragma once
// Small string helpers shared by the readers (config overrides, class lists, line files).

#include <string>

namespace thinkingvit::util {

// `s` without leading and trailing spaces, tabs, carriage returns and newlines.
inline std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

}  // namespace thinkingvit::util
