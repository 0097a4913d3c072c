// SPDX-License-Identifier: MIT
// The Chamfer distance between two 3D point clouds (squared Euclidean, as in PointFlow and Luo &
// Hu 2021), and the packed cloud layout that the Chamfer and EMD kernels share.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::eval {

namespace detail {

using CloudPacket = Eigen::internal::packet_traits<double>::type;
inline constexpr Index kCloudLanes = Eigen::internal::packet_traits<double>::size;

// Padding coordinate: its squared distance to any real point (|coordinate| < 1e100) is about
// 3e200, finite and larger than any real one, so a padded point never wins a minimum.
inline constexpr double kFarCoordinate = 1e100;

/// A point cloud in structure-of-arrays form: x, y and z each contiguous (so the distance loops
/// load whole SIMD packets), padded with far-away points to a whole number of packets (so they
/// need no tail loop). Always double: the coordinates of a float cloud convert exactly.
struct PackedCloud {
  Index size = 0;    // real points
  Index padded = 0;  // size rounded up to whole packets
  std::vector<double> coords;

  [[nodiscard]] const double* x() const noexcept { return coords.data(); }
  [[nodiscard]] const double* y() const noexcept { return coords.data() + padded; }
  [[nodiscard]] const double* z() const noexcept { return coords.data() + 2 * padded; }
};

/// Packs `count` points of the row-major ? x 3 block at `data`: rows 0..count-1 when `rows` is
/// empty, else rows[0..count-1] (a subset of the cloud).
template <class Real>
void pack_cloud(const Real* data, Index count, const std::vector<Index>& rows, PackedCloud& out) {
  out.size = count;
  out.padded = (count + kCloudLanes - 1) / kCloudLanes * kCloudLanes;
  out.coords.assign(static_cast<std::size_t>(3 * out.padded), kFarCoordinate);
  for (Index i = 0; i < count; ++i) {
    const Real* p = data + 3 * (rows.empty() ? i : rows[static_cast<std::size_t>(i)]);
    for (Index k = 0; k < 3; ++k) {
      out.coords[static_cast<std::size_t>(k * out.padded + i)] = static_cast<double>(p[k]);
    }
  }
}

/// Throws unless `x` is a cloud of at least one point with 3 finite coordinates per row.
template <class Real>
void require_cloud(const Batch<Real>& x, const char* parameter) {
  ddpm::detail::require_shape(x.rows() >= 1 && x.cols() == 3, parameter, x.rows(), x.cols(),
                              "a point cloud: N >= 1 rows of 3 coordinates (x, y, z)");
  if (x.allFinite()) [[likely]] {
    // The padding of PackedCloud must stay far from every real point.
    const double largest = x.size() > 0 ? static_cast<double>(x.cwiseAbs().maxCoeff()) : 0.0;
    ddpm::detail::require(largest < 1e50, parameter, largest,
                          "coordinates of magnitude below 1e50 (normalize the clouds)");
    return;
  }
  for (Index i = 0; i < x.rows(); ++i) {
    for (Index j = 0; j < x.cols(); ++j) {
      if (!std::isfinite(static_cast<double>(x(i, j)))) {
        throw InvalidArgument(parameter,
                              ddpm::detail::to_text(x(i, j)) + " at row " +
                                  ddpm::detail::to_text(i) + ", column " + ddpm::detail::to_text(j),
                              "finite coordinates only");
      }
    }
  }
}

// Points of `a` handled together by the Chamfer kernel: each packet of `b` is loaded once for
// kChamferRows points, and their 4 x 3 broadcast coordinates plus 4 running minima fit in the
// 16 SIMD registers of SSE/AVX2.
inline constexpr int kChamferRows = 4;

/// The two halves of the Chamfer distance: Σ_i min_j |a_i − b_j|² and Σ_j min_i |a_i − b_j|².
/// `col_min` is scratch (b.padded entries). Minima are exact, so the result depends on nothing
/// but the inputs; the sums run in index order.
struct ChamferSums {
  double a_to_b;
  double b_to_a;
};

inline ChamferSums chamfer_sums(const PackedCloud& a, const PackedCloud& b,
                                std::vector<double>& col_min) {
  using Eigen::internal::ploadu;
  using Eigen::internal::pmadd;
  using Eigen::internal::pmin;
  using Eigen::internal::pmul;
  using Eigen::internal::pset1;
  using Eigen::internal::pstoreu;
  using Eigen::internal::psub;
  using Packet = CloudPacket;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  col_min.assign(static_cast<std::size_t>(b.padded), kInf);
  double* cm = col_min.data();
  double a_to_b = 0.0;
  for (Index i0 = 0; i0 < a.size; i0 += kChamferRows) {
    Packet px[kChamferRows];
    Packet py[kChamferRows];
    Packet pz[kChamferRows];
    Packet row_min[kChamferRows];
    for (int r = 0; r < kChamferRows; ++r) {
      // Rows past the end repeat the last point: the column minima stay the same and their row
      // minima are not added.
      const Index i = std::min<Index>(i0 + r, a.size - 1);
      px[r] = pset1<Packet>(a.x()[i]);
      py[r] = pset1<Packet>(a.y()[i]);
      pz[r] = pset1<Packet>(a.z()[i]);
      row_min[r] = pset1<Packet>(kInf);
    }
    for (Index j = 0; j < b.padded; j += kCloudLanes) {
      const Packet bx = ploadu<Packet>(b.x() + j);
      const Packet by = ploadu<Packet>(b.y() + j);
      const Packet bz = ploadu<Packet>(b.z() + j);
      Packet cmin = ploadu<Packet>(cm + j);
      for (int r = 0; r < kChamferRows; ++r) {
        const Packet dx = psub(px[r], bx);
        const Packet dy = psub(py[r], by);
        const Packet dz = psub(pz[r], bz);
        const Packet d2 = pmadd(dz, dz, pmadd(dy, dy, pmul(dx, dx)));
        row_min[r] = pmin(row_min[r], d2);
        cmin = pmin(cmin, d2);
      }
      pstoreu(cm + j, cmin);
    }
    const int valid = static_cast<int>(std::min<Index>(kChamferRows, a.size - i0));
    for (int r = 0; r < valid; ++r) a_to_b += Eigen::internal::predux_min(row_min[r]);
  }
  double b_to_a = 0.0;
  for (Index j = 0; j < b.size; ++j) b_to_a += cm[j];
  return {a_to_b, b_to_a};
}

/// The Chamfer distance of two packed clouds (see chamfer_distance).
inline double chamfer_packed(const PackedCloud& a, const PackedCloud& b,
                             std::vector<double>& col_min) {
  const ChamferSums s = chamfer_sums(a, b, col_min);
  return s.a_to_b / static_cast<double>(a.size) + s.b_to_a / static_cast<double>(b.size);
}

}  // namespace detail

/// The Chamfer distance of two point clouds, in the convention of the point-cloud generation
/// literature (Fan et al. 2017; PointFlow, Yang et al. 2019; Luo & Hu 2021):
///
///   CD(X, Y) = (1/|X|) Σ_{x∈X} min_{y∈Y} |x − y|²  +  (1/|Y|) Σ_{y∈Y} min_{x∈X} |x − y|²
///
/// with SQUARED Euclidean distances and the two means added (not averaged). X is N x 3 and Y is
/// M x 3 (one point per row, N and M may differ). Computed in double from direct coordinate
/// differences (no |x|² + |y|² − 2x·y cancellation), so each minimum is the correctly rounded
/// squared distance up to a few ulps, whatever Real is; symmetric bitwise, CD(X, Y) = CD(Y, X).
/// Cost: N·M distance evaluations, no N x M buffer.
///
///   double cd = ddpm::eval::chamfer_distance(cloud_a, cloud_b);
template <class Real>
double chamfer_distance(const Batch<Real>& x, const Batch<Real>& y) {
  detail::require_cloud(x, "x");
  detail::require_cloud(y, "y");
  detail::PackedCloud a;
  detail::PackedCloud b;
  detail::pack_cloud(x.data(), x.rows(), {}, a);
  detail::pack_cloud(y.data(), y.rows(), {}, b);
  std::vector<double> scratch;
  return detail::chamfer_packed(a, b, scratch);
}

}  // namespace ddpm::eval
