#pragma once
// Declarations only, written for thinkingvit: PyTorch's wheels ship libtorch_cpu with Gloo built
// in but install no Gloo headers, and c10d/ProcessGroupGloo.hpp includes five of them. These
// files declare just what that header names, so that process_group.cpp can create a
// ProcessGroupGloo. Why this is safe: ProcessGroupGloo and its Options hold Gloo objects only
// through std::shared_ptr / std::unique_ptr, so their layout does not depend on Gloo's classes,
// and thinkingvit calls no Gloo function: every Gloo object is made and used inside libtorch_cpu.
// Nothing here may be instantiated; a Gloo type used by value would need the real headers.

#include <chrono>
#include <memory>

namespace gloo {

class Context {
 public:
  virtual ~Context() = default;
  void setTimeout(std::chrono::milliseconds timeout);  // defined in libtorch_cpu's Gloo
};

}  // namespace gloo
