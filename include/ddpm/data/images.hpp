// SPDX-License-Identifier: MIT
// Image data sets for training (MNIST-format IDX files, a folder of PNG/JPEG files, a .npy array),
// all loaded as planar images scaled to [-1, 1], and random training batches drawn from them.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/data/idx.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/npy.hpp"

// stb_image is compiled into every translation unit that includes this header, as static
// functions, so there is nothing to link and no symbol clashes (the same scheme as ddpm/io/png.hpp
// uses for stb_image_write). Only the PNG and JPEG decoders are built. A translation unit that
// wants stb_image for itself should include <stb/stb_image.h> after this header, without
// STB_IMAGE_IMPLEMENTATION (it then gets these static copies); including it before would leave
// extern declarations that these definitions would clash with, so that order is rejected here.
#ifndef DDPM_DATA_STB_IMAGE_INCLUDED
#define DDPM_DATA_STB_IMAGE_INCLUDED
#if defined(STBI_INCLUDE_STB_IMAGE_H)
#error "ddpm/data/images.hpp: include it before <stb/stb_image.h>"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_MAX_DIMENSIONS 16384  // as ddpm::io::kMaxImageSide; bounds what one file can allocate
// Zeroed allocations: stb_image 2.27 reads its decoder state before a corrupt file has set all of
// it (a JPEG scan using a Huffman table the file never defines read heap garbage: MemorySanitizer,
// and pixels that depended on earlier allocations). Zeroed, every decode is deterministic; such
// files are also refused up front (refuse_undefined_jpeg_tables).
#define STBI_MALLOC(size) std::calloc(1, size)
#define STBI_REALLOC(pointer, size) std::realloc(pointer, size)
#define STBI_FREE(pointer) std::free(pointer)
// stb_image checks some invariants of a corrupt file with assert(): a crash in a debug build and
// nothing in a release one. Here a failed check is recorded instead, in every build, and the file
// is refused after stb returns (no exception crosses stb's C code, which would leak its buffers).
namespace ddpm::data::detail {
inline thread_local bool stb_check_failed = false;
}  // namespace ddpm::data::detail
#define STBI_ASSERT(x) ((x) ? (void)0 : (void)(::ddpm::data::detail::stb_check_failed = true))
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
// stb_image 2.27 (Debian 12's) has one undefined operation on a corrupt JPEG, found by fuzzing:
// when a scan's data ends at a marker before its blocks are decoded, the bit reader's count can
// go negative and its next refill shifts a byte left by 32 or more. That byte is always 0 (after
// a marker stb feeds zeros), so the result is 0 on every target, and the file is then refused or
// decoded to a deterministic picture of a corrupt file; stb 2.28 returns early instead ("ran out
// of bits"). Clang's UndefinedBehaviorSanitizer skips that one check in stb's functions only, so
// the fuzzers keep it for ddpm's own code (GCC has no pragma for this).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("shift-exponent"))), apply_to = function)
#endif
#include <stb/stb_image.h>
#if defined(__clang__)
#pragma clang attribute pop
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#undef STB_IMAGE_IMPLEMENTATION
#endif  // DDPM_DATA_STB_IMAGE_INCLUDED

namespace ddpm::data {

/// What every image source returns: one row per image in planar C x H x W order (the order of
/// numpy's N x C x H x W), values scaled from bytes to [-1, 1] as byte / 127.5 - 1.
struct ImageSet {
  Batch<float> images;      ///< N x (channels * height * width)
  std::vector<int> labels;  ///< empty, or one label in [0, num_classes) per image
  Index height = 0;         ///< pixels per column
  Index width = 0;          ///< pixels per row
  Index channels = 0;       ///< planes per image (1: gray, 3: RGB)
  int num_classes = 0;      ///< 0 when unlabeled
};

/// Where the Debian package dataset-fashion-mnist installs Fashion-MNIST (MNIST-format files).
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Image files larger than this are refused before they are read.
inline constexpr std::uintmax_t kMaxImageFileBytes = std::uintmax_t{256} << 20;

namespace detail {

/// byte / 127.5 - 1 for every byte, rounded once to float; unit_to_byte inverts it exactly.
inline constexpr std::array<float, 256> kByteToUnit = [] {
  std::array<float, 256> table{};
  for (std::size_t b = 0; b < table.size(); ++b) {
    table[b] = static_cast<float>(static_cast<double>(b) / 127.5 - 1.0);
  }
  return table;
}();

inline float byte_to_unit(std::uint8_t byte) noexcept { return kByteToUnit[byte]; }

/// round((x + 1) * 127.5), clamped to 0..255 (NaN gives 0).
inline std::uint8_t unit_to_byte(double x) noexcept {
  if (!(x > -1.0)) return 0;
  if (x >= 1.0) return 255;
  return static_cast<std::uint8_t>(std::lround((x + 1.0) * 127.5));
}

inline std::string lower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return text;
}

inline bool is_image_file(const std::filesystem::path& file) {
  const std::string ext = lower(file.extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

inline bool is_hidden(const std::filesystem::path& entry) {
  const std::string name = entry.filename().string();
  return !name.empty() && name.front() == '.';
}

/// The PNG/JPEG files directly inside `dir` (hidden ones skipped), sorted by name.
inline std::vector<std::filesystem::path> image_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  for (const std::filesystem::directory_entry& entry : std::filesystem::directory_iterator(dir)) {
    if (!is_hidden(entry.path()) && entry.is_regular_file() && is_image_file(entry.path())) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// `labels` as ints, with num_classes = max + 1.
inline void set_labels(ImageSet& set, const std::vector<std::uint8_t>& labels) {
  set.labels.assign(labels.begin(), labels.end());
  set.num_classes = 1 + *std::max_element(set.labels.begin(), set.labels.end());
}

/// Fills row `row` of set.images from `count` bytes.
inline void bytes_to_row(const std::uint8_t* bytes, Index count, float* row) noexcept {
  for (Index k = 0; k < count; ++k) row[k] = byte_to_unit(bytes[k]);
}

/// One output sample of a separable resampling: the input samples [first, first + weights.size())
/// and their weights, which sum to 1.
struct ResampleTaps {
  Index first = 0;
  std::vector<double> weights;
};

/// Taps that resample `in` samples to `out` with a triangle (bilinear) filter widened by the
/// shrink factor, as PIL's resize(BILINEAR) (and so torchvision's Resize on PIL images) does:
/// plain bilinear interpolation when enlarging, an antialiasing average when shrinking. Pixel
/// centers are at half-integers; weights beyond the edges are dropped and the rest renormalized.
inline std::vector<ResampleTaps> resample_taps(Index in, Index out) {
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = std::max(1.0, scale);
  std::vector<ResampleTaps> taps(static_cast<std::size_t>(out));
  for (Index i = 0; i < out; ++i) {
    const double center = (static_cast<double>(i) + 0.5) * scale;
    const auto lo = std::max<Index>(0, static_cast<Index>(std::floor(center - support)));
    const auto hi = std::min<Index>(in, static_cast<Index>(std::ceil(center + support)));
    ResampleTaps& t = taps[static_cast<std::size_t>(i)];
    t.first = lo;
    double sum = 0.0;
    for (Index j = lo; j < hi; ++j) {
      const double w =
          std::max(0.0, 1.0 - std::abs(static_cast<double>(j) + 0.5 - center) / support);
      t.weights.push_back(w);
      sum += w;
    }
    for (double& w : t.weights) w /= sum;  // sum > 0: the nearest input sample is within support
  }
  return taps;
}

/// Resizes one planar image of `channels` in_h x in_w planes to out_h x out_w (see resample_taps).
inline void resize_planar(const float* in, Index channels, Index in_h, Index in_w, Index out_h,
                          Index out_w, float* out) {
  const std::vector<ResampleTaps> across = resample_taps(in_w, out_w);
  const std::vector<ResampleTaps> down = resample_taps(in_h, out_h);
  std::vector<double> rows(static_cast<std::size_t>(in_h * out_w));  // after the horizontal pass
  for (Index c = 0; c < channels; ++c) {
    const float* plane = in + c * in_h * in_w;
    for (Index y = 0; y < in_h; ++y) {
      for (Index x = 0; x < out_w; ++x) {
        const ResampleTaps& t = across[static_cast<std::size_t>(x)];
        double v = 0.0;
        for (std::size_t k = 0; k < t.weights.size(); ++k) {
          v += t.weights[k] * plane[y * in_w + t.first + static_cast<Index>(k)];
        }
        rows[static_cast<std::size_t>(y * out_w + x)] = v;
      }
    }
    for (Index y = 0; y < out_h; ++y) {
      const ResampleTaps& t = down[static_cast<std::size_t>(y)];
      for (Index x = 0; x < out_w; ++x) {
        double v = 0.0;
        for (std::size_t k = 0; k < t.weights.size(); ++k) {
          v += t.weights[k] *
               rows[static_cast<std::size_t>((t.first + static_cast<Index>(k)) * out_w + x)];
        }
        out[(c * out_h + y) * out_w + x] = static_cast<float>(v);
      }
    }
  }
}

/// What stb_image says about an image file: its size and stored channel count.
struct ImageInfo {
  int width = 0;
  int height = 0;
  int channels = 0;
};

/// Refuses a JPEG whose Huffman table (a DHT segment) declares more than 256 codes. stb_image 2.27
/// (Debian 12's) writes past its 257-entry tables for such a file (fixed upstream in 2.28), while
/// merely reading the header, so this runs before stb sees the bytes. Every "FF C4" is taken for a
/// DHT marker: a stray one in other data can at worst refuse a file, never let one through.
inline void refuse_oversized_jpeg_tables(const std::filesystem::path& file,
                                         std::string_view bytes) {
  // What stb takes for a JPEG: the SOI marker FF D8, after any number of FF fill bytes.
  const std::size_t soi = bytes.find_first_not_of('\xFF');
  if (soi == 0 || soi == std::string_view::npos || static_cast<unsigned char>(bytes[soi]) != 0xD8) {
    return;
  }
  const auto at = [&](std::size_t i) -> unsigned {
    return i < bytes.size() ? static_cast<unsigned char>(bytes[i])
                            : 0u;  // stb reads 0 past the end
  };
  for (std::size_t m = bytes.find("\xFF\xC4"); m != std::string_view::npos;
       m = bytes.find("\xFF\xC4", m + 2)) {
    // As stb reads it: a 16-bit length, then tables of 1 + 16 + n bytes while length remains.
    long remaining = static_cast<long>(at(m + 2) << 8 | at(m + 3)) - 2;
    std::size_t p = m + 4;
    while (remaining > 0 && p < bytes.size()) {
      unsigned codes = 0;
      for (std::size_t i = 0; i < 16; ++i) codes += at(p + 1 + i);
      if (codes > 256) {
        throw FormatError("ddpm: image '" + file.string() +
                          "': corrupt JPEG: the Huffman table at byte " + std::to_string(m) +
                          " declares " + std::to_string(codes) + " codes (at most 256)");
      }
      p += 17 + codes;
      remaining -= 17 + static_cast<long>(codes);
    }
  }
}

/// Refuses a JPEG whose scan uses a Huffman table, or whose frame a quantization table, that no
/// segment before that scan defines. stb_image 2.27 decodes such a file with whatever its table
/// memory held (found by fuzzing; now zeroed, see STBI_MALLOC above), which would turn a corrupt
/// file into arbitrary pixels. Walks the segments as a decoder does: DQT and DHT define tables,
/// SOF names each component's quantization table, SOS each scanned component's DC and AC tables
/// (a progressive scan uses only the DC table in a first DC scan, only the AC table in an AC
/// scan), entropy-coded data runs to the next marker other than RSTn, and bytes between segments
/// are skipped as stb skips them. A file stb would refuse anyway (ids above 3, segments past the
/// end) is left to stb.
inline void refuse_undefined_jpeg_tables(const std::filesystem::path& file,
                                         std::string_view bytes) {
  std::size_t p = bytes.find_first_not_of('\xFF');
  if (p == 0 || p == std::string_view::npos || static_cast<unsigned char>(bytes[p]) != 0xD8) return;
  const auto at = [&](std::size_t i) -> unsigned {
    return i < bytes.size() ? static_cast<unsigned char>(bytes[i]) : 0u;
  };
  const auto refuse = [&](std::size_t offset, const std::string& what) {
    throw FormatError("ddpm: image '" + file.string() + "': corrupt JPEG: the segment at byte " +
                      std::to_string(offset) + " uses " + what + " that the file never defines");
  };
  bool dc_table[4] = {}, ac_table[4] = {}, quant_table[4] = {};
  std::vector<unsigned> frame_quant_tables;  // per frame component
  bool progressive = false, quant_checked = false;
  ++p;
  while (p < bytes.size()) {
    while (p < bytes.size() && at(p) != 0xFF) ++p;  // stb skips junk between segments
    while (p < bytes.size() && at(p) == 0xFF) ++p;  // fill bytes
    const unsigned marker = at(p);
    const std::size_t start = p - 1;
    ++p;
    if (marker == 0xD9) return;                                          // EOI
    if ((marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) continue;  // no length
    const std::size_t length = at(p) << 8 | at(p + 1);
    if (length < 2 || p + length > bytes.size()) return;
    const std::size_t body = p + 2, end = p + length;
    if (marker == 0xDB) {  // DQT: (precision << 4 | id), then 64 values of 1 or 2 bytes
      for (std::size_t q = body; q < end;) {
        if ((at(q) & 15) < 4) quant_table[at(q) & 15] = true;
        q += 1 + ((at(q) >> 4) != 0 ? 128 : 64);
      }
    } else if (marker == 0xC4) {  // DHT: (class << 4 | id), 16 counts, the codes
      for (std::size_t q = body; q + 17 <= end;) {
        const unsigned id = at(q) & 15;
        if (id < 4) ((at(q) >> 4) == 0 ? dc_table : ac_table)[id] = true;
        std::size_t codes = 0;
        for (std::size_t i = 1; i <= 16; ++i) codes += at(q + i);
        q += 17 + codes;
      }
    } else if (marker >= 0xC0 && marker <= 0xC2) {  // SOF0/1 baseline, SOF2 progressive
      progressive = marker == 0xC2;
      frame_quant_tables.clear();
      const std::size_t components = at(body + 5);
      for (std::size_t c = 0; c < components; ++c) {
        frame_quant_tables.push_back(at(body + 6 + 3 * c + 2));
      }
    } else if (marker == 0xDA) {  // SOS: components (id, DC << 4 | AC), then Ss, Se, Ah/Al
      if (!quant_checked) {
        for (const unsigned q : frame_quant_tables) {
          if (q < 4 && !quant_table[q]) refuse(start, "quantization table " + std::to_string(q));
        }
        quant_checked = true;
      }
      const std::size_t components = at(body);
      const unsigned spectral_start = at(body + 1 + 2 * components);
      const unsigned approximation_high = at(body + 3 + 2 * components) >> 4;
      const bool uses_dc = !progressive || (spectral_start == 0 && approximation_high == 0);
      const bool uses_ac = !progressive || spectral_start > 0;
      for (std::size_t c = 0; c < components; ++c) {
        const unsigned tables = at(body + 2 + 2 * c);
        const unsigned dc = tables >> 4, ac = tables & 15;
        if (uses_dc && dc < 4 && !dc_table[dc]) {
          refuse(start, "DC Huffman table " + std::to_string(dc));
        }
        if (uses_ac && ac < 4 && !ac_table[ac]) {
          refuse(start, "AC Huffman table " + std::to_string(ac));
        }
      }
      // The entropy-coded data: up to the next FF that is neither stuffing (FF 00), fill nor RSTn.
      p = end;
      while (p + 1 < bytes.size() && !(at(p) == 0xFF && at(p + 1) != 0x00 && at(p + 1) != 0xFF &&
                                       !(at(p + 1) >= 0xD0 && at(p + 1) <= 0xD7))) {
        ++p;
      }
      continue;
    }
    p = end;
  }
}

/// Refuses a PNG with a chunk longer than the rest of the file: stb_image allocates an IDAT
/// chunk's declared length (up to 2 GB) before it finds the data missing, so a 100-byte file
/// could claim gigabytes.
inline void refuse_oversized_png_chunks(const std::filesystem::path& file, std::string_view bytes) {
  if (!bytes.starts_with("\x89PNG\r\n\x1a\n")) return;
  std::size_t p = 8;
  while (bytes.size() - p >= 8) {
    std::uint64_t length = 0;
    for (std::size_t i = 0; i < 4; ++i)
      length = length << 8 | static_cast<unsigned char>(bytes[p + i]);
    if (length > bytes.size() - p - 8) {
      throw FormatError("ddpm: image '" + file.string() + "': corrupt PNG: the chunk at byte " +
                        std::to_string(p) + " declares " + std::to_string(length) +
                        " bytes but only " + std::to_string(bytes.size() - p - 8) + " follow");
    }
    if (bytes.substr(p + 4, 4) == "IEND") return;
    p += 12 + static_cast<std::size_t>(length);  // length, type, data, CRC
    if (p > bytes.size()) return;                // the last chunk's CRC is cut off: stb says so
  }
}

/// The PNG `bytes` without their empty IDAT chunks, or nothing when there are none (or it is not a
/// PNG). An empty IDAT chunk carries no data, so the image is the same; stb_image 2.27 copies an
/// empty first one from a null buffer (memcpy(nullptr, ..., 0): undefined behavior, after which a
/// compiler may drop stb's own null check; found by fuzzing). Call after the chunk-length check.
inline std::optional<std::string> without_empty_png_data_chunks(std::string_view bytes) {
  if (!bytes.starts_with("\x89PNG\r\n\x1a\n")) return std::nullopt;
  std::optional<std::string> kept;
  std::size_t p = 8, copied = 0;   // bytes[copied, p) is still to be copied into `kept`
  while (p + 8 <= bytes.size()) {  // p may pass the end after an empty chunk cut short
    std::uint64_t length = 0;
    for (std::size_t i = 0; i < 4; ++i)
      length = length << 8 | static_cast<unsigned char>(bytes[p + i]);
    const std::string_view type = bytes.substr(p + 4, 4);
    if (type == "IDAT" && length == 0) {
      if (!kept) kept.emplace();
      kept->append(bytes.substr(copied, p - copied));
      p += 12;
      copied = std::min(p, bytes.size());
      continue;
    }
    if (type == "IEND") break;
    p += 12 + static_cast<std::size_t>(std::min<std::uint64_t>(length, bytes.size()));
    if (p > bytes.size()) break;
  }
  if (kept) kept->append(bytes.substr(copied));
  return kept;
}

/// Throws FormatError if stb_image's own consistency checks failed while it read `file`.
inline void refuse_failed_stb_checks(const std::filesystem::path& file) {
  if (stb_check_failed) {
    stb_check_failed = false;
    throw FormatError("ddpm: image '" + file.string() +
                      "': corrupt (stb_image's consistency check failed, e.g. an inconsistent "
                      "JPEG Huffman code)");
  }
}

/// The most pixels one byte of a PNG or JPEG can stand for: deflate expands at most 1032:1 and a
/// JPEG block of 64 pixels takes at least 2 bits, so real files stay far below this.
inline constexpr std::uint64_t kMaxPixelsPerFileByte = 4096;

/// Refuses a header that declares more pixels than the file's bytes can encode: stb_image
/// allocates and decodes the declared size even when the data run out (a 727-byte JPEG took 22 s).
inline void refuse_implausible_size(const std::filesystem::path& file, std::size_t file_bytes,
                                    int width, int height) {
  const auto pixels = static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height);
  if (pixels > kMaxPixelsPerFileByte * file_bytes) {
    throw FormatError("ddpm: image '" + file.string() + "': corrupt or truncated: it declares " +
                      std::to_string(width) + " x " + std::to_string(height) +
                      " pixels, more than " + std::to_string(file_bytes) + " bytes can encode");
  }
}

/// The bytes of the PNG/JPEG file `file`, with its size and channel count in `info`; FormatError
/// naming it if it is unreadable or not a PNG/JPEG that stb_image recognises.
inline std::string read_image_file(const std::filesystem::path& file, ImageInfo& info) {
  std::string bytes = io::read_file(file, kMaxImageFileBytes, "image");
  refuse_oversized_jpeg_tables(file, bytes);
  refuse_undefined_jpeg_tables(file, bytes);
  refuse_oversized_png_chunks(file, bytes);
  if (std::optional<std::string> kept = without_empty_png_data_chunks(bytes)) {
    bytes = std::move(*kept);
  }
  stb_check_failed = false;
  const int known = stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                                          static_cast<int>(bytes.size()), &info.width, &info.height,
                                          &info.channels);
  refuse_failed_stb_checks(file);
  if (known == 0) {
    throw FormatError("ddpm: image '" + file.string() + "': cannot be decoded (" +
                      stbi_failure_reason() + "); expected a PNG or JPEG file");
  }
  refuse_implausible_size(file, bytes.size(), info.width, info.height);
  return bytes;
}

/// Decodes `bytes` (the contents of `file`) with `channels` (1 or 3) interleaved channels per
/// pixel and stores it planar, scaled to [-1, 1], in `planar` (channels x height x width).
inline void decode_image(const std::filesystem::path& file, const std::string& bytes, int channels,
                         std::vector<float>& planar) {
  refuse_oversized_jpeg_tables(file, bytes);
  refuse_undefined_jpeg_tables(file, bytes);
  refuse_oversized_png_chunks(file, bytes);
  const std::optional<std::string> kept = without_empty_png_data_chunks(bytes);
  const std::string_view data = kept ? std::string_view(*kept) : std::string_view(bytes);
  int width = 0, height = 0, stored = 0;
  stb_check_failed = false;
  if (stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(data.data()),
                            static_cast<int>(data.size()), &width, &height, &stored) != 0) {
    refuse_implausible_size(file, data.size(), width, height);
  }
  const std::unique_ptr<stbi_uc, decltype(&stbi_image_free)> pixels(
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(data.data()),
                            static_cast<int>(data.size()), &width, &height, &stored, channels),
      &stbi_image_free);
  refuse_failed_stb_checks(file);
  if (pixels == nullptr) {
    throw FormatError("ddpm: image '" + file.string() + "': cannot be decoded (" +
                      stbi_failure_reason() + ")");
  }
  const auto plane = static_cast<std::size_t>(width) * static_cast<std::size_t>(height);
  planar.resize(plane * static_cast<std::size_t>(channels));
  for (std::size_t p = 0; p < plane; ++p) {
    for (int c = 0; c < channels; ++c) {
      planar[static_cast<std::size_t>(c) * plane + p] =
          byte_to_unit(pixels.get()[p * static_cast<std::size_t>(channels) + c]);
    }
  }
}

inline std::string size_text(Index height, Index width) {
  return std::to_string(height) + "x" + std::to_string(width);
}

}  // namespace detail

/// Reads MNIST-format IDX files: `images_file` of N x H x W bytes (one channel) and, unless empty,
/// `labels_file` of N bytes; num_classes is the largest label + 1 (10 for MNIST). Either file may
/// be gzip-compressed (see read_idx).
///
///   const ImageSet set = ddpm::data::read_idx_images(dir / "train-images-idx3-ubyte.gz",
///                                                    dir / "train-labels-idx1-ubyte.gz");
///
/// Throws FormatError naming the file for everything read_idx rejects, images that are not 3-D,
/// labels that are not 1-D, and a label count different from the image count.
inline ImageSet read_idx_images(const std::filesystem::path& images_file,
                                const std::filesystem::path& labels_file = {}) {
  const IdxArray images = read_idx(images_file);
  if (images.dims.size() != 3) {
    throw FormatError("ddpm: IDX file '" + images_file.string() + "': holds " +
                      std::to_string(images.dims.size()) +
                      " dimensions; images need 3 (count x height x width)");
  }
  const Index n = images.dims[0];
  IdxArray labels;
  if (!labels_file.empty()) {
    labels = read_idx(labels_file);
    if (labels.dims.size() != 1) {
      throw FormatError("ddpm: IDX file '" + labels_file.string() + "': holds " +
                        std::to_string(labels.dims.size()) +
                        " dimensions; labels need 1 (one byte per image)");
    }
    if (labels.dims[0] != n) {
      throw FormatError("ddpm: IDX labels '" + labels_file.string() + "' hold " +
                        std::to_string(labels.dims[0]) + " labels but the images '" +
                        images_file.string() + "' hold " + std::to_string(n) + " images");
    }
  }

  ImageSet set;
  set.height = images.dims[1];
  set.width = images.dims[2];
  set.channels = 1;
  const Index size = set.height * set.width;
  set.images.resize(n, size);
  ddpm::detail::parallel_for(n, size, [&](Index i) {
    detail::bytes_to_row(images.values.data() + i * size, size, set.images.row(i).data());
  });
  if (!labels.values.empty()) detail::set_labels(set, labels.values);
  return set;
}

/// Reads the "train" or "test" split of an MNIST-format folder: {train,t10k}-images-idx3-ubyte and
/// {train,t10k}-labels-idx1-ubyte, each raw or with ".gz" (raw preferred). The labels are read when
/// their file is there. Fashion-MNIST from Debian:
///
///   const ImageSet train = ddpm::data::load_mnist_format(ddpm::data::kFashionMnistDir, "train");
///
/// Throws InvalidArgument for another split; FormatError when the images file is missing (saying
/// how to install Fashion-MNIST) or as read_idx_images does.
inline ImageSet load_mnist_format(const std::filesystem::path& dir, std::string_view split) {
  ddpm::detail::require(split == "train" || split == "test", "split", split,
                        "\"train\" or \"test\"");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const auto find = [&](const std::string& stem) -> std::filesystem::path {
    std::error_code ec;
    for (const char* suffix : {"", ".gz"}) {
      const std::filesystem::path file = dir / (stem + suffix);
      if (std::filesystem::is_regular_file(file, ec)) return file;
    }
    return {};
  };
  const std::filesystem::path images = find(prefix + "-images-idx3-ubyte");
  if (images.empty()) {
    throw FormatError(
        "ddpm: no MNIST-format " + std::string(split) + " images in '" + dir.string() + "' (" +
        prefix +
        "-images-idx3-ubyte[.gz] not found); install the Debian package "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data");
  }
  return read_idx_images(images, find(prefix + "-labels-idx1-ubyte"));
}

/// Reads a folder of PNG/JPEG files (.png, .jpg, .jpeg, any case; sorted by file name; other files
/// and hidden entries ignored). If subfolders hold images, each such subfolder is a class, labelled
/// by its rank in the sorted subfolder names (as torchvision's ImageFolder; only files directly in
/// a class folder count); otherwise the set is unlabeled.
///
/// `channels` 1 (gray) or 3 (RGB) converts every file to that many (alpha is dropped); 0 takes 1 or
/// 3 from the first file. `height` and `width` 0 take the first file's size. A file of another
/// size is an error unless `resize`, which resamples it with PIL's bilinear filter (plain bilinear
/// interpolation when enlarging, an antialiasing triangle filter when shrinking, like
/// torchvision's Resize on PIL images).
///
///   const ImageSet set = ddpm::data::read_image_folder("faces/", 32, 32, 3, /*resize=*/true);
///
/// Throws InvalidArgument for bad arguments; FormatError for a missing folder, no images, images
/// next to class folders, an empty class folder, or a file that cannot be decoded or has the wrong
/// size (naming it).
inline ImageSet read_image_folder(const std::filesystem::path& dir, Index height = 0,
                                  Index width = 0, Index channels = 0, bool resize = false) {
  ddpm::detail::require(height >= 0 && height <= STBI_MAX_DIMENSIONS, "height", height,
                        "0 (from the first image) or 1..16384");
  ddpm::detail::require(width >= 0 && width <= STBI_MAX_DIMENSIONS, "width", width,
                        "0 (from the first image) or 1..16384");
  ddpm::detail::require((height == 0) == (width == 0), "height and width",
                        detail::size_text(height, width), "both 0 or both >= 1");
  ddpm::detail::require(channels == 0 || channels == 1 || channels == 3, "channels", channels,
                        "0 (from the first image), 1 (gray) or 3 (RGB)");
  const std::string what = "ddpm: image folder '" + dir.string() + "': ";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw FormatError(what + "is not a directory (or does not exist)");
  }

  std::vector<std::filesystem::path> files = detail::image_files(dir);
  std::vector<int> labels;
  std::vector<std::filesystem::path> classes;
  for (const std::filesystem::directory_entry& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_directory() && !detail::is_hidden(entry.path())) classes.push_back(entry.path());
  }
  std::sort(classes.begin(), classes.end());
  std::vector<std::vector<std::filesystem::path>> class_files;
  bool any_class_images = false;
  for (const std::filesystem::path& c : classes) {
    class_files.push_back(detail::image_files(c));
    any_class_images = any_class_images || !class_files.back().empty();
  }
  if (any_class_images) {
    if (!files.empty()) {
      throw FormatError(what + "has images ('" + files.front().filename().string() +
                        "', ...) next to class subfolders; move them into a class subfolder");
    }
    for (std::size_t c = 0; c < classes.size(); ++c) {
      if (class_files[c].empty()) {
        throw FormatError(what + "class folder '" + classes[c].filename().string() +
                          "' has no PNG/JPEG images");
      }
      files.insert(files.end(), class_files[c].begin(), class_files[c].end());
      labels.insert(labels.end(), class_files[c].size(), static_cast<int>(c));
    }
  }
  if (files.empty()) {
    throw FormatError(what +
                      "has no PNG/JPEG images (.png, .jpg, .jpeg), directly or in class "
                      "subfolders");
  }

  ImageSet set;
  std::vector<float> decoded;
  std::string size_source = "as requested";
  for (std::size_t i = 0; i < files.size(); ++i) {
    detail::ImageInfo info;
    const std::string bytes = detail::read_image_file(files[i], info);
    if (i == 0) {
      set.channels = channels != 0 ? channels : info.channels >= 3 ? 3 : 1;
      set.height = height != 0 ? height : info.height;
      set.width = width != 0 ? width : info.width;
      if (height == 0) size_source = "like the first image '" + files[0].string() + "'";
      set.images.resize(static_cast<Index>(files.size()), set.channels * set.height * set.width);
    }
    const bool same_size = info.height == set.height && info.width == set.width;
    if (!same_size && !resize) {
      throw FormatError("ddpm: image '" + files[i].string() + "': is " +
                        detail::size_text(info.height, info.width) +
                        " (height x width), expected " + detail::size_text(set.height, set.width) +
                        " " + size_source + "; resize the images or load them with resize on");
    }
    detail::decode_image(files[i], bytes, static_cast<int>(set.channels), decoded);
    float* row = set.images.row(static_cast<Index>(i)).data();
    if (same_size) {
      std::copy(decoded.begin(), decoded.end(), row);
    } else {
      detail::resize_planar(decoded.data(), set.channels, info.height, info.width, set.height,
                            set.width, row);
    }
  }
  if (!labels.empty()) {
    set.labels = std::move(labels);
    set.num_classes = static_cast<int>(classes.size());
  }
  return set;
}

/// Reads images from a .npy array: N x H x W (one channel) or N x C x H x W with C 1 or 3. uint8
/// values are scaled to [-1, 1]; float32/float64 values are taken as already in [-1, 1] (up to
/// 1e-4 of rounding).
///
///   const ImageSet set = ddpm::data::read_npy_images("cifar_train.npy");  // (50000, 3, 32, 32)
///
/// Throws FormatError naming the file for everything read_npy rejects, another rank, a zero
/// dimension, C not 1 or 3 (with a hint when the array looks channels-last), and a float value
/// outside [-1.0001, 1.0001] or not finite.
inline ImageSet read_npy_images(const std::filesystem::path& file) {
  const io::NpyArray array = io::read_npy(file);
  const std::string what = "ddpm: .npy images '" + file.string() + "': ";
  const std::vector<std::uint64_t>& shape = array.shape;
  const std::string shape_text = io::detail::shape_text(shape);
  if (shape.size() != 3 && shape.size() != 4) {
    throw FormatError(what + "shape " + shape_text +
                      " is not N x H x W or N x C x H x W (3 or 4 dimensions)");
  }
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) {
    throw FormatError(what + "shape " + shape_text + " has a zero dimension");
  }
  ImageSet set;
  set.channels = shape.size() == 3 ? 1 : static_cast<Index>(shape[1]);
  set.height = static_cast<Index>(shape[shape.size() - 2]);
  set.width = static_cast<Index>(shape.back());
  if (set.channels != 1 && set.channels != 3) {
    const bool channels_last = shape.size() == 4 && (shape[3] == 1 || shape[3] == 3);
    throw FormatError(what + "shape " + shape_text + " has " + std::to_string(set.channels) +
                      " channels; 1 or 3 are supported" +
                      (channels_last ? " (it looks channels-last: save "
                                       "numpy.transpose(a, (0, 3, 1, 2)) for N x C x H x W)"
                                     : ""));
  }
  const auto n = static_cast<Index>(shape[0]);
  const Index size = set.channels * set.height * set.width;
  set.images.resize(n, size);
  if (array.dtype == io::NpyDtype::u8) {
    ddpm::detail::parallel_for(n, size, [&](Index i) {
      detail::bytes_to_row(array.bytes.data() + i * size, size, set.images.row(i).data());
    });
    return set;
  }
  const std::vector<double> values = array.values<double>();
  for (std::size_t k = 0; k < values.size(); ++k) {
    if (!(std::abs(values[k]) <= 1.0001)) {
      throw FormatError(what + "element " + std::to_string(k) + " is " +
                        ddpm::detail::to_text(values[k]) +
                        "; float images must be scaled to [-1, 1] (e.g. bytes / 127.5 - 1, or "
                        "save them as uint8)");
    }
    set.images.data()[k] = static_cast<float>(values[k]);
  }
  return set;
}

/// Loads a data set from `data`, by what it is:
/// - a folder with train-images-idx3-ubyte[.gz]: its MNIST-format train split (load_mnist_format);
/// - another folder: PNG/JPEG images (read_image_folder, every size and channel count from the
///   first image);
/// - a .npy file: read_npy_images;
/// - an IDX file (raw or gzip): read_idx_images, with the labels of "X-labels-idx1-ubyte[.gz]" when
///   the file is "X-images-idx3-ubyte[.gz]" and that file is there.
///
///   const ImageSet set = ddpm::data::load_images(ddpm::data::kFashionMnistDir);
///
/// Throws FormatError for a missing path, anything else, and whatever the chosen reader throws.
inline ImageSet load_images(const std::filesystem::path& data) {
  const std::string what = "ddpm: data '" + data.string() + "': ";
  std::error_code ec;
  if (!std::filesystem::exists(data, ec)) throw FormatError(what + "does not exist");
  if (std::filesystem::is_directory(data, ec)) {
    for (const char* name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"}) {
      if (std::filesystem::is_regular_file(data / name, ec)) {
        return load_mnist_format(data, "train");
      }
    }
    for (const std::filesystem::directory_entry& entry :
         std::filesystem::directory_iterator(data)) {
      if (entry.path().filename().string().find("-idx3-ubyte") != std::string::npos) {
        throw FormatError(what +
                          "holds IDX files but no train-images-idx3-ubyte[.gz]; pass the "
                          "images file itself");
      }
    }
    return read_image_folder(data);
  }
  if (detail::lower(data.extension().string()) == ".npy") return read_npy_images(data);

  std::array<char, 2> magic{};
  std::ifstream in(data, std::ios::binary);
  const bool two = static_cast<bool>(in.read(magic.data(), 2));
  const bool gzip = magic[0] == '\x1F' && magic[1] == '\x8B';
  if (two && (gzip || (magic[0] == '\0' && magic[1] == '\0'))) {
    constexpr std::string_view kImages = "images-idx3-ubyte";
    std::string name = data.filename().string();
    std::filesystem::path labels;
    if (const std::size_t at = name.find(kImages); at != std::string::npos) {
      name.replace(at, kImages.size(), "labels-idx1-ubyte");
      if (name.ends_with(".gz")) name.resize(name.size() - 3);
      for (const char* suffix : {"", ".gz"}) {
        const std::filesystem::path candidate = data.parent_path() / (name + suffix);
        if (std::filesystem::is_regular_file(candidate, ec)) {
          labels = candidate;
          break;
        }
      }
    }
    return read_idx_images(data, labels);
  }
  throw FormatError(what +
                    "is not a supported data set: expected a folder of PNG/JPEG images "
                    "(optionally in class subfolders), a folder with MNIST-format files, a "
                    ".npy array or an IDX file");
}

/// The training images of a program whose --data defaults to Fashion-MNIST: load_images(data), or
/// the train split of kFashionMnistDir when `data` is empty.
inline ImageSet load_training_images(const std::filesystem::path& data) {
  if (data.empty()) return load_mnist_format(kFashionMnistDir, "train");
  return load_images(data);
}

/// Images to evaluate against: the "test" split when `data` (kFashionMnistDir when empty) is a
/// folder with MNIST-format test images (t10k-images-idx3-ubyte[.gz]), otherwise load_images(data),
/// the training data itself. `held_out` tells which.
inline ImageSet load_held_out_images(const std::filesystem::path& data, bool& held_out) {
  const std::filesystem::path dir = data.empty() ? std::filesystem::path(kFashionMnistDir) : data;
  std::error_code ec;
  held_out = std::filesystem::is_directory(dir, ec) &&
             (std::filesystem::exists(dir / "t10k-images-idx3-ubyte", ec) ||
              std::filesystem::exists(dir / "t10k-images-idx3-ubyte.gz", ec));
  if (held_out) return load_mnist_format(dir, "test");
  return load_images(dir);
}

/// Draws a training batch: out.rows() images (the batch size: size `out` once, before the first
/// call) picked uniformly with replacement from `set`, row i by the counter RNG at (stream::data,
/// sample i, `step`); with `flip`, each one mirrored left-right with probability 1/2, drawn at
/// (stream::augment, i, step). Reproducible for any thread count; `labels` gets the picked labels
/// (cleared for an unlabeled set). Allocates nothing after the first call at a given batch size.
///
///   Batch<float> x(128, set.images.cols());
///   std::vector<int> y;
///   ddpm::data::sample_image_batch(set, rng, step, /*flip=*/true, x, y);
///
/// Throws InvalidArgument for an empty or inconsistent set, or `out` without rows or with
/// another column count than set.images.
inline void sample_image_batch(const ImageSet& set, const CounterRng& rng, std::uint32_t step,
                               bool flip, Batch<float>& out, std::vector<int>& labels) {
  const Index n = set.images.rows();
  const Index h = set.height, w = set.width, c = set.channels;
  ddpm::detail::require(n >= 1, "set.images.rows()", n, ">= 1 image");
  ddpm::detail::require_shape(set.images.cols() == c * h * w && h >= 1 && w >= 1, "set.images", n,
                              set.images.cols(),
                              "channels * height * width columns, with height, width >= 1");
  ddpm::detail::require(set.labels.empty() || static_cast<Index>(set.labels.size()) == n,
                        "set.labels.size()", set.labels.size(), "0 or one label per image");
  ddpm::detail::require(out.rows() >= 1 && out.rows() <= Index{0xFFFFFFFF}, "out.rows()",
                        out.rows(), "the batch size, 1..2^32-1: size out before the first call");
  ddpm::detail::require_shape(out.cols() == set.images.cols(), "out", out.rows(), out.cols(),
                              "as many columns as set.images");
  if (set.labels.empty()) {
    labels.clear();
  } else {
    labels.resize(static_cast<std::size_t>(out.rows()));
  }
  ddpm::detail::parallel_for(out.rows(), out.cols(), [&](Index i) {
    const auto sample = static_cast<std::uint32_t>(i);
    const auto pick = static_cast<Index>(
        rng.uniform_int(stream::data, sample, step, static_cast<std::uint64_t>(n)));
    if (!set.labels.empty()) labels[static_cast<std::size_t>(i)] = set.labels[pick];
    const float* from = set.images.row(pick).data();
    float* to = out.row(i).data();
    if (!(flip && rng.uniform(stream::augment, sample, step) < 0.5)) {
      std::copy(from, from + out.cols(), to);
      return;
    }
    for (Index line = 0; line < c * h; ++line) {
      std::reverse_copy(from + line * w, from + (line + 1) * w, to + line * w);
    }
  });
}

/// Trainer data sources over an image set: batch `step` of n images is
/// sample_image_batch(*set, rng, step, flip, ...) with out sized n x set->images.cols(), with the
/// labels (LabeledImageBatches, for a conditional model) or without them (ImageBatches).
///
///   trainer.run(ddpm::data::ImageBatches{&set, ddpm::CounterRng(seed), true}, options, annotate);
struct LabeledImageBatches {
  const ImageSet* set;  ///< the images (not owned: must outlive the source)
  CounterRng rng;       ///< the generator whose (stream, sample, step) addresses the draws
  bool flip = true;     ///< mirror each image left-right with probability 1/2
  /// Fills out (n x set->images.cols()) and labels with batch `step`.
  void operator()(std::int64_t step, Index n, Batch<float>& out, std::vector<int>& labels) const {
    out.resize(n, set->images.cols());
    sample_image_batch(*set, rng, static_cast<std::uint32_t>(step), flip, out, labels);
  }
};
/// The unlabeled data source described above LabeledImageBatches.
struct ImageBatches {
  const ImageSet* set;  ///< the images (not owned: must outlive the source)
  CounterRng rng;       ///< the generator whose (stream, sample, step) addresses the draws
  bool flip = true;     ///< mirror each image left-right with probability 1/2
  /// Fills out (n x set->images.cols()) with batch `step`.
  void operator()(std::int64_t step, Index n, Batch<float>& out) const {
    std::vector<int> ignored;
    LabeledImageBatches{set, rng, flip}(step, n, out, ignored);
  }
};

/// The images as bytes, round((x + 1) * 127.5) clamped to 0..255, in the same order.
template <class Real>
std::vector<std::uint8_t> to_bytes(const Batch<Real>& images) {
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(images.size()));
  const Real* values = images.data();
  for (std::size_t k = 0; k < bytes.size(); ++k) bytes[k] = detail::unit_to_byte(values[k]);
  return bytes;
}

/// Writes planar images in [-1, 1] (one row per image, channels x height x width, e.g. samples) as
/// a uint8 .npy array: N x H x W when channels is 1, else N x C x H x W; values are clamped and
/// rounded as to_bytes does. read_npy_images reads it back.
///
///   ddpm::data::write_samples_npy("samples.npy", samples, 1, 28, 28);  // numpy: (n, 28, 28)
///
/// Throws InvalidArgument for channels other than 1 or 3, a size below 1, or a column count that
/// is not channels * height * width; std::runtime_error naming the file if it cannot be written.
template <class Real>
void write_samples_npy(const std::filesystem::path& path, const Batch<Real>& images, Index channels,
                       Index height, Index width) {
  ddpm::detail::require(channels == 1 || channels == 3, "channels", channels, "1 or 3");
  ddpm::detail::require(height >= 1, "height", height, ">= 1");
  ddpm::detail::require(width >= 1, "width", width, ">= 1");
  ddpm::detail::require_shape(images.cols() == channels * height * width, "images", images.rows(),
                              images.cols(), "channels * height * width columns");
  const auto u = [](Index v) { return static_cast<std::uint64_t>(v); };
  const std::vector<std::uint64_t> shape =
      channels == 1
          ? std::vector<std::uint64_t>{u(images.rows()), u(height), u(width)}
          : std::vector<std::uint64_t>{u(images.rows()), u(channels), u(height), u(width)};
  const std::vector<std::uint8_t> bytes = to_bytes(images);
  io::write_npy(path, shape, std::span<const std::uint8_t>(bytes));
}

}  // namespace ddpm::data
