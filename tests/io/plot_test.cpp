// SPDX-License-Identifier: MIT
// Tests of ddpm/io/plot.hpp: panel layout, where points land, strips, image grids and loss curves.
#include "ddpm/io/plot.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace plot_test {

namespace {

namespace fs = std::filesystem;
using ddpm::io::Image;
using ddpm::io::Panel;

/// Sum of the three channels of pixel (x, y); lower is darker.
int brightness(const Image& image, int x, int y) {
  return image.at(x, y, 0) + image.at(x, y, 1) + image.at(x, y, 2);
}

int dark_pixels(const Image& image, int x0, int y0, int x1, int y1, int below = 600) {
  int n = 0;
  for (int y = y0; y < y1; ++y) {
    for (int x = x0; x < x1; ++x) n += brightness(image, x, y) < below ? 1 : 0;
  }
  return n;
}

ddpm::Batch<double> one_point(double x, double y) {
  ddpm::Batch<double> p(1, 2);
  p << x, y;
  return p;
}

}  // namespace

TEST_CASE("a single point darkens the pixel it falls into") {
  ddpm::io::PlotStyle style;
  style.plot_size = 64;
  const std::vector<Panel> empty = {ddpm::io::make_panel(ddpm::Batch<double>(0, 2))};
  const Image blank = ddpm::io::render_panels(empty, 1, style);
  const ddpm::io::PanelLayout layout = ddpm::io::panel_layout(empty, 1, style);
  CHECK(blank.width == 64 + 2 * style.margin);
  CHECK(blank.height == 64 + 2 * style.margin);

  SUBCASE("inside the frame") {
    // (1, -2) in [-4, 4]^2 on 64 pixels: u = 5/8 * 64 = 40, v = 6/8 * 64 = 48 (y grows upwards).
    const std::vector<Panel> panels = {ddpm::io::make_panel(one_point(1.0, -2.0))};
    const Image image = ddpm::io::render_panels(panels, 1, style);
    const int x = layout.plot_origin(0)[0] + 40, y = layout.plot_origin(0)[1] + 48;
    CHECK(brightness(image, x, y) < brightness(blank, x, y) - 100);
    CHECK(image.at(x, y, 2) > image.at(x, y, 0));  // dark blue ink
    // Far from the point nothing changed.
    CHECK(brightness(image, x - 5, y) == brightness(blank, x - 5, y));
    CHECK(brightness(image, x, y + 5) == brightness(blank, x, y + 5));
  }
  SUBCASE("outside the frame or not finite: nothing is drawn") {
    ddpm::Batch<double> points(4, 2);
    points << 4.5, 0.0, 0.0, -10.0, std::nan(""), 0.0, 1.0, std::numeric_limits<double>::infinity();
    const std::vector<Panel> panels = {ddpm::io::make_panel(points)};
    CHECK(ddpm::io::render_panels(panels, 1, style).pixels == blank.pixels);
  }
  SUBCASE("a custom frame moves the point") {
    // (1, -2) in [0, 2] x [-4, 0]: u = 32, v = 32.
    const ddpm::io::Frame frame{0, 2, -4, 0};
    const std::vector<Panel> panels = {ddpm::io::make_panel(one_point(1.0, -2.0), "", "", frame)};
    const std::vector<Panel> none = {
        ddpm::io::make_panel(ddpm::Batch<double>(0, 2), "", "", frame)};
    const Image image = ddpm::io::render_panels(panels, 1, style);
    const Image frame_blank = ddpm::io::render_panels(none, 1, style);
    const int x = layout.plot_origin(0)[0] + 32, y = layout.plot_origin(0)[1] + 32;
    CHECK(brightness(image, x, y) < brightness(frame_blank, x, y) - 100);
    CHECK(brightness(image, x - 5, y) == brightness(frame_blank, x - 5, y));
  }
  SUBCASE("density panels shade the cell of the point") {
    std::vector<Panel> panels = {ddpm::io::make_panel(one_point(1.0, -2.0))};
    panels[0].kind = ddpm::io::PanelKind::density;
    const Image image = ddpm::io::render_panels(panels, 1, style);
    const int x = layout.plot_origin(0)[0] + 40, y = layout.plot_origin(0)[1] + 48;
    CHECK(brightness(image, x, y) < brightness(blank, x, y) - 100);
    CHECK(brightness(image, x - 8, y) == brightness(blank, x - 8, y));
  }
  SUBCASE("overlapping translucent dots get darker") {
    ddpm::Batch<double> twice(2, 2);
    twice << 1.0, -2.0, 1.0, -2.0;
    const std::vector<Panel> one = {ddpm::io::make_panel(one_point(1.0, -2.0))};
    const std::vector<Panel> two = {ddpm::io::make_panel(twice)};
    const int x = layout.plot_origin(0)[0] + 40, y = layout.plot_origin(0)[1] + 48;
    CHECK(brightness(ddpm::io::render_panels(two, 1, style), x, y) <
          brightness(ddpm::io::render_panels(one, 1, style), x, y));
  }
}

TEST_CASE("panels side by side and strips have the expected size and labels") {
  ddpm::io::PlotStyle style;
  style.plot_size = 48;
  style.margin = 6;
  ddpm::Batch<double> points(3, 2);
  points << 0, 0, 1, 1, -1, 2;

  SUBCASE("data vs samples with titles") {
    const std::vector<Panel> panels = {ddpm::io::make_panel(points, "data"),
                                       ddpm::io::make_panel(points, "samples")};
    const ddpm::io::PanelLayout layout = ddpm::io::panel_layout(panels, 2, style);
    const Image image = ddpm::io::render_panels(panels, 2, style);
    CHECK(image.width == 2 * (48 + 12));
    CHECK(image.height == 48 + 12 + layout.title_height);
    CHECK(layout.title_height > 0);
    CHECK(layout.label_height == 0);
    CHECK(layout.plot_origin(1)[0] == 60 + 6);
    // Each title band holds text.
    for (int i = 0; i < 2; ++i) {
      const int x0 = i * layout.cell_width;
      CHECK(dark_pixels(image, x0, 0, x0 + layout.cell_width, layout.plot_y) > 10);
    }
  }
  SUBCASE("a strip of the diffusion process labelled by step") {
    std::vector<Panel> panels;
    for (const int t : {0, 250, 500, 999}) {
      panels.push_back(ddpm::io::make_panel(points, "", "t=" + std::to_string(t)));
    }
    const Image image = ddpm::io::render_strip(panels, style);
    const ddpm::io::PanelLayout layout = ddpm::io::panel_layout(panels, 4, style);
    CHECK(image.width == 4 * 60);
    CHECK(image.height == 60 + layout.label_height);
    for (int i = 0; i < 4; ++i) {
      const int x0 = i * layout.cell_width;
      const int y0 = layout.plot_y + layout.plot_size;
      CHECK(dark_pixels(image, x0, y0 + 1, x0 + layout.cell_width, image.height) > 10);
    }
  }
  SUBCASE("a grid wraps into rows") {
    const std::vector<Panel> panels(5, ddpm::io::make_panel(points));
    const Image image = ddpm::io::render_panels(panels, 2, style);
    CHECK(image.width == 2 * 60);
    CHECK(image.height == 3 * 60);
  }
  SUBCASE("bad arguments") {
    const std::vector<Panel> panels = {ddpm::io::make_panel(points)};
    CHECK_THROWS_AS((void)ddpm::io::render_panels(panels, 0, style), ddpm::InvalidArgument);
    CHECK_THROWS_AS((void)ddpm::io::render_panels({}, 1, style), ddpm::InvalidArgument);
    CHECK_THROWS_WITH_AS((void)ddpm::io::make_panel(ddpm::Batch<double>(3, 3)),
                         doctest::Contains("points = 3x3 matrix"), ddpm::InvalidArgument);
    std::vector<Panel> flat = panels;
    flat[0].frame = ddpm::io::Frame{1, 1, 0, 1};
    CHECK_THROWS_WITH_AS((void)ddpm::io::render_panels(flat, 1, style),
                         doctest::Contains("x_min < x_max"), ddpm::InvalidArgument);
    flat[0].frame = ddpm::io::Frame{-1e308, 1e308, 0, 1};  // width overflows
    CHECK_THROWS_AS((void)ddpm::io::render_panels(flat, 1, style), ddpm::InvalidArgument);
    style.dot_alpha = 0;
    CHECK_THROWS_AS((void)ddpm::io::render_panels(panels, 1, style), ddpm::InvalidArgument);
  }
}

TEST_CASE("scatter_png writes a PNG file") {
  const fs::path file =
      fs::temp_directory_path() / ("ddpm_plot_test_" + std::to_string(::getpid()) + ".png");
  ddpm::Batch<float> points(2, 2);
  points << 0.5f, 0.5f, -1.f, 2.f;
  ddpm::io::scatter_png(file, points, "samples");
  std::ifstream in(file, std::ios::binary);
  char signature[4] = {};
  in.read(signature, 4);
  CHECK(std::string(signature + 1, 3) == "PNG");
  CHECK(fs::file_size(file) > 100);
  in.close();
  fs::remove(file);
}

TEST_CASE("tile_images lays images out in a grid with the value range mapped to 0..255") {
  // Two gray 2x2 images: the first all -1 (black), the second a ramp.
  ddpm::Batch<double> batch(2, 4);
  batch << -1, -1, -1, -1, -1, 0, 1, 2;
  ddpm::io::TileOptions options;
  options.padding = 1;
  const Image image = ddpm::io::tile_images(batch, 1, 2, 2, options);
  CHECK(image.channels == 1);
  CHECK(image.width == 2 * (2 + 1) + 1);
  CHECK(image.height == 2 + 2);
  CHECK(image.at(0, 0) == 255);  // padding
  CHECK(image.at(1, 1) == 0);
  CHECK(image.at(4, 1) == 0);    // second image, value -1
  CHECK(image.at(5, 1) == 128);  // value 0
  CHECK(image.at(4, 2) == 255);  // value 1
  CHECK(image.at(5, 2) == 255);  // value 2, clipped

  SUBCASE("RGB planes and zoom") {
    ddpm::Batch<float> rgb(1, 3);  // one 1x1 RGB image: red
    rgb << 1.f, -1.f, -1.f;
    options.zoom = 3;
    const Image big = ddpm::io::tile_images(rgb, 3, 1, 1, options);
    CHECK(big.width == 5);
    CHECK(big.at(3, 3, 0) == 255);
    CHECK(big.at(3, 3, 1) == 0);
    CHECK(big.at(3, 3, 2) == 0);
  }
  SUBCASE("shape mismatch") {
    CHECK_THROWS_AS((void)ddpm::io::tile_images(batch, 1, 3, 3), ddpm::InvalidArgument);
  }
}

TEST_CASE("moving_average is centered and skips non-finite values") {
  const std::vector<double> values = {1, 2, 3, 4, 5};
  CHECK(ddpm::io::moving_average(values, 1) == values);
  CHECK(ddpm::io::moving_average(values, 3) == std::vector<double>{1.5, 2, 3, 4, 4.5});
  const std::vector<double> gap = {1, std::nan(""), 3};
  CHECK(ddpm::io::moving_average(gap, 3) == std::vector<double>{1, 2, 3});
  CHECK_THROWS_AS((void)ddpm::io::moving_average(values, -1), ddpm::InvalidArgument);
}

TEST_CASE("tick labels are short") {
  CHECK(ddpm::io::detail::tick_label(10000, 1000) == "10000");
  CHECK(ddpm::io::detail::tick_label(0.3, 0.1) == "0.3");
  CHECK(ddpm::io::detail::tick_label(12, 1) == "12");
  CHECK(ddpm::io::detail::tick_label(1e-5, 1e-5) == "1e-5");
  CHECK(ddpm::io::detail::tick_label(2e6, 1e6) == "2e6");
  CHECK(ddpm::io::detail::tick_label(1e-17, 0.5) == "0");
  const std::vector<ddpm::io::detail::Tick> ticks = ddpm::io::detail::linear_ticks(0, 1, 5);
  REQUIRE(ticks.size() == 6);
  CHECK(ticks[1].text == "0.2");
  CHECK(ticks[5].at == doctest::Approx(1.0));
  const std::vector<ddpm::io::detail::Tick> logs = ddpm::io::detail::log_ticks(-3, 0);
  REQUIRE(logs.size() == 4);
  CHECK(logs[0].text == "0.001");
  CHECK(logs[3].text == "1");
}

TEST_CASE("render_curve draws a loss curve with axes") {
  std::vector<double> loss;
  for (int i = 0; i < 500; ++i) loss.push_back(1.0 - 0.0015 * i + 0.02 * std::sin(i));
  ddpm::io::CurveOptions options;
  options.width = 400;
  options.height = 240;
  options.title = "loss";

  const Image image = ddpm::io::render_curve(loss, options);
  CHECK(image.width == 400);
  CHECK(image.height == 240);
  // Ink of the curve: dark pixels with the blue tint of colors::ink, not black text or gray axes.
  const auto ink = [](const Image& im, int x0, int y0, int x1, int y1) {
    int n = 0;
    for (int y = y0; y < y1; ++y) {
      for (int x = x0; x < x1; ++x) {
        n += im.at(x, y, 2) > im.at(x, y, 0) + 20 && brightness(im, x, y) < 300 ? 1 : 0;
      }
    }
    return n;
  };
  CHECK(ink(image, 0, 0, 400, 240) > 300);
  // The curve falls: on the left it is in the upper half, on the right in the lower half.
  CHECK(ink(image, 0, 0, 100, 120) > ink(image, 0, 120, 100, 240));
  CHECK(ink(image, 300, 120, 400, 240) > 50);
  CHECK(ink(image, 300, 0, 400, 120) == 0);

  SUBCASE("log scale, smoothing, gaps and non-positive values") {
    loss[10] = std::nan("");
    loss[20] = 0.0;
    loss[30] = -1.0;
    options.log_y = true;
    options.smoothing = 21;
    const Image log_image = ddpm::io::render_curve(loss, options);
    CHECK(log_image.pixels != image.pixels);
    CHECK(ink(log_image, 0, 0, 400, 240) > 300);
  }
  SUBCASE("degenerate data still renders") {
    CHECK_NOTHROW((void)ddpm::io::render_curve(std::vector<double>{2.0}, options));
    CHECK_NOTHROW((void)ddpm::io::render_curve(std::vector<double>(10, 3.0), options));
    const Image none = ddpm::io::render_curve(std::vector<double>(3, std::nan("")), options);
    CHECK(dark_pixels(none, 0, 0, 400, 240) > 0);
    // Extreme magnitudes and tiny spreads: drawn or skipped, never a crash or an overflow.
    CHECK_NOTHROW((void)ddpm::io::render_curve(
        std::vector<double>{-1.7e308, 1e300, -1e300, 1e-300, 1.0}, options));
    CHECK_NOTHROW((void)ddpm::io::render_curve(std::vector<double>{1.0, 1.0 + 1e-8, 1.0}, options));
    options.log_y = true;
    CHECK_NOTHROW(
        (void)ddpm::io::render_curve(std::vector<double>{1e-300, 1e300, 4.9e-324}, options));
    CHECK_NOTHROW((void)ddpm::io::render_curve(std::vector<double>{0.5, 0.51, 0.52}, options));
  }
  SUBCASE("bad arguments") {
    CHECK_THROWS_AS((void)ddpm::io::render_curve(std::vector<double>{}), ddpm::InvalidArgument);
    options.width = 10;
    CHECK_THROWS_AS((void)ddpm::io::render_curve(loss, options), ddpm::InvalidArgument);
    options.width = 400;
    options.x_start = 1e20;  // x_step 1 vanishes in rounding
    CHECK_THROWS_WITH_AS((void)ddpm::io::render_curve(loss, options),
                         doctest::Contains("x_start, x_step"), ddpm::InvalidArgument);
  }
}

}  // namespace plot_test
