// SPDX-License-Identifier: MIT
// Must NOT compile: a model without predict() passed to a sampler. The test expects the plain
// static_assert message naming ddpm::Denoiser and the missing member.
#include <ddpm/ddpm.hpp>

struct NotADenoiser {
  void forward(const ddpm::Batch<float>&) {}
};

int main() {
  ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  ddpm::AncestralSampler<float> sampler(diffusion);
  NotADenoiser model;
  (void)sampler.sample(model, 4, 2, ddpm::CounterRng(1));
}
