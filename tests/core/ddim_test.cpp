// SPDX-License-Identifier: MIT
// DDIM at the edges of its parameters: a first beta so small that alpha-bar rounds to 1, and the
// eta range in which its marginals are right.
#include "ddpm/samplers/ddim.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ddpm/diffusion.hpp"
#include "ddpm/gaussian_mixture.hpp"
#include "ddpm/mixture_denoiser.hpp"
#include "ddpm/schedule.hpp"
#include "support.hpp"

namespace ddim_test {

namespace {

using ddpm::Batch;

// betas {b0, then a linear ramp}: T = 200 with a first beta of b0.
ddpm::NoiseSchedule with_first_beta(double b0) {
  std::vector<double> betas = ddpm::NoiseSchedule::linear(200).betas();
  betas[0] = b0;
  return ddpm::NoiseSchedule(betas);
}

}  // namespace

TEST_CASE("DDIM stays finite when alpha-bar_0 rounds to 1 (beta_0 down to 1e-300)") {
  // With ab_0 == 1.0 in double, sigma's (1 - ab_prev)/(1 - ab) was 0/0 at the last step and every
  // sample came out NaN. The exact denoiser of N(m, s^2) makes the result checkable: the last
  // step returns x0^ = E[x_0 | x_1] exactly.
  const ddpm::GaussianMixture single = ddpm::test::one_gaussian({0.5, -0.25}, 0.3);
  for (const double b0 : {1e-17, 1e-30, 1e-300}) {
    CAPTURE(b0);
    const ddpm::NoiseSchedule schedule = with_first_beta(b0);
    REQUIRE(schedule.alphas_cumprod()[0] == 1.0);
    for (const double eta : {0.0, 0.5, 1.0}) {
      CAPTURE(eta);
      for (const char* spacing : {"evenly 200", "evenly 20"}) {
        const ddpm::GaussianDiffusion<double> diffusion(schedule.respaced(spacing));
        ddpm::GaussianMixtureDenoiser<double> exact(single, diffusion.schedule());
        ddpm::DdimSampler<double> sampler(diffusion, eta);
        const Batch<double> x = sampler.sample(exact, 500, 2, ddpm::CounterRng(3));
        REQUIRE(x.allFinite());
        // 500 samples of N(m, 0.3^2): the mean within 5 standard errors (0.3/sqrt(500) = 0.013)
        // plus the discretization of 20 steps (measured below 0.02).
        CHECK(std::abs(x.col(0).mean() - 0.5) < 0.09);
        CHECK(std::abs(x.col(1).mean() + 0.25) < 0.09);
      }
    }
  }
}

TEST_CASE("DDIM refuses eta outside [0, 1]") {
  const ddpm::GaussianDiffusion<double> diffusion(ddpm::NoiseSchedule::linear(100));
  // Above 1, 1 - ab_prev - sigma^2 turns negative and was clamped to 0: wrong marginals, silently.
  for (const double eta :
       {1.0000001, 1.5, -0.1, std::nan(""), std::numeric_limits<double>::infinity()}) {
    CAPTURE(eta);
    DDPM_CHECK_INVALID("eta", ddpm::DdimSampler<double>(diffusion, eta));
  }
  CHECK_NOTHROW(ddpm::DdimSampler<double>(diffusion, 1.0));
  CHECK_NOTHROW(ddpm::DdimSampler<double>(diffusion, 0.0));
}

}  // namespace ddim_test
