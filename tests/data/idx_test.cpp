// SPDX-License-Identifier: MIT
// Tests of ddpm/data/idx.hpp: raw and gzip round trips, the real Fashion-MNIST files when
// installed, and a corpus of broken files that must each be a FormatError (never a crash or a huge
// allocation).
#include "ddpm/data/idx.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support.hpp"

#ifdef DDPM_HAVE_ZLIB
#include <zlib.h>
#endif

namespace idx_test {

namespace {

namespace fs = std::filesystem;
using ddpm::FormatError;
using ddpm::Index;
using ddpm::data::IdxArray;
using ddpm::data::read_idx;
using ddpm::data::write_idx;
using ddpm::test::TempDir;

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// An array of `dims` whose bytes differ from their neighbours.
IdxArray pattern(std::vector<Index> dims) {
  IdxArray a{std::move(dims), {}};
  std::size_t n = 1;
  for (const Index d : a.dims) n *= static_cast<std::size_t>(d);
  for (std::size_t i = 0; i < n; ++i) a.values.push_back(static_cast<std::uint8_t>(i * 37 + 11));
  return a;
}

/// An IDX header by hand: magic 00 00 type ndims, then the dims as big-endian 32-bit words.
std::string header(std::vector<std::uint32_t> dims, unsigned type = 0x08) {
  std::string bytes = {'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (const std::uint32_t d : dims) {
    for (const int shift : {24, 16, 8, 0}) bytes.push_back(static_cast<char>((d >> shift) & 0xFF));
  }
  return bytes;
}

/// Expects read_idx(file) to throw FormatError whose message names the file and contains `what`.
void check_rejected(const fs::path& file, const std::string& what) {
  std::string message;
  CHECK_THROWS_AS(read_idx(file), FormatError);
  try {
    (void)read_idx(file);
  } catch (const FormatError& e) {
    message = e.what();
  }
  CAPTURE(message);
  CHECK(message.find("'" + file.string() + "'") != std::string::npos);
  CHECK(message.find(what) != std::string::npos);
}

#ifdef DDPM_HAVE_ZLIB
/// `n` bytes that deflate cannot shrink much (a linear congruential sequence's high bytes).
std::string noise(std::size_t n) {
  std::string bytes(n, '\0');
  std::uint32_t state = 12345;
  for (char& b : bytes) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<char>(state >> 24);
  }
  return bytes;
}

/// `bytes` as one gzip member (what gzip(1) writes).
std::string gzip(const std::string& bytes) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, static_cast<uLong>(bytes.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}
#endif

}  // namespace

TEST_CASE("write_idx then read_idx gives back the dimensions and bytes, raw and gzip") {
  TempDir dir;
  for (const std::vector<Index>& dims : std::vector<std::vector<Index>>{
           {1}, {5}, {3, 4}, {2, 3, 4}, {2, 1, 3, 2}, {1000, 7}, {70000}}) {
    const IdxArray a = pattern(dims);
    for (const bool compressed : {false, true}) {
#ifndef DDPM_HAVE_ZLIB
      if (compressed) continue;
#endif
      CAPTURE(dims.size());
      CAPTURE(compressed);
      const fs::path file = dir.path / "a.idx";
      write_idx(file, a, compressed);
      const std::string bytes = slurp(file);
      CHECK((bytes.substr(0, 2) == "\x1f\x8b") == compressed);
      const IdxArray b = read_idx(file);
      CHECK(b.dims == a.dims);
      CHECK(b.values == a.values);
      CHECK_FALSE(fs::exists(dir.path / "a.idx.tmp"));
    }
  }
}

TEST_CASE("write_idx lays a raw file out as the IDX format says") {
  TempDir dir;
  write_idx(dir.path / "a", IdxArray{{2, 3}, {1, 2, 3, 4, 5, 6}});
  CHECK(slurp(dir.path / "a") == header({2, 3}) + std::string("\1\2\3\4\5\6"));
}

TEST_CASE("gzip is recognised by its magic bytes, not by the file name") {
  TempDir dir;
  const IdxArray a = pattern({4, 5});
  write_idx(dir.path / "raw.gz", a, false);
  CHECK(read_idx(dir.path / "raw.gz").values == a.values);
#ifdef DDPM_HAVE_ZLIB
  write_idx(dir.path / "compressed.idx", a, true);
  CHECK(read_idx(dir.path / "compressed.idx").values == a.values);

  SUBCASE("several gzip members back to back read as one stream, as gunzip does") {
    const std::string raw = header({4, 5}) + std::string(a.values.begin(), a.values.end());
    const fs::path file = dir.write("members.gz", gzip(raw.substr(0, 7)) + gzip(raw.substr(7)));
    const IdxArray b = read_idx(file);
    CHECK(b.dims == a.dims);
    CHECK(b.values == a.values);
  }
#endif
}

TEST_CASE("the real Fashion-MNIST files read with their documented sizes and first label") {
  const fs::path dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir / "train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: install the Debian package dataset-fashion-mnist to run this test");
    return;
  }
#ifndef DDPM_HAVE_ZLIB
  MESSAGE("skipped: the Debian files are gzip-compressed and ddpm was built without zlib");
  return;
#endif
  // The test split's images are read (and converted) by images_test.cpp.
  const IdxArray images = read_idx(dir / "train-images-idx3-ubyte.gz");
  CHECK(images.dims == std::vector<Index>{60000, 28, 28});
  CHECK(images.values.size() == 60000u * 28 * 28);
  const IdxArray test_labels = read_idx(dir / "t10k-labels-idx1-ubyte.gz");
  CHECK(test_labels.dims == std::vector<Index>{10000});
  const IdxArray train_labels = read_idx(dir / "train-labels-idx1-ubyte.gz");
  REQUIRE(train_labels.dims == std::vector<Index>{60000});
  CHECK(train_labels.values[0] == 9);  // the first training image is an ankle boot (class 9)
  std::vector<int> per_class(256, 0);
  for (const std::uint8_t label : train_labels.values) ++per_class[label];
  for (int label = 0; label < 256; ++label) {
    CAPTURE(label);
    CHECK(per_class[static_cast<std::size_t>(label)] == (label < 10 ? 6000 : 0));  // balanced
  }
}

TEST_CASE("broken IDX files are FormatErrors naming the file and what is wrong") {
  TempDir dir;
  const std::string good = header({2, 3}) + std::string("\1\2\3\4\5\6");

  // Sweeps write a new file each time: rewriting a file truncated to 0 makes ext4 flush it.
  SUBCASE("a raw file truncated at every offset") {
    for (std::size_t cut = 0; cut < good.size(); ++cut) {
      CAPTURE(cut);
      check_rejected(dir.write("cut" + std::to_string(cut), good.substr(0, cut)), "truncated");
    }
  }
  SUBCASE("wrong magic, type code, dimension count, a zero dimension") {
    check_rejected(dir.write("magic", "\x01" + good.substr(1)), "not an IDX file");
    check_rejected(dir.write("png", "\x89PNG\r\n\x1a\n"), "not an IDX file");
    check_rejected(dir.write("float", header({2, 3}, 0x0D) + std::string(24, '\0')),
                   "unsupported element type 0x0d (float32)");
    check_rejected(dir.write("int", header({6}, 0x0C) + std::string(24, '\0')),
                   "unsupported element type 0x0c (int32)");
    check_rejected(dir.write("unknown", header({6}, 0x42) + std::string(6, '\0')),
                   "unsupported element type 0x42 (unknown)");
    check_rejected(dir.write("zero_dims", header({})), "0 dimensions; 1 to 4 are supported");
    check_rejected(dir.write("five_dims", header({1, 1, 1, 1, 1}) + "x"),
                   "5 dimensions; 1 to 4 are supported");
    check_rejected(dir.write("zero_dim", header({2, 0, 3})), "dimension 1 is 0");
  }
  SUBCASE("data shorter or longer than the dimensions say") {
    check_rejected(dir.write("short", good.substr(0, good.size() - 1)),
                   "truncated: dimensions 2 x 3 need 6 data bytes, but the file holds 5");
    check_rejected(dir.write("long", good + "x"),
                   "trailing bytes: dimensions 2 x 3 need 6 data bytes, but the file holds 7");
  }
  SUBCASE("absurd dimensions in a tiny file, without allocating them") {
    check_rejected(dir.write("huge", header({1u << 31, 1u << 31}) + "abc"),
                   "need 4611686018427387904 data bytes, but the file holds 3");
    check_rejected(dir.write("overflow", header({~0u, ~0u, ~0u, ~0u})), "more than 2^64");
  }
  SUBCASE("a payload above max_bytes") {
    const fs::path file = dir.write("limit", good);
    CHECK_THROWS_WITH_AS(read_idx(file, 5), doctest::Contains("more than the limit of 5"),
                         FormatError);
    CHECK(read_idx(file, 6).values.size() == 6);
  }
  SUBCASE("a missing file and a directory") {
    check_rejected(dir.path / "missing", "cannot be opened");
    check_rejected(dir.path, "is a directory");
  }
}

#ifdef DDPM_HAVE_ZLIB
TEST_CASE("broken gzip-compressed IDX files are FormatErrors naming the file") {
  TempDir dir;
  const IdxArray a = pattern({12, 10});
  const std::string raw = header({12, 10}) + std::string(a.values.begin(), a.values.end());
  const std::string good = gzip(raw);  // in memory: write_idx's fsync would only slow this down
  REQUIRE(read_idx(dir.write("good.gz", good)).values == a.values);

  SUBCASE("truncated at every offset") {
    for (std::size_t cut = 0; cut < good.size(); ++cut) {
      CAPTURE(cut);
      const fs::path file = dir.write("cut" + std::to_string(cut) + ".gz", good.substr(0, cut));
      CHECK_THROWS_AS(read_idx(file), FormatError);
    }
    // Cut after the gzip header (10 bytes): the stream itself is truncated.
    check_rejected(dir.write("half.gz", good.substr(0, good.size() / 2)), "truncated");
    check_rejected(dir.write("no_trailer.gz", good.substr(0, good.size() - 4)),
                   "truncated gzip stream");
  }
  SUBCASE("a flipped byte in the deflate data or in the checksum") {
    std::string bad = good;
    bad[good.size() / 2] = static_cast<char>(bad[good.size() / 2] ^ 0x55);
    CHECK_THROWS_AS(read_idx(dir.write("flip.gz", bad)), FormatError);
    std::string bad_crc = good;
    bad_crc[good.size() - 8] = static_cast<char>(bad_crc[good.size() - 8] ^ 0x01);
    check_rejected(dir.write("crc.gz", bad_crc), "corrupt gzip stream (incorrect data check)");
  }
  SUBCASE("every flipped byte of the deflate data and trailer is rejected") {
    // From byte 10 (after the fixed gzip header, whose mtime and OS bytes nothing checks) to the
    // end; a flip must never crash, and the CRC-32 and length trailer catch every one here.
    for (std::size_t at = 10; at < good.size(); ++at) {
      CAPTURE(at);
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ 0xA5);
      CHECK_THROWS_AS(read_idx(dir.write("flip" + std::to_string(at) + ".gz", bad)), FormatError);
    }
  }
  SUBCASE("data shorter or longer than the dimensions say, in a valid gzip stream") {
    check_rejected(dir.write("short.gz", gzip(raw.substr(0, raw.size() - 1))),
                   "truncated: dimensions 12 x 10 need 120 data bytes, but the decompressed "
                   "data holds 119");
    check_rejected(dir.write("long.gz", gzip(raw + "x")),
                   "trailing bytes: dimensions 12 x 10 need 120 data bytes, but the "
                   "decompressed data holds more");
  }
  SUBCASE("absurd dimensions in a small gzip file, refused before reading the data") {
    check_rejected(dir.write("huge.gz", gzip(header({1u << 31, 1u << 31}) + "abc")),
                   "more than a gzip file of");
    // Within deflate's 1032:1 bound but not there: memory grows only with what arrives.
    check_rejected(dir.write("promise.gz", gzip(header({100000}) + noise(4000))),
                   "need 100000 data bytes, but the decompressed data holds 4000");
  }
  SUBCASE("bytes after the gzip stream that are not another gzip member") {
    check_rejected(dir.write("garbage.gz", good + "garbage"), "corrupt gzip stream");
  }
}
#else
TEST_CASE("without zlib, gzip files are refused with what to install and raw files still work") {
  TempDir dir;
  const fs::path file = dir.write("a.gz", std::string("\x1f\x8b\x08\x00", 4) + "rest");
  check_rejected(file, "install zlib1g-dev");
  DDPM_CHECK_INVALID("gzip", write_idx(dir.path / "b.gz", IdxArray{{1}, {7}}, true));
  write_idx(dir.path / "raw", IdxArray{{1}, {7}});
  CHECK(read_idx(dir.path / "raw").values == std::vector<std::uint8_t>{7});
}
#endif

TEST_CASE("write_idx rejects arrays it cannot write") {
  TempDir dir;
  const fs::path file = dir.path / "a";
  DDPM_CHECK_INVALID("array.dims.size()", write_idx(file, IdxArray{{}, {1}}));
  DDPM_CHECK_INVALID("array.dims.size()", write_idx(file, IdxArray{{1, 1, 1, 1, 1}, {1}}));
  DDPM_CHECK_INVALID("array.dims", write_idx(file, IdxArray{{2, 0}, {}}));
  DDPM_CHECK_INVALID("array.dims", write_idx(file, IdxArray{{Index{1} << 32}, {}}));
  DDPM_CHECK_INVALID("array.values.size()", write_idx(file, IdxArray{{2, 3}, {1, 2, 3}}));
  CHECK_FALSE(fs::exists(file));
}

}  // namespace idx_test
