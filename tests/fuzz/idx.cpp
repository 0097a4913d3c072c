// SPDX-License-Identifier: MIT
// Fuzz target: read_idx and data::read_idx_images, raw and gzip. The first byte chooses: even, the
// rest is the file; odd, the rest is gzip-compressed first (mutated gzip bytes rarely survive the
// stream's CRC-32, so the IDX parser behind inflate is reached this way), and bit 1 then splits
// the stream into two gzip members, which a reader must accept as one file (as gzip does).
#include "ddpm/data/idx.hpp"

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ddpm/data/images.hpp"
#include "fuzz_common.hpp"

namespace {

void append_gzip(const std::uint8_t* data, std::size_t size, std::vector<std::uint8_t>& out) {
  z_stream zs{};
  if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<std::uint8_t> buffer(deflateBound(&zs, static_cast<uLong>(size)) + 64);
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(size);
  zs.next_out = buffer.data();
  zs.avail_out = static_cast<uInt>(buffer.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) std::abort();
  out.insert(out.end(), buffer.data(), buffer.data() + zs.total_out);
  deflateEnd(&zs);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ddpm::fuzz::TempFile temp("idx", "-images-idx3-ubyte");
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  ++data;
  --size;
  std::vector<std::uint8_t> file;
  if ((mode & 1u) == 0) {
    file.assign(data, data + size);
  } else if ((mode & 2u) == 0) {
    append_gzip(data, size, file);
  } else {
    append_gzip(data, size / 2, file);
    append_gzip(data + size / 2, size - size / 2, file);
  }
  const std::filesystem::path& path = temp.write(file.data(), file.size());
  const std::string name = path.string();
  using ddpm::fuzz::only_format_errors;
  if (!only_format_errors(
          "read_idx", [&] { (void)ddpm::data::read_idx(path); }, name))
    return 0;
  only_format_errors(
      "read_idx_images", [&] { (void)ddpm::data::read_idx_images(path); }, name);
  return 0;
}
