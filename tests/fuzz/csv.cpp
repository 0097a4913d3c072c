// SPDX-License-Identifier: MIT
// Fuzz target: read_csv and data::load_points (a CSV of 2-D points).
#include "ddpm/io/csv.hpp"

#include <cstddef>
#include <cstdint>

#include "ddpm/data/points.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ddpm::fuzz::TempFile temp("csv", ".csv");
  const std::filesystem::path& path = temp.write(data, size);
  const std::string name = path.string();
  using ddpm::fuzz::only_format_errors;
  if (!only_format_errors(
          "read_csv", [&] { (void)ddpm::io::read_csv(path); }, name))
    return 0;
  only_format_errors(
      "load_points", [&] { (void)ddpm::data::load_points(path); }, name);
  return 0;
}
