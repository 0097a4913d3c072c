// SPDX-License-Identifier: MIT
// Tests of the 2D toy distributions: names, argument checks, reproducibility, exact moments, the
// labeled sampler (labels are the draws' components, on the unlabeled sampler's points) and the
// mixture posterior.
#include "ddpm/data/toy2d.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include "support.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace toy2d_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::InvalidArgument;
using ddpm::data::sample_toy2d;
using ddpm::data::ToyDataset;

constexpr std::array<ToyDataset, 7> kAll{ToyDataset::swissroll,       ToyDataset::moons,
                                         ToyDataset::eight_gaussians, ToyDataset::checkerboard,
                                         ToyDataset::circles,         ToyDataset::pinwheel,
                                         ToyDataset::two_spirals};

// Moment checks use n = 20000 points and accept 4 standard errors, the SE estimated from the same
// sample (its sd / sqrt(n)): a correct sampler fails one check with probability ~6e-5.
constexpr Index kMomentSamples = 20000;
constexpr double kStandardErrors = 4.0;

/// Checks that the mean of `values` is within 4 estimated standard errors of `expected`.
void check_mean(const Eigen::ArrayXd& values, double expected, const std::string& what) {
  const auto n = static_cast<double>(values.size());
  const double mean = values.mean();
  const double sd = std::sqrt((values - mean).square().sum() / (n - 1.0));
  const double tolerance = kStandardErrors * sd / std::sqrt(n);
  INFO(what << ": mean " << mean << ", expected " << expected << ", tolerance " << tolerance);
  CHECK(std::abs(mean - expected) <= tolerance);
}

Eigen::ArrayXd column(const Batch<double>& x, Index j) { return x.col(j).array(); }

/// Distance from (px, py) to the arc of the unit circle around (cx, cy) between angles lo and hi.
double distance_to_arc(double px, double py, double cx, double cy, double lo, double hi) {
  const double angle = std::atan2(py - cy, px - cx);
  if (angle >= lo && angle <= hi) return std::abs(std::hypot(px - cx, py - cy) - 1.0);
  return std::min(std::hypot(px - cx - std::cos(lo), py - cy - std::sin(lo)),
                  std::hypot(px - cx - std::cos(hi), py - cy - std::sin(hi)));
}

Eigen::ArrayXd squared_radius(const Batch<double>& x) { return x.rowwise().squaredNorm().array(); }

}  // namespace

TEST_CASE("toy dataset names parse and print") {
  REQUIRE(ddpm::enum_names<ToyDataset>().size() == kAll.size());
  for (ToyDataset which : kAll) {
    CHECK(ddpm::parse_enum<ToyDataset>(ddpm::to_string(which)) == which);
  }
  CHECK(ddpm::parse_enum<ToyDataset>("8gaussians") == ToyDataset::eight_gaussians);
  CHECK(ddpm::parse_enum<ToyDataset>("2spirals") == ToyDataset::two_spirals);
  CHECK_THROWS_WITH_AS(ddpm::parse_enum<ToyDataset>("spiral"),
                       "ddpm: invalid dataset = spiral; allowed: swissroll, moons, 8gaussians, "
                       "checkerboard, circles, pinwheel or 2spirals",
                       InvalidArgument);
  CHECK_THROWS_AS(ddpm::parse_enum<ToyDataset>("Moons"), InvalidArgument);
  CHECK(ddpm::to_string(static_cast<ToyDataset>(7)) == "?");
}

TEST_CASE("sample_toy2d rejects bad arguments") {
  CHECK_THROWS_WITH_AS(sample_toy2d(ToyDataset::moons, -1, 0),
                       "ddpm: invalid n = -1; allowed: n >= 0", InvalidArgument);
  CHECK_THROWS_AS(sample_toy2d(ToyDataset::moons, 10, 0, -1), InvalidArgument);
  const Index limit = Index{1} << 32;
  CHECK_THROWS_AS(sample_toy2d(ToyDataset::moons, 2, 0, limit - 1), InvalidArgument);
  CHECK(sample_toy2d(ToyDataset::moons, 1, 0, limit - 1).rows() == 1);  // the last index is fine
  CHECK_THROWS_AS(sample_toy2d(static_cast<ToyDataset>(-1), 4, 0), InvalidArgument);
  CHECK(sample_toy2d(ToyDataset::moons, 0, 0).rows() == 0);
}

TEST_CASE_TEMPLATE("sample_toy2d is reproducible", Real, float, double) {
  for (ToyDataset which : kAll) {
    CAPTURE(ddpm::to_string(which));
    const Batch<Real> full = sample_toy2d<Real>(which, 100, 7);
    REQUIRE(full.rows() == 100);
    REQUIRE(full.cols() == 2);
    CHECK(full.allFinite());

    SUBCASE("same seed, same points") { CHECK(full == sample_toy2d<Real>(which, 100, 7)); }
    SUBCASE("a split batch gives the same points") {
      const Batch<Real> head = sample_toy2d<Real>(which, 37, 7, 0);
      const Batch<Real> tail = sample_toy2d<Real>(which, 63, 7, 37);
      CHECK(head == full.topRows(37));
      CHECK(tail == full.bottomRows(63));
    }
    SUBCASE("another seed gives other points") {
      const Batch<Real> other = sample_toy2d<Real>(which, 100, 8);
      Index equal_rows = 0;
      for (Index i = 0; i < 100; ++i) equal_rows += other.row(i) == full.row(i) ? 1 : 0;
      CHECK(equal_rows == 0);
    }
    SUBCASE("float is double rounded") {
      const Batch<double> reference = sample_toy2d<double>(which, 100, 7);
      const Batch<Real> rounded = reference.cast<Real>();
      CHECK(full == rounded);
    }
#ifdef _OPENMP
    SUBCASE("the thread count does not matter") {
      const int threads = omp_get_max_threads();
      omp_set_num_threads(1);
      const Batch<Real> one = sample_toy2d<Real>(which, 1001, 3);
      omp_set_num_threads(2);
      const Batch<Real> two = sample_toy2d<Real>(which, 1001, 3);
      omp_set_num_threads(threads);
      CHECK(one == two);
    }
#endif
  }
}

TEST_CASE("8gaussians matches its exact mixture") {
  const Batch<double> x = sample_toy2d(ToyDataset::eight_gaussians, kMomentSamples, 11);
  // E[c_x²] over the 8 unit directions is 4/8, so Var x = (16·0.5 + 0.25) / 1.414² on each axis.
  const double variance = (16.0 * 0.5 + 0.25) / (1.414 * 1.414);
  check_mean(column(x, 0), 0.0, "mean x");
  check_mean(column(x, 1), 0.0, "mean y");
  check_mean(column(x, 0).square(), variance, "var x");
  check_mean(column(x, 1).square(), variance, "var y");
  check_mean(column(x, 0) * column(x, 1), 0.0, "cov xy");

  REQUIRE(ddpm::data::toy_mixture(ToyDataset::eight_gaussians).has_value());
  CHECK_FALSE(ddpm::data::toy_mixture(ToyDataset::moons).has_value());
  const ddpm::GaussianMixture mixture = *ddpm::data::toy_mixture(ToyDataset::eight_gaussians);
  REQUIRE(mixture.means.rows() == 8);
  REQUIRE(mixture.means.cols() == 2);
  REQUIRE(mixture.stds.size() == 8);
  REQUIRE(mixture.weights.size() == 8);
  for (std::size_t k = 0; k < 8; ++k) {
    CHECK(mixture.stds[k] == doctest::Approx(0.5 / 1.414).epsilon(1e-15));
    CHECK(mixture.weights[k] == 1.0 / 8.0);
  }
  // The mixture's own moments give the same variance: E[mean_x²] + std².
  CHECK(mixture.means.col(0).squaredNorm() / 8.0 + mixture.stds[0] * mixture.stds[0] ==
        doctest::Approx(variance).epsilon(1e-12));
  // ddpm::eight_gaussians_mixture() (the exact denoiser's preset) describes the same mixture; the
  // two compute 4c/1.414 with c = 1/√2 in different ways, so allow a few ulps.
  const ddpm::GaussianMixture preset = ddpm::eight_gaussians_mixture();
  REQUIRE(preset.means.rows() == 8);
  CHECK((preset.means - mixture.means).cwiseAbs().maxCoeff() <= 1e-14);
  CHECK(preset.stds == mixture.stds);
  CHECK(preset.weights == mixture.weights);

  // Assign each point to its nearest mixture mean (neighbouring means are 2.16 apart, 6.1 stddevs,
  // so ~0.1 % are misassigned, symmetrically). Each cluster holds n/8 points within 4 binomial SEs
  // and its mean lies within 4 SEs (stddev / sqrt(n/8) ≈ 0.007) of the mixture mean.
  std::array<Index, 8> counts{};
  Batch<double> sums = Batch<double>::Zero(8, 2);
  for (Index i = 0; i < x.rows(); ++i) {
    Index nearest = 0;
    (mixture.means.rowwise() - x.row(i)).rowwise().squaredNorm().minCoeff(&nearest);
    ++counts[static_cast<std::size_t>(nearest)];
    sums.row(nearest) += x.row(i);
  }
  const double n = static_cast<double>(kMomentSamples);
  const double count_tolerance = kStandardErrors * std::sqrt(n * (1.0 / 8.0) * (7.0 / 8.0));
  for (Index k = 0; k < 8; ++k) {
    const auto count = static_cast<double>(counts[static_cast<std::size_t>(k)]);
    CAPTURE(k);
    CHECK(std::abs(count - n / 8.0) <= count_tolerance);
    const double mean_tolerance = kStandardErrors * mixture.stds[0] / std::sqrt(count);
    CHECK(std::abs(sums(k, 0) / count - mixture.means(k, 0)) <= mean_tolerance);
    CHECK(std::abs(sums(k, 1) / count - mixture.means(k, 1)) <= mean_tolerance);
  }
}

TEST_CASE("moons are standardized and lie on two noisy half circles") {
  const Batch<double> x = sample_toy2d(ToyDataset::moons, kMomentSamples, 12);
  check_mean(column(x, 0), 0.0, "mean x");
  check_mean(column(x, 1), 0.0, "mean y");
  check_mean(column(x, 0).square(), 1.0, "var x");
  check_mean(column(x, 1).square(), 1.0, "var y");

  // Undo the documented standardization: every point is within 0.3 (6 noise sds, tail ~1e-8 per
  // point) of the outer arc (unit circle around (0, 0), angles [0, π]) or the inner arc (unit
  // circle around (1, 0.5), angles [−π, 0]). The arcs are 0.5 apart at their closest, so the nearer
  // arc names the moon; half the points are on each, within 4 binomial SEs.
  const double std_x = std::sqrt(0.75 + 0.0025);
  const double std_y = std::sqrt(0.5625 - std::numbers::inv_pi + 0.0025);
  Index outer = 0;
  double worst = 0.0;
  for (Index i = 0; i < x.rows(); ++i) {
    const double px = x(i, 0) * std_x + 0.5;
    const double py = x(i, 1) * std_y + 0.25;
    const double to_outer = distance_to_arc(px, py, 0.0, 0.0, 0.0, std::numbers::pi);
    const double to_inner = distance_to_arc(px, py, 1.0, 0.5, -std::numbers::pi, 0.0);
    worst = std::max(worst, std::min(to_outer, to_inner));
    outer += to_outer < to_inner ? 1 : 0;
  }
  CHECK(worst < 0.3);
  const double n = static_cast<double>(kMomentSamples);
  CHECK(std::abs(static_cast<double>(outer) - n / 2.0) <= kStandardErrors * std::sqrt(n / 4.0));
}

TEST_CASE("checkerboard puts mass only on the black squares") {
  const Batch<double> x = sample_toy2d(ToyDataset::checkerboard, kMomentSamples, 13);
  std::array<Index, 16> counts{};  // cells of side 2 in [-4, 4)², index 4·(row) + column
  Index off_board = 0;
  Index white = 0;
  for (Index i = 0; i < x.rows(); ++i) {
    const double cx = std::floor(x(i, 0) / 2.0);
    const double cy = std::floor(x(i, 1) / 2.0);
    if (cx < -2 || cx > 1 || cy < -2 || cy > 1) {
      ++off_board;
      continue;
    }
    if (std::fmod(std::abs(cx + cy), 2.0) != 0.0) ++white;
    ++counts[static_cast<std::size_t>(4 * (cy + 2) + (cx + 2))];
  }
  CHECK(off_board == 0);
  CHECK(white == 0);
  // Each of the 8 black squares holds n/8 points within 4 binomial SEs.
  const double n = static_cast<double>(kMomentSamples);
  const double tolerance = kStandardErrors * std::sqrt(n * (1.0 / 8.0) * (7.0 / 8.0));
  Index black_cells = 0;
  for (std::size_t c = 0; c < counts.size(); ++c) {
    if (counts[c] == 0) continue;
    ++black_cells;
    CHECK(std::abs(static_cast<double>(counts[c]) - n / 8.0) <= tolerance);
  }
  CHECK(black_cells == 8);
  // Both coordinates are marginally uniform on [-4, 4): mean 0, variance 64/12 = 16/3.
  check_mean(column(x, 0), 0.0, "mean x");
  check_mean(column(x, 1), 0.0, "mean y");
  check_mean(column(x, 0).square(), 16.0 / 3.0, "var x");
  check_mean(column(x, 1).square(), 16.0 / 3.0, "var y");
}

TEST_CASE("swissroll moments and radius range") {
  const Batch<double> x = sample_toy2d(ToyDataset::swissroll, kMomentSamples, 14);
  // t ~ U[1.5π, 4.5π]: E[t cos t] = [t sin t + cos t] / 3π = 2, E[t sin t] = [sin t − t cos t] / 3π
  // = 2/(3π), E[t²] = (1.5π)² · 13/3; the N(0, I) noise adds 2 to E|p|² before the division by 25.
  const double pi = std::numbers::pi;
  check_mean(column(x, 0), 2.0 / 5.0, "mean x");
  check_mean(column(x, 1), 2.0 / (3.0 * pi) / 5.0, "mean y");
  check_mean(squared_radius(x), (2.25 * pi * pi * 13.0 / 3.0 + 2.0) / 25.0, "E|p|^2");
  // Noise-free radii lie in [0.3π, 0.9π]; the noise (sd 0.2 per axis) exceeds 1.2 in norm with
  // probability exp(-18) per point, and near t = 4.5π some of 20000 points reach 0.9π − 0.2.
  const double max_radius = std::sqrt(squared_radius(x).maxCoeff());
  CHECK(max_radius <= 0.9 * pi + 1.2);
  CHECK(max_radius >= 0.9 * pi - 0.2);
}

TEST_CASE("circles moments") {
  const Batch<double> x = sample_toy2d(ToyDataset::circles, kMomentSamples, 15);
  check_mean(column(x, 0), 0.0, "mean x");
  check_mean(column(x, 1), 0.0, "mean y");
  // E r² = (9 + 2.25) / 2, plus the noise variance 0.24² on each axis.
  check_mean(squared_radius(x), 5.625 + 2.0 * 0.24 * 0.24, "E|p|^2");
  check_mean(column(x, 0).square(), (5.625 + 2.0 * 0.24 * 0.24) / 2.0, "var x");
  // Half the points on the inner circle: radius below the midpoint 2.25 (the radial noise crosses
  // it with probability ~1e-3, nearly symmetric).
  const Eigen::ArrayXd inner = (squared_radius(x) < 2.25 * 2.25).cast<double>();
  check_mean(inner, 0.5, "inner fraction");
}

TEST_CASE("pinwheel moments") {
  const Batch<double> x = sample_toy2d(ToyDataset::pinwheel, kMomentSamples, 16);
  // 5-fold rotational symmetry: mean 0 and isotropic covariance; E|p|² = 4 E|f|² = 4 (1 + 0.09 +
  // 0.01).
  check_mean(column(x, 0), 0.0, "mean x");
  check_mean(column(x, 1), 0.0, "mean y");
  check_mean(column(x, 0).square(), 2.2, "var x");
  check_mean(column(x, 1).square(), 2.2, "var y");
  check_mean(column(x, 0) * column(x, 1), 0.0, "cov xy");
}

TEST_CASE("2spirals moments and range") {
  const Batch<double> x = sample_toy2d(ToyDataset::two_spirals, kMomentSamples, 17);
  // s = 3π√u has density 2s/(9π²) on [0, 3π]: E s² = 9π²/2, E[s sin s] = 2(9π² − 4)/(9π²),
  // E[s cos s] = −4/(3π). |d|² = s² + s(u2 sin s − u1 cos s) + (u1² + u2²)/4 with E u = 1/2 and
  // E u² = 1/3, so E|p|² = E|d|²/9 + 2·0.1².
  const double pi = std::numbers::pi;
  const double nine_pi2 = 9.0 * pi * pi;
  const double e_s_sin = 2.0 * (nine_pi2 - 4.0) / nine_pi2;
  const double e_s_cos = -4.0 / (3.0 * pi);
  const double e_d2 = nine_pi2 / 2.0 + 0.5 * (e_s_sin - e_s_cos) + 2.0 / 12.0;
  check_mean(column(x, 0), 0.0, "mean x");
  check_mean(column(x, 1), 0.0, "mean y");
  check_mean(squared_radius(x), e_d2 / 9.0 + 0.02, "E|p|^2");
  // |d| <= 3π + 0.5 ≈ 9.92, so |p_i| <= 3.31 + noise; 0.6 is 6 noise sds.
  CHECK(x.cwiseAbs().maxCoeff() <= (3.0 * pi + 0.5) / 3.0 + 0.6);
}

// ---- labeled toy data --------------------------------------------------------------------------

TEST_CASE("toy_classes and require_labeled: 8gaussians, moons and circles have classes") {
  CHECK(ddpm::data::toy_classes(ToyDataset::eight_gaussians) == 8);
  CHECK(ddpm::data::toy_classes(ToyDataset::moons) == 2);
  CHECK(ddpm::data::toy_classes(ToyDataset::circles) == 2);
  std::vector<int> labels;
  for (const ToyDataset which : {ToyDataset::swissroll, ToyDataset::checkerboard,
                                 ToyDataset::pinwheel, ToyDataset::two_spirals}) {
    CHECK(ddpm::data::toy_classes(which) == 0);
    CHECK_THROWS_WITH_AS(ddpm::data::sample_toy2d_labeled(which, 4, 1, labels),
                         doctest::Contains("8gaussians (classes 0..7"), InvalidArgument);
    DDPM_CHECK_INVALID("--dataset", ddpm::data::require_labeled(which, "--dataset"));
  }
}

TEST_CASE_TEMPLATE("sample_toy2d_labeled gives sample_toy2d's points, split or whole", Real, float,
                   double) {
  for (const ToyDataset which :
       {ToyDataset::eight_gaussians, ToyDataset::moons, ToyDataset::circles}) {
    std::vector<int> labels, first, second;
    const Batch<Real> x = ddpm::data::sample_toy2d_labeled<Real>(which, 300, 17, labels, 5);
    const Batch<Real> plain = sample_toy2d<Real>(which, 300, 17, 5);
    CHECK(x == plain);
    REQUIRE(labels.size() == 300);
    // Rows 5..304 as two pieces with matching first indices: the same points and labels.
    const Batch<Real> a = ddpm::data::sample_toy2d_labeled<Real>(which, 100, 17, first, 5);
    const Batch<Real> b = ddpm::data::sample_toy2d_labeled<Real>(which, 200, 17, second, 105);
    CHECK(a == x.topRows(100));
    CHECK(b == x.bottomRows(200));
    first.insert(first.end(), second.begin(), second.end());
    CHECK(first == labels);
    for (const int y : labels) {
      CHECK(y >= 0);
      CHECK(y < ddpm::data::toy_classes(which));
    }
  }
}

TEST_CASE("8gaussians labels are the components the points were drawn from") {
  std::vector<int> labels;
  const Index n = 4000;
  const Batch<double> x =
      ddpm::data::sample_toy2d_labeled(ToyDataset::eight_gaussians, n, 23, labels);
  const ddpm::GaussianMixture m = *ddpm::data::toy_mixture(ToyDataset::eight_gaussians);
  // Each point lies within 6 sds (0.354 each) of its label's mean: the radial distance of a 2D
  // normal exceeds 6 sds with probability exp(-18) ~ 2e-8 per point. The nearest other mean is
  // 2.16 (6.1 sds) away, so a label shifted to another component fails most points.
  double worst = 0.0;
  std::array<Index, 8> counts{};
  for (Index i = 0; i < n; ++i) {
    const int k = labels[static_cast<std::size_t>(i)];
    worst = std::max(worst, (x.row(i) - m.means.row(k)).norm() / m.stds[0]);
    ++counts[static_cast<std::size_t>(k)];
  }
  CHECK(worst < 6.0);
  // Uniform classes: each count within 4 binomial SEs of n/8.
  for (const Index c : counts) {
    CHECK(std::abs(static_cast<double>(c) - n / 8.0) <= 4.0 * std::sqrt(n * (1.0 / 8) * (7.0 / 8)));
  }
}

TEST_CASE("moons and circles labels name the moon and the circle (0 outer, 1 inner)") {
  std::vector<int> labels;
  SUBCASE("moons: each point within 0.3 (6 noise sds) of its label's arc") {
    const Batch<double> x = ddpm::data::sample_toy2d_labeled(ToyDataset::moons, 2000, 29, labels);
    const double std_x = std::sqrt(0.75 + 0.0025);
    const double std_y = std::sqrt(0.5625 - std::numbers::inv_pi + 0.0025);
    double worst = 0.0;
    for (Index i = 0; i < x.rows(); ++i) {
      const double px = x(i, 0) * std_x + 0.5, py = x(i, 1) * std_y + 0.25;
      worst = std::max(worst, labels[static_cast<std::size_t>(i)] == 0
                                  ? distance_to_arc(px, py, 0.0, 0.0, 0.0, std::numbers::pi)
                                  : distance_to_arc(px, py, 1.0, 0.5, -std::numbers::pi, 0.0));
    }
    CHECK(worst < 0.3);
  }
  SUBCASE("circles: each point's radius within 1.2 (5 noise sds) of its label's circle") {
    const Batch<double> x = ddpm::data::sample_toy2d_labeled(ToyDataset::circles, 1000, 31, labels);
    double worst = 0.0;
    for (Index i = 0; i < x.rows(); ++i) {
      const double radius = labels[static_cast<std::size_t>(i)] == 0 ? 3.0 : 1.5;
      worst = std::max(worst, std::abs(x.row(i).norm() - radius));
    }
    // The radial error is about N(0, 0.24^2): past 5 sds with probability ~6e-7 per point; the
    // other circle is 1.5 away.
    CHECK(worst < 1.2);
  }
}

TEST_CASE("sample_toy2d_class: the labeled sampler's points of that class, in order") {
  std::vector<int> labels;
  const Batch<double> x =
      ddpm::data::sample_toy2d_labeled(ToyDataset::eight_gaussians, 400, 37, labels);
  const Batch<double> c = ddpm::data::sample_toy2d_class(ToyDataset::eight_gaussians, 5, 20, 37);
  REQUIRE(c.rows() == 20);
  Index next = 0;
  for (Index i = 0; i < x.rows() && next < 20; ++i) {
    if (labels[static_cast<std::size_t>(i)] != 5) continue;
    CHECK(c.row(next) == x.row(i));
    ++next;
  }
  CHECK(next == 20);  // 400 draws hold ~50 of class 5
  DDPM_CHECK_INVALID("label", ddpm::data::sample_toy2d_class(ToyDataset::moons, 2, 4, 1));
  DDPM_CHECK_INVALID("dataset", ddpm::data::sample_toy2d_class(ToyDataset::pinwheel, 0, 4, 1));
}

TEST_CASE("mixture_posterior is Bayes' rule for the mixture") {
  const ddpm::GaussianMixture m = *ddpm::data::toy_mixture(ToyDataset::eight_gaussians);
  Batch<double> x(4, 2);
  x.row(0) = m.means.row(3);                           // at a mean
  x.row(1) = 0.5 * (m.means.row(0) + m.means.row(4));  // halfway between two components
  x.row(2) << 0.0, 0.0;                                // the center: all equal
  x.row(3) << 0.3, -1.1;
  const Batch<double> p = ddpm::data::mixture_posterior(m, x);
  REQUIRE(p.rows() == 4);
  REQUIRE(p.cols() == 8);
  // Independently: the densities themselves (no log-space), normalized.
  for (Index i = 0; i < 4; ++i) {
    Eigen::VectorXd density(8);
    for (Index k = 0; k < 8; ++k) {
      const double s2 = m.stds[0] * m.stds[0];
      density[k] = std::exp(-0.5 * (x.row(i) - m.means.row(k)).squaredNorm() / s2) /
                   (2 * std::numbers::pi * s2) / 8.0;
    }
    density /= density.sum();
    for (Index k = 0; k < 8; ++k) CHECK(p(i, k) == doctest::Approx(density[k]).epsilon(1e-12));
  }
  CHECK(p(0, 3) > 0.999999);
  CHECK(p(1, 0) == doctest::Approx(0.5).epsilon(1e-9));
  CHECK(p(1, 4) == doctest::Approx(0.5).epsilon(1e-9));
  CHECK(p(2, 5) == doctest::Approx(0.125).epsilon(1e-9));
}

}  // namespace toy2d_test
