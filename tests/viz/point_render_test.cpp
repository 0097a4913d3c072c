// SPDX-License-Identifier: MIT
// Tests of the point-cloud pictures: the camera against an independent rotation, painter's order,
// depth shading, grid and strip layout, and a PNG round trip.
#include "ddpm/viz/point_render.hpp"

#include <doctest/doctest.h>

#include <Eigen/Geometry>
#include <cmath>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "stb_image_decode.hpp"
#include "support.hpp"

namespace point_render_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::io::Image;
using ddpm::io::Rgb;
using ddpm::viz::CloudStyle;

Rgb pixel(const Image& image, int x, int y) {
  return {image.at(x, y, 0), image.at(x, y, 1), image.at(x, y, 2)};
}

/// The camera written independently: rotate the world by −azimuth about y, then by elevation about
/// x, so the viewing direction becomes +z; screen x, y are then camera x, y.
Eigen::Vector3d camera(const CloudStyle& style, const Eigen::Vector3d& p) {
  const double a = style.azimuth_degrees * std::numbers::pi / 180;
  const double e = style.elevation_degrees * std::numbers::pi / 180;
  const Eigen::Matrix3d m = Eigen::AngleAxisd(e, Eigen::Vector3d::UnitX()).toRotationMatrix() *
                            Eigen::AngleAxisd(-a, Eigen::Vector3d::UnitY()).toRotationMatrix();
  const Eigen::Vector3d c = m * p;
  return c;
}

}  // namespace

TEST_CASE("a single point lands at its projected pixel, in its depth's color") {
  CloudStyle style;
  style.size = 200;
  const Eigen::Vector3d p(0.7, -1.1, 0.4);
  const Eigen::Vector3d c = camera(style, p);
  const double h = style.half_extent;
  const double u = (c.x() + h) / (2 * h) * style.size;
  const double v = (h - c.y()) / (2 * h) * style.size;
  const ddpm::viz::Projected projected = ddpm::viz::project(style, p.x(), p.y(), p.z());
  CHECK(projected.u == doctest::Approx(u).epsilon(1e-12));
  CHECK(projected.v == doctest::Approx(v).epsilon(1e-12));
  CHECK(projected.depth == doctest::Approx(c.z()).epsilon(1e-12));

  Batch<double> cloud(1, 3);
  cloud.row(0) = p.transpose();
  const Image image = ddpm::viz::render_cloud(cloud, style);
  REQUIRE(image.width == 200);
  REQUIRE(image.height == 200);
  const int px = static_cast<int>(std::floor(u)), py = static_cast<int>(std::floor(v));
  CHECK(pixel(image, px, py) == ddpm::viz::depth_color(style, c.z()));
  // Only the disc around it is drawn (radius 1.3 plus antialiasing: within 3 pixels).
  int stray = 0;
  for (int y = 1; y < 199; ++y) {
    for (int x = 1; x < 199; ++x) {
      const bool near_point = std::abs(x - px) <= 3 && std::abs(y - py) <= 3;
      stray += !near_point && pixel(image, x, y) != ddpm::io::colors::white;
    }
  }
  CHECK(stray == 0);
  // The default view is a three-quarter view from above: up is up, and +x+z+y faces the camera.
  CHECK(ddpm::viz::project(style, 0, 1, 0).v < style.size / 2.0);
  CHECK(ddpm::viz::project(style, 0, 0, 0).u == doctest::Approx(style.size / 2.0));
  CHECK(ddpm::viz::project(style, 1, 1, 1).depth > 0);
  CHECK(ddpm::viz::project(style, 1, 0, -1).depth == doctest::Approx(0.0));
  // Non-finite points are skipped, not drawn at some pixel.
  cloud(0, 1) = std::nan("");
  const Image blank = ddpm::viz::render_cloud(cloud, style);
  CHECK(pixel(blank, px, py) == ddpm::io::colors::white);
}

TEST_CASE("nearer points cover farther ones at the same pixel, and are darker") {
  CloudStyle style;
  const double a = style.azimuth_degrees * std::numbers::pi / 180;
  const double e = style.elevation_degrees * std::numbers::pi / 180;
  // Two points on one line of sight: p ± 1.5 d, d the direction towards the camera.
  const Eigen::Vector3d d(std::cos(e) * std::sin(a), std::sin(e), std::cos(e) * std::cos(a));
  const Eigen::Vector3d p(0.3, 0.2, -0.4);
  Batch<double> near_first(2, 3), far_first(2, 3);
  near_first.row(0) = (p + 1.5 * d).transpose();
  near_first.row(1) = (p - 1.5 * d).transpose();
  far_first.row(0) = near_first.row(1);
  far_first.row(1) = near_first.row(0);
  const ddpm::viz::Projected near =
      ddpm::viz::project(style, near_first(0, 0), near_first(0, 1), near_first(0, 2));
  const ddpm::viz::Projected far =
      ddpm::viz::project(style, near_first(1, 0), near_first(1, 1), near_first(1, 2));
  REQUIRE(near.u == doctest::Approx(far.u));
  REQUIRE(near.v == doctest::Approx(far.v));
  const Rgb near_color = ddpm::viz::depth_color(style, near.depth);
  const Rgb far_color = ddpm::viz::depth_color(style, far.depth);
  CHECK(near_color.r + near_color.g + near_color.b < far_color.r + far_color.g + far_color.b);
  const int px = static_cast<int>(near.u), py = static_cast<int>(near.v);
  for (const Batch<double>* cloud : {&near_first, &far_first}) {
    CHECK(pixel(ddpm::viz::render_cloud(*cloud, style), px, py) == near_color);
  }
  // Alone, the far point shows in its own color.
  CHECK(pixel(ddpm::viz::render_cloud(near_first.bottomRows(1), style), px, py) == far_color);
  // Depth colors run from near_color (depth +depth_extent) to far_color (−depth_extent), clamped.
  CHECK(ddpm::viz::depth_color(style, style.depth_extent) == style.near_color);
  CHECK(ddpm::viz::depth_color(style, 10 * style.depth_extent) == style.near_color);
  CHECK(ddpm::viz::depth_color(style, -10 * style.depth_extent) == style.far_color);
  const Rgb middle = ddpm::viz::depth_color(style, 0);
  CHECK(middle.r == (style.near_color.r + style.far_color.r + 1) / 2);
}

TEST_CASE("grids and strips have the expected size, pictures and titles") {
  CloudStyle style;
  style.size = 64;
  style.margin = 4;
  style.text_scale = 1;
  constexpr Index kPoints = 50;
  const Batch<double> clouds = ddpm::test::random_batch(5 * kPoints, 3, 2);
  // 5 clouds in 3 columns: 2 rows of cells 64 + 2·4 wide; with titles a band of 9 + 4 pixels.
  const Image plain = ddpm::viz::render_cloud_grid(clouds, kPoints, 3, {}, style);
  CHECK(plain.width == 3 * 72);
  CHECK(plain.height == 2 * 72);
  const std::vector<std::string> titles = {"a", "b", "c", "d", "e"};
  const Image titled = ddpm::viz::render_cloud_grid(clouds, kPoints, 3, titles, style);
  CHECK(titled.width == 3 * 72);
  CHECK(titled.height == 2 * (72 + 13));
  // Cloud 4 sits in row 1, column 1, below its title band: the same pixels as rendered alone.
  const Image alone = ddpm::viz::render_cloud(clouds.middleRows(4 * kPoints, kPoints), style);
  const int x0 = 72 + 4, y0 = (72 + 13) + 4 + 13;
  bool same = true;
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 64; ++x) same = same && pixel(titled, x0 + x, y0 + y) == pixel(alone, x, y);
  }
  CHECK(same);
  // Its title is drawn in the band above.
  int ink = 0;
  for (int y = y0 - 13; y < y0; ++y) {
    for (int x = x0; x < x0 + 64; ++x) ink += pixel(titled, x, y) == ddpm::io::colors::black;
  }
  CHECK(ink > 0);

  const std::vector<Batch<float>> steps = {Batch<float>::Zero(10, 3), Batch<float>::Ones(10, 3),
                                           Batch<float>::Constant(10, 3, -1)};
  const std::vector<int> t = {99, 50, 0};
  const Image strip = ddpm::viz::render_cloud_strip(steps, t, style);
  CHECK(strip.width == 3 * 72);
  CHECK(strip.height == 72 + 13);

  CHECK_THROWS_AS(ddpm::viz::render_cloud_grid(clouds, 7, 3, {}, style), ddpm::InvalidArgument);
  CHECK_THROWS_AS(
      ddpm::viz::render_cloud_grid(clouds, kPoints, 3, std::span(titles).first(2), style),
      ddpm::InvalidArgument);
  CHECK_THROWS_AS(ddpm::viz::render_cloud_strip(steps, std::span(t).first(2), style),
                  ddpm::InvalidArgument);
  CHECK_THROWS_AS(ddpm::viz::render_cloud(Batch<double>::Zero(4, 2)), ddpm::InvalidArgument);
  CloudStyle bad;
  bad.half_extent = 0;
  CHECK_THROWS_WITH_AS(ddpm::viz::render_cloud(clouds, bad),
                       "ddpm: invalid style.half_extent = 0; allowed: finite and > 0",
                       ddpm::InvalidArgument);
}

TEST_CASE("a rendered grid survives a PNG round trip") {
  ddpm::test::TempDir dir;
  CloudStyle style;
  style.size = 48;
  const Batch<double> clouds = ddpm::test::random_batch(2 * 100, 3, 4);
  const std::vector<std::string> titles = {"t = 99", "t = 0"};
  const Image image = ddpm::viz::render_cloud_grid(clouds, 100, 2, titles, style);
  const std::filesystem::path file = dir.path / "grid.png";
  ddpm::io::write_png(file, image);
  int width = 0, height = 0, channels = 0;
  std::unique_ptr<stbi_uc, decltype(&stbi_image_free)> data(
      stbi_load(file.c_str(), &width, &height, &channels, 0), &stbi_image_free);
  REQUIRE(data != nullptr);
  CHECK(width == image.width);
  CHECK(height == image.height);
  CHECK(channels == 3);
  CHECK(std::vector<std::uint8_t>(data.get(), data.get() + image.pixels.size()) == image.pixels);
}

}  // namespace point_render_test
