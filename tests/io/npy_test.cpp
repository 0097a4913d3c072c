// SPDX-License-Identifier: MIT
// Tests of ddpm/io/npy.hpp: round trips, numpy's exact header layout, a corpus of broken files, and
// interoperability with numpy itself when /usr/bin/python3 has it.
#include "ddpm/io/npy.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "support.hpp"

namespace npy_test {

namespace {

namespace fs = std::filesystem;
using Shape = std::vector<std::uint64_t>;

using ddpm::test::TempDir;

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Element i of the test arrays: exact in float, double and (for uint8) a byte.
template <class T>
T element(std::size_t i) {
  if constexpr (std::is_same_v<T, std::uint8_t>) {
    return static_cast<std::uint8_t>((i * 37 + 11) % 256);
  } else {
    return static_cast<T>((static_cast<double>(i) - 7.0) * 0.375);
  }
}

/// A .npy file by hand: magic, version, little-endian header length, the header text as given
/// (nothing added), then `data`.
std::string raw_npy(const std::string& header, const std::string& data = {}, int major = 1) {
  std::string bytes = "\x93NUMPY";
  bytes.push_back(static_cast<char>(major));
  bytes.push_back('\0');
  const std::size_t length_bytes = major == 1 ? 2 : 4;
  for (std::size_t b = 0; b < length_bytes; ++b) {
    bytes.push_back(static_cast<char>((header.size() >> (8 * b)) & 0xFFu));
  }
  return bytes + header + data;
}

/// `n` bytes of zeros (data of n / item-size elements).
std::string zeros(std::size_t n) { return std::string(n, '\0'); }

}  // namespace

TEST_CASE_TEMPLATE("write_npy then read_npy gives back the shape, dtype and exact values", T, float,
                   double, std::uint8_t) {
  TempDir dir;
  for (const Shape& shape : {Shape{}, Shape{0}, Shape{5}, Shape{3, 4}, Shape{2, 3, 4}}) {
    CAPTURE(ddpm::io::detail::shape_text(shape));
    std::uint64_t n = 1;
    for (const std::uint64_t d : shape) n *= d;
    std::vector<T> values(n);
    for (std::size_t i = 0; i < n; ++i) values[i] = element<T>(i);
    const fs::path file = dir.path / "a.npy";

    ddpm::io::write_npy(file, shape, values);
    const ddpm::io::NpyArray array = ddpm::io::read_npy(file);

    CHECK(array.dtype == ddpm::io::npy_dtype_of<T>);
    CHECK(array.shape == shape);
    CHECK(array.size() == n);
    CHECK(array.values<T>() == values);  // exact
    const std::vector<double> widened = array.values<double>();
    for (std::size_t i = 0; i < n; ++i) CHECK(widened[i] == static_cast<double>(values[i]));
    CHECK_FALSE(fs::exists(dir.path / "a.npy.tmp"));
  }
}

TEST_CASE("write_npy lays the header out exactly as numpy.save does") {
  TempDir dir;
  const fs::path file = dir.path / "a.npy";
  ddpm::io::write_npy(file, {3, 4}, std::vector<float>(12, 1.5f));
  const std::string bytes = slurp(file);
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";

  REQUIRE(bytes.size() == 128 + 48);
  CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(static_cast<unsigned char>(bytes[8]) + 256 * static_cast<unsigned char>(bytes[9]) == 118);
  CHECK(bytes.substr(10, dict.size()) == dict);
  CHECK(bytes.substr(10 + dict.size(), 117 - dict.size()) == std::string(117 - dict.size(), ' '));
  CHECK(bytes[127] == '\n');

  SUBCASE("the data starts at a multiple of 64 for every rank") {
    for (const Shape& shape : {Shape{}, Shape{7}, Shape{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}) {
      std::uint64_t n = 1;
      for (const std::uint64_t d : shape) n *= d;
      ddpm::io::write_npy(file, shape, std::vector<double>(n, 0.0));
      const std::string written = slurp(file);
      CHECK((written.size() - n * 8) % 64 == 0);
      CHECK(written[written.size() - n * 8 - 1] == '\n');
    }
  }
  SUBCASE("a scalar and a 1-D shape are written as Python tuples") {
    ddpm::io::write_npy(file, {}, std::vector<double>{2.5});
    CHECK(slurp(file).find("'shape': (), }") != std::string::npos);
    ddpm::io::write_npy(file, {5}, std::vector<std::uint8_t>(5, 1));
    CHECK(slurp(file).find("{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }") !=
          std::string::npos);
  }
}

TEST_CASE("Eigen matrices are written row by row as (rows, cols)") {
  TempDir dir;
  ddpm::Batch<float> samples(3, 2);
  samples << 1, 2, 3, 4, 5, 6;
  Eigen::MatrixXd column_major(2, 3);  // written in C order all the same
  column_major << 1, 2, 3, 4, 5, 6;
  ddpm::io::write_npy(dir.path / "s.npy", samples);
  ddpm::io::write_npy(dir.path / "c.npy", column_major);

  const ddpm::io::NpyArray s = ddpm::io::read_npy(dir.path / "s.npy");
  CHECK(s.dtype == ddpm::io::NpyDtype::f32);
  CHECK(s.shape == Shape{3, 2});
  CHECK(s.values<float>() == std::vector<float>{1, 2, 3, 4, 5, 6});
  const ddpm::Batch<double> c = ddpm::io::read_npy_matrix(dir.path / "c.npy");
  CHECK(c == column_major);
  CHECK(ddpm::io::read_npy_matrix(dir.path / "s.npy") == samples.cast<double>());
}

TEST_CASE("read_npy accepts what numpy writes: any key order, blanks, versions 2.0 and 3.0") {
  TempDir dir;
  const std::string data = std::string("\x00\x00\xc0\x3f\x00\x00\x20\xc0", 8);  // 1.5f, -2.5f
  const auto check_read = [&](const std::string& bytes) {
    const ddpm::io::NpyArray a = ddpm::io::read_npy(dir.write("a.npy", bytes));
    CHECK(a.dtype == ddpm::io::NpyDtype::f32);
    CHECK(a.shape == Shape{2, 1});
    CHECK(a.values<float>() == std::vector<float>{1.5f, -2.5f});
  };
  check_read(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }\n", data));
  check_read(raw_npy("{'shape': (2, 1), 'fortran_order': False, 'descr': '<f4'}   \n", data));
  check_read(raw_npy("{ 'fortran_order' :False,'shape':(2,1,),\"descr\":\"<f4\" }\n", data));
  check_read(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }\n", data, 2));
  check_read(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }\n", data, 3));
}

TEST_CASE("values<std::uint8_t>() refuses to narrow a real array, read_npy_matrix wants 2-D") {
  TempDir dir;
  ddpm::io::write_npy(dir.path / "a.npy", {4}, std::vector<double>{0, 1, 2, 3});
  const ddpm::io::NpyArray a = ddpm::io::read_npy(dir.path / "a.npy");
  CHECK_THROWS_WITH_AS((void)a.values<std::uint8_t>(), doctest::Contains("'|u1' (uint8)"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy_matrix(dir.path / "a.npy"),
                       doctest::Contains("shape (4,) is not a matrix; expected 2 dimensions"),
                       ddpm::FormatError);
  CHECK_THROWS_WITH_AS(
      ddpm::io::write_npy(dir.path / "b.npy", {2, 3}, std::vector<double>(5, 0.0)),
      "ddpm: invalid data.size() = 5; allowed: the number of elements of shape (2, 3) = 6",
      ddpm::InvalidArgument);
  CHECK_FALSE(fs::exists(dir.path / "b.npy"));
}

TEST_CASE("broken .npy files are rejected with FormatError naming the file and the problem") {
  TempDir dir;
  const std::string f4x3 = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n";
  struct Broken {
    const char* name;
    std::string bytes;
    const char* message;
  };
  const std::vector<Broken> corpus = {
      {"empty", "", "not a .npy file (it does not start with the magic bytes \\x93NUMPY)"},
      {"bad magic", "\x93NUMPZ\x01", "not a .npy file"},
      {"a CSV file", "x,y\n1,2\n", "not a .npy file"},
      {"only the magic", "\x93NUMPY\x01", "truncated header (7 bytes)"},
      {"unknown version 4.0", raw_npy(f4x3, zeros(12), 4),
       "unsupported format version 4.0 (supported: 1.0, 2.0, 3.0)"},
      {"unknown version 1.1", std::string("\x93NUMPY\x01\x01", 8) + raw_npy(f4x3).substr(8),
       "unsupported format version 1.1"},
      {"truncated header", raw_npy(f4x3).substr(0, 40),
       "truncated header: the header length field says 58 bytes but only 30 follow"},
      {"header length beyond the file", raw_npy(f4x3).substr(0, 8) + "\xff\xff" + f4x3,
       "truncated header: the header length field says 65535 bytes but only 58 follow"},
      {"version 2 length beyond the file",
       raw_npy(f4x3, zeros(12), 2).substr(0, 8) + std::string("\0\0\0\x80", 4) + f4x3 + zeros(12),
       "the header length field says 2147483648 bytes"},
      {"fortran order",
       raw_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }\n", zeros(12)),
       "header: fortran_order is True (column-major data), which is not supported"},
      {"big-endian float32",
       raw_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }\n", zeros(12)),
       "header: dtype '>f4' is big-endian, which is not supported; convert it with "
       "a.astype('<f4')"},
      {"int64", raw_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }\n", zeros(24)),
       "header: unsupported dtype '<i8'; supported: '<f4' (float32), '<f8' (float64), '|u1' "
       "(uint8)"},
      {"dtype mismatch: float64 header, float32 data",
       raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n", zeros(12)),
       "shape (3,) of dtype '<f8' needs 24 data bytes, but the file holds 12 (truncated, or a "
       "wrong shape or dtype)"},
      {"shape larger than the file",
       raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 2), }\n", zeros(12)),
       "shape (1000, 2) of dtype '<f4' needs 8000 data bytes, but the file holds 12"},
      {"trailing bytes", raw_npy(f4x3, zeros(16)),
       "needs 12 data bytes, but the file holds 16 (trailing bytes, or a wrong shape or dtype)"},
      {"absurd shape (2**62,)",
       raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }\n",
               zeros(12)),
       "shape (4611686018427387904,) of dtype '<f4' has more bytes than fit in 64 bits, but the "
       "file holds 12 data bytes"},
      {"absurd uint8 shape (2**62,)",
       raw_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904,), }\n"),
       "needs 4611686018427387904 data bytes, but the file holds 0"},
      {"absurd 2-D shape",
       raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n"),
       "has more bytes than fit in 64 bits"},
      {"shape entry beyond 64 bits",
       raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551616,), }\n"),
       "header: shape entry too large for 64 bits"},
      {"negative shape",
       raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }\n", zeros(12)),
       "header: shape entries must be non-negative integers, found '-3,), }"},
      {"1-D shape without its comma",
       raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }\n", zeros(12)),
       "header: shape (3) is not a tuple; a 1-D shape is written (3,)"},
      {"unknown key",
       raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}\n", zeros(12)),
       "header: unknown header key 'x'; expected 'descr', 'fortran_order' and 'shape'"},
      {"missing key", raw_npy("{'descr': '<f4', 'shape': (3,), }\n", zeros(12)),
       "header: the header has no 'fortran_order'"},
      {"duplicate key",
       raw_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}\n",
               zeros(12)),
       "header: the header has key 'descr' twice"},
      {"not a dict", raw_npy("['descr', '<f4']\n", zeros(12)),
       "header: the header must be a Python dict starting with '{', found '['descr', '<f4']"},
      {"text after the dict", raw_npy(f4x3 + "junk\n", zeros(12)),
       "header: unexpected text after the header dict: 'junk?'"},
      {"unterminated header",
       raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3\n", zeros(12)),
       "header: expected ',' or ')' in shape, found the end of the header"},
      {"fortran_order not a bool",
       raw_npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }\n", zeros(12)),
       "header: fortran_order must be False or True, found '0, 'shape': (3,), }?'"},
  };
  for (const Broken& broken : corpus) {
    CAPTURE(broken.name);
    const fs::path file = dir.write("broken.npy", broken.bytes);
    const std::string prefix = "ddpm: .npy file '" + file.string() + "': ";
    CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(file), doctest::Contains(broken.message),
                         ddpm::FormatError);
    CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(file), doctest::Contains(prefix.c_str()),
                         ddpm::FormatError);
  }

  SUBCASE("a missing file, a directory and a file above the size limit") {
    CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(dir.path / "missing.npy"),
                         doctest::Contains("missing.npy': cannot be opened"), ddpm::FormatError);
    CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(dir.path), doctest::Contains("is a directory"),
                         ddpm::FormatError);
    const fs::path file = dir.write("big.npy", raw_npy(f4x3, zeros(12)));
    CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(file, 50),
                         doctest::Contains("has 80 bytes, more than the limit of 50"),
                         ddpm::FormatError);
  }
}

TEST_CASE("files written by ddpm load in numpy, and files numpy writes load in ddpm") {
  if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
    MESSAGE("skipped: /usr/bin/python3 has no numpy (apt-get install python3-numpy to run it)");
    return;
  }
  TempDir dir;
  const auto values = [](auto tag, std::size_t n) {
    std::vector<decltype(tag)> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = element<decltype(tag)>(i);
    return v;
  };
  ddpm::io::write_npy(dir.path / "f4.npy", {3, 4}, values(float{}, 12));
  ddpm::io::write_npy(dir.path / "f8.npy", {2, 3, 4}, values(double{}, 24));
  ddpm::io::write_npy(dir.path / "u1.npy", {5}, values(std::uint8_t{}, 5));
  ddpm::io::write_npy(dir.path / "scalar.npy", {}, values(double{}, 1));
  ddpm::io::write_npy(dir.path / "empty.npy", {0, 2}, values(float{}, 0));

  // numpy checks ddpm's files against the same formulas, then writes its own.
  const std::string script = R"(
import sys, numpy as np
from numpy.lib import format as fmt
d = sys.argv[1]
def real(n, t): return ((np.arange(n, dtype=np.float64) - 7.0) * 0.375).astype(t)
def byte(n): return ((np.arange(n) * 37 + 11) % 256).astype(np.uint8)
expected = {
    'f4': real(12, np.float32).reshape(3, 4),
    'f8': real(24, np.float64).reshape(2, 3, 4),
    'u1': byte(5),
    'scalar': np.array(real(1, np.float64)[0]),
    'empty': np.zeros((0, 2), np.float32),
}
for name, want in expected.items():
    got = np.load(d + '/' + name + '.npy', allow_pickle=False)
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, got.shape)
    assert np.array_equal(got, want), name
np.save(d + '/np_f4.npy', real(6, np.float32).reshape(2, 3))
np.save(d + '/np_f8.npy', real(24, np.float64).reshape(4, 3, 2))
np.save(d + '/np_u1.npy', byte(10).reshape(1, 2, 5))
np.save(d + '/np_scalar.npy', np.float64(-2.625))
for version in [(2, 0), (3, 0)]:
    with open(d + '/np_v%d.npy' % version[0], 'wb') as f:
        fmt.write_array(f, real(8, np.float32).reshape(2, 4), version=version)
np.save(d + '/np_fortran.npy', np.asfortranarray(real(6, np.float64).reshape(2, 3)))
np.save(d + '/np_big.npy', real(3, np.float64).astype('>f8'))
np.save(d + '/np_i4.npy', np.arange(3, dtype=np.int32))
print('numpy', np.__version__, 'ok')
)";
  const fs::path script_file = dir.write("check.py", script);
  const std::string command = "/usr/bin/python3 '" + script_file.string() + "' '" +
                              dir.path.string() + "' > '" + (dir.path / "log.txt").string() +
                              "' 2>&1";
  const int status = std::system(command.c_str());
  const std::string log = slurp(dir.path / "log.txt");
  REQUIRE_MESSAGE(status == 0, "python output: " << log);
  MESSAGE(log);

  const ddpm::io::NpyArray f4 = ddpm::io::read_npy(dir.path / "np_f4.npy");
  CHECK(f4.dtype == ddpm::io::NpyDtype::f32);
  CHECK(f4.shape == Shape{2, 3});
  CHECK(f4.values<float>() == values(float{}, 6));
  const ddpm::io::NpyArray f8 = ddpm::io::read_npy(dir.path / "np_f8.npy");
  CHECK(f8.shape == Shape{4, 3, 2});
  CHECK(f8.values<double>() == values(double{}, 24));
  const ddpm::io::NpyArray u1 = ddpm::io::read_npy(dir.path / "np_u1.npy");
  CHECK(u1.dtype == ddpm::io::NpyDtype::u8);
  CHECK(u1.shape == Shape{1, 2, 5});
  CHECK(u1.values<std::uint8_t>() == values(std::uint8_t{}, 10));
  const ddpm::io::NpyArray scalar = ddpm::io::read_npy(dir.path / "np_scalar.npy");
  CHECK(scalar.shape.empty());
  CHECK(scalar.values<double>() == std::vector<double>{-2.625});
  for (const char* name : {"np_v2.npy", "np_v3.npy"}) {
    CAPTURE(name);
    const ddpm::io::NpyArray v = ddpm::io::read_npy(dir.path / name);
    CHECK(v.shape == Shape{2, 4});
    CHECK(v.values<float>() == values(float{}, 8));
  }
  CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(dir.path / "np_fortran.npy"),
                       doctest::Contains("fortran_order is True"), ddpm::FormatError);
  CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(dir.path / "np_big.npy"),
                       doctest::Contains("dtype '>f8' is big-endian"), ddpm::FormatError);
  CHECK_THROWS_WITH_AS((void)ddpm::io::read_npy(dir.path / "np_i4.npy"),
                       doctest::Contains("unsupported dtype '<i4'"), ddpm::FormatError);
}

}  // namespace npy_test
