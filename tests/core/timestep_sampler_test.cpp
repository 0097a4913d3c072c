// SPDX-License-Identifier: MIT
// Checks the uniform and loss-second-moment timestep samplers: coverage, probabilities, weights,
// empirical frequencies, the loss history window and argument checks.
#include "ddpm/timestep_sampler.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "support.hpp"

namespace timestep_sampler_test {

namespace {

using ddpm::CounterRng;
using ddpm::LossSecondMomentSampler;
using ddpm::UniformTimestepSampler;

struct Draws {
  std::vector<int> t;
  std::vector<double> weights;
};

template <class Sampler>
Draws draw(const Sampler& sampler, const CounterRng& rng, std::uint32_t step,
           std::uint32_t first_sample, std::size_t n) {
  Draws d{std::vector<int>(n), std::vector<double>(n)};
  sampler.sample(rng, step, first_sample, std::span<int>(d.t), std::span<double>(d.weights));
  return d;
}

void feed(LossSecondMomentSampler& sampler, const std::vector<int>& t,
          const std::vector<double>& losses) {
  sampler.update(std::span<const int>(t), std::span<const double>(losses));
}

// Records `losses` for timestep t, one update() call each (the batch layout does not matter).
void feed_one_t(LossSecondMomentSampler& sampler, int t, const std::vector<double>& losses) {
  feed(sampler, std::vector<int>(losses.size(), t), losses);
}

// Pearson's chi-square of counts of t in 0..T-1 against expected counts n p_t.
double chi_square(const std::vector<int>& t, const std::vector<double>& p) {
  std::vector<double> counts(p.size(), 0.0);
  for (const int v : t) counts[static_cast<std::size_t>(v)] += 1.0;
  double chi2 = 0.0;
  for (std::size_t k = 0; k < p.size(); ++k) {
    const double expected = p[k] * static_cast<double>(t.size());
    chi2 += (counts[k] - expected) * (counts[k] - expected) / expected;
  }
  return chi2;
}

// The hand-chosen losses of the T = 5 tests (10 per t) and their probabilities, worked out by hand:
//   t = 0: ten 1.0          -> sqrt(mean L^2) = 1
//   t = 1: ten 2.0          -> 2
//   t = 2: +3, -3, ...      -> 3 (a mean instead of the second moment would give 0)
//   t = 3: ten 0.0          -> 0, so only the uniform part 0.001 / 5 remains
//   t = 4: 1, 2, ..., 10    -> sqrt(385 / 10) = sqrt(38.5)
// p_t = w_t / sum(w) * 0.999 + 0.001 / 5.
std::vector<std::vector<double>> hand_losses() {
  std::vector<std::vector<double>> l(5);
  for (int k = 0; k < 10; ++k) {
    l[0].push_back(1.0);
    l[1].push_back(2.0);
    l[2].push_back(k % 2 == 0 ? 3.0 : -3.0);
    l[3].push_back(0.0);
    l[4].push_back(k + 1.0);
  }
  return l;
}

std::vector<double> hand_probabilities() {
  const double w[5] = {1.0, 2.0, 3.0, 0.0, std::sqrt(38.5)};
  const double total = 6.0 + std::sqrt(38.5);
  std::vector<double> p;
  for (const double wt : w) p.push_back(wt / total * 0.999 + 0.0002);
  return p;
}

LossSecondMomentSampler warmed_hand_sampler() {
  LossSecondMomentSampler sampler(5);
  const std::vector<std::vector<double>> losses = hand_losses();
  for (int t = 0; t < 5; ++t) feed_one_t(sampler, t, losses[static_cast<std::size_t>(t)]);
  return sampler;
}

}  // namespace

TEST_CASE("UniformTimestepSampler covers 0..T-1 uniformly with weight 1") {
  const CounterRng rng(5);
  SUBCASE("100000 draws over T = 10: in range, weights 1, chi-square below p = 1e-4") {
    const UniformTimestepSampler sampler(10);
    const Draws d = draw(sampler, rng, 3, 0, 100000);
    bool in_range = true, unit_weights = true;
    for (std::size_t i = 0; i < d.t.size(); ++i) {
      in_range = in_range && d.t[i] >= 0 && d.t[i] < 10;
      unit_weights = unit_weights && d.weights[i] == 1.0;
    }
    REQUIRE(in_range);
    CHECK(unit_weights);
    // 9 degrees of freedom: critical value 33.72 at p = 1e-4.
    const double chi2 = chi_square(d.t, std::vector<double>(10, 0.1));
    CAPTURE(chi2);
    CHECK(chi2 < 33.72);
  }
  SUBCASE("draws depend only on (step, global sample index): any batch split agrees") {
    const UniformTimestepSampler sampler(1000);
    const Draws whole = draw(sampler, rng, 8, 0, 64);
    const Draws head = draw(sampler, rng, 8, 0, 30), tail = draw(sampler, rng, 8, 30, 34);
    std::vector<int> joined = head.t;
    joined.insert(joined.end(), tail.t.begin(), tail.t.end());
    CHECK(joined == whole.t);
    CHECK(draw(sampler, rng, 9, 0, 64).t != whole.t);
    CHECK(draw(sampler, CounterRng(6), 8, 0, 64).t != whole.t);
  }
  SUBCASE("T = 1 always gives 0; float weights are 1 too") {
    const UniformTimestepSampler sampler(1);
    std::vector<int> t(50, -1);
    std::vector<float> w(50, 0.0f);
    sampler.sample(rng, 0, 0, std::span<int>(t), std::span<float>(w));
    CHECK(t == std::vector<int>(50, 0));
    CHECK(w == std::vector<float>(50, 1.0f));
  }
  SUBCASE("bad arguments") {
    DDPM_CHECK_INVALID("num_timesteps", UniformTimestepSampler(0));
    const UniformTimestepSampler sampler(10);
    std::vector<int> t(4);
    std::vector<double> w(3);
    DDPM_CHECK_INVALID("weights.size()",
                       sampler.sample(rng, 0, 0, std::span<int>(t), std::span<double>(w)));
  }
}

TEST_CASE("LossSecondMomentSampler samples uniformly until every t has 10 losses") {
  const CounterRng rng(17);
  LossSecondMomentSampler sampler(5);
  const std::vector<std::vector<double>> losses = hand_losses();
  // t = 0..3 get ten losses, t = 4 only nine; t = 0 gets 30 more, which must not count for t = 4.
  for (int t = 0; t < 4; ++t) feed_one_t(sampler, t, losses[static_cast<std::size_t>(t)]);
  feed_one_t(sampler, 0, std::vector<double>(30, 50.0));
  feed_one_t(sampler, 4, std::vector<double>(losses[4].begin(), losses[4].begin() + 9));
  CHECK_FALSE(sampler.warmed_up());
  CHECK(sampler.probabilities() == std::vector<double>(5, 0.2));
  const Draws d = draw(sampler, rng, 0, 0, 50000);
  bool unit_weights = true;
  for (const double w : d.weights) unit_weights = unit_weights && w == 1.0;
  CHECK(unit_weights);
  // Uniform over 5: chi-square with 4 degrees of freedom, critical value 23.51 at p = 1e-4.
  const double chi2 = chi_square(d.t, std::vector<double>(5, 0.2));
  CAPTURE(chi2);
  CHECK(chi2 < 23.51);
  // The tenth loss of t = 4 completes the warm-up.
  feed_one_t(sampler, 4, {10.0});
  CHECK(sampler.warmed_up());
  CHECK(sampler.probabilities() != std::vector<double>(5, 0.2));
}

TEST_CASE("LossSecondMomentSampler: p = sqrt(mean L^2) normalized, mixed with 0.001 uniform") {
  const CounterRng rng(23);
  LossSecondMomentSampler sampler = warmed_hand_sampler();
  REQUIRE(sampler.warmed_up());
  const std::vector<double> p = hand_probabilities();

  SUBCASE("probabilities equal the hand-computed values") {
    // 1e-14 relative: a few sums and one square root of O(1) numbers.
    for (std::size_t t = 0; t < 5; ++t) {
      CAPTURE(t);
      CHECK(sampler.probabilities()[t] == doctest::Approx(p[t]).epsilon(1e-14));
    }
    CHECK(sampler.probabilities()[3] == doctest::Approx(0.001 / 5).epsilon(1e-14));
  }
  SUBCASE("each draw is weighted by 1 / (T p_t)") {
    const Draws d = draw(sampler, rng, 1, 0, 2000);
    for (std::size_t i = 0; i < d.t.size(); ++i) {
      REQUIRE(d.t[i] >= 0);
      REQUIRE(d.t[i] < 5);
      CHECK(d.weights[i] ==
            doctest::Approx(1.0 / (5.0 * p[static_cast<std::size_t>(d.t[i])])).epsilon(1e-14));
    }
  }
  SUBCASE("empirical frequencies of 200000 draws match p; the weighted mean is unbiased") {
    constexpr int kDraws = 200000;
    const Draws d = draw(sampler, rng, 2, 0, kDraws);
    std::vector<double> counts(5, 0.0);
    // Importance-weighted mean of m_t = t + 1 estimates (1/T) sum m_t = 3.
    double sum = 0.0, sum_sq = 0.0;
    for (std::size_t i = 0; i < d.t.size(); ++i) {
      counts[static_cast<std::size_t>(d.t[i])] += 1.0;
      const double value = d.weights[i] * (d.t[i] + 1.0);
      sum += value;
      sum_sq += value * value;
    }
    for (std::size_t t = 0; t < 5; ++t) {
      CAPTURE(t);
      // Binomial standard error sqrt(p (1 - p) / n); 5 of them (p_3 = 2e-4: 40 +- 6.3 expected).
      CHECK(std::fabs(counts[t] / kDraws - p[t]) <= 5.0 * std::sqrt(p[t] * (1.0 - p[t]) / kDraws));
    }
    const double mean = sum / kDraws;
    const double standard_error = std::sqrt((sum_sq / kDraws - mean * mean) / kDraws);
    CAPTURE(mean);
    CAPTURE(standard_error);
    CHECK(std::fabs(mean - 3.0) <= 5.0 * standard_error);
  }
  SUBCASE("draws depend only on (step, global sample index) once warmed up too") {
    const Draws whole = draw(sampler, rng, 4, 10, 40);
    const Draws head = draw(sampler, rng, 4, 10, 15), tail = draw(sampler, rng, 4, 25, 25);
    std::vector<int> joined = head.t;
    joined.insert(joined.end(), tail.t.begin(), tail.t.end());
    CHECK(joined == whole.t);
  }
  SUBCASE("all-zero losses fall back to uniform probabilities") {
    LossSecondMomentSampler zeros(4);
    for (int t = 0; t < 4; ++t) feed_one_t(zeros, t, std::vector<double>(10, 0.0));
    REQUIRE(zeros.warmed_up());
    for (const double q : zeros.probabilities()) CHECK(q == doctest::Approx(0.25).epsilon(1e-15));
  }
}

TEST_CASE("LossSecondMomentSampler keeps only the last 10 losses per t") {
  LossSecondMomentSampler sampler = warmed_hand_sampler();
  // Ten new losses of 100 replace all of t = 0's; four 7s replace the four oldest 2s of t = 1:
  // w_0 = 100, w_1 = sqrt((6 * 4 + 4 * 49) / 10) = sqrt(22); the others are unchanged.
  feed_one_t(sampler, 0, std::vector<double>(10, 100.0));
  feed(sampler, {1, 1, 1, 1}, {7.0, 7.0, 7.0, 7.0});
  const double w[5] = {100.0, std::sqrt(22.0), 3.0, 0.0, std::sqrt(38.5)};
  const double total = 103.0 + std::sqrt(22.0) + std::sqrt(38.5);
  for (std::size_t t = 0; t < 5; ++t) {
    CAPTURE(t);
    CHECK(sampler.probabilities()[t] ==
          doctest::Approx(w[t] / total * 0.999 + 0.0002).epsilon(1e-14));
  }
  SUBCASE("history rows are oldest first, counts stay at 10") {
    const std::vector<double>& history = sampler.loss_history();
    REQUIRE(history.size() == 50);
    const std::vector<double> row1(history.begin() + 10, history.begin() + 20);
    CHECK(row1 == std::vector<double>{2, 2, 2, 2, 2, 2, 7, 7, 7, 7});
    const std::vector<double> row0(history.begin(), history.begin() + 10);
    CHECK(row0 == std::vector<double>(10, 100.0));
    CHECK(sampler.loss_counts() == std::vector<int>(5, 10));
  }
  SUBCASE("restore() from the saved state reproduces probabilities and draws") {
    LossSecondMomentSampler copy(5);
    copy.restore(sampler.loss_history(), sampler.loss_counts());
    CHECK(copy.warmed_up());
    CHECK(copy.probabilities() == sampler.probabilities());
    const CounterRng rng(3);
    CHECK(draw(copy, rng, 7, 0, 100).t == draw(sampler, rng, 7, 0, 100).t);
    DDPM_CHECK_INVALID("loss history size",
                       copy.restore(std::vector<double>(49), std::vector<int>(5)));
    DDPM_CHECK_INVALID("loss counts size",
                       copy.restore(std::vector<double>(50), std::vector<int>(4)));
  }
  SUBCASE("restore() validates every field of a crafted state and keeps the old one") {
    // A negative count used to index before the history row (out of bounds); a count above the
    // history length past it. Both come from a checkpoint file, so they are refused.
    LossSecondMomentSampler copy(5);
    copy.restore(sampler.loss_history(), sampler.loss_counts());
    const std::vector<double> before = copy.probabilities();
    for (const int bad : {-1, -2147483647 - 1, 11, 2147483647}) {
      CAPTURE(bad);
      std::vector<int> counts = sampler.loss_counts();
      counts[2] = bad;
      DDPM_CHECK_INVALID("loss count", copy.restore(sampler.loss_history(), counts));
    }
    for (const double bad : {std::nan(""), std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity()}) {
      std::vector<double> history = sampler.loss_history();
      history[17] = bad;
      DDPM_CHECK_INVALID("loss history value", copy.restore(history, sampler.loss_counts()));
    }
    CHECK(copy.probabilities() == before);
    // Partial histories (counts below 10) are valid states: not warmed up, draws are uniform.
    std::vector<int> partial = sampler.loss_counts();
    partial[0] = 3;
    copy.restore(sampler.loss_history(), partial);
    CHECK_FALSE(copy.warmed_up());
    copy.update<double>(std::vector<int>{0}, std::vector<double>{1.0});
    CHECK(copy.loss_counts()[0] == 4);
  }
}

TEST_CASE("LossSecondMomentSampler rejects bad arguments") {
  LossSecondMomentSampler sampler(5);
  SUBCASE("update with mismatched sizes or t out of range") {
    DDPM_CHECK_INVALID("losses.size()", feed(sampler, {0, 1, 2}, {1.0, 2.0}));
    DDPM_CHECK_INVALID("losses.size()", feed(sampler, {0}, {1.0, 2.0}));
    DDPM_CHECK_INVALID("t", feed(sampler, {5}, {1.0}));
    DDPM_CHECK_INVALID("t", feed(sampler, {-1}, {1.0}));
  }
  SUBCASE("a rejected update leaves the sampler unchanged (strong exception guarantee)") {
    // T = 2: t = 0 has ten losses, t = 1 nine. A batch whose first entry would complete the
    // warm-up and whose second entry is out of range must be rejected as a whole; otherwise the
    // sampler reports warmed_up() with probabilities that were never refreshed.
    LossSecondMomentSampler two(2);
    feed_one_t(two, 0, std::vector<double>(10, 1.0));
    feed_one_t(two, 1, std::vector<double>(9, 1.0));
    const std::vector<double> history = two.loss_history();
    const std::vector<int> counts = two.loss_counts();
    DDPM_CHECK_INVALID("t", feed(two, {1, 7}, {1.0, 1.0}));
    CHECK(two.loss_counts() == counts);
    CHECK(two.loss_history() == history);
    CHECK_FALSE(two.warmed_up());
    // Whatever the state, draws must still follow probabilities(): both t about half the time.
    const Draws d = draw(two, CounterRng(4), 0, 0, 1000);
    int ones = 0;
    for (const int t : d.t) ones += t;
    CAPTURE(ones);
    CHECK(ones > 400);  // Binomial(1000, 1/2): 500 +- 16, so 400 is 6 standard deviations
    CHECK(ones < 600);
  }
  SUBCASE("sample with mismatched spans") {
    std::vector<int> t(3);
    std::vector<double> w(4);
    DDPM_CHECK_INVALID("weights.size()", sampler.sample(CounterRng(1), 0, 0, std::span<int>(t),
                                                        std::span<double>(w)));
  }
  SUBCASE("constructor arguments") {
    DDPM_CHECK_INVALID("num_timesteps", LossSecondMomentSampler(0));
    DDPM_CHECK_INVALID("history", LossSecondMomentSampler(5, 0));
    DDPM_CHECK_INVALID("uniform_fraction", LossSecondMomentSampler(5, 10, 0.0));
    DDPM_CHECK_INVALID("uniform_fraction", LossSecondMomentSampler(5, 10, 1.5));
  }
}

}  // namespace timestep_sampler_test
