// SPDX-License-Identifier: MIT
// safetensors files (Hugging Face's weight format: an 8-byte little-endian header length, a JSON
// header naming each tensor's dtype, shape and byte range, then the raw little-endian tensors),
// read strictly and written byte for byte as the reference `safetensors` package writes them.
//
// Reading follows the reference Rust crate's `validate` (safetensors/src/tensor.rs): tensors
// tile the data section from byte 0 without holes or overlaps, each exactly dtype size x numel
// bytes, the header at most 100 MB. One deliberate difference: bytes after the last tensor are
// accepted and ignored (trailing_bytes() counts them). The crate refuses them to stop polyglot
// files; ddpm only reads the tensors, every one of which is still checked to lie inside the file,
// and some writers pad the data section to an alignment. Everything else is a FormatError that
// names the file, the tensor and the byte offsets concerned.
#pragma once

#if !__has_include(<nlohmann/json.hpp>)
#error "ddpm/io/safetensors.hpp needs nlohmann/json (Debian: apt-get install nlohmann-json3-dev)"
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/io/file.hpp"

namespace ddpm::io {

/// The longest header a file may declare: the reference Rust crate's limit (100 MB).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;
/// SafetensorsFile::load refuses larger files before allocating anything.
inline constexpr std::uintmax_t kMaxSafetensorsFileBytes = std::uintmax_t{64} << 30;

/// The element types ddpm reads and writes, named in files as the comments say.
enum class SafetensorsDtype : std::uint8_t {
  f64,      ///< "F64", IEEE binary64
  f32,      ///< "F32", IEEE binary32
  f16,      ///< "F16", IEEE binary16 (half)
  bf16,     ///< "BF16", bfloat16: binary32's sign and exponent with 7 mantissa bits
  i64,      ///< "I64", two's complement
  i32,      ///< "I32"
  i16,      ///< "I16"
  i8,       ///< "I8"
  u8,       ///< "U8"
  boolean,  ///< "BOOL", one byte, 0 or 1
};

}  // namespace ddpm::io

namespace ddpm {

/// The safetensors dtype names ("F32", "BF16", ...) for ddpm::to_string and ddpm::parse_enum.
template <>
struct EnumTable<io::SafetensorsDtype> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "safetensors dtype";
  /// Every value once, as the file spells it.
  static constexpr std::array<EnumName<io::SafetensorsDtype>, 10> names = {
      {{io::SafetensorsDtype::f64, "F64"},
       {io::SafetensorsDtype::f32, "F32"},
       {io::SafetensorsDtype::f16, "F16"},
       {io::SafetensorsDtype::bf16, "BF16"},
       {io::SafetensorsDtype::i64, "I64"},
       {io::SafetensorsDtype::i32, "I32"},
       {io::SafetensorsDtype::i16, "I16"},
       {io::SafetensorsDtype::i8, "I8"},
       {io::SafetensorsDtype::u8, "U8"},
       {io::SafetensorsDtype::boolean, "BOOL"}}};
};

}  // namespace ddpm

namespace ddpm::io {

/// Bytes per element of `dtype`.
[[nodiscard]] constexpr std::size_t safetensors_item_size(SafetensorsDtype dtype) noexcept {
  switch (dtype) {
    case SafetensorsDtype::f64:
    case SafetensorsDtype::i64:
      return 8;
    case SafetensorsDtype::f32:
    case SafetensorsDtype::i32:
      return 4;
    case SafetensorsDtype::f16:
    case SafetensorsDtype::bf16:
    case SafetensorsDtype::i16:
      return 2;
    case SafetensorsDtype::i8:
    case SafetensorsDtype::u8:
    case SafetensorsDtype::boolean:
      return 1;
  }
  return 1;
}

/// Whether `dtype` is a floating-point type (F64, F32, F16, BF16).
[[nodiscard]] constexpr bool is_floating(SafetensorsDtype dtype) noexcept {
  return dtype == SafetensorsDtype::f64 || dtype == SafetensorsDtype::f32 ||
         dtype == SafetensorsDtype::f16 || dtype == SafetensorsDtype::bf16;
}

/// The C++ element types SafetensorsFile::values and SafetensorsWriter::add convert from and to:
/// float, double and the fixed-width integers std::int64_t, std::int32_t, std::int16_t,
/// std::int8_t and std::uint8_t.
template <class T>
concept SafetensorsElement =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::int64_t> ||
    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int16_t> ||
    std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t>;

/// The value of the IEEE half-precision number with bit pattern `bits` (exact: every half is a
/// float). NaN payloads are kept.
[[nodiscard]] inline float half_bits_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t out = sign;
  if (exponent == 0x1f) {
    out |= 0x7f800000u | (mantissa << 13);  // infinity or NaN
  } else if (exponent != 0) {
    out |= ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa != 0) {
    // Subnormal half (mantissa x 2^-24): a normal float; shift the leading 1 to bit 10.
    const int shift = std::countl_zero(mantissa) - 21;
    mantissa <<= shift;
    out |= (static_cast<std::uint32_t>(127 - 14 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(out);
}

/// The value of the bfloat16 number with bit pattern `bits` (exact: bfloat16 is the top half of a
/// float).
[[nodiscard]] inline float bfloat16_bits_to_float(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

namespace detail {

/// `x` rounded to the nearest binary format with `ExpBits` exponent and `MantBits` mantissa bits
/// (ties to even; overflow to infinity; gradual underflow through the subnormals), as its bit
/// pattern. Rounds from double in one step: rounding through float first would round twice.
/// A NaN becomes a quiet NaN that keeps the top payload bits and the sign.
template <int ExpBits, int MantBits>
[[nodiscard]] std::uint16_t round_to_small_float(double x) noexcept {
  static_assert(1 + ExpBits + MantBits == 16);
  constexpr int bias = (1 << (ExpBits - 1)) - 1;
  constexpr std::uint16_t infinity = static_cast<std::uint16_t>(((1u << ExpBits) - 1) << MantBits);
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
  const auto sign = static_cast<std::uint16_t>((bits >> 63) << 15);
  const int exponent_field = static_cast<int>((bits >> 52) & 0x7ffu);
  const std::uint64_t mantissa = bits & ((std::uint64_t{1} << 52) - 1);
  if (exponent_field == 0x7ff) {
    if (mantissa == 0) return sign | infinity;
    return static_cast<std::uint16_t>(sign | infinity | (1u << (MantBits - 1)) |
                                      (mantissa >> (52 - MantBits)));
  }
  // Double subnormals (< 2^-1022) are far below half the smallest subnormal of either format.
  if (exponent_field == 0) return sign;
  const int e = exponent_field - 1023;
  std::uint64_t kept = 0;
  std::uint64_t dropped = 0;
  int shift = 0;
  if (e >= 1 - bias) {
    if (e > bias) return sign | infinity;
    shift = 52 - MantBits;
    kept = (static_cast<std::uint64_t>(e + bias) << MantBits) | (mantissa >> shift);
    dropped = mantissa & ((std::uint64_t{1} << shift) - 1);
  } else {
    // Subnormal: count units of 2^(1 - bias - MantBits) in the full significand.
    shift = 53 - bias - MantBits - e;
    if (shift > 53) return sign;  // below half the smallest subnormal: rounds to zero
    const std::uint64_t significand = mantissa | (std::uint64_t{1} << 52);
    kept = significand >> shift;
    dropped = significand & ((std::uint64_t{1} << shift) - 1);
  }
  const std::uint64_t half = std::uint64_t{1} << (shift - 1);
  // A carry out of the mantissa steps the exponent, up to infinity: the encoding is monotone.
  if (dropped > half || (dropped == half && (kept & 1u) != 0)) ++kept;
  return static_cast<std::uint16_t>(sign | kept);
}

}  // namespace detail

/// The bit pattern of `x` rounded to IEEE half precision (to nearest, ties to even; overflow to
/// infinity; subnormals kept).
[[nodiscard]] inline std::uint16_t double_to_half_bits(double x) noexcept {
  return detail::round_to_small_float<5, 10>(x);
}

/// The bit pattern of `x` rounded to bfloat16 (to nearest, ties to even; overflow to infinity;
/// subnormals kept).
[[nodiscard]] inline std::uint16_t double_to_bfloat16_bits(double x) noexcept {
  return detail::round_to_small_float<8, 7>(x);
}

/// One tensor of a safetensors file: where its bytes are and how to read them.
struct SafetensorsTensor {
  std::string name;                                ///< the key in the header, e.g. "net.0.weight"
  SafetensorsDtype dtype = SafetensorsDtype::f32;  ///< the element type
  std::vector<std::int64_t> shape;                 ///< empty for a 0-d (scalar) tensor
  std::size_t begin = 0;  ///< first byte, counted from the start of the data section
  std::size_t end = 0;    ///< one past the last byte, counted from the start of the data section

  /// The number of elements: the product of the shape (1 for a scalar, 0 when a dimension is 0).
  [[nodiscard]] std::int64_t numel() const {
    // A zero dimension first: the other dimensions' product may exceed int64 (the file's byte
    // count does not; SafetensorsFile checks it).
    if (std::find(shape.begin(), shape.end(), std::int64_t{0}) != shape.end()) return 0;
    std::int64_t n = 1;
    for (const std::int64_t d : shape) n *= d;
    return n;
  }
};

namespace detail {

/// The name of a SafetensorsElement type in messages.
template <SafetensorsElement T>
constexpr std::string_view element_name() {
  if constexpr (std::is_same_v<T, float>) return "float";
  if constexpr (std::is_same_v<T, double>) return "double";
  if constexpr (std::is_same_v<T, std::int64_t>) return "std::int64_t";
  if constexpr (std::is_same_v<T, std::int32_t>) return "std::int32_t";
  if constexpr (std::is_same_v<T, std::int16_t>) return "std::int16_t";
  if constexpr (std::is_same_v<T, std::int8_t>) return "std::int8_t";
  if constexpr (std::is_same_v<T, std::uint8_t>) return "std::uint8_t";
}

/// The `Bytes`-byte little-endian unsigned integer at `p` (any host byte order).
template <std::size_t Bytes>
[[nodiscard]] std::uint64_t load_le(const std::byte* p) noexcept {
  std::uint64_t v = 0;
  for (std::size_t b = 0; b < Bytes; ++b) v |= std::to_integer<std::uint64_t>(p[b]) << (8 * b);
  return v;
}

/// Stores the low `Bytes` bytes of `v` little-endian at `p`.
template <std::size_t Bytes>
void store_le(std::uint64_t v, std::byte* p) noexcept {
  for (std::size_t b = 0; b < Bytes; ++b) p[b] = static_cast<std::byte>((v >> (8 * b)) & 0xffu);
}

/// Calls `f(i, value)` for each of the `n` elements of `dtype` at `p`, value as double (float
/// dtypes; exact) or std::int64_t (integer dtypes and BOOL, whose nonzero bytes read as 1).
template <class F>
void for_each_element(SafetensorsDtype dtype, const std::byte* p, std::size_t n, F&& f) {
  switch (dtype) {
    case SafetensorsDtype::f64:
      for (std::size_t i = 0; i < n; ++i) f(i, std::bit_cast<double>(load_le<8>(p + 8 * i)));
      return;
    case SafetensorsDtype::f32:
      for (std::size_t i = 0; i < n; ++i) {
        f(i, static_cast<double>(
                 std::bit_cast<float>(static_cast<std::uint32_t>(load_le<4>(p + 4 * i)))));
      }
      return;
    case SafetensorsDtype::f16:
      for (std::size_t i = 0; i < n; ++i) {
        f(i, static_cast<double>(
                 half_bits_to_float(static_cast<std::uint16_t>(load_le<2>(p + 2 * i)))));
      }
      return;
    case SafetensorsDtype::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        f(i, static_cast<double>(
                 bfloat16_bits_to_float(static_cast<std::uint16_t>(load_le<2>(p + 2 * i)))));
      }
      return;
    case SafetensorsDtype::i64:
      for (std::size_t i = 0; i < n; ++i) f(i, static_cast<std::int64_t>(load_le<8>(p + 8 * i)));
      return;
    case SafetensorsDtype::i32:
      for (std::size_t i = 0; i < n; ++i) {
        f(i, static_cast<std::int64_t>(static_cast<std::int32_t>(load_le<4>(p + 4 * i))));
      }
      return;
    case SafetensorsDtype::i16:
      for (std::size_t i = 0; i < n; ++i) {
        f(i, static_cast<std::int64_t>(static_cast<std::int16_t>(load_le<2>(p + 2 * i))));
      }
      return;
    case SafetensorsDtype::i8:
      for (std::size_t i = 0; i < n; ++i) {
        f(i, static_cast<std::int64_t>(static_cast<std::int8_t>(load_le<1>(p + i))));
      }
      return;
    case SafetensorsDtype::u8:
      for (std::size_t i = 0; i < n; ++i) f(i, static_cast<std::int64_t>(load_le<1>(p + i)));
      return;
    case SafetensorsDtype::boolean:
      for (std::size_t i = 0; i < n; ++i) f(i, std::int64_t{load_le<1>(p + i) != 0 ? 1 : 0});
      return;
  }
}

/// The smallest and largest value an integer dtype holds (BOOL: 0 and 1).
[[nodiscard]] constexpr std::pair<std::int64_t, std::int64_t> integer_range(
    SafetensorsDtype dtype) noexcept {
  switch (dtype) {
    case SafetensorsDtype::i32:
      return {std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max()};
    case SafetensorsDtype::i16:
      return {std::numeric_limits<std::int16_t>::min(), std::numeric_limits<std::int16_t>::max()};
    case SafetensorsDtype::i8:
      return {std::numeric_limits<std::int8_t>::min(), std::numeric_limits<std::int8_t>::max()};
    case SafetensorsDtype::u8:
      return {0, 255};
    case SafetensorsDtype::boolean:
      return {0, 1};
    default:
      return {std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()};
  }
}

/// Where the reference writer puts a dtype: tensors are laid out by descending rank, then by
/// name, so that wider elements come first and stay aligned (the Rust crate's `Dtype` order).
[[nodiscard]] constexpr int alignment_rank(SafetensorsDtype dtype) noexcept {
  switch (dtype) {
    case SafetensorsDtype::boolean:
      return 0;
    case SafetensorsDtype::u8:
      return 1;
    case SafetensorsDtype::i8:
      return 2;
    case SafetensorsDtype::i16:
      return 3;
    case SafetensorsDtype::f16:
      return 4;
    case SafetensorsDtype::bf16:
      return 5;
    case SafetensorsDtype::i32:
      return 6;
    case SafetensorsDtype::f32:
      return 7;
    case SafetensorsDtype::f64:
      return 8;
    case SafetensorsDtype::i64:
      return 9;
  }
  return 0;
}

/// Whether `text` is valid UTF-8 (what JSON strings must be).
[[nodiscard]] inline bool is_valid_utf8(std::string_view text) {
  try {
    (void)nlohmann::json(std::string(text)).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

}  // namespace detail

/// A safetensors file held in memory: its metadata, its tensors' descriptions, and their values
/// converted on request. The whole file is read once and checked completely on load, so every
/// later accessor works on validated data.
///
///   const auto file = ddpm::io::SafetensorsFile::load("model.safetensors");
///   const std::vector<double> w = file.values<double>("net.0.weight");  // any float dtype
///   const std::vector<std::int64_t>& shape = file.tensor("net.0.weight").shape;
class SafetensorsFile {
 public:
  /// Reads and parses the file at `path`; FormatError when it cannot be read or is not a valid
  /// safetensors file.
  [[nodiscard]] static SafetensorsFile load(const std::filesystem::path& path) {
    const std::string source = path.string();
    std::vector<std::byte> bytes =
        read_file<std::vector<std::byte>>(path, kMaxSafetensorsFileBytes, "safetensors file");
    return parse(std::move(bytes), source);
  }

  /// Parses a whole file's `bytes`; `source` names it in error messages (a path, "<memory>").
  [[nodiscard]] static SafetensorsFile parse(std::vector<std::byte> bytes, std::string source) {
    SafetensorsFile file;
    file.bytes_ = std::move(bytes);
    file.source_ = std::move(source);
    file.parse_();
    return file;
  }

  /// The `__metadata__` entries (empty when the header has none).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept {
    return metadata_;
  }

  /// Every tensor, in data-offset order.
  [[nodiscard]] const std::vector<SafetensorsTensor>& tensors() const noexcept { return tensors_; }

  /// Whether a tensor is called `name`.
  [[nodiscard]] bool contains(std::string_view name) const { return index_.contains(name); }

  /// The tensor called `name`; FormatError naming it and the file when there is none.
  [[nodiscard]] const SafetensorsTensor& tensor(std::string_view name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) {
      throw FormatError(prefix_() + "no tensor '" + std::string(name) + "' (the file has " +
                        std::to_string(tensors_.size()) + " tensors)");
    }
    return tensors_[it->second];
  }

  /// The raw little-endian bytes of the tensor called `name` (C order).
  [[nodiscard]] std::span<const std::byte> bytes(std::string_view name) const {
    const SafetensorsTensor& t = tensor(name);
    return std::span<const std::byte>(bytes_).subspan(data_start_ + t.begin, t.end - t.begin);
  }

  /// The elements of the tensor called `name` converted to `T`, in C (row-major) order.
  ///
  /// float and double read every dtype: F16, BF16 and F32 exactly, F64 into float rounded to
  /// nearest, integers as the nearest representable value, BOOL as 0 or 1. An integer `T`
  /// reads only integer and BOOL tensors (FormatError for a float dtype: rounding reals to
  /// integers is the caller's decision) and throws FormatError naming the element that does
  /// not fit `T`.
  template <SafetensorsElement T>
  [[nodiscard]] std::vector<T> values(std::string_view name) const {
    const SafetensorsTensor& t = tensor(name);
    const auto n = static_cast<std::size_t>(t.numel());
    std::vector<T> out(n);
    const std::byte* p = bytes_.data() + data_start_ + t.begin;
    if constexpr (std::is_floating_point_v<T>) {
      detail::for_each_element(t.dtype, p, n,
                               [&](std::size_t i, auto v) { out[i] = static_cast<T>(v); });
    } else {
      if (is_floating(t.dtype)) {
        throw FormatError(prefix_() + "tensor '" + t.name + "' has dtype " +
                          std::string(to_string(t.dtype)) + "; values<" +
                          std::string(detail::element_name<T>()) +
                          ">() reads integer and BOOL tensors only (read it as float or double)");
      }
      detail::for_each_element(t.dtype, p, n, [&](std::size_t i, auto v) {
        if constexpr (std::is_integral_v<decltype(v)>) {
          if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) {
            throw FormatError(prefix_() + "tensor '" + t.name + "' element " + std::to_string(i) +
                              " = " + std::to_string(v) + " does not fit " +
                              std::string(detail::element_name<T>()));
          }
          out[i] = static_cast<T>(v);
        }
      });
    }
    return out;
  }

  /// The file's path, or the name given to parse().
  [[nodiscard]] const std::string& source() const noexcept { return source_; }

  /// How many bytes follow the last tensor (accepted and ignored; see the file comment).
  [[nodiscard]] std::size_t trailing_bytes() const noexcept { return trailing_bytes_; }

  /// The file offset of the data section (8 + the header length).
  [[nodiscard]] std::size_t data_start() const noexcept { return data_start_; }

 private:
  SafetensorsFile() = default;

  std::string prefix_() const { return "ddpm: safetensors file '" + source_ + "': "; }

  [[noreturn]] void fail_(const std::string& what) const { throw FormatError(prefix_() + what); }

  /// "data_offsets [b, e] (file bytes B to E)" for messages about a tensor's bytes.
  std::string where_(std::uint64_t begin, std::uint64_t end) const {
    return "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
           "] (file bytes " + std::to_string(data_start_ + begin) + " to " +
           std::to_string(data_start_ + end) + ")";
  }

  void parse_() {
    const std::size_t size = bytes_.size();
    if (size < 8) {
      fail_("only " + std::to_string(size) + " bytes, shorter than the 8-byte header length field");
    }
    const std::uint64_t header_bytes = detail::load_le<8>(bytes_.data());
    if (header_bytes > kMaxSafetensorsHeaderBytes) {
      fail_("the header length field (file bytes 0 to 8) says " + std::to_string(header_bytes) +
            " bytes, more than the limit of " + std::to_string(kMaxSafetensorsHeaderBytes));
    }
    if (header_bytes > size - 8) {
      fail_("the header length field (file bytes 0 to 8) says " + std::to_string(header_bytes) +
            " bytes but only " + std::to_string(size - 8) + " follow");
    }
    data_start_ = 8 + static_cast<std::size_t>(header_bytes);
    const std::string header_range =
        "the header (file bytes 8 to " + std::to_string(data_start_) + ")";

    const nlohmann::json header = parse_json_(header_range);
    if (!header.is_object()) {
      fail_(header_range + " is a JSON " + std::string(header.type_name()) + ", not an object");
    }

    std::vector<SafetensorsTensor> tensors;
    tensors.reserve(header.size());
    for (const auto& [key, entry] : header.items()) {
      if (key == "__metadata__") {
        parse_metadata_(entry, header_range);
      } else {
        tensors.push_back(parse_entry_(key, entry, header_range));
      }
    }
    // Ties (empty tensors at one offset) keep a fixed order: by end, then by name.
    std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
      return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });

    const std::size_t data_bytes = size - data_start_;
    std::size_t expected = 0;  // where the next tensor must begin: no holes, no overlaps
    const SafetensorsTensor* previous = nullptr;
    for (const SafetensorsTensor& t : tensors) {
      if (t.end > data_bytes) {
        fail_("tensor '" + t.name + "': " + where_(t.begin, t.end) +
              " end outside the data section (" + std::to_string(data_bytes) +
              " bytes, file bytes " + std::to_string(data_start_) + " to " + std::to_string(size) +
              "); is the file truncated?");
      }
      if (t.begin < expected) {
        fail_("tensor '" + t.name + "': " + where_(t.begin, t.end) + " overlap tensor '" +
              previous->name + "' (" + where_(previous->begin, previous->end) + ")");
      }
      if (t.begin > expected) {
        fail_("tensor '" + t.name + "': " + where_(t.begin, t.end) + " leave a hole of " +
              std::to_string(t.begin - expected) + " bytes after " +
              (previous == nullptr ? std::string("the start of the data section")
                                   : "tensor '" + previous->name + "'") +
              " (tensors must tile the data section)");
      }
      expected = t.end;
      previous = &t;
    }
    trailing_bytes_ = data_bytes - expected;

    tensors_ = std::move(tensors);
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  }

  /// The header as JSON; FormatError for invalid JSON and for a key repeated in one object
  /// (nlohmann keeps the last silently, the reference crate too, which would hide a tensor).
  nlohmann::json parse_json_(const std::string& header_range) const {
    const char* first = reinterpret_cast<const char*>(bytes_.data() + 8);
    const char* last = reinterpret_cast<const char*>(bytes_.data() + data_start_);
    // nlohmann stops at a NUL as at the end of input, so "{...}\0anything" would parse. JSON text
    // has no raw NUL anywhere (strings escape it), and the reference crate refuses NUL padding.
    if (const char* nul = std::find(first, last, '\0'); nul != last) {
      fail_(header_range + " has a NUL byte at file byte " + std::to_string(8 + (nul - first)) +
            " (JSON allows none; pad the header with spaces)");
    }
    std::vector<std::set<std::string>> open_objects;
    const nlohmann::json::parser_callback_t track_keys =
        [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          using Event = nlohmann::json::parse_event_t;
          if (event == Event::object_start) {
            open_objects.emplace_back();
          } else if (event == Event::object_end) {
            open_objects.pop_back();
          } else if (event == Event::key) {
            const std::string& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second) {
              fail_(header_range + " has the key '" + key + "' twice in one object" +
                    (open_objects.size() == 1 ? " (two tensors of one name)" : ""));
            }
          }
          return true;
        };
    try {
      return nlohmann::json::parse(first, last, track_keys);
    } catch (const nlohmann::json::parse_error& e) {
      fail_(header_range + " is not valid JSON (error at file byte " + std::to_string(7 + e.byte) +
            "): " + e.what());
    } catch (const nlohmann::json::exception& e) {
      // Valid syntax the parser still refuses, e.g. a number beyond double's range (fuzz finding).
      fail_(header_range + " cannot be read as JSON: " + e.what());
    }
  }

  void parse_metadata_(const nlohmann::json& entry, const std::string& header_range) {
    if (!entry.is_object()) {
      fail_(header_range + ": __metadata__ is a JSON " + std::string(entry.type_name()) +
            ", not an object of strings");
    }
    for (const auto& [key, value] : entry.items()) {
      if (!value.is_string()) {
        fail_(header_range + ": __metadata__ entry '" + key + "' is a JSON " +
              std::string(value.type_name()) + ", not a string");
      }
      metadata_.emplace(key, value.get<std::string>());
    }
  }

  SafetensorsTensor parse_entry_(const std::string& name, const nlohmann::json& entry,
                                 const std::string& header_range) const {
    const std::string what = "tensor '" + name + "' in " + header_range;
    if (!entry.is_object()) {
      fail_(what + " is a JSON " + std::string(entry.type_name()) +
            ", not an object with dtype, shape and data_offsets");
    }
    for (const char* required : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(required)) fail_(what + " has no " + required);
    }
    for (const auto& [key, value] : entry.items()) {
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        fail_(what + " has the unknown key '" + key + "' (allowed: dtype, shape, data_offsets)");
      }
    }

    SafetensorsTensor t;
    t.name = name;
    const nlohmann::json& dtype = entry["dtype"];
    if (!dtype.is_string()) fail_(what + ": dtype is a JSON " + std::string(dtype.type_name()));
    const std::string& dtype_name = dtype.get_ref<const std::string&>();
    bool known = false;
    for (const auto& [value, text] : EnumTable<SafetensorsDtype>::names) {
      if (text == dtype_name) {
        t.dtype = value;
        known = true;
      }
    }
    if (!known) {
      fail_(what + ": unsupported dtype '" + dtype_name + "' (ddpm reads " +
            enum_choices<SafetensorsDtype>() + ")");
    }

    // Dimensions are checked against int64 and their product against overflow before anything
    // is sized from them.
    const nlohmann::json& shape = entry["shape"];
    if (!shape.is_array()) fail_(what + ": shape is a JSON " + std::string(shape.type_name()));
    constexpr auto max_dim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    bool has_zero = false;
    for (const nlohmann::json& d : shape) {
      if (!d.is_number_unsigned() || d.get<std::uint64_t>() > max_dim) {
        fail_(what + ": shape " + shape.dump() + " has the dimension " + d.dump() +
              ", not an integer in [0, 2^63)");
      }
      t.shape.push_back(static_cast<std::int64_t>(d.get<std::uint64_t>()));
      has_zero = has_zero || t.shape.back() == 0;
    }
    std::uint64_t byte_count = 0;
    if (!has_zero) {
      std::uint64_t n = safetensors_item_size(t.dtype);  // bytes, accumulated dimension by dim.
      for (const std::int64_t d : t.shape) {
        const auto ud = static_cast<std::uint64_t>(d);
        if (n > max_dim / ud) {
          fail_(what + ": shape " + shape.dump() + " x " +
                std::to_string(safetensors_item_size(t.dtype)) + "-byte " + dtype_name +
                " elements overflows 2^63 bytes");
        }
        n *= ud;
      }
      byte_count = n;
    }

    const nlohmann::json& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      fail_(what + ": data_offsets " + offsets.dump() +
            " is not a pair of non-negative integers [begin, end]");
    }
    const auto begin = offsets[0].get<std::uint64_t>();
    const auto end = offsets[1].get<std::uint64_t>();
    if (end < begin) fail_(what + ": data_offsets " + offsets.dump() + " are reversed");
    if (end - begin != byte_count) {
      fail_("tensor '" + name + "': " + where_(begin, end) + " hold " +
            std::to_string(end - begin) + " bytes, but " + dtype_name + " x shape " + shape.dump() +
            " needs " + std::to_string(byte_count));
    }
    // parse_() checks that the tensors lie in the data section. Offsets beyond it saturate, so
    // that the check still sees them where size_t is narrower than 64 bits.
    constexpr std::uint64_t saturate = std::numeric_limits<std::size_t>::max();
    t.begin = static_cast<std::size_t>(std::min(begin, saturate));
    t.end = static_cast<std::size_t>(std::min(end, saturate));
    return t;
  }

  std::vector<std::byte> bytes_;
  std::string source_;
  std::size_t data_start_ = 0;
  std::size_t trailing_bytes_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

/// Builds a safetensors file tensor by tensor and writes it as the reference `safetensors`
/// package does: `__metadata__` first, tensors laid out by descending dtype width then by name,
/// the JSON header compact and padded with spaces to a multiple of 8 bytes. Files without
/// metadata, or with one metadata entry, are byte-identical to the package's (it orders several
/// metadata entries at random; this writer sorts them).
///
///   ddpm::io::SafetensorsWriter out;
///   out.set_metadata("format", "pt");
///   out.add<double>("net.0.weight", {64, 2}, weights, ddpm::io::SafetensorsDtype::f32);
///   out.write("model.safetensors");
class SafetensorsWriter {
 public:
  /// Sets the `__metadata__` entry `key` (replacing an earlier value). Keys and values must be
  /// valid UTF-8.
  void set_metadata(std::string key, std::string value) {
    ddpm::detail::require(detail::is_valid_utf8(key), "metadata key", key, "valid UTF-8");
    ddpm::detail::require(detail::is_valid_utf8(value), "metadata value", value, "valid UTF-8");
    metadata_.insert_or_assign(std::move(key), std::move(value));
  }

  /// Adds the tensor `name` of `shape` with `values` in C (row-major) order, stored as `stored`.
  ///
  /// Float dtypes take any `T` (F32, F16 and BF16 round to nearest, ties to even). Integer dtypes
  /// and BOOL take integer `T` only, each value within the dtype's range (BOOL: 0 or 1).
  /// InvalidArgument for a repeated, invalid-UTF-8 or "__metadata__" name, a negative
  /// dimension, a shape whose element count differs from values.size(), or a value that does not
  /// fit. The values are copied.
  template <SafetensorsElement T>
  void add(std::string name, std::vector<std::int64_t> shape, std::span<const T> values,
           SafetensorsDtype stored = SafetensorsDtype::f32) {
    ddpm::detail::require(name != "__metadata__" && detail::is_valid_utf8(name), "name", name,
                          "valid UTF-8 other than \"__metadata__\" (the header's metadata key)");
    const bool fresh = std::none_of(entries_.begin(), entries_.end(),
                                    [&](const Entry& e) { return e.name == name; });
    ddpm::detail::require(fresh, "name", name, "a name not added before");
    for (const std::int64_t d : shape) {
      ddpm::detail::require(d >= 0, "shape dimension", d, "a non-negative integer");
    }
    std::uint64_t n = 1;
    if (std::find(shape.begin(), shape.end(), std::int64_t{0}) != shape.end()) n = 0;
    for (const std::int64_t d : shape) {
      // An element count beyond size_t cannot match values.size(); saturating keeps it so.
      const auto ud = static_cast<std::uint64_t>(d);
      n = ud == 0 || n <= std::numeric_limits<std::uint64_t>::max() / ud
              ? n * ud
              : std::numeric_limits<std::uint64_t>::max();
    }
    ddpm::detail::require(n == values.size(), "values.size()", values.size(), [&] {
      return "the number of elements of shape " + nlohmann::json(shape).dump() + " = " +
             std::to_string(n);
    });
    if constexpr (std::is_floating_point_v<T>) {
      ddpm::detail::require(is_floating(stored), "stored", to_string(stored),
                            "F64, F32, F16 or BF16 for floating-point values (round them to "
                            "integers yourself to store an integer dtype)");
    }

    Entry entry{std::move(name), stored, std::move(shape), {}};
    const std::size_t item = safetensors_item_size(stored);
    entry.data.resize(values.size() * item);
    std::byte* out = entry.data.data();
    for (std::size_t i = 0; i < values.size(); ++i) {
      encode_(values[i], stored, out + i * item, entry.name, i);
    }
    entries_.push_back(std::move(entry));
  }

  /// add() for a std::vector, so `add("w", {2, 3}, v)` deduces T.
  template <SafetensorsElement T>
  void add(std::string name, std::vector<std::int64_t> shape, const std::vector<T>& values,
           SafetensorsDtype stored = SafetensorsDtype::f32) {
    add<T>(std::move(name), std::move(shape), std::span<const T>(values), stored);
  }

  /// The whole file as bytes.
  [[nodiscard]] std::vector<std::byte> bytes() const {
    const std::string text = serialize_();
    std::vector<std::byte> out(text.size());
    std::transform(text.begin(), text.end(), out.begin(),
                   [](char c) { return static_cast<std::byte>(c); });
    return out;
  }

  /// Writes the file atomically (a temporary file renamed over `path`, io/file.hpp); throws
  /// std::runtime_error naming the file when it cannot be written.
  void write(const std::filesystem::path& path) const { write_file_atomically(path, serialize_()); }

 private:
  struct Entry {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
  };

  template <class T>
  static void encode_(T value, SafetensorsDtype stored, std::byte* out, const std::string& name,
                      std::size_t index) {
    switch (stored) {
      case SafetensorsDtype::f64:
        detail::store_le<8>(std::bit_cast<std::uint64_t>(static_cast<double>(value)), out);
        return;
      case SafetensorsDtype::f32:
        detail::store_le<4>(std::bit_cast<std::uint32_t>(static_cast<float>(value)), out);
        return;
      case SafetensorsDtype::f16:
        detail::store_le<2>(double_to_half_bits(static_cast<double>(value)), out);
        return;
      case SafetensorsDtype::bf16:
        detail::store_le<2>(double_to_bfloat16_bits(static_cast<double>(value)), out);
        return;
      default:
        break;
    }
    if constexpr (std::is_integral_v<T>) {
      // Not a structured binding: clang before 16 cannot capture one in the lambda below.
      const std::pair<std::int64_t, std::int64_t> range = detail::integer_range(stored);
      const std::int64_t low = range.first, high = range.second;
      const auto v = static_cast<std::int64_t>(value);
      ddpm::detail::require(v >= low && v <= high, "value", v, [&] {
        return "an integer in [" + std::to_string(low) + ", " + std::to_string(high) + "] for " +
               std::string(to_string(stored)) + " (tensor '" + name + "', element " +
               std::to_string(index) + ")";
      });
      const auto bits = static_cast<std::uint64_t>(v);  // two's complement
      switch (safetensors_item_size(stored)) {
        case 8:
          detail::store_le<8>(bits, out);
          return;
        case 4:
          detail::store_le<4>(bits, out);
          return;
        case 2:
          detail::store_le<2>(bits, out);
          return;
        default:
          detail::store_le<1>(bits, out);
          return;
      }
    }
  }

  std::string serialize_() const {
    std::vector<const Entry*> order;
    for (const Entry& e : entries_) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
      const int ra = detail::alignment_rank(a->dtype);
      const int rb = detail::alignment_rank(b->dtype);
      return ra != rb ? ra > rb : a->name < b->name;
    });
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const Entry* e : order) {
      nlohmann::ordered_json info = nlohmann::ordered_json::object();
      info["dtype"] = to_string(e->dtype);
      info["shape"] = e->shape;
      info["data_offsets"] = nlohmann::ordered_json::array({offset, offset + e->data.size()});
      header[e->name] = std::move(info);
      offset += e->data.size();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    std::array<std::byte, 8> length{};
    detail::store_le<8>(text.size(), length.data());
    for (std::size_t b = 0; b < 8; ++b) out[b] = static_cast<char>(length[b]);
    out.reserve(8 + text.size() + offset);
    out += text;
    for (const Entry* e : order) {
      out.append(reinterpret_cast<const char*>(e->data.data()), e->data.size());
    }
    return out;
  }

  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ddpm::io
