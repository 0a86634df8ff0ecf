#pragma once
// File helpers: whole-file reads with clear errors, and atomic writes (temp name, fsync,
// rename) so that an interrupted program never leaves a partial output file.

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace thinkingvit::util {

std::vector<char> read_file(const std::string& path);

// Calls write(stream) on "<path>.tmp-<pid>", flushes and fsyncs it, then renames it to path.
// On any failure the temp file is removed and an Error naming path is thrown.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace thinkingvit::util
