#pragma once
// One exception type for everything a user can get wrong (files, keys, flags, shapes).
// Apps catch it at the top, print its message as one line and exit non-zero.

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace thinkingvit {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

// Throws Error with the concatenation of its arguments.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(detail::concat(args...));
}

// "[576, 192]"
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace thinkingvit

// Checks a condition on user input; on failure throws thinkingvit::Error with the message.
#define TVIT_CHECK(cond, ...)                      \
  do {                                             \
    if (!(cond)) ::thinkingvit::fail(__VA_ARGS__); \
  } while (false)
