// SPDX-License-Identifier: MIT
// Users' 3D point clouds: .xyz/.txt rows, .ply (ASCII and binary little-endian), .off meshes
// sampled by area, folders of such files and S x N x 3 .npy arrays, read strictly; .ply and .npy
// writers.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "ddpm/core/charconv.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/npy.hpp"

namespace ddpm::io {

/// Point-cloud files above this size are refused before anything is read.
inline constexpr std::uintmax_t kMaxPointCloudBytes = std::uintmax_t{4} << 30;

/// A triangle mesh: vertices (V x 3) and triangles as vertex index triples (polygons of an .off
/// file are fan-triangulated).
struct TriangleMesh {
  Batch<double> vertices;  ///< V x 3 vertex positions
  std::vector<std::array<Index, 3>>
      triangles;  ///< vertex indices, three per triangle, counter-clockwise seen from outside
};

/// How write_ply stores the coordinates (float32 either way).
enum class PlyEncoding {
  binary,  ///< binary_little_endian: compact and exact
  ascii,   ///< text, 9 significant digits (float32 round-trips exactly)
};

namespace detail {

/// The start of every message about `path`.
inline std::string cloud_prefix(const std::filesystem::path& path) {
  return "ddpm: point-cloud file '" + path.string() + "': ";
}

/// The lower-case extension of `path`, with its dot (".ply").
inline std::string lower_extension(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension;
}

/// Parses all of `token` as a finite-or-not double ('+' allowed in front); false if it is not a
/// number.
inline bool parse_number(std::string_view token, double& value) {
  if (token.size() > 1 && token.front() == '+' && token[1] != '-' && token[1] != '+') {
    token.remove_prefix(1);
  }
  if (token.empty()) return false;
  const std::from_chars_result r =
      ddpm::detail::from_chars_double(token.data(), token.data() + token.size(), value);
  return r.ec == std::errc{} && r.ptr == token.data() + token.size();
}

/// Parses all of `token` as an unsigned integer; false otherwise.
inline bool parse_count(std::string_view token, std::uint64_t& value) {
  if (token.empty()) return false;
  const std::from_chars_result r =
      std::from_chars(token.data(), token.data() + token.size(), value);
  return r.ec == std::errc{} && r.ptr == token.data() + token.size();
}

/// Text split into lines, with '#' comments cut off when asked, and lines split into tokens.
class TextLines {
 public:
  TextLines(std::string_view text, bool comments, std::size_t start = 0, int first_line = 1)
      : text_(text), pos_(start), line_(first_line - 1), comments_(comments) {}

  /// The next line (without '\n', '\r' and comment), false at the end of the text.
  bool next(std::string_view& line) {
    if (pos_ >= text_.size()) return false;
    const std::size_t end = std::min(text_.find('\n', pos_), text_.size());
    line = text_.substr(pos_, end - pos_);
    pos_ = end + 1;
    ++line_;
    if (comments_) line = line.substr(0, std::min(line.find('#'), line.size()));
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return true;
  }

  /// The next line that has a token, false at the end.
  bool next_nonblank(std::string_view& line) {
    while (next(line)) {
      if (line.find_first_not_of(" \t\r\v\f,") != std::string_view::npos) return true;
    }
    return false;
  }

  [[nodiscard]] int line_number() const noexcept { return line_; }
  [[nodiscard]] std::size_t position() const noexcept { return std::min(pos_, text_.size()); }

 private:
  std::string_view text_;
  std::size_t pos_;
  int line_;
  bool comments_;
};

/// The tokens of `line`, separated by blanks (and commas when `commas`).
inline void split_tokens(std::string_view line, bool commas, std::vector<std::string_view>& out) {
  out.clear();
  const auto separator = [commas](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || (commas && c == ',');
  };
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && separator(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !separator(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
}

/// A token shown in a message: quoted, cut to 30 characters, unprintable bytes as '?'.
inline std::string shown_token(std::string_view token) {
  std::string shown = "'";
  for (std::size_t i = 0; i < token.size() && i < 30; ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    shown.push_back(c >= 32 && c < 127 ? static_cast<char>(c) : '?');
  }
  if (token.size() > 30) shown.append("...");
  return shown + "'";
}

/// Reads x, y, z from tokens[0..2] of `line_number`, throwing FormatError (with `prefix`) if one is
/// not a finite number.
inline std::array<double, 3> read_xyz_tokens(const std::vector<std::string_view>& tokens,
                                             const std::string& prefix, int line_number) {
  std::array<double, 3> p{};
  const std::string where = prefix + "line " + std::to_string(line_number) + ": ";
  if (tokens.size() < 3) {
    throw FormatError(where + "expected at least 3 numbers (x y z), found " +
                      std::to_string(tokens.size()));
  }
  for (std::size_t c = 0; c < 3; ++c) {
    if (!parse_number(tokens[c], p[c])) {
      throw FormatError(where + shown_token(tokens[c]) + " is not a number");
    }
    if (!std::isfinite(p[c])) {
      throw FormatError(where + "coordinate " + shown_token(tokens[c]) +
                        " is not finite (NaN/inf)");
    }
  }
  return p;
}

inline Batch<double> to_batch(const std::vector<double>& xyz) {
  const Index n = static_cast<Index>(xyz.size() / 3);
  Batch<double> out = Eigen::Map<const Batch<double>>(xyz.data(), n, 3);
  return out;
}

// ---- PLY ----

/// A PLY scalar type: its size and how to decode it.
enum class PlyKind : std::uint8_t { i8, u8, i16, u16, i32, u32, f32, f64 };

inline bool ply_type(std::string_view name, PlyKind& kind) {
  static constexpr std::array<std::pair<std::string_view, PlyKind>, 16> kTypes = {{
      {"char", PlyKind::i8},
      {"int8", PlyKind::i8},
      {"uchar", PlyKind::u8},
      {"uint8", PlyKind::u8},
      {"short", PlyKind::i16},
      {"int16", PlyKind::i16},
      {"ushort", PlyKind::u16},
      {"uint16", PlyKind::u16},
      {"int", PlyKind::i32},
      {"int32", PlyKind::i32},
      {"uint", PlyKind::u32},
      {"uint32", PlyKind::u32},
      {"float", PlyKind::f32},
      {"float32", PlyKind::f32},
      {"double", PlyKind::f64},
      {"float64", PlyKind::f64},
  }};
  for (const auto& [type_name, type_kind] : kTypes) {
    if (type_name == name) {
      kind = type_kind;
      return true;
    }
  }
  return false;
}

inline std::size_t ply_size(PlyKind kind) {
  switch (kind) {
    case PlyKind::i8:
    case PlyKind::u8:
      return 1;
    case PlyKind::i16:
    case PlyKind::u16:
      return 2;
    case PlyKind::i32:
    case PlyKind::u32:
    case PlyKind::f32:
      return 4;
    case PlyKind::f64:
      return 8;
  }
  return 1;
}

inline bool ply_integer(PlyKind kind) { return kind != PlyKind::f32 && kind != PlyKind::f64; }

/// The little-endian value of `kind` at `p`, as a double (exact for every PLY type).
inline double ply_decode(const unsigned char* p, PlyKind kind) {
  std::uint64_t bits = 0;
  const std::size_t size = ply_size(kind);
  for (std::size_t b = 0; b < size; ++b) bits |= std::uint64_t{p[b]} << (8 * b);
  switch (kind) {
    case PlyKind::i8:
      return static_cast<double>(static_cast<std::int8_t>(bits));
    case PlyKind::u8:
      return static_cast<double>(bits);
    case PlyKind::i16:
      return static_cast<double>(static_cast<std::int16_t>(bits));
    case PlyKind::u16:
      return static_cast<double>(bits);
    case PlyKind::i32:
      return static_cast<double>(static_cast<std::int32_t>(bits));
    case PlyKind::u32:
      return static_cast<double>(bits);
    case PlyKind::f32:
      return static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(bits)));
    case PlyKind::f64:
      return std::bit_cast<double>(bits);
  }
  return 0;
}

struct PlyProperty {
  std::string name;
  bool list = false;
  PlyKind count = PlyKind::u8;  ///< a list's count type
  PlyKind value = PlyKind::f32;
};

struct PlyElement {
  std::string name;
  std::uint64_t count = 0;
  std::vector<PlyProperty> properties;
};

struct PlyHeader {
  bool ascii = false;
  std::vector<PlyElement> elements;
  std::size_t data_start = 0;
  int data_line = 0;  ///< line number of the first data line (ASCII)
};

inline PlyHeader parse_ply_header(std::string_view bytes, const std::string& prefix) {
  if (bytes.substr(0, 4) != "ply\n" && bytes.substr(0, 5) != "ply\r\n") {
    throw FormatError(prefix + "not a PLY file (it does not start with the line 'ply')");
  }
  PlyHeader header;
  TextLines lines(bytes, false);
  std::string_view line;
  std::vector<std::string_view> tokens;
  lines.next(line);  // "ply"
  bool has_format = false, ended = false;
  while (lines.next(line)) {
    const std::string where = prefix + "line " + std::to_string(lines.line_number()) + ": ";
    split_tokens(line, false, tokens);
    if (tokens.empty()) continue;
    const std::string_view keyword = tokens[0];
    if (keyword == "end_header") {
      if (tokens.size() != 1) throw FormatError(where + "text after end_header");
      ended = true;
      break;
    }
    if (keyword == "comment" || keyword == "obj_info") continue;
    if (keyword == "format") {
      if (has_format) throw FormatError(where + "a second format line");
      if (tokens.size() != 3 || tokens[2] != "1.0") {
        throw FormatError(where + "expected 'format <ascii|binary_little_endian> 1.0'");
      }
      if (tokens[1] == "binary_big_endian") {
        throw FormatError(where +
                          "binary_big_endian PLY is not supported; convert it to "
                          "binary_little_endian or ascii (e.g. with meshlab or python plyfile)");
      }
      if (tokens[1] != "ascii" && tokens[1] != "binary_little_endian") {
        throw FormatError(where + "unknown format " + shown_token(tokens[1]) +
                          "; expected ascii or binary_little_endian");
      }
      header.ascii = tokens[1] == "ascii";
      has_format = true;
    } else if (keyword == "element") {
      PlyElement element;
      if (tokens.size() != 3 || !parse_count(tokens[2], element.count)) {
        throw FormatError(where + "expected 'element <name> <count>'");
      }
      element.name = std::string(tokens[1]);
      for (const PlyElement& other : header.elements) {
        if (other.name == element.name) {
          throw FormatError(where + "a second element named " + shown_token(element.name));
        }
      }
      header.elements.push_back(std::move(element));
    } else if (keyword == "property") {
      if (header.elements.empty()) throw FormatError(where + "a property before any element");
      PlyProperty property;
      bool ok = false;
      if (tokens.size() == 5 && tokens[1] == "list") {
        property.list = true;
        ok = ply_type(tokens[2], property.count) && ply_integer(property.count) &&
             ply_type(tokens[3], property.value);
      } else if (tokens.size() == 3) {
        ok = ply_type(tokens[1], property.value);
      }
      if (!ok) {
        throw FormatError(where +
                          "expected 'property <type> <name>' or 'property list <integer type> "
                          "<type> <name>' with types among char, uchar, short, ushort, int, uint, "
                          "float, double (or int8 ... float64)");
      }
      property.name = std::string(tokens.back());
      header.elements.back().properties.push_back(std::move(property));
    } else {
      throw FormatError(where + "unknown header line starting with " + shown_token(keyword));
    }
  }
  if (!ended) throw FormatError(prefix + "truncated header (no end_header line)");
  if (!has_format) throw FormatError(prefix + "the header has no format line");
  header.data_start = lines.position();
  header.data_line = lines.line_number() + 1;
  return header;
}

/// The fewest bytes one instance of `element` can take: binary, scalar sizes plus list counts;
/// ASCII, two characters (a digit and a separator) per value.
inline std::uint64_t ply_min_bytes(const PlyElement& element, bool ascii) {
  std::uint64_t bytes = 0;
  for (const PlyProperty& p : element.properties) {
    bytes += ascii ? 2 : ply_size(p.list ? p.count : p.value);
  }
  return bytes;
}

/// Where x, y, z sit among the vertex element's properties.
inline std::array<std::size_t, 3> ply_xyz(const PlyElement& vertex, const std::string& prefix) {
  std::array<std::size_t, 3> at{};
  const std::array<std::string_view, 3> names = {"x", "y", "z"};
  for (std::size_t c = 0; c < 3; ++c) {
    bool found = false;
    for (std::size_t i = 0; i < vertex.properties.size(); ++i) {
      if (vertex.properties[i].name != names[c]) continue;
      if (vertex.properties[i].list) {
        throw FormatError(prefix + "the vertex property " + std::string(names[c]) +
                          " is a list; expected a number");
      }
      at[c] = i;
      found = true;
      break;
    }
    if (!found) {
      throw FormatError(prefix + "the vertex element has no property " + std::string(names[c]) +
                        "; expected x, y and z");
    }
  }
  return at;
}

/// Reads the data of all elements, keeping the vertices' x, y, z.
inline Batch<double> read_ply_data(std::string_view bytes, const PlyHeader& header,
                                   const std::string& prefix) {
  const PlyElement* vertex = nullptr;
  for (const PlyElement& e : header.elements) {
    if (e.name == "vertex") vertex = &e;
  }
  if (vertex == nullptr) throw FormatError(prefix + "the header has no vertex element");
  const std::array<std::size_t, 3> xyz = ply_xyz(*vertex, prefix);
  // Counts are checked against the file size before anything is allocated.
  const std::uint64_t available = bytes.size() - header.data_start;
  std::uint64_t needed = 0;
  for (const PlyElement& e : header.elements) {
    const std::uint64_t each = ply_min_bytes(e, header.ascii);
    if (each == 0) continue;
    if (e.count > (available + 1) / each || needed > available + 1 - e.count * each) {
      throw FormatError(prefix + "the header declares " + std::to_string(e.count) + " " + e.name +
                        " elements, more than the " + std::to_string(available) +
                        " data bytes can hold (truncated file or corrupt header)");
    }
    needed += e.count * each;
  }
  std::vector<double> points;
  points.reserve(static_cast<std::size_t>(3 * vertex->count));
  std::vector<double> values;

  if (header.ascii) {
    // Tokens in order, whatever the line breaks; each value must be a number.
    std::size_t pos = header.data_start;
    int line = header.data_line;
    const auto next_token = [&](std::string_view& token, const PlyElement& e, std::uint64_t i) {
      while (pos < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[pos])) != 0) {
        if (bytes[pos] == '\n') ++line;
        ++pos;
      }
      if (pos >= bytes.size()) {
        throw FormatError(prefix + "line " + std::to_string(line) + ": the data ends inside " +
                          e.name + " " + std::to_string(i) + " of " + std::to_string(e.count) +
                          " (short data)");
      }
      const std::size_t start = pos;
      while (pos < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[pos])) == 0) ++pos;
      token = bytes.substr(start, pos - start);
    };
    const auto number = [&](const PlyElement& e, std::uint64_t i, bool integer) {
      std::string_view token;
      next_token(token, e, i);
      double v = 0;
      if (!parse_number(token, v) || (integer && (v < 0 || v != std::floor(v)))) {
        throw FormatError(prefix + "line " + std::to_string(line) + ": " + shown_token(token) +
                          (integer ? " is not a list length" : " is not a number") + " (in " +
                          e.name + " " + std::to_string(i) + ")");
      }
      return v;
    };
    for (const PlyElement& e : header.elements) {
      if (e.properties.empty()) continue;
      const bool is_vertex = &e == vertex;
      for (std::uint64_t i = 0; i < e.count; ++i) {
        values.clear();
        for (const PlyProperty& p : e.properties) {
          if (!p.list) {
            // A float property holds a float32: rounded so ASCII and binary files read alike.
            const double v = number(e, i, false);
            values.push_back(p.value == PlyKind::f32 ? static_cast<double>(static_cast<float>(v))
                                                     : v);
            continue;
          }
          const double length = number(e, i, true);
          values.push_back(0);
          for (double k = 0; k < length; ++k) number(e, i, false);
        }
        if (!is_vertex) continue;
        for (std::size_t c = 0; c < 3; ++c) {
          const double v = values[xyz[c]];
          if (!std::isfinite(v)) {
            throw FormatError(prefix + "line " + std::to_string(line) + ": vertex " +
                              std::to_string(i) + " has a coordinate that is not finite (NaN/inf)");
          }
          points.push_back(v);
        }
      }
    }
    while (pos < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[pos])) != 0) {
      if (bytes[pos] == '\n') ++line;
      ++pos;
    }
    if (pos < bytes.size()) {
      throw FormatError(prefix + "line " + std::to_string(line) +
                        ": unexpected data after the last element");
    }
    return to_batch(points);
  }

  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  std::uint64_t pos = header.data_start;
  const std::uint64_t end = bytes.size();
  const auto need = [&](std::uint64_t n, const PlyElement& e, std::uint64_t i) {
    if (n > end - pos) {
      throw FormatError(prefix + "byte " + std::to_string(pos) + ": the data ends inside " +
                        e.name + " " + std::to_string(i) + " of " + std::to_string(e.count) +
                        " (short data)");
    }
  };
  for (const PlyElement& e : header.elements) {
    if (e.properties.empty()) continue;
    const bool is_vertex = &e == vertex;
    for (std::uint64_t i = 0; i < e.count; ++i) {
      const std::uint64_t start = pos;
      values.clear();
      for (const PlyProperty& p : e.properties) {
        if (!p.list) {
          const std::size_t size = ply_size(p.value);
          need(size, e, i);
          values.push_back(is_vertex ? ply_decode(data + pos, p.value) : 0.0);
          pos += size;
          continue;
        }
        need(ply_size(p.count), e, i);
        const double length = ply_decode(data + pos, p.count);
        if (length < 0) {
          throw FormatError(prefix + "byte " + std::to_string(pos) + ": negative list length " +
                            std::to_string(static_cast<long long>(length)) + " in " + e.name + " " +
                            std::to_string(i));
        }
        pos += ply_size(p.count);
        const std::uint64_t skip = static_cast<std::uint64_t>(length) * ply_size(p.value);
        need(skip, e, i);
        pos += skip;
        values.push_back(0);
      }
      if (!is_vertex) continue;
      for (std::size_t c = 0; c < 3; ++c) {
        const double v = values[xyz[c]];
        if (!std::isfinite(v)) {
          throw FormatError(prefix + "byte " + std::to_string(start) + ": vertex " +
                            std::to_string(i) + " has a coordinate that is not finite (NaN/inf)");
        }
        points.push_back(v);
      }
    }
  }
  if (pos != end) {
    throw FormatError(prefix + "byte " + std::to_string(pos) + ": " + std::to_string(end - pos) +
                      " bytes after the last element (the header's types or counts do not match "
                      "the data)");
  }
  return to_batch(points);
}

/// Reads a whole point-cloud file, refusing directories and files above the size limit.
inline std::string read_cloud_bytes(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw FormatError(cloud_prefix(path) + "is a directory");
  }
  return read_file(path, kMaxPointCloudBytes, "point-cloud file");
}

inline bool off_keyword(std::string_view token) {
  if (token.size() < 3 || token.substr(token.size() - 3) != "OFF") return false;
  // Optional ST (texture), C (color), N (normal) prefixes; their extra values are ignored.
  return token.substr(0, token.size() - 3).find_first_not_of("STCN") == std::string_view::npos;
}

}  // namespace detail

/// The points of a text file (.xyz, .txt and the like): one point per line, "x y z" separated by
/// blanks or commas, further columns ignored, '#' starting a comment, blank lines skipped. Throws
/// FormatError naming the file and line for a row with fewer than 3 numbers, a value that is not a
/// number or not finite, or a file without points.
[[nodiscard]] inline Batch<double> read_xyz(const std::filesystem::path& path) {
  const std::string bytes = detail::read_cloud_bytes(path);
  const std::string prefix = detail::cloud_prefix(path);
  detail::TextLines lines(bytes, true);
  std::string_view line;
  std::vector<std::string_view> tokens;
  std::vector<double> xyz;
  while (lines.next_nonblank(line)) {
    detail::split_tokens(line, true, tokens);
    const std::array<double, 3> p = detail::read_xyz_tokens(tokens, prefix, lines.line_number());
    xyz.insert(xyz.end(), p.begin(), p.end());
  }
  if (xyz.empty()) throw FormatError(prefix + "has no points");
  return detail::to_batch(xyz);
}

/// The vertices (x, y, z) of a PLY file, ASCII or binary_little_endian. The vertex element may
/// have further properties in any order (colors, normals, lists) and other elements (faces, ...)
/// may come before or after it; their data is read past by the declared types, list lengths
/// included. Coordinates may have any PLY number type. Throws FormatError naming the file (and the
/// line or byte offset) for a malformed or truncated header, binary_big_endian, missing x/y/z,
/// counts the file cannot hold, short data, bytes after the last element, or a non-finite
/// coordinate.
[[nodiscard]] inline Batch<double> read_ply(const std::filesystem::path& path) {
  const std::string bytes = detail::read_cloud_bytes(path);
  const std::string prefix = detail::cloud_prefix(path);
  const detail::PlyHeader header = detail::parse_ply_header(bytes, prefix);
  Batch<double> points = detail::read_ply_data(bytes, header, prefix);
  if (points.rows() == 0) throw FormatError(prefix + "has no points (0 vertices)");
  return points;
}

/// A mesh from an OFF file: "OFF" (or COFF, NOFF, ...; extra per-vertex and per-face values such
/// as colors are ignored), then "vertices faces edges", one vertex "x y z" per line and one face
/// "n i_1 ... i_n" per line (n >= 3, indices from 0), '#' comments. Polygons are fan-triangulated.
/// Throws FormatError naming the file and line for a malformed header or line, counts the file
/// cannot hold, missing lines, faces referencing missing vertices, non-finite coordinates or text
/// after the last face.
[[nodiscard]] inline TriangleMesh read_off(const std::filesystem::path& path) {
  const std::string bytes = detail::read_cloud_bytes(path);
  const std::string prefix = detail::cloud_prefix(path);
  detail::TextLines lines(bytes, true);
  std::string_view line;
  std::vector<std::string_view> tokens;
  const auto where = [&] { return prefix + "line " + std::to_string(lines.line_number()) + ": "; };
  if (!lines.next_nonblank(line)) throw FormatError(prefix + "is empty (expected 'OFF')");
  detail::split_tokens(line, false, tokens);
  if (!detail::off_keyword(tokens[0])) {
    throw FormatError(where() + "not an OFF file (expected 'OFF', found " +
                      detail::shown_token(tokens[0]) + ")");
  }
  tokens.erase(tokens.begin());
  if (tokens.empty()) {
    if (!lines.next_nonblank(line)) {
      throw FormatError(prefix + "truncated header (no 'vertices faces edges' line)");
    }
    detail::split_tokens(line, false, tokens);
  }
  std::uint64_t n_vertices = 0, n_faces = 0;
  if (tokens.size() < 2 || tokens.size() > 3 || !detail::parse_count(tokens[0], n_vertices) ||
      !detail::parse_count(tokens[1], n_faces)) {
    throw FormatError(where() + "expected the counts 'vertices faces [edges]'");
  }
  // Each vertex line holds at least 3 numbers, each face line 4, two bytes apiece at the least.
  const std::uint64_t available = bytes.size() - lines.position() + 1;
  if (n_vertices > available / 6 || n_faces > (available - 6 * n_vertices) / 8) {
    throw FormatError(where() + "the header declares " + std::to_string(n_vertices) +
                      " vertices and " + std::to_string(n_faces) + " faces, more than the " +
                      std::to_string(available - 1) +
                      " remaining bytes can hold (truncated file or corrupt header)");
  }
  TriangleMesh mesh;
  mesh.vertices.resize(static_cast<Index>(n_vertices), 3);
  for (std::uint64_t v = 0; v < n_vertices; ++v) {
    if (!lines.next_nonblank(line)) {
      throw FormatError(prefix + "the file ends after " + std::to_string(v) + " of " +
                        std::to_string(n_vertices) + " vertices (short data)");
    }
    detail::split_tokens(line, false, tokens);
    const std::array<double, 3> p = detail::read_xyz_tokens(tokens, prefix, lines.line_number());
    for (std::size_t c = 0; c < 3; ++c) {
      mesh.vertices(static_cast<Index>(v), static_cast<Index>(c)) = p[c];
    }
  }
  for (std::uint64_t f = 0; f < n_faces; ++f) {
    if (!lines.next_nonblank(line)) {
      throw FormatError(prefix + "the file ends after " + std::to_string(f) + " of " +
                        std::to_string(n_faces) + " faces (short data)");
    }
    detail::split_tokens(line, false, tokens);
    std::uint64_t n = 0;
    if (!detail::parse_count(tokens[0], n) || n < 3) {
      throw FormatError(where() + "face " + std::to_string(f) + " starts with " +
                        detail::shown_token(tokens[0]) + "; expected its vertex count, at least 3");
    }
    if (tokens.size() - 1 < n) {
      throw FormatError(where() + "face " + std::to_string(f) + " has " +
                        std::to_string(tokens.size() - 1) + " indices; its count says " +
                        std::to_string(n));
    }
    std::array<Index, 3> triangle{};
    for (std::uint64_t k = 0; k < n; ++k) {
      std::uint64_t index = 0;
      if (!detail::parse_count(tokens[1 + k], index) || index >= n_vertices) {
        throw FormatError(where() + "face " + std::to_string(f) + " references vertex " +
                          detail::shown_token(tokens[1 + k]) + ", but the vertices are 0.." +
                          std::to_string(n_vertices) + " - 1");
      }
      if (k == 0) {
        triangle[0] = static_cast<Index>(index);
      } else if (k == 1) {
        triangle[2] = static_cast<Index>(index);
      } else {
        triangle[1] = triangle[2];  // fan: (v_0, v_{k-1}, v_k)
        triangle[2] = static_cast<Index>(index);
        mesh.triangles.push_back(triangle);
      }
    }
  }
  if (lines.next_nonblank(line)) {
    throw FormatError(where() + "unexpected text after the last face (wrong counts?)");
  }
  return mesh;
}

/// `points` points uniform by area on `mesh` (points x 3): a triangle with probability
/// proportional to its area, then uniform barycentric coordinates (sqrt of a uniform). Point j
/// uses the counter-RNG draws (seed, stream::data, sample `index`, step 1 + j). Throws
/// InvalidArgument for a mesh without area (no triangles, or all degenerate) or with a triangle
/// referencing a missing vertex.
[[nodiscard]] inline Batch<double> sample_mesh(const TriangleMesh& mesh, Index points,
                                               std::uint64_t seed, Index index = 0) {
  ddpm::detail::require(points >= 1 && points < (Index{1} << 32), "points", points,
                        "1 <= points < 2^32");
  ddpm::detail::require(index >= 0 && index < (Index{1} << 32), "index", index,
                        "0 <= index < 2^32");
  ddpm::detail::require_shape(mesh.vertices.cols() == 3, "mesh.vertices", mesh.vertices.rows(),
                              mesh.vertices.cols(), "V x 3");
  std::vector<double> cumulative(mesh.triangles.size());
  double total = 0;
  for (std::size_t t = 0; t < mesh.triangles.size(); ++t) {
    const std::array<Index, 3>& tri = mesh.triangles[t];
    for (const Index v : tri) {
      ddpm::detail::require(v >= 0 && v < mesh.vertices.rows(), "mesh.triangles", v,
                            "vertex indices below the vertex count");
    }
    const Eigen::Vector3d a = mesh.vertices.row(tri[0]).transpose();
    const Eigen::Vector3d b = mesh.vertices.row(tri[1]).transpose();
    const Eigen::Vector3d c = mesh.vertices.row(tri[2]).transpose();
    const Eigen::Vector3d ab = b - a, ac = c - a;
    const Eigen::Vector3d cross(ab.y() * ac.z() - ab.z() * ac.y(),
                                ab.z() * ac.x() - ab.x() * ac.z(),
                                ab.x() * ac.y() - ab.y() * ac.x());
    total += 0.5 * cross.norm();
    cumulative[t] = total;
  }
  ddpm::detail::require(std::isfinite(total) && total > 0, "mesh area", total,
                        "a finite area > 0 (faces that are not all degenerate)");
  const CounterRng rng(seed);
  Batch<double> out(points, 3);
  ddpm::detail::parallel_for(points, 32, [&](Index j) {
    const auto sample = static_cast<std::uint32_t>(index);
    const auto step = static_cast<std::uint32_t>(j + 1);
    const double u = rng.uniform(stream::data, sample, step, 0) * total;
    const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
    const auto t = static_cast<std::size_t>(
        std::min<std::ptrdiff_t>(it - cumulative.begin(), std::ssize(cumulative) - 1));
    const double r1 = std::sqrt(rng.uniform(stream::data, sample, step, 1));
    const double r2 = rng.uniform(stream::data, sample, step, 2);
    const std::array<Index, 3>& tri = mesh.triangles[t];
    out.row(j) = (1.0 - r1) * mesh.vertices.row(tri[0]) +
                 r1 * (1.0 - r2) * mesh.vertices.row(tri[1]) + r1 * r2 * mesh.vertices.row(tri[2]);
  });
  return out;
}

namespace detail {

/// `points` rows of `cloud` chosen without replacement by a partial Fisher-Yates shuffle with the
/// draws (seed, stream::data, sample `index`, step 0); the cloud itself when it has exactly that
/// many. Callers check cloud.rows() >= points.
inline Batch<double> subsample(const Batch<double>& cloud, Index points, std::uint64_t seed,
                               Index index) {
  if (cloud.rows() == points) return cloud;
  std::vector<Index> order(static_cast<std::size_t>(cloud.rows()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<Index>(i);
  const CounterRng rng(seed);
  Batch<double> out(points, 3);
  for (Index i = 0; i < points; ++i) {
    const auto pick = static_cast<Index>(rng.uniform_int(
        stream::data, static_cast<std::uint32_t>(index), 0,
        static_cast<std::uint64_t>(cloud.rows() - i), static_cast<std::uint32_t>(i)));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(i + pick)]);
    out.row(i) = cloud.row(order[static_cast<std::size_t>(i)]);
  }
  return out;
}

inline void require_cloud_points(Index points) {
  ddpm::detail::require(points >= 1 && points < (Index{1} << 31), "points", points,
                        "1 <= points < 2^31");
}

inline bool supported_cloud_file(const std::filesystem::path& path) {
  const std::string e = lower_extension(path);
  return e == ".xyz" || e == ".txt" || e == ".ply" || e == ".off";
}

}  // namespace detail

/// One cloud of exactly `points` points from a file: .xyz, .txt or .ply points (a random subset
/// without replacement when the file has more, FormatError "too few points" when fewer) or an .off
/// mesh (sampled uniformly by area). Randomness: the counter-RNG draws of (seed, stream::data,
/// sample `index`), so clouds of a folder use their position as index. Throws FormatError naming
/// the file for everything read_xyz, read_ply and read_off reject, a mesh of zero area and an
/// unsupported extension.
[[nodiscard]] inline Batch<double> read_point_cloud(const std::filesystem::path& path, Index points,
                                                    std::uint64_t seed = 0, Index index = 0) {
  detail::require_cloud_points(points);
  ddpm::detail::require(index >= 0 && index < (Index{1} << 32), "index", index,
                        "0 <= index < 2^32");
  const std::string extension = detail::lower_extension(path);
  const std::string prefix = detail::cloud_prefix(path);
  if (extension == ".off") {
    const TriangleMesh mesh = read_off(path);
    try {
      return sample_mesh(mesh, points, seed, index);
    } catch (const InvalidArgument&) {
      throw FormatError(prefix + "the mesh has zero area (no faces, or all faces degenerate)");
    }
  }
  Batch<double> cloud;
  if (extension == ".ply") {
    cloud = read_ply(path);
  } else if (extension == ".xyz" || extension == ".txt") {
    cloud = read_xyz(path);
  } else {
    throw FormatError(prefix + "unsupported format '" + extension +
                      "'; expected .xyz, .txt, .ply or .off (or a folder of them, or an .npy)");
  }
  if (cloud.rows() < points) {
    throw FormatError(prefix + "too few points: " + std::to_string(cloud.rows()) + ", but " +
                      std::to_string(points) + " are needed");
  }
  return detail::subsample(cloud, points, seed, index);
}

/// Clouds of exactly `points` points each, as one (S·points) x 3 batch with cloud s in rows
/// [s·points, (s+1)·points), from
///   - a folder: every .xyz, .txt, .ply and .off file in it (other files are ignored), sorted by
///     name, file s read by read_point_cloud(file, points, seed, s);
///   - an .npy file of shape (S, M, 3), float32 or float64, M >= points (each cloud subsampled as
///     above when M > points);
///   - any other file: that one cloud.
/// `files`, if given, receives the file of each cloud (the .npy path S times). Throws FormatError
/// naming the file or folder for every problem.
///
///   const Batch<double> x = ddpm::io::read_point_clouds("chairs/", 2048, /*seed=*/1);
[[nodiscard]] inline Batch<double> read_point_clouds(
    const std::filesystem::path& path, Index points, std::uint64_t seed = 0,
    std::vector<std::filesystem::path>* files = nullptr) {
  detail::require_cloud_points(points);
  if (files != nullptr) files->clear();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    std::vector<std::filesystem::path> found;
    for (const std::filesystem::directory_entry& entry :
         std::filesystem::directory_iterator(path, ec)) {
      if (entry.is_regular_file(ec) && detail::supported_cloud_file(entry.path())) {
        found.push_back(entry.path());
      }
    }
    if (ec) {
      throw FormatError("ddpm: point-cloud folder '" + path.string() +
                        "' cannot be read: " + ec.message());
    }
    if (found.empty()) {
      throw FormatError("ddpm: point-cloud folder '" + path.string() +
                        "' has no .xyz, .txt, .ply or .off files");
    }
    std::sort(found.begin(), found.end(),
              [](const auto& a, const auto& b) { return a.filename() < b.filename(); });
    ddpm::detail::require(found.size() < (std::size_t{1} << 32), "files", found.size(),
                          "fewer than 2^32");
    const auto s_count = static_cast<Index>(found.size());
    ddpm::detail::require(s_count <= std::numeric_limits<Index>::max() / points / 3, "points",
                          points, "a batch size that fits in memory");
    Batch<double> out(s_count * points, 3);
    for (Index s = 0; s < s_count; ++s) {
      out.middleRows(s * points, points) =
          read_point_cloud(found[static_cast<std::size_t>(s)], points, seed, s);
    }
    if (files != nullptr) *files = std::move(found);
    return out;
  }
  if (detail::lower_extension(path) != ".npy") {
    Batch<double> cloud = read_point_cloud(path, points, seed, 0);
    if (files != nullptr) files->push_back(path);
    return cloud;
  }
  const NpyArray array = read_npy(path, kMaxPointCloudBytes);
  const std::string prefix = "ddpm: .npy file '" + path.string() + "': ";
  if (array.dtype == NpyDtype::u8 || array.shape.size() != 3 || array.shape[2] != 3 ||
      array.shape[0] == 0) {
    throw FormatError(prefix + "shape " + io::detail::shape_text(array.shape) + " of dtype '" +
                      std::string(npy_descr(array.dtype)) +
                      "'; expected (S, N, 3) float32 or float64, S clouds of N 3-D points (one "
                      "cloud of shape (N, 3): numpy.save(path, a[None]))");
  }
  const auto s_count = static_cast<Index>(array.shape[0]);
  const auto m = static_cast<Index>(array.shape[1]);
  if (m < points) {
    throw FormatError(prefix + "too few points: " + std::to_string(m) + " per cloud, but " +
                      std::to_string(points) + " are needed");
  }
  ddpm::detail::require(s_count < (Index{1} << 32), "clouds", s_count, "fewer than 2^32");
  const std::vector<double> values = array.values<double>();
  Batch<double> out(s_count * points, 3);
  for (Index s = 0; s < s_count; ++s) {
    const Batch<double> cloud =
        Eigen::Map<const Batch<double>>(values.data() + static_cast<std::size_t>(s * m * 3), m, 3);
    for (Index i = 0; i < m; ++i) {
      if (!cloud.row(i).allFinite()) {
        throw FormatError(prefix + "cloud " + std::to_string(s) + " point " + std::to_string(i) +
                          " is not finite (NaN/inf)");
      }
    }
    out.middleRows(s * points, points) = detail::subsample(cloud, points, seed, s);
  }
  if (files != nullptr) files->assign(static_cast<std::size_t>(s_count), path);
  return out;
}

/// Writes one cloud (N x 3, float or double) as a PLY file of float32 x, y, z, binary
/// little-endian or ASCII, atomically. Throws InvalidArgument for another shape or a non-finite
/// coordinate, std::runtime_error naming the file if it cannot be written.
///
///   ddpm::io::write_ply("sample.ply", cloud);
template <class Derived>
void write_ply(const std::filesystem::path& path, const Eigen::DenseBase<Derived>& cloud,
               PlyEncoding encoding = PlyEncoding::binary) {
  ddpm::detail::require_shape(cloud.cols() == 3, "cloud", cloud.rows(), cloud.cols(),
                              "N x 3 (one 3-D point per row)");
  const Batch<float> points = cloud.derived().template cast<float>();
  ddpm::detail::require(points.allFinite(), "cloud", "a non-finite coordinate",
                        "finite coordinates (after rounding to float32)");
  std::string bytes = "ply\nformat ";
  bytes += encoding == PlyEncoding::binary ? "binary_little_endian" : "ascii";
  bytes += " 1.0\ncomment written by ddpm\nelement vertex " + std::to_string(points.rows()) +
           "\nproperty float x\nproperty float y\nproperty float z\nend_header\n";
  if (encoding == PlyEncoding::binary) {
    const std::size_t start = bytes.size();
    bytes.resize(start + static_cast<std::size_t>(points.size()) * 4);
    for (Index i = 0; i < points.size(); ++i) {
      const auto bits = std::bit_cast<std::uint32_t>(points.data()[i]);
      for (std::size_t b = 0; b < 4; ++b) {
        bytes[start + static_cast<std::size_t>(i) * 4 + b] =
            static_cast<char>((bits >> (8 * b)) & 0xFFu);
      }
    }
  } else {
    char line[96];
    for (Index i = 0; i < points.rows(); ++i) {
      const int n =
          std::snprintf(line, sizeof line, "%.9g %.9g %.9g\n", static_cast<double>(points(i, 0)),
                        static_cast<double>(points(i, 1)), static_cast<double>(points(i, 2)));
      bytes.append(line, static_cast<std::size_t>(n));
    }
  }
  write_file_atomically(path, bytes);
}

/// Writes clouds ((S·points) x 3, cloud s in rows [s·points, (s+1)·points)) as a float32 .npy of
/// shape (S, points, 3), the layout read_point_clouds and numpy users expect.
template <class Derived>
void write_point_clouds_npy(const std::filesystem::path& path,
                            const Eigen::DenseBase<Derived>& clouds, Index points) {
  ddpm::detail::require(points >= 1, "points", points, ">= 1");
  ddpm::detail::require_shape(clouds.cols() == 3 && clouds.rows() % points == 0, "clouds",
                              clouds.rows(), clouds.cols(),
                              [&] { return "(S * " + std::to_string(points) + ") x 3"; });
  const Batch<float> values = clouds.derived().template cast<float>();
  const std::vector<std::uint64_t> shape = {static_cast<std::uint64_t>(clouds.rows() / points),
                                            static_cast<std::uint64_t>(points), 3};
  write_npy(path, shape,
            std::span<const float>(values.data(), static_cast<std::size_t>(values.size())));
}

}  // namespace ddpm::io
