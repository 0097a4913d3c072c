// SPDX-License-Identifier: MIT
// DDIM sampling (Song et al. 2020, eq. 12) with eta between deterministic (0) and ancestral (1),
// and DDIM inversion from data to noise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/samplers/common.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// DDIM sampler over the diffusion's schedule; respace the schedule (e.g. "ddim50" or "evenly 50")
/// for fast sampling: alpha-bar of the previous KEPT step is used. eta = 0 is deterministic;
/// eta = 1 equals ancestral sampling with the fixed-small variance.
template <class Real>
class DdimSampler : public ReverseLoop<DdimSampler<Real>, Real> {
 public:
  /// eta in [0, 1] scales the noise: 0 is the deterministic DDIM, 1 the ancestral variance.
  explicit DdimSampler(GaussianDiffusion<Real> diffusion, double eta = 0.0)
      : diffusion_(std::move(diffusion)), eta_(eta) {
    detail::require(eta >= 0.0 && eta <= 1.0, "eta", eta,
                    "a value in [0, 1] (0 deterministic, 1 ancestral with the fixed-small "
                    "variance; above 1 the noise would exceed the marginal's variance)");
  }

  /// The diffusion it samples from.
  [[nodiscard]] const GaussianDiffusion<Real>& diffusion() const noexcept { return diffusion_; }
  /// The (possibly respaced) schedule it steps along.
  [[nodiscard]] const NoiseSchedule& schedule() const noexcept { return diffusion_.schedule(); }
  /// The noise scale eta.
  [[nodiscard]] double eta() const noexcept { return eta_; }

  /// One step from x_t to the previous kept step given the model's output at (x_t, t):
  /// x_prev = sqrt(ab_prev) x0^ + sqrt(1 - ab_prev - sigma^2) eps^ + sigma z. Row i draws z from
  /// (stream sampler_noise, sample first_sample + i, step t); no noise at the first step.
  /// `guidance` (optional, x_t's shape) is g = s grad log p(y | x_t): eps^ moves by
  /// -sqrt(1 - ab_t) g and x0^ follows it (Dhariwal & Nichol 2021, Algorithm 2).
  void step(const Batch<Real>& model_out, int t, const Batch<Real>& x_t, Batch<Real>& x_prev,
            const CounterRng& rng, std::uint32_t first_sample = 0,
            const Batch<Real>* guidance = nullptr) {
    detail::check_guidance(guidance, x_t);
    timesteps_.assign(static_cast<std::size_t>(x_t.rows()), t);
    diffusion_.p_mean_variance(model_out, x_t, timesteps_, reverse_);
    const NoiseSchedule& schedule = diffusion_.schedule();
    const auto s = static_cast<std::size_t>(schedule.index_of(t));
    // sigma^2 = eta^2 (1 - ab_prev)/(1 - ab) (1 - ab/ab_prev) = eta^2 beta~_t, and
    // 1 - ab_prev - sigma^2 = (1 - ab_prev)(1 - eta^2 beta_t / (1 - ab_t)) >= 0 for eta <= 1, both
    // from the schedule's accurately computed 1 - ab: no 0/0 when ab_0 rounds to 1.
    const double one_minus_ab = square(schedule.sqrt_one_minus_alphas_cumprod()[s]);
    const double one_minus_ab_prev =
        s > 0 ? square(schedule.sqrt_one_minus_alphas_cumprod()[s - 1]) : 0.0;
    const double sigma = eta_ * std::sqrt(schedule.posterior_variance()[s]);
    const double eps_coef_squared =
        one_minus_ab_prev * (1.0 - eta_ * eta_ * schedule.betas()[s] / one_minus_ab);
    const Real x0_coef = static_cast<Real>(std::sqrt(schedule.alphas_cumprod_prev()[s]));
    const Real eps_coef = static_cast<Real>(std::sqrt(std::max(0.0, eps_coef_squared)));
    const Real noise_coef = static_cast<Real>(sigma);
    const Real guidance_coef = static_cast<Real>(std::sqrt(one_minus_ab));
    const NoiseLevel<Real> level = diffusion_.noise_level(s);
    const bool noisy = s > 0 && sigma > 0.0;
    const Index dim = x_t.cols();
    x_prev.resize(x_t.rows(), dim);
    detail::parallel_for(x_t.rows(), 32 * dim, [&](Index i) {
      Real* out = x_prev.row(i).data();
      if (noisy) {
        rng.normals(stream::sampler_noise, first_sample + static_cast<std::uint32_t>(i),
                    static_cast<std::uint32_t>(t), out, dim);
      }
      for (Index j = 0; j < dim; ++j) {
        Real x0 = reverse_.pred_x0(i, j), eps = reverse_.pred_eps(i, j);
        if (guidance != nullptr) {
          eps -= guidance_coef * (*guidance)(i, j);
          // At ab = 0 (zero terminal SNR) x0^ is not a function of eps^: keep the model's.
          if (level.sqrt_ab > Real(0)) x0 = x0_from_eps(level, x_t(i, j), eps);
        }
        // At the last step eps_coef is 0 and eps may be unidentifiable: x_prev is x0^ exactly.
        const Real eps_term = eps_coef > Real(0) ? eps_coef * eps : Real(0);
        out[j] = x0_coef * x0 + eps_term + (noisy ? noise_coef * out[j] : Real(0));
      }
    });
  }

  /// DDIM inversion (eta = 0 form, whatever this sampler's eta): maps data x_0 (in place) to the
  /// x_T from which denoise() with eta = 0 approximately returns it. Step j moves from the kept
  /// step j-1 (x_0 for j = 0) to step j: x_j = sqrt(ab_j) x0^ + sqrt(1 - ab_j) eps^, with the model
  /// evaluated at the current point and the timestep of step j-1 (step 0's for j = 0, where the
  /// chain starts from clean data).
  template <class M, class OnStep = NoProgress>
  void invert(M& model, Batch<Real>& x, OnStep&& on_step = {}) {
    detail::check_denoiser<M, Real>();
    detail::InferenceMode<M> inference(model);
    const NoiseSchedule& schedule = diffusion_.schedule();
    const int total = schedule.size();
    Batch<Real> model_out;
    Batch<Real> next(x.rows(), x.cols());
    for (int j = 0; j < total; ++j) {
      const int evaluated_at = schedule.timestep(std::max(j - 1, 0));
      timesteps_.assign(static_cast<std::size_t>(x.rows()), evaluated_at);
      model.predict(x, std::span<const int>(timesteps_), model_out);
      detail::check_finite_output(model_out, "inversion " + detail::step_of(j + 1, total),
                                  evaluated_at, 0);
      diffusion_.p_mean_variance(model_out, x, timesteps_, reverse_);
      const Real x0_coef =
          static_cast<Real>(schedule.sqrt_alphas_cumprod()[static_cast<std::size_t>(j)]);
      const Real eps_coef =
          static_cast<Real>(schedule.sqrt_one_minus_alphas_cumprod()[static_cast<std::size_t>(j)]);
      next.noalias() = x0_coef * reverse_.pred_x0 + eps_coef * reverse_.pred_eps;
      x.swap(next);
      on_step(SamplerProgress<Real>{j + 1, total, schedule.timestep(j), x});
    }
  }

 private:
  static double square(double v) noexcept { return v * v; }

  GaussianDiffusion<Real> diffusion_;
  double eta_;
  ReverseStep<Real> reverse_;
  std::vector<int> timesteps_;
};

}  // namespace ddpm
