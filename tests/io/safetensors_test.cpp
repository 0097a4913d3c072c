// SPDX-License-Identifier: MIT
// Tests of ddpm/io/safetensors.hpp: F16/BF16 conversion against closed forms and CPython's struct,
// round trips of every dtype, the committed files (one from benchmarks/safetensors_io.py, one from
// the `safetensors` package itself) read back and rewritten byte for byte, and a corpus of corrupt
// headers, each rejected with a FormatError naming the problem.
#include "ddpm/io/safetensors.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "support.hpp"

namespace safetensors_test {

namespace {

namespace fs = std::filesystem;
using ddpm::FormatError;
using ddpm::InvalidArgument;
using ddpm::io::SafetensorsDtype;
using ddpm::io::SafetensorsFile;
using ddpm::io::SafetensorsWriter;
using ddpm::test::TempDir;
using Shape = std::vector<std::int64_t>;

const fs::path kData = fs::path(DDPM_TEST_SOURCE_DIR) / "io" / "data";
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<std::byte> to_bytes(const std::string& text) {
  std::vector<std::byte> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) out[i] = static_cast<std::byte>(text[i]);
  return out;
}

std::vector<std::byte> slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return to_bytes({std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()});
}

/// A safetensors file by hand: the 8-byte little-endian length of `header`, `header` as given
/// (no padding added), then `data`.
std::string raw_file(const std::string& header, const std::string& data = {}) {
  std::string bytes;
  for (int b = 0; b < 8; ++b) bytes.push_back(static_cast<char>((header.size() >> (8 * b)) & 0xFF));
  return bytes + header + data;
}

SafetensorsFile parse(const std::string& bytes) {
  return SafetensorsFile::parse(to_bytes(bytes), "mem.safetensors");
}

/// The value of half pattern `h` by the textbook formula (independent of the bit shuffling).
double half_closed_form(std::uint16_t h) {
  const double sign = (h & 0x8000u) != 0 ? -1.0 : 1.0;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  if (e == 0x1f) return m == 0 ? sign * kInf : std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(m, -24);
  return sign * std::ldexp(1024 + m, e - 25);
}

/// The value of bfloat16 pattern `b` by the textbook formula.
double bfloat16_closed_form(std::uint16_t b) {
  const double sign = (b & 0x8000u) != 0 ? -1.0 : 1.0;
  const int e = (b >> 7) & 0xff;
  const int m = b & 0x7f;
  if (e == 0xff) return m == 0 ? sign * kInf : std::numeric_limits<double>::quiet_NaN();
  if (e == 0) return sign * std::ldexp(m, -133);
  return sign * std::ldexp(128 + m, e - 134);
}

/// Checks a 16-bit format's encoder on every pattern: each finite value encodes to itself; the
/// midpoint between neighbours k and k+1 ties to the even one, and the doubles just below and
/// above it go to k and k+1; the midpoint above the largest finite value overflows to infinity.
template <class Decode, class Encode>
void check_rounding_exhaustively(Decode decode, Encode encode, std::uint16_t infinity) {
  int failures = 0;
  for (std::uint32_t sign : {0u, 0x8000u}) {
    for (std::uint32_t k = 0; k < infinity; ++k) {
      const auto bits = static_cast<std::uint16_t>(sign | k);
      const double a = decode(bits);
      const double b = k + 1 < infinity ? decode(static_cast<std::uint16_t>(bits + 1))
                                        : 2 * a - decode(static_cast<std::uint16_t>(bits - 1));
      const double mid = (a + b) / 2;  // exact: both have few significant bits
      const auto up = static_cast<std::uint16_t>(bits + 1);
      const auto tie = (k & 1u) == 0 ? bits : up;
      if (encode(a) != bits || encode(mid) != tie || encode(std::nextafter(mid, 0.0)) != bits ||
          encode(std::nextafter(mid, 2 * mid)) != up) {
        if (++failures <= 5) {
          FAIL_CHECK("pattern " << int{bits} << ": value, midpoint, below, above encode to "
                                << int{encode(a)} << ", " << int{encode(mid)} << ", "
                                << int{encode(std::nextafter(mid, 0.0))} << ", "
                                << int{encode(std::nextafter(mid, 2 * mid))});
        }
      }
    }
  }
  CHECK(failures == 0);
}

}  // namespace

TEST_CASE("dtype names are the file's spelling and sizes are the element widths") {
  using ddpm::io::safetensors_item_size;
  CHECK(ddpm::to_string(SafetensorsDtype::bf16) == "BF16");
  CHECK(ddpm::to_string(SafetensorsDtype::boolean) == "BOOL");
  CHECK(ddpm::parse_enum<SafetensorsDtype>("I16") == SafetensorsDtype::i16);
  CHECK_THROWS_WITH_AS((void)ddpm::parse_enum<SafetensorsDtype>("f32"),
                       doctest::Contains("F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL"),
                       InvalidArgument);
  CHECK(safetensors_item_size(SafetensorsDtype::f64) == 8);
  CHECK(safetensors_item_size(SafetensorsDtype::bf16) == 2);
  CHECK(safetensors_item_size(SafetensorsDtype::boolean) == 1);
  CHECK(ddpm::io::is_floating(SafetensorsDtype::f16));
  CHECK_FALSE(ddpm::io::is_floating(SafetensorsDtype::u8));
}

TEST_CASE("F16 and BF16 decode every one of the 65536 patterns as the closed form does") {
  int half_failures = 0;
  int bf16_failures = 0;
  for (std::uint32_t k = 0; k < 65536; ++k) {
    const auto bits = static_cast<std::uint16_t>(k);
    const double half = ddpm::io::half_bits_to_float(bits);
    const double half_expected = half_closed_form(bits);
    const bool half_ok = std::isnan(half_expected)
                             ? std::isnan(half) && std::signbit(half) == ((k & 0x8000u) != 0)
                             : half == half_expected && std::signbit(half) == ((k & 0x8000u) != 0);
    half_failures += half_ok ? 0 : 1;
    const double bf16 = ddpm::io::bfloat16_bits_to_float(bits);
    const double bf16_expected = bfloat16_closed_form(bits);
    const bool bf16_ok = std::isnan(bf16_expected)
                             ? std::isnan(bf16)
                             : bf16 == bf16_expected && std::signbit(bf16) == ((k & 0x8000u) != 0);
    bf16_failures += bf16_ok ? 0 : 1;
  }
  CHECK(half_failures == 0);
  CHECK(bf16_failures == 0);
}

TEST_CASE("F16 and BF16 encoding rounds to nearest, ties to even") {
  SUBCASE("every pattern: values, midpoints and their neighbours") {
    check_rounding_exhaustively(
        [](std::uint16_t b) { return static_cast<double>(ddpm::io::half_bits_to_float(b)); },
        ddpm::io::double_to_half_bits, 0x7c00);
    check_rounding_exhaustively(
        [](std::uint16_t b) { return static_cast<double>(ddpm::io::bfloat16_bits_to_float(b)); },
        ddpm::io::double_to_bfloat16_bits, 0x7f80);
  }

  SUBCASE("infinities, NaN and values far outside the range") {
    CHECK(ddpm::io::double_to_half_bits(kInf) == 0x7c00);
    CHECK(ddpm::io::double_to_half_bits(-kInf) == 0xfc00);
    CHECK(ddpm::io::double_to_half_bits(1e300) == 0x7c00);
    CHECK(ddpm::io::double_to_half_bits(-1e-300) == 0x8000);
    CHECK(ddpm::io::double_to_half_bits(std::numeric_limits<double>::denorm_min()) == 0);
    CHECK(ddpm::io::double_to_half_bits(std::numeric_limits<double>::quiet_NaN()) == 0x7e00);
    CHECK(ddpm::io::double_to_bfloat16_bits(std::numeric_limits<double>::quiet_NaN()) == 0x7fc0);
    CHECK(ddpm::io::double_to_bfloat16_bits(-kInf) == 0xff80);
    CHECK(ddpm::io::double_to_bfloat16_bits(1e300) == 0x7f80);
    CHECK(ddpm::io::double_to_bfloat16_bits(1e-300) == 0);
  }

  SUBCASE("F16 agrees with CPython's struct.pack('<e', x)") {
    // Generated by `python3 benchmarks/safetensors_io.py half-table` (CPython's own binary16
    // rounding of these doubles): edge cases, then random values over the whole range.
    struct Row {
      double x;
      std::uint16_t bits;
    };
    const Row table[] = {
        {0.0, 0x0000},
        {-0.0, 0x8000},
        {1.0, 0x3c00},
        {65504.0, 0x7bff},
        {65519.99, 0x7bff},
        {65520.0, 0x7c00},
        {-1000000.0, 0xfc00},
        {5.960464477539063e-08, 0x0001},
        {2.9802322387695312e-08, 0x0000},
        {4.470348358154297e-08, 0x0001},
        {6.103515625e-05, 0x0400},
        {6.1005353927612305e-05, 0x0400},
        {1.00048828125, 0x3c00},
        {1.00146484375, 0x3c02},
        {0.1, 0x2e66},
        {0.3333333333333333, 0x3555},
        {1e-08, 0x0000},
        {-4.4312712027495955, 0xc46e},
        {-0.00010501297068202757, 0x86e2},
        {-0.10648149243215355, 0xaed1},
        {0.0006916731022313734, 0x11ab},
        {-0.00012799869860829523, 0x8832},
        {-0.007654244162072735, 0x9fd7},
        {41276.03548346029, 0x790a},
        {-2933.1413603710234, 0xe9bb},
        {-9.272058006106187e-05, 0x8614},
        {0.0008910254633926018, 0x134d},
        {-7.318522887824122e-06, 0x807b},
        {40322.573834031355, 0x78ec},
        {2.0952959093295753, 0x4031},
        {-1415.9600589141846, 0xe588},
        {9.938580950338523e-05, 0x0683},
        {0.07066284922843832, 0x2c86},
        {-2.3056502541662918e-07, 0x8004},
        {-0.6088778229268552, 0xb8df},
        {1.0219253649767522e-06, 0x0011},
        {0.0035029964383368178, 0x1b2d},
        {0.0006152773883663235, 0x110a},
        {1.4122854904120595e-08, 0x0000},
        {2.28248709250188e-05, 0x017f},
        {-0.00015802342042916043, 0x892e},
        {-3.1321906666269417, 0xc244},
        {-1.4160902842986746e-06, 0x8018},
        {5.939162380176074e-09, 0x0000},
        {-3.5115123546465057, 0xc306},
        {-15.55238630324235, 0xcbc7},
        {7.591240999925696e-07, 0x000d},
        {-749.2990926561615, 0xe1db},
        {-27646.12036170293, 0xf6c0},
        {-7.282191862932013e-06, 0x807a},
        {0.20708028400139178, 0x32a0},
        {4.729822877291748e-08, 0x0001},
        {5140.583049803594, 0x6d05},
        {1230.1653686530108, 0x64ce},
        {-23.120056650660743, 0xcdc8},
        {44173.406157746096, 0x7964},
        {7.410201458661675e-08, 0x0001},
    };
    for (const Row& row : table) {
      CAPTURE(row.x);
      CHECK(ddpm::io::double_to_half_bits(row.x) == row.bits);
    }
  }

  SUBCASE("BF16 from float agrees with the integer rounding formula on 2^20 random floats") {
    // (bits + 0x7fff + lsb) >> 16 is round-to-nearest-even on the float's bit pattern, the usual
    // implementation (PyTorch's c10::BFloat16); NaN patterns are left out.
    std::uint64_t state = 12345;
    int failures = 0;
    for (int i = 0; i < (1 << 20); ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      const auto bits = static_cast<std::uint32_t>(state >> 32);
      const float x = std::bit_cast<float>(bits);
      if (std::isnan(x)) continue;
      const auto expected =
          static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
      failures += ddpm::io::double_to_bfloat16_bits(x) == expected ? 0 : 1;
    }
    CHECK(failures == 0);
  }
}

TEST_CASE_TEMPLATE("every dtype round-trips through SafetensorsWriter and SafetensorsFile", Real,
                   float, double) {
  const std::vector<Real> reals = {Real(0.5),  Real(-1.25), Real(3.0e-3),
                                   Real(1000), Real(-0.0),  Real(7)};
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.set_metadata("config", "{\"width\": 64}");
  w.set_metadata("format", "ddpm");  // replaces
  for (const SafetensorsDtype d : {SafetensorsDtype::f64, SafetensorsDtype::f32,
                                   SafetensorsDtype::f16, SafetensorsDtype::bf16}) {
    w.add(std::string(ddpm::to_string(d)), {2, 3}, reals, d);
  }
  const std::vector<std::int64_t> ints = {-3, 0, 1, 100, -100, 127};
  for (const SafetensorsDtype d : {SafetensorsDtype::i64, SafetensorsDtype::i32,
                                   SafetensorsDtype::i16, SafetensorsDtype::i8}) {
    w.add(std::string(ddpm::to_string(d)), {3, 2}, ints, d);
  }
  w.add<std::uint8_t>("U8", {2}, std::vector<std::uint8_t>{0, 255}, SafetensorsDtype::u8);
  w.add<std::int32_t>("BOOL", {3}, std::vector<std::int32_t>{1, 0, 1}, SafetensorsDtype::boolean);
  w.add<std::int64_t>("extremes", {2},
                      std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(),
                                                std::numeric_limits<std::int64_t>::max()},
                      SafetensorsDtype::i64);
  w.add("scalar", {}, std::vector<Real>{Real(2.5)});
  w.add("empty", {0}, std::vector<Real>{});
  w.add("empty_3x0x2", {3, 0, 2}, std::vector<Real>{}, SafetensorsDtype::bf16);

  const SafetensorsFile file = SafetensorsFile::parse(w.bytes(), "round trip");
  CHECK(file.metadata() ==
        std::map<std::string, std::string>{{"config", "{\"width\": 64}"}, {"format", "ddpm"}});
  CHECK(file.tensors().size() == 14);
  CHECK(file.trailing_bytes() == 0);
  CHECK(file.data_start() % 8 == 0);

  SUBCASE("float dtypes give back the values rounded once to the stored type") {
    CHECK(file.values<Real>("F64") == reals);
    CHECK(file.tensor("F32").shape == Shape{2, 3});
    for (std::size_t i = 0; i < reals.size(); ++i) {
      const double x = reals[i];
      CAPTURE(x);
      CHECK(file.values<double>("F32")[i] == static_cast<double>(static_cast<float>(x)));
      CHECK(file.values<double>("F16")[i] ==
            ddpm::io::half_bits_to_float(ddpm::io::double_to_half_bits(x)));
      CHECK(file.values<double>("BF16")[i] ==
            ddpm::io::bfloat16_bits_to_float(ddpm::io::double_to_bfloat16_bits(x)));
    }
    CHECK(file.values<double>("F16")[2] == doctest::Approx(3.0e-3).epsilon(1.0 / 1024));
    CHECK(std::signbit(file.values<Real>("BF16")[4]));  // -0 keeps its sign
  }

  SUBCASE("integer dtypes are exact, and read as reals too") {
    for (const char* name : {"I64", "I32", "I16", "I8"}) {
      CAPTURE(name);
      CHECK(file.values<std::int64_t>(name) == ints);
      CHECK(file.values<double>(name) == std::vector<double>{-3, 0, 1, 100, -100, 127});
      CHECK(file.values<std::int8_t>(name) == std::vector<std::int8_t>{-3, 0, 1, 100, -100, 127});
    }
    CHECK(file.values<std::uint8_t>("U8") == std::vector<std::uint8_t>{0, 255});
    CHECK(file.values<std::int16_t>("BOOL") == std::vector<std::int16_t>{1, 0, 1});
    CHECK(file.values<std::int64_t>("extremes") ==
          std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(),
                                    std::numeric_limits<std::int64_t>::max()});
  }

  SUBCASE("a 0-d scalar and empty tensors") {
    CHECK(file.tensor("scalar").shape.empty());
    CHECK(file.tensor("scalar").numel() == 1);
    CHECK(file.values<Real>("scalar") == std::vector<Real>{Real(2.5)});
    CHECK(file.tensor("empty").numel() == 0);
    CHECK(file.values<Real>("empty").empty());
    CHECK(file.tensor("empty_3x0x2").shape == Shape{3, 0, 2});
    CHECK(file.bytes("empty_3x0x2").empty());
  }

  SUBCASE("tensors are laid out as the reference writer does: widest dtype first, then by name") {
    std::vector<std::string> order;
    for (const auto& t : file.tensors()) order.push_back(t.name);
    CHECK(order == std::vector<std::string>{"I64", "extremes", "F64", "F32", "empty", "scalar",
                                            "I32", "BF16", "empty_3x0x2", "F16", "I16", "I8", "U8",
                                            "BOOL"});
    std::size_t end = 0;
    for (const auto& t : file.tensors()) {
      CHECK(t.begin == end);
      end = t.end;
    }
  }

  SUBCASE("narrowing on read is refused with FormatError naming the tensor") {
    CHECK_THROWS_WITH_AS((void)file.values<std::int64_t>("F32"),
                         "ddpm: safetensors file 'round trip': tensor 'F32' has dtype F32; "
                         "values<std::int64_t>() reads integer and BOOL tensors only (read it as "
                         "float or double)",
                         FormatError);
    CHECK_THROWS_WITH_AS((void)file.values<std::int8_t>("extremes"),
                         "ddpm: safetensors file 'round trip': tensor 'extremes' element 0 = "
                         "-9223372036854775808 does not fit std::int8_t",
                         FormatError);
    CHECK_THROWS_WITH_AS((void)file.values<std::uint8_t>("I8"),
                         doctest::Contains("tensor 'I8' element 0 = -3 does not fit std::uint8_t"),
                         FormatError);
    CHECK_THROWS_WITH_AS((void)file.tensor("missing"),
                         "ddpm: safetensors file 'round trip': no tensor 'missing' (the file has "
                         "14 tensors)",
                         FormatError);
    CHECK_FALSE(file.contains("missing"));
    CHECK(file.contains("F16"));
  }
}

TEST_CASE("SafetensorsWriter rejects bad tensors with InvalidArgument") {
  SafetensorsWriter w;
  const std::vector<double> six(6, 1.0);
  w.add("a", {2, 3}, six);
  CHECK_THROWS_WITH_AS(w.add("a", {6}, six),
                       "ddpm: invalid name = a; allowed: a name not added before", InvalidArgument);
  CHECK_THROWS_WITH_AS(w.add("__metadata__", {6}, six), doctest::Contains("other than"),
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(w.add("b", {2, 2}, six),
                       "ddpm: invalid values.size() = 6; allowed: the number of elements of shape "
                       "[2,2] = 4",
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(w.add("b", {-2, -3}, six), doctest::Contains("invalid shape dimension = -2"),
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(w.add("b", {1LL << 40, 1LL << 40}, six),
                       doctest::Contains("invalid values.size() = 6"), InvalidArgument);
  CHECK_THROWS_WITH_AS(w.add("b", {6}, six, SafetensorsDtype::i32),
                       doctest::Contains("invalid stored = I32; allowed: F64, F32, F16 or BF16"),
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(
      w.add<std::int64_t>("b", {2}, std::vector<std::int64_t>{1, 300}, SafetensorsDtype::u8),
      "ddpm: invalid value = 300; allowed: an integer in [0, 255] for U8 "
      "(tensor 'b', element 1)",
      InvalidArgument);
  CHECK_THROWS_WITH_AS(
      w.add<std::int8_t>("b", {1}, std::vector<std::int8_t>{2}, SafetensorsDtype::boolean),
      doctest::Contains("an integer in [0, 1] for BOOL"), InvalidArgument);
  CHECK_THROWS_WITH_AS(w.add("\xff", {6}, six), doctest::Contains("valid UTF-8"), InvalidArgument);
  CHECK_THROWS_WITH_AS(w.set_metadata("k", "\xc3"), doctest::Contains("invalid metadata value"),
                       InvalidArgument);
  // Nothing half-added: the file still holds only "a".
  const SafetensorsFile file = SafetensorsFile::parse(w.bytes(), "after errors");
  CHECK(file.tensors().size() == 1);
}

TEST_CASE("write() replaces the file atomically and load() reads it back") {
  TempDir dir;
  const fs::path path = dir.path / "model.safetensors";
  SafetensorsWriter w;
  w.add("w", {2}, std::vector<float>{1.5f, -2.0f});
  w.write(path);
  w.add("v", {1}, std::vector<float>{3.0f});
  w.write(path);  // over the old file
  CHECK_FALSE(fs::exists(dir.path / "model.safetensors.tmp"));
  const SafetensorsFile file = SafetensorsFile::load(path);
  CHECK(file.source() == path.string());
  CHECK(file.values<float>("w") == std::vector<float>{1.5f, -2.0f});
  CHECK(file.values<float>("v") == std::vector<float>{3.0f});
  CHECK(slurp(path) == w.bytes());

  CHECK_THROWS_WITH_AS((void)SafetensorsFile::load(dir.path / "missing.safetensors"),
                       doctest::Contains("missing.safetensors' cannot be opened"), FormatError);
  CHECK_THROWS_WITH_AS(w.write(dir.path / "no_such_dir" / "x.safetensors"),
                       doctest::Contains("cannot write file"), std::runtime_error);
}

TEST_CASE("the file benchmarks/safetensors_io.py wrote reads back with the expected values") {
  const SafetensorsFile file = SafetensorsFile::load(kData / "safetensors_all_dtypes.safetensors");
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.metadata().at("note") ==
        "quote \" backslash \\ newline \n tab \t bell \x07 \xc3\xbcn\xc3\xaf \xe2\x82\xac");
  CHECK(file.trailing_bytes() == 0);

  CHECK(file.tensor("f64").dtype == SafetensorsDtype::f64);
  CHECK(file.tensor("f64").shape == Shape{2, 3});
  const std::vector<double> f64 = file.values<double>("f64");
  CHECK(f64 == std::vector<double>{0.1, -2.5, 1e300, -0.0, 5e-324, 3.141592653589793});
  CHECK(std::signbit(f64[3]));
  CHECK(file.values<float>("f32") == std::vector<float>{0.1f, -3.25f, 1e-40f});
  CHECK(file.tensor("f32").shape == Shape{3, 1});

  // F16: 65520 rounds to infinity, 3e-8 to the smallest subnormal 2^-24, 0.1 to 0x2e66.
  const std::vector<double> f16 = file.values<double>("f16");
  REQUIRE(f16.size() == 9);
  const std::vector<double> f16_expected = {
      1.0, -2.0, 65504.0, kInf, std::ldexp(1.0, -24), std::ldexp(1.0, -24), 0.0999755859375, -kInf};
  for (std::size_t i = 0; i < f16_expected.size(); ++i) CHECK(f16[i] == f16_expected[i]);
  CHECK(std::isnan(f16[8]));

  // BF16: -0.1 -> -205/2048; 3e38 -> 0x7f62 = 1.765625 x 2^127; 3.4e38 above the largest finite
  // -> infinity; 1e-40 -> the smallest subnormal 2^-133; 2^-134 ties to even -> +0.
  const std::vector<double> bf16 = file.values<double>("bf16");
  REQUIRE(bf16.size() == 8);
  CHECK(file.tensor("bf16").shape == Shape{2, 4});
  const std::vector<double> bf16_expected = {1.0,  -205.0 / 2048,         std::ldexp(1.765625, 127),
                                             kInf, std::ldexp(1.0, -133), -kInf};
  for (std::size_t i = 0; i < bf16_expected.size(); ++i) CHECK(bf16[i] == bf16_expected[i]);
  CHECK(std::isnan(bf16[6]));
  CHECK((bf16[7] == 0.0 && !std::signbit(bf16[7])));

  CHECK(file.values<std::int64_t>("i64") ==
        std::vector<std::int64_t>{-9007199254740993, std::int64_t{1} << 62, -1});
  CHECK(file.values<std::int32_t>("i32") ==
        std::vector<std::int32_t>{std::numeric_limits<std::int32_t>::min(),
                                  std::numeric_limits<std::int32_t>::max(), 0, 7});
  CHECK(file.values<std::int16_t>("i16") == std::vector<std::int16_t>{-32768, 32767});
  CHECK(file.values<std::int8_t>("i8") == std::vector<std::int8_t>{-128, 127, -1});
  CHECK(file.values<std::uint8_t>("u8") == std::vector<std::uint8_t>{0, 255});
  CHECK(file.values<std::uint8_t>("bool") == std::vector<std::uint8_t>{1, 0, 0, 1});
  CHECK(file.tensor("bool").dtype == SafetensorsDtype::boolean);
  CHECK(file.values<float>("scalar") == std::vector<float>{42.5f});
  CHECK(file.tensor("scalar").shape.empty());
  CHECK(file.tensor("empty").shape == Shape{0});
  CHECK(file.tensor("empty_2x0").shape == Shape{2, 0});
  CHECK(file.values<float>("\xc3\xbcn\xc3\xaf"
                           "code.weight") == std::vector<float>{1.5f});

  SUBCASE("SafetensorsWriter writes the same content to the same bytes") {
    SafetensorsWriter w;
    w.set_metadata("note", file.metadata().at("note"));
    w.set_metadata("format", "pt");
    const double nan = std::numeric_limits<double>::quiet_NaN();
    w.add("f64", {2, 3}, std::vector<double>{0.1, -2.5, 1e300, -0.0, 5e-324, 3.141592653589793},
          SafetensorsDtype::f64);
    w.add("f32", {3, 1}, std::vector<double>{0.1, -3.25, 1e-40}, SafetensorsDtype::f32);
    w.add("f16", {9},
          std::vector<double>{1.0, -2.0, 65504.0, 65520.0, std::ldexp(1.0, -24), 3e-8, 0.1, -kInf,
                              nan},
          SafetensorsDtype::f16);
    w.add("bf16", {2, 4},
          std::vector<double>{1.0, -0.1, 3e38, 3.4e38, 1e-40, -kInf, nan, std::ldexp(1.0, -134)},
          SafetensorsDtype::bf16);
    w.add("i64", {3}, std::vector<std::int64_t>{-9007199254740993, std::int64_t{1} << 62, -1},
          SafetensorsDtype::i64);
    w.add("i32", {2, 2}, std::vector<std::int64_t>{-2147483648LL, 2147483647LL, 0, 7},
          SafetensorsDtype::i32);
    w.add("i16", {2}, std::vector<std::int16_t>{-32768, 32767}, SafetensorsDtype::i16);
    w.add("i8", {3}, std::vector<std::int8_t>{-128, 127, -1}, SafetensorsDtype::i8);
    w.add("u8", {2}, std::vector<std::uint8_t>{0, 255}, SafetensorsDtype::u8);
    w.add("bool", {4}, std::vector<std::uint8_t>{1, 0, 0, 1}, SafetensorsDtype::boolean);
    w.add("scalar", {}, std::vector<float>{42.5f});
    w.add("empty", {0}, std::vector<float>{});
    w.add("empty_2x0", {2, 0}, std::vector<double>{}, SafetensorsDtype::f64);
    w.add(
        "\xc3\xbcn\xc3\xaf"
        "code.weight",
        {1}, std::vector<float>{1.5f});
    CHECK(w.bytes() == slurp(kData / "safetensors_all_dtypes.safetensors"));
  }
}

TEST_CASE(
    "a file the `safetensors` package wrote reads, and SafetensorsWriter rewrites it exactly") {
  // safetensors_reference_numpy.safetensors is gen/model.safetensors of syoyo/safetensors-cpp
  // (MIT), written by `safetensors.numpy.save_file({"weight1": np.random.rand(8, 8),
  // "weight2": np.random.rand(16, 16)})`.
  const std::vector<std::byte> bytes = slurp(kData / "safetensors_reference_numpy.safetensors");
  const SafetensorsFile file = SafetensorsFile::parse(bytes, "reference");
  REQUIRE(file.tensors().size() == 2);
  CHECK(file.metadata().empty());
  CHECK(file.tensor("weight1").shape == Shape{8, 8});
  CHECK(file.tensor("weight2").shape == Shape{16, 16});
  SafetensorsWriter w;
  for (const auto& t : file.tensors()) {
    CHECK(t.dtype == SafetensorsDtype::f64);
    const std::vector<double> v = file.values<double>(t.name);
    CHECK(std::all_of(v.begin(), v.end(), [](double x) { return x >= 0 && x < 1; }));
    w.add(t.name, t.shape, v, SafetensorsDtype::f64);
  }
  CHECK(w.bytes() == bytes);
}

TEST_CASE("benchmarks/safetensors_io.py regenerates the committed files byte for byte") {
  if (std::system("python3 -c 'import json, struct, fractions' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: no python3");
    return;
  }
  const fs::path script =
      fs::path(DDPM_TEST_SOURCE_DIR) / ".." / "benchmarks" / "safetensors_io.py";
  const std::string command =
      "python3 '" + script.string() + "' check '" + kData.string() + "' >/dev/null";
  CHECK(std::system(command.c_str()) == 0);
}

TEST_CASE("bytes after the last tensor are accepted and counted, the header may be padded") {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data("\0\0\x80\x3f\0\0\0\x40", 8);  // 1.0f, 2.0f
  CHECK(parse(raw_file(header, data)).trailing_bytes() == 0);
  const SafetensorsFile padded = parse(raw_file(header, data + std::string(24, '\0')));
  CHECK(padded.trailing_bytes() == 24);
  CHECK(padded.values<double>("a") == std::vector<double>{1.0, 2.0});
  CHECK(padded.tensor("a").end == 8);
  CHECK(parse(raw_file("{}", "junk")).trailing_bytes() == 4);
  // JSON whitespace around the object (writers align the data section with it).
  CHECK(parse(raw_file("\t\n " + header + "  \r\n", data)).values<float>("a")[1] == 2.0f);
  // Any key order in the header; tensors() in data order; __metadata__ anywhere.
  const SafetensorsFile shuffled = parse(
      raw_file(R"({"z":{"data_offsets":[0,4],"shape":[],"dtype":"F32"},"__metadata__":{"k":"v"},)"
               R"("a":{"shape":[1],"dtype":"F32","data_offsets":[4,8]}})",
               data));
  CHECK(shuffled.tensors().front().name == "z");
  CHECK(shuffled.tensors().back().name == "a");
  CHECK(shuffled.metadata().at("k") == "v");
}

TEST_CASE("corrupt files are rejected with FormatError naming the file, the tensor and the bytes") {
  const std::string f32x4 = R"("dtype":"F32","shape":[2,2],"data_offsets":[0,16])";
  const std::string data16(16, '\0');
  const std::string valid = raw_file("{\"w\":{" + f32x4 + "}}", data16);
  REQUIRE_NOTHROW((void)parse(valid));
  const auto tensor = [&](const std::string& entry,
                          const std::string& data = std::string(16, '\0')) {
    return raw_file("{\"w\":{" + entry + "}}", data);
  };
  struct Broken {
    std::string name;
    std::string bytes;
    const char* message;
  };
  const std::vector<Broken> corpus = {
      {"empty file", "", "only 0 bytes, shorter than the 8-byte header length field"},
      {"7 bytes", valid.substr(0, 7), "only 7 bytes, shorter than the 8-byte header length field"},
      {"header length beyond the file", valid.substr(0, 40),
       "the header length field (file bytes 0 to 8) says 57 bytes but only 32 follow"},
      {"header length above the cap", std::string("\x01\xe1\xf5\x05\0\0\0\0", 8) + valid.substr(8),
       "says 100000001 bytes, more than the limit of 100000000"},
      {"header length 2^64 - 1", std::string(8, '\xff') + valid.substr(8),
       "says 18446744073709551615 bytes, more than the limit"},
      {"header not JSON", raw_file("{\"w\":{" + f32x4 + "}", data16),
       "the header (file bytes 8 to 64) is not valid JSON (error at file byte 64)"},
      {"header with invalid UTF-8", raw_file("{\"w\xff\":{" + f32x4 + "}}", data16),
       "is not valid JSON"},
      {"header NUL-padded", raw_file("{\"w\":{" + f32x4 + "}}" + std::string(3, '\0'), data16),
       "the header (file bytes 8 to 68) has a NUL byte at file byte 65 (JSON allows none"},
      {"header an array", raw_file("[1,2]", data16),
       "the header (file bytes 8 to 13) is a JSON array, not an object"},
      {"entry not an object", raw_file("{\"w\":[0,16]}", data16),
       "tensor 'w' in the header (file bytes 8 to 20) is a JSON array, not an object with dtype"},
      {"no dtype", tensor(R"("shape":[2,2],"data_offsets":[0,16])"),
       "tensor 'w' in the header "
       "(file bytes 8 to 51) has no "
       "dtype"},
      {"no shape", tensor(R"("dtype":"F32","data_offsets":[0,16])"),
       "tensor 'w' in the header "
       "(file bytes 8 to 51) has no "
       "shape"},
      {"no data_offsets", tensor(R"("dtype":"F32","shape":[2,2])"), "has no data_offsets"},
      {"extra key", tensor(f32x4 + R"(,"offset":0)"),
       "has the unknown key 'offset' (allowed: dtype, shape, data_offsets)"},
      {"unknown dtype", tensor(R"("dtype":"F8_E4M3","shape":[2,2],"data_offsets":[0,4])"),
       "tensor 'w' in the header (file bytes 8 to 68): unsupported dtype 'F8_E4M3' (ddpm reads "
       "F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)"},
      {"lower-case dtype", tensor(R"("dtype":"f32","shape":[2,2],"data_offsets":[0,16])"),
       "unsupported dtype 'f32'"},
      {"dtype not a string", tensor(R"("dtype":4,"shape":[2,2],"data_offsets":[0,16])"),
       ": dtype is a JSON number"},
      {"shape not an array", tensor(R"("dtype":"F32","shape":4,"data_offsets":[0,16])"),
       ": shape is a JSON number"},
      {"negative dimension", tensor(R"("dtype":"F32","shape":[-2,-2],"data_offsets":[0,16])"),
       "shape [-2,-2] has the dimension -2, not an integer in [0, 2^63)"},
      {"non-integer dimension", tensor(R"("dtype":"F32","shape":[2.0,2],"data_offsets":[0,16])"),
       "shape [2.0,2] has the dimension 2.0, not an integer"},
      {"string dimension", tensor(R"("dtype":"F32","shape":["2",2],"data_offsets":[0,16])"),
       "has the dimension \"2\", not an integer"},
      {"dimension 2^63",
       tensor(R"("dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,16])"),
       "has the dimension 9223372036854775808, not an integer in [0, 2^63)"},
      {"numel overflow",
       tensor(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16])"),
       "shape [4294967296,4294967296] x 4-byte F32 elements overflows 2^63 bytes"},
      {"byte count overflow (the crate's example)",
       tensor(R"("dtype":"I32","shape":[2,9223372036854775807],"data_offsets":[0,16])"),
       "overflows 2^63 bytes"},
      {"offsets reversed", tensor(R"("dtype":"F32","shape":[2,2],"data_offsets":[16,0])"),
       "data_offsets [16,0] are reversed"},
      {"offsets not a pair", tensor(R"("dtype":"F32","shape":[2,2],"data_offsets":[16])"),
       "data_offsets [16] is not a pair of non-negative integers [begin, end]"},
      {"negative offset", tensor(R"("dtype":"F32","shape":[2,2],"data_offsets":[-1,15])"),
       "data_offsets [-1,15] is not a pair"},
      {"size != numel x dtype size",
       tensor(R"("dtype":"F32","shape":[2,2],"data_offsets":[0,12])", std::string(12, '\0')),
       "tensor 'w': data_offsets [0, 12] (file bytes 65 to 77) hold 12 bytes, but F32 x shape "
       "[2,2] needs 16"},
      {"F64 where the size fits F32",
       tensor(R"("dtype":"F64","shape":[2,2],"data_offsets":[0,16])"),
       "hold 16 bytes, but F64 x shape [2,2] needs 32"},
      {"outside the data section (truncated file)", valid.substr(0, valid.size() - 4),
       "tensor 'w': data_offsets [0, 16] (file bytes 65 to 81) end outside the data section (12 "
       "bytes, file bytes 65 to 77); is the file truncated?"},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                std::string(24, '\0')),
       "tensor 'b': data_offsets [8, 24] (file bytes 125 to 141) overlap tensor 'a' "
       "(data_offsets [0, 16] (file bytes 117 to 133))"},
      {"the same bytes twice",
       raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                R"("b":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}})",
                data16),
       "tensor 'b': data_offsets [0, 16] (file bytes 117 to 133) overlap tensor 'a'"},
      {"hole between tensors",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                std::string(20, '\0')),
       "tensor 'b': data_offsets [12, 20] (file bytes 129 to 137) leave a hole of 4 bytes after "
       "tensor 'a' (tensors must tile the data section)"},
      {"hole at the start",
       tensor(R"("dtype":"F32","shape":[2,2],"data_offsets":[4,20])", std::string(20, '\0')),
       "leave a hole of 4 bytes after the start of the data section"},
      {"duplicate tensor name",
       raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                data16),
       "has the key 'w' twice in one object (two tensors of one name)"},
      {"duplicate key in an entry", tensor(f32x4 + R"(,"dtype":"F32")"),
       "has the key 'dtype' twice in one object"},
      {"__metadata__ not an object", raw_file(R"({"__metadata__":"pt"})"),
       "__metadata__ is a JSON string, not an object of strings"},
      {"__metadata__ value not a string", raw_file(R"({"__metadata__":{"epochs":3}})"),
       "__metadata__ entry 'epochs' is a JSON number, not a string"},
      {"duplicate __metadata__ key", raw_file(R"({"__metadata__":{"a":"1","a":"2"}})"),
       "has the key 'a' twice in one object"},
  };
  for (const Broken& broken : corpus) {
    CAPTURE(broken.name);
    CHECK_THROWS_WITH_AS((void)parse(broken.bytes), doctest::Contains(broken.message), FormatError);
    CHECK_THROWS_WITH_AS((void)parse(broken.bytes),
                         doctest::Contains("ddpm: safetensors file 'mem.safetensors': "),
                         FormatError);
  }
}

}  // namespace safetensors_test
