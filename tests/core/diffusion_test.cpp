// SPDX-License-Identifier: MIT
// Tests of GaussianDiffusion: forward process, posterior against Bayes' rule, parameterizations,
// loss gradients against finite differences, the variational bound against a closed form.
#include "ddpm/diffusion.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "ddpm/mixture_denoiser.hpp"

namespace diffusion_test {

namespace {

using ddpm::Batch;
using ddpm::DiffusionOptions;
using ddpm::GaussianDiffusion;
using ddpm::Index;
using ddpm::LossKind;
using ddpm::ModelOutput;
using ddpm::NoiseSchedule;
using ddpm::VarianceKind;

Batch<double> normals(Index rows, Index cols, std::uint64_t seed, std::uint32_t stream = 77) {
  Batch<double> x(rows, cols);
  ddpm::CounterRng(seed).fill_normal(x, stream, 0, 0);
  return x;
}

// 8-bit image values in [-1, 1], including both edge bins.
Batch<double> eight_bit(Index rows, Index cols, std::uint64_t seed) {
  Batch<double> x(rows, cols);
  const ddpm::CounterRng rng(seed);
  for (Index i = 0; i < rows; ++i) {
    for (Index j = 0; j < cols; ++j) {
      const auto level =
          rng.uniform_int(9, static_cast<std::uint32_t>(i), 0, 256, static_cast<std::uint32_t>(j));
      x(i, j) = (i + j) % 5 == 0 ? -1.0 : (i + j) % 7 == 0 ? 1.0 : -1.0 + 2.0 * level / 255.0;
    }
  }
  return x;
}

}  // namespace

TEST_CASE("q_sample and q_mean_variance follow the closed form of q(x_t | x_0)") {
  const NoiseSchedule schedule = NoiseSchedule::linear(1000);
  const GaussianDiffusion<double> diffusion(schedule);
  const Batch<double> x0 = normals(4, 3, 1), noise = normals(4, 3, 2);
  const std::vector<int> t = {0, 10, 500, 999};
  Batch<double> x_t, mean;
  ddpm::Vector<double> var, log_var;
  diffusion.q_sample(x0, t, noise, x_t);
  diffusion.q_mean_variance(x0, t, mean, var, log_var);
  for (Index i = 0; i < 4; ++i) {
    double ab = 1.0;  // recomputed from the betas here, independently of the schedule's arrays
    for (int s = 0; s <= t[static_cast<std::size_t>(i)]; ++s)
      ab *= 1.0 - schedule.betas()[static_cast<std::size_t>(s)];
    for (Index j = 0; j < 3; ++j) {
      CHECK(x_t(i, j) == doctest::Approx(std::sqrt(ab) * x0(i, j) + std::sqrt(1 - ab) * noise(i, j))
                             .epsilon(1e-12));
      CHECK(mean(i, j) == doctest::Approx(std::sqrt(ab) * x0(i, j)).epsilon(1e-12));
    }
    CHECK(var(i) == doctest::Approx(1 - ab).epsilon(1e-12));
    CHECK(log_var(i) == doctest::Approx(std::log(1 - ab)).epsilon(1e-12));
  }
}

TEST_CASE("the posterior q(x_{t-1} | x_t, x_0) equals Bayes' rule integrated numerically") {
  // q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0); its mean and
  // variance are integrated on a fine grid (trapezoid, 400001 points, at least 100 per posterior
  // sd): error << 1e-8.
  const NoiseSchedule schedule = NoiseSchedule::cosine(200);
  const GaussianDiffusion<double> diffusion(schedule);
  for (const int t : {1, 7, 100, 199}) {
    const double beta = schedule.betas()[static_cast<std::size_t>(t)];
    double ab_prev = 1.0;
    for (int s = 0; s < t; ++s) ab_prev *= 1.0 - schedule.betas()[static_cast<std::size_t>(s)];
    const double x0 = 0.7, x_t = -0.4;
    const double prior_mean = std::sqrt(ab_prev) * x0, prior_var = 1 - ab_prev;
    const double lik_mean = x_t / std::sqrt(1 - beta), lik_var = beta / (1 - beta);
    const auto log_joint = [&](double y) {
      return -0.5 * std::pow(y - lik_mean, 2) / lik_var -
             0.5 * std::pow(y - prior_mean, 2) / prior_var;
    };
    // The grid spans both factors' bulk; the log-density is shifted by its maximum on the grid.
    const double sd = std::sqrt(std::min(prior_var, lik_var));
    const double lo = std::min(prior_mean, lik_mean) - 12 * sd,
                 hi = std::max(prior_mean, lik_mean) + 12 * sd;
    const int points = 400001;
    double peak = -INFINITY;
    for (int k = 0; k < points; ++k)
      peak = std::max(peak, log_joint(lo + (hi - lo) * k / (points - 1)));
    double z = 0, m1 = 0, m2 = 0;
    for (int k = 0; k < points; ++k) {
      const double y = lo + (hi - lo) * k / (points - 1);
      const double w = ((k == 0 || k == points - 1) ? 0.5 : 1.0) * std::exp(log_joint(y) - peak);
      z += w;
      m1 += w * y;
      m2 += w * y * y;
    }
    const double mean = m1 / z, variance = m2 / z - mean * mean;
    Batch<double> bx0(1, 1), bxt(1, 1), post_mean;
    bx0(0, 0) = x0;
    bxt(0, 0) = x_t;
    ddpm::Vector<double> post_var, post_log_var;
    const std::vector<int> ts = {t};
    diffusion.q_posterior_mean_variance(bx0, bxt, ts, post_mean, post_var, post_log_var);
    CAPTURE(t);
    CHECK(post_mean(0, 0) == doctest::Approx(mean).epsilon(1e-8));
    CHECK(post_var(0) == doctest::Approx(variance).epsilon(1e-6));
    CHECK(post_log_var(0) == doctest::Approx(std::log(variance)).epsilon(1e-6));
  }
}

TEST_CASE("each output parameterization recovers x_0 from its own target") {
  const NoiseSchedule schedule = NoiseSchedule::linear(1000);
  const Batch<double> x0 = normals(5, 4, 3), noise = normals(5, 4, 4);
  const std::vector<int> t = {0, 1, 250, 700, 999};
  for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
    const GaussianDiffusion<double> diffusion(schedule, {.output = output});
    Batch<double> x_t;
    diffusion.q_sample(x0, t, noise, x_t);
    Batch<double> target(5, 4);
    for (Index i = 0; i < 5; ++i) {
      const double ab =
          schedule.alphas_cumprod()[static_cast<std::size_t>(t[static_cast<std::size_t>(i)])];
      for (Index j = 0; j < 4; ++j) {
        target(i, j) = output == ModelOutput::epsilon ? noise(i, j)
                       : output == ModelOutput::x0
                           ? x0(i, j)
                           : std::sqrt(ab) * noise(i, j) - std::sqrt(1 - ab) * x0(i, j);
      }
    }
    ddpm::ReverseStep<double> step;
    diffusion.p_mean_variance(target, x_t, t, step);
    CAPTURE(ddpm::to_string(output));
    // At t = 999 the eps form divides by sqrt(ab) ~ 0.006, so allow 1e-9 absolute.
    CHECK((step.pred_x0 - x0).cwiseAbs().maxCoeff() < 1e-9);
    CHECK((step.pred_eps - noise).cwiseAbs().maxCoeff() < 1e-6);
    // With the exact x_0 the reverse mean is the true posterior mean.
    Batch<double> post_mean;
    ddpm::Vector<double> post_var, post_log_var;
    diffusion.q_posterior_mean_variance(x0, x_t, t, post_mean, post_var, post_log_var);
    CHECK((step.mean - post_mean).cwiseAbs().maxCoeff() < 1e-9);
  }
}

TEST_CASE("fixed and learned variances follow REFERENCE.md") {
  const NoiseSchedule schedule = NoiseSchedule::linear(100);
  const Batch<double> x_t = normals(3, 2, 5);
  const std::vector<int> t = {0, 1, 60};
  const auto& beta = schedule.betas();
  const auto& post = schedule.posterior_variance();
  ddpm::ReverseStep<double> step;
  SUBCASE("fixed-small uses log(beta~) with beta~_1 at t = 0") {
    const GaussianDiffusion<double> d(schedule, {.variance = VarianceKind::fixed_small});
    d.p_mean_variance(normals(3, 2, 6), x_t, t, step);
    CHECK(step.log_variance(0, 0) == doctest::Approx(std::log(post[1])));
    CHECK(step.log_variance(1, 1) == doctest::Approx(std::log(post[1])));
    CHECK(step.log_variance(2, 0) == doctest::Approx(std::log(post[60])));
  }
  SUBCASE("fixed-large uses log(beta) with beta~_1 at t = 0") {
    const GaussianDiffusion<double> d(schedule, {.variance = VarianceKind::fixed_large});
    d.p_mean_variance(normals(3, 2, 6), x_t, t, step);
    CHECK(step.log_variance(0, 0) == doctest::Approx(std::log(post[1])));
    CHECK(step.log_variance(1, 1) == doctest::Approx(std::log(beta[1])));
    CHECK(step.log_variance(2, 0) == doctest::Approx(std::log(beta[60])));
  }
  SUBCASE("learned-range interpolates log(beta) and log(beta~) by (r + 1) / 2") {
    const GaussianDiffusion<double> d(
        schedule, {.variance = VarianceKind::learned_range, .loss = LossKind::hybrid});
    Batch<double> out = normals(3, 4, 7);
    out(2, 2) = 1.0;   // all log(beta)
    out(2, 3) = -1.0;  // all log(beta~)
    out(1, 2) = 0.0;   // midway
    d.p_mean_variance(out, x_t, t, step);
    CHECK(step.log_variance(2, 0) == doctest::Approx(std::log(beta[60])));
    CHECK(step.log_variance(2, 1) == doctest::Approx(std::log(post[60])));
    CHECK(step.log_variance(1, 0) ==
          doctest::Approx(0.5 * (std::log(beta[1]) + std::log(post[1]))));
  }
  SUBCASE("learned takes the log-variance straight from the output") {
    const GaussianDiffusion<double> d(schedule,
                                      {.variance = VarianceKind::learned, .loss = LossKind::kl});
    const Batch<double> out = normals(3, 4, 8);
    d.p_mean_variance(out, x_t, t, step);
    CHECK(step.log_variance(1, 1) == out(1, 3));
  }
}

namespace {

struct LossCase {
  ModelOutput output;
  VarianceKind variance;
  LossKind loss;
  ddpm::Decoder decoder;
  bool clip;
};

// Central differences of a scalar function of model_out(i, j); h = 1e-6 gives ~1e-9 accuracy.
template <class F>
double central_difference(Batch<double>& out, Index i, Index j, F&& f) {
  const double h = 1e-6, saved = out(i, j);
  out(i, j) = saved + h;
  const double plus = f();
  out(i, j) = saved - h;
  const double minus = f();
  out(i, j) = saved;
  return (plus - minus) / (2 * h);
}

}  // namespace

TEST_CASE("every loss gradient matches central finite differences") {
  // Rows cover t = 0 (the decoder term) and t > 0 (KL terms); weights exercise importance
  // sampling. Tolerance: 1e-6 relative plus 2e-9 (1 + |loss|) absolute: central differences with
  // h = 1e-6 carry a rounding error of about 2e-16 |loss| / 1e-6 = 2e-10 |loss| (the rescaled-kl
  // loss is T times larger than the others), and a truncation error far below that. This checks
  // gradients against the code's own loss only; the loss values themselves (the weights T/1000, 1
  // and T, bits) are checked against long double in bound_values_test.cpp.
  const NoiseSchedule schedule = NoiseSchedule::linear(200);
  std::vector<LossCase> cases;
  for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
    for (const auto decoder : {ddpm::Decoder::continuous, ddpm::Decoder::discretized}) {
      for (const VarianceKind variance : {VarianceKind::fixed_small, VarianceKind::fixed_large}) {
        cases.push_back({output, variance, LossKind::simple, decoder, false});
        cases.push_back({output, variance, LossKind::kl, decoder, false});
      }
      for (const VarianceKind variance : {VarianceKind::learned, VarianceKind::learned_range}) {
        cases.push_back({output, variance, LossKind::kl, decoder, false});
        cases.push_back({output, variance, LossKind::rescaled_kl, decoder, false});
        cases.push_back({output, variance, LossKind::hybrid, decoder, false});
      }
    }
  }
  cases.push_back({ModelOutput::epsilon, VarianceKind::learned_range, LossKind::kl,
                   ddpm::Decoder::discretized, true});
  const std::vector<int> t = {0, 0, 1, 5, 120, 199};
  const std::vector<double> weights = {1.0, 0.5, 2.0, 1.5, 0.25, 1.0};
  for (const LossCase& c : cases) {
    const GaussianDiffusion<double> diffusion(schedule, {.output = c.output,
                                                         .variance = c.variance,
                                                         .loss = c.loss,
                                                         .decoder = c.decoder,
                                                         .clip_x0 = c.clip});
    const Index dim = 3, n = static_cast<Index>(t.size());
    const Batch<double> x0 =
        c.decoder == ddpm::Decoder::discretized ? eight_bit(n, dim, 9) : normals(n, dim, 9);
    const Batch<double> noise = normals(n, dim, 10);
    Batch<double> x_t;
    diffusion.q_sample(x0, t, noise, x_t);
    // An output near the truth, so the discretized decoder's bins are not all floored.
    Batch<double> out = 0.3 * normals(n, diffusion.model_output_dim(dim), 11);
    if (c.clip) out *= 0.05;  // keep x0^ away from the clip boundary, where the loss has a kink
    ddpm::TrainingLoss<double> result;
    Batch<double> grad;
    diffusion.training_loss(out, x0, x_t, noise, t, result, grad, weights);
    REQUIRE(grad.rows() == out.rows());
    REQUIRE(grad.cols() == out.cols());
    ddpm::TrainingLoss<double> probe;
    Batch<double> unused;
    const auto weighted_mean = [&](const ddpm::Vector<double>& per_sample) {
      double total = 0;
      for (Index i = 0; i < n; ++i) total += weights[static_cast<std::size_t>(i)] * per_sample(i);
      return total / static_cast<double>(n);
    };
    for (Index i = 0; i < n; ++i) {
      for (Index j = 0; j < out.cols(); ++j) {
        const bool variance_column = j >= dim;
        const double numeric = central_difference(out, i, j, [&] {
          diffusion.training_loss(out, x0, x_t, noise, t, probe, unused, weights);
          // hybrid: the mean sees only the mse (the bound's mean gradient is stopped).
          return c.loss == LossKind::hybrid && !variance_column ? weighted_mean(probe.mse)
                                                                : probe.mean;
        });
        CAPTURE(ddpm::to_string(c.output));
        CAPTURE(ddpm::to_string(c.variance));
        CAPTURE(ddpm::to_string(c.loss));
        CAPTURE(static_cast<int>(c.decoder));
        CAPTURE(i);
        CAPTURE(j);
        CHECK(std::abs(grad(i, j) - numeric) <=
              1e-6 * std::abs(numeric) + 2e-9 * (1 + std::abs(result.mean)));
      }
    }
  }
}

TEST_CASE("loss values: simple is the mse of the target, kl is the bound term in bits") {
  const NoiseSchedule schedule = NoiseSchedule::linear(100);
  const Batch<double> x0 = normals(2, 2, 12), noise = normals(2, 2, 13), out = normals(2, 2, 14);
  const std::vector<int> t = {0, 40};
  const GaussianDiffusion<double> simple(schedule);
  const GaussianDiffusion<double> kl(schedule, {.loss = LossKind::kl});
  Batch<double> x_t, grad;
  simple.q_sample(x0, t, noise, x_t);
  ddpm::TrainingLoss<double> a, b;
  simple.training_loss(out, x0, x_t, noise, t, a, grad);
  kl.training_loss(out, x0, x_t, noise, t, b, grad);
  for (Index i = 0; i < 2; ++i) {
    CHECK(a.loss(i) == doctest::Approx((out.row(i) - noise.row(i)).squaredNorm() / 2));
  }
  CHECK(a.mean == doctest::Approx((a.loss(0) + a.loss(1)) / 2));
  // Row 1 by hand: KL between the true posterior and p with the fixed-small variance.
  ddpm::ReverseStep<double> step;
  kl.p_mean_variance(out, x_t, t, step);
  Batch<double> post_mean;
  ddpm::Vector<double> post_var, post_log_var;
  kl.q_posterior_mean_variance(x0, x_t, t, post_mean, post_var, post_log_var);
  double nats = 0;
  for (Index j = 0; j < 2; ++j) {
    const double lv = std::log(schedule.posterior_variance()[40]);
    const double d = post_mean(1, j) - step.mean(1, j);
    nats += 0.5 * (d * d / std::exp(lv));  // equal variances: only the mean term remains
  }
  CHECK(b.loss(1) == doctest::Approx(nats / 2 / std::numbers::ln2));
  CHECK(a.vlb(1) == doctest::Approx(b.loss(1)));
  // Row 0: decoder NLL of x0 under N(mean, beta~_1) in bits per dim.
  double nll = 0;
  const double lv0 = std::log(schedule.posterior_variance()[1]);
  for (Index j = 0; j < 2; ++j) {
    nll += 0.5 * (std::log(2 * std::numbers::pi) + lv0 +
                  std::pow(x0(0, j) - step.mean(0, j), 2) / std::exp(lv0));
  }
  CHECK(b.loss(0) == doctest::Approx(nll / 2 / std::numbers::ln2));
}

TEST_CASE("the variational bound of one-Gaussian data matches its closed-form expectation") {
  // Data x_0 ~ N(m, s^2) in 2 dims with the exact denoiser. With fixed-small variance the reverse
  // mean is affine in x_t, so for each x_0, E_{x_t}[L_t] is in closed form:
  //   mu_p = c1 x0^ + c2 x_t with x0^ = E[x_0|x_t] = m + g (x_t - sqrt(ab) m), g = sqrt(ab) s^2 /
  //   v, v = ab s^2 + 1 - ab;  mu_q = c1 x_0 + c2 x_t;  mu_q - mu_p = c1 (x_0 - m - g (x_t -
  //   sqrt(ab) m)), with x_t ~ N(sqrt(ab) x_0, 1 - ab): E[(mu_q - mu_p)^2] = c1^2 ((x_0 - m)^2 (1 -
  //   g sqrt(ab))^2
  //   + g^2 (1 - ab)). The decoder term and the prior are handled the same way.
  // The per-sample Monte Carlo bound (one x_t per t) over 4000 samples must match the closed-form
  // average within 4 standard errors; and the bound must lie above the true NLL
  // 0.5 log(2 pi e s^2) per dim. It is loose with the fixed-small variance (about 0.57 nats/dim
  // here, mostly from t < 100 where beta~_t underestimates the true reverse variance
  // beta~_t + c1^2 Var[x_0|x_t], and from the decoder, whose variance is about half the true one);
  // the check below only bounds that gap.
  const int T = 1000;
  const NoiseSchedule schedule = NoiseSchedule::linear(T);
  const double m = 0.5, s = 0.3;
  ddpm::GaussianMixture mixture;
  mixture.means = Batch<double>::Constant(1, 2, m);
  mixture.stds = {s};
  mixture.weights = {1.0};
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const GaussianDiffusion<double> diffusion(schedule);
  const Index n = 4000;
  const Batch<double> x0 = (m + s * normals(n, 2, 15).array()).matrix();
  const ddpm::VariationalBound<double> bound =
      diffusion.variational_bound(model, x0, ddpm::CounterRng(16));
  CHECK(bound.unit == "nats/dim");
  REQUIRE(bound.terms.cols() == T);

  // Every term is affine in (x_0 - m)^2 or x_0^2, so the average over the samples needs only
  // their sample means.
  const double mean_sq_dev = (x0.array() - m).square().mean(), mean_sq = x0.array().square().mean();
  double expected = 0;
  for (int t = 0; t < T; ++t) {
    const auto st = static_cast<std::size_t>(t);
    const double ab = schedule.alphas_cumprod()[st];
    const double v = ab * s * s + 1 - ab, g = std::sqrt(ab) * s * s / v;
    const double c1 = schedule.posterior_mean_coef1()[st];
    const double sq =
        c1 * c1 * (mean_sq_dev * std::pow(1 - g * std::sqrt(ab), 2) + g * g * (1 - ab));
    const double lv_p = schedule.posterior_log_variance_clipped()[st];
    if (t == 0) {
      expected += 0.5 * (std::log(2 * std::numbers::pi) + lv_p + sq / std::exp(lv_p));
    } else {
      const double lv_q = std::log(schedule.posterior_variance()[st]);
      expected += 0.5 * (-1 + lv_p - lv_q + std::exp(lv_q - lv_p) + sq / std::exp(lv_p));
    }
  }
  const double ab_last = schedule.alphas_cumprod()[T - 1];
  const auto prior_kl = [&](double x_sq) {
    return 0.5 * (-1 - std::log(1 - ab_last) + (1 - ab_last) + ab_last * x_sq);
  };
  expected += prior_kl(mean_sq);
  const double mc_mean = bound.total.mean();
  const double mc_se = std::sqrt((bound.total.array() - mc_mean).square().sum() / (n - 1) / n);
  CAPTURE(mc_mean);
  CAPTURE(expected);
  CAPTURE(mc_se);
  CHECK(std::abs(mc_mean - expected) < 4 * mc_se);
  const double true_nll = 0.5 * std::log(2 * std::numbers::pi * std::numbers::e * s * s);
  CHECK(expected > true_nll);
  CHECK(expected < true_nll + 1.0);
  // The prior term is the closed-form KL of each sample, per dim.
  CHECK(bound.prior(0) ==
        doctest::Approx((prior_kl(x0(0, 0) * x0(0, 0)) + prior_kl(x0(0, 1) * x0(0, 1))) / 2));
}

TEST_CASE("the discretized decoder reports bits per dim") {
  const NoiseSchedule schedule = NoiseSchedule::linear(50 + 1);
  const GaussianDiffusion<double> diffusion(
      schedule, {.decoder = ddpm::Decoder::discretized, .clip_x0 = true});
  ddpm::GaussianMixture mixture;
  mixture.means = Batch<double>::Zero(1, 4);
  mixture.stds = {0.5};
  mixture.weights = {1.0};
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const ddpm::VariationalBound<double> bound =
      diffusion.variational_bound(model, eight_bit(8, 4, 17), ddpm::CounterRng(1));
  CHECK(bound.unit == "bits/dim");
  CHECK(bound.total.allFinite());
  // A discrete bound is a -log2 of a probability: positive. (Each term, the prior and the total
  // are checked by value in bound_values_test.cpp.)
  CHECK(bound.total.minCoeff() > 0.0);
}

TEST_CASE("bad arguments throw InvalidArgument naming the parameter") {
  const NoiseSchedule schedule = NoiseSchedule::linear(100);
  const GaussianDiffusion<double> diffusion(schedule);
  const Batch<double> x0 = normals(2, 3, 1);
  Batch<double> x_t;
  SUBCASE("t out of range") {
    const std::vector<int> t = {0, 100};
    CHECK_THROWS_WITH_AS(diffusion.q_sample(x0, t, x0, x_t), doctest::Contains("timestep = 100"),
                         std::invalid_argument);
    const std::vector<int> negative = {-1, 0};
    CHECK_THROWS_AS(diffusion.q_sample(x0, negative, x0, x_t), ddpm::InvalidArgument);
  }
  SUBCASE("wrong number of timesteps") {
    const std::vector<int> t = {0};
    CHECK_THROWS_WITH_AS(diffusion.q_sample(x0, t, x0, x_t), doctest::Contains("t.size()"),
                         ddpm::InvalidArgument);
  }
  SUBCASE("shape mismatches") {
    const std::vector<int> t = {0, 1};
    CHECK_THROWS_WITH_AS(diffusion.q_sample(x0, t, normals(2, 4, 1), x_t),
                         doctest::Contains("noise"), ddpm::InvalidArgument);
    ddpm::ReverseStep<double> step;
    CHECK_THROWS_WITH_AS(diffusion.p_mean_variance(normals(2, 6, 1), x0, t, step),
                         doctest::Contains("model_out"), ddpm::InvalidArgument);
    ddpm::TrainingLoss<double> loss;
    Batch<double> grad;
    const std::vector<double> weights = {1.0};
    CHECK_THROWS_WITH_AS(diffusion.training_loss(x0, x0, x0, x0, t, loss, grad, weights),
                         doctest::Contains("weights.size()"), ddpm::InvalidArgument);
  }
  SUBCASE("a timestep dropped by respacing") {
    const GaussianDiffusion<double> respaced(schedule.respaced("ddim10"));
    const std::vector<int> t = {10, 11};
    CHECK_THROWS_WITH_AS(respaced.q_sample(x0, t, x0, x_t), doctest::Contains("timestep = 11"),
                         ddpm::InvalidArgument);
  }
  SUBCASE("loss and variance combinations that cannot train") {
    CHECK_THROWS_WITH_AS(GaussianDiffusion<double>(schedule, {.variance = VarianceKind::learned}),
                         doctest::Contains("loss = simple"), ddpm::InvalidArgument);
    CHECK_THROWS_WITH_AS(GaussianDiffusion<double>(schedule, {.loss = LossKind::hybrid}),
                         doctest::Contains("loss = hybrid"), ddpm::InvalidArgument);
  }
  SUBCASE("unknown option strings") {
    CHECK_THROWS_WITH_AS(ddpm::parse_enum<ddpm::ModelOutput>("noise"),
                         doctest::Contains("output = noise"), ddpm::InvalidArgument);
    CHECK_THROWS_WITH_AS(ddpm::parse_enum<ddpm::VarianceKind>("small"),
                         doctest::Contains("variance = small"), ddpm::InvalidArgument);
    CHECK_THROWS_WITH_AS(ddpm::parse_enum<ddpm::LossKind>("l2"), doctest::Contains("loss = l2"),
                         ddpm::InvalidArgument);
  }
}

}  // namespace diffusion_test
