// SPDX-License-Identifier: MIT
// NumPy .npy files (float32, float64, uint8; C order; any shape), read strictly and written so that
// numpy.load reads them unchanged.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <bit>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/file.hpp"

namespace ddpm::io {

/// Files above this size are refused by read_npy before anything is allocated (default limit).
inline constexpr std::uintmax_t kMaxNpyBytes = std::uintmax_t{16} << 30;
/// The most dimensions a shape may have (NumPy 2 allows 64).
inline constexpr std::size_t kMaxNpyDims = 64;
/// The longest header read_npy parses (NumPy itself refuses headers above 10000 bytes by default).
inline constexpr std::uint32_t kMaxNpyHeaderBytes = std::uint32_t{1} << 20;

/// The element types ddpm reads and writes, with their .npy descr.
enum class NpyDtype : std::uint8_t {
  u8,   ///< '|u1', numpy.uint8
  f32,  ///< '<f4', numpy.float32
  f64,  ///< '<f8', numpy.float64
};

/// The .npy type string of `dtype`, e.g. "<f4".
[[nodiscard]] inline std::string_view npy_descr(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::u8:
      return "|u1";
    case NpyDtype::f32:
      return "<f4";
    case NpyDtype::f64:
      return "<f8";
  }
  return "?";
}

/// Bytes per element of `dtype`.
[[nodiscard]] inline std::size_t npy_item_size(NpyDtype dtype) {
  return dtype == NpyDtype::u8 ? 1 : dtype == NpyDtype::f32 ? 4 : 8;
}

/// The element types of write_npy and NpyArray::values: float, double and std::uint8_t.
template <class T>
concept NpyElement =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, std::uint8_t>;

/// The NpyDtype of an NpyElement type.
template <NpyElement T>
inline constexpr NpyDtype npy_dtype_of = std::is_same_v<T, float>    ? NpyDtype::f32
                                         : std::is_same_v<T, double> ? NpyDtype::f64
                                                                     : NpyDtype::u8;

namespace detail {

/// Copies `n` little-endian elements of type T from `in` to `out` (swapping on big-endian hosts).
template <NpyElement T>
void copy_little_endian(const unsigned char* in, T* out, std::size_t n) {
  if constexpr (std::endian::native == std::endian::little || sizeof(T) == 1) {
    if (n > 0) std::memcpy(out, in, n * sizeof(T));
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      unsigned char raw[sizeof(T)];
      for (std::size_t b = 0; b < sizeof(T); ++b) raw[b] = in[i * sizeof(T) + sizeof(T) - 1 - b];
      std::memcpy(out + i, raw, sizeof(T));
    }
  }
}

}  // namespace detail

/// An array read from a .npy file: its dtype, its shape and its elements in C (row-major) order,
/// kept as the file's little-endian bytes. Use values<T>() to get typed elements.
///
///   const ddpm::io::NpyArray a = ddpm::io::read_npy("x.npy");  // e.g. shape {1000, 2}, f32
///   const std::vector<double> x = a.values<double>();          // exact for every dtype
struct NpyArray {
  NpyDtype dtype = NpyDtype::f64;    ///< the element type of the file
  std::vector<std::uint64_t> shape;  ///< empty for a 0-d (scalar) array
  std::vector<unsigned char> bytes;  ///< size() * item size bytes, little-endian, C order

  /// The number of elements: the product of the shape (1 for a scalar).
  [[nodiscard]] std::uint64_t size() const {
    std::uint64_t n = 1;
    for (const std::uint64_t d : shape) n *= d;
    return n;
  }

  /// The elements converted to T. Converting to float or double works for every dtype (exact,
  /// except float64 -> float, which rounds); std::uint8_t requires a uint8 array, else it throws
  /// InvalidArgument (narrowing reals to bytes is the caller's decision).
  template <NpyElement T>
  [[nodiscard]] std::vector<T> values() const {
    const auto n = static_cast<std::size_t>(size());
    std::vector<T> out(n);
    if (dtype == npy_dtype_of<T>) {
      detail::copy_little_endian(bytes.data(), out.data(), n);
      return out;
    }
    ddpm::detail::require(!std::is_same_v<T, std::uint8_t>, "NpyArray::values<std::uint8_t>()",
                          npy_descr(dtype), "an array of dtype '|u1' (uint8)");
    if (dtype == NpyDtype::u8) {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(bytes[i]);
    } else if (dtype == NpyDtype::f32) {
      std::vector<float> typed(n);
      detail::copy_little_endian(bytes.data(), typed.data(), n);
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(typed[i]);
    } else {
      std::vector<double> typed(n);
      detail::copy_little_endian(bytes.data(), typed.data(), n);
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<T>(typed[i]);
    }
    return out;
  }
};

namespace detail {

/// What the header of a .npy file says, and where its data starts.
struct NpyHeader {
  NpyDtype dtype = NpyDtype::f64;
  std::vector<std::uint64_t> shape;
  std::uint64_t data_offset = 0;  ///< bytes of magic, version, length field and header text
};

/// Renders a shape as Python does: (), (5,), (3, 4).
inline std::string shape_text(std::span<const std::uint64_t> shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text.append(", ");
    text.append(std::to_string(shape[i]));
  }
  if (shape.size() == 1) text.push_back(',');
  text.push_back(')');
  return text;
}

/// A strict parser of the header dict NumPy writes, e.g.
/// "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" followed by spaces and '\n'.
/// Keys may come in any order; whitespace may appear between tokens; nothing else is accepted.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, std::string prefix)
      : text_(text), prefix_(std::move(prefix)) {}

  void parse(NpyHeader& header) {
    bool has_descr = false, has_order = false, has_shape = false;
    skip_blanks();
    expect('{', "the header must be a Python dict starting with '{'");
    while (true) {
      skip_blanks();
      if (peek() == '}') break;
      const std::string key = string_literal("a quoted key or '}'");
      skip_blanks();
      expect(':', "expected ':' after key '" + key + "'");
      skip_blanks();
      if (key == "descr") {
        duplicate(has_descr, key);
        header.dtype = descr(string_literal("a quoted dtype string such as '<f4' for descr"));
      } else if (key == "fortran_order") {
        duplicate(has_order, key);
        if (word("True")) {
          fail(
              "fortran_order is True (column-major data), which is not supported; save a C-ordered "
              "array, e.g. numpy.save(path, numpy.ascontiguousarray(a))");
        }
        if (!word("False")) fail("fortran_order must be False or True, found " + rest());
      } else if (key == "shape") {
        duplicate(has_shape, key);
        header.shape = shape();
      } else {
        fail("unknown header key '" + key + "'; expected 'descr', 'fortran_order' and 'shape'");
      }
      skip_blanks();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}')
        fail("expected ',' or '}' after the value of '" + key + "', found " + rest());
    }
    ++pos_;  // '}'
    skip_blanks();
    if (pos_ != text_.size()) fail("unexpected text after the header dict: " + rest());
    if (!has_descr) fail("the header has no 'descr' (dtype)");
    if (!has_order) fail("the header has no 'fortran_order'");
    if (!has_shape) fail("the header has no 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw FormatError(prefix_ + what); }

  [[nodiscard]] char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void skip_blanks() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  /// The rest of the header from here, quoted and cut short, for messages.
  [[nodiscard]] std::string rest() const {
    if (pos_ >= text_.size()) return "the end of the header";
    std::string shown = "'";
    for (std::size_t i = pos_; i < text_.size() && i < pos_ + 30; ++i) {
      const auto c = static_cast<unsigned char>(text_[i]);
      shown.push_back(c >= 32 && c < 127 ? static_cast<char>(c) : '?');
    }
    if (text_.size() > pos_ + 30) shown.append("...");
    shown.push_back('\'');
    return shown;
  }

  void expect(char c, const std::string& what) {
    if (peek() != c) fail(what + ", found " + rest());
    ++pos_;
  }

  void duplicate(bool& seen, const std::string& key) {
    if (seen) fail("the header has key '" + key + "' twice");
    seen = true;
  }

  bool word(std::string_view w) {
    if (text_.substr(pos_, w.size()) != w) return false;
    const std::size_t end = pos_ + w.size();
    if (end < text_.size() &&
        (std::isalnum(static_cast<unsigned char>(text_[end])) != 0 || text_[end] == '_'))
      return false;
    pos_ = end;
    return true;
  }

  /// A Python string literal in single or double quotes, without escapes.
  std::string string_literal(const std::string& what) {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected " + what + ", found " + rest());
    const std::size_t start = ++pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '\\' || c < 32 || c >= 127) fail("unsupported character in a header string");
      ++pos_;
    }
    if (pos_ >= text_.size()) fail("unterminated string in the header");
    ++pos_;
    return std::string(text_.substr(start, pos_ - 1 - start));
  }

  NpyDtype descr(const std::string& d) {
    if (d == "<f4") return NpyDtype::f32;
    if (d == "<f8") return NpyDtype::f64;
    if (d == "|u1" || d == "<u1" || d == ">u1" || d == "u1") return NpyDtype::u8;
    if (d == ">f4" || d == ">f8") {
      fail("dtype '" + d + "' is big-endian, which is not supported; convert it with a.astype('<" +
           d.substr(1) + "')");
    }
    fail("unsupported dtype '" + d +
         "'; supported: '<f4' (float32), '<f8' (float64), '|u1' (uint8)");
  }

  std::vector<std::uint64_t> shape() {
    std::vector<std::uint64_t> dims;
    expect('(', "shape must be a tuple such as (3, 4)");
    bool trailing_comma = false;
    while (true) {
      skip_blanks();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') {
        fail("shape entries must be non-negative integers, found " + rest());
      }
      std::uint64_t value = 0;
      while (peek() >= '0' && peek() <= '9') {
        const auto digit = static_cast<std::uint64_t>(peek() - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
          fail("shape entry too large for 64 bits");
        }
        value = value * 10 + digit;
        ++pos_;
      }
      if (dims.size() == kMaxNpyDims) {
        fail("shape has more than " + std::to_string(kMaxNpyDims) + " dimensions");
      }
      dims.push_back(value);
      skip_blanks();
      trailing_comma = peek() == ',';
      if (trailing_comma) {
        ++pos_;
        continue;
      }
      if (peek() != ')') fail("expected ',' or ')' in shape, found " + rest());
    }
    ++pos_;  // ')'
    if (dims.size() == 1 && !trailing_comma) {
      fail("shape (" + std::to_string(dims[0]) + ") is not a tuple; a 1-D shape is written (" +
           std::to_string(dims[0]) + ",)");
    }
    return dims;
  }

  std::string_view text_;
  std::string prefix_;
  std::size_t pos_ = 0;
};

/// Parses the start of a .npy file of `file_size` bytes. `prefix` must hold the first
/// min(file_size, 10 + header length) bytes; call it first with 10 bytes (or fewer if the file is
/// shorter) to learn the header length via `needed`, then again with that many. `what` starts
/// every error message ("ddpm: .npy file 'x.npy': ").
inline bool parse_npy_prefix(std::string_view prefix, std::uint64_t file_size,
                             const std::string& what, NpyHeader& header, std::size_t& needed) {
  const auto fail = [&](const std::string& why) { throw FormatError(what + why); };
  constexpr std::string_view kMagic = "\x93NUMPY";
  if (file_size < kMagic.size() || prefix.substr(0, kMagic.size()) != kMagic) {
    fail("not a .npy file (it does not start with the magic bytes \\x93NUMPY)");
  }
  if (file_size < 10) fail("truncated header (" + std::to_string(file_size) + " bytes)");
  const auto major = static_cast<unsigned char>(prefix[6]);
  const auto minor = static_cast<unsigned char>(prefix[7]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    fail("unsupported format version " + std::to_string(major) + "." + std::to_string(minor) +
         " (supported: 1.0, 2.0, 3.0)");
  }
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  if (file_size < 8 + length_bytes)
    fail("truncated header (" + std::to_string(file_size) + " bytes)");
  if (prefix.size() < 8 + length_bytes) {
    needed = 8 + length_bytes;
    return false;
  }
  std::uint32_t header_length = 0;
  for (std::size_t b = 0; b < length_bytes; ++b) {
    header_length |= std::uint32_t{static_cast<unsigned char>(prefix[8 + b])} << (8 * b);
  }
  const std::uint64_t data_offset = 8 + length_bytes + std::uint64_t{header_length};
  if (data_offset > file_size) {
    fail("truncated header: the header length field says " + std::to_string(header_length) +
         " bytes but only " + std::to_string(file_size - 8 - length_bytes) + " follow");
  }
  if (header_length > kMaxNpyHeaderBytes) {
    fail("header of " + std::to_string(header_length) + " bytes is longer than the limit of " +
         std::to_string(kMaxNpyHeaderBytes));
  }
  if (prefix.size() < data_offset) {
    needed = static_cast<std::size_t>(data_offset);
    return false;
  }
  NpyHeaderParser(prefix.substr(8 + length_bytes, header_length), what + "header: ").parse(header);
  header.data_offset = data_offset;

  // Sizes are checked against the file before anything is allocated: no overflow, no huge vector.
  const std::uint64_t item = npy_item_size(header.dtype);
  std::uint64_t elements = 1;
  bool overflow = false;
  for (const std::uint64_t d : header.shape) {
    if (d != 0 && elements > std::numeric_limits<std::uint64_t>::max() / d) overflow = true;
    if (!overflow) elements *= d;
  }
  const std::uint64_t have = file_size - data_offset;
  const std::string described = "shape " + shape_text(header.shape) + " of dtype '" +
                                std::string(npy_descr(header.dtype)) + "'";
  if (overflow || elements > std::numeric_limits<std::uint64_t>::max() / item) {
    fail(described + " has more bytes than fit in 64 bits, but the file holds " +
         std::to_string(have) + " data bytes");
  }
  const std::uint64_t need = elements * item;
  if (need != have) {
    fail(described + " needs " + std::to_string(need) + " data bytes, but the file holds " +
         std::to_string(have) +
         (need > have ? " (truncated, or a wrong shape or dtype)"
                      : " (trailing bytes, or a wrong shape or dtype)"));
  }
  if (need > std::numeric_limits<std::size_t>::max()) fail(described + " is too large to load");
  return true;
}

/// The bytes of a version 1.0 header for `dtype` and `shape`, padded with spaces and ended by '\n'
/// so that the data starts at a multiple of 64 bytes, exactly as numpy.save does.
inline std::string npy_header(NpyDtype dtype, std::span<const std::uint64_t> shape) {
  std::string dict = "{'descr': '";
  dict.append(npy_descr(dtype)).append("', 'fortran_order': False, 'shape': ");
  dict.append(shape_text(shape)).append(", }");
  // numpy: padlen = 64 - ((magic and version 8 + length field 2 + len(dict) + 1) % 64).
  const std::size_t pad = 64 - ((10 + dict.size() + 1) % 64);
  dict.append(pad, ' ').push_back('\n');
  std::string bytes = "\x93NUMPY";
  bytes.push_back('\x01');
  bytes.push_back('\x00');
  bytes.push_back(static_cast<char>(dict.size() & 0xFFu));
  bytes.push_back(static_cast<char>(dict.size() >> 8));
  bytes.append(dict);
  return bytes;
}

template <NpyElement T>
void write_npy_elements(const std::filesystem::path& path, std::span<const std::uint64_t> shape,
                        std::span<const T> data) {
  ddpm::detail::require(shape.size() <= kMaxNpyDims, "shape.size()", shape.size(),
                        "at most " + std::to_string(kMaxNpyDims) + " dimensions");
  std::uint64_t elements = 1;
  bool overflow = false;
  for (const std::uint64_t d : shape) {
    if (d != 0 && elements > std::numeric_limits<std::uint64_t>::max() / d) overflow = true;
    if (!overflow) elements *= d;
  }
  ddpm::detail::require(!overflow && elements == data.size(), "data.size()", data.size(), [&] {
    return "the number of elements of shape " + shape_text(shape) +
           (overflow ? " (which overflows 64 bits)" : " = " + std::to_string(elements));
  });
  std::string bytes = npy_header(npy_dtype_of<T>, shape);
  const std::size_t start = bytes.size();
  bytes.resize(start + data.size() * sizeof(T));
  if constexpr (std::endian::native == std::endian::little || sizeof(T) == 1) {
    if (!data.empty()) std::memcpy(bytes.data() + start, data.data(), data.size() * sizeof(T));
  } else {
    for (std::size_t i = 0; i < data.size(); ++i) {
      unsigned char raw[sizeof(T)];
      std::memcpy(raw, &data[i], sizeof(T));
      for (std::size_t b = 0; b < sizeof(T); ++b) {
        bytes[start + i * sizeof(T) + b] = static_cast<char>(raw[sizeof(T) - 1 - b]);
      }
    }
  }
  write_file_atomically(path, bytes);
}

}  // namespace detail

/// Reads a .npy file (format version 1.0, 2.0 or 3.0) of float32, float64 or uint8 elements in C
/// order, of any shape. Nothing larger than the file is ever allocated: the header's shape and
/// dtype must account for exactly the bytes that follow it.
///
///   const ddpm::io::NpyArray a = ddpm::io::read_npy("points.npy");
///
/// Throws FormatError "ddpm: .npy file '<path>': <what is wrong>" for a missing or unreadable file,
/// a file above `max_bytes`, bad magic, an unsupported version, a malformed header (unknown or
/// missing keys, unsupported or big-endian dtype, fortran_order True, a bad shape), a header length
/// beyond the file, or data that does not match the shape (truncated, trailing bytes, absurd
/// sizes).
inline NpyArray read_npy(const std::filesystem::path& path,
                         std::uintmax_t max_bytes = kMaxNpyBytes) {
  const std::string what = "ddpm: .npy file '" + path.string() + "': ";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw FormatError(what + "is a directory");
  const std::uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw FormatError(what + "cannot be opened: " + ec.message());
  if (file_size > max_bytes) {
    throw FormatError(what + "has " + std::to_string(file_size) +
                      " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(what + "cannot be opened (missing or unreadable)");
  std::string prefix;
  const auto read_prefix = [&](std::size_t n) {
    const std::size_t have = prefix.size();
    prefix.resize(n);
    if (!in.read(prefix.data() + have, static_cast<std::streamsize>(n - have))) {
      throw FormatError(what + "read error (the file changed while being read?)");
    }
  };
  read_prefix(static_cast<std::size_t>(std::min<std::uintmax_t>(file_size, 10)));
  detail::NpyHeader header;
  std::size_t needed = 0;
  while (!detail::parse_npy_prefix(prefix, file_size, what, header, needed)) read_prefix(needed);

  NpyArray array;
  array.dtype = header.dtype;
  array.shape = std::move(header.shape);
  const auto data_bytes = static_cast<std::size_t>(file_size - header.data_offset);
  array.bytes.resize(data_bytes);
  if (data_bytes > 0 && !in.read(reinterpret_cast<char*>(array.bytes.data()),
                                 static_cast<std::streamsize>(data_bytes))) {
    throw FormatError(what + "read error (the file changed while being read?)");
  }
  return array;
}

/// Writes `data` (C order) as a .npy array of `shape` with a version 1.0 header, atomically.
/// numpy.load reads it unchanged. An empty shape writes a scalar (one element).
///
///   ddpm::io::write_npy("x.npy", {3, 4}, values);  // values: std::vector<float> of 12
///
/// Throws InvalidArgument if data.size() differs from the product of the shape, std::runtime_error
/// naming the file if it cannot be written.
inline void write_npy(const std::filesystem::path& path, const std::vector<std::uint64_t>& shape,
                      std::span<const float> data) {
  detail::write_npy_elements<float>(path, shape, data);
}
/// \overload
/// For float64 data.
inline void write_npy(const std::filesystem::path& path, const std::vector<std::uint64_t>& shape,
                      std::span<const double> data) {
  detail::write_npy_elements<double>(path, shape, data);
}
/// \overload
/// For uint8 data.
inline void write_npy(const std::filesystem::path& path, const std::vector<std::uint64_t>& shape,
                      std::span<const std::uint8_t> data) {
  detail::write_npy_elements<std::uint8_t>(path, shape, data);
}

/// Writes an array read by read_npy back unchanged.
inline void write_npy(const std::filesystem::path& path, const NpyArray& array) {
  switch (array.dtype) {
    case NpyDtype::u8:
      write_npy(path, array.shape, std::span<const std::uint8_t>(array.values<std::uint8_t>()));
      break;
    case NpyDtype::f32:
      write_npy(path, array.shape, std::span<const float>(array.values<float>()));
      break;
    case NpyDtype::f64:
      write_npy(path, array.shape, std::span<const double>(array.values<double>()));
      break;
  }
}

/// Writes an Eigen matrix (float, double or uint8) as a rows x cols .npy array, e.g. samples.
///
///   ddpm::io::write_npy("samples.npy", samples);  // numpy.load gives shape (n, 2)
template <class Derived>
void write_npy(const std::filesystem::path& path, const Eigen::DenseBase<Derived>& matrix) {
  using Scalar = typename Derived::Scalar;
  static_assert(NpyElement<Scalar>,
                "write_npy: the matrix scalar must be float, double or std::uint8_t; cast first");
  const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = matrix;
  const std::vector<std::uint64_t> shape = {static_cast<std::uint64_t>(rows.rows()),
                                            static_cast<std::uint64_t>(rows.cols())};
  detail::write_npy_elements<Scalar>(
      path, shape, std::span<const Scalar>(rows.data(), static_cast<std::size_t>(rows.size())));
}

/// Reads a 2-D .npy array (any supported dtype) as a matrix of doubles, one row per sample.
/// Throws FormatError as read_npy does, and if the array is not 2-D.
inline Batch<double> read_npy_matrix(const std::filesystem::path& path,
                                     std::uintmax_t max_bytes = kMaxNpyBytes) {
  const NpyArray array = read_npy(path, max_bytes);
  if (array.shape.size() != 2) {
    throw FormatError("ddpm: .npy file '" + path.string() + "': shape " +
                      detail::shape_text(array.shape) +
                      " is not a matrix; expected 2 dimensions (rows, columns)");
  }
  const std::vector<double> values = array.values<double>();
  return Eigen::Map<const Batch<double>>(values.data(), static_cast<Index>(array.shape[0]),
                                         static_cast<Index>(array.shape[1]));
}

}  // namespace ddpm::io
