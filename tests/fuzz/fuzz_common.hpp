// SPDX-License-Identifier: MIT
// Shared by the fuzz targets: the input's bytes as a per-process temporary file (for readers that
// take a path) and the readers' contract (only FormatError escapes, and it names the file).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <typeinfo>

#include "ddpm/core/error.hpp"

namespace ddpm::fuzz {

/// Where the temporary files go: /dev/shm (memory, no disk wear) when it is there.
inline std::filesystem::path temp_dir() {
  std::error_code ec;
  if (std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0) {
    return "/dev/shm";
  }
  return std::filesystem::temp_directory_path();
}

/// A file named after the process id (so parallel fuzzing jobs never share one), rewritten for
/// every input and removed when the process ends normally.
class TempFile {
 public:
  /// `name` distinguishes the targets' files, `extension` (".npy") is what the readers look at.
  TempFile(std::string_view name, std::string_view extension)
      : path_(temp_dir() / ("ddpm_fuzz_" + std::to_string(::getpid()) + "_" + std::string(name) +
                            std::string(extension))) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }

  /// Replaces the file's contents with `bytes`; returns its path.
  const std::filesystem::path& write(const std::uint8_t* data, std::size_t size) const {
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    if (file == nullptr) fatal("cannot create the temporary file " + path_.string());
    if (size != 0 && std::fwrite(data, 1, size, file) != size) {
      fatal("cannot write the temporary file " + path_.string());
    }
    std::fclose(file);
    return path_;
  }
  /// The file's path.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  [[noreturn]] static void fatal(const std::string& why) {
    std::fprintf(stderr, "ddpm fuzz: %s\n", why.c_str());
    std::abort();
  }

 private:
  std::filesystem::path path_;
};

/// Reports a broken contract and aborts, which libFuzzer records as a crash with its input.
[[noreturn]] inline void finding(std::string_view what, std::string_view detail) {
  std::fprintf(stderr, "ddpm fuzz finding: %.*s: %.*s\n", static_cast<int>(what.size()),
               what.data(), static_cast<int>(detail.size()), detail.data());
  std::abort();
}

/// Runs `read`; a ddpm::FormatError whose message contains `names` (the file, and e.g. "at byte"
/// where the reader promises an offset) is the reader doing its job and is swallowed. Any other
/// exception (std::bad_alloc, std::length_error, std::out_of_range, InvalidArgument, ...) or a
/// FormatError that does not say where is a finding. Returns true when `read` succeeded.
template <class Read>
bool only_format_errors(std::string_view label, Read&& read, std::string_view names,
                        std::string_view also_names = {}) {
  try {
    read();
    return true;
  } catch (const FormatError& e) {
    const std::string_view message = e.what();
    if (message.find(names) == std::string_view::npos ||
        (!also_names.empty() && message.find(also_names) == std::string_view::npos)) {
      finding(label, "FormatError without '" + std::string(names) + "' " + std::string(also_names) +
                         ": " + std::string(message));
    }
    return false;
  } catch (const std::bad_alloc& e) {
    finding(label, std::string("std::bad_alloc: ") + e.what());
  } catch (const std::exception& e) {
    finding(label, std::string(typeid(e).name()) + ": " + e.what());
  } catch (...) {
    finding(label, "an exception not derived from std::exception");
  }
}

}  // namespace ddpm::fuzz
