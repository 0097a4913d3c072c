// SPDX-License-Identifier: MIT
// A user's program: includes ddpm, samples the 8gaussians mixture with the exact denoiser, checks
// the result is finite and spread out.
#include <cstdio>
#include <ddpm/ddpm.hpp>

int main() {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
  ddpm::DdimSampler<double> sampler(ddpm::GaussianDiffusion<double>(schedule.respaced("ddim20")));
  const ddpm::Batch<double> x = sampler.sample(model, 256, 2, ddpm::CounterRng(7));
  const double spread = (x.rowwise() - x.colwise().mean()).norm();
  const bool ok = x.allFinite() && spread > 1.0;
  std::printf("consumer: %ld samples, spread %.3f: %s\n", static_cast<long>(x.rows()), spread,
              ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
