// SPDX-License-Identifier: MIT
// Locale-independent, exact parsing of a double on every standard library: std::from_chars where
// the library has its floating-point overload, an equivalent elsewhere (libc++ before 20).
#pragma once

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <limits>
#include <locale>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

namespace ddpm::detail {

/// std::from_chars(first, last, value) for a double in the general format, without it: the longest
/// prefix that matches from_chars' grammar (an optional '-', then decimal digits with an optional
/// point and exponent, or inf, infinity, nan or nan(chars) in any case) is read by a stream in the
/// "C" locale, which fails on such text only when the number is out of range. Same results as
/// std::from_chars, `value` untouched on error; tests/core/charconv_test.cpp compares the two.
inline std::from_chars_result from_chars_fallback(const char* first, const char* last,
                                                  double& value) {
  const char* p = first;
  const bool negative = p != last && *p == '-';
  if (negative) ++p;
  const auto starts_with = [&](std::string_view word) {
    if (static_cast<std::size_t>(last - p) < word.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(p[i])) != word[i]) return false;
    }
    return true;
  };
  if (starts_with("inf")) {
    p += starts_with("infinity") ? 8 : 3;
    value = negative ? -std::numeric_limits<double>::infinity()
                     : std::numeric_limits<double>::infinity();
    return {p, std::errc{}};
  }
  if (starts_with("nan")) {
    p += 3;
    const char* q = p;  // an optional "(n-char-sequence)"
    if (q != last && *q == '(') {
      ++q;
      while (q != last && (std::isalnum(static_cast<unsigned char>(*q)) || *q == '_')) ++q;
      if (q != last && *q == ')') p = q + 1;
    }
    value = negative ? -std::numeric_limits<double>::quiet_NaN()
                     : std::numeric_limits<double>::quiet_NaN();
    return {p, std::errc{}};
  }
  bool nonzero = false;  // a nonzero mantissa digit: a result of 0 is then an underflow
  const auto skip_digits = [&](bool* any_nonzero) {
    const char* start = p;
    for (; p != last && *p >= '0' && *p <= '9'; ++p) {
      if (any_nonzero != nullptr && *p != '0') *any_nonzero = true;
    }
    return p - start;
  };
  std::ptrdiff_t mantissa = skip_digits(&nonzero);
  if (p != last && *p == '.') {
    ++p;
    mantissa += skip_digits(&nonzero);
  }
  if (mantissa == 0) return {first, std::errc::invalid_argument};
  if (p != last && (*p == 'e' || *p == 'E')) {
    const char* mark = p++;
    if (p != last && (*p == '+' || *p == '-')) ++p;
    if (skip_digits(nullptr) == 0) p = mark;  // "1e" and "1e+" end before the 'e'
  }
  std::istringstream in(std::string(first, p));
  in.imbue(std::locale::classic());
  double parsed = 0.0;
  in >> parsed;
  // On overflow libstdc++ stores +-max and libc++ +-inf, both with failbit; libc++ also sets it
  // for subnormal results, which from_chars accepts; an underflow to 0 may or may not set it.
  const bool subnormal = std::fpclassify(parsed) == FP_SUBNORMAL;
  if ((in.fail() && !subnormal) || (parsed == 0.0 && nonzero)) {
    return {p, std::errc::result_out_of_range};
  }
  value = parsed;
  return {p, std::errc{}};
}

/// Parses a double like std::from_chars (general format, "C" locale, exact) on any standard
/// library.
inline std::from_chars_result from_chars_double(const char* first, const char* last,
                                                double& value) {
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  return std::from_chars(first, last, value);
#else
  return from_chars_fallback(first, last, value);
#endif
}

}  // namespace ddpm::detail
