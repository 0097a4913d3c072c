// SPDX-License-Identifier: MIT
// RePaint inpainting (Lugmayr et al. 2022) with any denoiser: ancestral steps for the unknown
// values, the forward-noised known values in place of the rest, and resampling jumps that let the
// two agree.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/samplers/ancestral.hpp"
#include "ddpm/samplers/common.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// RePaint's time schedule over a schedule of `steps` steps (get_schedule_jump of the reference
/// code with its defaults): the step indices of the states visited, from steps - 1 (x_T) down to
/// -1 (x_0). A decrease is one reverse step; at each jump point 0, j, 2j, ... < steps - j the path
/// goes back up j steps, resample_count - 1 times, before it descends further. With
/// J = (steps - 1) / j jump points the path has 1 + steps + 2 J (resample_count - 1) j entries.
///
///   repaint_schedule(4, 2, 2) == {3, 2, 1, 0, 1, 2, 1, 0, -1}
[[nodiscard]] inline std::vector<int> repaint_schedule(int steps, int jump_length,
                                                       int resample_count) {
  detail::require(steps >= 1, "steps", steps, "a number of steps >= 1");
  detail::require(jump_length >= 1, "jump_length", jump_length, "a number of steps >= 1");
  detail::require(resample_count >= 1, "resample_count", resample_count,
                  "a number of passes >= 1 (1: no resampling)");
  std::vector<int> jumps_left(static_cast<std::size_t>(steps), 0);
  for (int s = 0; s < steps - jump_length; s += jump_length) {
    jumps_left[static_cast<std::size_t>(s)] = resample_count - 1;
  }
  std::vector<int> path{steps - 1};
  int t = steps - 1;
  while (t >= 1) {
    path.push_back(--t);
    if (jumps_left[static_cast<std::size_t>(t)] > 0) {
      --jumps_left[static_cast<std::size_t>(t)];
      for (int k = 0; k < jump_length; ++k) path.push_back(++t);
    }
  }
  path.push_back(-1);
  return path;
}

/// Inpainting by RePaint over a diffusion's schedule (respace it for fewer steps). Given known
/// values y and a mask m (1 where y is known, 0 where it is to be drawn), each reverse step is
///   x_{t-1} = m (sqrt(ab_{t-1}) y + sqrt(1 - ab_{t-1}) z) + (1 - m) ancestral_step(x_t),
/// with ab_{t-1} the previous kept step's (1 after the last step, so x_0 = y where m = 1); each
/// upward move of the path (repaint_schedule) is the forward step
///   x_{t+1} = sqrt(ab_{t+1} / ab_t) x_t + sqrt(1 - ab_{t+1} / ab_t) z
/// between kept steps. The unknown part is AncestralSampler::step, so variances, clipping and
/// guidance are the diffusion's and the model's. Holds workspaces: one object serves one loop at
/// a time.
///
///   ddpm::RepaintSampler<double> repaint(diffusion, 10, 10);
///   Batch<double> x = repaint.inpaint(model, known, mask, ddpm::CounterRng(7));
template <class Real>
class RepaintSampler {
 public:
  /// jump_length j and resample_count U as in the paper (U = 1: no resampling). Both >= 1.
  explicit RepaintSampler(GaussianDiffusion<Real> diffusion, int jump_length = 10,
                          int resample_count = 10)
      : ancestral_(std::move(diffusion)),
        path_(repaint_schedule(ancestral_.schedule().size(), jump_length, resample_count)),
        jump_length_(jump_length),
        resample_count_(resample_count) {
    const NoiseSchedule& schedule = ancestral_.schedule();
    const auto n = static_cast<std::size_t>(schedule.size());
    known_scale_.resize(n);
    known_noise_.resize(n);
    up_scale_.resize(n);
    up_noise_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      // Noise level of the state a reverse step from i reaches: step i - 1's, none below step 0.
      known_scale_[i] = std::sqrt(schedule.alphas_cumprod_prev()[i]);
      known_noise_[i] = i == 0 ? 0.0 : schedule.sqrt_one_minus_alphas_cumprod()[i - 1];
      // Step i's beta is 1 - ab_i / ab_{i-1} (respaced() keeps alpha-bar at the kept steps).
      up_scale_[i] = std::sqrt(schedule.alphas()[i]);
      up_noise_[i] = std::sqrt(schedule.betas()[i]);
    }
  }

  /// The diffusion it samples from.
  [[nodiscard]] const GaussianDiffusion<Real>& diffusion() const noexcept {
    return ancestral_.diffusion();
  }
  /// The (possibly respaced) schedule it steps along.
  [[nodiscard]] const NoiseSchedule& schedule() const noexcept { return ancestral_.schedule(); }
  /// The jump length j (Lugmayr et al. 2022): how many steps each jump goes back up.
  [[nodiscard]] int jump_length() const noexcept { return jump_length_; }
  /// The resample count r: the path goes back up r - 1 times at each jump point.
  [[nodiscard]] int resample_count() const noexcept { return resample_count_; }

  /// The step indices the loop visits (repaint_schedule of this schedule); the model is called at
  /// schedule().timestep(i) for every i followed by a smaller entry.
  [[nodiscard]] const std::vector<int>& schedule_path() const noexcept { return path_; }

  /// Model calls per inpaint(): steps + J (U - 1) j, J = (steps - 1) / j.
  [[nodiscard]] int network_evaluations() const noexcept {
    const int steps = schedule().size();
    return steps + (steps - 1) / jump_length_ * (resample_count_ - 1) * jump_length_;
  }

  /// Inpaints `known` where `mask` is 0 (entries 0 or 1, known's shape; where the mask is 0 the
  /// known values are ignored, NaN included). Row i of the result is global sample
  /// first_sample + i, so any batch split gives the same rows; known entries come back exactly.
  /// Draws: x_T as sample() does (stream::prior); the known part's noise after path entry p and
  /// the forward step to entry p from (stream::inpaint, sample, p); the ancestral noise of the
  /// v-th visit of a step from AncestralSampler::step with `rng` itself for v = 0 (so with U = 1
  /// and a zero mask this is AncestralSampler::sample, bitwise) and with visit_rng(rng, v) for
  /// revisits, so that no two visits share noise. on_step receives a SamplerProgress after every
  /// reverse step (total: network_evaluations()).
  template <class M, class OnStep = NoProgress>
  Batch<Real> inpaint(M& model, const Batch<Real>& known, const Batch<Real>& mask,
                      const CounterRng& rng, std::uint32_t first_sample = 0,
                      OnStep&& on_step = {}) {
    detail::check_denoiser<M, Real>();
    check_inputs(known, mask);
    detail::InferenceMode<M> inference(model);
    const NoiseSchedule& schedule = ancestral_.schedule();
    Batch<Real> x = detail::prior_sample<Real>(known.rows(), known.cols(), rng, first_sample);
    replace_known(x, known, mask, schedule.size(), rng, first_sample, 0);
    visits_.assign(static_cast<std::size_t>(schedule.size()), 0);
    timesteps_.resize(static_cast<std::size_t>(x.rows()));
    const int total = network_evaluations();
    int done = 0;
    for (std::size_t p = 1; p < path_.size(); ++p) {
      const int from = path_[p - 1], to = path_[p];
      const auto position = static_cast<std::uint32_t>(p);
      if (to > from) {
        forward_step(x, to, rng, first_sample, position);
        continue;
      }
      const int timestep = schedule.timestep(from);
      std::fill(timesteps_.begin(), timesteps_.end(), timestep);
      const std::span<const int> t(timesteps_);
      model.predict(x, t, model_out_);
      detail::check_finite_output(
          model_out_, detail::step_of(static_cast<int>(p), static_cast<int>(path_.size()) - 1),
          timestep, first_sample);
      const Batch<Real>* guidance = nullptr;
      if constexpr (GuidedDenoiser<M, Real>) {
        model.guidance_gradient(x, t, guidance_);
        guidance = &guidance_;
      }
      const int visit = visits_[static_cast<std::size_t>(from)]++;
      const CounterRng noise = visit == 0 ? rng : visit_rng(rng, visit);
      ancestral_.step(model_out_, timestep, x, next_, noise, first_sample, guidance);
      x.swap(next_);
      replace_known(x, known, mask, from, rng, first_sample, position);
      on_step(SamplerProgress<Real>{++done, total, timestep, x});
    }
    return x;
  }

  /// The generator of the v-th revisit (v >= 1) of a step: its key is the 64 bits at
  /// (stream::inpaint, sample 0, step v, block 2^32 - 1) of `rng`, an address no normal draw
  /// reaches (that would take 2^33 values in one row), and a pseudo-random key rather than
  /// seed + v, because Philox keys a round constant apart share round keys.
  [[nodiscard]] static CounterRng visit_rng(const CounterRng& rng, int visit) noexcept {
    const Philox4x32::Counter b =
        rng.bits(stream::inpaint, 0, static_cast<std::uint32_t>(visit), 0xFFFFFFFFu);
    return CounterRng((std::uint64_t{b[0]} << 32) | b[1]);
  }

 private:
  static void check_inputs(const Batch<Real>& known, const Batch<Real>& mask) {
    detail::require_shape(known.rows() >= 1 && known.cols() >= 1, "known", known.rows(),
                          known.cols(), "at least one row (sample) and one column");
    detail::require_shape(mask.rows() == known.rows() && mask.cols() == known.cols(), "mask",
                          mask.rows(), mask.cols(), [&] {
                            return "the shape of known (" + std::to_string(known.rows()) + "x" +
                                   std::to_string(known.cols()) + ")";
                          });
    for (Index i = 0; i < mask.rows(); ++i) {
      for (Index j = 0; j < mask.cols(); ++j) {
        const Real m = mask(i, j);
        if (m != Real(0) && m != Real(1)) {
          detail::require(false, "mask", m, [&] {
            return "entries 0 (draw) or 1 (known); entry (" + std::to_string(i) + ", " +
                   std::to_string(j) + ") is not";
          });
        }
      }
    }
  }

  // Known entries of x become y noised to the level a reverse step from step `from` reaches
  // (from = size(): x_T's own level, for the starting batch).
  void replace_known(Batch<Real>& x, const Batch<Real>& known, const Batch<Real>& mask, int from,
                     const CounterRng& rng, std::uint32_t first_sample, std::uint32_t position) {
    const NoiseSchedule& schedule = ancestral_.schedule();
    const auto last = static_cast<std::size_t>(schedule.size() - 1);
    const auto f = static_cast<std::size_t>(from);
    const bool start = from == schedule.size();
    const double scale = start ? schedule.sqrt_alphas_cumprod()[last] : known_scale_[f];
    const double sd = start ? schedule.sqrt_one_minus_alphas_cumprod()[last] : known_noise_[f];
    noise_.setZero(x.rows(), x.cols());
    if (sd > 0.0) rng.fill_normal(noise_, stream::inpaint, first_sample, position);
    detail::parallel_for(x.rows(), 4 * x.cols(), [&](Index i) {
      for (Index j = 0; j < x.cols(); ++j) {
        if (mask(i, j) != Real(0)) {
          x(i, j) = static_cast<Real>(scale * static_cast<double>(known(i, j)) +
                                      sd * static_cast<double>(noise_(i, j)));
        }
      }
    });
  }

  // x (at step to - 1) forward one kept step to step `to`, noise from path position `position`.
  void forward_step(Batch<Real>& x, int to, const CounterRng& rng, std::uint32_t first_sample,
                    std::uint32_t position) {
    const auto s = static_cast<std::size_t>(to);
    const Real scale = static_cast<Real>(up_scale_[s]), sd = static_cast<Real>(up_noise_[s]);
    next_.resize(x.rows(), x.cols());
    rng.fill_normal(next_, stream::inpaint, first_sample, position);
    x = scale * x + sd * next_;
  }

  AncestralSampler<Real> ancestral_;
  std::vector<int> path_;
  int jump_length_, resample_count_;
  // Per step index: the known part's coefficients after a reverse step from it, and the forward
  // step's coefficients into it.
  std::vector<double> known_scale_, known_noise_, up_scale_, up_noise_;
  std::vector<int> visits_, timesteps_;
  Batch<Real> model_out_, next_, guidance_, noise_;
};

}  // namespace ddpm
