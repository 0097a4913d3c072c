// SPDX-License-Identifier: MIT
// Checks NoiseSchedule and space_timesteps against long-double recomputations of REFERENCE.md.
#include "ddpm/schedule.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "support.hpp"

namespace schedule_test {

namespace {

using ddpm::NoiseSchedule;
using LD = long double;

constexpr double kEps = std::numeric_limits<double>::epsilon();

std::size_t at(int i) { return static_cast<std::size_t>(i); }

// Every derived array of REFERENCE.md, recomputed from betas in long double (64-bit mantissa).
// alpha-bar is exp(sum log1p(-beta)) and 1 - alpha-bar is -expm1(same sum), so the reference has
// no cancellation of its own; its rounding (~1e-18 relative) is negligible at every tolerance here.
struct Expected {
  std::vector<LD> beta, alpha, ab, ab_prev, ab_next, one_minus_ab, one_minus_ab_prev, sqrt_ab,
      sqrt_one_minus_ab, log_one_minus_ab, sqrt_recip_ab, sqrt_recipm1_ab, posterior_variance,
      posterior_log_variance_clipped, coef1, coef2, fixed_large_log_variance;
};

Expected expected_from_betas(const std::vector<LD>& beta) {
  Expected e;
  const std::size_t n = beta.size();
  e.beta = beta;
  LD log_ab = 0;
  for (std::size_t t = 0; t < n; ++t) {
    e.ab_prev.push_back(std::exp(log_ab));
    e.one_minus_ab_prev.push_back(-std::expm1(log_ab));
    log_ab += std::log1p(-beta[t]);
    e.alpha.push_back(1 - beta[t]);
    e.ab.push_back(std::exp(log_ab));
    e.one_minus_ab.push_back(-std::expm1(log_ab));
  }
  for (std::size_t t = 0; t < n; ++t) {
    e.ab_next.push_back(t + 1 < n ? e.ab[t + 1] : 0.0L);
    e.sqrt_ab.push_back(std::sqrt(e.ab[t]));
    e.sqrt_one_minus_ab.push_back(std::sqrt(e.one_minus_ab[t]));
    e.log_one_minus_ab.push_back(std::log(e.one_minus_ab[t]));
    e.sqrt_recip_ab.push_back(1 / std::sqrt(e.ab[t]));
    e.sqrt_recipm1_ab.push_back(std::sqrt(e.one_minus_ab[t] / e.ab[t]));
    e.posterior_variance.push_back(beta[t] * e.one_minus_ab_prev[t] / e.one_minus_ab[t]);
    e.coef1.push_back(std::sqrt(e.ab_prev[t]) * beta[t] / e.one_minus_ab[t]);
    e.coef2.push_back(std::sqrt(e.alpha[t]) * e.one_minus_ab_prev[t] / e.one_minus_ab[t]);
  }
  for (std::size_t t = 0; t < n; ++t) {
    // REFERENCE.md: the log of beta~ borrows beta~_1 at t = 0 (beta~_0 = 0); a one-step schedule
    // has no beta~_1 and the header documents log(beta_0) instead.
    const LD first = n > 1 ? std::log(e.posterior_variance[1]) : std::log(beta[0]);
    e.posterior_log_variance_clipped.push_back(t == 0 ? first : std::log(e.posterior_variance[t]));
    e.fixed_large_log_variance.push_back(t == 0 ? first : std::log(beta[t]));
  }
  return e;
}

std::vector<LD> to_long_double(const std::vector<double>& v) { return {v.begin(), v.end()}; }

// Tolerance at step t. The target is 1e-12 relative, but the double-precision formulas cannot
// always reach it, so the forward error bound of the double computation is added (x8 margin):
// ab_t is a product of t + 1 rounded factors (relative error <= (t + 1) eps), and 1 - ab_t
// (likewise 1 - ab_{t-1}) amplifies that by ab / (1 - ab) through cancellation; a beta obtained as
// 1 - (ratio near 1) (cosine construction, respacing) carries an absolute error of a few eps,
// i.e. eps / beta relative. With T = 4000 this bound is ~1e-10 at t = 0 and ~1e-12 for t > 100.
double tolerance(const Expected& e, std::size_t t) {
  const double beta = static_cast<double>(e.beta[t]);
  double kappa =
      1.0 + 1.0 / beta + static_cast<double>(t + 1) / static_cast<double>(e.one_minus_ab[t]);
  if (t > 0) kappa += static_cast<double>(t) / static_cast<double>(e.one_minus_ab_prev[t]);
  return 1e-12 + 8.0 * kEps * kappa;
}

// Checks one array: relative error for plain quantities, absolute error for logs (an absolute
// error in log x is a relative error in x, so the same tolerance applies).
void check_array(const char* name, const std::vector<double>& actual,
                 const std::vector<LD>& expected, const Expected& e, bool is_log) {
  INFO("array ", name);
  REQUIRE(actual.size() == expected.size());
  double worst = 0.0;
  std::size_t worst_t = 0;
  for (std::size_t t = 0; t < actual.size(); ++t) {
    // The clipped logs at t = 0 are log(beta~_1): judge them at t = 1's conditioning.
    const std::size_t judged_at = (is_log && t == 0 && actual.size() > 1) ? 1 : t;
    const LD error = std::fabs(static_cast<LD>(actual[t]) - expected[t]);
    const LD scale = is_log ? 1.0L : std::fabs(expected[t]);
    const double ratio = expected[t] == 0
                             ? (actual[t] == 0.0 ? 0.0 : INFINITY)
                             : static_cast<double>(error / scale) / tolerance(e, judged_at);
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_t = t;
    }
  }
  INFO("worst t = ", worst_t, ": actual ", actual[worst_t], ", expected ",
       static_cast<double>(expected[worst_t]), ", error / tolerance = ", worst);
  CHECK(worst <= 1.0);
}

void check_all_arrays(const NoiseSchedule& s, const Expected& e) {
  check_array("betas", s.betas(), e.beta, e, false);
  check_array("alphas", s.alphas(), e.alpha, e, false);
  check_array("alphas_cumprod", s.alphas_cumprod(), e.ab, e, false);
  check_array("alphas_cumprod_prev", s.alphas_cumprod_prev(), e.ab_prev, e, false);
  check_array("alphas_cumprod_next", s.alphas_cumprod_next(), e.ab_next, e, false);
  check_array("sqrt_alphas_cumprod", s.sqrt_alphas_cumprod(), e.sqrt_ab, e, false);
  check_array("sqrt_one_minus_alphas_cumprod", s.sqrt_one_minus_alphas_cumprod(),
              e.sqrt_one_minus_ab, e, false);
  check_array("log_one_minus_alphas_cumprod", s.log_one_minus_alphas_cumprod(), e.log_one_minus_ab,
              e, true);
  check_array("sqrt_recip_alphas_cumprod", s.sqrt_recip_alphas_cumprod(), e.sqrt_recip_ab, e,
              false);
  check_array("sqrt_recipm1_alphas_cumprod", s.sqrt_recipm1_alphas_cumprod(), e.sqrt_recipm1_ab, e,
              false);
  check_array("posterior_variance", s.posterior_variance(), e.posterior_variance, e, false);
  check_array("posterior_log_variance_clipped", s.posterior_log_variance_clipped(),
              e.posterior_log_variance_clipped, e, true);
  check_array("posterior_mean_coef1", s.posterior_mean_coef1(), e.coef1, e, false);
  check_array("posterior_mean_coef2", s.posterior_mean_coef2(), e.coef2, e, false);
  check_array("fixed_large_log_variance", s.fixed_large_log_variance(), e.fixed_large_log_variance,
              e, true);
}

// Ho et al. linear betas with the 1000 / T scaling, in long double from the definition.
std::vector<LD> linear_betas(int T) {
  const LD scale = 1000.0L / T;
  std::vector<LD> beta;
  for (int i = 0; i < T; ++i) beta.push_back(scale * (1e-4L + (0.02L - 1e-4L) * i / (T - 1)));
  return beta;
}

// Nichol & Dhariwal: alpha-bar(u) = f(u) / f(0), f(u) = cos^2((u + s) / (1 + s) pi / 2), s = 0.008.
LD cosine_alpha_bar(LD u) {
  const auto f = [](LD v) {
    const LD c = std::cos((v + 0.008L) / 1.008L * std::numbers::pi_v<LD> / 2);
    return c * c;
  };
  return f(u) / f(0);
}

// Relative error of f(u) evaluated in double: the angle carries a few ulp of absolute error, and
// cos near pi/2 turns that into 2 eps / cos(angle) relative (x2 for the square, x4 margin).
double cosine_f_error(double u) {
  const double c = std::cos((u + 0.008) / 1.008 * std::numbers::pi / 2.0);
  return kEps + 16.0 * kEps / c;
}

}  // namespace

TEST_CASE("linear schedule matches its definition and every derived array, T = 1000 and 4000") {
  for (const int T : {1000, 4000}) {
    CAPTURE(T);
    const NoiseSchedule s = NoiseSchedule::linear(T);
    REQUIRE(s.size() == T);
    SUBCASE("hand values: the scaled endpoints 1e-4 * 1000/T and 0.02 * 1000/T") {
      // 1e-15 relative: a linspace endpoint is a product of two doubles, a couple of ulp.
      CHECK(s.betas().front() == doctest::Approx(0.1 / T).epsilon(1e-15));
      CHECK(s.betas().back() == doctest::Approx(20.0 / T).epsilon(1e-15));
      CHECK(s.betas()[1] == doctest::Approx((0.1 + 19.9 / (T - 1)) / T).epsilon(1e-15));
      CHECK(s.alphas_cumprod_prev().front() == 1.0);
      CHECK(s.posterior_variance().front() == 0.0);
      CHECK(s.alphas_cumprod_next().back() == 0.0);
    }
    SUBCASE("every array against the long-double recomputation from the closed-form betas") {
      check_all_arrays(s, expected_from_betas(linear_betas(T)));
    }
    SUBCASE("the 1000 / T scaling keeps the total noise comparable: ab_final of T vs T = 1000") {
      // sum(beta) is the same for every T; ab_final = exp(sum log(1 - beta)) then agrees to
      // O(sum beta^2) ~ 1e-2 in log space (the T = 1000 value is 4.04e-5).
      const double ab_1000 = NoiseSchedule::linear(1000).alphas_cumprod().back();
      CHECK(std::log(s.alphas_cumprod().back()) ==
            doctest::Approx(std::log(ab_1000)).epsilon(0.02));
    }
  }
}

TEST_CASE("cosine schedule: alpha-bar is f(t/T)/f(0), the last beta is capped at 0.999") {
  for (const int T : {1000, 4000}) {
    CAPTURE(T);
    const NoiseSchedule s = NoiseSchedule::cosine(T);
    REQUIRE(s.size() == T);
    const std::vector<double>& ab = s.alphas_cumprod();
    const std::vector<double>& beta = s.betas();

    SUBCASE("alpha-bar equals the closed form wherever no beta was clipped") {
      // Only the last beta is clipped: beta_{T-2} = 1 - (1/2)^2 = 0.75 exactly in the limit.
      for (int i = 0; i + 1 < T; ++i) REQUIRE(beta[at(i)] < 0.999);
      double worst = 0.0;
      for (int i = 0; i + 1 < T; ++i) {
        const LD expected = cosine_alpha_bar(static_cast<LD>(i + 1) / T);
        const double error = static_cast<double>(std::fabs(ab[at(i)] - expected) / expected);
        // 1e-12 target plus the error of f(u) and f(0) in double and 2 eps per product factor.
        const double tol = 1e-12 + cosine_f_error(static_cast<double>(i + 1) / T) +
                           cosine_f_error(0.0) + 2.0 * kEps * (i + 1);
        worst = std::max(worst, error / tol);
      }
      CHECK(worst <= 1.0);
    }
    SUBCASE("betas equal 1 - ab((i+1)/T) / ab(i/T) and the last one is exactly 0.999") {
      CHECK(beta.back() == 0.999);
      CHECK(ab.back() == doctest::Approx(ab[at(T - 2)] * 0.001).epsilon(1e-14));
      double worst = 0.0;
      for (int i = 0; i + 1 < T; ++i) {
        const LD expected = 1 - cosine_alpha_bar(static_cast<LD>(i + 1) / T) /
                                    cosine_alpha_bar(static_cast<LD>(i) / T);
        // beta = 1 - ratio: absolute error (1 - beta)(error of two f values) + 2 eps.
        const double abs_tol =
            1e-12 * static_cast<double>(expected) + 2.0 * kEps +
            (1.0 - beta[at(i)]) * (cosine_f_error(static_cast<double>(i) / T) +
                                   cosine_f_error(static_cast<double>(i + 1) / T));
        worst = std::max(worst, static_cast<double>(std::fabs(beta[at(i)] - expected)) / abs_tol);
      }
      CHECK(worst <= 1.0);
    }
    SUBCASE("every derived array against the long-double recomputation from these betas") {
      check_all_arrays(s, expected_from_betas(to_long_double(beta)));
    }
  }
}

TEST_CASE("custom betas give the hand-computed derived arrays") {
  const NoiseSchedule s(std::vector<double>{0.1, 0.2, 0.3});
  // Exact rationals: ab = 0.9, 0.72, 0.504; beta~_1 = 0.2 * 0.1 / 0.28 = 1/14,
  // beta~_2 = 0.3 * 0.28 / 0.496 = 21/124. 1e-14: a few roundings of numbers of order 1.
  const double tol = 1e-14;
  REQUIRE(s.size() == 3);
  CHECK(s.alphas_cumprod()[0] == doctest::Approx(0.9).epsilon(tol));
  CHECK(s.alphas_cumprod()[1] == doctest::Approx(0.72).epsilon(tol));
  CHECK(s.alphas_cumprod()[2] == doctest::Approx(0.504).epsilon(tol));
  CHECK(s.alphas_cumprod_prev()[1] == doctest::Approx(0.9).epsilon(tol));
  CHECK(s.alphas_cumprod_next()[0] == doctest::Approx(0.72).epsilon(tol));
  CHECK(s.posterior_variance()[0] == 0.0);
  CHECK(s.posterior_variance()[1] == doctest::Approx(1.0 / 14.0).epsilon(tol));
  CHECK(s.posterior_variance()[2] == doctest::Approx(21.0 / 124.0).epsilon(tol));
  CHECK(s.posterior_log_variance_clipped()[0] ==
        doctest::Approx(std::log(1.0 / 14.0)).epsilon(tol));
  CHECK(s.posterior_log_variance_clipped()[1] ==
        doctest::Approx(std::log(1.0 / 14.0)).epsilon(tol));
  CHECK(s.posterior_log_variance_clipped()[2] ==
        doctest::Approx(std::log(21.0 / 124.0)).epsilon(tol));
  CHECK(s.fixed_large_log_variance()[0] == doctest::Approx(std::log(1.0 / 14.0)).epsilon(tol));
  CHECK(s.fixed_large_log_variance()[1] == doctest::Approx(std::log(0.2)).epsilon(tol));
  CHECK(s.fixed_large_log_variance()[2] == doctest::Approx(std::log(0.3)).epsilon(tol));
  // mu~ coefficients at t = 1: sqrt(0.9) 0.2 / 0.28 and sqrt(0.8) 0.1 / 0.28; at t = 0: 1 and 0.
  CHECK(s.posterior_mean_coef1()[0] == doctest::Approx(1.0).epsilon(tol));
  CHECK(s.posterior_mean_coef2()[0] == 0.0);
  CHECK(s.posterior_mean_coef1()[1] == doctest::Approx(std::sqrt(0.9) * 0.2 / 0.28).epsilon(tol));
  CHECK(s.posterior_mean_coef2()[1] == doctest::Approx(std::sqrt(0.8) * 0.1 / 0.28).epsilon(tol));
  CHECK(s.sqrt_recipm1_alphas_cumprod()[2] ==
        doctest::Approx(std::sqrt(0.496 / 0.504)).epsilon(tol));
  CHECK(s.log_one_minus_alphas_cumprod()[1] == doctest::Approx(std::log(0.28)).epsilon(tol));
  CHECK_FALSE(s.is_respaced());
  CHECK(s.original_size() == 3);
  // And the generic checker agrees on a longer custom list.
  check_all_arrays(s, expected_from_betas({0.1L, 0.2L, 0.3L}));
  const std::vector<double> many = {0.5, 1e-6, 0.999999, 0.25, 0.01};
  check_all_arrays(NoiseSchedule(many), expected_from_betas(to_long_double(many)));
}

TEST_CASE("a one-step schedule (T = 1) is valid and finite") {
  SUBCASE("linear(1) has beta = 1000 * 1e-4 = 0.1") {
    const NoiseSchedule s = NoiseSchedule::linear(1);
    REQUIRE(s.size() == 1);
    CHECK(s.betas()[0] == doctest::Approx(0.1).epsilon(1e-15));
    CHECK(s.alphas_cumprod()[0] == doctest::Approx(0.9).epsilon(1e-15));
    CHECK(s.alphas_cumprod_prev()[0] == 1.0);
    CHECK(s.alphas_cumprod_next()[0] == 0.0);
    CHECK(s.posterior_variance()[0] == 0.0);
    // No beta~_1 exists; the header documents log(beta_0) for both logs at t = 0.
    CHECK(s.posterior_log_variance_clipped()[0] == doctest::Approx(std::log(0.1)).epsilon(1e-15));
    CHECK(s.fixed_large_log_variance()[0] == doctest::Approx(std::log(0.1)).epsilon(1e-15));
    CHECK(s.posterior_mean_coef1()[0] == doctest::Approx(1.0).epsilon(1e-14));
    CHECK(s.posterior_mean_coef2()[0] == 0.0);
    for (const auto* array : {&s.sqrt_recipm1_alphas_cumprod(), &s.log_one_minus_alphas_cumprod(),
                              &s.posterior_log_variance_clipped()}) {
      CHECK(std::isfinite((*array)[0]));
    }
    CHECK(s.timestep(0) == 0);
    CHECK(s.index_of(0) == 0);
  }
  SUBCASE("cosine(1) is the single capped step 0.999") {
    const NoiseSchedule s = NoiseSchedule::cosine(1);
    REQUIRE(s.size() == 1);
    CHECK(s.betas()[0] == 0.999);
    CHECK(std::isfinite(s.posterior_log_variance_clipped()[0]));
  }
  SUBCASE("custom one step, and every spacing of T = 1 keeps step 0") {
    const NoiseSchedule s(std::vector<double>{0.5});
    CHECK(s.alphas_cumprod()[0] == 0.5);
    for (const char* spacing : {"1", "evenly 1", "ddim1"}) {
      CAPTURE(spacing);
      CHECK(ddpm::space_timesteps(1, spacing) == std::vector<int>{0});
      const NoiseSchedule r = s.respaced(spacing);
      CHECK(r.size() == 1);
      CHECK(r.betas()[0] == doctest::Approx(0.5).epsilon(1e-15));
    }
  }
}

TEST_CASE("respacing keeps alpha-bar at the kept steps and maps timesteps both ways") {
  const NoiseSchedule base = NoiseSchedule::linear(1000);

  SUBCASE("keeping every step reproduces the original schedule, every array") {
    std::vector<int> all(1000);
    for (int i = 0; i < 1000; ++i) all[at(i)] = i;
    const NoiseSchedule r = base.respaced(all);
    CHECK(r.is_respaced());
    CHECK(r.size() == 1000);
    CHECK(r.original_size() == 1000);
    CHECK(r.timesteps() == all);
    // Against the long-double arrays of the original betas, with the same tolerance model (the
    // respaced betas 1 - ab_k / ab_{k-1} lose eps / beta to cancellation; it is in the model).
    check_all_arrays(r, expected_from_betas(to_long_double(base.betas())));
    for (int i : {0, 1, 500, 999}) {
      CHECK(r.timestep(i) == i);
      CHECK(r.index_of(i) == i);
    }
  }
  SUBCASE("respaced alpha-bar equals the original alpha-bar at every kept step") {
    for (const char* spacing : {"evenly 50", "ddim50", "10", "ddim7", "evenly 1000"}) {
      CAPTURE(spacing);
      const std::vector<int> kept = ddpm::space_timesteps(1000, spacing);
      const NoiseSchedule r = base.respaced(spacing);
      REQUIRE(r.size() == static_cast<int>(kept.size()));
      CHECK(r.timesteps() == kept);
      for (int j = 0; j < r.size(); ++j) {
        // 1e-12 relative: at most 1000 factors rounded twice each, <= 4.4e-13.
        CHECK(r.alphas_cumprod()[at(j)] ==
              doctest::Approx(base.alphas_cumprod()[at(kept[at(j)])]).epsilon(1e-12));
        CHECK(r.timestep(j) == kept[at(j)]);
        CHECK(r.index_of(kept[at(j)]) == j);
      }
      // The first respaced beta is 1 - ab_{k_0} (REFERENCE.md: ab_{k_{-1}} = 1).
      CHECK(r.betas()[0] ==
            doctest::Approx(1.0 - base.alphas_cumprod()[at(kept[0])]).epsilon(1e-12));
    }
  }
  SUBCASE("a hand-picked kept list: betas 1 - ab_k / ab_prev_kept, independently multiplied") {
    const std::vector<int> kept = {3, 10, 500, 999};
    const NoiseSchedule r = base.respaced(kept);
    const std::vector<LD> beta = linear_betas(1000);
    LD ab = 1, previous = 1;
    std::size_t j = 0;
    for (int t = 0; t < 1000; ++t) {
      ab *= 1 - beta[at(t)];
      if (j < kept.size() && t == kept[j]) {
        // 1e-11 relative: beta'_0 = 1 - ab_3 ~ 4e-4 loses ~1e-13 to cancellation, with margin.
        CHECK(r.betas()[j] ==
              doctest::Approx(static_cast<double>(1 - ab / previous)).epsilon(1e-11));
        previous = ab;
        ++j;
      }
    }
    CHECK(r.timestep(2) == 500);
    CHECK(r.index_of(999) == 3);
  }
  SUBCASE("respacing a respaced schedule composes the timestep maps") {
    const NoiseSchedule r1 = base.respaced("evenly 100");
    const NoiseSchedule r2 = r1.respaced(std::vector<int>{0, 10, 99});
    CHECK(r2.original_size() == 1000);
    CHECK(r2.timesteps() == std::vector<int>{r1.timestep(0), r1.timestep(10), r1.timestep(99)});
    CHECK(r2.timestep(2) == 999);
    CHECK(r2.index_of(r1.timestep(10)) == 1);
    for (int j = 0; j < 3; ++j) {
      CHECK(r2.alphas_cumprod()[at(j)] ==
            doctest::Approx(base.alphas_cumprod()[at(r2.timestep(j))]).epsilon(1e-12));
    }
  }
  SUBCASE("index_of rejects a dropped or out-of-range timestep; identity when not respaced") {
    const NoiseSchedule r = base.respaced("ddim50");
    DDPM_CHECK_INVALID("timestep", r.index_of(21));
    DDPM_CHECK_INVALID("timestep", r.index_of(-1));
    DDPM_CHECK_INVALID("timestep", r.index_of(1000));
    DDPM_CHECK_INVALID("timestep", base.index_of(1000));
    DDPM_CHECK_INVALID("timestep", base.index_of(-3));
    CHECK(base.index_of(123) == 123);
    CHECK(base.timestep(123) == 123);
    CHECK(r.index_of(980) == 49);
  }
}

TEST_CASE("space_timesteps: evenly N, plain N and ddimN") {
  SUBCASE("evenly N keeps both ends, N distinct increasing steps, each the rounded linspace") {
    for (int T = 1; T <= 60; ++T) {
      for (int N = 1; N <= T; ++N) {
        CAPTURE(T);
        CAPTURE(N);
        const std::vector<int> kept = ddpm::space_timesteps(T, "evenly " + std::to_string(N));
        REQUIRE(kept.size() == at(N));
        CHECK(kept.front() == 0);
        if (N > 1) CHECK(kept.back() == T - 1);
        for (int i = 0; i < N; ++i) {
          if (i > 0) CHECK(kept[at(i)] > kept[at(i - 1)]);
          // Rounded linspace, in integers: |k_i - i (T-1)/(N-1)| <= 1/2, i.e.
          // |2 (N-1) k_i - 2 i (T-1)| <= N - 1 (ties may go either way).
          if (N > 1) {
            const long long deviation = 2LL * (N - 1) * kept[at(i)] - 2LL * i * (T - 1);
            CHECK(std::llabs(deviation) <= N - 1);
          }
        }
      }
    }
    CHECK(ddpm::space_timesteps(1000, "evenly 50").back() == 999);
    CHECK(ddpm::space_timesteps(10, "evenly 4") == std::vector<int>{0, 3, 6, 9});
    CHECK(ddpm::space_timesteps(4000, "evenly 4000").size() == 4000);
  }
  SUBCASE("\"50\" and \"evenly 50\" agree") {
    for (const int T : {50, 999, 1000, 4000}) {
      CHECK(ddpm::space_timesteps(T, "50") == ddpm::space_timesteps(T, "evenly 50"));
    }
  }
  SUBCASE("ddimN uses the smallest stride giving exactly N steps") {
    std::vector<int> stride20;
    for (int t = 0; t < 1000; t += 20) stride20.push_back(t);
    CHECK(ddpm::space_timesteps(1000, "ddim50") == stride20);
    CHECK(ddpm::space_timesteps(1000, "ddim50").back() == 980);
    // T = 10, N = 3: stride 4 gives 0, 4, 8 (stride 3 gives four steps, stride 5 two).
    CHECK(ddpm::space_timesteps(10, "ddim3") == std::vector<int>{0, 4, 8});
    // T = 1000, N = 7: ceil(1000 / s) = 7 first at s = 143 (ceil(1000/142) = 8).
    std::vector<int> stride143;
    for (int t = 0; t < 1000; t += 143) stride143.push_back(t);
    CHECK(ddpm::space_timesteps(1000, "ddim7") == stride143);
    CHECK(ddpm::space_timesteps(1000, "ddim1") == std::vector<int>{0});
    CHECK(ddpm::space_timesteps(1000, "ddim1000").size() == 1000);
  }
  SUBCASE("a ddimN that no integer stride can meet throws") {
    // ceil(1000 / s) jumps from 1000 (s = 1) to 500 (s = 2): 999 and 501 are unreachable.
    DDPM_CHECK_INVALID("spacing", ddpm::space_timesteps(1000, "ddim999"));
    DDPM_CHECK_INVALID("spacing", ddpm::space_timesteps(1000, "ddim501"));
    DDPM_CHECK_INVALID("spacing", NoiseSchedule::linear(1000).respaced("ddim999"));
  }
}

TEST_CASE("bad schedule arguments throw InvalidArgument naming the parameter") {
  SUBCASE("betas outside (0, 1): 0, 1, negative, NaN, and an empty list") {
    DDPM_CHECK_INVALID("betas[1]", NoiseSchedule(std::vector<double>{0.1, 0.0}));
    DDPM_CHECK_INVALID("betas[0]", NoiseSchedule(std::vector<double>{1.0}));
    DDPM_CHECK_INVALID("betas[2]", NoiseSchedule(std::vector<double>{0.1, 0.2, -0.1}));
    DDPM_CHECK_INVALID(
        "betas[0]", NoiseSchedule(std::vector<double>{std::numeric_limits<double>::quiet_NaN()}));
    DDPM_CHECK_INVALID("betas[0]",
                       NoiseSchedule(std::vector<double>{std::numeric_limits<double>::infinity()}));
    DDPM_CHECK_INVALID("betas", NoiseSchedule(std::vector<double>{}));
  }
  SUBCASE("T < 1, and linear T too small for its scaled betas to stay below 1") {
    DDPM_CHECK_INVALID("num_timesteps", NoiseSchedule::linear(0));
    DDPM_CHECK_INVALID("num_timesteps", NoiseSchedule::linear(-5));
    DDPM_CHECK_INVALID("num_timesteps", NoiseSchedule::cosine(0));
    DDPM_CHECK_INVALID("num_timesteps", ddpm::space_timesteps(0, "1"));
    // 1000/20 * 0.02 = 1 is not a valid beta; T = 21 gives 0.952.
    DDPM_CHECK_INVALID("num_timesteps", NoiseSchedule::linear(20));
    DDPM_CHECK_INVALID("num_timesteps", NoiseSchedule::linear(2));
    CHECK_NOTHROW((void)NoiseSchedule::linear(21));
  }
  SUBCASE("cosine offset and cap") {
    DDPM_CHECK_INVALID("s", NoiseSchedule::cosine(100, 0.0));
    DDPM_CHECK_INVALID("max_beta", NoiseSchedule::cosine(100, 0.008, 1.0));
    DDPM_CHECK_INVALID("max_beta", NoiseSchedule::cosine(100, 0.008, 0.0));
  }
  SUBCASE("unknown spacing strings and N > T") {
    for (const char* spacing : {"", "foo", "evenly", "evenly 0", "0", "-5", "50x", "ddim", "ddim0",
                                "ddim-3", "1001", "evenly 1001", "ddim1001", "ddim 50"}) {
      CAPTURE(spacing);
      DDPM_CHECK_INVALID("spacing", ddpm::space_timesteps(1000, spacing));
    }
    DDPM_CHECK_INVALID("spacing", NoiseSchedule::linear(1000).respaced("evenly 1001"));
  }
  SUBCASE("kept lists: empty, not strictly increasing, out of range") {
    const NoiseSchedule s = NoiseSchedule::linear(100);
    DDPM_CHECK_INVALID("kept_timesteps", s.respaced(std::vector<int>{}));
    DDPM_CHECK_INVALID("kept_timesteps", s.respaced(std::vector<int>{0, 5, 5}));
    DDPM_CHECK_INVALID("kept_timesteps", s.respaced(std::vector<int>{0, 7, 3}));
    DDPM_CHECK_INVALID("kept_timesteps", s.respaced(std::vector<int>{0, 100}));
    DDPM_CHECK_INVALID("kept_timesteps", s.respaced(std::vector<int>{-1, 3}));
    // Indices of a respaced schedule refer to its own steps, 0..size()-1.
    DDPM_CHECK_INVALID("kept_timesteps", s.respaced("10").respaced(std::vector<int>{0, 10}));
  }
}

TEST_CASE("tiny betas keep every derived array finite") {
  // 1 - alpha-bar would round to 0 for beta = 1e-17 if computed as 1 - prod(1 - beta).
  const ddpm::NoiseSchedule schedule(std::vector<double>{1e-17, 0.5});
  CHECK(schedule.posterior_variance()[0] == 0.0);
  CHECK(schedule.sqrt_one_minus_alphas_cumprod()[0] ==
        doctest::Approx(std::sqrt(1e-17)).epsilon(1e-12));
  CHECK(schedule.posterior_mean_coef1()[0] == doctest::Approx(1.0).epsilon(1e-12));
  for (const auto* array :
       {&schedule.posterior_mean_coef1(), &schedule.posterior_mean_coef2(),
        &schedule.log_one_minus_alphas_cumprod(), &schedule.posterior_log_variance_clipped()}) {
    for (const double v : *array) CHECK(std::isfinite(v));
  }
}

}  // namespace schedule_test
