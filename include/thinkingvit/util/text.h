#pragma once
// Small string helpers shared by the readers (config overrides, class lists, line files).

#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace thinkingvit::util {

// `s` without leading and trailing spaces, tabs, carriage returns and newlines.
inline std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

// The number `text` spells, all of it ("inf" included); nothing for anything else and for NaN.
inline std::optional<double> parse_number(const std::string& text) {
  try {
    size_t used = 0;
    const double value = std::stod(text, &used);
    if (used == text.size() && !std::isnan(value)) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}
inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// {0.25, 0.75}, 3 -> "0.250/0.750": numbers with `digits` decimals, joined by '/'.
inline std::string join_fixed(const std::vector<double>& values, int digits) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", digits, values[i]);
    out += (i ? "/" : "") + std::string(text);
  }
  return out;
}

}  // namespace thinkingvit::util
