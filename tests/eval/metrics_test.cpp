// SPDX-License-Identifier: MIT
// Tests of the sample-quality metrics against closed forms, exact identities and bad input.
#include "ddpm/eval/metrics.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <vector>

#include "ddpm/data/toy2d.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace metrics_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::InvalidArgument;
namespace eval = ddpm::eval;

/// n points of N(shift·e_0, I_dim), reproducible from `seed`.
Batch<double> gaussian(Index n, Index dim, double shift, std::uint64_t seed) {
  Batch<double> x(n, dim);
  ddpm::CounterRng(seed).fill_normal(x, ddpm::stream::user, 0, 0);
  x.col(0).array() += shift;
  return x;
}

/// Standard normal CDF.
double normal_cdf(double z) { return 0.5 * std::erfc(-z / std::numbers::sqrt2); }

/// E|Z| for Z ~ N(mu, s²) (folded normal mean).
double folded_normal_mean(double mu, double s) {
  return s * std::sqrt(2.0 / std::numbers::pi) * std::exp(-mu * mu / (2.0 * s * s)) +
         mu * (1.0 - 2.0 * normal_cdf(-mu / s));
}

/// E|Z| for Z ~ N(m, s² I_2) with |m| = nu (Rice mean): s√(π/2) L_{1/2}(−nu²/(2s²)).
double rice_mean(double nu, double s) {
  const double x = -nu * nu / (2.0 * s * s);
  const double laguerre = std::exp(x / 2.0) * ((1.0 - x) * std::cyl_bessel_i(0.0, -x / 2.0) -
                                               x * std::cyl_bessel_i(1.0, -x / 2.0));
  return s * std::sqrt(std::numbers::pi / 2.0) * laguerre;
}

/// Population MMD² with the summed RBF kernel between N(0, I_d) and N(mu, I_d):
/// E k_h(Z) for Z ~ N(m, 2 I_d) is (h²/(h²+2))^{d/2} exp(−|m|²/(2(h²+2))).
double gaussian_shift_mmd2(double mu, double dim) {
  double sum = 0.0;
  for (double h : eval::kDefaultBandwidths) {
    const double h2 = h * h;
    sum += 2.0 * std::pow(h2 / (h2 + 2.0), dim / 2.0) *
           (1.0 - std::exp(-mu * mu / (2.0 * (h2 + 2.0))));
  }
  return sum;
}

}  // namespace

TEST_CASE("metrics reject bad input") {
  const Batch<double> x = gaussian(10, 2, 0.0, 1);
  const Batch<double> y3 = gaussian(10, 3, 0.0, 2);
  const Batch<double> one = gaussian(1, 2, 0.0, 3);
  CHECK_THROWS_WITH_AS(eval::mmd2_rbf(x, y3),
                       "ddpm: invalid y = 10x3 matrix; allowed: as many columns as x (2)",
                       InvalidArgument);
  CHECK_THROWS_AS(eval::energy_distance(x, y3), InvalidArgument);
  CHECK_THROWS_AS(eval::sliced_wasserstein1(x, y3), InvalidArgument);
  CHECK_THROWS_WITH_AS(eval::energy_distance(one, x),
                       "ddpm: invalid x = 1x2 matrix; allowed: at least 2 points (rows) of "
                       "dimension >= 1",
                       InvalidArgument);
  CHECK_THROWS_AS(eval::mmd2_rbf(x, one), InvalidArgument);

  Batch<double> bad = x;
  bad(3, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(eval::mmd2_rbf(x, bad),
                       "ddpm: invalid y = nan at row 3, column 1; allowed: finite values only",
                       InvalidArgument);
  bad(3, 1) = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(eval::energy_distance(bad, x), InvalidArgument);
  CHECK_THROWS_AS(eval::sliced_wasserstein1(x, bad), InvalidArgument);

  const std::vector<double> no_bandwidths;
  const std::vector<double> negative{0.5, -1.0};
  CHECK_THROWS_AS(eval::mmd2_rbf(x, x, no_bandwidths), InvalidArgument);
  CHECK_THROWS_WITH_AS(eval::mmd2_rbf(x, x, negative),
                       "ddpm: invalid bandwidth = -1; allowed: finite and > 0", InvalidArgument);
  CHECK_THROWS_AS(eval::sliced_wasserstein1(x, x, 0), InvalidArgument);
  const std::vector<double> empty;
  const std::vector<double> finite{1.0};
  CHECK_THROWS_AS(eval::wasserstein1_1d(empty, finite), InvalidArgument);
  const std::vector<double> with_inf{1.0, std::numeric_limits<double>::infinity()};
  CHECK_THROWS_AS(eval::wasserstein1_1d(finite, with_inf), InvalidArgument);
}

TEST_CASE("a set compared with itself") {
  // n = 300 points of N(0, I_2). The unbiased estimators are not 0 for y = x: they drop the i = j
  // terms within sets but keep them across, which gives exactly −2(K − k̄)/m for MMD² (K = 6 =
  // k(x, x), k̄ the mean off-diagonal kernel) and −2 d̄/m for the energy distance.
  const Index m = 300;
  const Batch<double> x = gaussian(m, 2, 0.0, 4);
  double kernel_sum = 0.0;
  double distance_sum = 0.0;
  for (Index i = 0; i < m; ++i) {
    for (Index j = 0; j < m; ++j) {
      if (i == j) continue;
      const double d2 = (x.row(i) - x.row(j)).squaredNorm();
      for (double h : eval::kDefaultBandwidths) kernel_sum += std::exp(-d2 / (2.0 * h * h));
      distance_sum += std::sqrt(d2);
    }
  }
  const double pairs = static_cast<double>(m) * static_cast<double>(m - 1);
  const double k_bar = kernel_sum / pairs;
  const double d_bar = distance_sum / pairs;
  const double md = static_cast<double>(m);

  // Relative 1e-10: both sides are sums of ~10^5 terms in different orders (rounding ~1e-13).
  const double mmd2 = eval::mmd2_rbf(x, x);
  CHECK(mmd2 == doctest::Approx(-2.0 * (6.0 - k_bar) / md).epsilon(1e-10));
  CHECK(mmd2 < 0.0);
  CHECK(mmd2 > -2.0 * 6.0 / md);
  const double energy = eval::energy_distance(x, x);
  CHECK(energy == doctest::Approx(-2.0 * d_bar / md).epsilon(1e-10));
  CHECK(energy < 0.0);
  // Sorted projections of one set coincide, so sliced W1 is exactly 0.
  CHECK(eval::sliced_wasserstein1(x, x) == 0.0);
}

TEST_CASE("MMD² is near 0 for one distribution and matches the closed form under a shift") {
  // n = 2000 points of N(0, I_2) per set. Over 40 seeds the null MMD² had sd 1.3e-3 and the shifted
  // one (mu = 1) sd 1.9e-2; tolerances are ~4 sds.
  const Batch<double> x = gaussian(2000, 2, 0.0, 10);
  const Batch<double> same = gaussian(2000, 2, 0.0, 11);
  const Batch<double> shifted = gaussian(2000, 2, 1.0, 11);
  const double null_value = eval::mmd2_rbf(x, same);
  CHECK(std::abs(null_value) < 5.5e-3);
  const double shift_value = eval::mmd2_rbf(x, shifted);
  const double expected = gaussian_shift_mmd2(1.0, 2.0);  // ≈ 0.2645
  CHECK(shift_value == doctest::Approx(expected).epsilon(0.08 / expected));
  CHECK(shift_value > 20.0 * 5.5e-3);
}

TEST_CASE("MMD² equals the direct double sum") {
  SUBCASE("one bandwidth") {
    // n = 50 and 40 points, h = 0.7: an independent O(n²) evaluation; relative 1e-12 for rounding.
    const Batch<double> a = gaussian(50, 3, 0.0, 12);
    const Batch<double> b = gaussian(40, 3, 0.3, 13);
    const std::vector<double> h{0.7};
    const auto k = [](const Batch<double>& p, Index i, const Batch<double>& q, Index j) {
      return std::exp(-(p.row(i) - q.row(j)).squaredNorm() / (2.0 * 0.49));
    };
    double aa = 0.0, bb = 0.0, ab = 0.0;
    for (Index i = 0; i < 50; ++i)
      for (Index j = 0; j < 50; ++j) aa += i == j ? 0.0 : k(a, i, a, j);
    for (Index i = 0; i < 40; ++i)
      for (Index j = 0; j < 40; ++j) bb += i == j ? 0.0 : k(b, i, b, j);
    for (Index i = 0; i < 50; ++i)
      for (Index j = 0; j < 40; ++j) ab += k(a, i, b, j);
    const double direct = aa / (50.0 * 49.0) + bb / (40.0 * 39.0) - 2.0 * ab / (50.0 * 40.0);
    CHECK(eval::mmd2_rbf(a, b, h) == doctest::Approx(direct).epsilon(1e-12));
  }
  SUBCASE("bandwidths sharing one exp") {
    // 0.3, 0.6, 1.2 form one chain of halvings computed as exp(-a)^4; 0.45 stands alone. The
    // chained values differ from direct exps by a few ulps, so relative 1e-12.
    const Batch<double> a = gaussian(60, 2, 0.0, 14);
    const Batch<double> b = gaussian(45, 2, 0.2, 15);
    const std::vector<double> h{0.6, 0.45, 1.2, 0.3};
    double aa = 0.0, bb = 0.0, ab = 0.0;
    const auto k = [&h](const Batch<double>& p, Index i, const Batch<double>& q, Index j) {
      double sum = 0.0;
      for (double hb : h) sum += std::exp(-(p.row(i) - q.row(j)).squaredNorm() / (2.0 * hb * hb));
      return sum;
    };
    for (Index i = 0; i < 60; ++i)
      for (Index j = 0; j < 60; ++j) aa += i == j ? 0.0 : k(a, i, a, j);
    for (Index i = 0; i < 45; ++i)
      for (Index j = 0; j < 45; ++j) bb += i == j ? 0.0 : k(b, i, b, j);
    for (Index i = 0; i < 60; ++i)
      for (Index j = 0; j < 45; ++j) ab += k(a, i, b, j);
    const double direct = aa / (60.0 * 59.0) + bb / (45.0 * 44.0) - 2.0 * ab / (60.0 * 45.0);
    CHECK(eval::mmd2_rbf(a, b, h) == doctest::Approx(direct).epsilon(1e-12));
  }
}

TEST_CASE("energy distance of Gaussians matches the closed form") {
  // N(0, I) vs N(mu e_0, I), mu = 1. X − Y ~ N(mu e_0, 2I) and X − X' ~ N(0, 2I), so in 1D
  // D = 2 folded(mu, √2) − 2·√2·√(2/π) ≈ 0.5418 and in 2D D = 2 rice(mu, √2) − 2·√2·√(π/2) ≈
  // 0.4298. Each estimate averages 8 independent pairs of n = 2000 sets: one pair had sd 0.037 (1D)
  // and 0.030 (2D) over 40 seeds, so the average has sd ~0.013 / 0.011; tolerance 0.05 / 0.04 (~4
  // sds).
  const double s = std::numbers::sqrt2;
  const double expected_1d =
      2.0 * folded_normal_mean(1.0, s) - 2.0 * s * std::sqrt(2.0 / std::numbers::pi);
  const double expected_2d = 2.0 * rice_mean(1.0, s) - 2.0 * s * std::sqrt(std::numbers::pi / 2.0);
  REQUIRE(expected_1d == doctest::Approx(0.54181).epsilon(1e-4));
  REQUIRE(expected_2d == doctest::Approx(0.42983).epsilon(1e-4));
  double sum_1d = 0.0;
  double sum_2d = 0.0;
  const int replicates = 8;
  for (int r = 0; r < replicates; ++r) {
    const auto seed = static_cast<std::uint64_t>(100 + 2 * r);
    sum_1d += eval::energy_distance(gaussian(2000, 1, 0.0, seed), gaussian(2000, 1, 1.0, seed + 1));
    sum_2d += eval::energy_distance(gaussian(2000, 2, 0.0, seed), gaussian(2000, 2, 1.0, seed + 1));
  }
  CHECK(std::abs(sum_1d / replicates - expected_1d) < 0.05);
  CHECK(std::abs(sum_2d / replicates - expected_2d) < 0.04);
  // One distribution, n = 2000 in 2D: over 40 seeds sd 1.2e-3; tolerance 5e-3 (~4 sds).
  CHECK(std::abs(eval::energy_distance(gaussian(2000, 2, 0.0, 50), gaussian(2000, 2, 0.0, 51))) <
        5e-3);
}

TEST_CASE("1D Wasserstein-1 is exact for any sizes") {
  // {0, 1} vs {0, 0.5, 1}: the quantile functions differ by 0.5 on q in [1/3, 2/3), so W1 = 1/6.
  const std::vector<double> a{1.0, 0.0};
  const std::vector<double> b{0.5, 1.0, 0.0};
  CHECK(eval::wasserstein1_1d(a, b) == doctest::Approx(1.0 / 6.0).epsilon(1e-15));
  CHECK(eval::wasserstein1_1d(b, a) == doctest::Approx(1.0 / 6.0).epsilon(1e-15));
  // A sample and itself twice over are the same distribution.
  const std::vector<double> twice{1.0, 0.0, 0.0, 1.0};
  CHECK(eval::wasserstein1_1d(a, twice) == 0.0);
  // Equal sizes: mean of |sorted differences|, here (|0−2| + |1−5|)/2 = 3.
  const std::vector<double> c{5.0, 2.0};
  CHECK(eval::wasserstein1_1d(a, c) == 3.0);

  // In 1D every direction is ±1, so sliced W1 is the exact W1 (up to rounding of the sign flip).
  const Batch<double> x = gaussian(20000, 1, 0.0, 20);
  const Batch<double> y = gaussian(15000, 1, 1.0, 21);
  const std::vector<double> xs(x.data(), x.data() + x.size());
  const std::vector<double> ys(y.data(), y.data() + y.size());
  const double exact = eval::wasserstein1_1d(xs, ys);
  CHECK(eval::sliced_wasserstein1(x, y, 3) == doctest::Approx(exact).epsilon(1e-12));
  // N(0,1) vs N(1,1) are a shift apart, so W1 = |mu| = 1. The empirical W1 at these sizes has sd
  // ≈ √(1/20000 + 1/15000) ≈ 0.011 (measured 0.0085 at 20000 vs 20000); tolerance 0.045.
  CHECK(std::abs(exact - 1.0) < 0.045);
}

TEST_CASE("sliced W1 in 2D averages |θ·mu| over uniform directions") {
  // y = x + mu e_0 exactly, so each direction's W1 is |θ·mu| and sliced W1 estimates
  // E|cos φ|·|mu| = (2/π)|mu| with Monte Carlo sd sd(|cos φ|)/√P = 0.308/64 ≈ 0.0048 at P = 4096
  // directions; tolerance 0.02 (4 sds). The identity holds for any n; n = 100 points keeps it fast.
  const double mu = 1.5;
  const Batch<double> x = gaussian(100, 2, 0.0, 30);
  const Batch<double> y = gaussian(100, 2, mu, 30);
  const double sw = eval::sliced_wasserstein1(x, y, 4096, 5);
  CHECK(std::abs(sw / mu - 2.0 / std::numbers::pi) < 0.02);
  // Another seed draws other directions: a different (but as accurate) estimate.
  const double other = eval::sliced_wasserstein1(x, y, 4096, 6);
  CHECK(other != sw);
  CHECK(std::abs(other / mu - 2.0 / std::numbers::pi) < 0.02);
  CHECK(eval::sliced_wasserstein1(x, y, 4096, 5) == sw);
}

#ifdef _OPENMP
TEST_CASE("metrics do not depend on the thread count") {
  // Odd sizes exercise the unpaired middle row of the balanced within-set loop.
  const Batch<double> x = gaussian(501, 3, 0.0, 40);
  const Batch<double> y = gaussian(400, 3, 0.5, 41);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const eval::SampleQuality one = eval::sample_quality(x, y);
  omp_set_num_threads(2);
  const eval::SampleQuality two = eval::sample_quality(x, y);
  omp_set_num_threads(threads);
  CHECK(one.mmd2 == two.mmd2);
  CHECK(one.energy == two.energy);
  CHECK(one.sliced_w1 == two.sliced_w1);
}
#endif

TEST_CASE("sample_quality and metric_floor") {
  const auto moons = [](Index n, std::uint64_t seed) {
    return ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::moons, n, seed);
  };
  const Index n = 1000;
  const eval::SampleQuality floor = eval::metric_floor(moons, n);
  // The floor is sample_quality between draw(n, 1) and draw(n, 2), bit for bit.
  const Batch<double> a = moons(n, 1).cast<double>();
  const Batch<double> b = moons(n, 2).cast<double>();
  const eval::SampleQuality direct = eval::sample_quality(a, b);
  CHECK(floor.mmd2 == direct.mmd2);
  CHECK(floor.energy == direct.energy);
  CHECK(floor.sliced_w1 == direct.sliced_w1);
  CHECK(direct.mmd2 == eval::mmd2_rbf(a, b));
  CHECK(direct.energy == eval::energy_distance(a, b));
  CHECK(direct.sliced_w1 == eval::sliced_wasserstein1(a, b));
  // Two moons samples of 1000 are close, an 8gaussians sample is far: the floor separates them.
  const Batch<double> other =
      ddpm::data::sample_toy2d(ddpm::data::ToyDataset::eight_gaussians, n, 1);
  const eval::SampleQuality far = eval::sample_quality(other, b);
  CHECK(far.mmd2 > 10.0 * std::abs(floor.mmd2));
  CHECK(far.energy > 10.0 * std::abs(floor.energy));
  CHECK(far.sliced_w1 > 5.0 * floor.sliced_w1);

  CHECK_THROWS_AS(eval::metric_floor(moons, 1), InvalidArgument);
  CHECK_THROWS_AS(eval::metric_floor(moons, n, {}, 3, 3), InvalidArgument);
  const auto short_draw = [](Index n_points, std::uint64_t seed) {
    return ddpm::data::sample_toy2d(ddpm::data::ToyDataset::moons, n_points - 1, seed);
  };
  CHECK_THROWS_WITH_AS(eval::metric_floor(short_draw, 10),
                       "ddpm: invalid draw(n, seed_a) = 9x2 matrix; allowed: a matrix with n = 10 "
                       "rows",
                       InvalidArgument);
}

}  // namespace metrics_test
