// SPDX-License-Identifier: MIT
// The body shared by the point-cloud fuzz targets (xyz, ply, off): the format's own reader, then
// read_point_cloud and read_point_clouds, which subsample (or, for a mesh, sample) 4 points from
// what it read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "ddpm/io/pointcloud.hpp"
#include "fuzz_common.hpp"

namespace ddpm::fuzz {

/// Writes the input to `temp` (whose extension picks the format) and runs `read(path)`, named
/// `reader` in findings, then the generic cloud readers on the same file.
template <class Read>
int fuzz_cloud_file(const TempFile& temp, const std::uint8_t* data, std::size_t size,
                    const char* reader, Read read) {
  const std::filesystem::path& path = temp.write(data, size);
  const std::string name = path.string();
  if (!only_format_errors(
          reader, [&] { read(path); }, name))
    return 0;
  only_format_errors(
      "read_point_cloud", [&] { (void)io::read_point_cloud(path, 4, /*seed=*/1); }, name);
  only_format_errors(
      "read_point_clouds", [&] { (void)io::read_point_clouds(path, 4, /*seed=*/1); }, name);
  return 0;
}

}  // namespace ddpm::fuzz
