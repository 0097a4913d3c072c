// SPDX-License-Identifier: MIT
// Checks the Gaussian KL, log densities and the 8-bit discretized likelihood against closed forms,
// Monte Carlo, erfc-based bin masses and central finite differences.
#include "ddpm/gaussian.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <vector>

namespace gaussian_test {

namespace {

// Written out here, independently of the header: log N(x; m, v) with v = exp(lv).
double log_normal_pdf(double x, double mean, double log_var) {
  const double var = std::exp(log_var);
  return -0.5 * std::log(2.0 * std::numbers::pi * var) - (x - mean) * (x - mean) / (2.0 * var);
}

// Standard normal cdf and upper tail from std::erfc.
double phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }
double upper_tail(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

// Mass of N(mean, var) on the 8-bit bin of x = -1 + 2k/255: [x - 1/255, x + 1/255], the lowest bin
// from -inf and the highest to +inf. Each difference is taken between the two tails on the same
// side of the mean, where neither is near 1, so nothing cancels catastrophically.
double bin_mass(int k, double mean, double log_var) {
  const double x = -1.0 + 2.0 * k / 255.0;
  const double sd = std::exp(0.5 * log_var);
  const double lo = k == 0 ? -INFINITY : (x - 1.0 / 255.0 - mean) / sd;
  const double hi = k == 255 ? INFINITY : (x + 1.0 / 255.0 - mean) / sd;
  if (lo >= 0.0) return upper_tail(lo) - upper_tail(hi);
  if (hi <= 0.0) return phi(hi) - phi(lo);
  return 1.0 - phi(lo) - upper_tail(hi);  // straddles the mean: one minus both tails
}

double bin_center(int k) { return -1.0 + 2.0 * k / 255.0; }

// Central difference (f(a + h) - f(a - h)) / 2h.
template <class F>
double central_difference(F&& f, double a, double h) {
  return (f(a + h) - f(a - h)) / (2.0 * h);
}

}  // namespace

TEST_CASE_TEMPLATE("normal_kl has the known closed-form values", Real, float, double) {
  // float: 1e-6 relative (a handful of roundings at 6e-8); double: 1e-14.
  const double tol = sizeof(Real) == 4 ? 1e-6 : 1e-14;
  const auto kl = [](double m1, double v1, double m2, double v2) {
    return static_cast<double>(
        ddpm::normal_kl(static_cast<Real>(m1), static_cast<Real>(std::log(v1)),
                        static_cast<Real>(m2), static_cast<Real>(std::log(v2))));
  };
  SUBCASE("zero for identical Gaussians") {
    CHECK(kl(0.3, 2.0, 0.3, 2.0) == doctest::Approx(0.0).epsilon(tol).scale(1.0));
    CHECK(kl(-5.0, 1e-4, -5.0, 1e-4) == doctest::Approx(0.0).epsilon(tol).scale(1.0));
  }
  SUBCASE("unit variances: half the squared mean difference") {
    CHECK(kl(0.0, 1.0, 1.0, 1.0) == doctest::Approx(0.5).epsilon(tol));
    CHECK(kl(1.0, 1.0, 0.0, 1.0) == doctest::Approx(0.5).epsilon(tol));
    CHECK(kl(2.0, 1.0, -1.0, 1.0) == doctest::Approx(4.5).epsilon(tol));
  }
  SUBCASE("equal means: 0.5 (r - 1 - log r), r = v1 / v2") {
    // KL(N(0,1) || N(0,4)) = ln 2 - 3/8; KL(N(0,4) || N(0,1)) = 3/2 - ln 2.
    CHECK(kl(0.0, 1.0, 0.0, 4.0) == doctest::Approx(std::numbers::ln2 - 0.375).epsilon(tol));
    CHECK(kl(0.0, 4.0, 0.0, 1.0) == doctest::Approx(1.5 - std::numbers::ln2).epsilon(tol));
  }
  SUBCASE("mixed: KL(N(1, 2) || N(-1, 0.5)) = 0.5 (4 - 1 + ln(1/4) + 8) = 5.5 - ln 2") {
    CHECK(kl(1.0, 2.0, -1.0, 0.5) == doctest::Approx(5.5 - std::numbers::ln2).epsilon(tol));
  }
}

TEST_CASE("normal_kl equals a Monte Carlo estimate of E_q(log q - log p)") {
  // 100000 draws per pair from std::mt19937_64 (not the library's RNG). The estimate's standard
  // error is the sample standard deviation of log q - log p over sqrt(n); the check allows 5 of
  // them (a false failure about once in 1.7 million runs, and the seed is fixed anyway).
  constexpr int kDraws = 100000;
  struct Pair {
    double m1, lv1, m2, lv2;
  };
  const std::vector<Pair> pairs = {{0.0, 0.0, 1.0, 0.0},
                                   {0.5, std::log(0.3), -0.2, std::log(2.0)},
                                   {-1.0, std::log(4.0), 0.0, std::log(1.0)},
                                   {2.0, std::log(1e-2), 1.9, std::log(2e-2)}};
  std::mt19937_64 engine(20240601);
  std::normal_distribution<double> standard(0.0, 1.0);
  for (const Pair& p : pairs) {
    CAPTURE(p.m1);
    CAPTURE(p.m2);
    double sum = 0.0, sum_sq = 0.0;
    for (int i = 0; i < kDraws; ++i) {
      const double x = p.m1 + std::exp(0.5 * p.lv1) * standard(engine);
      const double d = log_normal_pdf(x, p.m1, p.lv1) - log_normal_pdf(x, p.m2, p.lv2);
      sum += d;
      sum_sq += d * d;
    }
    const double mean = sum / kDraws;
    const double standard_error = std::sqrt((sum_sq / kDraws - mean * mean) / kDraws);
    const double kl = ddpm::normal_kl(p.m1, p.lv1, p.m2, p.lv2);
    CAPTURE(kl);
    CAPTURE(mean);
    CAPTURE(standard_error);
    CHECK(std::fabs(kl - mean) <= 5.0 * standard_error);
  }
}

TEST_CASE("normal_kl_with_grad: value equals normal_kl, derivatives match central differences") {
  // h = 1e-5: truncation error h^2 f''' / 6 ~ 1e-10 for these O(1) to O(100) derivatives and
  // roundoff eps |f| / h ~ 1e-10; tolerance 1e-6 (|d| + 1) leaves a wide margin over both.
  SUBCASE("central differences at five (q, p) pairs") {
    const double h = 1e-5;
    struct Case {
      double m1, lv1, m2, lv2;
    };
    for (const Case c :
         {Case{0.0, 0.0, 1.0, 0.0}, Case{0.5, -1.2, -0.2, 0.7}, Case{-1.0, 1.4, 0.3, -2.0},
          Case{2.0, -4.6, 1.9, -3.9}, Case{0.1, 0.3, 0.1, 0.3}}) {
      CAPTURE(c.m2);
      CAPTURE(c.lv2);
      const ddpm::KlWithGrad<double> g = ddpm::normal_kl_with_grad(c.m1, c.lv1, c.m2, c.lv2);
      CHECK(g.value == doctest::Approx(ddpm::normal_kl(c.m1, c.lv1, c.m2, c.lv2)).epsilon(1e-14));
      const double fd_mean = central_difference(
          [&](double m2) { return ddpm::normal_kl(c.m1, c.lv1, m2, c.lv2); }, c.m2, h);
      const double fd_log_var = central_difference(
          [&](double lv2) { return ddpm::normal_kl(c.m1, c.lv1, c.m2, lv2); }, c.lv2, h);
      CHECK(std::fabs(g.d_mean2 - fd_mean) <= 1e-6 * (std::fabs(fd_mean) + 1.0));
      CHECK(std::fabs(g.d_log_var2 - fd_log_var) <= 1e-6 * (std::fabs(fd_log_var) + 1.0));
    }
  }
  SUBCASE("at the minimum (p = q) both derivatives vanish") {
    const ddpm::KlWithGrad<double> g = ddpm::normal_kl_with_grad(0.4, -0.3, 0.4, -0.3);
    CHECK(g.value == doctest::Approx(0.0).scale(1.0).epsilon(1e-15));
    CHECK(g.d_mean2 == doctest::Approx(0.0).scale(1.0).epsilon(1e-15));
    CHECK(g.d_log_var2 == doctest::Approx(0.0).scale(1.0).epsilon(1e-15));
  }
}

TEST_CASE("gaussian_log_density and gaussian_nll_with_grad follow the normal density") {
  SUBCASE("known values") {
    // log N(0; 0, 1) = -log(2 pi) / 2; log N(1; 0, 1) = that - 1/2; 1e-15: a few roundings.
    const double half_log_two_pi = 0.5 * std::log(2.0 * std::numbers::pi);
    CHECK(ddpm::gaussian_log_density(0.0, 0.0, 0.0) ==
          doctest::Approx(-half_log_two_pi).epsilon(1e-15));
    CHECK(ddpm::gaussian_log_density(1.0, 0.0, 0.0) ==
          doctest::Approx(-half_log_two_pi - 0.5).epsilon(1e-15));
    // N(x; 3, 4) at x = 1: -log(2 sqrt(2 pi)) - 4 / 8.
    CHECK(ddpm::gaussian_log_density(1.0, 3.0, std::log(4.0)) ==
          doctest::Approx(-std::log(2.0) - half_log_two_pi - 0.5).epsilon(1e-15));
    // float agrees with double to float precision (1e-6 relative).
    CHECK(static_cast<double>(ddpm::gaussian_log_density(0.7f, -0.2f, 0.3f)) ==
          doctest::Approx(log_normal_pdf(0.7, -0.2, 0.3)).epsilon(1e-6));
  }
  SUBCASE("nll value and derivatives against the formula and central differences") {
    // Same finite-difference budget as for the KL: h = 1e-5, tolerance 1e-6 (|d| + 1).
    const double h = 1e-5;
    struct Case {
      double x, mean, log_var;
    };
    for (const Case c : {Case{0.0, 0.0, 0.0}, Case{0.7, -0.2, 0.3}, Case{-2.0, 1.0, -3.0},
                         Case{5.0, 4.9, std::log(1e-3)}, Case{1.0, -1.0, std::log(50.0)}}) {
      CAPTURE(c.x);
      CAPTURE(c.mean);
      CAPTURE(c.log_var);
      const ddpm::NllWithGrad<double> g = ddpm::gaussian_nll_with_grad(c.x, c.mean, c.log_var);
      CHECK(g.value == doctest::Approx(-log_normal_pdf(c.x, c.mean, c.log_var)).epsilon(1e-14));
      const auto nll = [&](double m, double lv) { return -log_normal_pdf(c.x, m, lv); };
      const double fd_mean =
          central_difference([&](double m) { return nll(m, c.log_var); }, c.mean, h);
      const double fd_log_var =
          central_difference([&](double lv) { return nll(c.mean, lv); }, c.log_var, h);
      CHECK(std::fabs(g.d_mean - fd_mean) <= 1e-6 * (std::fabs(fd_mean) + 1.0));
      CHECK(std::fabs(g.d_log_var - fd_log_var) <= 1e-6 * (std::fabs(fd_log_var) + 1.0));
    }
  }
}

TEST_CASE("discretized Gaussian: 256 bin masses are Phi differences and sum to 1") {
  struct Case {
    double mean, log_var;
  };
  // Narrow, medium and wide variances; means inside, on the edge of and outside [-1, 1].
  const std::vector<Case> cases = {
      {0.0, std::log(1e-2)}, {0.3, std::log(1e-4)},  {bin_center(17) + 0.001, std::log(1e-6)},
      {1.0, std::log(1e-3)}, {-1.0, std::log(0.5)},  {1.5, std::log(0.25)},
      {-2.0, std::log(1.0)}, {0.0, std::log(100.0)}, {-0.6, std::log(3e-5)},
  };
  SUBCASE("each mass matches the erfc form; the 256 masses sum to 1") {
    for (const Case c : cases) {
      CAPTURE(c.mean);
      CAPTURE(c.log_var);
      double total = 0.0;
      for (int k = 0; k < 256; ++k) {
        CAPTURE(k);
        const double p = std::exp(
            -ddpm::discretized_gaussian_nll_with_grad(bin_center(k), c.mean, c.log_var).value);
        const double expected = bin_mass(k, c.mean, c.log_var);
        total += p;
        if (expected > 2e-12) {
          // 1e-9 relative: both sides are differences of erfc values (accurate to a few ulp) whose
          // cancellation is at most ~1e-12 relative for these bins; 1e-9 catches any wrong edge.
          CHECK(p == doctest::Approx(expected).epsilon(1e-9));
        } else if (expected < 0.5e-12) {
          // Below the 1e-12 floor the header reports the floor itself.
          CHECK(p == doctest::Approx(1e-12).epsilon(1e-9));
        }
      }
      // 1e-9: the exact masses sum to 1; floored bins add at most 256e-12 = 2.6e-10 on top.
      CHECK(total == doctest::Approx(1.0).epsilon(1e-9));
    }
  }
  SUBCASE("log-likelihood is minus the nll") {
    CHECK(ddpm::discretized_gaussian_log_likelihood(bin_center(40), 0.1, -2.0) ==
          -ddpm::discretized_gaussian_nll_with_grad(bin_center(40), 0.1, -2.0).value);
  }
  SUBCASE("float inputs agree with double to float precision") {
    // 1e-6 relative: only the inputs and the result are rounded to float.
    for (const int k : {0, 7, 128, 255}) {
      const float x = static_cast<float>(bin_center(k));
      const ddpm::NllWithGrad<float> f = ddpm::discretized_gaussian_nll_with_grad(x, 0.2f, -3.0f);
      const ddpm::NllWithGrad<double> d = ddpm::discretized_gaussian_nll_with_grad(
          static_cast<double>(x), static_cast<double>(0.2f), -3.0);
      CHECK(static_cast<double>(f.value) == doctest::Approx(d.value).epsilon(1e-6));
      CHECK(static_cast<double>(f.d_mean) == doctest::Approx(d.d_mean).epsilon(1e-6));
    }
  }
}

TEST_CASE("discretized Gaussian derivatives match central differences") {
  // h scales with the standard deviation for the mean (h = 1e-4 sd) and is 1e-4 for the
  // log-variance, so the truncation error h^2 f''' / 6 is ~1e-9 relative to the derivative's
  // natural scale (1/sd resp. 1) and roundoff eps |f| / h is ~1e-11 of it; tolerance 1e-6 of
  // that scale.
  struct Case {
    int k;
    double mean, log_var;
  };
  const std::vector<Case> cases = {
      // interior bins, mean inside, near and far
      {100, bin_center(100) + 0.002, std::log(1e-5)},  // narrow: sd 3e-3, bin width 7.8e-3
      {100, bin_center(100) - 0.01, std::log(1e-5)},
      {128, 0.1, std::log(1e-2)},
      {1, -0.9, std::log(0.04)},
      {254, 0.95, std::log(0.5)},
      {60, -0.2, std::log(25.0)},  // wide: sd 5
      // the two edge bins, which extend to -inf / +inf
      {0, -1.0, std::log(1e-4)},
      {0, -0.95, std::log(1e-3)},
      {0, 0.5, std::log(0.3)},
      {255, 1.0, std::log(1e-4)},
      {255, 0.97, std::log(1e-3)},
      {255, -0.2, std::log(4.0)},
      {255, 1.4, std::log(0.1)},  // mean beyond the top edge
  };
  for (const Case c : cases) {
    CAPTURE(c.k);
    CAPTURE(c.mean);
    CAPTURE(c.log_var);
    const double x = bin_center(c.k);
    const ddpm::NllWithGrad<double> g =
        ddpm::discretized_gaussian_nll_with_grad(x, c.mean, c.log_var);
    REQUIRE(g.value < 20.0);  // well above the 1e-12 floor (-log 1e-12 = 27.6)
    CHECK(g.value == doctest::Approx(-std::log(bin_mass(c.k, c.mean, c.log_var))).epsilon(1e-9));
    const auto nll = [&](double m, double lv) {
      return ddpm::discretized_gaussian_nll_with_grad(x, m, lv).value;
    };
    const double sd = std::exp(0.5 * c.log_var);
    const double fd_mean =
        central_difference([&](double m) { return nll(m, c.log_var); }, c.mean, 1e-4 * sd);
    const double fd_log_var =
        central_difference([&](double lv) { return nll(c.mean, lv); }, c.log_var, 1e-4);
    CAPTURE(g.d_mean);
    CAPTURE(fd_mean);
    CAPTURE(g.d_log_var);
    CAPTURE(fd_log_var);
    CHECK(std::fabs(g.d_mean - fd_mean) <= 1e-6 * (std::fabs(fd_mean) + 1.0 / sd));
    CHECK(std::fabs(g.d_log_var - fd_log_var) <= 1e-6 * (std::fabs(fd_log_var) + 1.0));
  }
}

TEST_CASE("discretized Gaussian floors probabilities at 1e-12 with zero derivative") {
  const double floor_nll = -std::log(1e-12);  // 27.631021115928547
  SUBCASE("an interior bin far from a narrow mean") {
    const ddpm::NllWithGrad<double> g =
        ddpm::discretized_gaussian_nll_with_grad(bin_center(100), 0.9, std::log(1e-6));
    CHECK(g.value == doctest::Approx(floor_nll).epsilon(1e-15));
    CHECK(g.d_mean == 0.0);
    CHECK(g.d_log_var == 0.0);
  }
  SUBCASE("both edge bins with the mean at the opposite end") {
    const ddpm::NllWithGrad<double> lowest =
        ddpm::discretized_gaussian_nll_with_grad(-1.0, 1.0, std::log(1e-4));
    const ddpm::NllWithGrad<double> highest =
        ddpm::discretized_gaussian_nll_with_grad(1.0, -1.0, std::log(1e-4));
    CHECK(lowest.value == doctest::Approx(floor_nll).epsilon(1e-15));
    CHECK(highest.value == doctest::Approx(floor_nll).epsilon(1e-15));
    CHECK(lowest.d_mean == 0.0);
    CHECK(highest.d_log_var == 0.0);
  }
  SUBCASE("a mass just above the floor is not floored") {
    // Choose the mean so that the upper-tail mass of the lowest bin is about 1e-11:
    // P(X < -1 + 1/255) = Phi((-1 + 1/255 - mean) / sd) with sd = 0.1 and z = -6.7 (Phi
    // ~ 1.04e-11).
    const double mean = -1.0 + 1.0 / 255.0 + 0.67;
    const double expected = phi(-6.7);
    const ddpm::NllWithGrad<double> g =
        ddpm::discretized_gaussian_nll_with_grad(-1.0, mean, std::log(0.01));
    CHECK(expected > 5e-12);
    CHECK(std::exp(-g.value) == doctest::Approx(expected).epsilon(1e-9));
    CHECK(g.d_mean != 0.0);
  }
  SUBCASE("a narrow Gaussian centred in a bin has probability ~1 (nll ~ 0)") {
    // sd = 1e-4 against a half-bin of 3.9e-3: the mass outside is below 1e-300.
    const ddpm::NllWithGrad<double> g =
        ddpm::discretized_gaussian_nll_with_grad(bin_center(77), bin_center(77), std::log(1e-8));
    CHECK(g.value == doctest::Approx(0.0).scale(1.0).epsilon(1e-15));
  }
}

}  // namespace gaussian_test
