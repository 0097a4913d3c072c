// SPDX-License-Identifier: MIT
// Sample-quality metrics between two point sets: unbiased MMD², energy distance, sliced W1.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::eval {

/// Default RBF bandwidths h of mmd2_rbf (those of the BENCHMARKS.md quality table).
inline constexpr std::array<double, 6> kDefaultBandwidths{0.05, 0.1, 0.2, 0.5, 1.0, 2.0};

/// Default number of random directions of sliced_wasserstein1.
inline constexpr Index kDefaultProjections = 256;

namespace detail {

inline void require_finite(const Batch<double>& x, const char* parameter) {
  for (Index i = 0; i < x.rows(); ++i) {
    for (Index j = 0; j < x.cols(); ++j) {
      if (!std::isfinite(x(i, j))) {
        throw InvalidArgument(parameter,
                              ddpm::detail::to_text(x(i, j)) + " at row " +
                                  ddpm::detail::to_text(i) + ", column " + ddpm::detail::to_text(j),
                              "finite values only");
      }
    }
  }
}

/// Validates two point sets: at least 2 rows each, the same number (>= 1) of columns, all finite.
inline void require_point_sets(const Batch<double>& x, const Batch<double>& y) {
  ddpm::detail::require_shape(x.rows() >= 2 && x.cols() >= 1, "x", x.rows(), x.cols(),
                              "at least 2 points (rows) of dimension >= 1");
  ddpm::detail::require_shape(y.rows() >= 2 && y.cols() >= 1, "y", y.rows(), y.cols(),
                              "at least 2 points (rows) of dimension >= 1");
  ddpm::detail::require_shape(y.cols() == x.cols(), "y", y.rows(), y.cols(),
                              "as many columns as x (" + ddpm::detail::to_text(x.cols()) + ")");
  require_finite(x, "x");
  require_finite(y, "y");
}

// Pair loops take the inner points in blocks of this many, their squared distances kept on the
// stack so the distance loop vectorizes without a heap buffer inside the parallel region.
inline constexpr Index kPairBlock = 64;

/// Σ_{j in [begin, end)} kernel(|p − y_j|²), summed in order of j. `y` is column-major so each
/// coordinate is contiguous over j and the distance loop vectorizes.
template <class Kernel>
double row_kernel_sum(const double* p, const Eigen::MatrixXd& y, Index begin, Index end,
                      const Kernel& kernel) noexcept {
  const Index dim = y.cols();
  double d2[kPairBlock];
  double sum = 0.0;
  for (Index j0 = begin; j0 < end; j0 += kPairBlock) {
    const Index len = std::min(kPairBlock, end - j0);
    std::fill(d2, d2 + len, 0.0);
    for (Index k = 0; k < dim; ++k) {
      const double pk = p[k];
      const double* yk = y.col(k).data() + j0;
      for (Index j = 0; j < len; ++j) {
        const double diff = pk - yk[j];
        d2[j] += diff * diff;
      }
    }
    for (Index j = 0; j < len; ++j) sum += kernel(d2[j]);
  }
  return sum;
}

/// Σ_{i < j} kernel(|x_i − x_j|²). Rows i and m−1−i form one task so that every task has m−1 pairs
/// and a static schedule balances; task sums are added serially, so the result does not depend on
/// the thread count.
template <class Kernel>
double within_pair_sum(const Batch<double>& x, const Kernel& kernel) {
  const Eigen::MatrixXd columns = x;
  const Index m = x.rows();
  const Index tasks = (m + 1) / 2;
  std::vector<double> partial(static_cast<std::size_t>(tasks), 0.0);
  ddpm::detail::parallel_for(tasks, [&](Index t) {
    double sum = row_kernel_sum(x.row(t).data(), columns, t + 1, m, kernel);
    const Index mirror = m - 1 - t;
    if (mirror != t) sum += row_kernel_sum(x.row(mirror).data(), columns, mirror + 1, m, kernel);
    partial[static_cast<std::size_t>(t)] = sum;
  });
  double total = 0.0;
  for (double value : partial) total += value;
  return total;
}

/// Σ_i Σ_j kernel(|x_i − y_j|²), per-row sums in parallel, rows added serially.
template <class Kernel>
double cross_pair_sum(const Batch<double>& x, const Batch<double>& y, const Kernel& kernel) {
  const Eigen::MatrixXd columns = y;
  std::vector<double> partial(static_cast<std::size_t>(x.rows()), 0.0);
  ddpm::detail::parallel_for(x.rows(), [&](Index i) {
    partial[static_cast<std::size_t>(i)] =
        row_kernel_sum(x.row(i).data(), columns, 0, y.rows(), kernel);
  });
  double total = 0.0;
  for (double value : partial) total += value;
  return total;
}

/// The summed RBF kernel Σ_h exp(−d²/(2h²)). Bandwidths are grouped into chains h, h/2, h/4, ...
/// (exact halvings) so one exp serves a whole chain: exp(−4a) = exp(−a)⁴. The default six
/// bandwidths form two chains, (2, 1, 0.5) and (0.2, 0.1, 0.05), and cost two exps per pair. Terms
/// below e^−60 ≈ 1e−26 are dropped: they change no reported digit, and their powers would be
/// denormals, which are slow to multiply.
class RbfSumKernel {
 public:
  static constexpr double kNegligibleExponent = 60.0;

  explicit RbfSumKernel(std::span<const double> bandwidths) {
    std::vector<double> sorted(bandwidths.begin(), bandwidths.end());
    std::sort(sorted.begin(), sorted.end(), [](double a, double b) { return a > b; });
    std::vector<bool> used(sorted.size(), false);
    for (std::size_t first = 0; first < sorted.size(); ++first) {
      if (used[first]) continue;
      used[first] = true;
      Chain chain{1.0 / (2.0 * sorted[first] * sorted[first]), 1};
      double current = sorted[first];
      for (std::size_t next = first + 1; next < sorted.size(); ++next) {
        if (!used[next] && sorted[next] * 2.0 == current) {
          used[next] = true;
          current = sorted[next];
          ++chain.length;
        }
      }
      chains_.push_back(chain);
    }
  }

  double operator()(double d2) const noexcept {
    double sum = 0.0;
    for (const Chain& chain : chains_) {
      double exponent = d2 * chain.scale;
      if (exponent > kNegligibleExponent) continue;
      double value = std::exp(-exponent);
      sum += value;
      for (int step = 1; step < chain.length; ++step) {
        exponent *= 4.0;
        if (exponent > kNegligibleExponent) break;
        value *= value;
        value *= value;
        sum += value;
      }
    }
    return sum;
  }

 private:
  struct Chain {
    double scale;  // 1 / (2h²) of the chain's largest bandwidth
    int length;
  };
  std::vector<Chain> chains_;
};

/// Exact W1 between the empirical distributions of two sorted samples of any sizes:
/// ∫₀¹ |F⁻¹(q) − G⁻¹(q)| dq, walking the merged quantile breakpoints i/m and j/n. The breakpoints
/// are compared as integers (units of 1/(m n)) so no rounding decides which step comes first.
inline double wasserstein1_sorted(std::span<const double> a, std::span<const double> b) noexcept {
  const auto m = static_cast<std::int64_t>(a.size());
  const auto n = static_cast<std::int64_t>(b.size());
  if (m == n) {
    double sum = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += std::abs(a[i] - b[i]);
    return sum / static_cast<double>(m);
  }
  double sum = 0.0;
  std::int64_t i = 0;
  std::int64_t j = 0;
  std::int64_t q = 0;
  while (i < m && j < n) {
    const std::int64_t next_a = (i + 1) * n;
    const std::int64_t next_b = (j + 1) * m;
    const std::int64_t next = std::min(next_a, next_b);
    sum += static_cast<double>(next - q) *
           std::abs(a[static_cast<std::size_t>(i)] - b[static_cast<std::size_t>(j)]);
    q = next;
    if (next_a == next) ++i;
    if (next_b == next) ++j;
  }
  return sum / (static_cast<double>(m) * static_cast<double>(n));
}

/// out[i] = x_i · θ for every row i (summed in order of the columns).
inline void project(const Batch<double>& x, const double* theta, double* out) noexcept {
  for (Index i = 0; i < x.rows(); ++i) {
    double dot = 0.0;
    for (Index k = 0; k < x.cols(); ++k) dot += x(i, k) * theta[k];
    out[i] = dot;
  }
}

}  // namespace detail

/// Unbiased MMD² (Gretton et al. 2012, eq. 3) with the kernel k(x, y) = Σ_h exp(−|x − y|² / (2h²)),
/// a *sum* (not a mean) of RBF kernels over `bandwidths`:
///   MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j)
///            − 2/(mn) Σ_{i,j} k(x_i, y_j).
/// Its expectation is 0 when x and y come from one distribution, so it can be slightly negative.
/// For y = x it equals −2(K − k̄)/m exactly, where K = bandwidths.size() = k(x, x) and k̄ is the mean
/// off-diagonal kernel value. O(m² + n² + mn) kernel evaluations (one exp per chain of halving
/// bandwidths, see detail::RbfSumKernel), OpenMP-parallel over rows; the result is bitwise
/// independent of the thread count.
///
///   double d = ddpm::eval::mmd2_rbf(samples, data);  // bandwidths 0.05, 0.1, 0.2, 0.5, 1, 2
inline double mmd2_rbf(const Batch<double>& x, const Batch<double>& y,
                       std::span<const double> bandwidths = kDefaultBandwidths) {
  detail::require_point_sets(x, y);
  ddpm::detail::require(!bandwidths.empty(), "bandwidths", "an empty list",
                        "at least one bandwidth");
  for (double h : bandwidths) {
    ddpm::detail::require(std::isfinite(h) && h > 0.0, "bandwidth", h, "finite and > 0");
  }
  const detail::RbfSumKernel kernel(bandwidths);
  const auto m = static_cast<double>(x.rows());
  const auto n = static_cast<double>(y.rows());
  const double xx = 2.0 * detail::within_pair_sum(x, kernel) / (m * (m - 1.0));
  const double yy = 2.0 * detail::within_pair_sum(y, kernel) / (n * (n - 1.0));
  const double xy = detail::cross_pair_sum(x, y, kernel) / (m * n);
  return xx + yy - 2.0 * xy;
}

/// Energy distance (Székely & Rizzo 2013) 2E|X − Y| − E|X − X'| − E|Y − Y'| with Euclidean norms,
/// the within-set terms as unbiased U-statistics (mean over i ≠ j) and the cross term as the mean
/// over all pairs. Zero in expectation for one distribution (so slightly negative values occur);
/// for y = x it equals −2 d̄/m exactly, where d̄ is the mean off-diagonal distance. For N(0, σ²) vs
/// N(μ, σ²) in 1D its population value is 2·(s√(2/π) e^{−μ²/(2s²)} + μ(1 − 2Φ(−μ/s))) − 2 s√(2/π),
/// s = √2 σ. O(m² + n² + mn), OpenMP-parallel over rows, bitwise independent of the thread count.
inline double energy_distance(const Batch<double>& x, const Batch<double>& y) {
  detail::require_point_sets(x, y);
  const auto kernel = [](double d2) noexcept { return std::sqrt(d2); };
  const auto m = static_cast<double>(x.rows());
  const auto n = static_cast<double>(y.rows());
  const double xx = 2.0 * detail::within_pair_sum(x, kernel) / (m * (m - 1.0));
  const double yy = 2.0 * detail::within_pair_sum(y, kernel) / (n * (n - 1.0));
  const double xy = detail::cross_pair_sum(x, y, kernel) / (m * n);
  return 2.0 * xy - xx - yy;
}

/// Exact Wasserstein-1 distance between the empirical distributions of two 1D samples of any sizes
/// (for equal sizes: the mean of |a_(i) − b_(i)| over sorted values). Needs non-empty, finite
/// input.
inline double wasserstein1_1d(std::span<const double> a, std::span<const double> b) {
  ddpm::detail::require(!a.empty(), "a", "an empty sample", "at least 1 value");
  ddpm::detail::require(!b.empty(), "b", "an empty sample", "at least 1 value");
  for (double v : a) ddpm::detail::require(std::isfinite(v), "a", v, "finite values only");
  for (double v : b) ddpm::detail::require(std::isfinite(v), "b", v, "finite values only");
  std::vector<double> sa(a.begin(), a.end());
  std::vector<double> sb(b.begin(), b.end());
  std::sort(sa.begin(), sa.end());
  std::sort(sb.begin(), sb.end());
  return detail::wasserstein1_sorted(sa, sb);
}

/// Sliced Wasserstein-1: the mean over `projections` random unit directions θ (uniform on the
/// sphere, drawn from `seed`) of the exact 1D W1 between x·θ and y·θ. Sizes may differ: the 1D W1
/// is exact between the two empirical distributions (merged quantile steps, no interpolation). In
/// 1D every direction is ±1, so this is the exact W1. The same seed gives the same directions, so
/// compare models with one seed. OpenMP-parallel over directions, bitwise independent of the
/// thread count. Cost O(projections · ((m + n) · dim + m log m + n log n)); workspace
/// (m + n + dim) doubles per thread.
inline double sliced_wasserstein1(const Batch<double>& x, const Batch<double>& y,
                                  Index projections = kDefaultProjections, std::uint64_t seed = 0) {
  detail::require_point_sets(x, y);
  ddpm::detail::require(projections >= 1 && projections <= (Index{1} << 31), "projections",
                        projections, "1 to 2^31");
  const Index dim = x.cols();
  // One worker per thread, each with its own workspace column, takes a contiguous range of
  // directions; every direction's W1 depends only on (seed, direction index), so the partition
  // does not change the result.
  const Index workers = std::clamp<Index>(ddpm::detail::max_threads(), 1, projections);
  Eigen::MatrixXd px(x.rows(), workers);  // column w: x projected by worker w
  Eigen::MatrixXd py(y.rows(), workers);
  Eigen::MatrixXd directions(dim, workers);
  std::vector<double> w1(static_cast<std::size_t>(projections), 0.0);
  const CounterRng rng(seed);
  ddpm::detail::parallel_for(workers, [&](Index w) {
    double* theta = directions.col(w).data();
    double* a = px.col(w).data();
    double* b = py.col(w).data();
    const Index begin = projections * w / workers;
    const Index end = projections * (w + 1) / workers;
    for (Index p = begin; p < end; ++p) {
      rng.normals(stream::projections, static_cast<std::uint32_t>(p), 0, theta, dim);
      double norm2 = 0.0;
      for (Index k = 0; k < dim; ++k) norm2 += theta[k] * theta[k];
      const double inv_norm = norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 0.0;
      for (Index k = 0; k < dim; ++k) theta[k] *= inv_norm;
      detail::project(x, theta, a);
      detail::project(y, theta, b);
      std::sort(a, a + x.rows());
      std::sort(b, b + y.rows());
      w1[static_cast<std::size_t>(p)] = detail::wasserstein1_sorted(
          std::span<const double>(a, static_cast<std::size_t>(x.rows())),
          std::span<const double>(b, static_cast<std::size_t>(y.rows())));
    }
  });
  double sum = 0.0;
  for (double value : w1) sum += value;
  return sum / static_cast<double>(projections);
}

/// Settings of sample_quality and metric_floor.
struct QualityOptions {
  std::vector<double> bandwidths{kDefaultBandwidths.begin(), kDefaultBandwidths.end()};  ///< MMD
  Index projections = kDefaultProjections;  ///< sliced W1 directions
  std::uint64_t projection_seed = 0;        ///< sliced W1 direction seed
};

/// The three metrics of one comparison.
struct SampleQuality {
  double mmd2 = 0.0;       ///< mmd2_rbf
  double energy = 0.0;     ///< energy_distance
  double sliced_w1 = 0.0;  ///< sliced_wasserstein1
};

/// All three metrics between `x` (e.g. model samples) and `y` (e.g. fresh data).
inline SampleQuality sample_quality(const Batch<double>& x, const Batch<double>& y,
                                    const QualityOptions& options = {}) {
  SampleQuality quality;
  quality.mmd2 = mmd2_rbf(x, y, options.bandwidths);
  quality.energy = energy_distance(x, y);
  quality.sliced_w1 = sliced_wasserstein1(x, y, options.projections, options.projection_seed);
  return quality;
}

/// The metrics' floor at size n: sample_quality between two independent data sets draw(n, seed_a)
/// and draw(n, seed_b). A model whose samples score at this level is indistinguishable from the
/// data at this sample size. `draw(n, seed)` returns an Eigen matrix of n rows (float or double; it
/// is cast to double), e.g.
///
///   auto moons = [](Index n, std::uint64_t seed) {
///     return data::sample_toy2d(data::ToyDataset::moons, n, seed);
///   };
///   eval::SampleQuality floor = eval::metric_floor(moons, 5000);
template <class Draw>
  requires requires(Draw& draw, Index n, std::uint64_t seed) {
    draw(n, seed).template cast<double>();
  }
SampleQuality metric_floor(Draw&& draw, Index n, const QualityOptions& options = {},
                           std::uint64_t seed_a = 1, std::uint64_t seed_b = 2) {
  ddpm::detail::require(n >= 2, "n", n, "n >= 2");
  ddpm::detail::require(seed_a != seed_b, "seed_b", seed_b,
                        "a seed different from seed_a (else both sets are the same)");
  const Batch<double> a = draw(n, seed_a).template cast<double>();
  const Batch<double> b = draw(n, seed_b).template cast<double>();
  const std::string allowed = "a matrix with n = " + ddpm::detail::to_text(n) + " rows";
  ddpm::detail::require_shape(a.rows() == n, "draw(n, seed_a)", a.rows(), a.cols(), allowed);
  ddpm::detail::require_shape(b.rows() == n, "draw(n, seed_b)", b.rows(), b.cols(), allowed);
  return sample_quality(a, b, options);
}

}  // namespace ddpm::eval
