// SPDX-License-Identifier: MIT
// The bound-based losses and the variational bound by value: every number recomputed from
// REFERENCE.md's formulas in long double (tests/core/reference_math.hpp), so the weights (T/1000,
// 1, T), the units (bits, nats) and the decoder's bins are checked, not only the gradients.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "reference_math.hpp"
#include "support.hpp"

namespace bound_values_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::LossKind;
using ddpm::ModelOutput;
using ddpm::VarianceKind;
namespace ref = ddpm::test::ref;
using LD = ref::LD;

/// L_j of one element in nats: KL(q(x_{t-1} | x_t, x_0) || p) for j > 0, the decoder's -log
/// p(x_0 | x_1) for j = 0 (continuous density or 8-bit bins).
LD bound_term_nats(const ref::Schedule& s, int j, ModelOutput output, VarianceKind v,
                   ddpm::Decoder decoder, LD out, LD var_out, LD x0, LD x_t) {
  const LD x0_hat = ref::x0_from_output(output, out, x_t, s.alpha_bar(j));
  const LD mean_p = s.coef_x0(j) * x0_hat + s.coef_xt(j) * x_t;
  const LD log_var_p = ref::log_var_of(s, j, v, var_out);
  if (j == 0) {
    return decoder == ddpm::Decoder::discretized ? ref::discretized_nll(x0, mean_p, log_var_p)
                                                 : ref::gaussian_nll(x0, mean_p, log_var_p);
  }
  const LD mean_q = s.coef_x0(j) * x0 + s.coef_xt(j) * x_t;
  return ref::normal_kl(mean_q, s.log_var_small(j), mean_p, log_var_p);
}

}  // namespace

TEST_CASE("bound losses by value: kl is L_t in bits, rescaled-kl T L_t, hybrid mse + T/1000 L_t") {
  // T = 200 so that the three weights differ: 1 (kl, or hybrid without rescaling), 200
  // (rescaled-kl) and 0.2 (hybrid), where 1000/T would give 5. Rows at t = 0 (decoder), 1, 57, 199;
  // learned and learned-range variances, eps and v outputs. Tolerance 1e-12 relative (double
  // against long double).
  const int T = 200;
  const ref::Schedule s = ref::linear(T);
  const ddpm::NoiseSchedule schedule(ref::to_double(ref::linear_betas(T)));
  const std::vector<int> t = {0, 1, 57, 199};
  const Index n = 4, dim = 3;
  const Batch<double> x0 = ddpm::test::random_batch(n, dim, 61);
  const Batch<double> noise = ddpm::test::random_batch(n, dim, 62);
  Batch<double> x_t(n, dim);
  for (Index i = 0; i < n; ++i) {
    const LD ab = s.alpha_bar(t[static_cast<std::size_t>(i)]);
    for (Index c = 0; c < dim; ++c) {
      x_t(i, c) = static_cast<double>(std::sqrt(ab) * x0(i, c) + std::sqrt(1 - ab) * noise(i, c));
    }
  }
  struct LossCase {
    LossKind loss;
    bool rescale;
    LD weight;  // of L_t
    bool has_mse;
  };
  const std::vector<LossCase> losses = {{LossKind::kl, true, 1.0L, false},
                                        {LossKind::rescaled_kl, true, 200.0L, false},
                                        {LossKind::hybrid, true, 0.2L, true},
                                        {LossKind::hybrid, false, 1.0L, true}};
  for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::v}) {
    for (const VarianceKind variance : {VarianceKind::learned, VarianceKind::learned_range}) {
      for (const LossCase& lc : losses) {
        const ddpm::GaussianDiffusion<double> diffusion(schedule, {.output = output,
                                                                   .variance = variance,
                                                                   .loss = lc.loss,
                                                                   .rescale_hybrid = lc.rescale});
        // Mean outputs near the target; learned log-variances near log beta~, fractions in (-1, 1).
        Batch<double> out = 0.3 * ddpm::test::random_batch(n, 2 * dim, 63);
        for (Index i = 0; i < n; ++i) {
          const int j = t[static_cast<std::size_t>(i)];
          const LD ab = s.alpha_bar(j);
          for (Index c = 0; c < dim; ++c) {
            const LD target = output == ModelOutput::epsilon
                                  ? noise(i, c)
                                  : std::sqrt(ab) * noise(i, c) - std::sqrt(1 - ab) * x0(i, c);
            out(i, c) += static_cast<double>(target);
            if (variance == VarianceKind::learned) {
              out(i, dim + c) += static_cast<double>(s.log_var_small(j));
            } else {
              out(i, dim + c) = std::tanh(out(i, dim + c) * 3);
            }
          }
        }
        ddpm::TrainingLoss<double> result;
        Batch<double> grad;
        diffusion.training_loss(out, x0, x_t, noise, t, result, grad);
        LD mean_loss = 0;
        for (Index i = 0; i < n; ++i) {
          const int j = t[static_cast<std::size_t>(i)];
          const LD ab = s.alpha_bar(j);
          LD vlb_nats = 0, mse = 0;
          for (Index c = 0; c < dim; ++c) {
            vlb_nats += bound_term_nats(s, j, output, variance, ddpm::Decoder::continuous,
                                        out(i, c), out(i, dim + c), x0(i, c), x_t(i, c));
            const LD target = output == ModelOutput::epsilon
                                  ? noise(i, c)
                                  : std::sqrt(ab) * noise(i, c) - std::sqrt(1 - ab) * x0(i, c);
            mse += (out(i, c) - target) * (out(i, c) - target);
          }
          const LD vlb_bits = vlb_nats / dim / ref::kLn2;
          mse /= dim;
          const LD expected = (lc.has_mse ? mse : 0.0L) + lc.weight * vlb_bits;
          mean_loss += expected / n;
          CAPTURE(ddpm::to_string(output));
          CAPTURE(ddpm::to_string(variance));
          CAPTURE(ddpm::to_string(lc.loss));
          CAPTURE(lc.rescale);
          CAPTURE(j);
          CHECK(result.vlb(i) == doctest::Approx(static_cast<double>(vlb_bits)).epsilon(1e-12));
          CHECK(result.loss(i) == doctest::Approx(static_cast<double>(expected)).epsilon(1e-12));
          if (lc.has_mse) {
            CHECK(result.mse(i) == doctest::Approx(static_cast<double>(mse)).epsilon(1e-12));
          }
        }
        CHECK(result.mean == doctest::Approx(static_cast<double>(mean_loss)).epsilon(1e-12));
      }
    }
  }
}

namespace {

/// A deterministic model for the bound test: eps^ = 0.9 x_t + 0.001 t, and for learned-range
/// r = 0.8 sin(x_t + t / 7) (double in, double out, so the replay sees the same outputs).
struct SimpleModel {
  bool learned_range;
  static double mean_output(double x, int t) { return 0.9 * x + 0.001 * t; }
  static double range_output(double x, int t) { return 0.8 * std::sin(x + t / 7.0); }
  void predict(const Batch<double>& x, std::span<const int> t, Batch<double>& out) const {
    const Index dim = x.cols();
    out.resize(x.rows(), learned_range ? 2 * dim : dim);
    for (Index i = 0; i < x.rows(); ++i) {
      const int ti = t[static_cast<std::size_t>(i)];
      for (Index c = 0; c < dim; ++c) {
        out(i, c) = mean_output(x(i, c), ti);
        if (learned_range) out(i, dim + c) = range_output(x(i, c), ti);
      }
    }
  }
};

/// 8-bit values in [-1, 1]: rows of random levels with both edge levels present.
Batch<double> eight_bit_data(Index n, Index dim) {
  Batch<double> x(n, dim);
  const ddpm::CounterRng rng(71);
  for (Index i = 0; i < n; ++i) {
    for (Index c = 0; c < dim; ++c) {
      const auto level = rng.uniform_int(ddpm::stream::user, static_cast<std::uint32_t>(i), 0, 256,
                                         static_cast<std::uint32_t>(c));
      x(i, c) = -1.0 + 2.0 * static_cast<double>(level) / 255.0;
    }
  }
  x(0, 0) = -1.0;
  x(1, 1) = 1.0;
  x(2, 0) = -1.0 + 2.0 / 255.0;
  x(3, 1) = 1.0 - 2.0 / 255.0;
  return x;
}

}  // namespace

TEST_CASE("the variational bound term by term by value: bits/dim (8-bit decoder) or nats/dim") {
  // One forward-noise draw per step at (forward_noise, first_sample + i, original timestep),
  // replayed here in long double with every term from REFERENCE.md: KL terms for t > 0, the
  // decoder at t = 0 (8-bit bins x +- 1/255 open at +-1, or the Gaussian density), the prior
  // KL(q(x_T | x_0) || N(0, I)); divided by dim, and by ln 2 for the discretized decoder. On 50
  // linear steps and on 25 kept steps of 1000 (respaced betas inside the learned range),
  // fixed-small and learned-range. Tolerance 1e-10 relative.
  const Index n = 6, dim = 4;
  const std::uint32_t first_sample = 5;
  const ddpm::CounterRng rng(72);
  const Batch<double> x0 = eight_bit_data(n, dim);
  struct Case {
    std::string name;
    int T;
    int kept;
  };
  for (const Case& sc : {Case{"50 steps", 50, 50}, Case{"25 of 1000 steps", 1000, 25}}) {
    const std::vector<int> kept = ref::evenly(sc.T, sc.kept);
    const ref::Schedule s = ref::linear(sc.T, kept);
    const ddpm::NoiseSchedule full(ref::to_double(ref::linear_betas(sc.T)));
    const ddpm::NoiseSchedule schedule = sc.kept == sc.T ? full : full.respaced(kept);
    for (const auto decoder : {ddpm::Decoder::discretized, ddpm::Decoder::continuous}) {
      for (const VarianceKind variance : {VarianceKind::fixed_small, VarianceKind::learned_range}) {
        const bool learned = variance == VarianceKind::learned_range;
        const ddpm::GaussianDiffusion<double> diffusion(
            schedule, {.variance = variance,
                       .loss = learned ? LossKind::hybrid : LossKind::simple,
                       .decoder = decoder});
        SimpleModel model{learned};
        const ddpm::VariationalBound<double> bound =
            diffusion.variational_bound(model, x0, rng, first_sample);
        const bool bits = decoder == ddpm::Decoder::discretized;
        CHECK(bound.unit == (bits ? "bits/dim" : "nats/dim"));
        REQUIRE(bound.terms.rows() == n);
        REQUIRE(bound.terms.cols() == s.size());
        const LD unit = bits ? dim * ref::kLn2 : static_cast<LD>(dim);
        for (Index i = 0; i < n; ++i) {
          CAPTURE(sc.name);
          CAPTURE(bits);
          CAPTURE(learned);
          CAPTURE(i);
          LD total = 0;
          for (int j = 0; j < s.size(); ++j) {
            const int t = s.timesteps[static_cast<std::size_t>(j)];
            std::vector<double> eps(static_cast<std::size_t>(dim));
            rng.normals(ddpm::stream::forward_noise, first_sample + static_cast<std::uint32_t>(i),
                        static_cast<std::uint32_t>(t), eps.data(), dim);
            const LD ab = s.alpha_bar(j);
            LD nats = 0;
            for (Index c = 0; c < dim; ++c) {
              // The model sees x_t in double, as the library passes it.
              const double x = static_cast<double>(
                  std::sqrt(ab) * x0(i, c) + std::sqrt(1 - ab) * eps[static_cast<std::size_t>(c)]);
              nats += bound_term_nats(s, j, ModelOutput::epsilon, variance, decoder,
                                      SimpleModel::mean_output(x, t),
                                      learned ? SimpleModel::range_output(x, t) : 0.0, x0(i, c), x);
            }
            CAPTURE(j);
            CHECK(bound.terms(i, j) ==
                  doctest::Approx(static_cast<double>(nats / unit)).epsilon(1e-10));
            total += nats / unit;
          }
          const LD ab_last = s.alpha_bar(s.size() - 1);
          LD prior = 0;
          for (Index c = 0; c < dim; ++c) {
            prior += ref::normal_kl(std::sqrt(ab_last) * x0(i, c), std::log(1 - ab_last), 0, 0);
          }
          prior /= unit;
          CHECK(bound.prior(i) == doctest::Approx(static_cast<double>(prior)).epsilon(1e-10));
          CHECK(bound.total(i) ==
                doctest::Approx(static_cast<double>(total + prior)).epsilon(1e-10));
        }
      }
    }
  }
}

}  // namespace bound_values_test
