// SPDX-License-Identifier: MIT
// IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed, read strictly and written.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/file.hpp"

// zlib is optional: CMake defines DDPM_HAVE_ZLIB and links ZLIB::ZLIB when it finds it. Without it,
// raw IDX files still work and gzip-compressed ones raise a FormatError saying what to install.
#ifdef DDPM_HAVE_ZLIB
#include <zlib.h>
#endif

namespace ddpm::data {

/// Decompressed payloads above this size are refused before they are read (default limit).
inline constexpr std::uintmax_t kMaxIdxBytes = std::uintmax_t{16} << 30;
/// The most dimensions read_idx accepts (MNIST uses 1 for labels and 3 for images).
inline constexpr std::size_t kMaxIdxDims = 4;

/// An IDX array of unsigned bytes: its dimensions (outermost first) and its elements in C order.
///
///   const ddpm::data::IdxArray a = ddpm::data::read_idx("train-images-idx3-ubyte.gz");
///   // a.dims == {60000, 28, 28}, a.values.size() == 60000 * 28 * 28
struct IdxArray {
  std::vector<Index> dims;           ///< the size of each dimension, outermost first
  std::vector<std::uint8_t> values;  ///< every element in C (row-major) order
};

namespace detail {

/// Element type codes of the IDX format (the third magic byte), with names for messages.
inline std::string idx_type_name(unsigned code) {
  switch (code) {
    case 0x08:
      return "unsigned byte";
    case 0x09:
      return "signed byte";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown";
  }
}

inline std::string hex_byte(unsigned byte) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  return std::string("0x") + kDigits[(byte >> 4) & 0xFu] + kDigits[byte & 0xFu];
}

/// Deflate cannot compress better than 1032:1, so a gzip file of n bytes never inflates to more
/// than this many: a header promising more is truncated, whatever the stream holds.
inline std::uint64_t max_inflated_bytes(std::uintmax_t compressed) {
  constexpr std::uint64_t kMaxDeflateRatio = 1032;
  return compressed > std::numeric_limits<std::uint64_t>::max() / kMaxDeflateRatio
             ? std::numeric_limits<std::uint64_t>::max()
             : std::uint64_t{compressed} * kMaxDeflateRatio;
}

/// The bytes of a file read in chunks, either as they are or through gzip decompression.
class IdxSource {
 public:
  IdxSource(const std::filesystem::path& path, std::string what)
      : in_(path, std::ios::binary), what_(std::move(what)) {
    if (!in_) fail("cannot be opened (missing or unreadable)");
    in_.read(reinterpret_cast<char*>(chunk_.data()), 2);
    const auto got = static_cast<std::size_t>(in_.gcount());
    gzip_ = got == 2 && chunk_[0] == 0x1F && chunk_[1] == 0x8B;
    probe_ = got;
#ifdef DDPM_HAVE_ZLIB
    if (gzip_) {
      // 15 + 16: a gzip wrapper (not zlib, not raw deflate) with the largest window; the CRC-32
      // and length in the trailer are checked by inflate itself.
      if (inflateInit2(&zs_, 15 + 16) != Z_OK) throw std::bad_alloc();
      zs_.next_in = chunk_.data();
      zs_.avail_in = static_cast<uInt>(probe_);
    }
#else
    if (gzip_) {
      fail(
          "is gzip-compressed, but ddpm was built without zlib; install zlib1g-dev "
          "(apt-get install zlib1g-dev) and rebuild, or decompress the file with gunzip");
    }
#endif
  }
  ~IdxSource() {
#ifdef DDPM_HAVE_ZLIB
    if (gzip_) inflateEnd(&zs_);
#endif
  }
  IdxSource(const IdxSource&) = delete;
  IdxSource& operator=(const IdxSource&) = delete;

  [[nodiscard]] bool gzip() const noexcept { return gzip_; }
  [[noreturn]] void fail(const std::string& why) const { throw FormatError(what_ + why); }

  /// Reads up to n bytes; fewer only at the end of the data (for gzip: after a complete stream
  /// whose checksums matched). Throws FormatError for a corrupt or truncated gzip stream.
  std::size_t read(std::uint8_t* out, std::size_t n) {
#ifdef DDPM_HAVE_ZLIB
    if (gzip_) return inflate_some(out, n);
#endif
    return raw(out, n);
  }

 private:
  std::size_t raw(std::uint8_t* out, std::size_t n) {
    // First the bytes read to look for the gzip magic.
    const std::size_t first = std::min(n, probe_ - probe_used_);
    std::copy_n(chunk_.data() + probe_used_, first, out);
    probe_used_ += first;
    std::size_t done = first;
    while (done < n && in_) {
      const std::size_t ask = std::min<std::size_t>(n - done, std::size_t{1} << 30);
      in_.read(reinterpret_cast<char*>(out + done), static_cast<std::streamsize>(ask));
      done += static_cast<std::size_t>(in_.gcount());
    }
    return done;
  }

#ifdef DDPM_HAVE_ZLIB
  bool refill() {
    if (!in_) return false;
    in_.read(reinterpret_cast<char*>(chunk_.data()), static_cast<std::streamsize>(chunk_.size()));
    zs_.next_in = chunk_.data();
    zs_.avail_in = static_cast<uInt>(in_.gcount());
    return zs_.avail_in > 0;
  }

  std::size_t inflate_some(std::uint8_t* out, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      if (!in_member_) {
        // A gzip file may hold several members back to back (gzip a b > c); the data ends only
        // where the file does.
        if (zs_.avail_in == 0 && !refill()) break;
        if (inflateReset(&zs_) != Z_OK) fail("zlib could not be reset");
        in_member_ = true;
      }
      if (zs_.avail_in == 0) refill();
      const std::size_t ask = std::min<std::size_t>(n - done, std::numeric_limits<uInt>::max());
      zs_.next_out = out + done;
      zs_.avail_out = static_cast<uInt>(ask);
      const int status = ::inflate(&zs_, Z_NO_FLUSH);
      done += ask - zs_.avail_out;
      if (status == Z_STREAM_END) {
        in_member_ = false;
      } else if (status == Z_BUF_ERROR) {
        // No progress was possible: the input ran out inside a member.
        fail("truncated gzip stream (the file ends before the end of the compressed data)");
      } else if (status == Z_MEM_ERROR) {
        throw std::bad_alloc();
      } else if (status != Z_OK) {
        fail(std::string("corrupt gzip stream (") + (zs_.msg != nullptr ? zs_.msg : "zlib error") +
             ")");
      }
    }
    return done;
  }

  z_stream zs_{};
  bool in_member_ = true;
#endif

  std::ifstream in_;
  std::string what_;
  std::vector<std::uint8_t> chunk_ = std::vector<std::uint8_t>(std::size_t{1} << 16);
  std::size_t probe_ = 0;       ///< bytes read to look for the gzip magic, in chunk_[0..probe_)
  std::size_t probe_used_ = 0;  ///< raw files: how many of them read() has returned
  bool gzip_ = false;
};

}  // namespace detail

/// Reads an IDX file of unsigned bytes (type code 0x08), raw or gzip-compressed: compression is
/// recognised by the gzip magic bytes 1f 8b, not by the name. Memory grows only with the bytes
/// actually read, so a header with absurd dimensions in a small file cannot make it allocate much.
///
///   const ddpm::data::IdxArray labels = ddpm::data::read_idx(dir / "train-labels-idx1-ubyte.gz");
///
/// Throws FormatError "ddpm: IDX file '<path>': <what is wrong>" for a missing file, a bad magic,
/// an unsupported type code, 0 or more than kMaxIdxDims dimensions, a zero dimension, data shorter
/// ("truncated") or longer ("trailing bytes") than the dimensions say, a payload above `max_bytes`,
/// a corrupt or truncated gzip stream, or a gzip file when ddpm was built without zlib.
inline IdxArray read_idx(const std::filesystem::path& path,
                         std::uintmax_t max_bytes = kMaxIdxBytes) {
  const std::string what = "ddpm: IDX file '" + path.string() + "': ";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw FormatError(what + "is a directory");
  const std::uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw FormatError(what + "cannot be opened: " + ec.message());
  detail::IdxSource source(path, what);
  const std::string kind = source.gzip() ? "decompressed data" : "file";

  std::array<std::uint8_t, 4 * (1 + kMaxIdxDims)> header{};
  std::size_t got = source.read(header.data(), 4);
  if (got < 4) {
    source.fail("truncated: the " + kind + " has " + std::to_string(got) +
                " bytes, less than the 4-byte magic number");
  }
  if (header[0] != 0 || header[1] != 0) {
    source.fail("not an IDX file (the magic number starts with " + detail::hex_byte(header[0]) +
                " " + detail::hex_byte(header[1]) + ", not 0x00 0x00)");
  }
  const unsigned type = header[2];
  if (type != 0x08) {
    source.fail("unsupported element type " + detail::hex_byte(type) + " (" +
                detail::idx_type_name(type) + "); only 0x08 (unsigned byte) is supported");
  }
  const std::size_t ndims = header[3];
  if (ndims < 1 || ndims > kMaxIdxDims) {
    source.fail("the magic number says " + std::to_string(ndims) + " dimensions; 1 to " +
                std::to_string(kMaxIdxDims) + " are supported");
  }
  got = source.read(header.data() + 4, 4 * ndims);
  if (got < 4 * ndims) {
    source.fail("truncated: the header ends after " + std::to_string(4 + got) + " of its " +
                std::to_string(4 + 4 * ndims) + " bytes");
  }

  IdxArray array;
  std::uint64_t elements = 1;
  bool overflow = false;
  std::string shape;
  for (std::size_t d = 0; d < ndims; ++d) {
    const std::uint8_t* b = header.data() + 4 + 4 * d;
    const std::uint64_t dim = (std::uint64_t{b[0]} << 24) | (std::uint64_t{b[1]} << 16) |
                              (std::uint64_t{b[2]} << 8) | std::uint64_t{b[3]};
    if (dim == 0)
      source.fail("dimension " + std::to_string(d) + " is 0; every dimension must be >= 1");
    if (elements > std::numeric_limits<std::uint64_t>::max() / dim) overflow = true;
    if (!overflow) elements *= dim;
    array.dims.push_back(static_cast<Index>(dim));
    shape += (d > 0 ? " x " : "") + std::to_string(dim);
  }

  // Sizes are checked before anything is allocated: against the file for raw data, against the
  // most a gzip file of this size can inflate to otherwise, and against max_bytes.
  const std::uint64_t header_bytes = 4 + 4 * ndims;
  const std::uint64_t limit = source.gzip() ? detail::max_inflated_bytes(file_size) : file_size;
  const std::uint64_t available = limit - std::min(limit, header_bytes);
  const std::string needs = "dimensions " + shape + " need " +
                            (overflow ? std::string("more than 2^64") : std::to_string(elements)) +
                            " data bytes";
  if (overflow || elements > available) {
    source.fail("truncated: " + needs +
                (source.gzip()
                     ? ", more than a gzip file of " + std::to_string(file_size) + " bytes can hold"
                     : ", but the file holds " + std::to_string(available)));
  }
  if (elements > max_bytes || elements > std::numeric_limits<std::size_t>::max()) {
    source.fail(needs + ", more than the limit of " + std::to_string(max_bytes));
  }
  if (!source.gzip() && elements < available) {
    source.fail("trailing bytes: " + needs + ", but the file holds " + std::to_string(available));
  }

  const auto total = static_cast<std::size_t>(elements);
  std::size_t done = 0;
  while (done < total) {
    // Grow as data arrives, so a stream that ends early never costs its promised size.
    array.values.resize(std::min(total, std::max<std::size_t>(std::size_t{1} << 20, 2 * done)));
    const std::size_t chunk = array.values.size() - done;
    const std::size_t read = source.read(array.values.data() + done, chunk);
    done += read;
    if (read < chunk) {
      source.fail("truncated: " + needs + ", but the " + kind + " holds " + std::to_string(done));
    }
  }
  std::uint8_t extra = 0;
  if (source.read(&extra, 1) > 0) {
    source.fail("trailing bytes: " + needs + ", but the " + kind + " holds more");
  }
  return array;
}

/// Writes `array` as an IDX file of unsigned bytes, gzip-compressed when `gzip` (what
/// read_idx and the MNIST tools read back), atomically.
///
///   ddpm::data::write_idx("labels-idx1-ubyte.gz", {{3}, {7, 2, 1}}, /*gzip=*/true);
///
/// Throws InvalidArgument for 0 or more than kMaxIdxDims dimensions, a dimension outside
/// 1..2^32-1, a value count that is not their product, or gzip without zlib; std::runtime_error
/// naming the file if it cannot be written.
inline void write_idx(const std::filesystem::path& path, const IdxArray& array, bool gzip = false) {
  ddpm::detail::require(!array.dims.empty() && array.dims.size() <= kMaxIdxDims,
                        "array.dims.size()", array.dims.size(), "1 to 4 dimensions");
  std::string bytes = {'\0', '\0', '\x08', static_cast<char>(array.dims.size())};
  std::uint64_t elements = 1;
  for (const Index dim : array.dims) {
    ddpm::detail::require(dim >= 1 && dim <= Index{0xFFFFFFFF}, "array.dims", dim,
                          "every dimension in 1..2^32-1");
    const auto d = static_cast<std::uint32_t>(dim);
    for (const int shift : {24, 16, 8, 0}) bytes.push_back(static_cast<char>((d >> shift) & 0xFFu));
    elements = elements > std::numeric_limits<std::uint64_t>::max() / d
                   ? std::numeric_limits<std::uint64_t>::max()
                   : elements * d;
  }
  ddpm::detail::require(
      elements == array.values.size(), "array.values.size()", array.values.size(),
      [&] { return "the product of the dimensions, " + std::to_string(elements); });
  bytes.append(reinterpret_cast<const char*>(array.values.data()), array.values.size());
  if (!gzip) {
    io::write_file_atomically(path, bytes);
    return;
  }
#ifdef DDPM_HAVE_ZLIB
  z_stream zs{};
  // windowBits 15 + 16 writes a gzip wrapper (header, CRC-32 and length trailer).
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    throw std::bad_alloc();
  }
  std::string compressed;
  std::size_t offset = 0;
  int flush = Z_NO_FLUSH;
  do {
    const std::size_t take = std::min<std::size_t>(bytes.size() - offset, std::size_t{1} << 30);
    zs.next_in = reinterpret_cast<Bytef*>(bytes.data() + offset);
    zs.avail_in = static_cast<uInt>(take);
    offset += take;
    flush = offset == bytes.size() ? Z_FINISH : Z_NO_FLUSH;
    do {
      const std::size_t start = compressed.size();
      constexpr std::size_t kOut = std::size_t{1} << 16;
      compressed.resize(start + kOut);
      zs.next_out = reinterpret_cast<Bytef*>(compressed.data() + start);
      zs.avail_out = static_cast<uInt>(kOut);
      ::deflate(&zs, flush);  // cannot fail with a valid stream and output space
      compressed.resize(start + kOut - zs.avail_out);
    } while (zs.avail_out == 0);
  } while (flush != Z_FINISH);
  deflateEnd(&zs);
  io::write_file_atomically(path, compressed);
#else
  throw InvalidArgument("gzip", "true",
                        "false: ddpm was built without zlib; install zlib1g-dev (apt-get install "
                        "zlib1g-dev) and rebuild");
#endif
}

}  // namespace ddpm::data
