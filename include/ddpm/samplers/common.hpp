// SPDX-License-Identifier: MIT
// What the samplers share: the progress record and the loop from x_T to x_0 over a schedule.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <span>
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

/// A progress callback that does nothing.
struct NoProgress {
  template <class P>
  void operator()(const P&) const noexcept {}
};

namespace detail {

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

namespace detail {

/// Switches a model that has set_training()/training() to inference for a scope, then back.
template <class M>
class InferenceMode {
 public:
  explicit InferenceMode(M& model) : model_(model) {
    if constexpr (kHasSwitch) {
      was_training_ = model_.training();
      model_.set_training(false);
    }
  }
  ~InferenceMode() {
    if constexpr (kHasSwitch) model_.set_training(was_training_);
  }
  InferenceMode(const InferenceMode&) = delete;
  InferenceMode& operator=(const InferenceMode&) = delete;

 private:
  static constexpr bool kHasSwitch = requires(M & m) {
    { m.training() } -> std::convertible_to<bool>;
    m.set_training(false);
  };
  M& model_;
  bool was_training_ = false;
};

}  // namespace detail

/// The whole reverse loop shared by the samplers: Derived provides
/// `step(model_out, t, x_t, x_prev, rng, first_sample)` and `schedule()`.
template <class Derived, class Real>
class ReverseLoop {
 public:
  /// Draws n samples of dimension dim: x_T from the prior, then every step of the schedule.
  /// Sample i of the result is global sample first_sample + i, so sampling a batch whole or in
  /// parts gives identical rows. on_step receives a SamplerProgress after each step.
  template <class M, class OnStep = NoProgress>
  Batch<Real> sample(M& model, Index n, Index dim, const CounterRng& rng,
                     std::uint32_t first_sample = 0, OnStep&& on_step = {}) {
    Batch<Real> x = detail::prior_sample<Real>(n, dim, rng, first_sample);
    denoise(model, x, rng, first_sample, on_step);
    return x;
  }

  /// Runs the reverse process from a given x_T (in place) to x_0, calling the model with the
  /// original timesteps of the schedule.
  template <class M, class OnStep = NoProgress>
  void denoise(M& model, Batch<Real>& x, const CounterRng& rng, std::uint32_t first_sample = 0,
               OnStep&& on_step = {}) {
    detail::check_denoiser<M, Real>();
    // A model with a training switch (like nn::Mlp) keeps no activations while sampling.
    detail::InferenceMode<M> inference(model);
    Derived& sampler = static_cast<Derived&>(*this);
    const NoiseSchedule& schedule = sampler.schedule();
    loop_timesteps_.resize(static_cast<std::size_t>(x.rows()));
    loop_next_.resize(x.rows(), x.cols());
    const int total = schedule.size();
    for (int s = total - 1; s >= 0; --s) {
      const int timestep = schedule.timestep(s);
      std::fill(loop_timesteps_.begin(), loop_timesteps_.end(), timestep);
      model.predict(x, std::span<const int>(loop_timesteps_), loop_model_out_);
      sampler.step(loop_model_out_, timestep, x, loop_next_, rng, first_sample);
      x.swap(loop_next_);
      on_step(SamplerProgress<Real>{total - s, total, timestep, x});
    }
  }

 private:
  // Reused across calls, so repeated sampling of the same size allocates nothing.
  std::vector<int> loop_timesteps_;
  Batch<Real> loop_model_out_, loop_next_;
};

}  // namespace ddpm
