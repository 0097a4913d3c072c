// SPDX-License-Identifier: MIT
// The double parser for standard libraries without floating-point std::from_chars: the same
// value, end pointer and error as std::from_chars on every edge of its grammar and range.
#include "ddpm/core/charconv.hpp"

#include <doctest/doctest.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <system_error>

namespace charconv_test {

namespace {

struct Parsed {
  std::errc ec;
  std::ptrdiff_t end;  // characters consumed
  double value;        // 42 when the parser left it untouched
};

Parsed parse_with_fallback(const char* text) {
  double value = 42.0;
  const std::from_chars_result r =
      ddpm::detail::from_chars_fallback(text, text + std::strlen(text), value);
  return {r.ec, r.ptr - text, value};
}

#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
/// Bitwise-equal values (NaN equal to NaN), so -0.0, subnormals and the last ulp count.
bool same_value(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b));
}

// Every branch of the fallback: signs, points, exponents, words, garbage, both ends of the range.
const char* const kCases[] = {
    "0",
    "-0",
    "1",
    "-1.5",
    "0.1",
    "123456789012345678901234567890",
    ".5",
    "5.",
    "-.25e1",
    "1e10",
    "1E+10",
    "2.5e-3",
    "1e",
    "1e+",
    "1e-x",
    "1.5x",
    "1,5",
    "0x1p3",
    "",
    ".",
    "-",
    "+1",
    " 1",
    "e5",
    "inf",
    "-INF",
    "Infinity",
    "infin",
    "nan",
    "-NaN",
    "nan(abc)",
    "nan(",
    "nan()x",
    "1e999",
    "-1e999",
    "1e-400",
    "2e-324",
    "4.9e-324",
    "1e-310",
    "0e999",
    "0.0e-999",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "2.2250738585072014e-308",
    "0.30000000000000004",
};
#endif

}  // namespace

TEST_CASE("from_chars_fallback parses as std::from_chars does") {
  SUBCASE("stated results on the edges (every standard library)") {
    const Parsed inf = parse_with_fallback("-Infinity");
    CHECK(inf.ec == std::errc{});
    CHECK(inf.end == 9);
    CHECK(inf.value == -std::numeric_limits<double>::infinity());

    const Parsed partial = parse_with_fallback("1e+");  // the exponent needs a digit
    CHECK(partial.ec == std::errc{});
    CHECK(partial.end == 1);
    CHECK(partial.value == 1.0);

    const Parsed plus = parse_with_fallback("+1");  // from_chars takes no '+'
    CHECK(plus.ec == std::errc::invalid_argument);
    CHECK(plus.end == 0);
    CHECK(plus.value == 42.0);

    CHECK(parse_with_fallback("1e999").ec == std::errc::result_out_of_range);
    CHECK(parse_with_fallback("1e999").value == 42.0);
    CHECK(parse_with_fallback("1e-400").ec == std::errc::result_out_of_range);
    CHECK(parse_with_fallback("4.9e-324").value == std::numeric_limits<double>::denorm_min());
    CHECK(parse_with_fallback("0.30000000000000004").value == 0.1 + 0.2);
    CHECK(parse_with_fallback("nan(abc)").end == 8);
    CHECK(parse_with_fallback("nan(").end == 3);
  }

#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  SUBCASE("identical to std::from_chars on every case") {
    for (const char* text : kCases) {
      CAPTURE(std::string(text));
      double expected_value = 42.0;
      const std::from_chars_result expected =
          std::from_chars(text, text + std::strlen(text), expected_value);
      const Parsed got = parse_with_fallback(text);
      CHECK(got.ec == expected.ec);
      CHECK(got.end == expected.ptr - text);
      CHECK(same_value(got.value, expected_value));
    }
  }
#endif
}

}  // namespace charconv_test
