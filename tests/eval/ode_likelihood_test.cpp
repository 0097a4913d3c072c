// SPDX-License-Identifier: MIT
// The probability-flow likelihood: Dormand-Prince against closed-form solutions (order 5), the
// exact mixture's ODE NLL against its exact density, the mixture's closed-form Jacobian and the
// networks' vector-Jacobian products against finite differences, Hutchinson's estimator against
// the exact trace, real-valued timesteps in the networks, dequantization, determinism, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ddpm/diffusion.hpp"
#include "ddpm/eval/dormand_prince.hpp"
#include "ddpm/eval/ode_likelihood.hpp"
#include "ddpm/gaussian_mixture.hpp"
#include "ddpm/mixture_denoiser.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/unet.hpp"
#include "ddpm/schedule.hpp"
#include "support.hpp"

namespace ode_likelihood_test {

using ddpm::Batch;
using ddpm::Index;

namespace {

/// n points of the mixture, component by (stream::user + 1) draws, noise by stream::user.
Batch<double> mixture_points(const ddpm::GaussianMixture& m, Index n, std::uint64_t seed) {
  const ddpm::CounterRng rng(seed);
  Batch<double> x(n, m.dim());
  for (Index i = 0; i < n; ++i) {
    const auto k =
        static_cast<Index>(rng.uniform_int(ddpm::stream::user + 1, static_cast<std::uint32_t>(i), 0,
                                           static_cast<std::uint64_t>(m.components())));
    std::vector<double> z(static_cast<std::size_t>(m.dim()));
    rng.normals(ddpm::stream::user, static_cast<std::uint32_t>(i), 0, z.data(), m.dim());
    for (Index j = 0; j < m.dim(); ++j) {
      x(i, j) =
          m.means(k, j) + m.stds[static_cast<std::size_t>(k)] * z[static_cast<std::size_t>(j)];
    }
  }
  return x;
}

/// A small MLP on 2D points with real-valued timesteps.
ddpm::nn::MlpConfig small_mlp(Index output_dim = 2) {
  ddpm::nn::MlpConfig c;
  c.input_dim = 2;
  c.output_dim = output_dim;
  c.width = 16;
  c.depth = 2;
  c.embedding_dim = 8;
  c.seed = 3;
  return c;
}

}  // namespace

TEST_CASE("dormand_prince: 5th order on linear ODEs, tolerances met adaptively") {
  // y' = A y with A = [[-0.5, 1], [-1, -0.5]]: y(u) = e^(-u/2) R(u) y0 (R a rotation).
  const auto f = [](std::span<const Index>, std::span<const double>, const Batch<double>& y,
                    Batch<double>& dy) {
    dy.resize(y.rows(), 2);
    dy.col(0) = -0.5 * y.col(0) + y.col(1);
    dy.col(1) = -y.col(0) - 0.5 * y.col(1);
  };
  const double end = 3.0;
  const auto exact = [&](double u) {
    const double decay = std::exp(-0.5 * u);
    return std::array<double, 2>{decay * std::cos(u), -decay * std::sin(u)};  // y0 = (1, 0)
  };
  SUBCASE("fixed steps: the global error falls as h^5 (slope 5 +- 0.3)") {
    std::vector<double> log_h, log_err;
    for (const int steps : {4, 8, 16, 32}) {
      Batch<double> y(1, 2);
      y << 1.0, 0.0;
      ddpm::DormandPrinceOptions o;
      o.fixed_step = end / steps;
      const ddpm::DormandPrinceStats stats = ddpm::dormand_prince(f, y, 0.0, end, o);
      CHECK(stats.accepted[0] == steps);
      CHECK(stats.evaluations[0] == 1 + 6 * steps);  // FSAL: 6 per step after the first
      const auto e = exact(end);
      log_h.push_back(std::log(end / steps));
      log_err.push_back(std::log(std::hypot(y(0, 0) - e[0], y(0, 1) - e[1])));
    }
    const double slope = (log_err.back() - log_err.front()) / (log_h.back() - log_h.front());
    CAPTURE(slope);
    CHECK(slope > 4.7);
    CHECK(slope < 5.3);
  }
  SUBCASE("adaptive: the error follows the tolerance; rows with other tolerances stay apart") {
    for (const double tol : {1e-4, 1e-7, 1e-10}) {
      Batch<double> y(3, 2);
      y << 1.0, 0.0, 1.0, 0.0, 1.0, 0.0;
      ddpm::DormandPrinceOptions o;
      o.rtol = o.atol = tol;
      const ddpm::DormandPrinceStats stats = ddpm::dormand_prince(f, y, 0.0, end, o);
      const auto e = exact(end);
      const double err = std::hypot(y(0, 0) - e[0], y(0, 1) - e[1]);
      CAPTURE(tol);
      CAPTURE(err);
      CAPTURE(stats.accepted[0]);
      // A 5(4) pair with local extrapolation is usually well inside its tolerance; 10x allows
      // the accumulation over the ~10-200 steps these tolerances take.
      CHECK(err < 10 * tol);
      CHECK(y.row(1) == y.row(0));
    }
  }
  SUBCASE("a row's steps depend only on that row") {
    // y' = -k y with k from the row index: the rows need different step counts.
    const auto g = [](std::span<const Index> rows, std::span<const double>, const Batch<double>& y,
                      Batch<double>& dy) {
      dy.resize(y.rows(), 1);
      for (Index r = 0; r < y.rows(); ++r) {
        dy(r, 0) = -static_cast<double>(1 + rows[static_cast<std::size_t>(r)]) * y(r, 0);
      }
    };
    Batch<double> all = Batch<double>::Ones(4, 1);
    const ddpm::DormandPrinceStats stats = ddpm::dormand_prince(g, all, 0.0, 2.0);
    CHECK(stats.accepted[3] > stats.accepted[0]);
    for (Index i = 0; i < 4; ++i)
      CHECK(all(i, 0) == doctest::Approx(std::exp(-2.0 * (1 + i))).epsilon(1e-4));
  }
  SUBCASE("bad options") {
    Batch<double> y = Batch<double>::Ones(1, 2);
    ddpm::DormandPrinceOptions o;
    o.rtol = 0.0;
    DDPM_CHECK_INVALID("rtol", ddpm::dormand_prince(f, y, 0.0, 1.0, o));
    o = {};
    o.atol = -1.0;
    DDPM_CHECK_INVALID("atol", ddpm::dormand_prince(f, y, 0.0, 1.0, o));
    o = {};
    o.max_steps = 0;
    DDPM_CHECK_INVALID("max_steps", ddpm::dormand_prince(f, y, 0.0, 1.0, o));
    DDPM_CHECK_INVALID("u1", ddpm::dormand_prince(f, y, 1.0, 1.0));
    o = {};
    o.max_steps = 2;
    o.rtol = o.atol = 1e-12;
    CHECK_THROWS_WITH_AS(ddpm::dormand_prince(f, y, 0.0, 1.0, o),
                         doctest::Contains("more than max_steps = 2"), std::runtime_error);
  }
}

TEST_CASE("GaussianMixtureDenoiser: the closed-form Jacobian matches finite differences") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  const Batch<double> x = ddpm::test::random_batch(5, 2, 11) * 1.5;
  // Fractional levels across the schedule: the responsibilities matter most in the middle.
  const std::vector<double> t{0.0, 40.5, 150.25, 400.0, 998.7};
  for (const ddpm::ModelOutput output :
       {ddpm::ModelOutput::epsilon, ddpm::ModelOutput::x0, ddpm::ModelOutput::v}) {
    const ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule,
                                                      output);
    Batch<double> out, jac, plain;
    model.predict_with_jacobian(x, t, out, jac);
    model.predict(x, t, plain);
    CHECK(out == plain);
    double worst = 0.0;
    const double h = 1e-6;
    for (Index b = 0; b < 2; ++b) {
      Batch<double> plus = x, minus = x, out_plus, out_minus;
      plus.col(b).array() += h;
      minus.col(b).array() -= h;
      model.predict(plus, t, out_plus);
      model.predict(minus, t, out_minus);
      for (Index i = 0; i < x.rows(); ++i) {
        for (Index a = 0; a < 2; ++a) {
          const double numeric = (out_plus(i, a) - out_minus(i, a)) / (2 * h);
          const double analytic = jac(i, a * 2 + b);
          worst = std::max(worst, std::abs(numeric - analytic) /
                                      std::max({std::abs(numeric), std::abs(analytic), 1e-3}));
        }
      }
    }
    CAPTURE(ddpm::to_string(output));
    // Central differences in double: ~1e-9 relative, but eps = (x - alpha x0) / sigma multiplies
    // the rounding by 1 / sigma = 100 at t = 0 (1.3e-6 measured for v).
    CHECK(worst < 1e-5);
  }
}

TEST_CASE("ode_likelihood of the exact mixture denoiser matches the exact density") {
  // 1000 points of 8gaussians, T = 1000 linear, rtol = atol = 1e-5: the test.
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const Batch<double> x = mixture_points(mixture, 1000, 5);
  ddpm::OdeLikelihoodOptions options;
  options.log_prior = ddpm::mixture_prior(mixture, schedule.level(999));
  const ddpm::OdeLikelihood exact_prior =
      ddpm::ode_likelihood(model, diffusion, x, ddpm::CounterRng(1), options);
  options.log_prior = nullptr;
  const ddpm::OdeLikelihood gaussian_prior =
      ddpm::ode_likelihood(model, diffusion, x, ddpm::CounterRng(1), options);
  double diff_exact = 0.0, diff_gaussian = 0.0, mean_exact = 0.0;
  for (Index i = 0; i < x.rows(); ++i) {
    const auto ii = static_cast<std::size_t>(i);
    const double truth = -ddpm::mixture_log_density(
        mixture, std::span<const double>(x.row(i).data(), 2), schedule.level(0));
    mean_exact += truth / 2000.0;
    diff_exact += std::abs(exact_prior.nll[ii] - truth) / 2000.0;
    diff_gaussian += std::abs(gaussian_prior.nll[ii] - truth) / 2000.0;
  }
  MESSAGE("exact NLL ", mean_exact, " nats/dim; ODE (exact prior) ", exact_prior.mean_nll_per_dim(),
          ", mean |diff| ", diff_exact, "; ODE (N(0, I) prior) ", gaussian_prior.mean_nll_per_dim(),
          ", mean |diff| ", diff_gaussian, "; NFE ", exact_prior.mean_evaluations());
  CHECK(diff_exact <= 0.01);
  CHECK(diff_gaussian <= 0.01);
  CHECK(exact_prior.s_min == schedule.level(0));
  CHECK(exact_prior.s_max == schedule.level(999));
}

TEST_CASE("ode_likelihood on a zero-terminal-SNR schedule integrates to its last finite level") {
  // ab_{T-1} = 0 (s = inf): the ODE ends at s_{T-2}, where N(0, I) is the marginal up to alpha.
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000).zero_terminal_snr();
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule, ddpm::ModelOutput::v);
  const ddpm::GaussianDiffusion<double> diffusion(schedule, {.output = ddpm::ModelOutput::v});
  const Batch<double> x = mixture_points(mixture, 200, 6);
  const ddpm::OdeLikelihood nll = ddpm::ode_likelihood(model, diffusion, x, ddpm::CounterRng(1));
  CHECK(nll.s_max == schedule.level(998));
  double diff = 0.0;
  for (Index i = 0; i < x.rows(); ++i) {
    const double truth = -ddpm::mixture_log_density(
        mixture, std::span<const double>(x.row(i).data(), 2), schedule.level(0));
    diff += std::abs(nll.nll[static_cast<std::size_t>(i)] - truth) / 400.0;
  }
  CHECK(diff <= 0.01);
}

TEST_CASE("ode_likelihood: Hutchinson's estimate is unbiased") {
  // The divergence integral of one point under many probe seeds: the mean over 400 seeds must
  // match the exact divergence within 4 standard errors of that mean.
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  ddpm::GaussianMixtureDenoiser<double> model(mixture, schedule);
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const Batch<double> point = mixture_points(mixture, 1, 9);
  const Index n = 400;
  const Batch<double> x = point.replicate(n, 1);
  ddpm::OdeLikelihoodOptions options;
  options.rtol = options.atol = 1e-4;
  const double exact =
      ddpm::ode_likelihood(model, diffusion, point, ddpm::CounterRng(1), options).divergence[0];
  options.divergence = ddpm::Divergence::hutchinson;
  // Rows are different samples, so each row has its own probes.
  const ddpm::OdeLikelihood hutchinson =
      ddpm::ode_likelihood(model, diffusion, x, ddpm::CounterRng(2), options);
  double mean = 0.0, sq = 0.0;
  for (const double v : hutchinson.divergence) mean += v / n;
  for (const double v : hutchinson.divergence) sq += (v - mean) * (v - mean) / (n - 1);
  const double standard_error = std::sqrt(sq / n);
  MESSAGE("divergence integral: exact ", exact, ", Hutchinson mean ", mean, " +- ", standard_error,
          " (sd of one estimate ", std::sqrt(sq), ")");
  CHECK(std::sqrt(sq) > 0.0);  // the probes do vary
  CHECK(std::abs(mean - exact) < 4 * standard_error);
  SUBCASE("more probes, less variance") {
    options.probes = 4;
    const ddpm::OdeLikelihood four = ddpm::ode_likelihood(
        model, diffusion, Batch<double>(x.topRows(100)), ddpm::CounterRng(2), options);
    double m4 = 0.0, s4 = 0.0;
    for (const double v : four.divergence) m4 += v / 100;
    for (const double v : four.divergence) s4 += (v - m4) * (v - m4) / 99;
    CHECK(s4 < sq);
  }
}

/// The largest error of an input VJP `grad_x` of `model` at (x, t) against central differences of
/// sum(predict(x, t) * cotangent) (the model in inference mode).
template <class Model>
double vjp_error(Model& model, const Batch<double>& x, const std::vector<double>& t,
                 const Batch<double>& cotangent, const Batch<double>& grad_x) {
  Batch<double> moved = x;
  std::vector<double> numeric(static_cast<std::size_t>(x.size()));
  ddpm::nn::numeric_gradient<double>(
      [&] {
        Batch<double> o;
        model.predict(moved, t, o);
        return (o.array() * cotangent.array()).sum();
      },
      ddpm::test::flat(moved), numeric);
  return ddpm::nn::max_gradient_error<double>(
      std::span<const double>(grad_x.data(), static_cast<std::size_t>(grad_x.size())), numeric);
}

TEST_CASE("nn::Mlp: real-valued t equals int t at integral t, the VJP matches finite differences") {
  ddpm::nn::Mlp<double> model(small_mlp());
  const Batch<double> x = ddpm::test::random_batch(4, 2, 21);
  const std::vector<int> t_int{0, 7, 500, 999};
  const std::vector<double> t_real{0.0, 7.0, 500.0, 999.0};
  Batch<double> a, b;
  model.set_training(false);
  model.predict(x, t_int, a);
  model.predict(x, t_real, b);
  CHECK(a == b);
  SUBCASE("float too") {
    ddpm::nn::Mlp<float> small(small_mlp());
    small.set_training(false);
    Batch<float> af, bf;
    small.predict(x.cast<float>(), t_int, af);
    small.predict(x.cast<float>(), t_real, bf);
    CHECK(af == bf);
  }
  SUBCASE("the output is continuous in a real t") {
    const std::vector<double> mid(4, 3.5), near(4, 3.5 + 1e-7);
    const std::vector<int> lo(4, 3);
    Batch<double> m, n, l;
    model.predict(x, mid, m);
    model.predict(x, near, n);
    model.predict(x, lo, l);
    CHECK((m - n).cwiseAbs().maxCoeff() < 1e-5);
    CHECK((m - l).cwiseAbs().maxCoeff() > 1e-4);  // and it does move between the steps
  }
  SUBCASE("input_vjp = cotangent^T d out / d x, parameter gradients untouched") {
    Batch<double> out, grad_x;
    const Batch<double> cotangent = ddpm::test::random_batch(4, 2, 22);
    model.zero_grad();
    model.parameter_values()[0] += 0.0;
    model.linearize(x, t_real, out);
    CHECK(out == b);
    model.input_vjp(cotangent, grad_x);
    for (const double g : std::as_const(model).gradient_values()) CHECK(g == 0.0);
    CHECK(vjp_error(model, x, t_real, cotangent, grad_x) < 1e-6);
  }
  SUBCASE("errors") {
    const std::vector<double> negative{0.0, -1.0, 2.0, 3.0};
    DDPM_CHECK_INVALID("t", model.predict(x, negative, a));
    const std::vector<double> short_t{1.0};
    DDPM_CHECK_INVALID("t.size()", model.predict(x, short_t, a));
  }
}

TEST_CASE("nn::UNet: real-valued t equals int t, linearize has no dropout, VJP by differences") {
  ddpm::nn::UNetConfig c;
  c.image_channels = 1;
  c.height = 4;
  c.width = 4;
  c.output_channels = 1;
  c.base_channels = 4;
  c.channel_mult = {1, 2};
  c.groups = 2;
  c.dropout = 0.3;
  c.seed = 4;
  ddpm::nn::UNet<double> model(c);
  const Batch<double> x = ddpm::test::random_batch(2, 16, 31);
  const std::vector<int> t_int{3, 600};
  const std::vector<double> t_real{3.0, 600.0};
  Batch<double> a, b, lin;
  model.set_training(false);
  model.predict(x, t_int, a);
  model.predict(x, t_real, b);
  CHECK(a == b);
  model.set_training(true);  // linearize ignores the mode: no dropout, activations kept
  model.linearize(x, t_real, lin);
  CHECK(lin == a);
  const Batch<double> cotangent = ddpm::test::random_batch(2, 16, 32);
  Batch<double> grad_x;
  model.zero_grad();
  model.input_vjp(cotangent, grad_x);
  for (const double g : std::as_const(model).gradient_values()) CHECK(g == 0.0);
  model.set_training(false);
  CHECK(vjp_error(model, x, t_real, cotangent, grad_x) < 1e-5);
}

TEST_CASE("ode_likelihood: bitwise the same for any batch split and thread count") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  const ddpm::GaussianMixture mixture = ddpm::eight_gaussians_mixture();
  ddpm::GaussianMixtureDenoiser<double> exact_model(mixture, schedule);
  ddpm::nn::Mlp<float> mlp(small_mlp());
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const ddpm::GaussianDiffusion<float> diffusion_f(schedule);
  const Batch<double> x = mixture_points(mixture, 12, 13);
  const Batch<float> xf = x.cast<float>();
  ddpm::OdeLikelihoodOptions options;
  options.rtol = options.atol = 1e-3;
  const auto run_both = [&](Index first, Index count, ddpm::Divergence divergence) {
    ddpm::OdeLikelihoodOptions o = options;
    o.divergence = divergence;
    const auto f = static_cast<std::uint32_t>(first);
    std::vector<double> nll =
        ddpm::ode_likelihood(exact_model, diffusion, Batch<double>(x.middleRows(first, count)),
                             ddpm::CounterRng(3), o, f)
            .nll;
    const std::vector<double> net =
        ddpm::ode_likelihood(mlp, diffusion_f, Batch<float>(xf.middleRows(first, count)),
                             ddpm::CounterRng(3), o, f)
            .nll;
    nll.insert(nll.end(), net.begin(), net.end());
    return nll;
  };
  for (const ddpm::Divergence divergence :
       {ddpm::Divergence::exact, ddpm::Divergence::hutchinson}) {
    CAPTURE(ddpm::to_string(divergence));
    const std::vector<double> whole = run_both(0, 12, divergence);
    const std::vector<double> head = run_both(0, 5, divergence);
    const std::vector<double> tail = run_both(5, 7, divergence);
    for (std::size_t i = 0; i < 5; ++i) {
      CHECK(head[i] == whole[i]);           // exact denoiser
      CHECK(head[5 + i] == whole[12 + i]);  // Mlp
    }
    for (std::size_t i = 0; i < 7; ++i) {
      CHECK(tail[i] == whole[5 + i]);
      CHECK(tail[7 + i] == whole[17 + i]);
    }
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<double> one = run_both(0, 12, divergence);
    omp_set_num_threads(2);
    const std::vector<double> two = run_both(0, 12, divergence);
    omp_set_num_threads(saved);
    CHECK(one == two);
    CHECK(one == whole);
#endif
  }
}

TEST_CASE("dequantization and bits/dim") {
  Batch<float> images(3, 5);
  for (Index i = 0; i < 3; ++i) {
    for (Index j = 0; j < 5; ++j)
      images(i, j) = static_cast<float>(2.0 * (17 * i + 50 * j) / 255.0 - 1.0);
  }
  const ddpm::CounterRng rng(8);
  const Batch<float> deq = ddpm::dequantize(images, rng, 10);
  for (Index i = 0; i < 3; ++i) {
    for (Index j = 0; j < 5; ++j) {
      const double u = rng.uniform(ddpm::stream::dequantize, static_cast<std::uint32_t>(10 + i), 0,
                                   static_cast<std::uint32_t>(j));
      CHECK(deq(i, j) == static_cast<float>(images(i, j) + (2.0 / 255.0) * (u - 0.5)));
      CHECK(std::abs(deq(i, j) - images(i, j)) <= 1.0 / 255.0 + 1e-6);  // inside its bin
    }
  }
  const Batch<float> tail = images.bottomRows(2);
  CHECK(ddpm::dequantize(tail, rng, 11) == deq.bottomRows(2));  // keyed by global sample index
  // The uniform density on [-1, 1]^d (nll = d log 2) gives each 2/255-wide bin P = (1/255)^d:
  // log2(255) bits/dim.
  CHECK(ddpm::bits_per_dim(5 * std::log(2.0), 5) == doctest::Approx(std::log2(255.0)));
}

TEST_CASE("ode_likelihood: options and inputs are checked") {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(100);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
  const ddpm::GaussianDiffusion<double> diffusion(schedule);
  const Batch<double> x = ddpm::test::random_batch(2, 2, 1);
  const ddpm::CounterRng rng(1);
  ddpm::OdeLikelihoodOptions o;
  o.rtol = 0.0;
  DDPM_CHECK_INVALID("rtol", ddpm::ode_likelihood(model, diffusion, x, rng, o));
  o = {};
  o.atol = std::nan("");
  DDPM_CHECK_INVALID("atol", ddpm::ode_likelihood(model, diffusion, x, rng, o));
  o = {};
  o.probes = 0;
  DDPM_CHECK_INVALID("probes", ddpm::ode_likelihood(model, diffusion, x, rng, o));
  o = {};
  o.max_steps = 0;
  DDPM_CHECK_INVALID("max_steps", ddpm::ode_likelihood(model, diffusion, x, rng, o));
  Batch<double> bad = x;
  bad(1, 1) = INFINITY;
  DDPM_CHECK_INVALID("x", ddpm::ode_likelihood(model, diffusion, bad, rng));
  DDPM_CHECK_INVALID(
      "x_t", ddpm::ode_likelihood(model, diffusion, Batch<double>(Batch<double>::Zero(2, 3)), rng));
  CHECK(ddpm::parse_enum<ddpm::Divergence>("hutchinson") == ddpm::Divergence::hutchinson);
  DDPM_CHECK_INVALID("divergence", ddpm::parse_enum<ddpm::Divergence>("trace"));
}

}  // namespace ode_likelihood_test
