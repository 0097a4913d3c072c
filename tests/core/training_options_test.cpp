// SPDX-License-Identifier: MIT
// Tests of the training options of issue 13: min-SNR and soft-min-SNR loss weighting against a
// direct computation from the x_0 error and finite differences, zero-terminal-SNR schedules (the
// rescaling, every derived array, the continuous levels, sampling the mixture from SNR = 0),
// classifier-free guidance rescale against a direct computation, and offset noise in the Trainer.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "ddpm/train/model_fields.hpp"
#include "ddpm/train/run_config.hpp"
#include "ddpm/train/trainer.hpp"
#include "support.hpp"

namespace training_options_test {

namespace {

using ddpm::Batch;
using ddpm::GaussianDiffusion;
using ddpm::Index;
using ddpm::LossKind;
using ddpm::ModelOutput;
using ddpm::NoiseSchedule;
using ddpm::SnrWeighting;
using ddpm::VarianceKind;

constexpr double kInf = std::numeric_limits<double>::infinity();

Batch<double> normals(Index rows, Index cols, std::uint64_t seed) {
  Batch<double> x(rows, cols);
  ddpm::CounterRng(seed).fill_normal(x, ddpm::stream::user, 0, 0);
  return x;
}

// The min-SNR factor m(SNR) from SNR itself (the definition, not the code's ab form).
double min_snr_factor(SnrWeighting weighting, double snr, double gamma) {
  return weighting == SnrWeighting::min_snr ? std::min(snr, gamma) : snr * gamma / (snr + gamma);
}

// x0^ of one element, written from REFERENCE.md's parameterizations in long double.
double x0_hat(ModelOutput output, double ab, double x_t, double out) {
  const long double a = ab, x = x_t, o = out;
  switch (output) {
    case ModelOutput::epsilon:
      return static_cast<double>((x - std::sqrt(1.0L - a) * o) / std::sqrt(a));
    case ModelOutput::x0:
      return out;
    case ModelOutput::v:
      return static_cast<double>(std::sqrt(a) * x - std::sqrt(1.0L - a) * o);
  }
  return 0.0;
}

// Two components in 4 dimensions, for guidance and the zero-terminal-SNR denoiser.
ddpm::GaussianMixture two_components_4d() {
  ddpm::GaussianMixture m;
  m.means.resize(2, 4);
  m.means << 1.0, -0.5, 0.25, 2.0,  //
      -1.5, 0.5, 1.0, -0.75;
  m.stds = {0.4, 0.7};
  m.weights = {0.3, 0.7};
  return m;
}

}  // namespace

// ---- min-SNR weighting ------------------------------------------------------------------------

TEST_CASE("min-SNR weights: the closed forms per output, finite at SNR = 0 and SNR = inf") {
  const double g = 5.0;
  for (const SnrWeighting w : {SnrWeighting::min_snr, SnrWeighting::soft_min_snr}) {
    CAPTURE(ddpm::to_string(w));
    // Interior: m / SNR, m, m / (SNR + 1) with SNR = ab / (1 - ab), on both sides of g.
    for (const double ab : {1e-6, 0.1, 0.5, 0.8, 5.0 / 6.0, 0.9, 0.999, 1.0 - 1e-9}) {
      const double snr = ab / (1.0 - ab), m = min_snr_factor(w, snr, g);
      CAPTURE(ab);
      CHECK(ddpm::snr_loss_weight(w, ModelOutput::epsilon, ab, 1.0 - ab, g) ==
            doctest::Approx(m / snr).epsilon(1e-12));
      CHECK(ddpm::snr_loss_weight(w, ModelOutput::x0, ab, 1.0 - ab, g) ==
            doctest::Approx(m).epsilon(1e-12));
      CHECK(ddpm::snr_loss_weight(w, ModelOutput::v, ab, 1.0 - ab, g) ==
            doctest::Approx(m / (snr + 1.0)).epsilon(1e-12));
    }
    // The limits of REFERENCE.md: eps 1 and 0, x0 0 and g, v 0 and 0, exactly.
    CHECK(ddpm::snr_loss_weight(w, ModelOutput::epsilon, 0.0, 1.0, g) == 1.0);
    CHECK(ddpm::snr_loss_weight(w, ModelOutput::epsilon, 1.0, 0.0, g) == 0.0);
    CHECK(ddpm::snr_loss_weight(w, ModelOutput::x0, 0.0, 1.0, g) == 0.0);
    CHECK(ddpm::snr_loss_weight(w, ModelOutput::x0, 1.0, 0.0, g) == g);
    CHECK(ddpm::snr_loss_weight(w, ModelOutput::v, 0.0, 1.0, g) == 0.0);
    CHECK(ddpm::snr_loss_weight(w, ModelOutput::v, 1.0, 0.0, g) == 0.0);
  }
  // The soft eps weight is g / (SNR + g).
  CHECK(ddpm::snr_loss_weight(SnrWeighting::soft_min_snr, ModelOutput::epsilon, 0.75, 0.25, 2.0) ==
        doctest::Approx(2.0 / (3.0 + 2.0)).epsilon(1e-14));
  for (const ModelOutput o : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
    CHECK(ddpm::snr_loss_weight(SnrWeighting::none, o, 0.3, 0.7, g) == 1.0);
  }
}

TEST_CASE("min-SNR: every parameterization's weighted loss is m(SNR) times the x0 error") {
  // The point of min-SNR (Hang et al. 2023): eps, x0 and v models weighted by their closed forms
  // all minimize m(SNR) ||x0 - x0^||^2 / d. Computed here from x0^ by hand in long double, on a
  // zero-terminal-SNR schedule too (v and x0 at ab = 0, where that loss is 0 * finite).
  const NoiseSchedule plain = NoiseSchedule::cosine(50);
  const NoiseSchedule ztsnr = NoiseSchedule::linear(50).zero_terminal_snr();
  const std::vector<int> t = {0, 3, 17, 30, 42, 49};
  const Index n = static_cast<Index>(t.size()), dim = 5;
  const Batch<double> x0 = normals(n, dim, 1), noise = normals(n, dim, 2);
  for (const SnrWeighting w : {SnrWeighting::min_snr, SnrWeighting::soft_min_snr}) {
    for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
      for (const NoiseSchedule* schedule : {&plain, &ztsnr}) {
        if (output == ModelOutput::epsilon && schedule == &ztsnr) continue;  // refused
        const double g = 3.0;
        const GaussianDiffusion<double> diffusion(
            *schedule, {.output = output, .snr_weighting = w, .snr_gamma = g});
        Batch<double> x_t;
        diffusion.q_sample(x0, t, noise, x_t);
        const Batch<double> out = 0.5 * normals(n, dim, 3);
        ddpm::TrainingLoss<double> result;
        Batch<double> grad;
        diffusion.training_loss(out, x0, x_t, noise, t, result, grad);
        double mean = 0.0;
        for (Index i = 0; i < n; ++i) {
          const auto s = static_cast<std::size_t>(t[static_cast<std::size_t>(i)]);
          const double ab = schedule->alphas_cumprod()[s];
          const double snr = ab / (1.0 - ab);  // 0 at the zero-terminal step
          double x0_error = 0.0;
          for (Index j = 0; j < dim; ++j) {
            const double d = x0(i, j) - x0_hat(output, ab, x_t(i, j), out(i, j));
            x0_error += d * d;
          }
          const double expected = min_snr_factor(w, snr, g) * x0_error / static_cast<double>(dim);
          CAPTURE(ddpm::to_string(w));
          CAPTURE(ddpm::to_string(output));
          CAPTURE(t[static_cast<std::size_t>(i)]);
          CHECK(std::isfinite(result.loss(i)));
          CHECK(result.loss(i) == doctest::Approx(expected).epsilon(1e-9));
          // mse stays the unweighted MSE of the predicted quantity (for logs).
          CHECK(result.loss(i) ==
                doctest::Approx(diffusion.snr_weight(s) * result.mse(i)).epsilon(1e-14));
          mean += result.loss(i) / static_cast<double>(n);
        }
        CHECK(result.mean == doctest::Approx(mean).epsilon(1e-14));
        CHECK(grad.allFinite());
      }
    }
  }
}

TEST_CASE("min-SNR: the returned gradient includes the weight (central differences)") {
  // Simple losses with importance weights, and hybrid with a learned-range variance (the weight
  // is on the MSE part, whose gradient alone reaches the mean columns). Tolerance as in
  // diffusion_test.cpp: 1e-6 relative plus 2e-9 (1 + |loss|) for h = 1e-6.
  const NoiseSchedule schedule = NoiseSchedule::linear(200);
  const std::vector<int> t = {0, 1, 40, 120, 199};
  const std::vector<double> weights = {1.0, 0.5, 2.0, 1.5, 0.25};
  const Index n = static_cast<Index>(t.size()), dim = 3;
  const Batch<double> x0 = normals(n, dim, 4), noise = normals(n, dim, 5);
  for (const SnrWeighting w : {SnrWeighting::min_snr, SnrWeighting::soft_min_snr}) {
    for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
      for (const LossKind loss : {LossKind::simple, LossKind::hybrid}) {
        const VarianceKind variance =
            loss == LossKind::hybrid ? VarianceKind::learned_range : VarianceKind::fixed_small;
        const GaussianDiffusion<double> diffusion(
            schedule, {.output = output, .variance = variance, .loss = loss, .snr_weighting = w});
        Batch<double> x_t;
        diffusion.q_sample(x0, t, noise, x_t);
        Batch<double> out = 0.3 * normals(n, diffusion.model_output_dim(dim), 6);
        ddpm::TrainingLoss<double> result, probe;
        Batch<double> grad, unused;
        diffusion.training_loss(out, x0, x_t, noise, t, result, grad, weights);
        for (Index i = 0; i < n; ++i) {
          for (Index j = 0; j < out.cols(); ++j) {
            const bool variance_column = j >= dim;
            const double saved = out(i, j), h = 1e-6;
            const auto value = [&] {
              diffusion.training_loss(out, x0, x_t, noise, t, probe, unused, weights);
              if (loss == LossKind::simple || variance_column) return probe.mean;
              // hybrid's mean columns: the weighted MSE alone (the bound's mean gradient stops).
              double total = 0;
              for (Index r = 0; r < n; ++r) {
                const auto s = static_cast<std::size_t>(t[static_cast<std::size_t>(r)]);
                total +=
                    weights[static_cast<std::size_t>(r)] * diffusion.snr_weight(s) * probe.mse(r);
              }
              return total / static_cast<double>(n);
            };
            out(i, j) = saved + h;
            const double plus = value();
            out(i, j) = saved - h;
            const double minus = value();
            out(i, j) = saved;
            const double numeric = (plus - minus) / (2 * h);
            CAPTURE(ddpm::to_string(w));
            CAPTURE(ddpm::to_string(output));
            CAPTURE(ddpm::to_string(loss));
            CAPTURE(i);
            CAPTURE(j);
            CHECK(std::abs(grad(i, j) - numeric) <=
                  1e-6 * std::abs(numeric) + 2e-9 * (1 + std::abs(result.mean)));
          }
        }
        // The weight changes the gradient: t = 199 has SNR << 5, t = 0 SNR >> 5, so one of the
        // two rows differs from the unweighted gradient for every output.
        const GaussianDiffusion<double> plain(
            schedule, {.output = output, .variance = variance, .loss = loss});
        Batch<double> plain_grad;
        plain.training_loss(out, x0, x_t, noise, t, probe, plain_grad, weights);
        CHECK(((grad.row(0) - plain_grad.row(0)).norm() > 1e-3 * plain_grad.row(0).norm() ||
               (grad.row(4) - plain_grad.row(4)).norm() > 1e-3 * plain_grad.row(4).norm()));
      }
    }
  }
}

TEST_CASE("min-SNR options are validated") {
  const NoiseSchedule schedule = NoiseSchedule::linear(100);
  DDPM_CHECK_INVALID("snr_gamma",
                     GaussianDiffusion<double>(
                         schedule, {.snr_weighting = SnrWeighting::min_snr, .snr_gamma = 0.0}));
  DDPM_CHECK_INVALID(
      "snr_gamma", GaussianDiffusion<double>(
                       schedule, {.snr_weighting = SnrWeighting::soft_min_snr, .snr_gamma = kInf}));
  DDPM_CHECK_INVALID("snr_weighting",
                     GaussianDiffusion<double>(schedule, {.variance = VarianceKind::learned,
                                                          .loss = LossKind::kl,
                                                          .snr_weighting = SnrWeighting::min_snr}));
  // gamma is not looked at without weighting.
  CHECK_NOTHROW(GaussianDiffusion<double>(schedule, {.snr_gamma = -1.0}));
  CHECK(ddpm::parse_enum<SnrWeighting>("soft-min-snr") == SnrWeighting::soft_min_snr);
}

// ---- zero terminal SNR --------------------------------------------------------------------------

TEST_CASE("zero_terminal_snr: ab_0 kept, ab_{T-1} = 0, sqrt(ab) an affine map of the original") {
  for (const NoiseSchedule& original :
       {NoiseSchedule::linear(1000), NoiseSchedule::cosine(100), NoiseSchedule::linear(30),
        NoiseSchedule(std::vector<double>{1e-17, 0.3, 0.5, 0.2})}) {
    const NoiseSchedule z = original.zero_terminal_snr();
    const auto n = static_cast<std::size_t>(original.size());
    CAPTURE(n);
    REQUIRE(z.size() == original.size());
    CHECK(z.has_zero_terminal_snr());
    CHECK_FALSE(original.has_zero_terminal_snr());
    CHECK(z.betas().back() == 1.0);
    CHECK(z.alphas_cumprod().back() == 0.0);
    CHECK(z.alphas_cumprod()[0] == original.alphas_cumprod()[0]);
    CHECK(z.betas()[0] == original.betas()[0]);
    // sqrt(ab) from the products of (1 - beta) in long double, against Lin et al.'s map.
    long double ab_old = 1.0L, ab_new = 1.0L;
    std::vector<long double> q_old(n), q_new(n);
    for (std::size_t i = 0; i < n; ++i) {
      ab_old *= 1.0L - original.betas()[i];
      ab_new *= 1.0L - z.betas()[i];
      q_old[i] = std::sqrt(ab_old);
      q_new[i] = std::sqrt(ab_new);
    }
    for (std::size_t i = 0; i < n; ++i) {
      const long double expected = (q_old[i] - q_old[n - 1]) * q_old[0] / (q_old[0] - q_old[n - 1]);
      CAPTURE(i);
      CHECK(static_cast<double>(q_new[i]) ==
            doctest::Approx(static_cast<double>(expected)).epsilon(1e-11));
      CHECK(z.sqrt_alphas_cumprod()[i] ==
            doctest::Approx(static_cast<double>(expected)).epsilon(1e-11));
      if (i + 1 < n) {
        CHECK(z.betas()[i] > 0.0);
        CHECK(z.betas()[i] < 1.0);
      }
    }
    // Every derived array finite except the infinite level and 1/sqrt(ab) at the last step.
    const std::size_t last = n - 1;
    for (const std::vector<double>* a :
         {&z.alphas_cumprod_prev(), &z.sqrt_one_minus_alphas_cumprod(),
          &z.log_one_minus_alphas_cumprod(), &z.posterior_variance(),
          &z.posterior_log_variance_clipped(), &z.posterior_mean_coef1(), &z.posterior_mean_coef2(),
          &z.fixed_large_log_variance()}) {
      for (const double v : *a) CHECK(std::isfinite(v));
    }
    CHECK(z.level(static_cast<int>(last)) == kInf);
    CHECK(z.sqrt_recip_alphas_cumprod()[last] == kInf);
    CHECK(z.posterior_mean_coef2()[last] == 0.0);  // x_{T-1} carries nothing about x_{T-2}
    CHECK(z.posterior_variance()[last] ==
          doctest::Approx(1.0 - z.alphas_cumprod()[last - 1]).epsilon(1e-15));
    // Idempotent (exactly: it returns the schedule), so a custom run's stored betas rebuild it.
    CHECK(z.zero_terminal_snr().betas() == z.betas());
  }
  DDPM_CHECK_INVALID("schedule",
                     NoiseSchedule::linear(100).respaced("evenly 10").zero_terminal_snr());
  DDPM_CHECK_INVALID("num_timesteps", NoiseSchedule::linear(1).zero_terminal_snr());
  // Only the last beta may be 1.
  CHECK_NOTHROW(NoiseSchedule(std::vector<double>{0.1, 1.0}));
  DDPM_CHECK_INVALID("betas[0]", NoiseSchedule(std::vector<double>{1.0, 0.1}));
  DDPM_CHECK_INVALID("betas[1]", NoiseSchedule(std::vector<double>{0.1, 1.5}));
}

TEST_CASE("zero terminal SNR: respacing, continuous levels and the bound stay well defined") {
  const NoiseSchedule z = NoiseSchedule::linear(100).zero_terminal_snr();
  SUBCASE("respacing that keeps T-1 keeps ab = 0; one that drops it does not") {
    const NoiseSchedule with_last = z.respaced("evenly 10");
    CHECK(with_last.timesteps().back() == 99);
    CHECK(with_last.betas().back() == 1.0);
    CHECK(with_last.has_zero_terminal_snr());
    const NoiseSchedule without = z.respaced("ddim10");  // 0, 10, ..., 90
    CHECK_FALSE(without.has_zero_terminal_snr());
    CHECK(without.alphas_cumprod().back() == doctest::Approx(z.alphas_cumprod()[90]));
  }
  SUBCASE("timestep_at_level and level_at_timestep with an infinite last level") {
    CHECK(z.timestep_at_level(kInf) == 99.0);
    // A finite level above the last finite one clamps to that step.
    CHECK(z.timestep_at_level(z.level(98) * 1e6) == 98.0);
    CHECK(z.timestep_at_level(z.level(98)) == doctest::Approx(98.0));
    CHECK(z.level_at_timestep(99.0) == kInf);
    CHECK(z.level_at_timestep(98.5) == kInf);
    CHECK(z.level_at_timestep(98.0) == z.level(98));
    // Interior levels are untouched: the interpolation still round-trips.
    for (const double t : {0.0, 12.25, 50.5, 97.75}) {
      CHECK(z.timestep_at_level(z.level_at_timestep(t)) == doctest::Approx(t).epsilon(1e-12));
    }
    const NoiseSchedule respaced = z.respaced("evenly 12");
    CHECK(respaced.timestep_at_level(kInf) == 99.0);
    CHECK(respaced.level_at_timestep(95.0) == kInf);  // between the kept 90 and 99
    CHECK(std::isfinite(respaced.level_at_timestep(90.0)));
  }
  SUBCASE("eps output is refused with a message; v and x0 work, and the bound is finite") {
    try {
      GaussianDiffusion<double> refused(z);
      FAIL("eps on a zero-terminal-SNR schedule was accepted");
    } catch (const ddpm::InvalidArgument& e) {
      CHECK(e.parameter() == "output");
      CHECK(std::string(e.what()).find("v (or x0) on a zero-terminal-SNR schedule") !=
            std::string::npos);
    }
    CHECK_NOTHROW(GaussianDiffusion<double>(z.respaced("ddim10")));  // T-1 not kept: eps is fine
    for (const ModelOutput output : {ModelOutput::v, ModelOutput::x0}) {
      const GaussianDiffusion<double> diffusion(z, {.output = output});
      ddpm::GaussianMixtureDenoiser<double> model(two_components_4d(), z, output);
      const Batch<double> x0 = normals(8, 4, 7);
      const ddpm::VariationalBound<double> bound =
          diffusion.variational_bound(model, x0, ddpm::CounterRng(3));
      CHECK(bound.prior.cwiseAbs().maxCoeff() == 0.0);  // L_T = KL(N(0, 1) || N(0, 1))
      CHECK(bound.terms.allFinite());
      CHECK(bound.total.allFinite());
      // The reverse step from T-1: x0^ is the mixture's mean, eps^ = x_T, the mean finite.
      const Batch<double> x_t = normals(3, 4, 8);
      const std::vector<int> t(3, 99);
      Batch<double> out;
      model.predict(x_t, std::span<const int>(t), out);
      ddpm::ReverseStep<double> step;
      diffusion.p_mean_variance(out, x_t, t, step);
      const Eigen::RowVectorXd mean =
          0.3 * two_components_4d().means.row(0) + 0.7 * two_components_4d().means.row(1);
      for (Index i = 0; i < 3; ++i) {
        CHECK((step.pred_x0.row(i) - mean).norm() < 1e-12);
        CHECK((step.pred_eps.row(i) - x_t.row(i)).norm() < 1e-12);
      }
      CHECK(step.mean.allFinite());
      CHECK(step.log_variance.allFinite());
    }
  }
}

TEST_CASE("the exact mixture denoiser at SNR = 0 outputs the mixture mean") {
  const NoiseSchedule z = NoiseSchedule::linear(50).zero_terminal_snr();
  const ddpm::GaussianMixture mixture = two_components_4d();
  const Eigen::RowVectorXd mean = 0.3 * mixture.means.row(0) + 0.7 * mixture.means.row(1);
  const Batch<double> x_t = normals(4, 4, 9);
  const std::vector<int> t(4, 49);
  const std::vector<double> real_t(4, 49.0), between(4, 48.5);
  for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
    ddpm::GaussianMixtureDenoiser<double> model(mixture, z, output);
    Batch<double> at_int, at_real, at_between;
    model.predict(x_t, std::span<const int>(t), at_int);
    model.predict(x_t, std::span<const double>(real_t), at_real);
    model.predict(x_t, std::span<const double>(between), at_between);
    for (Index i = 0; i < 4; ++i) {
      const Eigen::RowVectorXd expected = output == ModelOutput::x0  ? mean
                                          : output == ModelOutput::v ? Eigen::RowVectorXd(-mean)
                                                                     : x_t.row(i);
      CAPTURE(ddpm::to_string(output));
      CHECK((at_int.row(i) - expected).norm() < 1e-12);
      CHECK((at_real.row(i) - expected).norm() < 1e-12);
      CHECK((at_between.row(i) - expected).norm() < 1e-12);  // level +inf on (48, 49]
    }
  }
}

TEST_CASE(
    "sampling from SNR = 0 with the exact v-denoiser reproduces the mixture (10000 samples)") {
  // Lin et al.'s point: with ab_{T-1} = 0 the sampler's x_T ~ N(0, I) is exactly the forward
  // process's. Moments per component (nearest-mean assignment, components > 12 sd apart) with
  // 4-standard-error tolerances plus the discretization allowances measured in samplers_test.cpp
  // for the same step counts on the plain schedule: ancestral 100 steps 3 % of w or s and 25 % of
  // s^2, DDIM 50 steps 5 % and 25 %.
  const ddpm::GaussianMixture m = ddpm::test::three_components();
  const NoiseSchedule z = NoiseSchedule::linear(1000).zero_terminal_snr();
  ddpm::GaussianMixtureDenoiser<double> model(m, z, ModelOutput::v);
  const Index n = 10000;
  const auto check = [&](const Batch<double>& x, double bias, double variance_bias) {
    REQUIRE(x.allFinite());
    std::vector<Index> count(3, 0);
    std::vector<Eigen::Vector2d> sum(3, Eigen::Vector2d::Zero()),
        sum_sq(3, Eigen::Vector2d::Zero());
    for (Index i = 0; i < x.rows(); ++i) {
      Index k = 0;
      (m.means.rowwise() - x.row(i)).rowwise().squaredNorm().minCoeff(&k);
      const auto ki = static_cast<std::size_t>(k);
      ++count[ki];
      sum[ki] += x.row(i).transpose();
      sum_sq[ki] += x.row(i).transpose().cwiseAbs2();
    }
    for (std::size_t k = 0; k < 3; ++k) {
      const double nk = static_cast<double>(count[k]), w = m.weights[k], sd = m.stds[k];
      CAPTURE(k);
      CHECK(std::abs(nk / n - w) < 4 * std::sqrt(w * (1 - w) / n) + bias * w);
      for (int j = 0; j < 2; ++j) {
        const double mean = sum[k](j) / nk, var = sum_sq[k](j) / nk - mean * mean;
        CHECK(std::abs(mean - m.means(static_cast<Index>(k), j)) <
              4 * sd / std::sqrt(nk) + bias * sd);
        CHECK(std::abs(var - sd * sd) < 4 * sd * sd * std::sqrt(2 / nk) + variance_bias * sd * sd);
      }
    }
  };
  SUBCASE("ancestral, evenly 100 (visits T-1)") {
    ddpm::AncestralSampler<double> sampler{
        GaussianDiffusion<double>(z.respaced("evenly 100"), {.output = ModelOutput::v})};
    check(sampler.sample(model, n, 2, ddpm::CounterRng(31)), 0.03, 0.25);
  }
  SUBCASE("DDIM eta = 0, evenly 50 (visits T-1)") {
    ddpm::DdimSampler<double> sampler{
        GaussianDiffusion<double>(z.respaced("evenly 50"), {.output = ModelOutput::v})};
    check(sampler.sample(model, n, 2, ddpm::CounterRng(32)), 0.05, 0.25);
  }
}

// ---- classifier-free guidance rescale -----------------------------------------------------------

TEST_CASE("guidance rescale: phi g std(eps_c) / std(g) + (1 - phi) g per sample") {
  const NoiseSchedule schedule = NoiseSchedule::linear(100);
  ddpm::GaussianMixtureDenoiser<double> model(two_components_4d(), schedule);
  const Index n = 6;
  const Batch<double> x_t = 1.5 * normals(n, 4, 10);
  const std::vector<int> labels = {0, 1, 0, 1, ddpm::kNoLabel, 1};
  const std::vector<int> t = {10, 50, 99, 0, 70, 30};
  const std::vector<double> real_t = {10.5, 50.0, 98.25, 0.0, 70.0, 30.75};
  const std::vector<int> none(static_cast<std::size_t>(n), ddpm::kNoLabel);
  const double w = 2.5;
  // Direct computation from the two branches, with torch's unbiased std (n - 1, as diffusers).
  const auto expected = [&](const auto& times, double phi) {
    using Time = typename std::decay_t<decltype(times)>::value_type;
    Batch<double> c, u;
    model.predict(x_t, std::span<const Time>(times), std::span<const int>(labels), c);
    model.predict(x_t, std::span<const Time>(times), std::span<const int>(none), u);
    const Batch<double> g = u + (1.0 + w) * (c - u);
    Batch<double> out(n, 4);
    for (Index i = 0; i < n; ++i) {
      const auto sd = [](const Eigen::RowVectorXd& r) {
        return std::sqrt((r.array() - r.mean()).square().sum() / static_cast<double>(r.size() - 1));
      };
      const Eigen::RowVectorXd gi = g.row(i);
      const Eigen::RowVectorXd rescaled = gi * (sd(c.row(i)) / sd(gi));
      out.row(i) = phi * rescaled + (1.0 - phi) * gi;
    }
    return out;
  };
  for (const double phi : {0.0, 0.3, 0.7, 1.0}) {
    CAPTURE(phi);
    ddpm::ClassifierFreeGuidance<double, ddpm::GaussianMixtureDenoiser<double>> guided(
        model, labels, w, phi);
    CHECK(guided.rescale() == phi);
    Batch<double> out, out_real;
    guided.predict(x_t, std::span<const int>(t), out);
    guided.predict(x_t, std::span<const double>(real_t), out_real);
    CHECK((out - expected(t, phi)).cwiseAbs().maxCoeff() < 1e-12);
    CHECK((out_real - expected(real_t, phi)).cwiseAbs().maxCoeff() < 1e-12);
    if (phi == 1.0) {  // the guided output has the conditional branch's std, per sample
      Batch<double> c;
      model.predict(x_t, std::span<const int>(t), std::span<const int>(labels), c);
      for (Index i = 0; i < n; ++i) {
        const Eigen::RowVectorXd a = out.row(i), b = c.row(i);
        CHECK(std::sqrt((a.array() - a.mean()).square().sum()) ==
              doctest::Approx(std::sqrt((b.array() - b.mean()).square().sum())).epsilon(1e-12));
      }
    }
  }
  // phi = 0 is bitwise the adaptor without the parameter.
  ddpm::ClassifierFreeGuidance<double, ddpm::GaussianMixtureDenoiser<double>> plain(model, labels,
                                                                                    w);
  ddpm::ClassifierFreeGuidance<double, ddpm::GaussianMixtureDenoiser<double>> zero(model, labels, w,
                                                                                   0.0);
  Batch<double> a, b;
  plain.predict(x_t, std::span<const int>(t), a);
  zero.predict(x_t, std::span<const int>(t), b);
  CHECK(a == b);
  for (const double bad : {-0.1, 1.5, std::nan("")}) {
    DDPM_CHECK_INVALID("guidance rescale",
                       ddpm::ClassifierFreeGuidance<double, ddpm::GaussianMixtureDenoiser<double>>(
                           model, labels, w, bad));
  }
}

// ---- offset noise -------------------------------------------------------------------------------

namespace {

// out = w x on zero data: x_t = sqrt(1 - ab_t) eps, so the recorder sees the training noise.
struct NoiseRecorder {
  std::vector<double> weight = {0.5}, weight_grad = {0.0};
  Batch<double> input;
  std::vector<int> seen;
  void predict(const Batch<double>& x, std::span<const int> t, Batch<double>& out) {
    input = x;
    seen.assign(t.begin(), t.end());
    out = weight[0] * x;
  }
  void backward(const Batch<double>& grad_out) {
    weight_grad[0] += grad_out.cwiseProduct(input).sum();
  }
  void zero_grad() { weight_grad[0] = 0.0; }
  std::vector<ddpm::ParameterBlock<double>> parameters() {
    return {{"w", std::span<double>(weight), std::span<double>(weight_grad)}};
  }
};

struct ZeroData {
  Index width;
  void operator()(std::int64_t, Index n, Batch<double>& out) const {
    out = Batch<double>::Zero(n, width);
  }
};

}  // namespace

TEST_CASE("offset noise: eps = z + k z_c, one draw per (row, channel), keyed by (row, step)") {
  const NoiseSchedule schedule = NoiseSchedule::linear(100);
  const GaussianDiffusion<double> diffusion(schedule);
  const Index channels = 3, values = 4, width = channels * values, batch = 1024;
  const double k = 0.5;
  NoiseRecorder model;
  ddpm::train::Trainer<double, NoiseRecorder> trainer(model, diffusion,
                                                      {.batch_size = batch,
                                                       .steps = 4,
                                                       .ema_decay = 0.0,
                                                       .offset_noise = k,
                                                       .offset_noise_channels = channels,
                                                       .seed = 21});
  const ddpm::CounterRng rng(21);
  // Per row: each channel's mean over its values is zbar + k z_c (variance 1/P + k^2), the
  // deviations from it do not see k, and different channels' means are uncorrelated. 4 steps x
  // 1024 rows x 3 channels = 12288 channel means: the variance's standard error is 0.5 sqrt(2 /
  // 12288) = 0.0064 and the covariance's about 0.5 / sqrt(4096) = 0.008; tolerances 4 of them.
  double mean_sq = 0.0, deviation_sq = 0.0, cross = 0.0, max_error = 0.0;
  for (std::uint32_t step = 0; step < 4; ++step) {
    trainer.step(ZeroData{width});
    Batch<double> z(batch, width);
    rng.fill_normal(z, ddpm::stream::forward_noise, 0, step);
    for (Index i = 0; i < batch; ++i) {
      const auto s = static_cast<std::size_t>(model.seen[static_cast<std::size_t>(i)]);
      const Eigen::RowVectorXd eps =
          model.input.row(i) / schedule.sqrt_one_minus_alphas_cumprod()[s];
      double offsets[3];
      rng.normals(ddpm::stream::offset_noise, static_cast<std::uint32_t>(i), step, offsets, 3);
      std::vector<double> means(3);
      for (Index c = 0; c < channels; ++c) {
        for (Index p = 0; p < values; ++p) {
          const double expected = z(i, c * values + p) + k * offsets[c];
          max_error = std::max(max_error, std::abs(eps(c * values + p) - expected));
        }
        means[static_cast<std::size_t>(c)] = eps.segment(c * values, values).mean();
        mean_sq += means[static_cast<std::size_t>(c)] * means[static_cast<std::size_t>(c)];
        deviation_sq +=
            (eps.segment(c * values, values).array() - means[static_cast<std::size_t>(c)])
                .square()
                .sum();
      }
      cross += means[0] * means[1] + means[1] * means[2];
    }
  }
  const double count = 4.0 * batch;
  CHECK(max_error < 1e-12);  // the noise is exactly z + k z_c
  CHECK(mean_sq / (3 * count) == doctest::Approx(1.0 / values + k * k).epsilon(0.026 / 0.5));
  CHECK(deviation_sq / (3 * count * values) ==
        doctest::Approx((values - 1.0) / values).epsilon(0.04));
  CHECK(std::abs(cross / (2 * count)) < 4 * 0.008);
  SUBCASE("k = 0 is bitwise today's training; a bad layout is refused") {
    NoiseRecorder a, b;
    ddpm::train::Trainer<double, NoiseRecorder> off(a, diffusion,
                                                    {.batch_size = 64, .steps = 5, .seed = 3});
    ddpm::train::Trainer<double, NoiseRecorder> zero(
        b, diffusion,
        {.batch_size = 64, .steps = 5, .offset_noise = 0.0, .offset_noise_channels = 5, .seed = 3});
    for (int i = 0; i < 5; ++i) {
      off.step(ZeroData{width});
      zero.step(ZeroData{width});
      CHECK(a.input == b.input);
    }
    CHECK(a.weight == b.weight);
    NoiseRecorder c;
    ddpm::train::Trainer<double, NoiseRecorder> bad(
        c, diffusion, {.batch_size = 8, .offset_noise = 0.1, .offset_noise_channels = 5});
    DDPM_CHECK_INVALID("offset_noise_channels", bad.step(ZeroData{width}));
    DDPM_CHECK_INVALID("offset_noise", ddpm::train::Trainer<double, NoiseRecorder>(
                                           c, diffusion, {.offset_noise = -1.0}));
    DDPM_CHECK_INVALID("offset_noise_channels", ddpm::train::Trainer<double, NoiseRecorder>(
                                                    c, diffusion, {.offset_noise_channels = 0}));
  }
}

// ---- checkpoints --------------------------------------------------------------------------------

TEST_CASE("the new options round-trip through a run's checkpoint, old checkpoints load as off") {
  ddpm::train::MlpRun run;
  run.diffusion.schedule = ddpm::train::ScheduleConfig::cosine(100);
  run.diffusion.schedule.zero_terminal_snr = true;
  run.diffusion.options.output = ModelOutput::v;
  run.diffusion.options.snr_weighting = SnrWeighting::soft_min_snr;
  run.diffusion.options.snr_gamma = 2.5;
  run.model = ddpm::nn::toy_mlp_config(3);
  run.data.name = "moons";
  ddpm::train::Checkpoint c;
  run.to_checkpoint(c);
  CHECK(c.tensor("diffusion.betas").real.back() == 1.0);  // stored after rescaling
  const auto back = ddpm::train::MlpRun::from_checkpoint(
      ddpm::train::Checkpoint::parse(c.serialize(), "memory.ckpt"));
  CHECK(back.diffusion.schedule.zero_terminal_snr);
  CHECK(back.diffusion.options.snr_weighting == SnrWeighting::soft_min_snr);
  CHECK(back.diffusion.options.snr_gamma == 2.5);
  CHECK(ddpm::train::differences(back, run).empty());
  CHECK(back.diffusion.make<double>().schedule().has_zero_terminal_snr());
  ddpm::train::MlpRun off = run;
  off.diffusion.schedule.zero_terminal_snr = false;
  off.diffusion.options.snr_weighting = SnrWeighting::none;
  const std::vector<std::string> diff = ddpm::train::differences(back, off);
  // zero_terminal_snr and snr_weighting; snr_gamma, on one side only, is explained by them.
  CHECK(diff.size() == 2);
  SUBCASE("custom betas: stored rescaled, compared as used") {
    ddpm::train::MlpRun custom = run;
    custom.diffusion.schedule = ddpm::train::ScheduleConfig::custom({0.01, 0.05, 0.1, 0.2, 0.3});
    custom.diffusion.schedule.zero_terminal_snr = true;
    ddpm::train::Checkpoint cc;
    custom.to_checkpoint(cc);
    const auto read = ddpm::train::MlpRun::from_checkpoint(
        ddpm::train::Checkpoint::parse(cc.serialize(), "custom.ckpt"));
    CHECK(read.diffusion.schedule.base().betas() == custom.diffusion.schedule.base().betas());
    CHECK(ddpm::train::differences(read, custom).empty());
  }
  SUBCASE("a checkpoint without the fields (before the options) reads as off") {
    ddpm::train::MlpRun plain = run;
    plain.diffusion.schedule.zero_terminal_snr = false;
    plain.diffusion.options.output = ModelOutput::epsilon;
    plain.diffusion.options.snr_weighting = SnrWeighting::none;
    ddpm::train::Checkpoint full;
    plain.to_checkpoint(full);
    ddpm::train::Checkpoint old;
    for (const auto& [key, value] : full.metadata()) {
      if (key != "diffusion.zero_terminal_snr" && key != "diffusion.snr_weighting" &&
          key != "diffusion.snr_gamma")
        old.set(key, value);
    }
    old.put<double>("diffusion.betas",
                    std::span<const double>(full.tensor("diffusion.betas").real));
    const auto read = ddpm::train::MlpRun::from_checkpoint(
        ddpm::train::Checkpoint::parse(old.serialize(), "old.ckpt"));
    CHECK_FALSE(read.diffusion.schedule.zero_terminal_snr);
    CHECK(read.diffusion.options.snr_weighting == SnrWeighting::none);
    CHECK(ddpm::train::differences(read, plain).empty());
  }
  SUBCASE("malformed values are FormatErrors naming the field") {
    ddpm::train::Checkpoint bad = c;
    bad.set("diffusion.snr_weighting", "max-snr");
    CHECK_THROWS_WITH_AS(ddpm::train::MlpRun::from_checkpoint(bad),
                         doctest::Contains("field 'diffusion.snr_weighting' = 'max-snr'"),
                         ddpm::FormatError);
    bad = c;
    bad.set("diffusion.snr_gamma", "-1");
    CHECK_THROWS_WITH_AS(ddpm::train::MlpRun::from_checkpoint(bad),
                         doctest::Contains("field 'diffusion.snr_gamma' is not > 0"),
                         ddpm::FormatError);
    bad = c;
    bad.set("diffusion.zero_terminal_snr", "false");  // the stored betas end in 1
    CHECK_THROWS_WITH_AS(ddpm::train::MlpRun::from_checkpoint(bad),
                         doctest::Contains("field 'diffusion.betas' differ"), ddpm::FormatError);
  }
}

TEST_CASE("a Trainer checkpoint records min-SNR in its diffusion and offset noise for info") {
  const NoiseSchedule schedule = NoiseSchedule::linear(100);
  NoiseRecorder model;
  ddpm::train::Trainer<double, NoiseRecorder> weighted(
      model, GaussianDiffusion<double>(schedule, {.snr_weighting = SnrWeighting::min_snr}),
      {.batch_size = 8, .offset_noise = 0.1, .offset_noise_channels = 2});
  const ddpm::train::Checkpoint c = weighted.checkpoint("recorder");
  CHECK(c.get("diffusion").find(" snr_weighting=min-snr snr_gamma=5 ") != std::string::npos);
  CHECK(c.get("train.offset_noise") == "0.1");
  CHECK(c.get("train.offset_noise_channels") == "2");
  // A run without the options writes neither (checkpoints from before them stay equal).
  ddpm::train::Trainer<double, NoiseRecorder> plain(model, GaussianDiffusion<double>(schedule),
                                                    {.batch_size = 8});
  const ddpm::train::Checkpoint p = plain.checkpoint("recorder");
  CHECK(p.get("diffusion").find("snr") == std::string::npos);
  CHECK_FALSE(p.has("train.offset_noise"));
  // The weighting is part of the diffusion: restoring across it is refused.
  CHECK_THROWS_WITH_AS(plain.restore(c, "recorder"),
                       doctest::Contains("checkpoint diffusion mismatch"), ddpm::FormatError);
}

}  // namespace training_options_test
