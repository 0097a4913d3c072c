// SPDX-License-Identifier: MIT
// CSV files of samples: a header of column names, one sample per line, doubles read back exactly.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <istream>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/charconv.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/file.hpp"

namespace ddpm::io {

/// The longest line read_csv accepts; longer lines are reported instead of being buffered without
/// bound (a binary file or a file without newlines would otherwise be read into memory whole).
inline constexpr std::size_t kMaxCsvLineLength = std::size_t{1} << 20;

/// A table read from CSV: column names from the header and one row per data line.
struct CsvTable {
  std::vector<std::string> columns;  ///< names from the header line, in file order
  Batch<double> values;              ///< values.rows() data lines, columns.size() columns

  /// Position of the column called `name`; throws InvalidArgument if there is none.
  [[nodiscard]] Index column_index(std::string_view name) const {
    const auto it = std::find(columns.begin(), columns.end(), name);
    if (it == columns.end()) {
      std::string allowed = "one of the header names:";
      for (const std::string& column : columns) allowed.append(" ").append(column);
      throw InvalidArgument("column name", name, allowed);
    }
    return static_cast<Index>(it - columns.begin());
  }
};

namespace detail {

/// Shows a field in an error message: printable, quoted, cut to a readable length.
inline std::string quote_field(std::string_view field) {
  constexpr std::size_t kShown = 40;
  std::string shown = "'";
  for (std::size_t i = 0; i < field.size() && i < kShown; ++i) {
    const auto c = static_cast<unsigned char>(field[i]);
    shown.push_back(c >= 32 && c < 127 ? static_cast<char>(c) : '?');
  }
  if (field.size() > kShown) shown.append("...");
  shown.push_back('\'');
  return shown;
}

/// Strips spaces and tabs at both ends (spreadsheets often write "1.5, 2.5").
inline std::string_view trim(std::string_view text) {
  const std::size_t first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const std::size_t last = text.find_last_not_of(" \t");
  return text.substr(first, last - first + 1);
}

/// Splits a line at commas; the fields are trimmed.
inline std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(trim(line.substr(start)));
      return fields;
    }
    fields.push_back(trim(line.substr(start, comma - start)));
    start = comma + 1;
  }
}

/// Outcome of parsing one numeric field.
enum class FieldStatus { ok, empty, not_a_number, non_finite, out_of_range };

/// Parses a whole field as a finite double (locale-independent, exact). An optional leading '+'
/// is accepted; "nan", "inf" and partial parses like "1.5x" are not.
inline FieldStatus parse_double(std::string_view field, double& value) {
  if (field.empty()) return FieldStatus::empty;
  std::string_view digits = field;
  if (digits.front() == '+') digits.remove_prefix(1);
  const char* end = digits.data() + digits.size();
  const std::from_chars_result result = ddpm::detail::from_chars_double(digits.data(), end, value);
  if (result.ec == std::errc::result_out_of_range) return FieldStatus::out_of_range;
  if (result.ec != std::errc{} || result.ptr != end) return FieldStatus::not_a_number;
  if (!std::isfinite(value)) return FieldStatus::non_finite;
  return FieldStatus::ok;
}

/// Reads one line (without its '\n', and without a trailing '\r') into `line`. Returns false at end
/// of file with nothing read; sets `too_long` and stops early if the line exceeds `max_length`.
inline bool read_line(std::streambuf& in, std::string& line, std::size_t max_length,
                      bool& too_long) {
  line.clear();
  too_long = false;
  bool any = false;
  while (true) {
    const int c = in.sbumpc();
    if (c == std::char_traits<char>::eof()) break;
    any = true;
    if (c == '\n') break;
    if (line.size() == max_length) {
      too_long = true;
      return true;
    }
    line.push_back(static_cast<char>(c));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return any;
}

/// Renders a finite double as the shortest text that reads back as the same double.
inline void append_double(std::string& out, double value) {
  char buffer[64];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out.append(buffer, result.ptr);
}

/// Why a header name is unusable, or empty if it is fine.
inline std::string bad_column_name_reason(std::string_view name) {
  if (name.empty()) return "empty";
  if (name != trim(name)) return "has leading or trailing blanks";
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ',' || c == '"' || u < 32 || u == 127)
      return "contains a comma, quote or control character";
  }
  double ignored = 0;
  if (parse_double(name, ignored) != FieldStatus::not_a_number) return "is a number";
  return {};
}

}  // namespace detail

/// Writes `values` (any Eigen matrix; one sample per row) to a CSV file with a header line of
/// column names, e.g. "x,y". Each number is written as the shortest text that reads back as the
/// same double (at most max_digits10 = 17 significant digits), so read_csv returns the values
/// exactly; float matrices are widened to double first. Empty `columns` means "x0,x1,...". The file
/// is replaced atomically.
///
///   ddpm::io::write_csv("samples.csv", samples, {"x", "y"});
///
/// Throws InvalidArgument for a column-count mismatch, a bad name (empty, with a comma, quote or
/// control character, or numeric) or a non-finite value (nothing is written then); throws
/// std::runtime_error naming the file if it cannot be written.
template <class Derived>
void write_csv(const std::filesystem::path& path, const Eigen::DenseBase<Derived>& values,
               const std::vector<std::string>& columns = {}) {
  using Scalar = typename Derived::Scalar;
  static_assert((std::is_floating_point_v<Scalar> && sizeof(Scalar) <= sizeof(double)) ||
                    (std::is_integral_v<Scalar> && sizeof(Scalar) <= 4),
                "write_csv: the matrix scalar must be float, double or an integer of at most 32 "
                "bits, which double holds exactly; cast other types first");
  const Index cols = values.cols();
  ddpm::detail::require(cols >= 1, "values.cols()", cols, ">= 1");
  std::vector<std::string> names = columns;
  if (names.empty()) {
    for (Index j = 0; j < cols; ++j) {
      // Appended, not "x" + to_string(j), which GCC 12 flags falsely (-Wrestrict, PR 105329).
      std::string name = "x";
      name += std::to_string(j);
      names.push_back(std::move(name));
    }
  }
  ddpm::detail::require(static_cast<Index>(names.size()) == cols, "columns.size()", names.size(),
                        "values.cols() = " + std::to_string(cols));
  for (const std::string& name : names) {
    const std::string reason = detail::bad_column_name_reason(name);
    if (!reason.empty()) {
      const std::string allowed =
          "a non-numeric name without commas, quotes or control characters (this one " + reason +
          ")";
      throw InvalidArgument("column name", detail::quote_field(name), allowed);
    }
  }
  std::string text;
  for (std::size_t j = 0; j < names.size(); ++j) {
    if (j > 0) text.push_back(',');
    text.append(names[j]);
  }
  text.push_back('\n');
  for (Index i = 0; i < values.rows(); ++i) {
    for (Index j = 0; j < cols; ++j) {
      const double value = static_cast<double>(values(i, j));
      if (!std::isfinite(value)) {
        throw InvalidArgument("values(" + std::to_string(i) + ", " + std::to_string(j) + ")",
                              ddpm::detail::to_text(value),
                              "finite numbers (CSV files hold no NaN/inf)");
      }
      if (j > 0) text.push_back(',');
      detail::append_double(text, value);
    }
    text.push_back('\n');
  }
  write_file_atomically(path, text);
}

/// Writes a table read by read_csv (or built by hand) back to `path`.
inline void write_csv(const std::filesystem::path& path, const CsvTable& table) {
  write_csv(path, table.values, table.columns);
}

/// Reads a CSV file written by write_csv (or by a spreadsheet: blanks around fields, CRLF line ends
/// and a UTF-8 byte-order mark are accepted). The first line must be a header of distinct column
/// names; every further line must hold exactly one finite number per column. Blank lines are
/// allowed only at the end. Quoted fields are not supported.
///
///   const ddpm::io::CsvTable table = ddpm::io::read_csv("samples.csv");  // table.values: n x 2
///
/// Throws FormatError naming the file, the line and what is wrong (ragged row, non-numeric, NaN or
/// infinite field, missing header, empty file, line longer than kMaxCsvLineLength) or that the file
/// cannot be opened. Never reads out of bounds or buffers an unbounded line.
inline CsvTable read_csv(const std::filesystem::path& path) {
  const std::string file = "ddpm: CSV file '" + path.string() + "'";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw FormatError(file + ": cannot be opened (it is a directory)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(file + ": cannot be opened (missing or unreadable)");
  std::streambuf& buffer = *in.rdbuf();
  const auto fail = [&](std::size_t line_number, const std::string& what) {
    throw FormatError(file + ", line " + std::to_string(line_number) + ": " + what);
  };

  CsvTable table;
  std::string line;
  bool too_long = false;
  std::size_t line_number = 1;
  if (!detail::read_line(buffer, line, kMaxCsvLineLength, too_long)) {
    throw FormatError(file + ": the file is empty; expected a header line such as 'x,y'");
  }
  if (too_long) fail(1, "line longer than " + std::to_string(kMaxCsvLineLength) + " characters");
  if (line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // UTF-8 byte-order mark
  if (detail::trim(line).empty()) fail(1, "missing header: expected column names such as 'x,y'");
  const std::vector<std::string_view> header = detail::split_fields(line);
  bool all_numeric = true;
  for (const std::string_view name : header) {
    double ignored = 0;
    all_numeric = all_numeric && detail::parse_double(name, ignored) == detail::FieldStatus::ok;
  }
  if (all_numeric) {
    fail(1, "missing header: expected column names such as 'x,y', found numbers " +
                detail::quote_field(line));
  }
  for (std::size_t j = 0; j < header.size(); ++j) {
    const std::string name(header[j]);
    const std::string reason = detail::bad_column_name_reason(name);
    if (!reason.empty()) {
      fail(1, "header column " + std::to_string(j + 1) + " " + detail::quote_field(name) + " " +
                  reason);
    }
    if (std::find(table.columns.begin(), table.columns.end(), name) != table.columns.end()) {
      fail(1, "duplicate column name " + detail::quote_field(name));
    }
    table.columns.push_back(name);
  }

  const std::size_t cols = table.columns.size();
  std::vector<double> values;
  std::size_t rows = 0;
  std::size_t first_blank_line = 0;  // a blank line is an error only if data follows it
  while (true) {
    ++line_number;
    if (!detail::read_line(buffer, line, kMaxCsvLineLength, too_long)) break;
    if (too_long) {
      fail(line_number, "line longer than " + std::to_string(kMaxCsvLineLength) + " characters");
    }
    if (detail::trim(line).empty()) {
      if (first_blank_line == 0) first_blank_line = line_number;
      continue;
    }
    if (first_blank_line != 0) fail(first_blank_line, "blank line before more data");
    const std::vector<std::string_view> fields = detail::split_fields(line);
    if (fields.size() != cols) {
      fail(line_number, "expected " + std::to_string(cols) + " fields as in the header, found " +
                            std::to_string(fields.size()));
    }
    for (std::size_t j = 0; j < cols; ++j) {
      double value = 0;
      const std::string where = "field " + std::to_string(j + 1) + " (" + table.columns[j] + ") ";
      switch (detail::parse_double(fields[j], value)) {
        case detail::FieldStatus::ok:
          break;
        case detail::FieldStatus::empty:
          fail(line_number, where + "is empty");
          break;
        case detail::FieldStatus::not_a_number:
          fail(line_number, where + detail::quote_field(fields[j]) + " is not a number");
          break;
        case detail::FieldStatus::non_finite:
          fail(line_number, where + detail::quote_field(fields[j]) + " is not finite (NaN/inf)");
          break;
        case detail::FieldStatus::out_of_range:
          fail(line_number, where + detail::quote_field(fields[j]) + " is out of double range");
          break;
      }
      values.push_back(value);
    }
    ++rows;
  }
  if (in.bad()) throw FormatError(file + ": read error after line " + std::to_string(line_number));
  table.values = Eigen::Map<const Batch<double>>(values.data(), static_cast<Index>(rows),
                                                 static_cast<Index>(cols));
  return table;
}

}  // namespace ddpm::io
