// SPDX-License-Identifier: MIT
// Ancestral (DDPM) sampling: x_{t-1} = mu_theta(x_t, t) + sigma_t z over all steps or a respaced
// subset (Ho et al. 2020, Algorithm 2; Nichol & Dhariwal 2021 for respacing and learned variances).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/samplers/common.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// Ancestral sampler over the diffusion's schedule (respace the schedule for fewer steps). The
/// variance is the diffusion's: fixed-small, fixed-large or the model's learned one. Holds
/// workspaces, so one sampler object serves one loop at a time.
template <class Real>
class AncestralSampler : public ReverseLoop<AncestralSampler<Real>, Real> {
 public:
  /// The sampler of `diffusion` (Ho et al. 2020, Algorithm 2), one step per schedule step.
  explicit AncestralSampler(GaussianDiffusion<Real> diffusion) : diffusion_(std::move(diffusion)) {}

  /// The diffusion it samples from.
  [[nodiscard]] const GaussianDiffusion<Real>& diffusion() const noexcept { return diffusion_; }
  /// The (possibly respaced) schedule it steps along.
  [[nodiscard]] const NoiseSchedule& schedule() const noexcept { return diffusion_.schedule(); }

  /// One step from x_t to x_{t-1} given the model's output at (x_t, t). Row i draws its noise
  /// from (stream sampler_noise, sample first_sample + i, step t); no noise at the first step.
  /// `guidance` (optional, x_t's shape) is g = s grad log p(y | x_t): the mean moves by Sigma g
  /// (Dhariwal & Nichol 2021, Algorithm 1), after any clipping of x0^.
  void step(const Batch<Real>& model_out, int t, const Batch<Real>& x_t, Batch<Real>& x_prev,
            const CounterRng& rng, std::uint32_t first_sample = 0,
            const Batch<Real>* guidance = nullptr) {
    detail::check_guidance(guidance, x_t);
    timesteps_.assign(static_cast<std::size_t>(x_t.rows()), t);
    diffusion_.p_mean_variance(model_out, x_t, timesteps_, reverse_);
    const bool last = diffusion_.schedule().index_of(t) == 0;
    x_prev.resize(x_t.rows(), x_t.cols());
    const Index dim = x_t.cols();
    detail::parallel_for(x_t.rows(), 32 * dim, [&](Index i) {
      Real* out = x_prev.row(i).data();
      if (!last) {
        rng.normals(stream::sampler_noise, first_sample + static_cast<std::uint32_t>(i),
                    static_cast<std::uint32_t>(t), out, dim);
      }
      for (Index j = 0; j < dim; ++j) {
        const Real log_variance = reverse_.log_variance(i, j);
        Real mean = reverse_.mean(i, j);
        if (guidance != nullptr) mean += std::exp(log_variance) * (*guidance)(i, j);
        out[j] = last ? mean : mean + std::exp(Real(0.5) * log_variance) * out[j];
      }
    });
  }

 private:
  GaussianDiffusion<Real> diffusion_;
  ReverseStep<Real> reverse_;
  std::vector<int> timesteps_;
};

}  // namespace ddpm
