// SPDX-License-Identifier: MIT
// Fuzz target: io::read_xyz (points as text, "#" comments, commas or blanks), then the generic
// cloud readers (cloud_target.hpp).
#include <cstddef>
#include <cstdint>

#include "cloud_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ddpm::fuzz::TempFile temp("cloud", ".xyz");
  return ddpm::fuzz::fuzz_cloud_file(temp, data, size, "read_xyz",
                                     [](const auto& path) { (void)ddpm::io::read_xyz(path); });
}
