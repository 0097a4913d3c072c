// SPDX-License-Identifier: MIT
// Whole-file reads and crash-safe writes shared by every file format of ddpm.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "ddpm/core/error.hpp"

#if __has_include(<unistd.h>)
#include <unistd.h>
#define DDPM_HAS_FSYNC 1
#endif

namespace ddpm::io {

/// Writes `bytes` to `path` atomically: to "<path>.tmp" first, flushed to the disk, then renamed
/// over `path`, so a reader, a crash or a power cut never sees a half-written file (the old file
/// stays until the new one is complete). Throws std::runtime_error naming the file.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  const auto fail = [&](const std::string& why) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw std::runtime_error("ddpm: cannot write file '" + path.string() + "': " + why);
  };
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  if (file == nullptr) fail("cannot create '" + tmp.string() + "'");
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size() &&
                       std::fflush(file) == 0
#ifdef DDPM_HAS_FSYNC
                       && ::fsync(::fileno(file)) == 0
#endif
      ;
  if (std::fclose(file) != 0 || !written)
    fail("writing '" + tmp.string() + "' failed (disk full?)");
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(ec.message());
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
