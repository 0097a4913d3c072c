// SPDX-License-Identifier: MIT
// Tests of ddpm/io/png.hpp: PNG files read back with stb_image, and the canvas drawing primitives.
#include "ddpm/io/png.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "stb_image_decode.hpp"

namespace png_test {

namespace {

namespace fs = std::filesystem;
using ddpm::io::Canvas;
using ddpm::io::Image;
using ddpm::io::Rgb;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("ddpm_png_test_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

/// The decoded file, in its stored channel count.
Image load_png(const fs::path& file) {
  int width = 0, height = 0, channels = 0;
  std::unique_ptr<stbi_uc, decltype(&stbi_image_free)> data(
      stbi_load(file.c_str(), &width, &height, &channels, 0), &stbi_image_free);
  REQUIRE(data != nullptr);
  const auto bytes = static_cast<std::size_t>(width) * height * channels;
  return Image{width, height, channels, std::vector<std::uint8_t>(data.get(), data.get() + bytes)};
}

/// A test pattern where every byte differs from its neighbours.
Image pattern(int width, int height, int channels) {
  Image image = Image::filled(width, height, channels);
  for (std::size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] = static_cast<std::uint8_t>((i * 37 + i / 7) % 256);
  }
  return image;
}

int count_pixels_not(const Canvas& canvas, Rgb color) {
  int n = 0;
  for (int y = 0; y < canvas.height(); ++y) {
    for (int x = 0; x < canvas.width(); ++x) n += canvas.pixel(x, y) == color ? 0 : 1;
  }
  return n;
}

}  // namespace

TEST_CASE("write_png files decode to the same pixels") {
  TempDir dir;
  SUBCASE("RGB") {
    const Image image = pattern(37, 21, 3);
    ddpm::io::write_png(dir.path / "rgb.png", image);
    const Image back = load_png(dir.path / "rgb.png");
    CHECK(back.width == 37);
    CHECK(back.height == 21);
    CHECK(back.channels == 3);
    CHECK(back.pixels == image.pixels);
    CHECK_FALSE(fs::exists(dir.path / "rgb.png.tmp"));
  }
  SUBCASE("gray") {
    const Image image = pattern(16, 9, 1);
    ddpm::io::write_png(dir.path / "gray.png", image);
    const Image back = load_png(dir.path / "gray.png");
    CHECK(back.channels == 1);
    CHECK(back.pixels == image.pixels);
  }
  SUBCASE("in memory, with the PNG signature") {
    const std::vector<std::uint8_t> bytes = ddpm::io::encode_png(pattern(4, 4, 3));
    REQUIRE(bytes.size() > 8);
    CHECK(bytes[0] == 0x89);
    CHECK(bytes[1] == 'P');
    CHECK(bytes[2] == 'N');
    CHECK(bytes[3] == 'G');
  }
}

TEST_CASE("malformed images and unwritable paths are reported") {
  TempDir dir;
  Image image = pattern(4, 3, 3);
  SUBCASE("wrong pixel count") {
    image.pixels.pop_back();
    CHECK_THROWS_WITH_AS(ddpm::io::write_png(dir.path / "a.png", image),
                         doctest::Contains("image.pixels.size() = 35"), ddpm::InvalidArgument);
  }
  SUBCASE("unsupported channel count") {
    image.channels = 4;
    CHECK_THROWS_AS(ddpm::io::write_png(dir.path / "a.png", image), ddpm::InvalidArgument);
  }
  SUBCASE("bad sides") {
    CHECK_THROWS_AS((void)Image::filled(0, 5), ddpm::InvalidArgument);
    CHECK_THROWS_AS((void)Image::filled(5, 5, 2), ddpm::InvalidArgument);
  }
  SUBCASE("missing directory") {
    CHECK_THROWS_WITH_AS(ddpm::io::write_png(dir.path / "missing" / "a.png", image),
                         doctest::Contains("a.png"), std::runtime_error);
  }
}

TEST_CASE("canvas primitives touch the expected pixels") {
  Canvas canvas(40, 30);
  const Rgb white = ddpm::io::colors::white;
  const Rgb black = ddpm::io::colors::black;
  REQUIRE(count_pixels_not(canvas, white) == 0);

  SUBCASE("blend mixes linearly") {
    canvas.blend(3, 4, black, 0.5);
    CHECK(canvas.pixel(3, 4) == Rgb{128, 128, 128});
    canvas.blend(-1, 4, black);  // outside: ignored, no crash
    canvas.blend(40, 30, black);
    CHECK(count_pixels_not(canvas, white) == 1);
  }
  SUBCASE("fill_rect is half-open and clipped") {
    canvas.fill_rect(-5, -5, 2, 3, black);
    CHECK(count_pixels_not(canvas, white) == 6);
    CHECK(canvas.pixel(1, 2) == black);
    CHECK(canvas.pixel(2, 2) == white);
  }
  SUBCASE("rect outlines") {
    canvas.rect(10, 10, 20, 15, black);
    CHECK(canvas.pixel(10, 10) == black);
    CHECK(canvas.pixel(19, 14) == black);
    CHECK(canvas.pixel(15, 12) == white);
    CHECK(count_pixels_not(canvas, white) == 2 * 10 + 2 * 3);
  }
  SUBCASE("disk covers the pixel of its center and stays within its radius") {
    canvas.disk(20.3, 10.8, 2.0, black);
    CHECK(canvas.pixel(20, 10) == black);
    CHECK(canvas.pixel(25, 10) == white);
    CHECK(canvas.pixel(20, 14) == white);
    const int touched = count_pixels_not(canvas, white);
    CHECK(touched >= 12);  // about pi r^2 = 12.6 plus the antialiased rim
    CHECK(touched <= 30);
  }
  SUBCASE("line darkens the pixels on it and only near it") {
    canvas.line(5, 20.5, 35, 20.5, black, 1.0);
    for (int x = 6; x < 35; ++x) CHECK(canvas.pixel(x, 20) == black);
    CHECK(canvas.pixel(20, 18) == white);
    CHECK(canvas.pixel(20, 23) == white);
    CHECK(canvas.pixel(1, 20) == white);
  }
  SUBCASE("text draws inside its box") {
    const int width = Canvas::text_width("t=25", 2);
    CHECK(width > 0);
    canvas.text(2, 3, "t=25", black, 2);
    int inside = 0, outside = 0;
    for (int y = 0; y < canvas.height(); ++y) {
      for (int x = 0; x < canvas.width(); ++x) {
        const bool dark = canvas.pixel(x, y) == black;
        const bool in_box = x >= 2 && x < 2 + width && y >= 3 && y < 3 + Canvas::text_height(2);
        (in_box ? inside : outside) += dark ? 1 : 0;
      }
    }
    CHECK(inside > 20);
    CHECK(outside == 0);
  }
  SUBCASE("text with bytes outside printable ASCII does not crash") {
    canvas.text(0, 0, std::string("a\x01\xff\x7f\nb"), black);
    CHECK(count_pixels_not(canvas, white) > 0);
    canvas.text(1000, 1000, "off the canvas", black);  // clipped away
  }
  SUBCASE("draw_image copies gray images as gray RGB") {
    Image gray = Image::filled(3, 2, 1, 7);
    canvas.draw_image(gray, 38, 29);  // only pixels (38, 29) and (39, 29) land on the canvas
    CHECK(canvas.pixel(39, 29) == Rgb{7, 7, 7});
    CHECK(count_pixels_not(canvas, white) == 2);
  }
}

}  // namespace png_test
