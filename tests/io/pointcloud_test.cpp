// SPDX-License-Identifier: MIT
// Tests of ddpm/io/pointcloud.hpp: round trips through .ply (binary and ASCII) and .npy,
// hand-written fixtures (.xyz, ASCII and binary PLY with extra properties and faces, an OFF box
// sampled by area), folders, and one check per kind of corrupt file, each naming the file.
#include "ddpm/io/pointcloud.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "support.hpp"

namespace pointcloud_test {

namespace {

namespace fs = std::filesystem;
using ddpm::Batch;
using ddpm::FormatError;
using ddpm::Index;
using ddpm::test::TempDir;

/// Appends `value` to `bytes` little-endian, whatever the host's byte order.
template <class T>
void put(std::string& bytes, T value) {
  using Bits = std::conditional_t<
      sizeof(T) == 1, std::uint8_t,
      std::conditional_t<sizeof(T) == 2, std::uint16_t,
                         std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>>;
  const auto bits = std::bit_cast<Bits>(value);
  for (std::size_t b = 0; b < sizeof(T); ++b) {
    bytes.push_back(static_cast<char>((static_cast<std::uint64_t>(bits) >> (8 * b)) & 0xFFu));
  }
}

/// A small cloud whose values are exact in float32.
Batch<double> small_cloud(Index n) {
  Batch<double> cloud(n, 3);
  for (Index i = 0; i < n; ++i) {
    for (Index c = 0; c < 3; ++c) cloud(i, c) = (static_cast<double>(i * 3 + c) - 7.0) * 0.375;
  }
  return cloud;
}

/// A doctest matcher for messages containing `text`.
doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

/// The message prefix that names `path`.
std::string named(const fs::path& path) {
  return "ddpm: point-cloud file '" + path.string() + "': ";
}

/// A binary PLY whose vertex element (float x, y, z) is written from `cloud`.
std::string binary_ply(const Batch<double>& cloud) {
  std::string bytes = "ply\nformat binary_little_endian 1.0\nelement vertex " +
                      std::to_string(cloud.rows()) +
                      "\nproperty float x\nproperty float y\nproperty float z\nend_header\n";
  for (Index i = 0; i < cloud.rows(); ++i) {
    for (Index c = 0; c < 3; ++c) put(bytes, static_cast<float>(cloud(i, c)));
  }
  return bytes;
}

/// Whether every row of `part` is a distinct row of `whole`.
bool distinct_rows_of(const Batch<double>& part, const Batch<double>& whole) {
  std::set<Index> used;
  for (Index i = 0; i < part.rows(); ++i) {
    Index found = -1;
    for (Index j = 0; j < whole.rows(); ++j) {
      if (part.row(i) == whole.row(j)) found = j;
    }
    if (found < 0 || !used.insert(found).second) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("write_ply then read_ply gives the float32 coordinates back, binary and ASCII") {
  TempDir dir;
  Batch<double> cloud(4, 3);
  cloud << 0.1, -2.5, 3.0, 1e-7, 12345.678, -0.333333333333, 0, 0, 0, -1e20, 7, 0.5;
  const Batch<double> expected = cloud.cast<float>().cast<double>();
  ddpm::io::write_ply(dir.path / "b.ply", cloud);
  ddpm::io::write_ply(dir.path / "a.ply", cloud, ddpm::io::PlyEncoding::ascii);
  CHECK(ddpm::io::read_ply(dir.path / "b.ply") == expected);
  CHECK(ddpm::io::read_ply(dir.path / "a.ply") == expected);
  CHECK(fs::file_size(dir.path / "b.ply") ==
        std::string("ply\nformat binary_little_endian 1.0\ncomment written by ddpm\nelement "
                    "vertex 4\nproperty float x\nproperty float y\nproperty float z\nend_header\n")
                .size() +
            4 * 12);
  // Float input writes the same file.
  ddpm::io::write_ply(dir.path / "f.ply", cloud.cast<float>());
  CHECK(ddpm::io::read_ply(dir.path / "f.ply") == expected);

  Batch<double> bad = cloud;
  bad(2, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(ddpm::io::write_ply(dir.path / "x.ply", bad), ddpm::InvalidArgument);
  CHECK_THROWS_AS(ddpm::io::write_ply(dir.path / "x.ply", Batch<double>::Zero(3, 2)),
                  ddpm::InvalidArgument);
}

TEST_CASE("write_point_clouds_npy then read_point_clouds gives (S, N, 3) back") {
  TempDir dir;
  const Batch<double> clouds = small_cloud(3 * 5);
  ddpm::io::write_point_clouds_npy(dir.path / "c.npy", clouds, 5);
  const ddpm::io::NpyArray array = ddpm::io::read_npy(dir.path / "c.npy");
  CHECK(array.dtype == ddpm::io::NpyDtype::f32);
  CHECK(array.shape == std::vector<std::uint64_t>{3, 5, 3});
  std::vector<fs::path> files;
  CHECK(ddpm::io::read_point_clouds(dir.path / "c.npy", 5, 0, &files) == clouds);
  CHECK(files.size() == 3);
  // float64 arrays with more points per cloud than asked for: each cloud is subsampled.
  ddpm::io::write_npy(dir.path / "d.npy", {2, 6, 3},
                      std::span<const double>(clouds.data(), 2 * 6 * 3));
  const Batch<double> sub = ddpm::io::read_point_clouds(dir.path / "d.npy", 4, 9);
  REQUIRE(sub.rows() == 8);
  CHECK(distinct_rows_of(sub.topRows(4), clouds.topRows(6)));
  CHECK(distinct_rows_of(sub.bottomRows(4), clouds.middleRows(6, 6)));
  CHECK(sub == ddpm::io::read_point_clouds(dir.path / "d.npy", 4, 9));
  CHECK_THROWS_AS(ddpm::io::write_point_clouds_npy(dir.path / "e.npy", clouds, 4),
                  ddpm::InvalidArgument);
}

TEST_CASE("read_xyz reads rows of blanks or commas with comments and extra columns") {
  TempDir dir;
  const fs::path file = dir.write("p.xyz",
                                  "# exported by a scanner\n"
                                  "1 2 3\n"
                                  "\n"
                                  "  4.5,\t-6e-1 , +7  # trailing comment\r\n"
                                  "8,9,10,255,0,0\n"
                                  "-1 -2 -3 extra words here");
  Batch<double> expected(4, 3);
  expected << 1, 2, 3, 4.5, -0.6, 7, 8, 9, 10, -1, -2, -3;
  CHECK(ddpm::io::read_xyz(file) == expected);
  // .txt goes through the same reader.
  const fs::path txt = dir.write("p.txt", "0 0 0\n1 1 1\n2 2 2\n");
  Batch<double> diagonal(3, 3);
  diagonal << 0, 0, 0, 1, 1, 1, 2, 2, 2;
  CHECK(ddpm::io::read_point_cloud(txt, 3) == diagonal);
}

TEST_CASE("an ASCII PLY with extra vertex properties and a face element") {
  TempDir dir;
  const fs::path file = dir.write("m.ply",
                                  "ply\r\n"
                                  "format ascii 1.0\r\n"
                                  "comment made by hand\r\n"
                                  "obj_info fixture\r\n"
                                  "element vertex 3\r\n"
                                  "property float32 nx\r\n"
                                  "property double x\r\n"
                                  "property uchar red\r\n"
                                  "property float z\r\n"
                                  "property list uchar int tags\r\n"
                                  "property float64 y\r\n"
                                  "element face 2\r\n"
                                  "property list uchar int vertex_indices\r\n"
                                  "property uchar flag\r\n"
                                  "end_header\r\n"
                                  "0.5 1 255 3 2 7 8 2\r\n"
                                  "0 4 0 6 0 5\r\n"
                                  "1 7 9 9 3 1 2 3 8\r\n"
                                  "3 0 1 2 1\r\n"
                                  "4 0 1 2 0\r\n0\r\n");
  Batch<double> expected(3, 3);
  expected << 1, 2, 3, 4, 5, 6, 7, 8, 9;
  CHECK(ddpm::io::read_ply(file) == expected);
}

TEST_CASE("a binary PLY with a face element before the vertices and lists in both") {
  TempDir dir;
  std::string bytes =
      "ply\nformat binary_little_endian 1.0\n"
      "element face 2\nproperty list uchar int vertex_indices\nproperty short id\n"
      "element vertex 3\nproperty double x\nproperty list ushort float uv\nproperty int8 k\n"
      "property float y\nproperty float z\n"
      "element extra 1\nproperty uint16 a\nend_header\n";
  // Faces: a triangle and a quad, each with a short id.
  put<std::uint8_t>(bytes, 3);
  for (const std::int32_t v : {0, 1, 2}) put(bytes, v);
  put<std::int16_t>(bytes, -5);
  put<std::uint8_t>(bytes, 4);
  for (const std::int32_t v : {0, 1, 2, 0}) put(bytes, v);
  put<std::int16_t>(bytes, 6);
  const std::array<std::array<double, 3>, 3> vertices = {{{0.25, -1, 2}, {3, 4, 5}, {-6, 7.5, 8}}};
  for (std::size_t v = 0; v < 3; ++v) {
    put(bytes, vertices[v][0]);
    put<std::uint16_t>(bytes, static_cast<std::uint16_t>(v));  // v floats of uv
    for (std::size_t k = 0; k < v; ++k) put(bytes, 0.5f);
    put<std::int8_t>(bytes, -1);
    put(bytes, static_cast<float>(vertices[v][1]));
    put(bytes, static_cast<float>(vertices[v][2]));
  }
  put<std::uint16_t>(bytes, 42);
  const fs::path file = dir.write("b.ply", bytes);
  const Batch<double> points = ddpm::io::read_ply(file);
  REQUIRE(points.rows() == 3);
  for (Index v = 0; v < 3; ++v) {
    for (Index c = 0; c < 3; ++c) {
      CHECK(points(v, c) == vertices[static_cast<std::size_t>(v)][static_cast<std::size_t>(c)]);
    }
  }
}

TEST_CASE("an OFF box is sampled uniformly by area: points on its faces in area proportion") {
  // The box [0, 2] x [0, 1] x [0, 0.5], faces as quads (fan-triangulated), a comment, COFF-style
  // colors on the faces. Face areas: x faces 0.5, y faces 1, z faces 2 (each twice; total 7).
  TempDir dir;
  const fs::path file = dir.write("box.off",
                                  "OFF\n# a box\n8 6 12\n"
                                  "0 0 0\n2 0 0\n2 1 0\n0 1 0\n"
                                  "0 0 0.5\n2 0 0.5\n2 1 0.5\n0 1 0.5\n"
                                  "4 0 3 2 1 255 0 0\n4 4 5 6 7\n4 0 1 5 4\n4 2 3 7 6\n"
                                  "4 0 4 7 3\n4 1 2 6 5\n");
  const ddpm::io::TriangleMesh mesh = ddpm::io::read_off(file);
  CHECK(mesh.vertices.rows() == 8);
  CHECK(mesh.triangles.size() == 12);
  // Binomial tolerance: 4.5 standard errors of n = 14000 points.
  constexpr Index kPoints = 14000;
  const Batch<double> points = ddpm::io::read_point_cloud(file, kPoints, 3);
  CHECK(points == ddpm::io::read_point_cloud(file, kPoints, 3));
  CHECK(points != ddpm::io::read_point_cloud(file, kPoints, 4));
  const std::array<double, 3> sides = {2, 1, 0.5};
  std::array<Index, 3> on_face{};
  Index top_left = 0;  // on the top face (z = 0.5) with x < 0.5: a quarter of that face
  bool on_surface = true;
  for (Index i = 0; i < kPoints; ++i) {
    int faces = 0;
    for (std::size_t c = 0; c < 3; ++c) {
      const double v = points(i, static_cast<Index>(c));
      on_surface = on_surface && v >= -1e-12 && v <= sides[c] + 1e-12;
      if (std::abs(v) < 1e-12 || std::abs(v - sides[c]) < 1e-12) {
        ++on_face[c];
        ++faces;
      }
    }
    on_surface = on_surface && faces >= 1;
    top_left += std::abs(points(i, 2) - 0.5) < 1e-12 && points(i, 0) < 0.5 ? 1 : 0;
  }
  CHECK(on_surface);
  const std::array<double, 3> shares = {1.0 / 7, 2.0 / 7, 4.0 / 7};
  for (std::size_t c = 0; c < 3; ++c) {
    const double fraction = static_cast<double>(on_face[c]) / kPoints;
    INFO("faces normal to axis " << c << ": " << fraction << " vs " << shares[c]);
    CHECK(std::abs(fraction - shares[c]) <= 4.5 * std::sqrt(shares[c] * (1 - shares[c]) / kPoints));
  }
  const double quarter = 2.0 / 7 / 4;
  CHECK(std::abs(static_cast<double>(top_left) / kPoints - quarter) <=
        4.5 * std::sqrt(quarter * (1 - quarter) / kPoints));
}

TEST_CASE("read_point_clouds reads a folder sorted by name, each file resampled to N points") {
  TempDir dir;
  const Batch<double> many = small_cloud(10);
  std::string xyz;
  for (Index i = 0; i < many.rows(); ++i) {
    xyz += std::to_string(many(i, 0)) + " " + std::to_string(many(i, 1)) + " " +
           std::to_string(many(i, 2)) + "\n";
  }
  dir.write("b_points.xyz", xyz);
  dir.write("a_exact.ply", binary_ply(small_cloud(6)));
  dir.write("c_tetra.OFF",
            "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n");
  dir.write("notes.md", "not a cloud");
  fs::create_directories(dir.path / "sub.ply");  // a folder, even with a cloud's name, is skipped
  std::vector<fs::path> files;
  const Batch<double> clouds = ddpm::io::read_point_clouds(dir.path, 6, 5, &files);
  REQUIRE(files.size() == 3);
  CHECK(files[0].filename() == "a_exact.ply");
  CHECK(files[1].filename() == "b_points.xyz");
  CHECK(files[2].filename() == "c_tetra.OFF");
  REQUIRE(clouds.rows() == 18);
  CHECK(clouds.topRows(6) == small_cloud(6));  // exactly N points: kept in file order
  CHECK(distinct_rows_of(clouds.middleRows(6, 6), ddpm::io::read_xyz(dir.path / "b_points.xyz")));
  // The mesh is sampled with the file's position (2) as RNG sample index.
  const ddpm::io::TriangleMesh tetra = ddpm::io::read_off(dir.path / "c_tetra.OFF");
  CHECK(clouds.bottomRows(6) == ddpm::io::sample_mesh(tetra, 6, 5, 2));
  CHECK(clouds == ddpm::io::read_point_clouds(dir.path, 6, 5));
  CHECK(clouds.middleRows(6, 6) != ddpm::io::read_point_clouds(dir.path, 6, 6).middleRows(6, 6));
  // One file is one cloud.
  CHECK(ddpm::io::read_point_clouds(dir.path / "a_exact.ply", 6) == small_cloud(6));
}

TEST_CASE("corrupt PLY files are FormatErrors naming the file and the place") {
  TempDir dir;
  const auto check = [&](const std::string& name, const std::string& content,
                         const std::string& message) {
    const fs::path file = dir.write(name, content);
    CAPTURE(name);
    CHECK_THROWS_WITH_AS(ddpm::io::read_ply(file), contains(named(file) + message), FormatError);
  };
  const std::string xyz_header = "property float x\nproperty float y\nproperty float z\n";
  check("magic.ply", "plx\nformat ascii 1.0\n", "not a PLY file");
  check("noend.ply", "ply\nformat ascii 1.0\nelement vertex 1\n" + xyz_header,
        "truncated header (no end_header line)");
  check("noformat.ply", "ply\nelement vertex 1\n" + xyz_header + "end_header\n1 2 3\n",
        "the header has no format line");
  check("version.ply", "ply\nformat ascii 2.0\nend_header\n",
        "line 2: expected 'format <ascii|binary_little_endian> 1.0'");
  check("big.ply",
        "ply\nformat binary_big_endian 1.0\nelement vertex 1\n" + xyz_header + "end_header\n",
        "line 2: binary_big_endian PLY is not supported");
  check("keyword.ply", "ply\nformat ascii 1.0\nelemnt vertex 1\nend_header\n",
        "line 3: unknown header line starting with 'elemnt'");
  check("orphan.ply", "ply\nformat ascii 1.0\nproperty float x\nend_header\n",
        "line 3: a property before any element");
  check("type.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n",
        "line 4: expected 'property <type> <name>'");
  check("count.ply", "ply\nformat ascii 1.0\nelement vertex -3\nend_header\n",
        "line 3: expected 'element <name> <count>'");
  check("novertex.ply", "ply\nformat ascii 1.0\nelement face 0\nend_header\n",
        "the header has no vertex element");
  check("noz.ply",
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
        "end_header\n1 2\n",
        "the vertex element has no property z");
  check("listx.ply",
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar float x\nproperty float "
        "y\nproperty float z\nend_header\n1 1 2 3\n",
        "the vertex property x is a list");
  check(
      "huge.ply",
      "ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000000\n" + xyz_header +
          "end_header\n" + std::string(24, '\0'),
      "the header declares 1000000000000000 vertex elements, more than the 24 data bytes can hold");
  check("shortascii.ply",
        "ply\nformat ascii 1.0\nelement vertex 3\n" + xyz_header +
            "end_header\n1.0000000 2.0000000 3.0000000\n4.0000000 5.0000000 6.0000000\n",
        "line 10: the data ends inside vertex 2 of 3 (short data)");
  {
    std::string bytes = "ply\nformat binary_little_endian 1.0\nelement vertex 1\n" + xyz_header +
                        "element face 2\nproperty list uchar int vertex_indices\nend_header\n";
    const std::size_t data = bytes.size();
    for (int i = 0; i < 3; ++i) put(bytes, 1.0f);
    put<std::uint8_t>(bytes, 3);
    for (const std::int32_t v : {0, 0, 0}) put(bytes, v);
    put<std::uint8_t>(bytes, 3);
    put<std::int32_t>(bytes, 0);  // the second face is cut short
    check("shortbinary.ply", bytes,
          "byte " + std::to_string(data + 12 + 13 + 1) +
              ": the data ends inside face 1 of 2 (short data)");
  }
  check("nanascii.ply",
        "ply\nformat ascii 1.0\nelement vertex 2\n" + xyz_header + "end_header\n1 2 3\n4 nan 6\n",
        "line 9: vertex 1 has a coordinate that is not finite (NaN/inf)");
  {
    std::string bytes = binary_ply(small_cloud(2));
    const std::size_t second = bytes.size() - 12;
    bytes.replace(bytes.size() - 4, 4, std::string("\x00\x00\x80\x7f", 4));  // +inf as z
    check("infbinary.ply", bytes,
          "byte " + std::to_string(second) +
              ": vertex 1 has a coordinate that is not finite (NaN/inf)");
  }
  check("word.ply",
        "ply\nformat ascii 1.0\nelement vertex 1\n" + xyz_header + "end_header\n1 two 3\n",
        "line 8: 'two' is not a number (in vertex 0)");
  check("trailing.ply", binary_ply(small_cloud(2)) + "xy",
        "byte " + std::to_string(binary_ply(small_cloud(2)).size()) +
            ": 2 bytes after the last element");
  check("trailingascii.ply",
        "ply\nformat ascii 1.0\nelement vertex 1\n" + xyz_header + "end_header\n1 2 3\n4\n",
        "line 9: unexpected data after the last element");
  {
    std::string bytes = "ply\nformat binary_little_endian 1.0\nelement vertex 1\n" + xyz_header +
                        "element face 1\nproperty list char int vertex_indices\nend_header\n";
    for (int i = 0; i < 3; ++i) put(bytes, 1.0f);
    const std::size_t count = bytes.size();
    put<std::int8_t>(bytes, -1);
    check("negative.ply", bytes,
          "byte " + std::to_string(count) + ": negative list length -1 in face 0");
  }
  check("empty.ply", "ply\nformat ascii 1.0\nelement vertex 0\n" + xyz_header + "end_header\n",
        "has no points (0 vertices)");
  CHECK_THROWS_WITH_AS(ddpm::io::read_ply(dir.path / "missing.ply"),
                       contains("'" + (dir.path / "missing.ply").string() + "'"), FormatError);
}

TEST_CASE("corrupt .xyz and OFF files are FormatErrors naming the file and the line") {
  TempDir dir;
  const auto check_xyz = [&](const std::string& name, const std::string& content,
                             const std::string& message) {
    const fs::path file = dir.write(name, content);
    CAPTURE(name);
    CHECK_THROWS_WITH_AS(ddpm::io::read_xyz(file), contains(named(file) + message), FormatError);
  };
  check_xyz("two.xyz", "1 2 3\n4 5\n", "line 2: expected at least 3 numbers (x y z), found 2");
  check_xyz("word.xyz", "1 2 3\n# fine\n4 five 6\n", "line 3: 'five' is not a number");
  check_xyz("nan.xyz", "1 2 3\n4 5 NaN\n", "line 2: coordinate 'NaN' is not finite (NaN/inf)");
  check_xyz("inf.xyz", "1 -inf 3\n", "line 1: coordinate '-inf' is not finite (NaN/inf)");
  check_xyz("empty.xyz", "# only a comment\n\n", "has no points");

  const auto check_off = [&](const std::string& name, const std::string& content,
                             const std::string& message) {
    const fs::path file = dir.write(name, content);
    CAPTURE(name);
    CHECK_THROWS_WITH_AS(ddpm::io::read_point_cloud(file, 8), contains(named(file) + message),
                         FormatError);
  };
  // Long enough numbers that the counts' size check passes and the short data is found.
  const std::string tri =
      "0.000000 0.000000 0.000000\n1.000000 0.000000 0.000000\n"
      "0.000000 1.000000 0.000000\n";
  check_off("magic.off", "PLY\n3 1 0\n" + tri + "3 0 1 2\n",
            "line 1: not an OFF file (expected 'OFF', found 'PLY')");
  check_off("nocounts.off", "OFF\n", "truncated header (no 'vertices faces edges' line)");
  check_off("badcounts.off", "OFF\n3 x 0\n" + tri, "line 2: expected the counts");
  check_off("huge.off", "OFF 99999999999 1 0\n" + tri + "3 0 1 2\n",
            "line 1: the header declares 99999999999 vertices and 1 faces, more than the");
  check_off("shortv.off", "OFF\n4 1 0\n" + tri, "the file ends after 3 of 4 vertices (short data)");
  check_off("shortf.off", "OFF\n3 2 0\n" + tri + "3 0 1 2\n",
            "the file ends after 1 of 2 faces (short data)");
  check_off("missing.off", "OFF\n3 1 0\n" + tri + "3 0 1 3\n",
            "line 6: face 0 references vertex '3', but the vertices are 0..3 - 1");
  check_off("negative.off", "OFF\n3 1 0\n" + tri + "3 0 -1 2\n",
            "line 6: face 0 references vertex '-1'");
  check_off("line.off", "OFF\n3 1 0\n" + tri + "2 0 1\n",
            "line 6: face 0 starts with '2'; expected its vertex count, at least 3");
  check_off("fewindices.off", "OFF\n3 1 0\n" + tri + "4 0 1 2\n",
            "line 6: face 0 has 3 indices; its count says 4");
  check_off("nanv.off", "OFF\n3 1 0\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n",
            "line 4: coordinate 'nan' is not finite (NaN/inf)");
  check_off("flat.off", "OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n",
            "the mesh has zero area (no faces, or all faces degenerate)");
  check_off("nofaces.off", "OFF\n3 0 0\n" + tri, "the mesh has zero area");
  check_off("extra.off", "OFF\n3 1 0\n" + tri + "3 0 1 2\n3 0 1 2\n",
            "line 7: unexpected text after the last face (wrong counts?)");
}

TEST_CASE("read_point_cloud and read_point_clouds name the file for every problem") {
  TempDir dir;
  const fs::path few = dir.write("few.xyz", "1 2 3\n4 5 6\n");
  CHECK_THROWS_WITH_AS(ddpm::io::read_point_cloud(few, 3),
                       (named(few) + "too few points: 2, but 3 are needed").c_str(), FormatError);
  const fs::path obj = dir.write("mesh.obj", "v 0 0 0\n");
  CHECK_THROWS_WITH_AS(ddpm::io::read_point_cloud(obj, 3),
                       contains(named(obj) + "unsupported format '.obj'"), FormatError);
  CHECK_THROWS_WITH_AS(ddpm::io::read_point_clouds(few, 3), contains(named(few) + "too few points"),
                       FormatError);
  // A folder with no supported file, and a folder whose file is bad.
  const fs::path empty = dir.path / "empty";
  fs::create_directories(empty);
  std::ofstream(empty / "readme.md") << "nothing";
  CHECK_THROWS_WITH_AS(
      ddpm::io::read_point_clouds(empty, 3),
      ("ddpm: point-cloud folder '" + empty.string() + "' has no .xyz, .txt, .ply or .off files")
          .c_str(),
      FormatError);
  const fs::path mixed = dir.path / "mixed";
  fs::create_directories(mixed);
  std::ofstream(mixed / "a.xyz") << "1 2 3\n4 5 6\n7 8 9\n";
  std::ofstream(mixed / "b.xyz") << "1 2 3\n4 5 6\n";
  CHECK_THROWS_WITH_AS(ddpm::io::read_point_clouds(mixed, 3),
                       contains(named(mixed / "b.xyz") + "too few points: 2"), FormatError);

  // .npy: rank, last dimension, dtype, too few points, non-finite values.
  const auto check_npy = [&](const std::string& name, const std::vector<std::uint64_t>& shape,
                             const std::vector<double>& values, Index points,
                             const std::string& message) {
    const fs::path file = dir.path / name;
    ddpm::io::write_npy(file, shape, std::span<const double>(values));
    CAPTURE(name);
    CHECK_THROWS_WITH_AS(ddpm::io::read_point_clouds(file, points),
                         contains("ddpm: .npy file '" + file.string() + "': " + message),
                         FormatError);
  };
  check_npy("rank2.npy", {4, 3}, std::vector<double>(12, 1.0), 2,
            "shape (4, 3) of dtype '<f8'; expected (S, N, 3)");
  check_npy("dim2.npy", {1, 4, 2}, std::vector<double>(8, 1.0), 2,
            "shape (1, 4, 2) of dtype '<f8'; expected (S, N, 3)");
  check_npy("few.npy", {2, 2, 3}, std::vector<double>(12, 1.0), 3,
            "too few points: 2 per cloud, but 3 are needed");
  std::vector<double> nan(12, 1.0);
  nan[10] = std::nan("");
  check_npy("nan.npy", {2, 2, 3}, nan, 2, "cloud 1 point 1 is not finite (NaN/inf)");
  const fs::path bytes = dir.path / "u8.npy";
  ddpm::io::write_npy(bytes, {1, 2, 3},
                      std::span<const std::uint8_t>(std::vector<std::uint8_t>(6)));
  CHECK_THROWS_WITH_AS(ddpm::io::read_point_clouds(bytes, 2),
                       contains("shape (1, 2, 3) of dtype '|u1'"), FormatError);
}

}  // namespace pointcloud_test
