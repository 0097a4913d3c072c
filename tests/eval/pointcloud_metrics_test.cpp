// SPDX-License-Identifier: MIT
// Tests of the point-cloud metrics (Chamfer, EMD, MMD, COV, 1-NNA) against closed forms, brute
// force over all matchings, the auction's own duality certificate and hand-built sets.
#include "ddpm/eval/pointcloud_metrics.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/rng.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pointcloud_metrics_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::InvalidArgument;
namespace eval = ddpm::eval;

/// n points of N(center, scale² I_3), reproducible from (seed, sample). The rows are the RNG's
/// samples 0..n-1 and `sample` is its step, so clouds of different `sample` share no draw.
Batch<double> gaussian_cloud(Index n, double scale, double center_x, std::uint64_t seed,
                             std::uint64_t sample = 0) {
  Batch<double> x(n, 3);
  ddpm::CounterRng(seed).fill_normal(x, ddpm::stream::user, 0, static_cast<std::uint32_t>(sample));
  x *= scale;
  x.col(0).array() += center_x;
  return x;
}

/// S clouds of n points each, stacked (cloud s = rows [s n, (s+1) n)).
Batch<double> gaussian_set(Index clouds, Index n, double scale, double center_x,
                           std::uint64_t seed) {
  Batch<double> set(clouds * n, 3);
  for (Index s = 0; s < clouds; ++s) {
    set.middleRows(s * n, n) =
        gaussian_cloud(n, scale, center_x, seed, static_cast<std::uint64_t>(s));
  }
  return set;
}

double squared_distance(const Batch<double>& x, Index i, const Batch<double>& y, Index j) {
  return (x.row(i) - y.row(j)).squaredNorm();
}

/// The Chamfer distance by its definition, in long double.
double brute_chamfer(const Batch<double>& x, const Batch<double>& y) {
  long double a = 0.0L;
  for (Index i = 0; i < x.rows(); ++i) {
    double best = std::numeric_limits<double>::infinity();
    for (Index j = 0; j < y.rows(); ++j) best = std::min(best, squared_distance(x, i, y, j));
    a += best;
  }
  long double b = 0.0L;
  for (Index j = 0; j < y.rows(); ++j) {
    double best = std::numeric_limits<double>::infinity();
    for (Index i = 0; i < x.rows(); ++i) best = std::min(best, squared_distance(x, i, y, j));
    b += best;
  }
  return static_cast<double>(a / x.rows() + b / y.rows());
}

/// The EMD by trying every bijection (N <= 8).
double brute_emd(const Batch<double>& x, const Batch<double>& y) {
  std::vector<Index> perm(static_cast<std::size_t>(x.rows()));
  std::iota(perm.begin(), perm.end(), 0);
  double best = std::numeric_limits<double>::infinity();
  do {
    double sum = 0.0;
    for (Index i = 0; i < x.rows(); ++i) {
      sum += std::sqrt(squared_distance(x, i, y, perm[static_cast<std::size_t>(i)]));
    }
    best = std::min(best, sum);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best / static_cast<double>(x.rows());
}

/// Single-point clouds on the x axis at the given positions.
Batch<double> points_on_axis(const std::vector<double>& xs) {
  Batch<double> set = Batch<double>::Zero(static_cast<Index>(xs.size()), 3);
  for (std::size_t i = 0; i < xs.size(); ++i) set(static_cast<Index>(i), 0) = xs[i];
  return set;
}

}  // namespace

TEST_CASE_TEMPLATE(
    "point clouds: CD and EMD of identical clouds are 0, of a translation closed form", Real, float,
    double) {
  const Batch<double> base = gaussian_cloud(37, 0.5, 0.0, 11);
  const Batch<Real> x = base.cast<Real>();
  // Relative accuracy of the translated coordinates: rounding to Real.
  const double tol = std::is_same_v<Real, float> ? 1e-5 : 1e-12;
  double spacing = std::numeric_limits<double>::infinity();
  for (Index i = 0; i < base.rows(); ++i) {
    for (Index j = 0; j < i; ++j) spacing = std::min(spacing, (base.row(i) - base.row(j)).norm());
  }
  REQUIRE(spacing > 2 * 0.01);  // the shortest shift below exercises the closed form

  CHECK(eval::chamfer_distance(x, x) == 0.0);
  CHECK(eval::emd_exact(x, x) == 0.0);
  const eval::EmdBounds same = eval::emd_auction(x, x);
  CHECK(same.value == 0.0);
  CHECK(same.lower_bound == 0.0);

  for (const double length : {0.01, 0.3, 2.0, 50.0}) {
    CAPTURE(length);
    const Eigen::RowVector3d v = Eigen::RowVector3d(1.0, -2.0, 0.5).normalized() * length;
    Batch<Real> y = x;
    y.rowwise() += v.cast<Real>();
    // The identity matching is optimal for a translation: Σ|x_i + v − y_π(i)| >= N |v| by the
    // triangle inequality, so EMD = |v|.
    CHECK(eval::emd_exact(x, y) == doctest::Approx(length).epsilon(tol));
    const eval::EmdBounds auction = eval::emd_auction(x, y, 1e-3);
    CHECK(auction.lower_bound <= length * (1.0 + tol));
    CHECK(auction.value >= length * (1.0 - tol));
    CHECK(auction.value <= length * (1.0 + 1e-3 + tol));
    CHECK(eval::chamfer_distance(x, y) ==
          doctest::Approx(brute_chamfer(x.template cast<double>(), y.template cast<double>()))
              .epsilon(1e-12));
    // Shifted by less than half the closest spacing, every nearest neighbour is the point's own
    // translate (|x_i − x_j − v| >= |x_i − x_j| − |v| > |v|), so CD = 2 |v|².
    if (length < 0.5 * spacing) {
      CHECK(eval::chamfer_distance(x, y) == doctest::Approx(2.0 * length * length).epsilon(tol));
    }
  }
}

TEST_CASE("point clouds: Chamfer equals brute force for unequal sizes and is symmetric bitwise") {
  for (const auto& sizes : {std::pair<Index, Index>{1, 1}, {1, 9}, {13, 29}, {64, 64}, {130, 7}}) {
    const Index n = sizes.first, m = sizes.second;  // not a binding: CAPTURE captures them
    CAPTURE(n);
    CAPTURE(m);
    const Batch<double> x = gaussian_cloud(n, 1.0, 0.0, 21, static_cast<std::uint64_t>(n));
    const Batch<double> y = gaussian_cloud(m, 0.7, 0.3, 22, static_cast<std::uint64_t>(m));
    const double cd = eval::chamfer_distance(x, y);
    CHECK(cd == doctest::Approx(brute_chamfer(x, y)).epsilon(1e-13));
    CHECK(eval::chamfer_distance(y, x) == cd);
  }
}

TEST_CASE("point clouds: exact EMD equals brute force over all matchings for N <= 7") {
  for (Index n = 1; n <= 7; ++n) {
    for (std::uint64_t trial = 0; trial < 6; ++trial) {
      CAPTURE(n);
      CAPTURE(trial);
      // Some trials put the clouds on top of each other, some apart, some on a small lattice
      // (many equal costs, where greedy starts and ties are tested).
      Batch<double> x = gaussian_cloud(n, 1.0, 0.0, 31, trial);
      Batch<double> y = gaussian_cloud(n, 1.0, trial % 2 == 0 ? 0.0 : 1.5, 32, trial);
      if (trial >= 4) {
        x = x.array().round();
        y = y.array().round();
      }
      const double brute = brute_emd(x, y);
      CHECK(eval::emd_exact(x, y) == doctest::Approx(brute).epsilon(1e-13));
      const eval::EmdBounds auction = eval::emd_auction(x, y, 1e-3);
      CHECK(auction.lower_bound <= brute * (1.0 + 1e-12));
      CHECK(auction.value >= brute * (1.0 - 1e-12));
    }
  }
}

TEST_CASE("point clouds: the auction's certificate brackets the exact EMD within its tolerance") {
  // 12 random pairs of sizes 40..300 at two tolerances: lower_bound <= exact <= value and
  // value − lower_bound <= tolerance · lower_bound, so value is within tolerance of exact.
  for (std::uint64_t trial = 0; trial < 12; ++trial) {
    const Index n = 40 + static_cast<Index>(trial) * 23;
    const Batch<double> x = gaussian_cloud(n, 1.0, 0.0, 41, trial);
    const Batch<double> y = gaussian_cloud(n, 0.5 + 0.1 * static_cast<double>(trial % 5),
                                           0.2 * static_cast<double>(trial % 3), 42, trial);
    const double exact = eval::emd_exact(x, y);
    for (const double tolerance : {1e-2, 1e-3}) {
      CAPTURE(n);
      CAPTURE(tolerance);
      const eval::EmdBounds b = eval::emd_auction(x, y, tolerance);
      CHECK(b.lower_bound <= exact * (1.0 + 1e-12));
      CHECK(b.value >= exact * (1.0 - 1e-12));
      CHECK(b.value - b.lower_bound <= tolerance * b.lower_bound);
      CHECK((b.value - exact) / exact <= tolerance);
    }
    // Symmetric: the optimum does not depend on which cloud is matched to which.
    CHECK(eval::emd_exact(y, x) == doctest::Approx(exact).epsilon(1e-12));
  }
  // A tolerance below float resolution is finished by the exact solver: still bracketed.
  const Batch<double> x = gaussian_cloud(80, 1.0, 0.0, 43);
  const Batch<double> y = gaussian_cloud(80, 1.0, 0.4, 44);
  const double exact = eval::emd_exact(x, y);
  const eval::EmdBounds tight = eval::emd_auction(x, y, 1e-9);
  CHECK(tight.lower_bound <= exact * (1.0 + 1e-12));
  CHECK(tight.value == doctest::Approx(exact).epsilon(1e-9));
  CHECK(eval::earth_movers_distance(x, y, {eval::EmdMethod::exact, 0.5}) == exact);
}

TEST_CASE("point clouds: MMD, COV and 1-NNA on hand-built sets of one-point clouds") {
  // One point per cloud: EMD = |g − r| and CD = 2 |g − r|².
  // Nearest references: g=0 -> 0.4, g=1 -> 0.4, g=10 -> 9, so COV = 2/4.
  // Min over generated per reference: 0.4, 1, 10, 11.
  // 1-NN: 20 and 21 find each other (correct); every other cloud's nearest is in the other set.
  const Batch<double> generated = points_on_axis({0.0, 1.0, 10.0});
  const Batch<double> reference = points_on_axis({0.4, 9.0, 20.0, 21.0});
  for (const eval::EmdMethod method : {eval::EmdMethod::exact, eval::EmdMethod::auction}) {
    eval::PointCloudEvalOptions options;
    options.emd.method = method;
    const eval::GenerationMetrics m = eval::generation_metrics(generated, reference, 1, options);
    CHECK(m.mmd_emd == doctest::Approx((0.4 + 1.0 + 10.0 + 11.0) / 4.0).epsilon(1e-14));
    CHECK(m.mmd_cd == doctest::Approx(2.0 * (0.16 + 1.0 + 100.0 + 121.0) / 4.0).epsilon(1e-14));
    CHECK(m.cov_emd == 0.5);
    CHECK(m.cov_cd == 0.5);
    CHECK(m.nna_emd == doctest::Approx(2.0 / 7.0));
    CHECK(m.nna_cd == doctest::Approx(2.0 / 7.0));
  }
  // The matrix functions directly, with ties: generated cloud 0 is equally near references 0
  // and 1 and takes 0 (the lowest column), as does generated cloud 1, so COV = 1/3 (2/3 if the
  // tie went to 1). Column minima 0.5, 1, 2.5.
  Eigen::MatrixXd gen_ref(2, 3);
  gen_ref << 1.0, 1.0, 5.0,  //
      0.5, 2.0, 2.5;
  CHECK(eval::coverage(gen_ref) == doctest::Approx(1.0 / 3.0));
  CHECK(eval::minimum_matching_distance(gen_ref) == doctest::Approx((0.5 + 1.0 + 2.5) / 3.0));
  Eigen::MatrixXd gen_gen(2, 2);
  gen_gen << 0.0, 3.0,  //
      3.0, 0.0;
  Eigen::MatrixXd ref_ref(3, 3);
  ref_ref << 0.0, 1.0, 9.0,  //
      1.0, 0.0, 9.0,         //
      9.0, 9.0, 0.0;
  // r0: g1 at 0.5 -> wrong; r1: r0 at 1 ties g0 at 1, references come first -> correct;
  // r2: g1 at 2.5 -> wrong; g0: r0 at 1 -> wrong; g1: r0 at 0.5 -> wrong. 1 of 5.
  CHECK(eval::one_nn_accuracy(gen_gen, gen_ref, ref_ref) == doctest::Approx(1.0 / 5.0));
}

TEST_CASE("point clouds: 1-NNA is 1 for disjoint distributions and near 0.5 for one distribution") {
  eval::PointCloudEvalOptions options;
  options.emd.method = eval::EmdMethod::exact;
  SUBCASE("disjoint: small clouds around (0,0,0) vs around (10,0,0)") {
    const Batch<double> generated = gaussian_set(10, 16, 0.5, 0.0, 51);
    const Batch<double> reference = gaussian_set(12, 16, 0.5, 10.0, 52);
    const eval::GenerationMetrics m = eval::generation_metrics(generated, reference, 16, options);
    CHECK(m.nna_cd == 1.0);
    CHECK(m.nna_emd == 1.0);
  }
  SUBCASE("one distribution: within a binomial tolerance of 1/2") {
    // 2 x 60 clouds of 8 points from N(0, I). The leave-one-out 1-NN picks its own set with
    // probability 59/119 = 0.496 per cloud; treating the 120 outcomes as independent gives a
    // standard deviation of sqrt(0.25 / 120) = 0.046, and the tolerance is 4 of those.
    const Batch<double> generated = gaussian_set(60, 8, 1.0, 0.0, 53);
    const Batch<double> reference = gaussian_set(60, 8, 1.0, 0.0, 54);
    const eval::GenerationMetrics m = eval::generation_metrics(generated, reference, 8, options);
    CHECK(std::abs(m.nna_cd - 0.496) <= 4 * 0.046);
    CHECK(std::abs(m.nna_emd - 0.496) <= 4 * 0.046);
  }
}

TEST_CASE("point clouds: pairwise matrices are the single-pair values, for any thread count") {
  const Index n = 40;
  const Batch<double> a = gaussian_set(7, n, 1.0, 0.0, 61);
  const Batch<double> b = gaussian_set(5, n, 0.8, 0.5, 62);
  eval::PointCloudEvalOptions options;
  std::vector<std::pair<Index, Index>> reports;
  options.progress = [&](Index done, Index total) { reports.emplace_back(done, total); };
  const eval::CloudDistances cross = eval::pairwise_cloud_distances(a, b, n, options);
  REQUIRE(!reports.empty());
  CHECK(reports.back() == std::pair<Index, Index>{35, 35});
  for (Index i = 0; i < 7; ++i) {
    for (Index j = 0; j < 5; ++j) {
      const Batch<double> x = a.middleRows(i * n, n);
      const Batch<double> y = b.middleRows(j * n, n);
      CHECK(cross.chamfer(i, j) == eval::chamfer_distance(x, y));
      CHECK(cross.emd(i, j) == eval::earth_movers_distance(x, y));
    }
  }
  const eval::CloudDistances within = eval::pairwise_cloud_distances(a, n);
  const eval::CloudDistances self = eval::pairwise_cloud_distances(a, a, n);
  CHECK(within.chamfer.diagonal().isZero(0.0));
  CHECK(within.chamfer == within.chamfer.transpose());
  CHECK(within.emd == within.emd.transpose());
  for (Index i = 0; i < 7; ++i) {
    for (Index j = i + 1; j < 7; ++j) {
      CHECK(within.chamfer(i, j) == self.chamfer(i, j));
      CHECK(within.emd(i, j) == self.emd(i, j));
    }
  }
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  for (const int threads : {1, 2, 3}) {
    CAPTURE(threads);
    omp_set_num_threads(threads);
    const eval::CloudDistances again = eval::pairwise_cloud_distances(a, b, n);
    const eval::GenerationMetrics m = eval::generation_metrics(a, b, n);
    omp_set_num_threads(saved);
    CHECK(again.chamfer == cross.chamfer);
    CHECK(again.emd == cross.emd);
    const eval::GenerationMetrics one = [&] {
      omp_set_num_threads(1);
      eval::GenerationMetrics r = eval::generation_metrics(a, b, n);
      omp_set_num_threads(saved);
      return r;
    }();
    CHECK(std::memcmp(&m, &one, sizeof(m)) == 0);
  }
#endif
}

TEST_CASE("point clouds: floor, combined report, reconstruction and the EMD subset") {
  const Index n = 24;
  const Batch<double> generated = gaussian_set(6, n, 1.0, 0.3, 71);
  const Batch<double> reference = gaussian_set(5, n, 1.0, 0.0, 72);
  const Batch<double> reference_b = gaussian_set(5, n, 1.0, 0.0, 73);
  Index last_done = 0;
  Index last_total = 0;
  eval::PointCloudEvalOptions options;
  options.progress = [&](Index done, Index total) {
    CHECK(done > last_done);
    last_done = done;
    last_total = total;
  };
  const eval::GenerationReport report =
      eval::generation_metrics_with_floor(generated, reference, reference_b, n, options);
  CHECK(last_total == 6 * 5 + 15 + 10 + 5 * 5 + 10);
  CHECK(last_done == last_total);
  const eval::GenerationMetrics g = eval::generation_metrics(generated, reference, n);
  const eval::GenerationMetrics f = eval::generation_metrics_floor(reference, reference_b, n);
  CHECK(std::memcmp(&report.generated, &g, sizeof(g)) == 0);
  CHECK(std::memcmp(&report.floor, &f, sizeof(f)) == 0);

  const Batch<double> inputs = generated;
  const Batch<double> recon = gaussian_set(6, n, 1.0, 0.3, 74);
  const eval::ReconstructionMetrics r = eval::reconstruction_metrics(inputs, recon, n);
  double cd = 0.0;
  double emd = 0.0;
  for (Index i = 0; i < 6; ++i) {
    const Batch<double> x = inputs.middleRows(i * n, n);
    const Batch<double> y = recon.middleRows(i * n, n);
    cd += eval::chamfer_distance(x, y);
    emd += eval::earth_movers_distance(x, y);
  }
  CHECK(r.cd == doctest::Approx(cd / 6.0).epsilon(1e-15));
  CHECK(r.emd == doctest::Approx(emd / 6.0).epsilon(1e-15));

  // emd_points = 10 of 24: rows ⌊k 24 / 10⌋ = 0, 2, 4, 7, 9, 12, 14, 16, 19, 21.
  eval::PointCloudEvalOptions subset;
  subset.emd_points = 10;
  subset.emd.method = eval::EmdMethod::exact;
  const eval::CloudDistances d = eval::pairwise_cloud_distances(generated, reference, n, subset);
  const std::vector<Index> rows{0, 2, 4, 7, 9, 12, 14, 16, 19, 21};
  Batch<double> x(10, 3);
  Batch<double> y(10, 3);
  for (Index k = 0; k < 10; ++k) {
    x.row(k) = generated.row(2 * n + rows[static_cast<std::size_t>(k)]);
    y.row(k) = reference.row(3 * n + rows[static_cast<std::size_t>(k)]);
  }
  CHECK(d.emd(2, 3) == eval::emd_exact(x, y));
  CHECK(d.chamfer(2, 3) == eval::chamfer_distance(Batch<double>(generated.middleRows(2 * n, n)),
                                                  Batch<double>(reference.middleRows(3 * n, n))));
  eval::PointCloudEvalOptions no_emd;
  no_emd.compute_emd = false;
  const eval::GenerationMetrics cd_only = eval::generation_metrics(generated, reference, n, no_emd);
  CHECK(cd_only.mmd_cd == g.mmd_cd);
  CHECK(std::isnan(cd_only.mmd_emd));
}

TEST_CASE("point clouds: bad input is refused with the parameter named") {
  const Batch<double> cloud = gaussian_cloud(8, 1.0, 0.0, 81);
  const Batch<double> two_d = Batch<double>::Zero(8, 2);
  CHECK_THROWS_WITH_AS(eval::chamfer_distance(cloud, two_d),
                       doctest::Contains("invalid y = 8x2 matrix"), InvalidArgument);
  CHECK_THROWS_AS(eval::chamfer_distance(Batch<double>(0, 3), cloud), InvalidArgument);
  CHECK_THROWS_WITH_AS(eval::emd_exact(cloud, gaussian_cloud(9, 1.0, 0.0, 82)),
                       doctest::Contains("as many points as x (8)"), InvalidArgument);
  Batch<double> bad = cloud;
  bad(3, 1) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH_AS(eval::chamfer_distance(bad, cloud), doctest::Contains("at row 3, column 1"),
                       InvalidArgument);
  bad(3, 1) = 1e60;
  CHECK_THROWS_WITH_AS(eval::emd_exact(cloud, bad), doctest::Contains("normalize"),
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(eval::emd_auction(cloud, cloud, 0.0),
                       doctest::Contains("relative_tolerance"), InvalidArgument);
  CHECK_THROWS_WITH_AS(eval::pairwise_cloud_distances(cloud, cloud, 3),
                       doctest::Contains("points_per_cloud = 3"), InvalidArgument);
  CHECK_THROWS_WITH_AS(eval::pairwise_cloud_distances(cloud, cloud, 0),
                       doctest::Contains("points_per_cloud"), InvalidArgument);
  eval::PointCloudEvalOptions options;
  options.emd_points = 9;
  CHECK_THROWS_WITH_AS(eval::generation_metrics(cloud, cloud, 8, options),
                       doctest::Contains("emd_points"), InvalidArgument);
  CHECK_THROWS_WITH_AS(eval::generation_metrics_floor(cloud, gaussian_set(2, 8, 1.0, 0.0, 83), 8),
                       doctest::Contains("reference_b"), InvalidArgument);
  CHECK_THROWS_AS(eval::reconstruction_metrics(cloud, gaussian_set(2, 8, 1.0, 0.0, 84), 8),
                  InvalidArgument);
  CHECK(ddpm::parse_enum<eval::EmdMethod>("exact") == eval::EmdMethod::exact);
  CHECK_THROWS_WITH_AS(ddpm::parse_enum<eval::EmdMethod>("sinkhorn"),
                       doctest::Contains("exact or auction"), InvalidArgument);
}

}  // namespace pointcloud_metrics_test
