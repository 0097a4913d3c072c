// SPDX-License-Identifier: MIT
// Fuzz target: every reader of .npy files: read_npy, read_npy_matrix, data::read_npy_images,
// data::load_points (.npy) and io::read_point_clouds (an (S, M, 3) array).
#include "ddpm/io/npy.hpp"

#include <cstddef>
#include <cstdint>

#include "ddpm/data/images.hpp"
#include "ddpm/data/points.hpp"
#include "ddpm/io/pointcloud.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ddpm::fuzz::TempFile temp("npy", ".npy");
  const std::filesystem::path& path = temp.write(data, size);
  const std::string name = path.string();
  using ddpm::fuzz::only_format_errors;
  if (!only_format_errors(
          "read_npy", [&] { (void)ddpm::io::read_npy(path); }, name))
    return 0;
  only_format_errors(
      "read_npy_matrix", [&] { (void)ddpm::io::read_npy_matrix(path); }, name);
  only_format_errors(
      "read_npy_images", [&] { (void)ddpm::data::read_npy_images(path); }, name);
  only_format_errors(
      "load_points", [&] { (void)ddpm::data::load_points(path); }, name);
  only_format_errors(
      "read_point_clouds", [&] { (void)ddpm::io::read_point_clouds(path, 2, /*seed=*/1); }, name);
  return 0;
}
