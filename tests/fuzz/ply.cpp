// SPDX-License-Identifier: MIT
// Fuzz target: io::read_ply (ASCII and binary little-endian, every property type), then the generic
// cloud readers (cloud_target.hpp).
#include <cstddef>
#include <cstdint>

#include "cloud_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ddpm::fuzz::TempFile temp("cloud", ".ply");
  return ddpm::fuzz::fuzz_cloud_file(temp, data, size, "read_ply",
                                     [](const auto& path) { (void)ddpm::io::read_ply(path); });
}
