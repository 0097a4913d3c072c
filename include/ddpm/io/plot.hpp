// SPDX-License-Identifier: MIT
// Pictures of 2D samples, diffusion strips, image grids and loss curves, rendered to io::Image.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/png.hpp"

namespace ddpm::io {

/// The region of the plane a panel shows. Fixed by the caller, not fitted to the data, so that
/// pictures of different runs and steps are comparable.
struct Frame {
  double x_min = -4;  ///< left edge
  double x_max = 4;   ///< right edge
  double y_min = -4;  ///< bottom edge
  double y_max = 4;   ///< top edge

  /// The square [-half, half]^2.
  [[nodiscard]] static Frame square(double half) { return {-half, half, -half, half}; }

  /// Whether (x, y) lies in the closed frame (false for NaN).
  [[nodiscard]] bool contains(double x, double y) const {
    return x >= x_min && x <= x_max && y >= y_min && y <= y_max;
  }

  /// Continuous pixel coordinates of (x, y) in a size x size plot area: x grows to the right, y
  /// upwards (so the pixel row is measured from the top). Pixel floor(u), floor(v) holds the point;
  /// the right and top edges are kept in the last pixel.
  [[nodiscard]] std::array<double, 2> to_pixel(double x, double y, int size) const {
    const double keep_inside = size - 1e-9;
    return {std::min((x - x_min) / (x_max - x_min) * size, keep_inside),
            std::min((y_max - y) / (y_max - y_min) * size, keep_inside)};
  }
};

/// Throws InvalidArgument unless the frame is finite, with min < max and a finite width on both
/// axes.
inline void check_frame(const Frame& frame) {
  // The widths must be finite too: to_pixel divides by them.
  const bool ok = std::isfinite(frame.x_max - frame.x_min) &&
                  std::isfinite(frame.y_max - frame.y_min) && frame.x_min < frame.x_max &&
                  frame.y_min < frame.y_max;
  if (!ok) {
    throw InvalidArgument("frame",
                          "[" + ddpm::detail::to_text(frame.x_min) + ", " +
                              ddpm::detail::to_text(frame.x_max) + "] x [" +
                              ddpm::detail::to_text(frame.y_min) + ", " +
                              ddpm::detail::to_text(frame.y_max) + "]",
                          "finite bounds with x_min < x_max and y_min < y_max");
  }
}

/// How a panel shows its points.
enum class PanelKind {
  scatter,  ///< one small translucent dot per point; overlaps get darker
  density,  ///< a 2D histogram, darker where more points fall (log scale); for many points
};

/// One square plot of 2D points with an optional title above and label below (e.g. "t=250").
/// Points are the rows of an n x 2 matrix; rows outside the frame or not finite are not drawn.
struct Panel {
  Batch<double> points;                 ///< n x 2, one point per row
  std::string title;                    ///< above the plot (empty: none)
  std::string label;                    ///< below the plot, e.g. "t=250" (empty: none)
  Frame frame{};                        ///< the region shown
  PanelKind kind = PanelKind::scatter;  ///< scatter or density
};

/// A panel of `points` (any n x 2 Eigen matrix, copied as double).
template <class Derived>
[[nodiscard]] Panel make_panel(const Eigen::DenseBase<Derived>& points, std::string title = {},
                               std::string label = {}, Frame frame = {}) {
  ddpm::detail::require_shape(points.cols() == 2, "points", points.rows(), points.cols(),
                              "n x 2 (one 2D point per row)");
  Panel panel;
  panel.points = points.derived().template cast<double>();
  panel.title = std::move(title);
  panel.label = std::move(label);
  panel.frame = frame;
  return panel;
}

/// Sizes and colors shared by the panel pictures.
struct PlotStyle {
  int plot_size = 256;          ///< side of each square plot area, in pixels
  int margin = 8;               ///< blank pixels around each panel
  int text_scale = 2;           ///< pixels per font unit of titles and labels
  double dot_radius = 1.0;      ///< of scatter dots, in pixels
  double dot_alpha = 0.35;      ///< opacity of one dot; overlapping dots get darker
  int density_cell = 4;         ///< pixels per histogram cell of density panels
  bool axes = true;             ///< faint lines through x = 0 and y = 0
  Rgb dot_color = colors::ink;  ///< points and density
};

/// Where render_panels puts things: panel i sits in cell (i % columns, i / columns); its plot area
/// is the plot_size x plot_size square whose top-left pixel is plot_origin(i).
struct PanelLayout {
  int columns = 1;       ///< cells per row of the picture
  int rows = 1;          ///< rows of cells
  int cell_width = 0;    ///< pixels
  int cell_height = 0;   ///< pixels
  int plot_x = 0;        ///< plot area offset inside a cell
  int plot_y = 0;        ///< likewise, downwards
  int plot_size = 0;     ///< side of the square plot area, pixels
  int title_height = 0;  ///< 0 when no panel has a title
  int label_height = 0;  ///< 0 when no panel has a label

  /// The picture's width in pixels.
  [[nodiscard]] int width() const { return columns * cell_width; }
  /// The picture's height in pixels.
  [[nodiscard]] int height() const { return rows * cell_height; }
  /// The top-left pixel (x, y) of panel i's plot area.
  [[nodiscard]] std::array<int, 2> plot_origin(Index i) const {
    return {static_cast<int>(i % columns) * cell_width + plot_x,
            static_cast<int>(i / columns) * cell_height + plot_y};
  }
};

namespace detail {

inline void check_style(const PlotStyle& style) {
  ddpm::detail::require(style.plot_size >= 16 && style.plot_size <= 4096, "style.plot_size",
                        style.plot_size, "16..4096");
  ddpm::detail::require(style.margin >= 0 && style.margin <= 256, "style.margin", style.margin,
                        "0..256");
  ddpm::detail::require(style.text_scale >= 1 && style.text_scale <= 8, "style.text_scale",
                        style.text_scale, "1..8");
  ddpm::detail::require(style.dot_radius > 0 && style.dot_radius <= 64, "style.dot_radius",
                        style.dot_radius, "(0, 64]");
  ddpm::detail::require(style.dot_alpha > 0 && style.dot_alpha <= 1, "style.dot_alpha",
                        style.dot_alpha, "(0, 1]");
  ddpm::detail::require(style.density_cell >= 1 && style.density_cell <= style.plot_size,
                        "style.density_cell", style.density_cell, "1..plot_size");
}

/// Height of a band holding one line of text at `scale`, descenders included.
inline int text_band(int scale) { return 9 * scale + 4; }

/// Draws the plot area of one panel (frame box, axes, points) as its own image, which clips it.
inline Image render_plot_area(const Panel& panel, const PlotStyle& style) {
  const int size = style.plot_size;
  const Frame& frame = panel.frame;
  Canvas canvas(size, size);
  if (style.axes) {
    // Faint axes, drawn first so points cover them.
    if (frame.contains(0, frame.y_min)) {
      const int u = static_cast<int>(frame.to_pixel(0, 0, size)[0]);
      canvas.fill_rect(u, 0, u + 1, size, colors::light_gray);
    }
    if (frame.contains(frame.x_min, 0)) {
      const int v = static_cast<int>(frame.to_pixel(0, 0, size)[1]);
      canvas.fill_rect(0, v, size, v + 1, colors::light_gray);
    }
  }
  const Batch<double>& points = panel.points;
  if (panel.kind == PanelKind::scatter) {
    for (Index i = 0; i < points.rows(); ++i) {
      const double x = points(i, 0), y = points(i, 1);
      if (!frame.contains(x, y)) continue;
      const std::array<double, 2> p = frame.to_pixel(x, y, size);
      canvas.disk(p[0], p[1], style.dot_radius, style.dot_color, style.dot_alpha);
    }
  } else {
    const int cell = style.density_cell;
    const int cells = (size + cell - 1) / cell;
    std::vector<double> counts(static_cast<std::size_t>(cells) * cells, 0.0);
    for (Index i = 0; i < points.rows(); ++i) {
      const double x = points(i, 0), y = points(i, 1);
      if (!frame.contains(x, y)) continue;
      const std::array<double, 2> p = frame.to_pixel(x, y, size);
      const auto cx = static_cast<std::size_t>(p[0]) / static_cast<std::size_t>(cell);
      const auto cy = static_cast<std::size_t>(p[1]) / static_cast<std::size_t>(cell);
      counts[cy * static_cast<std::size_t>(cells) + cx] += 1;
    }
    const double top = std::log1p(*std::max_element(counts.begin(), counts.end()));
    for (int cy = 0; cy < cells; ++cy) {
      for (int cx = 0; cx < cells; ++cx) {
        const double count = counts[static_cast<std::size_t>(cy) * cells + cx];
        // Log scale, so sparse tails stay visible next to dense modes; one point is never blank.
        if (count > 0) {
          const double shade = 0.15 + 0.85 * std::log1p(count) / top;
          canvas.fill_rect(cx * cell, cy * cell, (cx + 1) * cell, (cy + 1) * cell, style.dot_color,
                           shade);
        }
      }
    }
  }
  canvas.rect(0, 0, size, size, colors::gray);
  return std::move(canvas).image();
}

/// Draws `text` centered horizontally on x_center, top at y, cut to fit `max_width` pixels.
inline void centered_text(Canvas& canvas, std::string text, int x_center, int y, int max_width,
                          int scale) {
  while (!text.empty() && Canvas::text_width(text, scale) > max_width) text.pop_back();
  canvas.text(x_center - Canvas::text_width(text, scale) / 2, y, text, colors::black, scale);
}

}  // namespace detail

/// The layout render_panels uses for these panels in `columns` columns (fewer if there are fewer
/// panels).
[[nodiscard]] inline PanelLayout panel_layout(std::span<const Panel> panels, int columns,
                                              const PlotStyle& style = {}) {
  detail::check_style(style);
  ddpm::detail::require(!panels.empty(), "panels.size()", panels.size(), ">= 1");
  ddpm::detail::require(columns >= 1, "columns", columns, ">= 1");
  const bool titles =
      std::any_of(panels.begin(), panels.end(), [](const Panel& p) { return !p.title.empty(); });
  const bool labels =
      std::any_of(panels.begin(), panels.end(), [](const Panel& p) { return !p.label.empty(); });
  PanelLayout layout;
  // Capped so the counts fit an int; anything near the cap fails the size check below.
  layout.columns = static_cast<int>(
      std::min<std::size_t>({static_cast<std::size_t>(columns), panels.size(), 1u << 20}));
  layout.rows = static_cast<int>(
      std::min<std::size_t>((panels.size() + layout.columns - 1) / layout.columns, 1u << 20));
  layout.plot_size = style.plot_size;
  layout.title_height = titles ? detail::text_band(style.text_scale) : 0;
  layout.label_height = labels ? detail::text_band(style.text_scale) : 0;
  layout.cell_width = style.plot_size + 2 * style.margin;
  layout.cell_height =
      style.plot_size + 2 * style.margin + layout.title_height + layout.label_height;
  layout.plot_x = style.margin;
  layout.plot_y = style.margin + layout.title_height;
  // In 64 bits: with absurd panel counts the int products would overflow.
  const bool fits = static_cast<long long>(layout.columns) * layout.cell_width <= kMaxImageSide &&
                    static_cast<long long>(layout.rows) * layout.cell_height <= kMaxImageSide;
  ddpm::detail::require(fits, "panels.size()", panels.size(),
                        "few enough panels for a picture of at most 16384 x 16384 pixels");
  return layout;
}

/// Draws the panels in a grid of `columns` columns, row by row, on white: e.g. {data, samples} side
/// by side with columns = 2, or a strip of the diffusion process with columns = panels.size().
///
///   std::vector<ddpm::io::Panel> panels = {ddpm::io::make_panel(data, "data"),
///                                           ddpm::io::make_panel(samples, "samples")};
///   ddpm::io::write_png("compare.png", ddpm::io::render_panels(panels, 2));
[[nodiscard]] inline Image render_panels(std::span<const Panel> panels, int columns,
                                         const PlotStyle& style = {}) {
  const PanelLayout layout = panel_layout(panels, columns, style);
  for (const Panel& panel : panels) {
    check_frame(panel.frame);
    ddpm::detail::require_shape(panel.points.cols() == 2 || panel.points.size() == 0,
                                "panel.points", panel.points.rows(), panel.points.cols(),
                                "n x 2 (one 2D point per row)");
  }
  Canvas canvas(layout.width(), layout.height());
  const int text_width = layout.cell_width - 2;
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const Panel& panel = panels[i];
    const std::array<int, 2> origin = layout.plot_origin(static_cast<Index>(i));
    const int x_center = origin[0] + layout.plot_size / 2;
    canvas.draw_image(detail::render_plot_area(panel, style), origin[0], origin[1]);
    if (!panel.title.empty()) {
      detail::centered_text(canvas, panel.title, x_center, origin[1] - layout.title_height + 2,
                            text_width, style.text_scale);
    }
    if (!panel.label.empty()) {
      detail::centered_text(canvas, panel.label, x_center, origin[1] + layout.plot_size + 3,
                            text_width, style.text_scale);
    }
  }
  return std::move(canvas).image();
}

/// A strip: all panels in one row (forward process x_0 ... x_T, or reverse from noise to data),
/// typically labelled "t=250" and so on.
[[nodiscard]] inline Image render_strip(std::span<const Panel> panels,
                                        const PlotStyle& style = {}) {
  ddpm::detail::require(!panels.empty(), "panels.size()", panels.size(), ">= 1");
  return render_panels(panels, static_cast<int>(std::min<std::size_t>(panels.size(), 1u << 20)),
                       style);
}

/// Writes a scatter picture of `points` (n x 2) in a fixed `frame` to a PNG file.
///
///   ddpm::io::scatter_png("samples.png", samples, "samples, step 1000");
template <class Derived>
void scatter_png(const std::filesystem::path& path, const Eigen::DenseBase<Derived>& points,
                 std::string title = {}, Frame frame = {}, const PlotStyle& style = {}) {
  const Panel panel = make_panel(points, std::move(title), {}, frame);
  write_png(path, render_panels(std::span<const Panel>(&panel, 1), 1, style));
}

/// How tile_images lays out and scales images.
struct TileOptions {
  int columns = 8;    ///< images per row
  int padding = 2;    ///< white pixels between and around images
  int zoom = 1;       ///< each image pixel becomes zoom x zoom pixels
  double low = -1.0;  ///< value shown black (the usual [-1, 1] scaling of image diffusion)
  double high = 1.0;  ///< value shown white; values outside are clipped, NaN shows black
};

/// A grid of the images in `batch`, one image per row stored channel-major (C*H*W values, the
/// layout of ddpm batches), as a gray (channels = 1) or RGB (channels = 3) picture.
///
///   ddpm::io::write_png("samples.png", ddpm::io::tile_images(samples, 1, 28, 28));
template <class Derived>
[[nodiscard]] Image tile_images(const Eigen::DenseBase<Derived>& batch, int channels, int height,
                                int width, const TileOptions& options = {}) {
  ddpm::detail::require(channels == 1 || channels == 3, "channels", channels, "1 or 3");
  ddpm::detail::require(height >= 1 && width >= 1, "height x width",
                        std::to_string(height) + "x" + std::to_string(width), "positive sides");
  ddpm::detail::require_shape(batch.rows() >= 1 && batch.cols() == Index{channels} * height * width,
                              "batch", batch.rows(), batch.cols(),
                              "n x (channels * height * width) with n >= 1");
  ddpm::detail::require(options.columns >= 1, "options.columns", options.columns, ">= 1");
  ddpm::detail::require(options.padding >= 0 && options.padding <= 64, "options.padding",
                        options.padding, "0..64");
  ddpm::detail::require(options.zoom >= 1 && options.zoom <= 64, "options.zoom", options.zoom,
                        "1..64");
  ddpm::detail::require(
      std::isfinite(options.low) && std::isfinite(options.high) && options.low < options.high,
      "options.low..high",
      ddpm::detail::to_text(options.low) + ".." + ddpm::detail::to_text(options.high),
      "finite with low < high");
  const Index n = batch.rows();
  const Index columns = std::min<Index>(options.columns, n);
  const Index rows = (n + columns - 1) / columns;
  const Index tile_w = Index{width} * options.zoom, tile_h = Index{height} * options.zoom;
  const Index total_w = columns * (tile_w + options.padding) + options.padding;
  const Index total_h = rows * (tile_h + options.padding) + options.padding;
  ddpm::detail::require(total_w <= kMaxImageSide && total_h <= kMaxImageSide, "batch.rows()", n,
                        "few enough images for a picture of at most 16384 x 16384 pixels");
  Image image = Image::filled(static_cast<int>(total_w), static_cast<int>(total_h), channels, 255);
  const double scale = 255.0 / (options.high - options.low);
  const Index plane = Index{height} * width;
  for (Index k = 0; k < n; ++k) {
    const Index x0 = (k % columns) * (tile_w + options.padding) + options.padding;
    const Index y0 = (k / columns) * (tile_h + options.padding) + options.padding;
    for (Index y = 0; y < tile_h; ++y) {
      for (Index x = 0; x < tile_w; ++x) {
        const Index source = (y / options.zoom) * width + x / options.zoom;
        for (int c = 0; c < channels; ++c) {
          const double v = static_cast<double>(batch(k, c * plane + source));
          const double level =
              std::isnan(v) ? 0.0 : std::clamp((v - options.low) * scale, 0.0, 255.0);
          image.at(static_cast<int>(x0 + x), static_cast<int>(y0 + y), c) =
              static_cast<std::uint8_t>(std::lround(level));
        }
      }
    }
  }
  return image;
}

/// Writes each image of `batch` (one per row, as tile_images takes them) to its own PNG in `dir`,
/// at its own size: 000000.png, 000001.png, ... (row order). `dir` is created if missing.
///
///   ddpm::io::write_image_pngs("pngs", samples, 1, 28, 28);  // pngs/000000.png ...
template <class Derived>
void write_image_pngs(const std::filesystem::path& dir, const Eigen::DenseBase<Derived>& batch,
                      int channels, int height, int width) {
  std::filesystem::create_directories(dir);
  for (Index i = 0; i < batch.rows(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "%06lld.png", static_cast<long long>(i));
    write_png(dir / name,
              tile_images(batch.row(i), channels, height, width, {.columns = 1, .padding = 0}));
  }
}

/// How render_curve draws a curve.
struct CurveOptions {
  int width = 640;      ///< picture width, pixels
  int height = 360;     ///< picture height, pixels
  bool log_y = false;   ///< log10 y axis; values <= 0 are then not drawn
  Index smoothing = 1;  ///< centered moving-average window; > 1 also draws the raw curve faintly
  std::string title;    ///< above the plot
  std::string x_label = "step";  ///< below the x axis
  double x_start = 0;  ///< value i is drawn at x = x_start + i * x_step (e.g. logging interval)
  double x_step = 1;   ///< x spacing of consecutive values
  Rgb color = colors::ink;  ///< the curve's color
};

/// The centered moving average of `values` over `window` points (window 1 or 0: a copy). Near the
/// ends the window shrinks; non-finite values are left out of each mean (NaN if none is left).
[[nodiscard]] inline std::vector<double> moving_average(std::span<const double> values,
                                                        Index window) {
  ddpm::detail::require(window >= 0, "window", window, ">= 0");
  std::vector<double> out(values.begin(), values.end());
  if (window <= 1) return out;
  const auto n = static_cast<Index>(values.size());
  // Prefix sums of finite values and of their count make each mean O(1).
  std::vector<double> sum(values.size() + 1, 0.0);
  std::vector<Index> count(values.size() + 1, 0);
  for (Index i = 0; i < n; ++i) {
    const double v = values[static_cast<std::size_t>(i)];
    const bool finite = std::isfinite(v);
    sum[static_cast<std::size_t>(i) + 1] = sum[static_cast<std::size_t>(i)] + (finite ? v : 0.0);
    count[static_cast<std::size_t>(i) + 1] = count[static_cast<std::size_t>(i)] + (finite ? 1 : 0);
  }
  const Index before = (window - 1) / 2, after = window - 1 - before;
  for (Index i = 0; i < n; ++i) {
    const auto lo = static_cast<std::size_t>(std::max<Index>(0, i - before));
    const auto hi = static_cast<std::size_t>(std::min<Index>(n, i + after + 1));
    const Index k = count[hi] - count[lo];
    out[static_cast<std::size_t>(i)] =
        k > 0 ? (sum[hi] - sum[lo]) / static_cast<double>(k) : std::nan("");
  }
  return out;
}

namespace detail {

/// An axis tick: where it goes (in drawn units, log10 on a log axis) and its label.
struct Tick {
  double at = 0;
  std::string text;
};

/// A short tick label for `value`, a multiple of `resolution` (a power of ten): no more digits than
/// that needs, plain integers below a million, exponents as "1e-5".
inline std::string tick_label(double value, double resolution) {
  if (std::abs(value) < resolution * 1e-6) return "0";
  char buffer[48];
  if (resolution >= 1 && std::abs(value) < 1e6) {
    std::snprintf(buffer, sizeof(buffer), "%.0f", value);
    return buffer;
  }
  const int digits = std::clamp(static_cast<int>(std::floor(std::log10(std::abs(value))) -
                                                 std::round(std::log10(resolution))) +
                                    1,
                                1, 10);
  std::snprintf(buffer, sizeof(buffer), "%.*g", digits, value);
  std::string text = buffer;
  const std::size_t e = text.find('e');
  if (e != std::string::npos) {
    std::string exponent = text.substr(e + 1);
    const bool negative = exponent.front() == '-';
    exponent.erase(0, exponent.find_first_not_of("+-0"));
    text = text.substr(0, e) + "e" + (negative ? "-" : "") + (exponent.empty() ? "0" : exponent);
  }
  return text;
}

/// Ticks on [lo, hi] at multiples of 1, 2 or 5 times a power of ten, about `target` of them.
inline std::vector<Tick> linear_ticks(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(target, 1);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / power;
  const double step = (fraction < 1.5 ? 1 : fraction < 3.5 ? 2 : fraction < 7.5 ? 5 : 10) * power;
  std::vector<Tick> ticks;
  for (double k = std::ceil(lo / step); k * step <= hi + step * 1e-9 && ticks.size() < 64; k += 1) {
    const double value = std::abs(k) < 0.5 ? 0.0 : k * step;
    ticks.push_back({value, tick_label(value, step >= 10 * power ? 10 * power : power)});
  }
  return ticks;
}

/// Ticks for a log axis spanning [lo, hi] in log10 units, labelled with the values themselves.
inline std::vector<Tick> log_ticks(double lo, double hi) {
  for (const std::vector<double>& mantissas :
       {std::vector<double>{1}, std::vector<double>{1, 2, 5}, std::vector<double>{1, 2, 3, 5, 7}}) {
    std::vector<Tick> ticks;
    for (double decade = std::floor(lo); decade <= std::ceil(hi) && ticks.size() < 64; ++decade) {
      for (const double m : mantissas) {
        const double at = decade + std::log10(m);
        const double power = std::pow(10.0, decade);
        if (at >= lo - 1e-9 && at <= hi + 1e-9) ticks.push_back({at, tick_label(m * power, power)});
      }
    }
    if (ticks.size() >= 3 || (mantissas.size() == 5 && ticks.size() >= 2)) return ticks;
  }
  // Less than a factor of about two: evenly spaced values, placed on the log axis.
  std::vector<Tick> ticks = linear_ticks(std::pow(10.0, lo), std::pow(10.0, hi), 4);
  std::erase_if(ticks, [](const Tick& t) { return !(t.at > 0); });
  for (Tick& t : ticks) t.at = std::log10(t.at);
  return ticks;
}

}  // namespace detail

/// A line plot of `values` (e.g. the training loss per step) with labelled axis ticks, optionally
/// smoothed (the raw curve then shows faintly behind) and with a log y axis. Non-finite values,
/// values beyond +-1e300 and values <= 0 on a log axis leave gaps. Axis ranges fit the drawn
/// values.
///
///   ddpm::io::write_png("loss.png", ddpm::io::render_curve(losses, {.log_y = true, .smoothing =
///   51}));
[[nodiscard]] inline Image render_curve(std::span<const double> values,
                                        const CurveOptions& options = {}) {
  ddpm::detail::require(!values.empty(), "values.size()", values.size(), ">= 1");
  ddpm::detail::require(options.width >= 200 && options.width <= kMaxImageSide, "options.width",
                        options.width, "200..16384");
  ddpm::detail::require(options.height >= 120 && options.height <= kMaxImageSide, "options.height",
                        options.height, "120..16384");
  ddpm::detail::require(options.smoothing >= 0, "options.smoothing", options.smoothing, ">= 0");
  ddpm::detail::require(
      std::isfinite(options.x_start) && std::isfinite(options.x_step) && options.x_step > 0,
      "options.x_step", options.x_step, "finite and > 0 (with a finite x_start)");
  const bool smoothed = options.smoothing > 1;
  const std::vector<double> smooth = moving_average(values, options.smoothing);
  // y as drawn (log10 on a log axis); NaN marks a gap.
  const auto transform = [&](double v) {
    if (options.log_y) return v > 0 && std::isfinite(v) ? std::log10(v) : std::nan("");
    return std::abs(v) <= 1e300 ? v : std::nan("");  // beyond: the range would overflow
  };
  double y_lo = std::numeric_limits<double>::infinity();
  double y_hi = -y_lo;
  for (const double v : values) {
    const double y = transform(v);
    if (std::isfinite(y)) {
      y_lo = std::min(y_lo, y);
      y_hi = std::max(y_hi, y);
    }
  }
  const bool any = std::isfinite(y_lo);
  if (!any) {
    y_lo = 0;
    y_hi = 1;
  }
  // A flat curve gets a range around it; otherwise a little room keeps extremes off the frame.
  const double pad = y_hi - y_lo < 1e-9 * std::max(1.0, std::abs(y_hi))
                         ? (options.log_y ? 0.5 : std::max(std::abs(y_hi) * 0.1, 0.5))
                         : 0.05 * (y_hi - y_lo);
  y_lo -= pad;
  y_hi += pad;
  const double x_lo = options.x_start;
  const double x_hi =
      x_lo + options.x_step * static_cast<double>(std::max<std::size_t>(values.size(), 2) - 1);
  ddpm::detail::require(
      std::isfinite(x_hi) && x_hi > x_lo && std::isfinite(x_hi - x_lo), "options.x_start, x_step",
      ddpm::detail::to_text(options.x_start) + ", " + ddpm::detail::to_text(options.x_step),
      "an x range that is finite and wider than rounding");

  const std::vector<detail::Tick> y_ticks =
      options.log_y ? detail::log_ticks(y_lo, y_hi) : detail::linear_ticks(y_lo, y_hi, 5);
  const std::vector<detail::Tick> x_ticks = detail::linear_ticks(x_lo, x_hi, 6);

  constexpr int kTick = 1;   // font scale of tick labels
  constexpr int kTitle = 2;  // font scale of the title
  int label_width = 0;
  for (const detail::Tick& t : y_ticks) {
    label_width = std::max(label_width, Canvas::text_width(t.text, kTick));
  }
  const int left = label_width + 12;
  const int right = 16;
  const int top = options.title.empty() ? 12 : detail::text_band(kTitle) + 8;
  const int bottom = 2 * detail::text_band(kTick) + 10;
  const int plot_w = options.width - left - right, plot_h = options.height - top - bottom;
  ddpm::detail::require(plot_w >= 32 && plot_h >= 32, "options.width x height",
                        std::to_string(options.width) + "x" + std::to_string(options.height),
                        "room for a plot area of at least 32 x 32 pixels besides labels");
  const auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  const auto py = [&](double y) { return top + (y_hi - y) / (y_hi - y_lo) * plot_h; };

  Canvas canvas(options.width, options.height);
  for (const detail::Tick& t : y_ticks) {
    const int v = static_cast<int>(py(t.at));
    canvas.fill_rect(left, v, left + plot_w, v + 1, colors::light_gray);
    canvas.fill_rect(left - 4, v, left, v + 1, colors::gray);
    canvas.text(left - 6 - Canvas::text_width(t.text, kTick), v - Canvas::text_height(kTick) / 2,
                t.text, colors::black, kTick);
  }
  for (const detail::Tick& t : x_ticks) {
    const int u = static_cast<int>(px(t.at));
    canvas.fill_rect(u, top, u + 1, top + plot_h, colors::light_gray);
    canvas.fill_rect(u, top + plot_h, u + 1, top + plot_h + 4, colors::gray);
    canvas.text(u - Canvas::text_width(t.text, kTick) / 2, top + plot_h + 7, t.text, colors::black,
                kTick);
  }
  canvas.rect(left, top, left + plot_w + 1, top + plot_h + 1, colors::gray);
  if (!options.title.empty()) {
    detail::centered_text(canvas, options.title, options.width / 2, 6, options.width - 4, kTitle);
  }
  std::string x_label = options.x_label;
  if (options.log_y) x_label += "   (log y)";
  detail::centered_text(canvas, x_label, left + plot_w / 2,
                        top + plot_h + 7 + detail::text_band(kTick), options.width - 4, kTick);
  if (!any) {
    detail::centered_text(canvas, "no finite values", left + plot_w / 2, top + plot_h / 2, plot_w,
                          kTitle);
  }

  const auto draw = [&](const std::vector<double>& series, double alpha, double thickness) {
    for (std::size_t i = 0; i < series.size(); ++i) {
      const double y = transform(series[i]);
      if (!std::isfinite(y)) continue;
      const double u = px(x_lo + options.x_step * static_cast<double>(i)), v = py(y);
      const double y_next = i + 1 < series.size() ? transform(series[i + 1]) : std::nan("");
      const bool y_prev_ok = i > 0 && std::isfinite(transform(series[i - 1]));
      if (std::isfinite(y_next)) {
        canvas.line(u, v, px(x_lo + options.x_step * static_cast<double>(i + 1)), py(y_next),
                    options.color, thickness, alpha);
      } else if (!y_prev_ok) {
        canvas.disk(u, v, thickness, options.color, alpha);  // an isolated point
      }
    }
  };
  if (smoothed) {
    draw(std::vector<double>(values.begin(), values.end()), 0.25, 1.0);
    draw(smooth, 1.0, 1.6);
  } else {
    draw(smooth, 1.0, 1.3);
  }
  return std::move(canvas).image();
}

}  // namespace ddpm::io
