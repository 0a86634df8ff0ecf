#pragma once
// File helpers: whole-file reads with clear errors, and atomic writes (temp name, fsync,
// rename) so that an interrupted program never leaves a partial output file.

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace thinkingvit::util {

std::vector<char> read_file(const std::string& path);

// Fails unless `path` is an existing regular file: "<what> '<path>': no such file" or "...: is a
// folder, expected a file".
void check_is_file(const std::string& path, const std::string& what);

// Calls write(stream) on "<path>.tmp-<pid>", flushes and fsyncs it, then renames it to path.
// On any failure the temp file is removed and an Error naming path is thrown. Tests inject a
// full disk for paths ending in the environment variable THINKINGVIT_FAIL_WRITE.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

// Writes the folder `path` atomically: fill(temp) fills ".tmp-<name>" beside it, which then takes
// the place of `path` in one step (an atomic exchange where the file system has it), so a reader
// or a kill at any moment finds either the old folder or the new one, never neither. When fill
// throws, the temp folder is removed and the old folder stays.
void write_folder_atomic(const std::string& path,
                         const std::function<void(const std::filesystem::path&)>& fill);

// While alive, SIGTERM, SIGINT and SIGHUP first remove the flat folder `path` (its files, then
// the folder; with async-signal-safe system calls only), then end the process as the signal
// would. For long fills of write_folder_atomic in commands that have no graceful stop of their
// own (bench --profile); one at a time.
class RemoveOnSignal {
 public:
  explicit RemoveOnSignal(const std::filesystem::path& path);
  ~RemoveOnSignal();
  RemoveOnSignal(const RemoveOnSignal&) = delete;
  RemoveOnSignal& operator=(const RemoveOnSignal&) = delete;
};

}  // namespace thinkingvit::util
