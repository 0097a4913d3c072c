// SPDX-License-Identifier: MIT
// Every sampler stops at the first non-finite network output with a NonFiniteError that names the
// step, the timestep and the sample (issue 14: a diverged model must not return a batch of NaNs).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <span>
#include <string>

#include "ddpm/ddpm.hpp"
#include "ddpm/samplers/repaint.hpp"
#include "support.hpp"

namespace nonfinite_sampling_test {

namespace {

/// The exact 8gaussians denoiser, except that row `bad_row` (of the batch it is given) comes out
/// NaN from timestep `below` downwards (or +inf with `infinite`).
struct BreaksBelow {
  ddpm::GaussianMixtureDenoiser<double> exact;
  int below;
  ddpm::Index bad_row;
  bool infinite = false;

  void predict(const ddpm::Batch<double>& x, std::span<const int> t, ddpm::Batch<double>& out) {
    exact.predict(x, t, out);
    if (t[0] < below && bad_row < out.rows())
      out(bad_row, 1) = infinite ? std::numeric_limits<double>::infinity()
                                 : std::numeric_limits<double>::quiet_NaN();
  }
};

}  // namespace

TEST_CASE("every sampler stops at a non-finite network output, naming step, timestep, sample") {
  const ddpm::NoiseSchedule full = ddpm::NoiseSchedule::linear(100);
  const ddpm::GaussianDiffusion<double> diffusion(full);
  BreaksBelow model{ddpm::GaussianMixtureDenoiser<double>(ddpm::eight_gaussians_mixture(), full),
                    40, 3};
  const ddpm::CounterRng rng(5);
  for (const std::string& name : ddpm::enum_names<ddpm::SamplerKind>()) {
    CAPTURE(name);
    const ddpm::SamplerSpec spec{.kind = ddpm::parse_enum<ddpm::SamplerKind>(name), .steps = 10};
    // Rows 0..5 are global samples 20..25: the message names the global sample.
    CHECK_THROWS_WITH_AS((void)ddpm::sample(spec, diffusion, model, 6, 2, rng, 20),
                         doctest::Contains("the network output is nan at sample 23, output 1"),
                         ddpm::NonFiniteError);
    CHECK_THROWS_WITH_AS((void)ddpm::sample(spec, diffusion, model, 6, 2, rng),
                         doctest::Contains("ddpm: sampling stopped at "), ddpm::NonFiniteError);
  }
  SUBCASE("the ancestral loop names the step of the loop and the timestep") {
    // Steps visit t = 99, 98, ...: t = 39 is step 61 of 100.
    CHECK_THROWS_WITH_AS((void)ddpm::AncestralSampler<double>(diffusion).sample(model, 6, 2, rng),
                         "ddpm: sampling stopped at step 61 of 100 (timestep 39): the network "
                         "output is nan at sample 3, output 1 (a diverged or untrained model, or "
                         "bad input?)",
                         ddpm::NonFiniteError);
    model.infinite = true;
    CHECK_THROWS_WITH_AS((void)ddpm::AncestralSampler<double>(diffusion).sample(model, 6, 2, rng),
                         doctest::Contains("the network output is inf at sample 3"),
                         ddpm::NonFiniteError);
  }
  SUBCASE("the solvers count network evaluations") {
    const ddpm::SamplerSpec heun{.kind = ddpm::SamplerKind::heun, .steps = 10};
    CHECK_THROWS_WITH_AS((void)ddpm::sample(heun, diffusion, model, 6, 2, rng),
                         doctest::Contains("ddpm: sampling stopped at network evaluation "),
                         ddpm::NonFiniteError);
  }
  SUBCASE("DDIM inversion and RePaint") {
    ddpm::Batch<double> x = ddpm::Batch<double>::Zero(6, 2);
    CHECK_THROWS_WITH_AS(
        ddpm::DdimSampler<double>(ddpm::GaussianDiffusion<double>(full.respaced("evenly 10")))
            .invert(model, x),
        doctest::Contains("ddpm: sampling stopped at inversion step 1 of 10 (timestep 0)"),
        ddpm::NonFiniteError);
    const ddpm::Batch<double> known = ddpm::Batch<double>::Zero(6, 2);
    ddpm::Batch<double> mask = ddpm::Batch<double>::Zero(6, 2);
    mask.col(0).setOnes();
    CHECK_THROWS_AS(
        (void)ddpm::RepaintSampler<double>(diffusion, 5, 2).inpaint(model, known, mask, rng),
        ddpm::NonFiniteError);
  }
  SUBCASE("a finite model is untouched") {
    model.below = -1;
    const ddpm::SamplerSpec ddim{.kind = ddpm::SamplerKind::ddim, .steps = 10};
    CHECK(ddpm::sample(ddim, diffusion, model, 6, 2, rng).allFinite());
  }
}

}  // namespace nonfinite_sampling_test
