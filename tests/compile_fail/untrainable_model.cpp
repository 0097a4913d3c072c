// SPDX-License-Identifier: MIT
// Must NOT compile: a model with predict() but no backward() handed to the Trainer. The test
// expects the static_assert that names the one missing member.
#include <ddpm/ddpm.hpp>
#include <ddpm/train/trainer.hpp>
#include <vector>

struct PredictOnly {
  void predict(const ddpm::Batch<float>& x, std::span<const int>, ddpm::Batch<float>& out) {
    out = x;
  }
  void zero_grad() {}
  std::vector<ddpm::ParameterBlock<float>> parameters() { return {}; }
};

int main() {
  ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(100));
  PredictOnly model;
  ddpm::train::Trainer<float, PredictOnly> trainer(model, diffusion, {});
  (void)trainer;
}
