// SPDX-License-Identifier: MIT
// Tests of the guidance adaptors: classifier-free mixing of the two branches, and classifier
// guidance moving the reverse mean along the classifier's gradient by the documented amount.
#include "ddpm/guidance.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <vector>

#include "ddpm/diffusion.hpp"
#include "ddpm/schedule.hpp"
#include "support.hpp"

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

TEST_CASE("Classifier-free guidance mixes (1 + w) conditional - w unconditional") {
  LabelShift model;
  const Batch<double> x = ddpm::test::random_batch(3, 4, 1);
  const std::vector<int> t{5, 6, 7};
  const std::vector<int> labels{1, 2, ddpm::kNoLabel};
  const double w = 1.5;
  ddpm::ClassifierFreeGuidance<double, LabelShift> guided(model, labels, w, 4);
  Batch<double> out;
  guided.predict(x, t, out);
  REQUIRE(out.rows() == 3);
  REQUIRE(out.cols() == 8);
  for (Index i = 0; i < 3; ++i) {
    const int y = labels[static_cast<std::size_t>(i)];
    const double shift = y == ddpm::kNoLabel ? 0.0 : 2.0 * y;
    for (Index j = 0; j < 4; ++j) {
      // (1 + w)(x + shift) - w x = x + (1 + w) shift: the label's effect is amplified.
      CHECK(out(i, j) == doctest::Approx(x(i, j) + (1.0 + w) * shift).epsilon(1e-14));
      // The variance block is the conditional branch's, unmixed.
      CHECK(out(i, 4 + j) == doctest::Approx(0.01 * t[static_cast<std::size_t>(i)] + shift));
    }
  }
  DDPM_CHECK_INVALID("guidance scale",
                     (ddpm::ClassifierFreeGuidance<double, LabelShift>(model, labels, -1.0)));
}

TEST_CASE("Classifier guidance moves the ancestral mean by s beta_t / sqrt(alpha_t) grad log p") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  const ddpm::GaussianDiffusion<double> diffusion(schedule,
                                                  {.variance = ddpm::VarianceKind::fixed_large});
  HalfX model;
  TwoGaussians classifier{Eigen::RowVectorXd::LinSpaced(3, 0.2, 0.6)};
  const Batch<double> x = ddpm::test::random_batch(4, 3, 2);
  const std::vector<int> t{0, 10, 400, 999};
  const std::vector<int> labels{1, 0, 1, 0};
  const double s = 2.5;
  ddpm::ClassifierGuidance<double, HalfX, TwoGaussians> guided(model, classifier, diffusion, labels,
                                                               s);
  Batch<double> plain_out, guided_out, grad;
  model.predict(x, t, plain_out);
  guided.predict(x, t, guided_out);
  ddpm::ReverseStep<double> plain, shifted;
  diffusion.p_mean_variance(plain_out, x, t, plain);
  diffusion.p_mean_variance(guided_out, x, t, shifted);
  classifier.log_prob_gradient(x, t, labels, grad);
  for (Index i = 0; i < 4; ++i) {
    const auto ti = static_cast<std::size_t>(t[static_cast<std::size_t>(i)]);
    const double beta = schedule.betas()[ti];
    const double expected_scale = s * beta / std::sqrt(1.0 - beta);
    const Eigen::RowVectorXd moved = shifted.mean.row(i) - plain.mean.row(i);
    CHECK((moved - expected_scale * grad.row(i)).cwiseAbs().maxCoeff() <
          1e-12 * (1.0 + grad.row(i).cwiseAbs().maxCoeff()));
    // The variance does not change.
    CHECK((shifted.log_variance.row(i) - plain.log_variance.row(i)).cwiseAbs().maxCoeff() == 0.0);
  }
  // A respaced diffusion gives the same guidance at the kept original timesteps.
  const ddpm::GaussianDiffusion<double> respaced(schedule.respaced("evenly 50"));
  ddpm::ClassifierGuidance<double, HalfX, TwoGaussians> guided50(model, classifier, respaced,
                                                                 labels, s);
  const std::vector<int> kept{respaced.schedule().timestep(0), respaced.schedule().timestep(1),
                              respaced.schedule().timestep(20), respaced.schedule().timestep(49)};
  Batch<double> a, b;
  guided50.predict(x, kept, a);
  guided.predict(x, kept, b);
  CHECK((a - b).cwiseAbs().maxCoeff() < 1e-15);
  DDPM_CHECK_INVALID("timestep", guided50.predict(x, std::vector<int>{1, 2, 3, 4}, a));

  const ddpm::GaussianDiffusion<double> x0_model(schedule, {.output = ddpm::ModelOutput::x0});
  DDPM_CHECK_INVALID("diffusion output", (ddpm::ClassifierGuidance<double, HalfX, TwoGaussians>(
                                             model, classifier, x0_model, labels, s)));
}
