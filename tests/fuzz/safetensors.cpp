// SPDX-License-Identifier: MIT
// Fuzz target: SafetensorsFile::parse, values<double> (and values<std::int64_t> where the dtype
// allows) of every tensor, and load_state_dict into a tiny Mlp (the corpus holds its weights).
#include "ddpm/io/safetensors.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "ddpm/io/state_dict.hpp"
#include "ddpm/nn/mlp.hpp"
#include "fuzz_common.hpp"
#include "fuzz_models.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr const char* kSource = "fuzz.safetensors";
  const auto* begin = reinterpret_cast<const std::byte*>(data);
  std::vector<std::byte> bytes(begin, begin + size);
  std::optional<ddpm::io::SafetensorsFile> parsed_file;
  const bool parsed = ddpm::fuzz::only_format_errors(
      "SafetensorsFile::parse",
      [&] { parsed_file.emplace(ddpm::io::SafetensorsFile::parse(std::move(bytes), kSource)); },
      kSource);
  if (!parsed) return 0;
  const ddpm::io::SafetensorsFile& file = *parsed_file;
  for (const ddpm::io::SafetensorsTensor& t : file.tensors()) {
    ddpm::fuzz::only_format_errors(
        "values<double>", [&] { (void)file.values<double>(t.name); }, kSource);
    ddpm::fuzz::only_format_errors(
        "values<float>", [&] { (void)file.values<float>(t.name); }, kSource);
    if (!ddpm::io::is_floating(t.dtype)) {
      ddpm::fuzz::only_format_errors(
          "values<int8_t>", [&] { (void)file.values<std::int8_t>(t.name); }, kSource);
    }
  }
  ddpm::nn::Mlp<double> model(ddpm::fuzz::tiny_mlp_config());
  ddpm::fuzz::only_format_errors(
      "load_state_dict", [&] { ddpm::io::load_state_dict(file, model); }, kSource);
  return 0;
}
