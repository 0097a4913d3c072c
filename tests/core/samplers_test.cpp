// SPDX-License-Identifier: MIT
// Tests of the samplers with the exact mixture denoiser: the samples must reproduce the mixture,
// DDIM inversion must round-trip, and results must not depend on threads or batch splits.
#include <doctest/doctest.h>

#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "ddpm/ddpm.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using ddpm::Batch;
using ddpm::Index;

// Three well-separated 2D components with unequal weights and widths.
ddpm::GaussianMixture three_components() {
  ddpm::GaussianMixture m;
  m.means.resize(3, 2);
  m.means << -2.0, 0.0,  //
      1.5, 1.5,          //
      1.0, -2.0;
  m.stds = {0.3, 0.5, 0.2};
  m.weights = {0.5, 0.3, 0.2};
  return m;
}

struct ComponentStats {
  double weight;
  Eigen::Vector2d mean;
  Eigen::Matrix2d covariance;
  Index count;
};

// Assigns each sample to its nearest component mean (components are > 12 sd apart at their
// closest, so misassignment is negligible) and measures each component's weight, mean, covariance.
std::vector<ComponentStats> component_stats(const Batch<double>& x,
                                            const ddpm::GaussianMixture& m) {
  std::vector<ComponentStats> stats(
      static_cast<std::size_t>(m.components()),
      ComponentStats{0, Eigen::Vector2d::Zero(), Eigen::Matrix2d::Zero(), 0});
  std::vector<int> owner(static_cast<std::size_t>(x.rows()));
  for (Index i = 0; i < x.rows(); ++i) {
    Index best = 0;
    (m.means.rowwise() - x.row(i)).rowwise().squaredNorm().minCoeff(&best);
    owner[static_cast<std::size_t>(i)] = static_cast<int>(best);
    auto& s = stats[static_cast<std::size_t>(best)];
    ++s.count;
    s.mean += x.row(i).transpose();
  }
  for (auto& s : stats) s.mean /= static_cast<double>(s.count);
  for (Index i = 0; i < x.rows(); ++i) {
    auto& s = stats[static_cast<std::size_t>(owner[static_cast<std::size_t>(i)])];
    const Eigen::Vector2d d = x.row(i).transpose() - s.mean;
    s.covariance += d * d.transpose();
  }
  for (auto& s : stats) {
    s.covariance /= static_cast<double>(s.count - 1);
    s.weight = static_cast<double>(s.count) / static_cast<double>(x.rows());
  }
  return stats;
}

// Checks the samples against the mixture with 4-standard-error tolerances (binomial for weights,
// s / sqrt(n_k) for means, s^2 sqrt(2 / n_k) for variances, s^2 / sqrt(n_k) for covariances), plus
// an allowance for the sampler's discretization error: `bias` relative to w or s for weights and
// means, `variance_bias` relative to s^2 for the covariance.
void check_reproduces_mixture(const Batch<double>& x, const ddpm::GaussianMixture& m, double bias,
                              double variance_bias) {
  const auto stats = component_stats(x, m);
  const auto n = static_cast<double>(x.rows());
  for (Index k = 0; k < m.components(); ++k) {
    const auto& s = stats[static_cast<std::size_t>(k)];
    const double w = m.weights[static_cast<std::size_t>(k)],
                 sd = m.stds[static_cast<std::size_t>(k)];
    const double nk = static_cast<double>(s.count);
    CAPTURE(k);
    CHECK(std::abs(s.weight - w) < 4 * std::sqrt(w * (1 - w) / n) + bias * w);
    for (int j = 0; j < 2; ++j) {
      CHECK(std::abs(s.mean(j) - m.means(k, j)) < 4 * sd / std::sqrt(nk) + bias * sd);
      CHECK(std::abs(s.covariance(j, j) - sd * sd) <
            4 * sd * sd * std::sqrt(2 / nk) + variance_bias * sd * sd);
    }
    CHECK(std::abs(s.covariance(0, 1)) < 4 * sd * sd / std::sqrt(nk) + variance_bias * sd * sd);
  }
}

}  // namespace

TEST_CASE("samplers with the exact denoiser reproduce a Gaussian mixture (20000 samples)") {
  const ddpm::GaussianMixture mixture = three_components();
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const ddpm::CounterRng rng(2024);
  const Index n = 20000;
  SUBCASE("ancestral, all 1000 steps") {
    ddpm::AncestralSampler<double> sampler{ddpm::GaussianDiffusion<double>(schedule)};
    check_reproduces_mixture(sampler.sample(model, n, 2, rng), mixture, 0.0, 0.0);
  }
  SUBCASE("ancestral, respaced to 100 steps, fixed-large and fixed-small") {
    // With 100 of 1000 steps the two fixed variances bracket the truth: on one component with
    // s = 0.3 we measured variances 0.074 (small) and 0.097 (large) for 0.09, i.e. -18 % / +7 %,
    // shrinking in proportion to 1/steps. Allow 3 % of w or s and 25 % of s^2.
    for (const auto variance : {ddpm::VarianceKind::fixed_small, ddpm::VarianceKind::fixed_large}) {
      ddpm::AncestralSampler<double> sampler{
          ddpm::GaussianDiffusion<double>(schedule.respaced("evenly 100"), {.variance = variance})};
      check_reproduces_mixture(sampler.sample(model, n, 2, rng), mixture, 0.03, 0.25);
    }
  }
  SUBCASE("DDIM (eta = 0) with 50 and 100 steps") {
    // Deterministic DDIM narrows sharp modes when its steps are large: measured -16 % of s^2 at
    // 50 steps and -8 % at 100 on a component with s = 0.3. Allow 5 % of w or s, and 25 % / 15 % of
    // s^2.
    for (const auto& [spacing, variance_bias] :
         {std::pair{"ddim50", 0.25}, std::pair{"ddim100", 0.15}}) {
      ddpm::DdimSampler<double> sampler{
          ddpm::GaussianDiffusion<double>(schedule.respaced(spacing))};
      CAPTURE(spacing);
      check_reproduces_mixture(sampler.sample(model, n, 2, rng), mixture, 0.05, variance_bias);
    }
  }
  SUBCASE("DDIM with eta = 1 over all steps equals ancestral sampling with fixed-small variance") {
    ddpm::DdimSampler<double> ddim{ddpm::GaussianDiffusion<double>(schedule), 1.0};
    ddpm::AncestralSampler<double> ancestral{ddpm::GaussianDiffusion<double>(schedule)};
    // Same noise addresses and sigma_t^2 = beta~_t, so the two chains agree to rounding.
    const Batch<double> a = ddim.sample(model, 200, 2, rng);
    const Batch<double> b = ancestral.sample(model, 200, 2, rng);
    CHECK((a - b).cwiseAbs().maxCoeff() < 1e-9);
  }
}

TEST_CASE("conditional sampling with a label draws from that component only") {
  const ddpm::GaussianMixture mixture = three_components();
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const Index n = 2000;
  const std::vector<int> labels(static_cast<std::size_t>(n), 2);
  ddpm::WithLabels<double, ddpm::GaussianMixtureDenoiser<double>> conditioned(model, labels);
  ddpm::DdimSampler<double> sampler{ddpm::GaussianDiffusion<double>(schedule.respaced("ddim50"))};
  const Batch<double> x = sampler.sample(conditioned, n, 2, ddpm::CounterRng(5));
  const auto stats = component_stats(x, mixture);
  CHECK(stats[2].count == n);
  CHECK(std::abs(stats[2].mean(0) - 1.0) < 0.05);
  CHECK(std::abs(stats[2].mean(1) + 2.0) < 0.05);
}

TEST_CASE("DDIM inversion followed by DDIM sampling reconstructs x_0") {
  // Deterministic DDIM is a discretized ODE; inverting and sampling are each first-order
  // accurate, so the round-trip error shrinks in proportion to 1/steps. Measured on 500 mixture
  // samples: mean error 0.035 at 100 steps and 0.0035 at 1000 (max 0.034; the worst points lie
  // between modes, where the flow separates). Require mean < 0.05 at 100 steps, and mean < 0.006
  // and max < 0.06 at 1000 steps.
  const ddpm::GaussianMixture mixture = three_components();
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  ddpm::AncestralSampler<double> ancestral{
      ddpm::GaussianDiffusion<double>(schedule.respaced("evenly 100"))};
  const Batch<double> x0 = ancestral.sample(model, 500, 2, ddpm::CounterRng(9));
  for (const auto& [spacing, mean_limit, max_limit] :
       {std::tuple{"ddim100", 0.05, 10.0}, std::tuple{"ddim1000", 0.006, 0.06}}) {
    ddpm::DdimSampler<double> sampler{ddpm::GaussianDiffusion<double>(schedule.respaced(spacing))};
    Batch<double> x = x0;
    sampler.invert(model, x);
    // The inverted points look like noise: mean ~0, variance ~1 (1000 values: SE 0.03 and 0.045).
    CHECK(std::abs(x.mean()) < 0.15);
    CHECK(std::abs((x.array() - x.mean()).square().mean() - 1.0) < 0.2);
    sampler.denoise(model, x, ddpm::CounterRng(9));
    const Eigen::VectorXd error = (x - x0).rowwise().norm();
    CAPTURE(spacing);
    CAPTURE(error.maxCoeff());
    CAPTURE(error.mean());
    CHECK(error.mean() < mean_limit);
    CHECK(error.maxCoeff() < max_limit);
  }
}

TEST_CASE("samples are bitwise identical for any batch split and thread count") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  ddpm::GaussianMixtureDenoiser<float> model(ddpm::eight_gaussians_mixture(), schedule);
  const ddpm::CounterRng rng(77);
  ddpm::AncestralSampler<float> sampler{
      ddpm::GaussianDiffusion<float>(schedule.respaced("evenly 200"))};
  const Batch<float> whole = sampler.sample(model, 300, 2, rng);
  SUBCASE("whole batch vs two halves") {
    const Batch<float> first = sampler.sample(model, 100, 2, rng, 0);
    const Batch<float> second = sampler.sample(model, 200, 2, rng, 100);
    CHECK(first == whole.topRows(100));
    CHECK(second == whole.bottomRows(200));
  }
#ifdef _OPENMP
  SUBCASE("1 thread vs 2 threads") {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const Batch<float> one = sampler.sample(model, 300, 2, rng);
    omp_set_num_threads(2);
    const Batch<float> two = sampler.sample(model, 300, 2, rng);
    omp_set_num_threads(saved);
    CHECK(one == two);
    CHECK(one == whole);
  }
#endif
  SUBCASE("a different seed gives different samples") {
    CHECK(sampler.sample(model, 300, 2, ddpm::CounterRng(78)) != whole);
  }
}

TEST_CASE("the progress callback sees every step with original timesteps") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).respaced("ddim10");
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
  ddpm::DdimSampler<double> sampler{ddpm::GaussianDiffusion<double>(schedule)};
  std::vector<int> seen;
  (void)sampler.sample(model, 4, 2, ddpm::CounterRng(1), 0,
                       [&](const ddpm::SamplerProgress<double>& p) {
                         CHECK(p.total == 10);
                         CHECK(p.done == static_cast<int>(seen.size()) + 1);
                         CHECK(p.x.rows() == 4);
                         seen.push_back(p.t);
                       });
  CHECK(seen == std::vector<int>{900, 800, 700, 600, 500, 400, 300, 200, 100, 0});
}

TEST_CASE("sampler arguments are validated") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(100);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
  CHECK_THROWS_WITH_AS(ddpm::DdimSampler<double>(ddpm::GaussianDiffusion<double>(schedule), -0.5),
                       doctest::Contains("eta = -0.5"), std::invalid_argument);
  ddpm::AncestralSampler<double> sampler{ddpm::GaussianDiffusion<double>(schedule)};
  CHECK_THROWS_WITH_AS((void)sampler.sample(model, 0, 2, ddpm::CounterRng(1)),
                       doctest::Contains("n = 0"), ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS((void)sampler.sample(model, 4, 3, ddpm::CounterRng(1)),
                       doctest::Contains("x_t"), ddpm::InvalidArgument);
  const std::vector<int> wrong_labels = {0};
  ddpm::WithLabels<double, ddpm::GaussianMixtureDenoiser<double>> conditioned(model, wrong_labels);
  CHECK_THROWS_WITH_AS((void)sampler.sample(conditioned, 4, 2, ddpm::CounterRng(1)),
                       doctest::Contains("labels.size()"), ddpm::InvalidArgument);
  const std::vector<int> bad_label = {0, 9};
  ddpm::WithLabels<double, ddpm::GaussianMixtureDenoiser<double>> bad(model, bad_label);
  CHECK_THROWS_WITH_AS((void)sampler.sample(bad, 2, 2, ddpm::CounterRng(1)),
                       doctest::Contains("label = 9"), ddpm::InvalidArgument);
}

TEST_CASE("samplers run a model with a training switch in inference mode, then restore it") {
  struct Switchable {
    bool training_ = true;
    int calls_in_training = 0, calls = 0;
    bool training() const { return training_; }
    void set_training(bool on) { training_ = on; }
    void predict(const Batch<double>& x, std::span<const int>, Batch<double>& out) {
      ++calls;
      calls_in_training += training_ ? 1 : 0;
      out.setZero(x.rows(), x.cols());
    }
  };
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(100).respaced("ddim10");
  ddpm::DdimSampler<double> sampler{ddpm::GaussianDiffusion<double>(schedule)};
  Switchable model;
  (void)sampler.sample(model, 4, 2, ddpm::CounterRng(1));
  CHECK(model.calls == 10);
  CHECK(model.calls_in_training == 0);
  CHECK(model.training());
}
