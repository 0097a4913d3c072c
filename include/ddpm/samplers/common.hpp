// SPDX-License-Identifier: MIT
// What the samplers share: the progress record and the loop from x_T to x_0 over a schedule.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// Passed to a sampler's progress callback after every step.
template <class Real>
struct SamplerProgress {
  int done;              ///< steps completed
  int total;             ///< steps in the whole loop
  int t;                 ///< original timestep just processed
  const Batch<Real>& x;  ///< the batch after this step (x_{t-1}; x_0 after the last)
};

/// A progress callback that does nothing (whatever it is passed).
struct NoProgress {
  /// Ignores its arguments.
  template <class... P>
  void operator()(const P&...) const noexcept {}
};

namespace detail {

/// Throws NonFiniteError when the network output `out` has a NaN or infinity, naming where: `when`
/// (e.g. "step 3 of 50"), the timestep, and the first bad sample (global index: first_sample +
/// row) and value. One vectorized pass, so every sampler keeps it on: a diverged model then stops
/// at the step that produced it instead of returning a batch of NaNs.
template <class Real>
void check_finite_output(const Batch<Real>& out, const std::string& when, double timestep,
                         std::uint32_t first_sample) {
  if (out.allFinite()) [[likely]] {
    return;
  }
  for (Index i = 0; i < out.rows(); ++i) {
    for (Index j = 0; j < out.cols(); ++j) {
      if (!std::isfinite(out(i, j))) {
        throw NonFiniteError("ddpm: sampling stopped at " + when + " (timestep " +
                             to_text(timestep) + "): the network output is " + to_text(out(i, j)) +
                             " at sample " + std::to_string(static_cast<Index>(first_sample) + i) +
                             ", output " + std::to_string(j) +
                             " (a diverged or untrained model, or bad input?)");
      }
    }
  }
}

/// "step k of n", for check_finite_output.
inline std::string step_of(int done, int total) {
  return "step " + std::to_string(done) + " of " + std::to_string(total);
}

/// Draws the starting batch x_T ~ N(0, I): rows are samples first_sample, first_sample + 1, ...
template <class Real>
Batch<Real> prior_sample(Index n, Index dim, const CounterRng& rng, std::uint32_t first_sample) {
  require(n >= 1, "n", n, "a number of samples >= 1");
  require(dim >= 1, "dim", dim, "a data dimension >= 1");
  Batch<Real> x(n, dim);
  rng.fill_normal(x, stream::prior, first_sample, 0);
  return x;
}

}  // namespace detail

/// sample() for a sampler whose Derived::denoise(model, x, rng, first_sample, on_step) runs the
/// reverse process from a given x_T: x_T is drawn from the prior, row i as global sample
/// first_sample + i, so sampling a batch whole or in parts gives identical rows.
template <class Derived, class Real>
class SamplesFromPrior {
 public:
  /// Draws n samples of dimension dim: x_T from the prior, then the whole reverse process.
  /// on_step receives a SamplerProgress after each step.
  template <class M, class OnStep = NoProgress>
  Batch<Real> sample(M& model, Index n, Index dim, const CounterRng& rng,
                     std::uint32_t first_sample = 0, OnStep&& on_step = {}) {
    Batch<Real> x = detail::prior_sample<Real>(n, dim, rng, first_sample);
    static_cast<Derived&>(*this).denoise(model, x, rng, first_sample, on_step);
    return x;
  }
};

/// The whole reverse loop shared by the samplers: Derived provides `schedule()` and
/// `step(model_out, t, x_t, x_prev, rng, first_sample, guidance)`, where `guidance` (nullptr when
/// none) is a GuidedDenoiser's gradient at (x_t, t) for the step to apply in its own form.
template <class Derived, class Real>
class ReverseLoop : public SamplesFromPrior<Derived, Real> {
 public:
  /// Runs the reverse process from a given x_T (in place) to x_0, calling the model with the
  /// original timesteps of the schedule, in inference mode.
  template <class M, class OnStep = NoProgress>
  void denoise(M& model, Batch<Real>& x, const CounterRng& rng, std::uint32_t first_sample = 0,
               OnStep&& on_step = {}) {
    detail::check_denoiser<M, Real>();
    detail::InferenceMode<M> inference(model);
    Derived& sampler = static_cast<Derived&>(*this);
    const NoiseSchedule& schedule = sampler.schedule();
    loop_timesteps_.resize(static_cast<std::size_t>(x.rows()));
    loop_next_.resize(x.rows(), x.cols());
    const int total = schedule.size();
    for (int s = total - 1; s >= 0; --s) {
      const int timestep = schedule.timestep(s);
      std::fill(loop_timesteps_.begin(), loop_timesteps_.end(), timestep);
      const std::span<const int> t(loop_timesteps_);
      model.predict(x, t, loop_model_out_);
      detail::check_finite_output(loop_model_out_, detail::step_of(total - s, total), timestep,
                                  first_sample);
      const Batch<Real>* guidance = nullptr;
      if constexpr (GuidedDenoiser<M, Real>) {
        model.guidance_gradient(x, t, loop_guidance_);
        guidance = &loop_guidance_;
      }
      sampler.step(loop_model_out_, timestep, x, loop_next_, rng, first_sample, guidance);
      x.swap(loop_next_);
      on_step(SamplerProgress<Real>{total - s, total, timestep, x});
    }
  }

 private:
  // Reused across calls, so repeated sampling of the same size allocates nothing.
  std::vector<int> loop_timesteps_;
  Batch<Real> loop_model_out_, loop_next_, loop_guidance_;
};

namespace detail {

/// Throws unless a guidance gradient has x_t's shape.
template <class Real>
void check_guidance(const Batch<Real>* guidance, const Batch<Real>& x_t) {
  if (guidance != nullptr) {
    require_shape(guidance->rows() == x_t.rows() && guidance->cols() == x_t.cols(),
                  "guidance gradient", guidance->rows(), guidance->cols(),
                  "the shape of x_t (one gradient row per sample)");
  }
}

}  // namespace detail

}  // namespace ddpm
