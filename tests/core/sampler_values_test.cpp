// SPDX-License-Identifier: MIT
// The samplers by value: single steps and whole chains compared with REFERENCE.md's formulas
// evaluated independently in long double (tests/core/reference_math.hpp), with the noise z
// regenerated from the documented address (stream sampler_noise, sample, original timestep).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "reference_math.hpp"
#include "support.hpp"

namespace sampler_values_test {

namespace {

using ddpm::Batch;
using ddpm::Index;
using ddpm::ModelOutput;
using ddpm::VarianceKind;
namespace ref = ddpm::test::ref;
using LD = ref::LD;

/// What one reverse step needs to know about the diffusion's options.
struct StepOptions {
  ModelOutput output = ModelOutput::epsilon;
  VarianceKind variance = VarianceKind::fixed_small;
  bool clip = false;
};

ddpm::DiffusionOptions diffusion_options(const StepOptions& o) {
  const bool learned =
      o.variance == VarianceKind::learned || o.variance == VarianceKind::learned_range;
  return {.output = o.output,
          .variance = o.variance,
          .loss = learned ? ddpm::LossKind::kl : ddpm::LossKind::simple,
          .clip_x0 = o.clip};
}

std::string describe(const StepOptions& o) {
  return std::string(ddpm::to_string(o.output)) + " " + std::string(ddpm::to_string(o.variance)) +
         (o.clip ? " clipped" : "");
}

/// x0^ from the raw output, clipped to [-1, 1] when asked.
LD reference_x0(const ref::Schedule& s, int j, const StepOptions& o, LD out, LD x) {
  const LD x0 = ref::x0_from_output(o.output, out, x, s.alpha_bar(j));
  return o.clip ? ref::clip(x0) : x0;
}

/// Ancestral: x_{t-1} = mu~(x0^, x_t) + exp(lv / 2) z, no noise at step 0.
LD reference_ancestral(const ref::Schedule& s, int j, const StepOptions& o, LD out, LD var_out,
                       LD x, LD z) {
  const LD mean = s.coef_x0(j) * reference_x0(s, j, o, out, x) + s.coef_xt(j) * x;
  if (j == 0) return mean;
  return mean + std::exp(0.5L * ref::log_var_of(s, j, o.variance, var_out)) * z;
}

/// DDIM: sqrt(ab_prev) x0^ + sqrt(1 - ab_prev - sigma^2) eps^ + sigma z, eps^ from the clipped x0^.
LD reference_ddim(const ref::Schedule& s, int j, const StepOptions& o, double eta, LD out, LD x,
                  LD z) {
  const LD ab = s.alpha_bar(j), ab_prev = s.alpha_bar_prev(j);
  const LD x0 = reference_x0(s, j, o, out, x);
  const LD eps = ref::eps_from_x0(x0, x, ab);
  const LD sigma = eta * std::sqrt((1 - ab_prev) / (1 - ab)) * std::sqrt(1 - ab / ab_prev);
  const LD noise = j == 0 ? 0.0L : sigma * z;
  return std::sqrt(ab_prev) * x0 + std::sqrt(std::max(0.0L, 1 - ab_prev - sigma * sigma)) * eps +
         noise;
}

/// The sampler's z for row `sample` at original timestep t.
std::vector<double> sampler_noise(const ddpm::CounterRng& rng, std::uint32_t sample, int t,
                                  Index dim) {
  std::vector<double> z(static_cast<std::size_t>(dim));
  rng.normals(ddpm::stream::sampler_noise, sample, static_cast<std::uint32_t>(t), z.data(), dim);
  return z;
}

/// A model output for a single step: the mean part ~ 1.5 N(0, 1) (so that x0 outputs clip),
/// learned log-variances in about [-9, -1], learned-range fractions r uniform in [-1, 1].
Batch<double> step_output(Index n, Index dim, VarianceKind v, std::uint64_t seed) {
  const bool learned = v == VarianceKind::learned || v == VarianceKind::learned_range;
  Batch<double> out(n, learned ? 2 * dim : dim);
  const ddpm::CounterRng rng(seed);
  rng.fill_normal(out, ddpm::stream::user, 0, 0);
  out.leftCols(dim) *= 1.5;
  if (v == VarianceKind::learned) out.rightCols(dim) = (-5.0 + 2.0 * out.rightCols(dim).array());
  if (v == VarianceKind::learned_range) {
    for (Index i = 0; i < n; ++i) {
      for (Index j = 0; j < dim; ++j) {
        out(i, dim + j) = 2.0 * rng.uniform(ddpm::stream::user + 1, static_cast<std::uint32_t>(i),
                                            0, static_cast<std::uint32_t>(j)) -
                          1.0;
      }
    }
  }
  return out;
}

/// The schedules the single-step tests run on: all 1000 linear steps, and 10 of them kept.
struct NamedSchedule {
  std::string name;
  ddpm::NoiseSchedule schedule;
  ref::Schedule reference;
};

std::vector<NamedSchedule> step_schedules() {
  const std::vector<int> kept = ref::evenly(1000, 10);
  const ddpm::NoiseSchedule full(ref::to_double(ref::linear_betas(1000)));
  return {{"all 1000 steps", full, ref::linear(1000)},
          {"10 kept steps", full.respaced(kept), ref::linear(1000, kept)}};
}

}  // namespace

TEST_CASE("one ancestral step equals mu~(x0^, x_t) + sigma z by value, for every option") {
  // Every output parameterization, variance kind (learned ones on the respaced schedule too) and
  // clipping with values that do clip, at the first, a middle and the last steps; z regenerated
  // from (sampler_noise, first_sample + i, t). Tolerance 1e-12 relative: at t = 999 the eps form
  // multiplies by sqrt(1/ab) = 160, still far from the 1e-12 of a wrong formula or timestep.
  const Index n = 4, dim = 3;
  const ddpm::CounterRng rng(31);
  const std::uint32_t first_sample = 7;
  int clipped = 0, unclipped = 0;
  for (const NamedSchedule& sch : step_schedules()) {
    const ref::Schedule& s = sch.reference;
    for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
      for (const VarianceKind variance : {VarianceKind::fixed_small, VarianceKind::fixed_large,
                                          VarianceKind::learned, VarianceKind::learned_range}) {
        for (const bool clip : {false, true}) {
          const StepOptions o{output, variance, clip};
          ddpm::AncestralSampler<double> sampler{
              ddpm::GaussianDiffusion<double>(sch.schedule, diffusion_options(o))};
          for (const int j : {s.size() - 1, s.size() / 2, 1, 0}) {
            const int t = s.timesteps[static_cast<std::size_t>(j)];
            const Batch<double> x_t = ddpm::test::random_batch(n, dim, 100 + j);
            const Batch<double> out = step_output(n, dim, variance, 200 + j);
            Batch<double> x_prev;
            sampler.step(out, t, x_t, x_prev, rng, first_sample);
            REQUIRE(x_prev.rows() == n);
            REQUIRE(x_prev.cols() == dim);
            for (Index i = 0; i < n; ++i) {
              const auto z =
                  sampler_noise(rng, first_sample + static_cast<std::uint32_t>(i), t, dim);
              for (Index c = 0; c < dim; ++c) {
                const LD x0 = ref::x0_from_output(output, out(i, c), x_t(i, c), s.alpha_bar(j));
                (std::abs(x0) > 1 ? clipped : unclipped) += clip ? 1 : 0;
                const LD expected = reference_ancestral(s, j, o, out(i, c),
                                                        dim < out.cols() ? out(i, dim + c) : 0.0,
                                                        x_t(i, c), z[static_cast<std::size_t>(c)]);
                CAPTURE(sch.name);
                CAPTURE(describe(o));
                CAPTURE(t);
                CHECK(std::abs(x_prev(i, c) - expected) <= 1e-12L * (1 + std::abs(expected)));
              }
            }
          }
        }
      }
    }
  }
  // The clipping cases did clip some values and leave others.
  CHECK(clipped > 50);
  CHECK(unclipped > 50);
}

TEST_CASE("one DDIM step equals REFERENCE.md's formula by value, for eta in [0, 1]") {
  // eta = 0, 0.3, 0.7 and 1 on all 1000 steps and on 10 kept steps (there ab_prev is the previous
  // KEPT step's alpha-bar), every output parameterization, with clipping that clips (eps^ is then
  // recomputed from the clipped x0^). Tolerance as for the ancestral step.
  const Index n = 4, dim = 3;
  const ddpm::CounterRng rng(32);
  const std::uint32_t first_sample = 11;
  for (const NamedSchedule& sch : step_schedules()) {
    const ref::Schedule& s = sch.reference;
    for (const double eta : {0.0, 0.3, 0.7, 1.0}) {
      for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::x0, ModelOutput::v}) {
        for (const bool clip : {false, true}) {
          const StepOptions o{output, VarianceKind::fixed_small, clip};
          ddpm::DdimSampler<double> sampler{
              ddpm::GaussianDiffusion<double>(sch.schedule, diffusion_options(o)), eta};
          for (const int j : {s.size() - 1, s.size() / 2, 1, 0}) {
            const int t = s.timesteps[static_cast<std::size_t>(j)];
            const Batch<double> x_t = ddpm::test::random_batch(n, dim, 300 + j);
            const Batch<double> out = step_output(n, dim, VarianceKind::fixed_small, 400 + j);
            Batch<double> x_prev;
            sampler.step(out, t, x_t, x_prev, rng, first_sample);
            for (Index i = 0; i < n; ++i) {
              const auto z =
                  sampler_noise(rng, first_sample + static_cast<std::uint32_t>(i), t, dim);
              for (Index c = 0; c < dim; ++c) {
                const LD expected = reference_ddim(s, j, o, eta, out(i, c), x_t(i, c),
                                                   z[static_cast<std::size_t>(c)]);
                CAPTURE(sch.name);
                CAPTURE(describe(o));
                CAPTURE(eta);
                CAPTURE(t);
                CHECK(std::abs(x_prev(i, c) - expected) <= 1e-12L * (1 + std::abs(expected)));
              }
            }
          }
        }
      }
    }
  }
}

namespace {

/// The exact model for data N(m, s^2 I), in double: eps*, E[x_0 | x_t] or v* at the ORIGINAL
/// timestep it is called with (alpha-bars by original timestep, from the long double schedule),
/// and for learned variances a second half of columns that depends on t only:
/// learned-range r(t) = 0.9 cos(t / 97), learned log-variance -9 + 0.006 t.
struct ExactGaussian {
  ModelOutput output;
  VarianceKind variance;
  double m, s;
  std::vector<double> ab_by_timestep;

  static double range_output(int t) { return 0.9 * std::cos(t / 97.0); }
  static double log_var_output(int t) { return -9.0 + 0.006 * t; }

  void predict(const Batch<double>& x, std::span<const int> t, Batch<double>& out) const {
    const bool learned =
        variance == VarianceKind::learned || variance == VarianceKind::learned_range;
    const Index dim = x.cols();
    out.resize(x.rows(), learned ? 2 * dim : dim);
    for (Index i = 0; i < x.rows(); ++i) {
      const int ti = t[static_cast<std::size_t>(i)];
      const double ab = ab_by_timestep.at(static_cast<std::size_t>(ti));
      for (Index c = 0; c < dim; ++c) {
        out(i, c) = static_cast<double>(ref::gaussian_exact_output(output, x(i, c), m, s, ab));
        if (learned) {
          out(i, dim + c) =
              variance == VarianceKind::learned ? log_var_output(ti) : range_output(ti);
        }
      }
    }
  }
};

ExactGaussian exact_gaussian(const StepOptions& o, double m, double s) {
  const ref::Schedule all = ref::linear(1000);
  return {o.output, o.variance, m, s, std::vector<double>(all.ab.begin(), all.ab.end())};
}

/// The exact model's raw outputs at (x, t) in long double (mean part, variance part).
std::pair<LD, LD> exact_output_ld(const ExactGaussian& model, LD x, int t, LD ab) {
  const LD var_out = model.variance == VarianceKind::learned ? ExactGaussian::log_var_output(t)
                                                             : ExactGaussian::range_output(t);
  return {ref::gaussian_exact_output(model.output, x, model.m, model.s, ab), var_out};
}

struct ChainCase {
  std::string name;
  int kept;  // kept steps of the 1000 (evenly), 1000 for all
  StepOptions options;
  double eta;  // < 0: ancestral
  double m, s;
};

}  // namespace

TEST_CASE("whole sampling chains with the exact one-Gaussian model match long double replays") {
  // Each chain is replayed in long double from the same x_T (stream prior) and z (stream
  // sampler_noise at the original timestep), with the model output computed from REFERENCE.md's
  // exact denoiser at the original timestep of each kept step. A model called at t - 1 or t + 1,
  // a wrong alpha-bar of a respaced step or a wrong variance changes the result by far more
  // than the 1e-11 allowed (measured difference of a correct chain: below 1e-14).
  const Index n = 16, dim = 2;
  const ddpm::CounterRng rng(41);
  const std::uint32_t first_sample = 3;
  const std::vector<ChainCase> cases = {
      {"ancestral, 1000 steps, eps", 1000, {ModelOutput::epsilon}, -1, 0.3, 0.5},
      {"ancestral, 1000 steps, sharp data", 1000, {ModelOutput::epsilon}, -1, 0.3, 0.05},
      {"ancestral, 100 steps, fixed-large, x0",
       100,
       {ModelOutput::x0, VarianceKind::fixed_large},
       -1,
       0.3,
       0.5},
      {"ancestral, 50 steps, learned-range, v",
       50,
       {ModelOutput::v, VarianceKind::learned_range},
       -1,
       0.3,
       0.5},
      {"ancestral, 50 steps, learned, eps, clipped",
       50,
       {ModelOutput::epsilon, VarianceKind::learned, true},
       -1,
       0.95,
       0.3},
      {"ancestral, 1000 steps, learned-range, eps",
       1000,
       {ModelOutput::epsilon, VarianceKind::learned_range},
       -1,
       -0.2,
       0.4},
      {"DDIM eta 0, 50 steps, eps", 50, {ModelOutput::epsilon}, 0.0, 0.3, 0.5},
      {"DDIM eta 0, 50 steps, v, clipped", 50, {ModelOutput::v, {}, true}, 0.0, 0.8, 0.3},
      {"DDIM eta 0.5, 50 steps, x0, clipped", 50, {ModelOutput::x0, {}, true}, 0.5, 0.8, 0.3},
      {"DDIM eta 1, 100 steps, v", 100, {ModelOutput::v}, 1.0, 0.3, 0.5},
  };
  const ddpm::NoiseSchedule full(ref::to_double(ref::linear_betas(1000)));
  for (const ChainCase& c : cases) {
    CAPTURE(c.name);
    const std::vector<int> kept = ref::evenly(1000, c.kept);
    const ref::Schedule s = ref::linear(1000, kept);
    const ddpm::NoiseSchedule schedule = c.kept == 1000 ? full : full.respaced(kept);
    const ddpm::GaussianDiffusion<double> diffusion(schedule, diffusion_options(c.options));
    ExactGaussian model = exact_gaussian(c.options, c.m, c.s);
    Batch<double> x;
    if (c.eta < 0) {
      ddpm::AncestralSampler<double> sampler{diffusion};
      x = sampler.sample(model, n, dim, rng, first_sample);
    } else {
      ddpm::DdimSampler<double> sampler{diffusion, c.eta};
      x = sampler.sample(model, n, dim, rng, first_sample);
    }
    LD worst = 0;
    int clipped = 0;
    for (Index i = 0; i < n; ++i) {
      const auto sample = first_sample + static_cast<std::uint32_t>(i);
      std::vector<double> prior(static_cast<std::size_t>(dim));
      rng.normals(ddpm::stream::prior, sample, 0, prior.data(), dim);
      std::vector<LD> y(prior.begin(), prior.end());
      for (int j = s.size() - 1; j >= 0; --j) {
        const int t = s.timesteps[static_cast<std::size_t>(j)];
        const auto z = sampler_noise(rng, sample, t, dim);
        for (Index d = 0; d < dim; ++d) {
          LD& yd = y[static_cast<std::size_t>(d)];
          const auto [out, var_out] = exact_output_ld(model, yd, t, s.alpha_bar(j));
          if (std::abs(ref::x0_from_output(c.options.output, out, yd, s.alpha_bar(j))) > 1) {
            ++clipped;
          }
          const LD zd = z[static_cast<std::size_t>(d)];
          yd = c.eta < 0 ? reference_ancestral(s, j, c.options, out, var_out, yd, zd)
                         : reference_ddim(s, j, c.options, c.eta, out, yd, zd);
        }
      }
      for (Index d = 0; d < dim; ++d) {
        worst = std::max(worst, std::abs(x(i, d) - y[static_cast<std::size_t>(d)]));
      }
    }
    CAPTURE(static_cast<double>(worst));
    CHECK(worst < 1e-11L);
    if (c.options.clip) CHECK(clipped > 0);
  }
}

TEST_CASE("DDIM inversion of the exact one-Gaussian model matches a long double replay") {
  // Step j goes from step j-1 (clean data for j = 0) to step j: x_j = sqrt(ab_j) x0^ +
  // sqrt(1 - ab_j) eps^, with x0^ and eps^ from the model at step j-1's original timestep (step
  // 0's for j = 0). On 20 and 100 kept steps and all 1000, eps and v outputs.
  const Index n = 8, dim = 2;
  const double m = 0.4, sd = 0.3;
  const Batch<double> data = (m + sd * ddpm::test::random_batch(n, dim, 51).array()).matrix();
  const ddpm::NoiseSchedule full(ref::to_double(ref::linear_betas(1000)));
  for (const int count : {20, 100, 1000}) {
    for (const ModelOutput output : {ModelOutput::epsilon, ModelOutput::v}) {
      const std::vector<int> kept = ref::evenly(1000, count);
      const ref::Schedule s = ref::linear(1000, kept);
      const StepOptions o{output};
      ddpm::DdimSampler<double> sampler{ddpm::GaussianDiffusion<double>(
          count == 1000 ? full : full.respaced(kept), diffusion_options(o))};
      ExactGaussian model = exact_gaussian(o, m, sd);
      Batch<double> x = data;
      sampler.invert(model, x);
      LD worst = 0;
      for (Index i = 0; i < n; ++i) {
        for (Index d = 0; d < dim; ++d) {
          LD y = data(i, d);
          for (int j = 0; j < s.size(); ++j) {
            const int e = std::max(j - 1, 0);
            const LD ab_e = s.alpha_bar(e);
            const LD out = ref::gaussian_exact_output(output, y, m, sd, ab_e);
            const LD x0 = ref::x0_from_output(output, out, y, ab_e);
            const LD eps = ref::eps_from_x0(x0, y, ab_e);
            y = std::sqrt(s.alpha_bar(j)) * x0 + std::sqrt(1 - s.alpha_bar(j)) * eps;
          }
          worst = std::max(worst, std::abs(x(i, d) - y));
        }
      }
      CAPTURE(count);
      CAPTURE(ddpm::to_string(output));
      CAPTURE(static_cast<double>(worst));
      CHECK(worst < 1e-11L);
    }
  }
}

}  // namespace sampler_values_test
