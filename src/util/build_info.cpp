#include "thinkingvit/util/build_info.h"

#include "thinkingvit/util/device.h"

namespace thinkingvit::util {

std::string build_summary() {
  const auto runtime = compat::runtime_versions();
  std::string cuda = "cpu";
  if (std::string(kCudaBuildVersion) != "cpu") {
    const std::string nccl = std::string(kNcclBuildVersion) == "none"
                                 ? std::string(", without NCCL")
                                 : std::string(", NCCL ") + kNcclBuildVersion;
    cuda = std::string("CUDA ") + kCudaBuildVersion + nccl +
           (runtime.cuda == "cpu" ? std::string(" (no GPU visible)")
                                  : " (runtime " + runtime.cuda + ", cuDNN " + runtime.cudnn +
                                        ", NCCL " + runtime.nccl + ")");
  }
  return std::string("thinkingvit ") + kVersion + ", LibTorch " + runtime.torch + ", " + cuda +
         ", " + kBuildType;
}

}  // namespace thinkingvit::util
