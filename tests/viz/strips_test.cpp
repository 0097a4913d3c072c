// SPDX-License-Identifier: MIT
// Tests of the forward and reverse strips: which noise levels they show, in which order.
#include "ddpm/viz/strips.hpp"

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "ddpm/ddpm.hpp"
#include "support.hpp"

namespace strips_test {

namespace {

std::vector<std::string> labels(const std::vector<ddpm::io::Panel>& panels) {
  std::vector<std::string> out;
  for (const ddpm::io::Panel& p : panels) out.push_back(p.label);
  return out;
}

}  // namespace

TEST_CASE("the reverse strip records each noise level once, from noise to samples") {
  const ddpm::NoiseSchedule full = ddpm::NoiseSchedule::linear(1000);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), full);
  SUBCASE("all 1000 steps") {
    ddpm::AncestralSampler<double> sampler{ddpm::GaussianDiffusion<double>(full)};
    ddpm::viz::ReverseStripRecorder<double> strip(full, {});
    (void)sampler.sample(model, 50, 2, ddpm::CounterRng(1), 0, std::ref(strip));
    CHECK(labels(strip.panels()) ==
          std::vector<std::string>{"t=998", "t=500", "t=250", "t=100", "t=50", "x_0 (samples)"});
    CHECK(strip.panels().back().points.rows() == 50);
  }
  SUBCASE("a respaced schedule labels original timesteps") {
    const ddpm::NoiseSchedule respaced = full.respaced("ddim50");  // 0, 20, ..., 980
    ddpm::DdimSampler<double> sampler{ddpm::GaussianDiffusion<double>(respaced)};
    ddpm::viz::ReverseStripRecorder<double> strip(respaced, {});
    (void)sampler.sample(model, 10, 2, ddpm::CounterRng(1), 0, std::ref(strip));
    CHECK(labels(strip.panels()) ==
          std::vector<std::string>{"t=960", "t=500", "t=240", "t=100", "t=40", "x_0 (samples)"});
  }
}

TEST_CASE("the forward strip shows x_0 and x_t at increasing t") {
  const ddpm::GaussianDiffusion<double> diffusion(ddpm::NoiseSchedule::linear(1000));
  const ddpm::Batch<double> x0 = ddpm::test::random_batch(20, 2, 1);
  const ddpm::Batch<double> noise = ddpm::test::random_batch(20, 2, 2);
  const std::vector<ddpm::io::Panel> panels = ddpm::viz::forward_strip(diffusion, x0, noise, {});
  CHECK(labels(panels) ==
        std::vector<std::string>{"x_0 (data)", "t=50", "t=100", "t=250", "t=500", "t=999"});
  CHECK(panels[0].points == x0);
  const double ab = diffusion.schedule().alphas_cumprod()[999];
  CHECK(panels[5].points(3, 1) ==
        doctest::Approx(std::sqrt(ab) * x0(3, 1) + std::sqrt(1 - ab) * noise(3, 1)));
}

}  // namespace strips_test
