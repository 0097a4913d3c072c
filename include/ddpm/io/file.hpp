// SPDX-License-Identifier: MIT
// Whole-file reads and crash-safe writes shared by every file format of ddpm.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "ddpm/core/error.hpp"

#if __has_include(<unistd.h>) && __has_include(<fcntl.h>)
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#define DDPM_HAS_POSIX_IO 1
#else
#include <cerrno>
#endif

namespace ddpm::io {

/// Writing a file failed (the disk is full, a file-size limit, no permission, ...). The message
/// names the file and the operating system's reason; the file under the final name is unchanged.
class WriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

/// The operating system's text for `error`, with what it usually means for a write.
inline std::string write_error_text(int error) {
  std::string text = std::generic_category().message(error);
  if (error == ENOSPC) text += " (disk full)";
#ifdef EDQUOT
  if (error == EDQUOT) text += " (disk quota exceeded)";
#endif
  if (error == EFBIG) text += " (over the file-size limit, ulimit -f, or the file system's)";
  return text;
}

#ifdef DDPM_HAS_POSIX_IO
/// Makes a rename in `dir` durable (best effort: some file systems refuse fsync on a folder).
inline void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  (void)::close(fd);
}
#endif

}  // namespace detail

/// Writes `bytes` to `path` atomically: to "<path>.tmp" first, synced to the disk, then renamed
/// over `path` (and the folder synced), so a reader, a kill -9 or a power cut sees the old file or
/// the new one, never a half-written one. On failure (a full disk, RLIMIT_FSIZE, no permission)
/// the .tmp is removed, `path` is left as it was, and WriteError names the file and the reason.
/// A kill during the write can leave a stale "<path>.tmp"; the next write replaces it.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  const auto fail = [&](const std::string& why) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    const bool kept = std::filesystem::exists(path, ignored);
    throw WriteError("ddpm: cannot write file '" + path.string() + "': " + why +
                     (kept ? "; the previous '" + path.string() + "' is unchanged" : ""));
  };
#ifdef DDPM_HAS_POSIX_IO
  // POSIX calls rather than stdio, so every failure reports its errno (EFBIG, ENOSPC, ...).
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail("cannot create '" + tmp.string() + "': " + detail::write_error_text(errno));
  const auto fail_open = [&](const char* what) {
    const int error = errno;
    (void)::close(fd);
    fail(what + (" '" + tmp.string() + "' failed: ") + detail::write_error_text(error));
  };
  for (std::size_t done = 0; done < bytes.size();) {
    const std::size_t chunk = std::min<std::size_t>(bytes.size() - done, std::size_t{1} << 30);
    const ::ssize_t n = ::write(fd, bytes.data() + done, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;  // no progress and no error: treat as full
      fail_open("writing");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail_open("syncing");
  if (::close(fd) != 0)
    fail("closing '" + tmp.string() + "' failed: " + detail::write_error_text(errno));
#else
  std::FILE* file = std::fopen(tmp.string().c_str(), "wb");
  if (file == nullptr) {
    fail("cannot create '" + tmp.string() + "': " + detail::write_error_text(errno));
  }
  errno = 0;
  const bool written =
      std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size() && std::fflush(file) == 0;
  const int error = errno;
  if (std::fclose(file) != 0 || !written) {
    fail("writing '" + tmp.string() +
         "' failed: " + (error != 0 ? detail::write_error_text(error) : std::string("disk full?")));
  }
#endif
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail("renaming '" + tmp.string() + "' to it failed: " + ec.message());
#ifdef DDPM_HAS_POSIX_IO
  detail::sync_directory(path.parent_path());
#endif
}

/// Reads a whole file into a `Bytes` (std::string, or a vector of std::byte), refusing files larger
/// than `max_bytes` before allocating anything. Throws FormatError naming the file (as `what`) when
/// it cannot be opened or is too large.
template <class Bytes = std::string>
Bytes read_file(const std::filesystem::path& path, std::uintmax_t max_bytes,
                std::string_view what = "file") {
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) {
    throw FormatError("ddpm: " + std::string(what) + " '" + path.string() +
                      "' cannot be opened: " + ec.message());
  }
  if (size > max_bytes) {
    throw FormatError("ddpm: " + std::string(what) + " '" + path.string() + "' has " +
                      std::to_string(size) + " bytes, more than the limit of " +
                      std::to_string(max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  Bytes bytes(static_cast<std::size_t>(size), typename Bytes::value_type{});
  if (!in || !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    throw FormatError("ddpm: " + std::string(what) + " '" + path.string() + "' cannot be read");
  }
  return bytes;
}

}  // namespace ddpm::io
