#include "thinkingvit/util/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/text.h"

namespace thinkingvit::util {

void check_is_file(const std::string& path, const std::string& what) {
  std::error_code error;
  TVIT_CHECK(!std::filesystem::is_directory(path, error), what, " '", path,
             "': is a folder, expected a file");
  TVIT_CHECK(std::filesystem::is_regular_file(path, error), what, " '", path, "': no such file");
}

std::vector<char> read_file(const std::string& path) {
  std::error_code error;
  TVIT_CHECK(!std::filesystem::is_directory(path, error), "cannot read '", path,
             "': it is a directory, expected a file");
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
      // Fault injection for tests: a write to a path ending in $THINKINGVIT_FAIL_WRITE fails as a
      // full disk would, after its temp file exists.
      const char* fault = std::getenv("THINKINGVIT_FAIL_WRITE");
      TVIT_CHECK(fault == nullptr || *fault == '\0' || !ends_with(path, fault), "cannot write '",
                 path, "': ", std::strerror(ENOSPC), " (injected by THINKINGVIT_FAIL_WRITE)");
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

void write_folder_atomic(const std::string& path,
                         const std::function<void(const std::filesystem::path&)>& fill) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path tmp = target.parent_path() / (".tmp-" + target.filename().string());
  const fs::path old = target.parent_path() / (".old-" + target.filename().string());
  std::error_code error;
  if (!fs::exists(target, error) && fs::exists(old, error)) fs::rename(old, target);
  fs::remove_all(tmp);  // left by a killed writer
  fs::create_directories(tmp);
  try {
    fill(tmp);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
  if (!fs::exists(target, error)) {
    fs::rename(tmp, target);
    return;
  }
  // Swap the two folders in one step; tmp then holds the old one.
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(tmp);
    return;
  }
  // No exchange on this file system: old aside, new in place, old removed. A kill between the
  // two renames leaves ".old-<name>", which the next write of the folder puts back first.
  fs::remove_all(old);
  fs::rename(target, old);
  fs::rename(tmp, target);
  fs::remove_all(old);
}

namespace {

char g_remove_path[4096];
struct sigaction g_previous[3];
constexpr int kRemoveSignals[3] = {SIGTERM, SIGINT, SIGHUP};

// Unlinks every entry of the folder g_remove_path, then the folder: open, getdents64, unlinkat
// and rmdir are all system calls, safe in a signal handler.
void remove_flat_folder() {
  const int fd = ::open(g_remove_path, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    alignas(8) char buffer[8192];
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buffer, sizeof buffer);
      if (n <= 0) break;
      for (long at = 0; at < n;) {
        struct Entry {
          uint64_t ino;
          int64_t off;
          unsigned short reclen;
          unsigned char type;
          char name[1];
        };
        const auto* e = reinterpret_cast<const Entry*>(buffer + at);
        const bool dot =
            e->name[0] == '.' && (e->name[1] == 0 || (e->name[1] == '.' && e->name[2] == 0));
        if (!dot) ::unlinkat(fd, e->name, 0);
        at += e->reclen;
      }
    }
    ::close(fd);
  }
  ::rmdir(g_remove_path);
}

void remove_and_reraise(int sig) {
  remove_flat_folder();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

RemoveOnSignal::RemoveOnSignal(const std::filesystem::path& path) {
  const auto text = std::filesystem::absolute(path).string();
  TVIT_CHECK(text.size() < sizeof g_remove_path, "path too long to guard: ", text);
  std::memcpy(g_remove_path, text.c_str(), text.size() + 1);
  struct sigaction action = {};
  action.sa_handler = remove_and_reraise;
  sigemptyset(&action.sa_mask);
  for (int i = 0; i < 3; ++i) ::sigaction(kRemoveSignals[i], &action, &g_previous[i]);
}

RemoveOnSignal::~RemoveOnSignal() {
  for (int i = 0; i < 3; ++i) ::sigaction(kRemoveSignals[i], &g_previous[i], nullptr);
}

}  // namespace thinkingvit::util
