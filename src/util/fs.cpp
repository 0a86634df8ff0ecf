#include "thinkingvit/util/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "thinkingvit/util/error.h"

namespace thinkingvit::util {

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  TVIT_CHECK(in, "cannot open '", path, "': ", std::strerror(errno));
  const auto size = static_cast<std::streamsize>(in.tellg());
  std::vector<char> bytes(static_cast<size_t>(size));
  in.seekg(0);
  TVIT_CHECK(in.read(bytes.data(), size), "cannot read '", path, "'");
  return bytes;
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      TVIT_CHECK(out, "cannot write '", path, "': ", std::strerror(errno));
      write(out);
      out.flush();
      TVIT_CHECK(out, "cannot write '", path, "': write failed (disk full?)");
    }
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    TVIT_CHECK(fd >= 0, "cannot write '", path, "': ", std::strerror(errno));
    const int synced = ::fsync(fd);
    ::close(fd);
    TVIT_CHECK(synced == 0, "cannot write '", path, "': fsync failed: ", std::strerror(errno));
    TVIT_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot write '", path,
               "': rename failed: ", std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace thinkingvit::util
