// SPDX-License-Identifier: MIT
// Noise-level grids: the levels a sampler steps through, from the first (noisiest) to the clean
// end, each mapped once to the timestep the model is fed (REFERENCE.md, "Beyond the seed").
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// How the levels of a sampling grid are chosen. The first five pick timesteps of the schedule
/// (every level is one of the model's training levels); karras and exponential pick continuous
/// noise levels between s_{T-1} and s_0.
enum class GridKind {
  evenly,       ///< round(linspace(0, T-1, n)) rounding halves away from 0 (improved DDPM)
  ddim,         ///< 0, k, 2k, ... with the smallest stride k giving n steps (DDIM's "uniform")
  leading,      ///< i floor(T/n), i = 0..n-1 (diffusers "leading", steps_offset 0)
  linspace,     ///< round(linspace(0, T-1, n)) rounding halves to even (diffusers "linspace")
  trailing,     ///< round(T - i T/n) - 1 (diffusers "trailing": always includes T-1)
  karras,       ///< Karras et al. 2022: s_i^(1/rho) evenly spaced from s_max to s_min
  exponential,  ///< log s evenly spaced (the same as log-SNR uniform)
};

/// The names of the GridKind values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<GridKind> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "grid";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<GridKind>, 7> names = {{
      {GridKind::evenly, "evenly"},
      {GridKind::ddim, "ddim"},
      {GridKind::leading, "leading"},
      {GridKind::linspace, "linspace"},
      {GridKind::trailing, "trailing"},
      {GridKind::karras, "karras"},
      {GridKind::exponential, "exponential"},
  }};
};

/// One level of a grid. x at this level is alpha x_0 + sigma eps (VP form), x / alpha = x_0 + s eps
/// (EDM form), lambda = log(alpha / sigma) = -log s.
struct GridLevel {
  double s = 0;             ///< EDM noise level; 0 at the clean end, +inf where ab = 0
  double alpha = 1;         ///< sqrt(ab)
  double sigma = 0;         ///< sqrt(1 - ab)
  double timestep = 0;      ///< what the model is fed (integral on a schedule's own steps)
  bool on_schedule = true;  ///< timestep is one of the schedule's steps
  NoiseLevel<double> conversion{1, 0, 1, 0};  ///< the x0/eps conversion coefficients here

  /// lambda = log(alpha / sigma) = -log s (+inf at the clean end).
  [[nodiscard]] double lambda() const { return -std::log(s); }
  /// True at the clean end (s = 0), where x is x_0.
  [[nodiscard]] bool clean() const noexcept { return s == 0.0; }
};

/// The levels a sampler visits: levels()[0] is where x_T = z starts, then every level the model
/// is evaluated at, then the clean end (s = 0). steps() levels carry a model evaluation.
class NoiseGrid {
 public:
  /// The grid of `kind` with `steps` model levels over a schedule that is not respaced. rho is the
  /// Karras exponent. Throws InvalidArgument for steps outside 1..T (1..10^6 for karras and
  /// exponential) or rho <= 0.
  static NoiseGrid make(const NoiseSchedule& schedule, GridKind kind, int steps, double rho = 7.0) {
    const int T = schedule.size();
    detail::require(!schedule.is_respaced(), "schedule", "a respaced schedule",
                    "the full schedule (grids pick their own steps)");
    // Continuous grids may be finer than the schedule (reference solutions of the ODE).
    const int most = kind == GridKind::karras || kind == GridKind::exponential ? 1000000 : T;
    detail::require(steps >= 1 && steps <= most, "steps", steps,
                    "a number of sampling steps in 1.." + std::to_string(most));
    detail::require(rho > 0.0 && std::isfinite(rho), "rho", rho, "a finite exponent > 0");
    NoiseGrid grid;
    grid.kind_ = kind;
    if (kind == GridKind::karras || kind == GridKind::exponential) {
      // A zero-terminal-SNR schedule has s_{T-1} = inf, and its model knows nothing between
      // s_{T-2} and inf: the first level is T-1 itself (a VP step from s = inf), the others span
      // s_{T-2}..s_0. (diffusers' alternative, s_max at ab = 2^-24 fed as t = T-1, evaluates the
      // model at s = inf for levels it treats as finite: the exact denoiser shows the error.)
      const bool zero_terminal = !std::isfinite(schedule.level(T - 1));
      if (zero_terminal) grid.levels_.push_back(schedule_level(schedule, T - 1));
      const int count = zero_terminal ? steps - 1 : steps;
      const double s_min = schedule.level(0);
      const double s_max = schedule.level(zero_terminal ? T - 2 : T - 1);
      for (int i = 0; i < count; ++i) {
        const double u = count == 1 ? 0.0 : static_cast<double>(i) / (count - 1);
        double s = 0;
        if (kind == GridKind::karras) {
          const double a = std::pow(s_max, 1.0 / rho), b = std::pow(s_min, 1.0 / rho);
          s = std::pow(a + u * (b - a), rho);
        } else {
          s = std::exp(std::log(s_max) + u * (std::log(s_min) - std::log(s_max)));
        }
        // The ends are the schedule's own levels exactly (pow/exp round them).
        if (i == 0) s = s_max;
        if (i == count - 1 && count > 1) s = s_min;
        grid.levels_.push_back(continuous_level(schedule, s));
      }
    } else {
      const std::vector<int> kept = table_timesteps(T, kind, steps);
      for (auto it = kept.rbegin(); it != kept.rend(); ++it)
        grid.levels_.push_back(schedule_level(schedule, *it));
    }
    grid.levels_.push_back(GridLevel{});
    return grid;
  }

  /// A grid of explicit noise levels (decreasing, each in [s_0, s_{T-1}] of the schedule), as
  /// diffusers' `sigmas=`: each is fed to the model as timestep_at_level(s); the clean end is
  /// appended.
  static NoiseGrid from_levels(const NoiseSchedule& schedule, const std::vector<double>& levels) {
    detail::require(!schedule.is_respaced(), "schedule", "a respaced schedule",
                    "the full schedule (grids pick their own steps)");
    detail::require(!levels.empty(), "levels", "an empty list", "at least one noise level");
    NoiseGrid grid;
    grid.kind_ = GridKind::karras;
    for (std::size_t i = 0; i < levels.size(); ++i) {
      detail::require(levels[i] > 0.0 && (i == 0 || levels[i] < levels[i - 1]),
                      "levels[" + std::to_string(i) + "]", levels[i],
                      "a level > 0 below the one before (a decreasing list)");
      grid.levels_.push_back(continuous_level(schedule, levels[i]));
    }
    grid.levels_.push_back(GridLevel{});
    return grid;
  }

  /// The kept timesteps (increasing) of a grid over the schedule's own steps.
  static std::vector<int> table_timesteps(int T, GridKind kind, int steps) {
    detail::require(steps >= 1 && steps <= T, "steps", steps,
                    "a number of sampling steps in 1.." + std::to_string(T));
    std::vector<int> kept;
    switch (kind) {
      case GridKind::evenly:
        return space_timesteps(T, "evenly " + std::to_string(steps));
      case GridKind::ddim:
        return space_timesteps(T, "ddim" + std::to_string(steps));
      case GridKind::leading:
        for (int i = 0; i < steps; ++i) kept.push_back(i * (T / steps));
        return kept;
      case GridKind::linspace:
        // numpy: linspace(0, T-1, n) = i * step with the last entry exactly T-1, then round
        // half to even (nearbyint in the default rounding mode).
        for (int i = 0; i < steps; ++i) {
          const double value =
              i == steps - 1 ? T - 1 : i * (static_cast<double>(T - 1) / std::max(steps - 1, 1));
          kept.push_back(static_cast<int>(std::nearbyint(value)));
        }
        return kept;
      case GridKind::trailing:
        for (int i = steps - 1; i >= 0; --i) {
          const double value = T + i * -(static_cast<double>(T) / steps);
          kept.push_back(static_cast<int>(std::nearbyint(value)) - 1);
        }
        return kept;
      case GridKind::karras:
      case GridKind::exponential:
        break;
    }
    throw InvalidArgument("grid", std::string(to_string(kind)),
                          "a grid over the schedule's own steps (evenly, ddim, leading, linspace, "
                          "trailing) for samplers that step between training timesteps");
  }

  /// How the levels were chosen.
  [[nodiscard]] GridKind kind() const noexcept { return kind_; }
  /// Number of levels with a model evaluation (all but the clean end).
  [[nodiscard]] int steps() const noexcept { return static_cast<int>(levels_.size()) - 1; }
  /// Level i, 0 <= i <= steps(); level steps() is the clean end.
  [[nodiscard]] const GridLevel& level(int i) const {
    return levels_.at(static_cast<std::size_t>(i));
  }
  /// Every level, from the noisiest to the clean end.
  [[nodiscard]] const std::vector<GridLevel>& levels() const noexcept { return levels_; }
  /// Whether every level is one of the schedule's steps.
  [[nodiscard]] bool on_schedule() const noexcept {
    return kind_ != GridKind::karras && kind_ != GridKind::exponential;
  }

  /// A level at any s > 0 (or s = 0, the clean end), fed to the model as timestep_at_level(s).
  static GridLevel continuous_level(const NoiseSchedule& schedule, double s) {
    if (s == 0.0) return GridLevel{};
    GridLevel level;
    level.s = s;
    level.alpha = 1.0 / std::sqrt(1.0 + s * s);
    level.sigma = s * level.alpha;
    level.timestep = schedule.timestep_at_level(s);
    level.on_schedule = false;
    level.conversion = {level.alpha, level.sigma, std::sqrt(1.0 + s * s), s};
    return level;
  }

  /// The level of the schedule's step with original timestep t, with the schedule's own
  /// accurately computed coefficients.
  static GridLevel schedule_level(const NoiseSchedule& schedule, int t) {
    const int i = schedule.index_of(t);
    const auto k = static_cast<std::size_t>(i);
    GridLevel level;
    level.s = schedule.level(i);
    level.alpha = schedule.sqrt_alphas_cumprod()[k];
    level.sigma = schedule.sqrt_one_minus_alphas_cumprod()[k];
    level.timestep = t;
    level.on_schedule = true;
    level.conversion = {level.alpha, level.sigma, schedule.sqrt_recip_alphas_cumprod()[k],
                        schedule.sqrt_recipm1_alphas_cumprod()[k]};
    return level;
  }

 private:
  GridKind kind_ = GridKind::evenly;
  std::vector<GridLevel> levels_;
};

}  // namespace ddpm
