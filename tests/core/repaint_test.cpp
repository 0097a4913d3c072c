// SPDX-License-Identifier: MIT
// Tests of RePaint inpainting: its time path against the paper's closed-form length, its samples
// against the exact conditional of a Gaussian mixture, the noise levels of the known part, fresh
// noise on every revisit, and bitwise reproducibility.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "reference_math.hpp"
#include "support.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace repaint_test {

namespace {

using ddpm::Batch;
using ddpm::Index;

// Four 2D components at (+-2, +-2) with unequal weights and widths: the x coordinate picks a
// side, and on each side the y modes have weights unlike the marginal ones (side x = -2 favours
// y = +2, side x = +2 favours y = -2), so a sampler that ignores x gets the y modes wrong.
ddpm::GaussianMixture four_corners() {
  ddpm::GaussianMixture m;
  m.means.resize(4, 2);
  m.means << -2.0, 2.0,  //
      -2.0, -2.0,        //
      2.0, 2.0,          //
      2.0, -2.0;
  m.stds = {0.5, 0.4, 0.6, 0.5};
  m.weights = {0.3, 0.1, 0.1, 0.5};
  return m;
}

// The exact conditional p(y | x) of a 2D isotropic mixture, a 1D mixture: weights
// pi_k N(x; m_kx, s_k^2) normalized, components N(m_ky, s_k^2).
std::vector<double> conditional_weights(const ddpm::GaussianMixture& m, double x) {
  std::vector<double> w(static_cast<std::size_t>(m.components()));
  double total = 0.0;
  for (Index k = 0; k < m.components(); ++k) {
    const auto kk = static_cast<std::size_t>(k);
    const double s = m.stds[kk], d = x - m.means(k, 0);
    w[kk] = m.weights[kk] / s * std::exp(-0.5 * d * d / (s * s));
    total += w[kk];
  }
  for (double& v : w) v /= total;
  return w;
}

// Mean and variance of the samples' y in rows [first, first + n) on one side of y = 0.
struct Half {
  double mass = 0.0, mean = 0.0, variance = 0.0;
  Index count = 0;
};
Half half_stats(const Batch<double>& x, Index first, Index n, bool upper) {
  Half h;
  for (Index i = first; i < first + n; ++i) {
    if ((x(i, 1) > 0) != upper) continue;
    ++h.count;
    h.mean += x(i, 1);
  }
  h.mean /= static_cast<double>(h.count);
  for (Index i = first; i < first + n; ++i) {
    if ((x(i, 1) > 0) != upper) continue;
    h.variance += (x(i, 1) - h.mean) * (x(i, 1) - h.mean);
  }
  h.variance /= static_cast<double>(h.count - 1);
  h.mass = static_cast<double>(h.count) / static_cast<double>(n);
  return h;
}

// n rows of known x coordinate per value of xs (mask column 0 = 1), the y coordinate unknown.
std::pair<Batch<double>, Batch<double>> known_x(const std::vector<double>& xs, Index n) {
  const auto rows = static_cast<Index>(xs.size()) * n;
  Batch<double> known = Batch<double>::Zero(rows, 2), mask = Batch<double>::Zero(rows, 2);
  for (std::size_t v = 0; v < xs.size(); ++v) {
    known.middleRows(static_cast<Index>(v) * n, n).col(0).setConstant(xs[v]);
  }
  mask.col(0).setOnes();
  // The unknown column's values must be ignored, whatever they are.
  known.col(1).setConstant(std::numeric_limits<double>::quiet_NaN());
  return {known, mask};
}

// A denoiser predicting x0^ = 0 (with ModelOutput::x0): the reverse mean is then coef2_t x_t, so
// a step's noise can be read back from its input and output. Records every input.
struct ZeroX0 {
  std::vector<Batch<double>> inputs;
  std::vector<int> timesteps;
  void predict(const Batch<double>& x, std::span<const int> t, Batch<double>& out) {
    inputs.push_back(x);
    timesteps.push_back(t[0]);
    out.setZero(x.rows(), x.cols());
  }
};

}  // namespace

TEST_CASE("the RePaint path has the paper's shape and length") {
  SUBCASE("a small case written out") {
    CHECK(ddpm::repaint_schedule(4, 2, 2) == std::vector<int>{3, 2, 1, 0, 1, 2, 1, 0, -1});
    CHECK(ddpm::repaint_schedule(1, 10, 10) == std::vector<int>{0, -1});
    CHECK(ddpm::repaint_schedule(3, 1, 1) == std::vector<int>{2, 1, 0, -1});
  }
  SUBCASE("length 1 + T + 2 J (U - 1) j with J = ceil((T - j) / j) jump points, unit moves") {
    // Plain locals, not a structured binding: clang 14 (the TSan build) cannot capture those.
    for (const auto& row : std::vector<std::tuple<int, int, int>>{{250, 10, 10},
                                                                  {100, 10, 10},
                                                                  {100, 7, 3},
                                                                  {10, 10, 5},
                                                                  {11, 10, 5},
                                                                  {50, 1, 4},
                                                                  {1000, 10, 1},
                                                                  {5, 20, 3}}) {
      const int T = std::get<0>(row), j = std::get<1>(row), U = std::get<2>(row);
      CAPTURE(T);
      CAPTURE(j);
      CAPTURE(U);
      const std::vector<int> path = ddpm::repaint_schedule(T, j, U);
      const int jump_points = T > j ? (T - j + j - 1) / j : 0;
      CHECK(path.size() == static_cast<std::size_t>(1 + T + 2 * jump_points * (U - 1) * j));
      CHECK(path.front() == T - 1);
      CHECK(path.back() == -1);
      int down = 0;
      std::vector<int> visits(static_cast<std::size_t>(T), 0);
      bool unit_moves = true, in_range = true;
      for (std::size_t p = 1; p < path.size(); ++p) {
        unit_moves = unit_moves && std::abs(path[p] - path[p - 1]) == 1;
        in_range = in_range && path[p] >= -1 && path[p] <= T - 1;
        down += path[p] < path[p - 1] ? 1 : 0;
        if (path[p] < path[p - 1]) ++visits[static_cast<std::size_t>(path[p - 1])];
      }
      CHECK(unit_moves);
      CHECK(in_range);
      CHECK(*std::max_element(visits.begin(), visits.end()) == (T > j ? U : 1));
      ddpm::RepaintSampler<double> sampler(
          ddpm::GaussianDiffusion<double>(
              ddpm::NoiseSchedule::linear(1000).respaced("evenly " + std::to_string(T))),
          j, U);
      CHECK(sampler.schedule_path() == path);
      CHECK(sampler.network_evaluations() == down);
    }
    // The paper's setting (T = 250, j = 10, U = 10): 24 jump points, 2410 model calls.
    CHECK(ddpm::RepaintSampler<double>(
              ddpm::GaussianDiffusion<double>(ddpm::NoiseSchedule::linear(1000).respaced("250")))
              .network_evaluations() == 2410);
  }
}

TEST_CASE("RePaint draws the exact conditional p(y | x) of a Gaussian mixture (4000 per x)") {
  // 100 kept steps of the linear T = 1000 schedule, the paper's j = 10 and U = 10 (910 calls).
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("evenly 100");
  const ddpm::GaussianMixture mixture = four_corners();
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const std::vector<double> xs = {-2.0, 2.0, 2.5};
  const Index n = 4000;
  const auto [known, mask] = known_x(xs, n);
  const auto upper_mass = [&](double x) {
    const std::vector<double> w = conditional_weights(mixture, x);
    return w[0] + w[2];  // components with y mean +2 (their tails across y = 0 are < 1e-4)
  };

  SUBCASE("with resampling (j = 10, U = 10)") {
    ddpm::RepaintSampler<double> sampler(diffusion, 10, 10);
    const Batch<double> x = sampler.inpaint(model, known, mask, ddpm::CounterRng(11));
    for (std::size_t v = 0; v < xs.size(); ++v) {
      CAPTURE(xs[v]);
      const Index first = static_cast<Index>(v) * n;
      CHECK((x.middleRows(first, n).col(0).array() == xs[v]).all());  // known values exactly
      // Mass of the y > 0 mode: binomial 4 standard errors plus RePaint's own bias (it is not an
      // exact sampler), measured with 16000 samples per x at +0.012 (x = -2), +0.034 (x = 2),
      // +0.007 (x = 2.5); here 0.712 / 0.170 / 0.174 against exact 0.706 / 0.143 / 0.163.
      // Without resampling the error is 0.12 (next subcase), so 0.05 separates the two.
      const double p = upper_mass(xs[v]);
      const Half up = half_stats(x, first, n, true), down = half_stats(x, first, n, false);
      CAPTURE(p);
      CAPTURE(up.mass);
      CHECK(std::abs(up.mass - p) < 4 * std::sqrt(p * (1 - p) / n) + 0.05);
      // Each mode is one component (the other side's are e^-30 away): its mean within 4
      // standard errors plus 0.05 s, its variance within 4 standard errors plus the ancestral
      // chain's own under-dispersion at 100 steps (plain sampling of one Gaussian gives
      // 0.82 s^2 for s = 0.3, 0.87 s^2 for s = 0.5; here 0.79 - 0.89 s^2; allowed 0.75 s^2).
      const std::vector<double> w = conditional_weights(mixture, xs[v]);
      for (const auto& half_and_k :
           {std::pair{up, w[0] > w[2] ? 0 : 2}, std::pair{down, w[1] > w[3] ? 1 : 3}}) {
        const auto& half = half_and_k.first;
        const int k = half_and_k.second;
        CAPTURE(k);
        CAPTURE(half.mean);
        CAPTURE(half.variance);
        const double s = mixture.stds[static_cast<std::size_t>(k)];
        const auto nk = static_cast<double>(half.count);
        CHECK(std::abs(half.mean - mixture.means(k, 1)) < 4 * s / std::sqrt(nk) + 0.05 * s);
        CHECK(half.variance < s * s * (1 + 4 * std::sqrt(2 / nk)));
        CHECK(half.variance > s * s * (0.75 - 4 * std::sqrt(2 / nk)));
      }
    }
  }
  SUBCASE("without resampling (j = 1, U = 1) the y modes are measurably wrong") {
    // Replacing the known part alone lets y pick its mode before x is legible: measured mode
    // masses 0.590 (exact 0.706) at x = -2 and 0.260 (exact 0.143) at x = 2, 16 and 21
    // standard errors off. Resampling is what brings them within 0.035.
    ddpm::RepaintSampler<double> sampler(diffusion, 1, 1);
    const Batch<double> x =
        sampler.inpaint(model, known.topRows(2 * n), mask.topRows(2 * n), ddpm::CounterRng(11));
    for (std::size_t v = 0; v < 2; ++v) {
      CAPTURE(xs[v]);
      const double p = upper_mass(xs[v]);
      const Half up = half_stats(x, static_cast<Index>(v) * n, n, true);
      CAPTURE(up.mass);
      CHECK(std::abs(up.mass - p) > 0.08);
    }
  }
}

TEST_CASE("the known part carries the noise level of the kept step the model is called at") {
  // Mask all ones, a respaced schedule and jumps: every model input must be
  // sqrt(ab_t) y + sqrt(1 - ab_t) z with ab_t the kept step's alpha-bar, whether the step was
  // reached from above (replacement) or from below (forward steps of the jump). Checked with
  // alpha-bar recomputed from the original betas; 4000 values per input: the mean within 4
  // standard errors, the variance within 4 sqrt(2 / 4000) relative.
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("evenly 40");
  const std::vector<int> kept = schedule.timesteps();
  const std::vector<long double> betas = ddpm::test::ref::linear_betas(1000);
  std::vector<long double> alpha_bar(betas.size());
  long double product = 1.0L;
  for (std::size_t k = 0; k < betas.size(); ++k) alpha_bar[k] = product *= 1.0L - betas[k];
  ddpm::RepaintSampler<double> sampler(
      ddpm::GaussianDiffusion<double>(schedule, {.output = ddpm::ModelOutput::x0}), 5, 3);
  const Index n = 2000;
  Batch<double> known(n, 2);
  known.col(0).setConstant(1.5);
  known.col(1).setConstant(-0.5);
  const Batch<double> mask = Batch<double>::Ones(n, 2);
  ZeroX0 model;
  const Batch<double> x = sampler.inpaint(model, known, mask, ddpm::CounterRng(3));
  CHECK(x == known);  // the last step's known part is y itself
  REQUIRE(static_cast<int>(model.inputs.size()) == sampler.network_evaluations());
  // Model call c is made at path entry position[c]; a call reached by one reverse step from the
  // previous call's state got its known part by fresh replacement, so its noise must be
  // uncorrelated with the previous call's (|r| < 4 / sqrt(4000)), not drawn again with the same
  // key. (A call reached by a forward step is correlated with the state below it, by design.)
  const std::vector<int>& path = sampler.schedule_path();
  std::vector<std::size_t> position;
  for (std::size_t p = 0; p + 1 < path.size(); ++p) {
    if (path[p + 1] < path[p]) position.push_back(p);
  }
  REQUIRE(position.size() == model.inputs.size());
  int checked = 0, fresh = 0;
  Batch<double> previous;
  for (std::size_t c = 0; c < model.inputs.size(); ++c) {
    const auto ab = static_cast<double>(alpha_bar[static_cast<std::size_t>(model.timesteps[c])]);
    const Batch<double> residual = model.inputs[c] - std::sqrt(ab) * known;
    const double count = static_cast<double>(residual.size());
    const double mean = residual.mean();
    const double variance = (residual.array() - mean).square().sum() / (count - 1);
    CAPTURE(model.timesteps[c]);
    CHECK(std::abs(mean) < 4 * std::sqrt((1 - ab) / count));
    CHECK(std::abs(variance / (1 - ab) - 1) < 4 * std::sqrt(2 / count));
    if (c > 0 && position[c] == position[c - 1] + 1) {
      const double r = (residual.array() * previous.array()).sum() /
                       std::sqrt(residual.squaredNorm() * previous.squaredNorm());
      CHECK(std::abs(r) < 4 / std::sqrt(count));
      ++fresh;
    }
    previous = residual;
    ++checked;
  }
  CHECK(fresh > 40);
  CHECK(checked == 40 + 7 * 2 * 5);  // J = 7 jump points below 40 - 5, U - 1 = 2 passes each
}

TEST_CASE("every visit of a step draws fresh noise") {
  // T = 3, j = 1, U = 2: path 2, 1, 2, 1, 0, 1, 0, -1, so steps 2 and 1 each make two noisy
  // reverse steps. With x0^ = 0 the step is x_{t-1} = coef2_t x_t + sigma_t z (mask all zeros);
  // z read back from the two visits must be uncorrelated (|r| < 4 / sqrt(4000)), not the same.
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("evenly 3");
  ddpm::RepaintSampler<double> sampler(
      ddpm::GaussianDiffusion<double>(schedule, {.output = ddpm::ModelOutput::x0}), 1, 2);
  REQUIRE(sampler.schedule_path() == std::vector<int>{2, 1, 2, 1, 0, 1, 0, -1});
  const Index n = 2000;
  const Batch<double> known = Batch<double>::Zero(n, 2), mask = Batch<double>::Zero(n, 2);
  ZeroX0 model;
  std::vector<Batch<double>> after;
  (void)sampler.inpaint(model, known, mask, ddpm::CounterRng(5), 0,
                        [&](const ddpm::SamplerProgress<double>& p) { after.push_back(p.x); });
  REQUIRE(after.size() == 5);
  const auto noise = [&](std::size_t call, int step) {
    const auto i = static_cast<std::size_t>(step);
    const double coef2 = schedule.posterior_mean_coef2()[i];
    const double sigma = std::sqrt(schedule.posterior_variance()[i]);
    return Batch<double>((after[call] - coef2 * model.inputs[call]) / sigma);
  };
  // Reverse steps in path order: from 2, 2, 1, 1, 0.
  for (const auto& row : {std::tuple{0, 1, 2}, std::tuple{2, 3, 1}}) {
    const int first = std::get<0>(row), second = std::get<1>(row), step = std::get<2>(row);
    CAPTURE(step);
    const Batch<double> a = noise(static_cast<std::size_t>(first), step);
    const Batch<double> b = noise(static_cast<std::size_t>(second), step);
    const double count = static_cast<double>(a.size());
    CHECK(std::abs(a.squaredNorm() / count - 1) < 4 * std::sqrt(2 / count));  // it is N(0, 1)
    const double r = (a.array() * b.array()).sum() / std::sqrt(a.squaredNorm() * b.squaredNorm());
    CHECK(std::abs(r) < 4 / std::sqrt(count));
  }
  CHECK(ddpm::RepaintSampler<double>::visit_rng(ddpm::CounterRng(5), 1).seed() !=
        ddpm::RepaintSampler<double>::visit_rng(ddpm::CounterRng(5), 2).seed());
}

TEST_CASE("RePaint with a full or an empty mask") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("evenly 50");
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const Batch<double> y = ddpm::test::random_batch(64, 2, 9);
  SUBCASE("all known: the known values come back exactly") {
    ddpm::RepaintSampler<double> sampler(diffusion, 5, 4);
    CHECK(sampler.inpaint(model, y, Batch<double>::Ones(64, 2), ddpm::CounterRng(1)) == y);
  }
  SUBCASE("nothing known and no resampling: plain ancestral sampling, bitwise") {
    ddpm::RepaintSampler<double> sampler(diffusion, 1, 1);
    ddpm::AncestralSampler<double> ancestral(diffusion);
    CHECK(sampler.inpaint(model, y, Batch<double>::Zero(64, 2), ddpm::CounterRng(1), 7) ==
          ancestral.sample(model, 64, 2, ddpm::CounterRng(1), 7));
  }
}

TEST_CASE("RePaint is bitwise identical for any batch split and thread count") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("evenly 30");
  ddpm::GaussianMixtureDenoiser<float> model(ddpm::eight_gaussians_mixture(), schedule);
  ddpm::RepaintSampler<float> sampler(ddpm::GaussianDiffusion<float>(schedule), 4, 3);
  const ddpm::CounterRng rng(77);
  const Batch<float> known = ddpm::test::random_batch<float>(300, 2, 4);
  Batch<float> mask(300, 2);  // rows with none, one or both values known
  for (Index i = 0; i < 300; ++i) {
    mask(i, 0) = static_cast<float>(i % 2);
    mask(i, 1) = static_cast<float>((i / 2) % 2);
  }
  const Batch<float> whole = sampler.inpaint(model, known, mask, rng);
  SUBCASE("whole batch vs two parts") {
    const Batch<float> first = sampler.inpaint(model, known.topRows(100), mask.topRows(100), rng);
    const Batch<float> second =
        sampler.inpaint(model, known.bottomRows(200), mask.bottomRows(200), rng, 100);
    CHECK(first == whole.topRows(100));
    CHECK(second == whole.bottomRows(200));
  }
#ifdef _OPENMP
  SUBCASE("1 thread vs 2 threads") {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const Batch<float> one = sampler.inpaint(model, known, mask, rng);
    omp_set_num_threads(2);
    const Batch<float> two = sampler.inpaint(model, known, mask, rng);
    omp_set_num_threads(saved);
    CHECK(one == two);
    CHECK(one == whole);
  }
#endif
  SUBCASE("a different seed gives different samples, the same known values") {
    const Batch<float> other = sampler.inpaint(model, known, mask, ddpm::CounterRng(78));
    CHECK(other != whole);
    CHECK((mask.array() == 0 || other.array() == known.array()).all());
  }
}

TEST_CASE("RePaint reports progress and runs a model with a training switch in inference mode") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("ddim10");
  ddpm::RepaintSampler<double> sampler(ddpm::GaussianDiffusion<double>(schedule), 3, 2);
  ddpm::test::SwitchableZeroModel model;
  std::vector<int> seen;
  const Batch<double> y = Batch<double>::Zero(4, 2);
  (void)sampler.inpaint(model, y, y, ddpm::CounterRng(1), 0,
                        [&](const ddpm::SamplerProgress<double>& p) {
                          CHECK(p.total == sampler.network_evaluations());
                          CHECK(p.done == static_cast<int>(seen.size()) + 1);
                          seen.push_back(p.t);
                        });
  // Path 9 .. 6, 7, 8, 9, 8 .. 3, 4, 5, 6, 5 .. 0, 1, 2, 3, 2 .. -1: the original timesteps of
  // every step taken downwards.
  std::vector<int> expected;
  const std::vector<int>& path = sampler.schedule_path();
  for (std::size_t p = 1; p < path.size(); ++p) {
    if (path[p] < path[p - 1]) expected.push_back(schedule.timestep(path[p - 1]));
  }
  CHECK(seen == expected);
  CHECK(static_cast<int>(seen.size()) == 10 + 3 * 1 * 3);
  CHECK(model.calls == sampler.network_evaluations());
  CHECK(model.calls_in_training == 0);
  CHECK(model.training());
}

TEST_CASE("RePaint arguments are validated") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(100);
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
  DDPM_CHECK_INVALID("jump_length", ddpm::RepaintSampler<double>(diffusion, 0, 10));
  DDPM_CHECK_INVALID("resample_count", ddpm::RepaintSampler<double>(diffusion, 10, 0));
  DDPM_CHECK_INVALID("steps", ddpm::repaint_schedule(0, 10, 10));
  ddpm::RepaintSampler<double> sampler(diffusion, 10, 2);
  const Batch<double> known = Batch<double>::Zero(4, 2);
  const ddpm::CounterRng rng(1);
  DDPM_CHECK_INVALID("mask", sampler.inpaint(model, known, Batch<double>::Zero(4, 3), rng));
  DDPM_CHECK_INVALID("mask", sampler.inpaint(model, known, Batch<double>::Zero(3, 2), rng));
  Batch<double> half = Batch<double>::Zero(4, 2);
  half(2, 1) = 0.5;
  DDPM_CHECK_INVALID("mask", sampler.inpaint(model, known, half, rng));
  CHECK_THROWS_WITH_AS(sampler.inpaint(model, known, half, rng), doctest::Contains("entry (2, 1)"),
                       ddpm::InvalidArgument);
  DDPM_CHECK_INVALID("known",
                     sampler.inpaint(model, Batch<double>(0, 2), Batch<double>(0, 2), rng));
  DDPM_CHECK_INVALID(
      "x_t", sampler.inpaint(model, Batch<double>::Zero(4, 3), Batch<double>::Zero(4, 3), rng));
}

}  // namespace repaint_test
