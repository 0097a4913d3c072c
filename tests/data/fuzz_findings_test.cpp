// SPDX-License-Identifier: MIT
// Regression tests for what fuzzing the data readers found (tests/fuzz; the crashers themselves
// are replayed from tests/fuzz/regressions/).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ddpm/data/images.hpp"
#include "ddpm/data/points.hpp"
#include "ddpm/io/png.hpp"
#include "support.hpp"

namespace fuzz_findings_test {

namespace {

/// A JPEG that ends after one DHT segment whose 16 code counts are all `count`.
std::string jpeg_with_table(unsigned char count) {
  std::string bytes = "\xFF\xD8\xFF\xC4";
  const unsigned length = 2 + 17 + 16u * count;
  bytes += static_cast<char>(length >> 8);
  bytes += static_cast<char>(length & 0xFF);
  bytes += '\0';  // class 0 (DC), table 0
  bytes.append(16, static_cast<char>(count));
  bytes.append(16u * count, '\x01');
  return bytes;
}

/// An 8 x 8 gray JPEG from stb's writer (baseline; DQT, SOF0, DHT, SOS segments).
std::string small_jpeg() {
  std::string jpeg;
  std::vector<unsigned char> pixels(64);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>(i * 4);
  stbi_write_func* append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  REQUIRE(stbi_write_jpg_to_func(append, &jpeg, 8, 8, 1, pixels.data(), 90) != 0);
  return jpeg;
}

/// `jpeg` without its segments of marker FF `marker` (each: the marker, a 16-bit length, data).
std::string without_segments(std::string jpeg, unsigned char marker) {
  const std::string key{'\xFF', static_cast<char>(marker)};
  for (std::size_t m = jpeg.find(key, 2); m != std::string::npos; m = jpeg.find(key, m)) {
    const std::size_t length =
        static_cast<unsigned char>(jpeg[m + 2]) << 8 | static_cast<unsigned char>(jpeg[m + 3]);
    jpeg.erase(m, 2 + length);
  }
  return jpeg;
}

}  // namespace

TEST_CASE("load_points: a CSV header without rows is 'has 0 points' (fuzz: csv)") {
  // Found under UBSan: the columns of the empty table were copied from a null pointer.
  const ddpm::test::TempDir dir;
  for (const std::string header : {"a,b\n", "x,y,z\n", "x,y"}) {
    CAPTURE(header);
    const auto file = dir.write("points.csv", header);
    CHECK_THROWS_WITH_AS((void)ddpm::data::load_points(file),
                         doctest::Contains("has 0 points; between 4 and 2^31 are needed"),
                         ddpm::FormatError);
  }
}

TEST_CASE("images: a JPEG Huffman table of more than 256 codes is refused (fuzz: image)") {
  // stb_image 2.27 wrote past its tables for it (ASan: index 257 out of bounds), already while
  // reading the header for stbi_info.
  const ddpm::test::TempDir dir;
  const auto file = dir.write("bad.jpg", jpeg_with_table(17));  // 16 x 17 = 272 codes
  ddpm::data::detail::ImageInfo info;
  CHECK_THROWS_WITH_AS(
      (void)ddpm::data::detail::read_image_file(file, info),
      doctest::Contains("bad.jpg': corrupt JPEG: the Huffman table at byte 2 declares 272 codes"),
      ddpm::FormatError);
  std::vector<float> planar;
  CHECK_THROWS_WITH_AS(ddpm::data::detail::decode_image(file, jpeg_with_table(17), 3, planar),
                       doctest::Contains("declares 272 codes (at most 256)"), ddpm::FormatError);
  CHECK_THROWS_WITH_AS((void)ddpm::data::read_image_folder(dir.path),
                       doctest::Contains("declares 272 codes"), ddpm::FormatError);
  // stb skips fill bytes before the SOI marker, so the check must too.
  const auto filled = dir.write("bad.jpg", "\xFF\xFF" + jpeg_with_table(17));
  CHECK_THROWS_WITH_AS((void)ddpm::data::detail::read_image_file(filled, info),
                       doctest::Contains("table at byte 4 declares 272 codes"), ddpm::FormatError);
  // 16 x 16 = 256 codes is allowed by the check; stb then refuses the truncated file itself.
  const auto edge = dir.write("bad.jpg", jpeg_with_table(16));
  try {
    (void)ddpm::data::detail::read_image_file(edge, info);
    FAIL("a JPEG without a frame must not decode");
  } catch (const ddpm::FormatError& e) {
    CHECK(std::string(e.what()).find("Huffman") == std::string::npos);
  }
}

TEST_CASE("images: a PNG chunk longer than the file is refused before stb allocates it (fuzz)") {
  // stb_image reallocated an IDAT chunk's declared length (here 2 GB) before reading it.
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\0\0\0\x0dIHDR\0\0\0\x01\0\0\0\x01\x08\x00\0\0\0", 21);
  png += std::string("\0\0\0\0", 4);  // IHDR's CRC (stb does not check it)
  png += std::string("\x7f\xff\xff\xffIDATxyz", 11);
  const ddpm::test::TempDir dir;
  const auto file = dir.write("huge.png", png);
  ddpm::data::detail::ImageInfo info;
  CHECK_THROWS_WITH_AS((void)ddpm::data::detail::read_image_file(file, info),
                       doctest::Contains("huge.png': corrupt PNG: the chunk at byte 33 declares "
                                         "2147483647 bytes but only 3 follow"),
                       ddpm::FormatError);
  std::vector<float> planar;
  CHECK_THROWS_WITH_AS(ddpm::data::detail::decode_image(file, png, 1, planar),
                       doctest::Contains("declares 2147483647 bytes"), ddpm::FormatError);
}

TEST_CASE("images: a JPEG using a table it never defines is refused (fuzz: image)") {
  // stb_image 2.27 decoded a scan whose AC Huffman table no DHT defined with its uninitialized
  // table memory (MemorySanitizer; under UBSan, a shift by 32 when the garbage code lengths ran
  // the bit count negative), so the pixels depended on earlier heap contents.
  const ddpm::test::TempDir dir;
  const std::string jpeg = small_jpeg();
  ddpm::data::detail::ImageInfo info;
  std::vector<float> planar;
  const auto good = dir.write("good.jpg", jpeg);
  (void)ddpm::data::detail::read_image_file(good, info);  // the complete file reads
  ddpm::data::detail::decode_image(good, jpeg, 1, planar);
  CHECK(planar.size() == 64);

  const std::string no_huffman = without_segments(jpeg, 0xC4);
  REQUIRE(no_huffman.size() < jpeg.size());
  const auto file = dir.write("bad.jpg", no_huffman);
  CHECK_THROWS_WITH_AS((void)ddpm::data::detail::read_image_file(file, info),
                       doctest::Contains("bad.jpg': corrupt JPEG: the segment at byte"),
                       ddpm::FormatError);
  CHECK_THROWS_WITH_AS(ddpm::data::detail::decode_image(file, no_huffman, 1, planar),
                       doctest::Contains("uses DC Huffman table 0 that the file never defines"),
                       ddpm::FormatError);

  const std::string no_quantization = without_segments(jpeg, 0xDB);
  REQUIRE(no_quantization.size() < jpeg.size());
  CHECK_THROWS_WITH_AS(ddpm::data::detail::decode_image(dir.write("bad.jpg", no_quantization),
                                                        no_quantization, 1, planar),
                       doctest::Contains("uses quantization table 0 that the file never defines"),
                       ddpm::FormatError);
}

TEST_CASE("images: an empty IDAT chunk is dropped before stb reads the PNG (fuzz: image)") {
  // stb_image 2.27 copied an empty first IDAT chunk from a null buffer (UBSan: null pointer passed
  // to memcpy). The chunk carries no data, so the file must decode as without it.
  std::string png;
  std::vector<unsigned char> pixels(3 * 2);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>(40 * i);
  stbi_write_func* append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  REQUIRE(stbi_write_png_to_func(append, &png, 3, 2, 1, pixels.data(), 3) != 0);
  const std::size_t idat = png.find("IDAT");
  REQUIRE(idat != std::string::npos);
  std::string with_empty = png;
  with_empty.insert(idat - 4, std::string("\0\0\0\0IDAT\0\0\0\0", 12));
  const ddpm::test::TempDir dir;
  std::vector<float> plain, emptied;
  ddpm::data::detail::ImageInfo info;
  const auto file = dir.write("empty_idat.png", with_empty);
  const std::string read = ddpm::data::detail::read_image_file(file, info);
  CHECK(read == png);  // the empty chunk is gone, nothing else changed
  ddpm::data::detail::decode_image(file, with_empty, 1, emptied);
  ddpm::data::detail::decode_image(file, png, 1, plain);
  CHECK(emptied == plain);
  REQUIRE(plain.size() == 6);
  CHECK(plain[5] == doctest::Approx(200.0 / 127.5 - 1.0));
  // Only an empty IDAT chunk: no data at all, a FormatError from stb, not a null copy.
  const std::string only_empty = std::string("\x89PNG\r\n\x1a\n", 8) + png.substr(8, 25) +
                                 std::string("\0\0\0\0IDAT\0\0\0\0", 12) +
                                 std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12);
  CHECK_THROWS_AS(ddpm::data::detail::decode_image(file, only_empty, 1, plain), ddpm::FormatError);
  // An empty IDAT chunk cut short at the end of the file (the long fuzz run's second finding
  // there: the walk went past the end and read beyond the buffer, ASan).
  for (std::size_t cut = 8; cut <= 12; ++cut) {
    CAPTURE(cut);
    const std::string short_chunk =
        png.substr(0, 33) + std::string("\0\0\0\0IDAT\0\0\0\0", 12).substr(0, cut);
    CHECK_THROWS_AS(ddpm::data::detail::decode_image(file, short_chunk, 1, plain),
                    ddpm::FormatError);
  }
}

}  // namespace fuzz_findings_test
