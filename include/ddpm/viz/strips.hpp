// SPDX-License-Identifier: MIT
// Strips of 2D panels that show the diffusion at work: the forward process on data, and the
// reverse process recorded from a sampler's progress callback, both at the same noise levels.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/types.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/samplers/common.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm::viz {

/// Fractions of T at which strips show the process; most of the visible change happens late in
/// the reverse process (small t), so the levels are denser there.
inline std::vector<double> default_strip_fractions() { return {1.0, 0.5, 0.25, 0.1, 0.05}; }

/// Panels of x_0 and of x_t = q_sample(x_0, t, noise) at t = fraction * T (clamped to T - 1).
template <class Real>
std::vector<io::Panel> forward_strip(
    const GaussianDiffusion<Real>& diffusion, const Batch<Real>& x0, const Batch<Real>& noise,
    io::Frame frame, const std::vector<double>& fractions = default_strip_fractions()) {
  std::vector<io::Panel> panels = {io::make_panel(x0, "", "x_0 (data)", frame)};
  const int T = diffusion.num_timesteps();
  std::vector<double> ascending = fractions;
  std::sort(ascending.begin(), ascending.end());
  Batch<Real> x_t;
  for (const double fraction : ascending) {
    const int t = std::clamp(static_cast<int>(fraction * T), 0, T - 1);
    const std::vector<int> timesteps(static_cast<std::size_t>(x0.rows()),
                                     diffusion.schedule().timestep(t));
    diffusion.q_sample(x0, timesteps, noise, x_t);
    panels.push_back(
        io::make_panel(x_t, "", "t=" + std::to_string(diffusion.schedule().timestep(t)), frame));
  }
  return panels;
}

/// A sampler progress callback that keeps the batch when it first reaches each noise level
/// fraction * T (in original timesteps) and at the end, labelled by the level it is at:
///   ReverseStripRecorder<float> strip(schedule, frame);
///   sampler.sample(model, n, 2, rng, 0, std::ref(strip));
///   io::write_png("reverse.png", io::render_strip(strip.panels()));
template <class Real>
class ReverseStripRecorder {
 public:
  /// For the schedule's own reverse steps (the ancestral and DDIM samplers on `schedule`).
  ReverseStripRecorder(const NoiseSchedule& schedule, io::Frame frame,
                       const std::vector<double>& fractions = default_strip_fractions())
      : ReverseStripRecorder(descending(schedule.timesteps()), schedule.original_size(), frame,
                             fractions) {}

  /// For any sampler: `visited` are the timesteps it evaluates the model at, first to last
  /// (ddpm::sampling_timesteps), of a diffusion of T steps.
  ReverseStripRecorder(std::vector<int> visited, int T, io::Frame frame,
                       const std::vector<double>& fractions = default_strip_fractions())
      : visited_(std::move(visited)), frame_(frame) {
    for (const double fraction : fractions) levels_.push_back(static_cast<int>(fraction * T));
    std::sort(levels_.begin(), levels_.end(), std::greater<>());
  }

  /// Records the batch when it reaches the next level; pass by std::ref to a sampler.
  void operator()(const SamplerProgress<Real>& p) {
    // After `done` steps the batch sits at the next visited level (data after the last).
    const auto done = static_cast<std::size_t>(p.done);
    const int level = done < visited_.size() ? visited_[done] : -1;
    if (level < 0) {
      panels_.push_back(io::make_panel(p.x, "", "x_0 (samples)", frame_));
      return;
    }
    if (next_ < levels_.size() && level <= levels_[next_]) {
      panels_.push_back(io::make_panel(p.x, "", "t=" + std::to_string(level), frame_));
      while (next_ < levels_.size() && levels_[next_] >= level) ++next_;
    }
  }

  /// The recorded panels, from noise to data.
  [[nodiscard]] const std::vector<io::Panel>& panels() const noexcept { return panels_; }

 private:
  static std::vector<int> descending(std::vector<int> ascending) {
    std::reverse(ascending.begin(), ascending.end());
    return ascending;
  }

  std::vector<int> visited_;  // the timestep of each model evaluation, first to last
  io::Frame frame_;
  std::vector<int> levels_;  // descending
  std::size_t next_ = 0;
  std::vector<io::Panel> panels_;
};

}  // namespace ddpm::viz
