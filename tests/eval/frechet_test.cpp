// SPDX-License-Identifier: MIT
// Tests of feature statistics and the Fréchet distance against closed forms, invariances and bad
// input.
#include "ddpm/eval/frechet.hpp"

#include <doctest/doctest.h>

#include <Eigen/QR>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ddpm/core/rng.hpp"
#include "support.hpp"

namespace frechet_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::eval::GaussianStats;
namespace eval = ddpm::eval;

/// n rows of N(mean, L Lᵀ): mean + z Lᵀ with z standard normal, reproducible from `seed`.
Batch<double> correlated(Index n, const Eigen::VectorXd& mean, const Eigen::MatrixXd& factor,
                         std::uint64_t seed) {
  const Batch<double> z = ddpm::test::random_batch(n, mean.size(), seed);
  Batch<double> x = z * factor.transpose();
  x.rowwise() += mean.transpose();
  return x;
}

GaussianStats stats_of(Eigen::VectorXd mean, Eigen::MatrixXd covariance) {
  return {std::move(mean), std::move(covariance), 0};
}

/// The symmetric square root of a 2x2 SPD matrix: (A + √det A · I) / √(tr A + 2√det A).
Eigen::Matrix2d sqrt_2x2(const Eigen::Matrix2d& a) {
  const double s = std::sqrt(a.determinant());
  return (a + s * Eigen::Matrix2d::Identity()) / std::sqrt(a.trace() + 2.0 * s);
}

/// A fixed, well-conditioned non-diagonal 5x5 covariance.
Eigen::MatrixXd example_covariance() {
  Eigen::MatrixXd factor(5, 5);
  factor << 1.0, 0.0, 0.0, 0.0, 0.0,  //
      0.5, 1.2, 0.0, 0.0, 0.0,        //
      -0.3, 0.4, 0.8, 0.0, 0.0,       //
      0.2, -0.1, 0.6, 1.5, 0.0,       //
      0.7, 0.3, -0.2, 0.1, 0.5;
  return factor * factor.transpose();
}

}  // namespace

TEST_CASE_TEMPLATE("feature_statistics is the mean and the unbiased covariance", Real, float,
                   double) {
  // Centred rows (−2, −2), (0, 2), (2, 0): Σ x xᵀ = [[8, 4], [4, 8]], divided by n − 1 = 2. Every
  // value is exact in float and double.
  Batch<Real> x(3, 2);
  x << 1, 2, 3, 6, 5, 4;
  const GaussianStats s = eval::feature_statistics(x);
  CHECK(s.count == 3);
  CHECK(s.mean == Eigen::Vector2d(3.0, 4.0));
  Eigen::Matrix2d expected;
  expected << 4.0, 2.0, 2.0, 4.0;
  CHECK(s.covariance == expected);

  SUBCASE("float input gives the statistics of its exact double values") {
    const Batch<Real> y = ddpm::test::random_batch<Real>(50, 4, 1);
    const Batch<double> y_double = y.template cast<double>();
    const GaussianStats from_real = eval::feature_statistics(y);
    const GaussianStats from_double = eval::feature_statistics(y_double);
    CHECK(from_real.mean == from_double.mean);
    CHECK(from_real.covariance == from_double.covariance);
    CHECK(from_real.covariance == from_real.covariance.transpose());
  }
}

TEST_CASE("feature_statistics is centred before it squares") {
  // Values near 1e8 with spread 2: the one-pass E[x²] − E[x]² would lose all digits (1e16 vs 4).
  Batch<double> x(3, 1);
  x << 1e8 + 1.0, 1e8 + 3.0, 1e8 + 5.0;
  const GaussianStats s = eval::feature_statistics(x);
  CHECK(s.mean(0) == 1e8 + 3.0);
  CHECK(s.covariance(0, 0) == 4.0);
}

TEST_CASE("feature_statistics over several row blocks equals the direct centred product") {
  // 10000 rows span three accumulation blocks of 4096, the last one partial. Relative 1e-12: only
  // the order of the additions differs.
  const Batch<double> x =
      correlated(10000, Eigen::VectorXd::Constant(5, -4.0), example_covariance(), 5);
  const GaussianStats s = eval::feature_statistics(x);
  const Eigen::VectorXd mean = x.colwise().mean().transpose();
  const Eigen::MatrixXd centred = x.rowwise() - mean.transpose();
  const Eigen::MatrixXd direct = centred.transpose() * centred / 9999.0;
  CHECK((s.mean - mean).norm() <= 1e-12 * mean.norm());
  CHECK((s.covariance - direct).norm() <= 1e-12 * direct.norm());
}

TEST_CASE("feature_statistics of 200k Gaussian samples is within Monte Carlo error") {
  // n = 200000 draws of N(mu, Σ) in 3D. The sample mean has sd √(Σ_ii / n) and the sample
  // covariance entry (i, j) sd √((Σ_ii Σ_jj + Σ_ij²) / n) (Gaussian fourth moments); every entry
  // must be within 5 sds (about 0.005 here), and the value is fixed by the seed.
  const Index n = 200000;
  const Eigen::Vector3d mean(1.0, -2.0, 0.5);
  Eigen::Matrix3d factor;
  factor << 1.0, 0.0, 0.0, 0.6, 0.8, 0.0, -0.5, 0.3, 1.2;
  const Eigen::Matrix3d covariance = factor * factor.transpose();
  const GaussianStats s = eval::feature_statistics(correlated(n, mean, factor, 7));
  CHECK(s.count == n);
  const auto samples = static_cast<double>(n);
  for (Index i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(std::abs(s.mean(i) - mean(i)) < 5.0 * std::sqrt(covariance(i, i) / samples));
    for (Index j = 0; j < 3; ++j) {
      CAPTURE(j);
      const double sd = std::sqrt(
          (covariance(i, i) * covariance(j, j) + covariance(i, j) * covariance(i, j)) / samples);
      CHECK(std::abs(s.covariance(i, j) - covariance(i, j)) < 5.0 * sd);
    }
  }
}

TEST_CASE("the Fréchet distance of a set and itself is 0") {
  // 400 correlated points in 5D with a mean far from 0. Rounding in the eigen- and singular value
  // decompositions is ~1e-15 of tr Σ, so 1e-9 relative leaves a wide margin.
  const Batch<double> x =
      correlated(400, Eigen::VectorXd::Constant(5, 3.0), example_covariance(), 3);
  const GaussianStats s = eval::feature_statistics(x);
  const double scale = s.covariance.trace();
  CHECK(eval::frechet_distance(s, s) >= 0.0);
  CHECK(eval::frechet_distance(s, s) <= 1e-9 * scale);
  CHECK(eval::frechet_distance(x, x) <= 1e-9 * scale);
}

TEST_CASE("the Fréchet distance matches closed forms") {
  // Relative 1e-12: each case is a few O(d³) decompositions of well-conditioned matrices.
  SUBCASE("1D Gaussians: (m1 − m2)² + (s1 − s2)²") {
    const GaussianStats a = stats_of(Eigen::VectorXd::Constant(1, 0.5),
                                     Eigen::MatrixXd::Constant(1, 1, 4.0));  // s1 = 2
    const GaussianStats b = stats_of(Eigen::VectorXd::Constant(1, -1.0),
                                     Eigen::MatrixXd::Constant(1, 1, 0.25));  // s2 = 0.5
    CHECK(eval::frechet_distance(a, b) == doctest::Approx(1.5 * 1.5 + 1.5 * 1.5).epsilon(1e-12));
  }
  SUBCASE("commuting (diagonal) covariances: |Δμ|² + Σ (√a_i − √b_i)²") {
    const Eigen::Vector4d var_a(1.0, 2.0, 0.5, 9.0);
    const Eigen::Vector4d var_b(4.0, 0.3, 0.5, 1.0);
    const Eigen::Vector4d mean_a(0.0, 1.0, 2.0, 3.0);
    const Eigen::Vector4d mean_b(1.0, 1.0, -2.0, 3.5);
    const double expected =
        (mean_a - mean_b).squaredNorm() + (var_a.cwiseSqrt() - var_b.cwiseSqrt()).squaredNorm();
    const GaussianStats a = stats_of(mean_a, var_a.asDiagonal().toDenseMatrix());
    const GaussianStats b = stats_of(mean_b, var_b.asDiagonal().toDenseMatrix());
    CHECK(eval::frechet_distance(a, b) == doctest::Approx(expected).epsilon(1e-12));
  }
  SUBCASE("non-commuting 2x2 covariances, against the 2x2 square-root formulas") {
    // M = Σ1^{1/2} Σ2 Σ1^{1/2} is SPD, so tr √M = √(tr M + 2√det M); Σ1^{1/2} also in closed form.
    Eigen::Matrix2d s1, s2;
    s1 << 2.0, 0.5, 0.5, 1.0;
    s2 << 1.0, -0.3, -0.3, 3.0;
    REQUIRE((s1 * s2 - s2 * s1).norm() > 0.5);
    const Eigen::Matrix2d root = sqrt_2x2(s1);
    const Eigen::Matrix2d m = root * s2 * root;
    const double cross = std::sqrt(m.trace() + 2.0 * std::sqrt(m.determinant()));
    const Eigen::Vector2d mean_a(0.3, -0.2);
    const Eigen::Vector2d mean_b(-0.5, 0.4);
    const double expected = (mean_a - mean_b).squaredNorm() + s1.trace() + s2.trace() - 2.0 * cross;
    CHECK(eval::frechet_distance(stats_of(mean_a, s1), stats_of(mean_b, s2)) ==
          doctest::Approx(expected).epsilon(1e-12));
  }
  SUBCASE("a full covariance and c² times it: |Δμ|² + (1 − c)² tr Σ") {
    // Σ^{1/2} (c² Σ) Σ^{1/2} = (c Σ)², so the cross term is c tr Σ.
    const Eigen::MatrixXd s = example_covariance();
    const double c = 1.7;
    const Eigen::VectorXd mean_a = Eigen::VectorXd::LinSpaced(5, -1.0, 1.0);
    const Eigen::VectorXd mean_b = Eigen::VectorXd::Constant(5, 0.25);
    const double expected = (mean_a - mean_b).squaredNorm() + (1.0 - c) * (1.0 - c) * s.trace();
    CHECK(eval::frechet_distance(stats_of(mean_a, s), stats_of(mean_b, c * c * s)) ==
          doctest::Approx(expected).epsilon(1e-12));
  }
}

TEST_CASE("the Fréchet distance is symmetric and invariant under rigid motions") {
  // Two different 300-point sets in 4D; Q is a random orthogonal matrix (from a QR factorization)
  // and t a shift applied to both. Relative 1e-12: the results agree up to rounding only.
  Eigen::MatrixXd factor = example_covariance().topLeftCorner(4, 4);
  const Batch<double> x = correlated(300, Eigen::VectorXd::Zero(4), factor, 11);
  factor(3, 0) = -1.0;
  const Batch<double> y = correlated(300, Eigen::VectorXd::Constant(4, 0.4), factor, 12);
  const double d = eval::frechet_distance(x, y);
  REQUIRE(d > 0.1);
  CHECK(eval::frechet_distance(y, x) == doctest::Approx(d).epsilon(1e-12));

  const Batch<double> random = ddpm::test::random_batch(4, 4, 13);
  const Eigen::MatrixXd q = Eigen::HouseholderQR<Eigen::MatrixXd>(random).householderQ();
  const Eigen::RowVectorXd t = Eigen::RowVectorXd::LinSpaced(4, -5.0, 2.0);
  Batch<double> x_moved = x * q.transpose();
  x_moved.rowwise() += t;
  Batch<double> y_moved = y * q.transpose();
  y_moved.rowwise() += t;
  CHECK(eval::frechet_distance(x_moved, y_moved) == doctest::Approx(d).epsilon(1e-12));
}

TEST_CASE("rank-deficient covariances (fewer samples than features) stay accurate") {
  // 6 points in 20D: each covariance has rank 5 and 15 round-off eigenvalues near 0, which must
  // neither give NaN nor ~1e-8 terms (as square roots of the eigenvalues of Σ1^{1/2} Σ2 Σ1^{1/2}
  // would). y = 1.5 x has Σ_y = 2.25 Σ_x, so the closed form |Δμ|² + 0.25 tr Σ_x holds; relative
  // 1e-10 (measured 1e-14; the eigenvalue route is off by 1e-7 here).
  const Batch<double> x = ddpm::test::random_batch(6, 20, 21);
  const Batch<double> y = 1.5 * x;
  const GaussianStats a = eval::feature_statistics(x);
  const GaussianStats b = eval::feature_statistics(y);
  const double expected = (a.mean - b.mean).squaredNorm() + 0.25 * a.covariance.trace();
  const double d = eval::frechet_distance(a, b);
  CHECK(std::isfinite(d));
  CHECK(d == doctest::Approx(expected).epsilon(1e-10));
  CHECK(eval::frechet_distance(a, a) <= 1e-12 * a.covariance.trace());

  SUBCASE("zero covariances: two point masses are |Δμ|² apart") {
    Batch<double> p(3, 2), r(2, 2);
    p << 1.0, 2.0, 1.0, 2.0, 1.0, 2.0;
    r << 4.0, -2.0, 4.0, -2.0;
    CHECK(eval::frechet_distance(p, r) == 25.0);
  }
}

TEST_CASE_TEMPLATE("frechet_distance of batches is that of their statistics", Real, float, double) {
  // Different numbers of rows are allowed; the result is bit for bit the statistics route.
  const Batch<Real> x = ddpm::test::random_batch<Real>(80, 3, 31);
  Batch<Real> y = ddpm::test::random_batch<Real>(60, 3, 32);
  y.col(1) *= Real(2);
  CHECK(eval::frechet_distance(x, y) ==
        eval::frechet_distance(eval::feature_statistics(x), eval::feature_statistics(y)));
}

TEST_CASE("bad input throws InvalidArgument naming the parameter") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Batch<double> good = ddpm::test::random_batch(5, 3, 41);

  SUBCASE("feature sets") {
    DDPM_CHECK_INVALID("features", eval::feature_statistics(Batch<double>(1, 3)));
    DDPM_CHECK_INVALID("features", eval::feature_statistics(Batch<float>(4, 0)));
    Batch<float> bad = good.cast<float>();
    bad(2, 1) = std::numeric_limits<float>::infinity();
    DDPM_CHECK_INVALID("features", eval::feature_statistics(bad));
    DDPM_CHECK_INVALID("a", eval::frechet_distance(Batch<double>(1, 3), good));
    DDPM_CHECK_INVALID("b", eval::frechet_distance(good, Batch<double>(5, 2)));
    Batch<double> with_nan = good;
    with_nan(0, 0) = nan;
    DDPM_CHECK_INVALID("b", eval::frechet_distance(good, with_nan));
    CHECK_THROWS_WITH_AS(eval::frechet_distance(good, with_nan),
                         "ddpm: invalid b = nan at row 0, column 0; allowed: finite values only",
                         ddpm::InvalidArgument);
  }
  SUBCASE("statistics") {
    const GaussianStats s = eval::feature_statistics(good);
    DDPM_CHECK_INVALID("a.mean", eval::frechet_distance(GaussianStats{}, s));
    GaussianStats wrong = s;
    wrong.covariance = Eigen::MatrixXd::Identity(3, 2);
    DDPM_CHECK_INVALID("b.covariance", eval::frechet_distance(s, wrong));
    wrong.covariance = Eigen::MatrixXd::Identity(2, 2);
    DDPM_CHECK_INVALID("a.covariance", eval::frechet_distance(wrong, s));
    const GaussianStats other = stats_of(Eigen::VectorXd::Zero(2), Eigen::MatrixXd::Identity(2, 2));
    DDPM_CHECK_INVALID("b.mean", eval::frechet_distance(s, other));
    wrong = s;
    wrong.mean(1) = nan;
    DDPM_CHECK_INVALID("a.mean", eval::frechet_distance(wrong, s));
    wrong = s;
    wrong.covariance(2, 0) = std::numeric_limits<double>::infinity();
    DDPM_CHECK_INVALID("b.covariance", eval::frechet_distance(s, wrong));
  }
}

}  // namespace frechet_test
