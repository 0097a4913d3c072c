// SPDX-License-Identifier: MIT
// Fuzz target: io::read_off (a triangle mesh; polygons are fanned), then read_point_cloud and
// read_point_clouds, which subsample (or, for a mesh, sample) 4 points from what it read.
#include <cstddef>
#include <cstdint>

#include "ddpm/io/pointcloud.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ddpm::fuzz::TempFile temp("cloud", ".off");
  const std::filesystem::path& path = temp.write(data, size);
  const std::string name = path.string();
  using ddpm::fuzz::only_format_errors;
  if (!only_format_errors(
          "read_off", [&] { (void)ddpm::io::read_off(path); }, name))
    return 0;
  only_format_errors(
      "read_point_cloud", [&] { (void)ddpm::io::read_point_cloud(path, 4, /*seed=*/1); }, name);
  only_format_errors(
      "read_point_clouds", [&] { (void)ddpm::io::read_point_clouds(path, 4, /*seed=*/1); }, name);
  return 0;
}
