// SPDX-License-Identifier: MIT
// Synthetic 3D shapes (spheres, tori, boxes, tables, mugs, ...) as point clouds sampled uniformly
// by surface area, reproducibly, and the one per-shape normalization that point-cloud models use.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::data {

/// The synthetic shape families. Each is a surface (no interior points) with random proportions
/// and a random pose; `Shape::size` documents each family's proportions.
enum class ShapeFamily {
  sphere,     ///< "sphere"
  ellipsoid,  ///< "ellipsoid"
  torus,      ///< "torus"
  box,        ///< "box": its 6 faces
  cylinder,   ///< "cylinder": side and 2 caps
  cone,       ///< "cone": side and base
  table,      ///< "table": a box top on 4 box legs (the surface of their union)
  mug,        ///< "mug": open-top cylinder side, bottom, and a half-torus handle
};

}  // namespace ddpm::data

namespace ddpm {
/// The shape family names of command lines and checkpoints.
template <>
struct EnumTable<data::ShapeFamily> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "shape family";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<data::ShapeFamily>, 8> names = {
      {{data::ShapeFamily::sphere, "sphere"},
       {data::ShapeFamily::ellipsoid, "ellipsoid"},
       {data::ShapeFamily::torus, "torus"},
       {data::ShapeFamily::box, "box"},
       {data::ShapeFamily::cylinder, "cylinder"},
       {data::ShapeFamily::cone, "cone"},
       {data::ShapeFamily::table, "table"},
       {data::ShapeFamily::mug, "mug"}}};
};
}  // namespace ddpm

namespace ddpm::data {

/// One shape: its family, proportions and pose. Coordinates are y-up (ShapeNet's convention, so
/// that users' ShapeNet clouds and these shapes look alike in viz/point_render.hpp).
///
/// `size` by family, in the shape's own frame (lengths; the scale is irrelevant after
/// normalization, only ratios matter):
///   sphere    {radius}
///   ellipsoid {semi-axis x, semi-axis y, semi-axis z}
///   torus     {major radius R, minor (tube) radius r}, axis y, r < R
///   box       {half side x, half side y, half side z}
///   cylinder  {radius, half height}, axis y
///   cone      {base radius, height}, axis y, base at y = -height/2, apex up
///   table     {top half width (x), top half depth (z), top thickness, leg side, leg length}: legs
///             stand on y = 0, their centers at (±(half width − leg side), ±(half depth − leg
///             side)), so each leg's outer faces are inset by half a leg side
///   mug       {radius, height, handle radius, handle tube radius}: the cup is centered at the
///             origin with axis y; the handle is the half of a torus around the z axis centered at
///             (radius, 0, 0) that lies outside the cup (x >= radius)
///
/// The surface of the posed shape is `rotation` applied to the surface in its own frame.
struct Shape {
  ShapeFamily family = ShapeFamily::sphere;  ///< which kind of shape
  std::array<double, 5> size{1, 0, 0, 0,
                             0};  ///< the family's proportions, as listed above (unused entries 0)
  Eigen::Matrix3d rotation =
      Eigen::Matrix3d::Identity();  ///< the pose: the shape's own frame to the world
};

/// Points per cloud in Luo & Hu 2021 (and the usual ShapeNet point-cloud benchmarks).
inline constexpr Index kDefaultCloudPoints = 2048;

/// The largest tilt of a random pose away from upright (see random_shape).
inline constexpr double kMaxTiltDegrees = 10.0;

/// The kinds of surface pieces every shape is a union of.
enum class PieceKind {
  ellipsoid,  ///< semi-axes a, b, c along x, y, z
  rect,   ///< a rectangle normal to `axis`, half sides a along axis+1 and b along axis+2 (mod 3)
  disk,   ///< a disk normal to `axis`, radius a
  tube,   ///< a cylinder side around `axis`, radius a, half length b
  cone,   ///< a cone side around `axis`: base radius a at `center`, apex at center + b·e_axis
  torus,  ///< a torus around `axis`, radii a (major) and b (minor), angles phi_lo..phi_hi
};

/// One piece of a shape's surface, in the shape's own frame. Angles of tubes, disks and tori run
/// from e_{axis+1} towards e_{axis+2} (indices mod 3).
struct SurfacePiece {
  PieceKind kind = PieceKind::rect;  ///< what the piece is (the meaning of a, b, c below)
  int axis = 1;  ///< 0, 1 or 2: the x, y or z axis the piece is normal to or around
  Eigen::Vector3d center = Eigen::Vector3d::Zero();  ///< in the shape's own frame
  double a = 0;                                      ///< first size parameter (see PieceKind)
  double b = 0;                                      ///< second size parameter (see PieceKind)
  double c = 0;                                      ///< third size parameter (ellipsoid only)
  double phi_lo = 0;                                 ///< start angle (tori), radians
  double phi_hi = 2 * std::numbers::pi;              ///< end angle (tori), radians
  double area = 0;  ///< exact, except an ellipsoid's (Thomsen's formula, within 1.1 %; it is only
                    ///< ever a piece on its own, so piece choice does not use it)
};

/// A shape's normalization: normalized = (point − shift) / scale.
struct CloudNormalization {
  std::array<double, 3> shift{};  ///< subtracted from each point first
  double scale = 1;               ///< then divided into each point
};

namespace detail {

// RNG addresses (stream::data): a shape's proportions and pose come from (sample = shape index,
// step 0), its point j from (shape index, step 1 + j); each draw takes the next index k.
inline constexpr std::uint32_t kShapeStep = 0;
inline constexpr std::uint32_t kPoseK = 8;
inline constexpr Index kMaxShapeSamples = Index{1} << 32;
inline constexpr Index kMaxShapePoints = (Index{1} << 32) - 1;
// Rejection sampling (ellipsoid, torus) accepts at least a third of its candidates for the shapes
// drawn here; the cap only bounds the loop for absurd hand-made shapes.
inline constexpr int kMaxRejections = 1 << 20;

/// Consecutive uniform draws of one RNG address: draw k of (stream::data, sample, step).
class Draws {
 public:
  Draws(const CounterRng& rng, std::uint32_t sample, std::uint32_t step,
        std::uint32_t first_k = 0) noexcept
      : rng_(rng), sample_(sample), step_(step), k_(first_k) {}

  double uniform() noexcept { return rng_.uniform(stream::data, sample_, step_, k_++); }
  double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }
  /// A standard normal (Box-Muller from two uniforms).
  double normal() noexcept {
    const double u1 = 1.0 - uniform();  // in (0, 1], so the log is finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  const CounterRng& rng_;
  std::uint32_t sample_;
  std::uint32_t step_;
  std::uint32_t k_;
};

inline Eigen::Vector3d unit(int axis) { return Eigen::Vector3d::Unit(axis); }

/// Rotation by `angle` about the unit vector `axis` (Rodrigues).
inline Eigen::Matrix3d axis_angle(const Eigen::Vector3d& axis, double angle) {
  Eigen::Matrix3d k;
  k << 0, -axis.z(), axis.y(), axis.z(), 0, -axis.x(), -axis.y(), axis.x(), 0;
  const Eigen::Matrix3d k2 = k * k;
  const Eigen::Matrix3d r =
      Eigen::Matrix3d::Identity() + std::sin(angle) * k + (1.0 - std::cos(angle)) * k2;
  return r;
}

/// Knud Thomsen's approximation of an ellipsoid's area (exact for a sphere).
inline double ellipsoid_area(double a, double b, double c) {
  constexpr double p = 1.6075;
  const double mean = (std::pow(a * b, p) + std::pow(a * c, p) + std::pow(b * c, p)) / 3.0;
  return 4.0 * std::numbers::pi * std::pow(mean, 1.0 / p);
}

inline SurfacePiece make_piece(PieceKind kind, int axis, const Eigen::Vector3d& center, double a,
                               double b = 0, double c = 0) {
  SurfacePiece p;
  p.kind = kind;
  p.axis = axis;
  p.center = center;
  p.a = a;
  p.b = b;
  p.c = c;
  constexpr double pi = std::numbers::pi;
  switch (kind) {
    case PieceKind::ellipsoid:
      p.area = ellipsoid_area(a, b, c);
      break;
    case PieceKind::rect:
      p.area = 4.0 * a * b;
      break;
    case PieceKind::disk:
      p.area = pi * a * a;
      break;
    case PieceKind::tube:
      p.area = 2.0 * pi * a * 2.0 * b;
      break;
    case PieceKind::cone:
      p.area = pi * a * std::hypot(a, b);
      break;
    case PieceKind::torus:
      p.area = 2.0 * pi * a * b * (p.phi_hi - p.phi_lo);
      break;
  }
  return p;
}

/// The six faces of the box with the given center and half sides.
inline void add_box_faces(std::vector<SurfacePiece>& pieces, const Eigen::Vector3d& center,
                          const Eigen::Vector3d& half, bool top, bool bottom) {
  for (int axis = 0; axis < 3; ++axis) {
    for (const double side : {-1.0, 1.0}) {
      if (axis == 1 && ((side > 0 && !top) || (side < 0 && !bottom))) continue;
      const Eigen::Vector3d face = center + side * half(axis) * unit(axis);
      pieces.push_back(
          make_piece(PieceKind::rect, axis, face, half((axis + 1) % 3), half((axis + 2) % 3)));
    }
  }
}

/// The table's pieces: top face and sides of the top, its underside less the legs' footprints (a
/// 5 x 5 grid of rectangles without the 4 footprint cells), and each leg's 4 sides and foot.
inline void add_table(std::vector<SurfacePiece>& pieces, const std::array<double, 5>& s) {
  const double hx = s[0], hz = s[1], thickness = s[2], leg = s[3], length = s[4];
  const Eigen::Vector3d top_center(0, length + thickness / 2, 0);
  add_box_faces(pieces, top_center, Eigen::Vector3d(hx, thickness / 2, hz), true, false);
  const double cx = hx - leg, cz = hz - leg, h = leg / 2;
  const std::array<double, 6> xs = {-hx, -cx - h, -cx + h, cx - h, cx + h, hx};
  const std::array<double, 6> zs = {-hz, -cz - h, -cz + h, cz - h, cz + h, hz};
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 5; ++j) {
      if (i % 2 == 1 && j % 2 == 1) continue;  // a leg's footprint
      const Eigen::Vector3d center((xs[i] + xs[i + 1]) / 2, length, (zs[j] + zs[j + 1]) / 2);
      // A rect normal to y has half side a along z and b along x.
      pieces.push_back(
          make_piece(PieceKind::rect, 1, center, (zs[j + 1] - zs[j]) / 2, (xs[i + 1] - xs[i]) / 2));
    }
  }
  for (const double x : {-cx, cx}) {
    for (const double z : {-cz, cz}) {
      add_box_faces(pieces, Eigen::Vector3d(x, length / 2, z), Eigen::Vector3d(h, length / 2, h),
                    false, true);
    }
  }
}

}  // namespace detail

/// Throws InvalidArgument unless `shape` has a valid family, finite positive sizes and the
/// family's constraints (torus r < R; table legs fit under the top, mug handle within the height).
inline void check_shape(const Shape& shape) {
  const auto family = static_cast<int>(shape.family);
  ddpm::detail::require(
      family >= 0 && family < static_cast<int>(EnumTable<ShapeFamily>::names.size()),
      "shape.family", family, "a ShapeFamily enumerator");
  constexpr std::array<int, 8> kUsed = {1, 3, 2, 3, 2, 2, 5, 4};
  for (int i = 0; i < kUsed[static_cast<std::size_t>(family)]; ++i) {
    const double v = shape.size[static_cast<std::size_t>(i)];
    ddpm::detail::require(std::isfinite(v) && v > 0, "shape.size[" + std::to_string(i) + "]", v,
                          "finite and > 0");
  }
  ddpm::detail::require(shape.rotation.allFinite(), "shape.rotation", "non-finite", "a rotation");
  const std::array<double, 5>& s = shape.size;
  if (shape.family == ShapeFamily::torus) {
    ddpm::detail::require(s[1] < s[0], "shape.size[1]", s[1],
                          "a tube radius below the major radius");
  } else if (shape.family == ShapeFamily::table) {
    ddpm::detail::require(s[0] > 1.5 * s[3] && s[1] > 1.5 * s[3], "shape.size[3]", s[3],
                          "a leg side below 2/3 of the top's half width and half depth");
  } else if (shape.family == ShapeFamily::mug) {
    ddpm::detail::require(s[3] < s[2] && s[2] + s[3] <= s[1] / 2, "shape.size[2..3]",
                          std::to_string(s[2]) + ", " + std::to_string(s[3]),
                          "a handle tube thinner than the handle radius, and radius + tube "
                          "within half the mug's height");
  }
}

/// The pieces of `shape`'s surface in its own frame (before `rotation`). Sampling picks a piece
/// with probability proportional to its area, then a point uniformly by area on it.
[[nodiscard]] inline std::vector<SurfacePiece> shape_pieces(const Shape& shape) {
  check_shape(shape);
  using detail::make_piece;
  const std::array<double, 5>& s = shape.size;
  const Eigen::Vector3d origin = Eigen::Vector3d::Zero();
  std::vector<SurfacePiece> pieces;
  switch (shape.family) {
    case ShapeFamily::sphere:
      pieces.push_back(make_piece(PieceKind::ellipsoid, 1, origin, s[0], s[0], s[0]));
      break;
    case ShapeFamily::ellipsoid:
      pieces.push_back(make_piece(PieceKind::ellipsoid, 1, origin, s[0], s[1], s[2]));
      break;
    case ShapeFamily::torus:
      pieces.push_back(make_piece(PieceKind::torus, 1, origin, s[0], s[1]));
      break;
    case ShapeFamily::box:
      detail::add_box_faces(pieces, origin, Eigen::Vector3d(s[0], s[1], s[2]), true, true);
      break;
    case ShapeFamily::cylinder:
      pieces.push_back(make_piece(PieceKind::tube, 1, origin, s[0], s[1]));
      pieces.push_back(make_piece(PieceKind::disk, 1, Eigen::Vector3d(0, s[1], 0), s[0]));
      pieces.push_back(make_piece(PieceKind::disk, 1, Eigen::Vector3d(0, -s[1], 0), s[0]));
      break;
    case ShapeFamily::cone:
      pieces.push_back(
          make_piece(PieceKind::cone, 1, Eigen::Vector3d(0, -s[1] / 2, 0), s[0], s[1]));
      pieces.push_back(make_piece(PieceKind::disk, 1, Eigen::Vector3d(0, -s[1] / 2, 0), s[0]));
      break;
    case ShapeFamily::table:
      detail::add_table(pieces, s);
      break;
    case ShapeFamily::mug: {
      pieces.push_back(make_piece(PieceKind::tube, 1, origin, s[0], s[1] / 2));
      pieces.push_back(make_piece(PieceKind::disk, 1, Eigen::Vector3d(0, -s[1] / 2, 0), s[0]));
      SurfacePiece handle =
          make_piece(PieceKind::torus, 2, Eigen::Vector3d(s[0], 0, 0), s[2], s[3]);
      handle.phi_lo = -std::numbers::pi / 2;  // from -y through +x to +y: outside the cup
      handle.phi_hi = std::numbers::pi / 2;
      handle.area = 2.0 * std::numbers::pi * handle.a * handle.b * std::numbers::pi;
      pieces.push_back(handle);
      break;
    }
  }
  return pieces;
}

/// The total surface area of `shape` (sum of its pieces' areas).
[[nodiscard]] inline double surface_area(const Shape& shape) {
  double total = 0;
  for (const SurfacePiece& piece : shape_pieces(shape)) total += piece.area;
  return total;
}

/// A shape of `family` with random proportions and a random pose, a pure function of (seed, index)
/// (counter RNG stream::data, sample `index`, step 0). Proportions are uniform in these ranges:
/// ellipsoid semi-axes 0.5..1.5; torus R = 1, r 0.15..0.5; box half sides 0.25..1; cylinder radius
/// 0.3..0.8, half height 0.3..1; cone radius 0.4..0.8, height 0.6..1.5; table half width 0.6..1,
/// half depth 0.4..0.8, thickness 0.04..0.1, leg side 0.06..0.12, leg length 0.5..0.9; mug radius
/// 0.3..0.45, height 0.7..1.1, handle radius 0.2..0.3 of the height, tube 0.03..0.06.
///
/// The pose is upright, not uniform on SO(3): a uniform yaw about the vertical (y) axis, then a
/// tilt by an angle uniform in [0, 10°] about a horizontal axis of uniform direction. Luo & Hu
/// train on ShapeNet, whose objects stand upright; keeping up up keeps "table" and "mug" meaningful
/// and the pictures readable, the yaw makes the model learn orientation, and the tilt keeps faces
/// off the coordinate planes. Requires 0 <= index < 2^32.
[[nodiscard]] inline Shape random_shape(ShapeFamily family, std::uint64_t seed, Index index) {
  ddpm::detail::require(index >= 0 && index < detail::kMaxShapeSamples, "index", index,
                        "0 <= index < 2^32 (the counter RNG's sample index range)");
  const CounterRng rng(seed);
  detail::Draws d(rng, static_cast<std::uint32_t>(index), detail::kShapeStep);
  Shape shape;
  shape.family = family;
  std::array<double, 5>& s = shape.size;
  switch (family) {
    case ShapeFamily::sphere:
      s = {1, 0, 0, 0, 0};
      break;
    case ShapeFamily::ellipsoid:
      for (int i = 0; i < 3; ++i) s[static_cast<std::size_t>(i)] = d.uniform(0.5, 1.5);
      break;
    case ShapeFamily::torus:
      s = {1, d.uniform(0.15, 0.5), 0, 0, 0};
      break;
    case ShapeFamily::box:
      for (int i = 0; i < 3; ++i) s[static_cast<std::size_t>(i)] = d.uniform(0.25, 1.0);
      break;
    case ShapeFamily::cylinder:
      s[0] = d.uniform(0.3, 0.8);
      s[1] = d.uniform(0.3, 1.0);
      break;
    case ShapeFamily::cone:
      s[0] = d.uniform(0.4, 0.8);
      s[1] = d.uniform(0.6, 1.5);
      break;
    case ShapeFamily::table:
      s[0] = d.uniform(0.6, 1.0);
      s[1] = d.uniform(0.4, 0.8);
      s[2] = d.uniform(0.04, 0.1);
      s[3] = d.uniform(0.06, 0.12);
      s[4] = d.uniform(0.5, 0.9);
      break;
    case ShapeFamily::mug:
      s[0] = d.uniform(0.3, 0.45);
      s[1] = d.uniform(0.7, 1.1);
      s[2] = d.uniform(0.2, 0.3) * s[1];
      s[3] = d.uniform(0.03, 0.06);
      break;
  }
  // The pose's draws start after the proportions' (at most 5), at the same k for every family.
  detail::Draws pose(rng, static_cast<std::uint32_t>(index), detail::kShapeStep, detail::kPoseK);
  const double yaw = 2.0 * std::numbers::pi * pose.uniform();
  const double tilt_direction = 2.0 * std::numbers::pi * pose.uniform();
  const double tilt = kMaxTiltDegrees * std::numbers::pi / 180.0 * pose.uniform();
  const Eigen::Vector3d tilt_axis(std::cos(tilt_direction), 0.0, std::sin(tilt_direction));
  shape.rotation = detail::axis_angle(tilt_axis, tilt) * detail::axis_angle(detail::unit(1), yaw);
  check_shape(shape);
  return shape;
}

namespace detail {

/// A point uniform by area on `piece`, from the draws `d`.
inline Eigen::Vector3d piece_point(const SurfacePiece& piece, Draws& d) {
  const Eigen::Vector3d n = unit(piece.axis);
  const Eigen::Vector3d e1 = unit((piece.axis + 1) % 3);
  const Eigen::Vector3d e2 = unit((piece.axis + 2) % 3);
  constexpr double two_pi = 2.0 * std::numbers::pi;
  switch (piece.kind) {
    case PieceKind::ellipsoid: {
      // A uniform direction (normals), mapped onto the ellipsoid, accepted with probability
      // proportional to the map's area factor |(bc u_x, ac u_y, ab u_z)|.
      const double a = piece.a, b = piece.b, c = piece.c;
      const double g_max = std::max({b * c, a * c, a * b});
      Eigen::Vector3d u = Eigen::Vector3d::UnitY();
      for (int attempt = 0; attempt < kMaxRejections; ++attempt) {
        Eigen::Vector3d z(d.normal(), d.normal(), d.normal());
        const double norm = z.norm();
        if (!(norm > 0)) continue;
        u = z / norm;
        const double g =
            std::sqrt((b * c * u.x()) * (b * c * u.x()) + (a * c * u.y()) * (a * c * u.y()) +
                      (a * b * u.z()) * (a * b * u.z()));
        if (d.uniform() * g_max < g) break;
      }
      return piece.center + Eigen::Vector3d(a * u.x(), b * u.y(), c * u.z());
    }
    case PieceKind::rect: {
      const double s = 2.0 * d.uniform() - 1.0, t = 2.0 * d.uniform() - 1.0;
      return piece.center + s * piece.a * e1 + t * piece.b * e2;
    }
    case PieceKind::disk: {
      const double rho = piece.a * std::sqrt(d.uniform());
      const double phi = two_pi * d.uniform();
      return piece.center + rho * std::cos(phi) * e1 + rho * std::sin(phi) * e2;
    }
    case PieceKind::tube: {
      const double phi = two_pi * d.uniform();
      const double h = (2.0 * d.uniform() - 1.0) * piece.b;
      return piece.center + piece.a * (std::cos(phi) * e1 + std::sin(phi) * e2) + h * n;
    }
    case PieceKind::cone: {
      // The circumference at distance t (as a fraction) from the apex grows like t: t = sqrt(u).
      const double t = std::sqrt(d.uniform());
      const double phi = two_pi * d.uniform();
      return piece.center + piece.b * (1.0 - t) * n +
             piece.a * t * (std::cos(phi) * e1 + std::sin(phi) * e2);
    }
    case PieceKind::torus: {
      // The tube angle theta has area element (R + r cos theta): rejection against R + r.
      const double big = piece.a, small = piece.b;
      double theta = 0;
      for (int attempt = 0; attempt < kMaxRejections; ++attempt) {
        theta = two_pi * d.uniform();
        if (d.uniform() * (big + small) < big + small * std::cos(theta)) break;
      }
      const double phi = piece.phi_lo + (piece.phi_hi - piece.phi_lo) * d.uniform();
      const double rho = big + small * std::cos(theta);
      return piece.center + rho * (std::cos(phi) * e1 + std::sin(phi) * e2) +
             small * std::sin(theta) * n;
    }
  }
  return piece.center;
}

/// Cumulative areas of `pieces`, for choosing one with probability proportional to its area.
inline std::vector<double> cumulative_areas(const std::vector<SurfacePiece>& pieces) {
  std::vector<double> cumulative(pieces.size());
  double total = 0;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    total += pieces[i].area;
    cumulative[i] = total;
  }
  return cumulative;
}

/// Point j of a shape (posed, not normalized): draws (stream::data, sample, step 1 + j).
inline Eigen::Vector3d surface_point(const Shape& shape, const std::vector<SurfacePiece>& pieces,
                                     const std::vector<double>& cumulative, const CounterRng& rng,
                                     std::uint32_t sample, Index j) {
  Draws d(rng, sample, static_cast<std::uint32_t>(j + 1));
  const double u = d.uniform() * cumulative.back();
  const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
  const auto piece = static_cast<std::size_t>(
      std::min<std::ptrdiff_t>(it - cumulative.begin(), std::ssize(cumulative) - 1));
  const Eigen::Vector3d local = piece_point(pieces[piece], d);
  const Eigen::Vector3d posed = shape.rotation * local;
  return posed;
}

inline void require_points(Index points) {
  ddpm::detail::require(points >= 2 && points <= kMaxShapePoints, "points", points,
                        "2 <= points < 2^32");
}

}  // namespace detail

/// `points` points uniform by area on `shape`'s posed surface, not normalized (points x 3). Point
/// j uses only the draws of (seed, stream::data, sample `index`, step 1 + j), so any subset of the
/// points of a shape is the same whatever else is drawn, for any thread count. Requires
/// 0 <= index < 2^32 and 2 <= points < 2^32.
[[nodiscard]] inline Batch<double> sample_surface(const Shape& shape, Index points,
                                                  std::uint64_t seed, Index index) {
  ddpm::detail::require(index >= 0 && index < detail::kMaxShapeSamples, "index", index,
                        "0 <= index < 2^32 (the counter RNG's sample index range)");
  detail::require_points(points);
  const std::vector<SurfacePiece> pieces = shape_pieces(shape);
  const std::vector<double> cumulative = detail::cumulative_areas(pieces);
  const CounterRng rng(seed);
  Batch<double> out(points, 3);
  ddpm::detail::parallel_for(points, 64, [&](Index j) {
    out.row(j) =
        detail::surface_point(shape, pieces, cumulative, rng, static_cast<std::uint32_t>(index), j)
            .transpose();
  });
  return out;
}

namespace detail {

inline void require_clouds_layout(Index rows, Index cols, Index points) {
  ddpm::detail::require(points >= 1, "points", points, ">= 1");
  ddpm::detail::require_shape(cols == 3 && rows % points == 0, "clouds", rows, cols, [&] {
    return "(S * " + std::to_string(points) + ") x 3: S clouds of " + std::to_string(points) +
           " points, cloud s in rows [s * points, (s + 1) * points)";
  });
}

}  // namespace detail

/// Normalizes each cloud of `clouds` (S·points x 3, cloud s in rows [s·points, (s+1)·points)) in
/// place and returns each cloud's shift and scale: the mean of its points is subtracted, then it is
/// divided by the standard deviation of its 3·points centered coordinates together (population,
/// divisor 3·points), so each cloud has mean 0 and root-mean-square coordinate 1. This is Luo &
/// Hu's "shape_unit" up to a detail: their code takes torch's unbiased std of the raw coordinates
/// around their grand mean; here the std is taken after centering each axis, so the result has
/// exactly unit coordinate std whatever the cloud's position. Computed in double. Throws
/// InvalidArgument for a cloud whose points are all equal or not all finite.
template <class Real>
std::vector<CloudNormalization> normalize_clouds(Batch<Real>& clouds, Index points) {
  detail::require_clouds_layout(clouds.rows(), clouds.cols(), points);
  const Index shapes = clouds.rows() / points;
  std::vector<CloudNormalization> result(static_cast<std::size_t>(shapes));
  ddpm::detail::parallel_for(shapes, 6 * points, [&](Index s) {
    CloudNormalization& norm = result[static_cast<std::size_t>(s)];
    std::array<double, 3> sum{};
    for (Index i = s * points; i < (s + 1) * points; ++i) {
      for (int c = 0; c < 3; ++c) sum[c] += static_cast<double>(clouds(i, c));
    }
    for (int c = 0; c < 3; ++c) norm.shift[c] = sum[c] / static_cast<double>(points);
    double squares = 0;
    for (Index i = s * points; i < (s + 1) * points; ++i) {
      for (int c = 0; c < 3; ++c) {
        const double v = static_cast<double>(clouds(i, c)) - norm.shift[c];
        squares += v * v;
      }
    }
    norm.scale = std::sqrt(squares / (3.0 * static_cast<double>(points)));
  });
  for (Index s = 0; s < shapes; ++s) {
    const double scale = result[static_cast<std::size_t>(s)].scale;
    ddpm::detail::require(std::isfinite(scale) && scale > 0, "clouds",
                          "cloud " + std::to_string(s) + " (scale " + std::to_string(scale) + ")",
                          "clouds of finite points that are not all equal");
  }
  ddpm::detail::parallel_for(shapes, 3 * points, [&](Index s) {
    const CloudNormalization& norm = result[static_cast<std::size_t>(s)];
    for (Index i = s * points; i < (s + 1) * points; ++i) {
      for (int c = 0; c < 3; ++c) {
        clouds(i, c) =
            static_cast<Real>((static_cast<double>(clouds(i, c)) - norm.shift[c]) / norm.scale);
      }
    }
  });
  return result;
}

/// normalize_clouds for a single cloud (all rows of `cloud`, N x 3).
template <class Real>
CloudNormalization normalize_cloud(Batch<Real>& cloud) {
  ddpm::detail::require(cloud.rows() >= 1, "cloud.rows()", cloud.rows(), ">= 1");
  return normalize_clouds(cloud, cloud.rows()).front();
}

/// Undoes normalize_clouds: point = normalized · scale + shift, cloud by cloud.
template <class Real>
void denormalize_clouds(Batch<Real>& clouds, Index points,
                        std::span<const CloudNormalization> normalizations) {
  detail::require_clouds_layout(clouds.rows(), clouds.cols(), points);
  const Index shapes = clouds.rows() / points;
  ddpm::detail::require(static_cast<Index>(normalizations.size()) == shapes,
                        "normalizations.size()", normalizations.size(),
                        "one per cloud (" + std::to_string(shapes) + ")");
  ddpm::detail::parallel_for(shapes, 3 * points, [&](Index s) {
    const CloudNormalization& norm = normalizations[static_cast<std::size_t>(s)];
    for (Index i = s * points; i < (s + 1) * points; ++i) {
      for (int c = 0; c < 3; ++c) {
        clouds(i, c) =
            static_cast<Real>(static_cast<double>(clouds(i, c)) * norm.scale + norm.shift[c]);
      }
    }
  });
}

/// Draws `shapes` normalized shapes of `points` points each: an (shapes·points) x 3 batch, shape i
/// in rows [i·points, (i+1)·points). Shape i is random_shape(families[(first_shape + i) mod
/// families.size()], seed, first_shape + i), sampled by sample_surface and normalized by
/// normalize_clouds: a pure function of (seed, first_shape + i), so splitting a batch into pieces
/// with matching first_shape gives identical shapes, for any thread count. Points are computed in
/// double and rounded to Real. If `family_of` is given it receives each shape's index into
/// `families` (a class label). Requires non-empty valid families, shapes >= 0, 2 <= points < 2^32,
/// first_shape >= 0 and first_shape + shapes <= 2^32.
///
///   const std::array families = {ShapeFamily::table, ShapeFamily::mug};
///   Batch<float> x = ddpm::data::sample_shapes<float>(families, 64, 2048, /*seed=*/7);
template <class Real = double>
Batch<Real> sample_shapes(std::span<const ShapeFamily> families, Index shapes, Index points,
                          std::uint64_t seed, Index first_shape = 0,
                          std::vector<int>* family_of = nullptr) {
  ddpm::detail::require(!families.empty(), "families.size()", families.size(), ">= 1");
  ddpm::detail::require(shapes >= 0, "shapes", shapes, ">= 0");
  detail::require_points(points);
  ddpm::detail::require(first_shape >= 0, "first_shape", first_shape, ">= 0");
  ddpm::detail::require(first_shape <= detail::kMaxShapeSamples - shapes, "first_shape + shapes",
                        first_shape + shapes,
                        "at most 2^32 (the counter RNG's sample index range)");
  std::vector<Shape> drawn;
  std::vector<std::vector<SurfacePiece>> pieces;
  std::vector<std::vector<double>> cumulative;
  if (family_of != nullptr) family_of->clear();
  const auto n_families = static_cast<Index>(families.size());
  for (Index i = 0; i < shapes; ++i) {
    const Index which = (first_shape + i) % n_families;
    drawn.push_back(random_shape(families[static_cast<std::size_t>(which)], seed, first_shape + i));
    pieces.push_back(shape_pieces(drawn.back()));
    cumulative.push_back(detail::cumulative_areas(pieces.back()));
    if (family_of != nullptr) family_of->push_back(static_cast<int>(which));
  }
  const CounterRng rng(seed);
  Batch<double> raw(shapes * points, 3);
  ddpm::detail::parallel_for(shapes * points, 64, [&](Index row) {
    const auto s = static_cast<std::size_t>(row / points);
    raw.row(row) =
        detail::surface_point(drawn[s], pieces[s], cumulative[s], rng,
                              static_cast<std::uint32_t>(first_shape + row / points), row % points)
            .transpose();
  });
  if (shapes > 0) normalize_clouds(raw, points);
  if constexpr (std::is_same_v<Real, double>) {
    return raw;
  } else {
    const Batch<Real> cast = raw.cast<Real>();
    return cast;
  }
}

/// One normalized shape of `family` (points x 3): sample_shapes of that family alone, shape
/// `index`.
template <class Real = double>
Batch<Real> sample_shape(ShapeFamily family, Index points, std::uint64_t seed, Index index = 0) {
  return sample_shapes<Real>(std::span<const ShapeFamily>(&family, 1), 1, points, seed, index);
}

}  // namespace ddpm::data
