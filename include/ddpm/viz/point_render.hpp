// SPDX-License-Identifier: MIT
// Pictures of 3D point clouds: one cloud from a fixed three-quarter view with depth shading, grids
// of clouds with titles, and strips of one cloud along the reverse process.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <numbers>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"

namespace ddpm::viz {

/// How clouds are drawn. The view and the frame are fixed, not fitted to the data, so pictures of
/// different clouds, runs and steps compare; the defaults suit normalized clouds
/// (data::normalize_clouds: mean 0, unit coordinate std): every data::ShapeFamily shape fits
/// inside ±3.5, and most of a cloud's depth lies within ±2.
struct CloudStyle {
  double azimuth_degrees = 45;    ///< camera angle about the up (y) axis, from +z towards +x
  double elevation_degrees = 30;  ///< camera angle above the horizontal plane
  double half_extent = 3.5;       ///< world units from the picture's center to its edges
  double depth_extent = 2;  ///< depths from +depth_extent (near) to −depth_extent (far) span
                            ///< the colors
  int size = 256;           ///< side of a cloud's square picture, in pixels
  double dot_radius = 1.3;  ///< of each point's disc, in pixels
  io::Rgb near_color = {20, 45, 140};   ///< points nearest the camera: dark, saturated
  io::Rgb far_color = {180, 200, 235};  ///< points farthest away: light
  int margin = 8;                       ///< blank pixels around each picture of a grid
  int text_scale = 2;                   ///< pixels per font unit of titles
};

/// Where a world point lands: continuous pixel coordinates (u to the right, v down, pixel
/// (floor(u), floor(v)) holds it) and its depth towards the camera (larger is nearer).
struct Projected {
  double u = 0;      ///< pixel column, to the right
  double v = 0;      ///< pixel row, downwards
  double depth = 0;  ///< towards the camera; larger is nearer
};

/// The orthographic camera of `style`: it looks at the origin from the direction
/// d = (cos e sin a, sin e, cos e cos a) (a the azimuth, e the elevation), with screen right
/// r = (cos a, 0, −sin a) and screen up d × r, so y is up on the picture. The origin is the
/// picture's center; ±half_extent along r or up reach its edges.
[[nodiscard]] inline Projected project(const CloudStyle& style, double x, double y, double z) {
  const double a = style.azimuth_degrees * std::numbers::pi / 180.0;
  const double e = style.elevation_degrees * std::numbers::pi / 180.0;
  const double ca = std::cos(a), sa = std::sin(a), ce = std::cos(e), se = std::sin(e);
  const double right = ca * x - sa * z;
  const double up = -se * sa * x + ce * y - se * ca * z;  // d × r
  const double depth = ce * sa * x + se * y + ce * ca * z;
  const double h = style.half_extent;
  return {(right + h) / (2 * h) * style.size, (h - up) / (2 * h) * style.size, depth};
}

/// Throws InvalidArgument unless `style` is usable.
inline void check_style(const CloudStyle& style) {
  ddpm::detail::require(
      std::isfinite(style.azimuth_degrees) && std::isfinite(style.elevation_degrees),
      "style.azimuth/elevation_degrees",
      ddpm::detail::to_text(style.azimuth_degrees) + ", " +
          ddpm::detail::to_text(style.elevation_degrees),
      "finite angles");
  ddpm::detail::require(std::isfinite(style.half_extent) && style.half_extent > 0,
                        "style.half_extent", style.half_extent, "finite and > 0");
  ddpm::detail::require(std::isfinite(style.depth_extent) && style.depth_extent > 0,
                        "style.depth_extent", style.depth_extent, "finite and > 0");
  ddpm::detail::require(style.size >= 16 && style.size <= 4096, "style.size", style.size,
                        "16..4096");
  ddpm::detail::require(style.dot_radius > 0 && style.dot_radius <= 64, "style.dot_radius",
                        style.dot_radius, "(0, 64]");
  ddpm::detail::require(style.margin >= 0 && style.margin <= 256, "style.margin", style.margin,
                        "0..256");
  ddpm::detail::require(style.text_scale >= 1 && style.text_scale <= 8, "style.text_scale",
                        style.text_scale, "1..8");
}

/// The color of a point at `depth`: near_color at depth +depth_extent (nearest), far_color at
/// −depth_extent, linear between and clamped outside.
[[nodiscard]] inline io::Rgb depth_color(const CloudStyle& style, double depth) {
  const double t = std::clamp((style.depth_extent - depth) / (2 * style.depth_extent), 0.0, 1.0);
  const auto mix = [t](std::uint8_t near, std::uint8_t far) {
    return static_cast<std::uint8_t>(std::lround(near + t * (far - near)));
  };
  return {mix(style.near_color.r, style.far_color.r), mix(style.near_color.g, style.far_color.g),
          mix(style.near_color.b, style.far_color.b)};
}

/// A picture of one cloud (any N x 3 matrix), style.size pixels square on white with a gray
/// outline: each point an opaque disc shaded by depth, drawn far to near (painter's order; equal
/// depths in row order), so nearer points cover farther ones. Non-finite points are not drawn;
/// points outside the frame are clipped.
///
///   ddpm::io::write_png("cloud.png", ddpm::viz::render_cloud(cloud));
template <class Derived>
[[nodiscard]] io::Image render_cloud(const Eigen::DenseBase<Derived>& cloud,
                                     const CloudStyle& style = {}) {
  check_style(style);
  ddpm::detail::require_shape(cloud.cols() == 3, "cloud", cloud.rows(), cloud.cols(),
                              "N x 3 (one 3-D point per row)");
  std::vector<Projected> points;
  points.reserve(static_cast<std::size_t>(cloud.rows()));
  for (Index i = 0; i < cloud.rows(); ++i) {
    const double x = static_cast<double>(cloud(i, 0));
    const double y = static_cast<double>(cloud(i, 1));
    const double z = static_cast<double>(cloud(i, 2));
    if (std::isfinite(x) && std::isfinite(y) && std::isfinite(z)) {
      points.push_back(project(style, x, y, z));
    }
  }
  // Stable, so equal depths keep row order: the picture is a pure function of the cloud.
  std::stable_sort(points.begin(), points.end(),
                   [](const Projected& p, const Projected& q) { return p.depth < q.depth; });
  io::Canvas canvas(style.size, style.size);
  for (const Projected& p : points) {
    canvas.disk(p.u, p.v, style.dot_radius, depth_color(style, p.depth));
  }
  canvas.rect(0, 0, style.size, style.size, io::colors::gray);
  return std::move(canvas).image();
}

/// One picture of a grid: a cloud (N x 3) and its title.
struct CloudPanel {
  Batch<double> points;  ///< N x 3
  std::string title;     ///< shown above the picture
};

/// The grid layout render_cloud_panels uses (io::panel_layout's, with a cloud picture as the plot
/// area): panel i's picture has its top-left pixel at plot_origin(i).
[[nodiscard]] inline io::PanelLayout cloud_layout(std::span<const CloudPanel> panels, int columns,
                                                  const CloudStyle& style = {}) {
  check_style(style);
  std::vector<io::Panel> titles(panels.size());
  for (std::size_t i = 0; i < panels.size(); ++i) titles[i].title = panels[i].title;
  io::PlotStyle plot;
  plot.plot_size = style.size;
  plot.margin = style.margin;
  plot.text_scale = style.text_scale;
  return io::panel_layout(titles, columns, plot);
}

/// The clouds of `panels` in a grid of `columns` columns, row by row, each with its title above
/// (a title band only when some panel has a title).
[[nodiscard]] inline io::Image render_cloud_panels(std::span<const CloudPanel> panels, int columns,
                                                   const CloudStyle& style = {}) {
  const io::PanelLayout layout = cloud_layout(panels, columns, style);
  for (const CloudPanel& panel : panels) {
    ddpm::detail::require_shape(panel.points.cols() == 3 || panel.points.size() == 0,
                                "panel.points", panel.points.rows(), panel.points.cols(),
                                "N x 3 (one 3-D point per row)");
  }
  io::Canvas canvas(layout.width(), layout.height());
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const std::array<int, 2> origin = layout.plot_origin(static_cast<Index>(i));
    const io::Image picture = panels[i].points.size() == 0
                                  ? render_cloud(Batch<double>(0, 3), style)
                                  : render_cloud(panels[i].points, style);
    canvas.draw_image(picture, origin[0], origin[1]);
    if (!panels[i].title.empty()) {
      io::detail::centered_text(canvas, panels[i].title, origin[0] + layout.plot_size / 2,
                                origin[1] - layout.title_height + 2, layout.cell_width - 2,
                                style.text_scale);
    }
  }
  return std::move(canvas).image();
}

/// A grid of the clouds of a batch ((S·points) x 3, cloud s in rows [s·points, (s+1)·points), the
/// layout of data::sample_shapes and io::read_point_clouds), `columns` per row, with `titles`
/// (none, or one per cloud).
///
///   ddpm::io::write_png("samples.png", ddpm::viz::render_cloud_grid(x, 2048, 4));
template <class Derived>
[[nodiscard]] io::Image render_cloud_grid(const Eigen::DenseBase<Derived>& clouds, Index points,
                                          int columns, std::span<const std::string> titles = {},
                                          const CloudStyle& style = {}) {
  ddpm::detail::require(points >= 1, "points", points, ">= 1");
  ddpm::detail::require_shape(
      clouds.cols() == 3 && clouds.rows() >= points && clouds.rows() % points == 0, "clouds",
      clouds.rows(), clouds.cols(),
      [&] { return "(S * " + std::to_string(points) + ") x 3 with S >= 1"; });
  const Index count = clouds.rows() / points;
  ddpm::detail::require(titles.empty() || static_cast<Index>(titles.size()) == count,
                        "titles.size()", titles.size(),
                        "0 or the number of clouds (" + std::to_string(count) + ")");
  std::vector<CloudPanel> panels(static_cast<std::size_t>(count));
  for (Index s = 0; s < count; ++s) {
    CloudPanel& panel = panels[static_cast<std::size_t>(s)];
    panel.points = clouds.derived().middleRows(s * points, points).template cast<double>();
    if (!titles.empty()) panel.title = titles[static_cast<std::size_t>(s)];
  }
  return render_cloud_panels(panels, columns, style);
}

/// A strip: one cloud at several steps of the reverse process, in one row, titled "t = 99" and so
/// on (`timesteps[k]` for `clouds[k]`).
///
///   const std::vector<int> t = {999, 500, 100, 0};  // steps[k] is the cloud at t[k]
///   ddpm::io::write_png("reverse.png", ddpm::viz::render_cloud_strip(steps, t));
template <class Real>
[[nodiscard]] io::Image render_cloud_strip(const std::vector<Batch<Real>>& clouds,
                                           std::span<const int> timesteps,
                                           const CloudStyle& style = {}) {
  ddpm::detail::require(!clouds.empty() && clouds.size() == timesteps.size(), "timesteps.size()",
                        timesteps.size(),
                        "the number of clouds (" + std::to_string(clouds.size()) + "), >= 1");
  std::vector<CloudPanel> panels(clouds.size());
  for (std::size_t k = 0; k < clouds.size(); ++k) {
    ddpm::detail::require_shape(clouds[k].cols() == 3, "clouds[k]", clouds[k].rows(),
                                clouds[k].cols(), "N x 3 (one 3-D point per row)");
    panels[k].points = clouds[k].template cast<double>();
    panels[k].title = "t = " + std::to_string(timesteps[k]);
  }
  return render_cloud_panels(
      panels, static_cast<int>(std::min<std::size_t>(clouds.size(), 1u << 20)), style);
}

}  // namespace ddpm::viz
