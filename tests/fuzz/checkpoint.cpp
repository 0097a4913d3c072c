// SPDX-License-Identifier: MIT
// Fuzz target: Checkpoint::parse, then RunConfig::from_checkpoint (every model kind) and
// write_info on what parses. The first byte chooses the input's meaning: even, the file itself;
// odd, a payload that gets a correct header and CRC-32 (random bytes never pass the checksum, so
// the payload's parser is reached only this way).
#include "ddpm/train/checkpoint.hpp"

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "ddpm/train/model_fields.hpp"
#include "ddpm/train/pointcloud_run.hpp"
#include "ddpm/train/run_config.hpp"
#include "fuzz_common.hpp"

namespace {

constexpr const char* kSource = "fuzz.ckpt";

template <class Config>
void read_run(const ddpm::train::Checkpoint& c) {
  ddpm::fuzz::only_format_errors(
      "RunConfig::from_checkpoint",
      [&] {
        const auto run = ddpm::train::RunConfig<Config>::from_checkpoint(c);
        (void)run.fields();
        (void)run.describe_model();
      },
      kSource);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string bytes;
  if ((data[0] & 1u) == 0) {
    bytes = rest;
  } else {
    bytes.assign(ddpm::train::kCheckpointMagic.data(), ddpm::train::kCheckpointMagic.size());
    ddpm::train::detail::put_le<std::uint32_t>(bytes, ddpm::train::kCheckpointVersion);
    ddpm::train::detail::put_le<std::uint64_t>(bytes, rest.size());
    bytes += rest;
    ddpm::train::detail::put_le<std::uint32_t>(bytes, ddpm::train::detail::crc32(rest));
  }
  ddpm::train::Checkpoint checkpoint;
  // Every parse error is "corrupt at byte N" or names what the header says, always the file.
  const bool parsed = ddpm::fuzz::only_format_errors(
      "Checkpoint::parse", [&] { checkpoint = ddpm::train::Checkpoint::parse(bytes, kSource); },
      std::string("checkpoint '") + kSource + "' is corrupt at byte ");
  if (!parsed) return 0;
  read_run<ddpm::nn::MlpConfig>(checkpoint);
  read_run<ddpm::nn::UNetConfig>(checkpoint);
  read_run<ddpm::nn::PointCloudModelConfig>(checkpoint);
  ddpm::fuzz::only_format_errors(
      "write_info",
      [&] {
        std::ostringstream out;
        ddpm::train::write_info(checkpoint, out);
      },
      kSource);
  return 0;
}
