// SPDX-License-Identifier: MIT
// Exponential moving average of model weights, with an optional decay warm-up and a way to swap
// the averaged weights into the model for sampling and back.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/optim/parameter_view.hpp"

namespace ddpm::optim {

/// Options of an Ema.
struct EmaOptions {
  double decay = 0.999;  ///< in [0, 1]; 1 freezes the average, 0 copies the weights
  /// Use min(decay, (1 + n) / (10 + n)) with n = updates already applied (0 for the first), as in
  /// TensorFlow's ExponentialMovingAverage(num_updates), so early averages are not dominated by
  /// the random initialization.
  bool warmup = false;
};

/// shadow = d shadow + (1 - d) params after every optimizer step (Ho et al. 2020 sample with
/// these averaged weights). The shadow starts as a copy of the parameters.
/// \code
///   optim::Ema<float> ema(model.parameter_values(), {.decay = 0.999});
///   // after each adam.step(...):
///   ema.update(model.parameter_values());
///   {
///     auto averaged = ema.swapped_in(model.parameter_values());   // model now holds the EMA
///     sampler.sample(model, ...);
///   }                                                             // training weights are back
/// \endcode
template <class Real>
class Ema {
 public:
  /// Starts the average at `params` (flat).
  Ema(std::span<const Real> params, const EmaOptions& options = {})
      : options_(options), shadow_(params.begin(), params.end()) {
    validate(options);
  }

  /// Starts the average at the blocks' values, concatenated in order.
  explicit Ema(std::span<const ParameterBlock<Real>> blocks, const EmaOptions& options = {})
      : options_(options) {
    validate(options);
    for (const ParameterBlock<Real>& block : blocks) {
      shadow_.insert(shadow_.end(), block.value.begin(), block.value.end());
    }
  }

  /// The decay the next update() uses.
  [[nodiscard]] double current_decay() const noexcept {
    if (!options_.warmup) return options_.decay;
    const double n = static_cast<double>(updates_);
    return std::min(options_.decay, (1.0 + n) / (10.0 + n));
  }

  /// shadow = d shadow + (1 - d) params, d = current_decay().
  void update(std::span<const Real> params) {
    check_size(params.size());
    blend(0, params);
    ++updates_;
  }

  /// update() over every block's values (the blocks form one flat vector, in order).
  void update(std::span<const ParameterBlock<Real>> blocks) {
    check_size(static_cast<std::size_t>(detail::checked_total_size(blocks)));
    detail::for_each_span(blocks, [&](Index offset, std::span<Real> values, std::span<Real>) {
      blend(offset, values);
    });
    ++updates_;
  }

  /// Exchanges the contents of params and the shadow; calling it again restores both.
  void swap(std::span<Real> params) {
    check_size(params.size());
    std::swap_ranges(params.begin(), params.end(), shadow_.begin());
  }
  /// \overload
  void swap(std::span<const ParameterBlock<Real>> blocks) {
    check_size(static_cast<std::size_t>(detail::checked_total_size(blocks)));
    detail::for_each_span(blocks, [&](Index offset, std::span<Real> values, std::span<Real>) {
      std::swap_ranges(values.begin(), values.end(), shadow_.begin() + offset);
    });
  }

  /// Overwrites params with the shadow (e.g. to export the averaged model).
  void copy_to(std::span<Real> params) const {
    check_size(params.size());
    std::copy(shadow_.begin(), shadow_.end(), params.begin());
  }

  /// Swaps the averaged weights into `params` until the returned guard is destroyed.
  class ScopedSwap {
   public:
    /// Swaps the averaged weights in; the destructor swaps them back.
    ScopedSwap(Ema& ema, std::span<Real> params) : ema_(ema), params_(params) {
      ema_.swap(params_);
    }
    ScopedSwap(const ScopedSwap&) = delete;
    ScopedSwap& operator=(const ScopedSwap&) = delete;
    ~ScopedSwap() { std::swap_ranges(params_.begin(), params_.end(), ema_.shadow_.begin()); }

   private:
    Ema& ema_;
    std::span<Real> params_;
  };
  /// The guard of ScopedSwap over `params`.
  [[nodiscard]] ScopedSwap swapped_in(std::span<Real> params) { return ScopedSwap(*this, params); }

  /// The options it was built with.
  [[nodiscard]] const EmaOptions& options() const noexcept { return options_; }
  /// The averaged weights, flat, in parameter order.
  [[nodiscard]] std::span<const Real> shadow() const noexcept { return shadow_; }
  /// Updates applied so far (the n of the warm-up).
  [[nodiscard]] std::int64_t num_updates() const noexcept { return updates_; }

  /// Restores a state read from shadow() and num_updates(); the size must match.
  void set_state(std::int64_t num_updates, std::span<const Real> shadow) {
    ddpm::detail::require(num_updates >= 0, "num_updates", num_updates, ">= 0");
    check_size(shadow.size());
    std::copy(shadow.begin(), shadow.end(), shadow_.begin());
    updates_ = num_updates;
  }

 private:
  static void validate(const EmaOptions& o) {
    ddpm::detail::require(o.decay >= 0.0 && o.decay <= 1.0, "decay", o.decay, "[0, 1]");
  }

  void check_size(std::size_t size) const {
    ddpm::detail::require(size == shadow_.size(), "parameter count", size, [&] {
      return ddpm::detail::to_text(shadow_.size()) + ", the size of the EMA";
    });
  }

  void blend(Index offset, std::span<const Real> params) {
    using Array = Eigen::Array<Real, Eigen::Dynamic, 1>;
    const double d = current_decay();
    const Real keep = static_cast<Real>(d);
    const Real take = static_cast<Real>(1.0 - d);
    Real* shadow = shadow_.data() + offset;
    detail::for_each_chunk(static_cast<Index>(params.size()), [&](Index begin, Index end) {
      Eigen::Map<Array> s(shadow + begin, end - begin);
      const Eigen::Map<const Array> p(params.data() + begin, end - begin);
      s = keep * s + take * p;
    });
  }

  EmaOptions options_;
  std::vector<Real> shadow_;
  std::int64_t updates_ = 0;
};

}  // namespace ddpm::optim
