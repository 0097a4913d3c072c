// SPDX-License-Identifier: MIT
// Tests of the synthetic 3D shapes: names, argument checks, reproducibility, points on each
// family's surface (implicit equations), uniformity by area (Monte Carlo) and the per-shape
// normalization.
#include "ddpm/data/shapes3d.hpp"

#include <doctest/doctest.h>

#include <Eigen/LU>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace shapes3d_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::InvalidArgument;
using ddpm::data::CloudNormalization;
using ddpm::data::sample_shapes;
using ddpm::data::sample_surface;
using ddpm::data::Shape;
using ddpm::data::ShapeFamily;

constexpr std::array<ShapeFamily, 8> kAll{
    ShapeFamily::sphere,   ShapeFamily::ellipsoid, ShapeFamily::torus, ShapeFamily::box,
    ShapeFamily::cylinder, ShapeFamily::cone,      ShapeFamily::table, ShapeFamily::mug};

// Area-share checks draw kUniformityPoints points and accept 4.5 binomial standard errors,
// sqrt(p (1 - p) / n): a correct sampler fails one check with probability ~7e-6.
constexpr Index kUniformityPoints = 20000;
constexpr double kBinomialErrors = 4.5;
// Points lie on their surface up to rounding of the pose rotation and of sqrt/cos (~1e-15).
constexpr double kOnSurface = 1e-9;

/// Checks that `count` of kUniformityPoints is the fraction `share` within the binomial tolerance.
void check_share(Index count, double share, const std::string& what) {
  const auto n = static_cast<double>(kUniformityPoints);
  const double fraction = static_cast<double>(count) / n;
  const double tolerance = kBinomialErrors * std::sqrt(share * (1.0 - share) / n);
  INFO(what << ": fraction " << fraction << ", area share " << share << ", tolerance "
            << tolerance);
  CHECK(std::abs(fraction - share) <= tolerance);
}

/// The points of `cloud` in the shape's own frame: the pose undone (R^T p, row by row).
Batch<double> unposed(const Batch<double>& cloud, const Shape& shape) {
  const Batch<double> local = cloud * shape.rotation;  // rows p^T R = (R^T p)^T
  return local;
}

/// Solid box "distance": max over axes of |q - center| - half; 0 on its surface, < 0 inside.
double box_value(const Eigen::Vector3d& q, const Eigen::Vector3d& center,
                 const Eigen::Vector3d& half) {
  return ((q - center).cwiseAbs() - half).maxCoeff();
}

/// An implicit residual of each family's surface, written from the size documentation alone
/// (independently of shape_pieces): 0 exactly on the surface.
double surface_residual(const Shape& shape, const Eigen::Vector3d& q) {
  const std::array<double, 5>& s = shape.size;
  const double x = q.x(), y = q.y(), z = q.z();
  const double rho = std::hypot(x, z);  // distance from the y axis
  switch (shape.family) {
    case ShapeFamily::sphere:
      return q.norm() - s[0];
    case ShapeFamily::ellipsoid:
      return std::sqrt(x * x / (s[0] * s[0]) + y * y / (s[1] * s[1]) + z * z / (s[2] * s[2])) - 1;
    case ShapeFamily::torus:
      return std::hypot(rho - s[0], y) - s[1];
    case ShapeFamily::box:
      return box_value(q, Eigen::Vector3d::Zero(), Eigen::Vector3d(s[0], s[1], s[2]));
    case ShapeFamily::cylinder:
      return std::max(rho - s[0], std::abs(y) - s[1]);
    case ShapeFamily::cone: {
      const double base = -s[1] / 2, apex = base + s[1];
      return std::max(rho - s[0] * (apex - y) / s[1], base - y);
    }
    case ShapeFamily::table: {
      const double hx = s[0], hz = s[1], th = s[2], leg = s[3], length = s[4];
      double value = box_value(q, {0, length + th / 2, 0}, {hx, th / 2, hz});
      for (const double lx : {-(hx - leg), hx - leg}) {
        for (const double lz : {-(hz - leg), hz - leg}) {
          value =
              std::min(value, box_value(q, {lx, length / 2, lz}, {leg / 2, length / 2, leg / 2}));
        }
      }
      return value;
    }
    case ShapeFamily::mug: {
      const double r = s[0], h = s[1];
      const double side = std::max(std::abs(rho - r), std::abs(y) - h / 2);
      const double bottom = std::max(std::abs(y + h / 2), rho - r);
      const double ring = std::hypot(std::hypot(x - r, y) - s[2], z) - s[3];
      const double handle = std::max(std::abs(ring), r - x);
      return std::min({side, bottom, handle});
    }
  }
  return 1e300;
}

}  // namespace

TEST_CASE("shape family names parse and print") {
  REQUIRE(ddpm::enum_names<ShapeFamily>().size() == kAll.size());
  for (ShapeFamily family : kAll) {
    CHECK(ddpm::parse_enum<ShapeFamily>(ddpm::to_string(family)) == family);
  }
  CHECK(ddpm::to_string(ShapeFamily::mug) == "mug");
  CHECK_THROWS_WITH_AS(
      ddpm::parse_enum<ShapeFamily>("chair"),
      "ddpm: invalid shape family = chair; allowed: sphere, ellipsoid, torus, box, "
      "cylinder, cone, table or mug",
      InvalidArgument);
}

TEST_CASE("sample_shapes and friends reject bad arguments") {
  const std::array<ShapeFamily, 1> one{ShapeFamily::box};
  CHECK_THROWS_WITH_AS(sample_shapes(std::span<const ShapeFamily>(), 1, 16, 0),
                       "ddpm: invalid families.size() = 0; allowed: >= 1", InvalidArgument);
  CHECK_THROWS_WITH_AS(sample_shapes(one, 1, 1, 0),
                       "ddpm: invalid points = 1; allowed: 2 <= points < 2^32", InvalidArgument);
  CHECK_THROWS_AS(sample_shapes(one, -1, 16, 0), InvalidArgument);
  CHECK_THROWS_AS(sample_shapes(one, 2, 16, 0, (Index{1} << 32) - 1), InvalidArgument);
  const std::array<ShapeFamily, 1> bad{static_cast<ShapeFamily>(8)};
  CHECK_THROWS_AS(sample_shapes(bad, 1, 16, 0), InvalidArgument);
  Shape torus{ShapeFamily::torus, {1, 1.5, 0, 0, 0}};
  CHECK_THROWS_WITH_AS(ddpm::data::shape_pieces(torus),
                       "ddpm: invalid shape.size[1] = 1.5; allowed: a tube radius below the major "
                       "radius",
                       InvalidArgument);
  Shape box{ShapeFamily::box, {1, -1, 1, 0, 0}};
  CHECK_THROWS_AS(sample_surface(box, 16, 0, 0), InvalidArgument);
}

TEST_CASE("shapes are reproducible: same (seed, index) gives the same bits, split or whole") {
  const std::array<ShapeFamily, 3> families{ShapeFamily::table, ShapeFamily::torus,
                                            ShapeFamily::mug};
  constexpr Index kPoints = 300;
  std::vector<int> labels;
  const Batch<double> whole = sample_shapes(families, 5, kPoints, 11, 0, &labels);
  CHECK(labels == std::vector<int>{0, 1, 2, 0, 1});
  CHECK(whole == sample_shapes(families, 5, kPoints, 11));
  const Batch<double> tail = sample_shapes(families, 3, kPoints, 11, 2, &labels);
  CHECK(labels == std::vector<int>{2, 0, 1});
  CHECK(tail == whole.bottomRows(3 * kPoints));
  CHECK(whole != sample_shapes(families, 5, kPoints, 12));
  // Shape 3 is a table: the one-family call with index 3 draws the same points.
  CHECK(ddpm::data::sample_shape(ShapeFamily::table, kPoints, 11, 3) ==
        whole.middleRows(3 * kPoints, kPoints));
  // Floats are the doubles rounded.
  const Batch<float> as_float = sample_shapes<float>(families, 5, kPoints, 11);
  CHECK(as_float == whole.cast<float>());
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Batch<double> serial = sample_shapes(families, 5, kPoints, 11);
  omp_set_num_threads(std::max(threads, 2));
  const Batch<double> parallel = sample_shapes(families, 5, kPoints, 11);
  omp_set_num_threads(threads);
  CHECK(serial == whole);
  CHECK(parallel == whole);
#endif
}

TEST_CASE("random shapes have upright poses and proportions in the documented ranges") {
  const double max_tilt = ddpm::data::kMaxTiltDegrees * std::numbers::pi / 180.0;
  int yaw_quadrants[4] = {0, 0, 0, 0};
  for (ShapeFamily family : kAll) {
    for (Index i = 0; i < 40; ++i) {
      const Shape shape = ddpm::data::random_shape(family, 3, i);
      const Eigen::Matrix3d& r = shape.rotation;
      CHECK((r.transpose() * r - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff() < 1e-14);
      CHECK(r.determinant() == doctest::Approx(1.0).epsilon(1e-14));
      // The up axis moves by the tilt only.
      const double tilt = std::acos(std::clamp(r(1, 1), -1.0, 1.0));
      CHECK(tilt <= max_tilt + 1e-12);
      const double yaw = std::atan2(-r(2, 0), r(0, 0));  // where x goes, seen from above
      ++yaw_quadrants[static_cast<int>(
                          std::floor((yaw + std::numbers::pi) / (std::numbers::pi / 2))) %
                      4];
      const std::array<double, 5>& s = shape.size;
      if (family == ShapeFamily::torus) {
        CHECK(s[0] == 1.0);
        CHECK((s[1] >= 0.15 && s[1] <= 0.5));
      } else if (family == ShapeFamily::table) {
        CHECK((s[0] >= 0.6 && s[0] <= 1.0 && s[1] >= 0.4 && s[1] <= 0.8));
        CHECK((s[2] >= 0.04 && s[2] <= 0.1 && s[3] >= 0.06 && s[3] <= 0.12));
        CHECK((s[4] >= 0.5 && s[4] <= 0.9));
      } else if (family == ShapeFamily::mug) {
        CHECK((s[0] >= 0.3 && s[0] <= 0.45 && s[1] >= 0.7 && s[1] <= 1.1));
        CHECK((s[2] >= 0.2 * s[1] && s[2] <= 0.3 * s[1] && s[3] >= 0.03 && s[3] <= 0.06));
      }
    }
  }
  for (const int count : yaw_quadrants) CHECK(count > 40);  // 320 yaws: about 80 per quadrant
}

TEST_CASE("every family's points lie on its surface, before and after normalization") {
  constexpr Index kPoints = 2000;
  constexpr std::uint64_t kSeed = 5;
  for (ShapeFamily family : kAll) {
    for (Index index = 0; index < 3; ++index) {
      CAPTURE(ddpm::to_string(family));
      CAPTURE(index);
      const Shape shape = ddpm::data::random_shape(family, kSeed, index);
      const Batch<double> raw = sample_surface(shape, kPoints, kSeed, index);
      const Batch<double> local = unposed(raw, shape);
      double worst = 0;
      for (Index i = 0; i < kPoints; ++i) {
        worst = std::max(worst, std::abs(surface_residual(shape, local.row(i).transpose())));
      }
      CHECK(worst < kOnSurface);
      // sample_shapes is sample_surface then normalize_clouds; undoing the normalization gives the
      // surface points back.
      const Batch<double> normalized =
          sample_shapes(std::span<const ShapeFamily>(&family, 1), 1, kPoints, kSeed, index);
      Batch<double> expected = raw;
      const CloudNormalization norm = ddpm::data::normalize_cloud(expected);
      CHECK(normalized == expected);
      Batch<double> restored = normalized;
      ddpm::data::denormalize_clouds(restored, kPoints,
                                     std::span<const CloudNormalization>(&norm, 1));
      CHECK((restored - raw).cwiseAbs().maxCoeff() < 1e-12);
    }
  }
}

TEST_CASE("sphere points are uniform by area: the height is uniform (Archimedes), KS test") {
  const Shape sphere = ddpm::data::random_shape(ShapeFamily::sphere, 1, 0);
  const Batch<double> local = unposed(sample_surface(sphere, kUniformityPoints, 1, 0), sphere);
  for (int axis = 0; axis < 3; ++axis) {
    std::vector<double> h(static_cast<std::size_t>(kUniformityPoints));
    for (Index i = 0; i < kUniformityPoints; ++i) h[static_cast<std::size_t>(i)] = local(i, axis);
    std::sort(h.begin(), h.end());
    double ks = 0;
    const auto n = static_cast<double>(kUniformityPoints);
    for (std::size_t i = 0; i < h.size(); ++i) {
      const double cdf = (h[i] + 1.0) / 2.0;
      ks = std::max({ks, std::abs(cdf - static_cast<double>(i) / n),
                     std::abs(cdf - static_cast<double>(i + 1) / n)});
    }
    // Kolmogorov's critical value at significance 1e-3 is 1.95 / sqrt(n) = 0.0138 for n = 20000.
    INFO("axis " << axis << ": KS statistic " << ks);
    CHECK(ks < 1.95 / std::sqrt(n));
  }
}

TEST_CASE("ellipsoid points are uniform by area: a spheroid's equatorial band has its share") {
  // Prolate spheroid x^2 + y^2/4 + z^2 = 1: the area element per dy is 2 pi sqrt(1 - 3 y^2 / 16),
  // whose integral is (y sqrt(1 - k^2 y^2) + asin(k y) / k) / 2 with k = sqrt(3) / 4. A sampler
  // that maps uniform directions without the area correction puts half the points in |y| < 1; the
  // correct share is 0.5662.
  const Shape spheroid{ShapeFamily::ellipsoid, {1, 2, 1, 0, 0}};
  const double k = std::sqrt(3.0) / 4.0;
  const auto primitive = [k](double y) {
    return (y * std::sqrt(1 - k * k * y * y) + std::asin(k * y) / k) / 2;
  };
  const double share = primitive(1.0) / primitive(2.0);
  const Batch<double> points = sample_surface(spheroid, kUniformityPoints, 2, 0);
  Index band = 0;
  for (Index i = 0; i < kUniformityPoints; ++i) band += std::abs(points(i, 1)) < 1.0 ? 1 : 0;
  check_share(band, share, "|y| < 1 of the spheroid");
}

TEST_CASE("torus points are uniform by area: the outer half has share 1/2 + r / (pi R)") {
  const Shape torus = ddpm::data::random_shape(ShapeFamily::torus, 4, 0);
  const Batch<double> local = unposed(sample_surface(torus, kUniformityPoints, 4, 0), torus);
  const double big = torus.size[0], small = torus.size[1];
  Index outer = 0;
  for (Index i = 0; i < kUniformityPoints; ++i) {
    outer += std::hypot(local(i, 0), local(i, 2)) > big ? 1 : 0;
  }
  check_share(outer, 0.5 + small / (std::numbers::pi * big), "outer half of the torus");
}

TEST_CASE("box, cylinder and cone points fall on each piece in proportion to its area") {
  SUBCASE("box faces") {
    const Shape box = ddpm::data::random_shape(ShapeFamily::box, 6, 0);
    const Batch<double> local = unposed(sample_surface(box, kUniformityPoints, 6, 0), box);
    const std::array<double, 3> h = {box.size[0], box.size[1], box.size[2]};
    const double total = 8 * (h[0] * h[1] + h[1] * h[2] + h[0] * h[2]);
    std::array<Index, 3> counts{};
    for (Index i = 0; i < kUniformityPoints; ++i) {
      for (std::size_t axis = 0; axis < 3; ++axis) {
        if (std::abs(std::abs(local(i, static_cast<Index>(axis))) - h[axis]) < kOnSurface) {
          ++counts[axis];
        }
      }
    }
    for (std::size_t axis = 0; axis < 3; ++axis) {
      check_share(counts[axis], 8 * h[(axis + 1) % 3] * h[(axis + 2) % 3] / total,
                  "faces normal to axis " + std::to_string(axis));
    }
  }
  SUBCASE("cylinder caps") {
    const Shape cylinder = ddpm::data::random_shape(ShapeFamily::cylinder, 6, 1);
    const Batch<double> local =
        unposed(sample_surface(cylinder, kUniformityPoints, 6, 1), cylinder);
    const double r = cylinder.size[0], hh = cylinder.size[1];
    Index caps = 0, inner = 0;
    for (Index i = 0; i < kUniformityPoints; ++i) {
      if (std::abs(std::abs(local(i, 1)) - hh) < kOnSurface) {
        ++caps;
        inner += std::hypot(local(i, 0), local(i, 2)) < r / 2 ? 1 : 0;
      }
    }
    const double cap_share = 2 * r * r / (2 * r * r + 4 * r * hh);
    check_share(caps, cap_share, "cylinder caps");
    // Within the caps, the disk of half the radius holds a quarter of the area.
    check_share(inner, cap_share / 4, "cylinder caps within half the radius");
  }
  SUBCASE("cone base, and the side's points nearer the apex than half way") {
    const Shape cone = ddpm::data::random_shape(ShapeFamily::cone, 6, 2);
    const Batch<double> local = unposed(sample_surface(cone, kUniformityPoints, 6, 2), cone);
    const double r = cone.size[0], h = cone.size[1];
    const double side_area = std::numbers::pi * r * std::hypot(r, h);
    Index base = 0, upper = 0;
    for (Index i = 0; i < kUniformityPoints; ++i) {
      if (std::abs(local(i, 1) + h / 2) < kOnSurface) {
        ++base;
      } else if (local(i, 1) > 0) {
        ++upper;  // the upper half of the height: a quarter of the side's area
      }
    }
    check_share(base, std::numbers::pi * r * r / (std::numbers::pi * r * r + side_area),
                "cone base");
    check_share(upper, 0.25 * side_area / (std::numbers::pi * r * r + side_area),
                "cone side above half height");
  }
}

TEST_CASE("table and mug points fall on each part in proportion to its area") {
  SUBCASE("table: top, top edges, underside without the legs' footprints, leg sides, feet") {
    const Shape table = ddpm::data::random_shape(ShapeFamily::table, 8, 0);
    const Batch<double> local = unposed(sample_surface(table, kUniformityPoints, 8, 0), table);
    const double hx = table.size[0], hz = table.size[1], th = table.size[2], leg = table.size[3],
                 length = table.size[4];
    const std::array<double, 5> areas = {4 * hx * hz, 4 * th * (hx + hz),
                                         4 * hx * hz - 4 * leg * leg, 16 * leg * length,
                                         4 * leg * leg};
    double total = 0;
    for (const double a : areas) total += a;
    CHECK(ddpm::data::surface_area(table) == doctest::Approx(total).epsilon(1e-12));
    std::array<Index, 5> counts{};
    Index under_a_leg = 0;
    for (Index i = 0; i < kUniformityPoints; ++i) {
      const double x = local(i, 0), y = local(i, 1), z = local(i, 2);
      if (std::abs(y - (length + th)) < kOnSurface) {
        ++counts[0];
      } else if (std::abs(y - length) < kOnSurface) {
        ++counts[2];
        const bool in_x = std::abs(std::abs(x) - (hx - leg)) < leg / 2;
        const bool in_z = std::abs(std::abs(z) - (hz - leg)) < leg / 2;
        under_a_leg += in_x && in_z ? 1 : 0;
      } else if (y > length) {
        ++counts[1];
      } else if (std::abs(y) < kOnSurface) {
        ++counts[4];
      } else {
        ++counts[3];
      }
    }
    CHECK(under_a_leg == 0);
    const std::array<const char*, 5> names = {"top", "top edges", "underside", "leg sides", "feet"};
    for (std::size_t p = 0; p < 5; ++p) check_share(counts[p], areas[p] / total, names[p]);
  }
  SUBCASE("mug: side, bottom, handle") {
    const Shape mug = ddpm::data::random_shape(ShapeFamily::mug, 8, 1);
    const Batch<double> local = unposed(sample_surface(mug, kUniformityPoints, 8, 1), mug);
    const double r = mug.size[0], h = mug.size[1];
    const double pi = std::numbers::pi;
    const std::array<double, 3> areas = {2 * pi * r * h, pi * r * r,
                                         2 * pi * pi * mug.size[2] * mug.size[3]};
    const double total = areas[0] + areas[1] + areas[2];
    std::array<Index, 3> counts{};
    for (Index i = 0; i < kUniformityPoints; ++i) {
      const double rho = std::hypot(local(i, 0), local(i, 2));
      if (std::abs(local(i, 1) + h / 2) < kOnSurface) {
        ++counts[1];
      } else if (std::abs(rho - r) < kOnSurface) {
        ++counts[0];
      } else {
        ++counts[2];
        CHECK(local(i, 0) >= r - kOnSurface);  // the handle is outside the cup
      }
    }
    check_share(counts[0], areas[0] / total, "mug side");
    check_share(counts[1], areas[1] / total, "mug bottom");
    check_share(counts[2], areas[2] / total, "mug handle");
  }
}

TEST_CASE_TEMPLATE("normalize_clouds gives each cloud mean 0 and unit coordinate std", Real, float,
                   double) {
  constexpr Index kPoints = 500;
  // Three clouds far from the origin and of different sizes.
  Batch<Real> clouds(3 * kPoints, 3);
  ddpm::CounterRng(9).fill_normal(clouds, ddpm::stream::user, 0, 0);
  for (Index i = 0; i < clouds.rows(); ++i) {
    const auto s = static_cast<Real>(i / kPoints + 1);
    clouds.row(i) = (clouds.row(i) * s * Real(2)).array() + Real(10) * s;
  }
  const Batch<Real> original = clouds;
  const std::vector<CloudNormalization> norms = ddpm::data::normalize_clouds(clouds, kPoints);
  REQUIRE(norms.size() == 3);
  const double tolerance = std::is_same_v<Real, float> ? 1e-5 : 1e-12;
  for (Index s = 0; s < 3; ++s) {
    const Batch<double> cloud = clouds.middleRows(s * kPoints, kPoints).template cast<double>();
    for (Index c = 0; c < 3; ++c) CHECK(std::abs(cloud.col(c).mean()) < tolerance);
    CHECK(std::sqrt(cloud.squaredNorm() / (3.0 * kPoints)) ==
          doctest::Approx(1.0).epsilon(tolerance));
    // The recorded shift and scale are the cloud's own mean and centered rms, computed directly.
    const Batch<double> before = original.middleRows(s * kPoints, kPoints).template cast<double>();
    const Eigen::RowVector3d mean = before.colwise().mean();
    const CloudNormalization& norm = norms[static_cast<std::size_t>(s)];
    for (Index c = 0; c < 3; ++c) {
      CHECK(norm.shift[static_cast<std::size_t>(c)] == doctest::Approx(mean(c)).epsilon(1e-12));
    }
    const double rms = std::sqrt((before.rowwise() - mean).squaredNorm() / (3.0 * kPoints));
    CHECK(norm.scale == doctest::Approx(rms).epsilon(1e-12));
  }
  ddpm::data::denormalize_clouds(clouds, kPoints, std::span<const CloudNormalization>(norms));
  CHECK((clouds - original).cwiseAbs().maxCoeff() < (std::is_same_v<Real, float> ? 1e-4 : 1e-12));

  Batch<Real> flat = Batch<Real>::Ones(2 * kPoints, 3);
  flat.topRows(kPoints) = original.topRows(kPoints);
  CHECK_THROWS_WITH_AS(ddpm::data::normalize_clouds(flat, kPoints),
                       "ddpm: invalid clouds = cloud 1 (scale 0.000000); allowed: clouds of finite "
                       "points that are not all equal",
                       InvalidArgument);
  Batch<Real> ragged = Batch<Real>::Ones(2 * kPoints + 1, 3);
  CHECK_THROWS_AS(ddpm::data::normalize_clouds(ragged, kPoints), InvalidArgument);
  CHECK_THROWS_AS(ddpm::data::denormalize_clouds(
                      clouds, kPoints, std::span<const CloudNormalization>(norms).first(2)),
                  InvalidArgument);
}

}  // namespace shapes3d_test
