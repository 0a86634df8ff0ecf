#pragma once
// See gloo/context.h: transport types that ProcessGroupGloo.hpp holds through smart pointers.

namespace gloo::transport {

class Device {
 public:
  virtual ~Device() = default;
};

class UnboundBuffer {
 public:
  virtual ~UnboundBuffer() = default;
};

}  // namespace gloo::transport
