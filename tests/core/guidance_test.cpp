// SPDX-License-Identifier: MIT
// Tests of the guidance adaptors: classifier-free mixing of the two branches, and classifier
// guidance applied by each sampler in its own form (ancestral: the mean; DDIM: epsilon), by value.
#include "ddpm/guidance.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <vector>

#include "ddpm/diffusion.hpp"
#include "ddpm/samplers/ancestral.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/schedule.hpp"
#include "support.hpp"

namespace guidance_test {

namespace {

using ddpm::Batch;
using ddpm::Index;

// out = x + 2 label (label kNoLabel counts as 0), plus a distinct "variance" column block.
struct LabelShift {
  void predict(const Batch<double>& x, std::span<const int> t, std::span<const int> labels,
               Batch<double>& out) {
    out.resize(x.rows(), 2 * x.cols());
    for (Index i = 0; i < x.rows(); ++i) {
      const int y = labels[static_cast<std::size_t>(i)];
      const double shift = y == ddpm::kNoLabel ? 0.0 : 2.0 * y;
      out.row(i).head(x.cols()) = x.row(i).array() + shift;
      out.row(i).tail(x.cols()).setConstant(0.01 * t[static_cast<std::size_t>(i)] + shift);
    }
  }
};

// eps(x) = 0.5 x, unconditional.
struct HalfX {
  void predict(const Batch<double>& x, std::span<const int>, Batch<double>& out) { out = 0.5 * x; }
};

// log p(y | x) of two unit Gaussian classes at -mu and +mu (equal priors): its gradient in x is
// (mu_y - E[mu | x]) = mu_y - tanh(mu . x) mu.
struct TwoGaussians {
  Eigen::RowVectorXd mu;
  void log_prob_gradient(const Batch<double>& x, std::span<const int>, std::span<const int> labels,
                         Batch<double>& grad) {
    grad.resize(x.rows(), x.cols());
    for (Index i = 0; i < x.rows(); ++i) {
      const double sign = labels[static_cast<std::size_t>(i)] == 1 ? 1.0 : -1.0;
      grad.row(i) = (sign - std::tanh(x.row(i).dot(mu))) * mu;
    }
  }
};

}  // namespace

static_assert(ddpm::Denoiser<ddpm::ClassifierFreeGuidance<double, LabelShift>, double>);
static_assert(ddpm::GuidanceClassifier<TwoGaussians, double>);
static_assert(ddpm::GuidedDenoiser<ddpm::ClassifierGuidance<double, HalfX, TwoGaussians>, double>);
static_assert(!ddpm::GuidedDenoiser<HalfX, double>);

namespace {

// alpha-bar of the linear schedule of T steps at original timestep t, by a plain product in long
// double: the independent reference for the guidance formulas below.
long double alpha_bar(int T, int t) {
  const long double scale = 1000.0L / T;
  long double ab = 1;
  for (int i = 0; i <= t; ++i) {
    const long double beta = scale * (1e-4L + (0.02L - 1e-4L) * i / (T - 1));
    ab *= 1 - beta;
  }
  return ab;
}

}  // namespace

TEST_CASE("Classifier-free guidance mixes (1 + w) conditional - w unconditional, any finite w") {
  LabelShift model;
  const Batch<double> x = ddpm::test::random_batch(3, 4, 1);
  const std::vector<int> t{5, 6, 7};
  const std::vector<int> labels{1, 2, ddpm::kNoLabel};
  for (const double w : {1.5, 0.0, -1.0, -0.5}) {
    CAPTURE(w);
    ddpm::ClassifierFreeGuidance<double, LabelShift> guided(model, labels, w);
    CHECK(guided.weight() == w);
    Batch<double> out;
    guided.predict(x, t, out);
    REQUIRE(out.rows() == 3);
    REQUIRE(out.cols() == 8);
    for (Index i = 0; i < 3; ++i) {
      const int y = labels[static_cast<std::size_t>(i)];
      const double shift = y == ddpm::kNoLabel ? 0.0 : 2.0 * y;
      for (Index j = 0; j < 4; ++j) {
        // (1 + w)(x + shift) - w x = x + (1 + w) shift: w = -1 is the unconditional model.
        CHECK(out(i, j) == doctest::Approx(x(i, j) + (1.0 + w) * shift).epsilon(1e-14));
        // The variance block (the columns past x_t.cols()) is the conditional branch's.
        CHECK(out(i, 4 + j) == 0.01 * t[static_cast<std::size_t>(i)] + shift);
      }
    }
  }
  DDPM_CHECK_INVALID("guidance weight", (ddpm::ClassifierFreeGuidance<double, LabelShift>(
                                            model, labels, std::nan(""))));
  DDPM_CHECK_INVALID("guidance weight",
                     (ddpm::ClassifierFreeGuidance<double, LabelShift>(model, labels, INFINITY)));
}

TEST_CASE("Classifier-free guidance inside a sampling loop equals sampling the mixed model") {
  // eps(x, y) = 0.1 x + 0.3 y (kNoLabel: 0): the guided model is 0.1 x + 0.3 (1 + w) y, which a
  // hand-written denoiser gives directly; both loops draw the same noise, so they agree exactly
  // up to the rounding of the mixing.
  struct Linear {
    void predict(const Batch<double>& x, std::span<const int>, std::span<const int> y,
                 Batch<double>& out) {
      out = 0.1 * x;
      for (Index i = 0; i < x.rows(); ++i) {
        const int label = y[static_cast<std::size_t>(i)];
        out.row(i).array() += label == ddpm::kNoLabel ? 0.0 : 0.3 * label;
      }
    }
  };
  struct Mixed {
    std::vector<int> labels;
    double w;
    void predict(const Batch<double>& x, std::span<const int>, Batch<double>& out) {
      out = 0.1 * x;
      for (Index i = 0; i < x.rows(); ++i) {
        out.row(i).array() += 0.3 * (1.0 + w) * labels[static_cast<std::size_t>(i)];
      }
    }
  };
  const ddpm::GaussianDiffusion<double> diffusion(
      ddpm::NoiseSchedule::linear(200).respaced("evenly 20"));
  const std::vector<int> labels{0, 1, 2, 1};
  const ddpm::CounterRng rng(9);
  for (const double w : {2.0, -1.0}) {
    CAPTURE(w);
    Linear model;
    ddpm::ClassifierFreeGuidance<double, Linear> guided(model, labels, w);
    Mixed mixed{labels, w};
    ddpm::AncestralSampler<double> a(diffusion), b(diffusion);
    const Batch<double> got = a.sample(guided, 4, 3, rng);
    const Batch<double> expected = b.sample(mixed, 4, 3, rng);
    CHECK((got - expected).cwiseAbs().maxCoeff() < 1e-12);
    ddpm::DdimSampler<double> c(diffusion), d(diffusion);
    CHECK((c.sample(guided, 4, 3, rng) - d.sample(mixed, 4, 3, rng)).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("Classifier guidance: ancestral moves the mean by s Sigma grad, DDIM eps by its form") {
  // On "evenly 50" of a linear T = 1000 schedule with fixed-small variance; kept step 1 is t = 20
  // (the second-to-last sampling step), where the epsilon form would move the ancestral mean
  // 63 times too far.
  const int T = 1000;
  const ddpm::GaussianDiffusion<double> diffusion(
      ddpm::NoiseSchedule::linear(T).respaced("evenly 50"));
  const ddpm::NoiseSchedule& schedule = diffusion.schedule();
  HalfX model;
  TwoGaussians classifier{Eigen::RowVectorXd::LinSpaced(3, 0.2, 0.6)};
  const Batch<double> x = ddpm::test::random_batch(4, 3, 2);
  const std::vector<int> labels{1, 0, 1, 0};
  const double s = 2.5;
  ddpm::ClassifierGuidance<double, HalfX, TwoGaussians> guided(model, classifier, labels, s);
  const ddpm::CounterRng rng(4);
  for (const int step : {0, 1, 2, 25, 49}) {
    const int t = schedule.timestep(step);
    CAPTURE(t);
    const std::vector<int> ts(4, t);
    Batch<double> out, g, grad;
    guided.predict(x, ts, out);
    guided.guidance_gradient(x, ts, g);
    classifier.log_prob_gradient(x, ts, labels, grad);
    CHECK((g - s * grad).cwiseAbs().maxCoeff() < 1e-15);
    // Independent coefficients from alpha-bar of the kept steps.
    const long double ab = alpha_bar(T, t);
    const long double ab_prev = step == 0 ? 1.0L : alpha_bar(T, schedule.timestep(step - 1));
    const long double beta = 1 - ab / ab_prev;
    // fixed-small: beta~ (its log clipped to beta~ of step 1 at step 0).
    const long double ab_1 = alpha_bar(T, schedule.timestep(1));
    const long double beta_1 = 1 - ab_1 / alpha_bar(T, schedule.timestep(0));
    const long double variance =
        step == 0 ? beta_1 * (1 - alpha_bar(T, schedule.timestep(0))) / (1 - ab_1)
                  : beta * (1 - ab_prev) / (1 - ab);

    ddpm::AncestralSampler<double> ancestral(diffusion);
    Batch<double> plain_prev, guided_prev;
    ancestral.step(out, t, x, plain_prev, rng, 0);
    ancestral.step(out, t, x, guided_prev, rng, 0, &g);
    const Batch<double> moved = guided_prev - plain_prev;
    const Batch<double> expected_move = static_cast<double>(variance) * g;
    CHECK((moved - expected_move).cwiseAbs().maxCoeff() <
          1e-9 * (1e-12 + expected_move.cwiseAbs().maxCoeff()));

    ddpm::DdimSampler<double> ddim(diffusion);
    ddim.step(out, t, x, plain_prev, rng, 0);
    ddim.step(out, t, x, guided_prev, rng, 0, &g);
    // eps' = eps - sqrt(1 - ab) g, x0' = (x - sqrt(1 - ab) eps') / sqrt(ab):
    // x_prev moves by [sqrt(ab_prev) (1 - ab) / sqrt(ab) - sqrt(1 - ab_prev) sqrt(1 - ab)] g.
    const long double ddim_coef =
        std::sqrt(ab_prev) * (1 - ab) / std::sqrt(ab) - std::sqrt(1 - ab_prev) * std::sqrt(1 - ab);
    const Batch<double> ddim_expected = static_cast<double>(ddim_coef) * g;
    CHECK(((guided_prev - plain_prev) - ddim_expected).cwiseAbs().maxCoeff() <
          1e-9 * (1e-12 + ddim_expected.cwiseAbs().maxCoeff()));
  }
  // The whole loop passes the gradient to every step: sampling the guided model equals a loop
  // of step() calls given guidance_gradient().
  ddpm::AncestralSampler<double> whole(diffusion), manual(diffusion);
  const Batch<double> sampled = whole.sample(guided, 4, 3, rng);
  Batch<double> x_t(4, 3), out, g, next;
  rng.fill_normal(x_t, ddpm::stream::prior, 0, 0);
  for (int step = schedule.size() - 1; step >= 0; --step) {
    const std::vector<int> ts(4, schedule.timestep(step));
    guided.predict(x_t, ts, out);
    guided.guidance_gradient(x_t, ts, g);
    manual.step(out, ts[0], x_t, next, rng, 0, &g);
    x_t.swap(next);
  }
  CHECK((sampled - x_t).cwiseAbs().maxCoeff() == 0.0);

  DDPM_CHECK_INVALID("guidance scale", (ddpm::ClassifierGuidance<double, HalfX, TwoGaussians>(
                                           model, classifier, labels, INFINITY)));
  const Batch<double> wrong = Batch<double>::Zero(4, 2);
  Batch<double> prev;
  DDPM_CHECK_INVALID("guidance gradient", ddpm::AncestralSampler<double>(diffusion).step(
                                              out, schedule.timestep(3), x, prev, rng, 0, &wrong));
}

}  // namespace guidance_test
