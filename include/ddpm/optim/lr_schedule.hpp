// SPDX-License-Identifier: MIT
// Learning-rate schedules: linear warm-up, then a constant rate or a cosine or linear decay to a
// floor.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <string_view>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"

namespace ddpm::optim {

/// What the rate does after the warm-up.
enum class LrDecay {
  constant,  ///< stays at base_lr
  cosine,    ///< final + (base - final) (1 + cos(pi p)) / 2, p = progress in [0, 1]
  linear,    ///< base + (final - base) p
};

}  // namespace ddpm::optim

namespace ddpm {
/// The names of the LrDecay values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<optim::LrDecay> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "decay";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<optim::LrDecay>, 3> names = {
      {{optim::LrDecay::constant, "constant"},
       {optim::LrDecay::cosine, "cosine"},
       {optim::LrDecay::linear, "linear"}}};
};
}  // namespace ddpm

namespace ddpm::optim {

/// Options of an LrSchedule.
struct LrScheduleOptions {
  double base_lr = 1e-3;          ///< > 0: the rate after warm-up
  std::int64_t warmup_steps = 0;  ///< >= 0
  LrDecay decay =
      LrDecay::constant;         ///< after warm-up: constant, or cosine or linear down to final_lr
  std::int64_t total_steps = 0;  ///< end of the decay (> warmup_steps unless constant)
  double final_lr = 0.0;         ///< the floor, in [0, base_lr]; kept after total_steps
};

/// The learning rate for update number `step` (0-based, i.e. the optimizer's step_count() before
/// the update):
///   step <  warmup:          base * (step + 1) / warmup   (the first update is not at rate 0)
///   warmup <= step < total:  decay with p = (step - warmup) / (total - warmup)
///   step >= total:           final (for cosine and linear)
/// \code
///   optim::LrSchedule schedule({.base_lr = 1e-3, .warmup_steps = 100,
///                               .decay = optim::LrDecay::cosine, .total_steps = 10000,
///                               .final_lr = 1e-5});
///   adam.set_learning_rate(schedule(adam.step_count()));
///   adam.step(model.parameters());
/// \endcode
class LrSchedule {
 public:
  /// Throws InvalidArgument for an option out of range.
  explicit LrSchedule(const LrScheduleOptions& options) : options_(options) {
    const LrScheduleOptions& o = options;
    ddpm::detail::require(o.base_lr > 0.0 && std::isfinite(o.base_lr), "base_lr", o.base_lr,
                          "a finite value > 0");
    ddpm::detail::require(o.warmup_steps >= 0, "warmup_steps", o.warmup_steps, ">= 0");
    if (o.decay != LrDecay::constant) {
      ddpm::detail::require(o.total_steps > o.warmup_steps, "total_steps", o.total_steps,
                            "> warmup_steps = " + ddpm::detail::to_text(o.warmup_steps));
      ddpm::detail::require(o.final_lr >= 0.0 && o.final_lr <= o.base_lr, "final_lr", o.final_lr,
                            "[0, base_lr = " + ddpm::detail::to_text(o.base_lr) + "]");
    }
  }

  /// The options it was built with.
  [[nodiscard]] const LrScheduleOptions& options() const noexcept { return options_; }

  /// The rate for update number `step` (>= 0).
  [[nodiscard]] double operator()(std::int64_t step) const {
    ddpm::detail::require(step >= 0, "step", step, ">= 0");
    const LrScheduleOptions& o = options_;
    if (step < o.warmup_steps) {
      return o.base_lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
    }
    if (o.decay == LrDecay::constant) return o.base_lr;
    const double progress = std::min(1.0, static_cast<double>(step - o.warmup_steps) /
                                              static_cast<double>(o.total_steps - o.warmup_steps));
    if (o.decay == LrDecay::cosine) {
      return o.final_lr +
             (o.base_lr - o.final_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
    return o.base_lr + (o.final_lr - o.base_lr) * progress;
  }

 private:
  LrScheduleOptions options_;
};

}  // namespace ddpm::optim
