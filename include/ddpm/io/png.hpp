// SPDX-License-Identifier: MIT
// 8-bit images, PNG writing (stb_image_write) and a tiny canvas with shapes and text for plots.
#pragma once

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/io/file.hpp"

// stb is compiled into every translation unit that includes this header, as static functions, so
// there is nothing to link and no symbol clashes between translation units. A translation unit that
// wants stb_image_write for itself should include it after this header (it then gets these static
// copies); including it before would leave extern declarations that these definitions would clash
// with, so that order is rejected here.
#ifndef DDPM_IO_STB_INCLUDED
#define DDPM_IO_STB_INCLUDED
#if defined(INCLUDE_STB_IMAGE_WRITE_H) || defined(INCLUDE_STB_EASY_FONT_H)
#error "ddpm/io/png.hpp: include it before <stb/stb_image_write.h> and <stb/stb_easy_font.h>"
#endif
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <stb/stb_easy_font.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#endif  // DDPM_IO_STB_INCLUDED

namespace ddpm::io {

/// The largest width or height accepted: far beyond any plot, small enough that w*h*3 fits an int.
inline constexpr int kMaxImageSide = 16384;

/// An 8-bit image: `height` rows of `width` pixels, top row first, `channels` interleaved bytes per
/// pixel (1 = gray, 3 = RGB). A plain aggregate; `check_image` validates one built by hand.
struct Image {
  int width = 0;                     ///< pixels per row
  int height = 0;                    ///< rows
  int channels = 3;                  ///< bytes per pixel: 1 (gray) or 3 (RGB)
  std::vector<std::uint8_t> pixels;  ///< height * width * channels bytes, row by row

  /// A width x height image with every byte set to `value` (255 = white).
  [[nodiscard]] static Image filled(int width, int height, int channels = 3,
                                    std::uint8_t value = 255) {
    ddpm::detail::require(width >= 1 && width <= kMaxImageSide, "width", width, "1..16384");
    ddpm::detail::require(height >= 1 && height <= kMaxImageSide, "height", height, "1..16384");
    ddpm::detail::require(channels == 1 || channels == 3, "channels", channels,
                          "1 (gray) or 3 (RGB)");
    return Image{
        width, height, channels,
        std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * channels, value)};
  }

  /// Byte of channel `c` of pixel (x, y); no bounds check beyond an assert in debug builds.
  [[nodiscard]] std::uint8_t& at(int x, int y, int c = 0) { return pixels[offset(x, y, c)]; }
  /// \overload
  [[nodiscard]] std::uint8_t at(int x, int y, int c = 0) const { return pixels[offset(x, y, c)]; }

 private:
  [[nodiscard]] std::size_t offset(int x, int y, int c) const {
    assert(x >= 0 && x < width && y >= 0 && y < height && c >= 0 && c < channels);
    return (static_cast<std::size_t>(y) * width + x) * channels + c;
  }
};

/// Throws InvalidArgument unless `image` has sides in 1..kMaxImageSide, 1 or 3 channels and
/// exactly width * height * channels bytes.
inline void check_image(const Image& image) {
  ddpm::detail::require(image.width >= 1 && image.width <= kMaxImageSide, "image.width",
                        image.width, "1..16384");
  ddpm::detail::require(image.height >= 1 && image.height <= kMaxImageSide, "image.height",
                        image.height, "1..16384");
  ddpm::detail::require(image.channels == 1 || image.channels == 3, "image.channels",
                        image.channels, "1 (gray) or 3 (RGB)");
  const std::size_t expected =
      static_cast<std::size_t>(image.width) * image.height * image.channels;
  ddpm::detail::require(image.pixels.size() == expected, "image.pixels.size()", image.pixels.size(),
                        "width * height * channels = " + std::to_string(expected));
}

/// The PNG file contents for `image`, in memory.
[[nodiscard]] inline std::vector<std::uint8_t> encode_png(const Image& image) {
  check_image(image);
  std::vector<std::uint8_t> bytes;
  // A captureless lambda converts to stb's C callback type.
  stbi_write_func* append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<std::uint8_t>*>(context);
    const auto* begin = static_cast<const std::uint8_t*>(data);
    out->insert(out->end(), begin, begin + size);
  };
  const int ok = stbi_write_png_to_func(append, &bytes, image.width, image.height, image.channels,
                                        image.pixels.data(), image.width * image.channels);
  if (ok == 0) throw std::runtime_error("ddpm: PNG encoding failed (out of memory?)");
  return bytes;
}

/// Writes `image` as a PNG file, atomically (to "<path>.tmp", then renamed). Throws InvalidArgument
/// for a malformed image and std::runtime_error naming the file if it cannot be written.
inline void write_png(const std::filesystem::path& path, const Image& image) {
  const std::vector<std::uint8_t> bytes = encode_png(image);
  write_file_atomically(
      path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

/// An RGB color.
struct Rgb {
  std::uint8_t r = 0;  ///< red, 0-255
  std::uint8_t g = 0;  ///< green, 0-255
  std::uint8_t b = 0;  ///< blue, 0-255
  /// Equal when all three channels are.
  friend bool operator==(const Rgb&, const Rgb&) = default;
};

/// Colors used by the plots.
namespace colors {
inline constexpr Rgb white{255, 255, 255};       ///< background
inline constexpr Rgb black{0, 0, 0};             ///< text
inline constexpr Rgb ink{25, 35, 70};            ///< dark blue-black for data points and curves
inline constexpr Rgb gray{128, 128, 128};        ///< axes and secondary marks
inline constexpr Rgb light_gray{225, 225, 225};  ///< grid lines and frames
}  // namespace colors

/// A tiny RGB drawing surface for plots: everything is clipped to the image, coordinates are in
/// pixels with (0, 0) the top-left corner of the top-left pixel, so pixel (i, j) covers
/// [i, i+1) x [j, j+1) and its center is (i + 0.5, j + 0.5). Shapes are antialiased by coverage.
class Canvas {
 public:
  /// A width x height canvas filled with `background`.
  Canvas(int width, int height, Rgb background = colors::white)
      : image_(Image::filled(width, height, 3, 255)) {
    fill(background);
  }

  /// The width in pixels.
  [[nodiscard]] int width() const noexcept { return image_.width; }
  /// The height in pixels.
  [[nodiscard]] int height() const noexcept { return image_.height; }
  /// The picture drawn so far.
  [[nodiscard]] const Image& image() const& noexcept { return image_; }
  /// The picture, moved out of the canvas.
  [[nodiscard]] Image image() && noexcept { return std::move(image_); }

  /// Color of pixel (x, y), which must lie inside the canvas.
  [[nodiscard]] Rgb pixel(int x, int y) const {
    return {image_.at(x, y, 0), image_.at(x, y, 1), image_.at(x, y, 2)};
  }

  /// Sets every pixel to `color`.
  void fill(Rgb color) {
    for (std::size_t i = 0; i < image_.pixels.size(); i += 3) {
      image_.pixels[i] = color.r;
      image_.pixels[i + 1] = color.g;
      image_.pixels[i + 2] = color.b;
    }
  }

  /// Mixes `color` into pixel (x, y) with opacity `alpha` in [0, 1]; pixels outside are ignored.
  void blend(int x, int y, Rgb color, double alpha = 1.0) {
    if (x < 0 || y < 0 || x >= width() || y >= height() || !(alpha > 0)) return;
    const double a = std::min(alpha, 1.0);
    std::uint8_t* p = &image_.at(x, y, 0);
    const auto mix = [a](std::uint8_t old, std::uint8_t add) {
      return static_cast<std::uint8_t>(std::lround(old + a * (add - old)));
    };
    p[0] = mix(p[0], color.r);
    p[1] = mix(p[1], color.g);
    p[2] = mix(p[2], color.b);
  }

  /// Fills the pixels [x0, x1) x [y0, y1) (integer corners, clipped).
  void fill_rect(int x0, int y0, int x1, int y1, Rgb color, double alpha = 1.0) {
    x0 = std::max(x0, 0);
    y0 = std::max(y0, 0);
    x1 = std::min(x1, width());
    y1 = std::min(y1, height());
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) blend(x, y, color, alpha);
    }
  }

  /// A one-pixel outline just inside the pixels [x0, x1) x [y0, y1).
  void rect(int x0, int y0, int x1, int y1, Rgb color, double alpha = 1.0) {
    if (x1 <= x0 || y1 <= y0) return;
    fill_rect(x0, y0, x1, y0 + 1, color, alpha);
    if (y1 - 1 > y0) fill_rect(x0, y1 - 1, x1, y1, color, alpha);
    fill_rect(x0, y0 + 1, x0 + 1, y1 - 1, color, alpha);
    if (x1 - 1 > x0) fill_rect(x1 - 1, y0 + 1, x1, y1 - 1, color, alpha);
  }

  /// A filled disk centered at (cx, cy). The pixel containing the center is always fully covered
  /// for radius >= 0.71, so a single point always shows in the pixel it falls into.
  void disk(double cx, double cy, double radius, Rgb color, double alpha = 1.0) {
    if (!std::isfinite(cx) || !std::isfinite(cy) || !(radius > 0)) return;
    const double reach = radius + 0.5;
    const int x0 = clamp_to_int(std::floor(cx - reach)), x1 = clamp_to_int(std::ceil(cx + reach));
    const int y0 = clamp_to_int(std::floor(cy - reach)), y1 = clamp_to_int(std::ceil(cy + reach));
    for (int y = std::max(y0, 0); y <= std::min(y1, height() - 1); ++y) {
      for (int x = std::max(x0, 0); x <= std::min(x1, width() - 1); ++x) {
        const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
        blend(x, y, color, alpha * coverage(radius - d));
      }
    }
  }

  /// A straight segment of the given thickness from (x0, y0) to (x1, y1).
  void line(double x0, double y0, double x1, double y1, Rgb color, double thickness = 1.0,
            double alpha = 1.0) {
    if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1) ||
        !(thickness > 0)) {
      return;
    }
    const double half = thickness / 2;
    const double reach = half + 1.0;
    const int bx0 = std::max(clamp_to_int(std::floor(std::min(x0, x1) - reach)), 0);
    const int bx1 = std::min(clamp_to_int(std::ceil(std::max(x0, x1) + reach)), width() - 1);
    const int by0 = std::max(clamp_to_int(std::floor(std::min(y0, y1) - reach)), 0);
    const int by1 = std::min(clamp_to_int(std::ceil(std::max(y0, y1) + reach)), height() - 1);
    const double dx = x1 - x0, dy = y1 - y0;
    const double length2 = dx * dx + dy * dy;
    for (int y = by0; y <= by1; ++y) {
      for (int x = bx0; x <= bx1; ++x) {
        const double px = x + 0.5 - x0, py = y + 0.5 - y0;
        // Distance from the pixel center to the closest point of the segment.
        const double s = length2 > 0 ? std::clamp((px * dx + py * dy) / length2, 0.0, 1.0) : 0.0;
        const double d = std::hypot(px - s * dx, py - s * dy);
        blend(x, y, color, alpha * coverage(half - d));
      }
    }
  }

  /// Copies `source` (gray or RGB) with its top-left pixel at (x, y); parts outside are dropped.
  void draw_image(const Image& source, int x, int y) {
    check_image(source);
    for (int sy = std::max(0, -y); sy < source.height && y + sy < height(); ++sy) {
      for (int sx = std::max(0, -x); sx < source.width && x + sx < width(); ++sx) {
        std::uint8_t* p = &image_.at(x + sx, y + sy, 0);
        for (int c = 0; c < 3; ++c) p[c] = source.at(sx, sy, source.channels == 3 ? c : 0);
      }
    }
  }

  /// Draws `text` (printable ASCII; other bytes show as '?', '\n' starts a new line) with its
  /// top-left corner at (x, y), each font unit `scale` pixels wide. Uses stb_easy_font.
  void text(int x, int y, std::string_view text, Rgb color, int scale = 1) {
    std::string clean = printable(text);
    if (clean.empty() || scale < 1) return;
    std::vector<char> vertices(quad_bytes(clean) + 64);
    const int quads = stb_easy_font_print(0, 0, clean.data(), nullptr, vertices.data(),
                                          static_cast<int>(vertices.size()));
    for (int q = 0; q < quads; ++q) {
      // Each quad is 4 vertices of 16 bytes: x, y, z as floats, then RGBA; corners 0 and 2 are
      // opposite, and all corners lie on whole font units.
      float c0[2], c2[2];
      std::memcpy(c0, vertices.data() + q * 64, sizeof(c0));
      std::memcpy(c2, vertices.data() + q * 64 + 32, sizeof(c2));
      fill_rect(x + scale * static_cast<int>(std::lround(c0[0])),
                y + scale * static_cast<int>(std::lround(c0[1])),
                x + scale * static_cast<int>(std::lround(c2[0])),
                y + scale * static_cast<int>(std::lround(c2[1])), color);
    }
  }

  /// Width in pixels of `text` drawn at `scale` (the widest line).
  [[nodiscard]] static int text_width(std::string_view text, int scale = 1) {
    std::string clean = printable(text);
    return scale * stb_easy_font_width(clean.data());
  }

  /// Height in pixels of the ink of one line of text at `scale` (capitals and digits; descenders of
  /// g, p, q, y reach two units lower).
  [[nodiscard]] static constexpr int text_height(int scale = 1) noexcept { return 7 * scale; }

 private:
  static int clamp_to_int(double v) {
    return static_cast<int>(std::clamp(v, -1.0 * kMaxImageSide, 2.0 * kMaxImageSide));
  }
  /// Fraction of a pixel covered when its center lies `inside` pixels inside an edge.
  static double coverage(double inside) { return std::clamp(inside + 0.5, 0.0, 1.0); }

  static std::string printable(std::string_view text) {
    std::string clean(text);
    for (char& c : clean) {
      if (c != '\n' && (c < 32 || c > 126)) c = '?';  // stb_easy_font indexes a table by c - 32
    }
    return clean;
  }
  /// Exact vertex-buffer size stb_easy_font_print needs for `text` (64 bytes per segment).
  static std::size_t quad_bytes(const std::string& text) {
    std::size_t segments = 0;
    for (const char c : text) {
      if (c == '\n') continue;
      const int i = c - 32;
      segments += static_cast<std::size_t>(stb_easy_font_charinfo[i + 1].h_seg -
                                           stb_easy_font_charinfo[i].h_seg) +
                  static_cast<std::size_t>(stb_easy_font_charinfo[i + 1].v_seg -
                                           stb_easy_font_charinfo[i].v_seg);
    }
    return 64 * segments;
  }

  Image image_;
};

}  // namespace ddpm::io
