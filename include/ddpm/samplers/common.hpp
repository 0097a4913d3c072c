// SPDX-License-Identifier: MIT
// What the samplers share: the progress record and the loop from x_T to x_0 over a schedule.
#pragma once

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
  int done;             ///< steps completed
  int total;            ///< steps in the whole loop
  int t;                ///< original timestep just processed
  const Batch<Real>& x; ///< the batch after this step (x_{t-1}; x_0 after the last)
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

/// Runs sampler.step over the schedule from the last step to the first, starting from x (= x_T),
/// which ends as x_0. The model is called with the original timesteps.
template <class Real, class Sampler, class M, class OnStep>
void reverse_loop(Sampler& sampler, const NoiseSchedule& schedule, M& model, Batch<Real>& x,
                  const CounterRng& rng, std::uint32_t first_sample, OnStep&& on_step) {
  check_denoiser<M, Real>();
  std::vector<int> t(static_cast<std::size_t>(x.rows()));
  Batch<Real> model_out, next(x.rows(), x.cols());
  const int total = schedule.size();
  for (int s = total - 1; s >= 0; --s) {
    const int timestep = schedule.timestep(s);
    std::fill(t.begin(), t.end(), timestep);
    model.predict(x, std::span<const int>(t), model_out);
    sampler.step(model_out, timestep, x, next, rng, first_sample);
    x.swap(next);
    on_step(SamplerProgress<Real>{total - s, total, timestep, x});
  }
}

}  // namespace detail
}  // namespace ddpm
