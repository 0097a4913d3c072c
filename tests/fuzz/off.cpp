// SPDX-License-Identifier: MIT
// Fuzz target: io::read_off (a triangle mesh; polygons are fanned), then the generic cloud readers
// (cloud_target.hpp).
#include <cstddef>
#include <cstdint>

#include "cloud_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ddpm::fuzz::TempFile temp("cloud", ".off");
  return ddpm::fuzz::fuzz_cloud_file(temp, data, size, "read_off",
                                     [](const auto& path) { (void)ddpm::io::read_off(path); });
}
