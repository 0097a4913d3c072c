// SPDX-License-Identifier: MIT
// Drawing training timesteps: uniform, or the loss-second-moment importance sampler of
// Nichol & Dhariwal 2021 (sec. 3.3) with the weights that keep the loss unbiased.
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
#include "ddpm/core/rng.hpp"

namespace ddpm {

namespace detail {

/// Draws index i with probability p_i by inverting the cumulative distribution.
inline int draw_from_cdf(const std::vector<double>& cdf, double u) {
  const auto it = std::upper_bound(cdf.begin(), cdf.end(), u * cdf.back());
  return static_cast<int>(
      std::min<std::ptrdiff_t>(it - cdf.begin(), static_cast<std::ptrdiff_t>(cdf.size()) - 1));
}

}  // namespace detail

/// Timesteps uniform over 0..T-1, each with weight 1.
class UniformTimestepSampler {
 public:
  /// Throws InvalidArgument unless num_timesteps >= 1.
  explicit UniformTimestepSampler(int num_timesteps) : num_timesteps_(num_timesteps) {
    detail::require(num_timesteps >= 1, "num_timesteps", num_timesteps, "an integer >= 1");
  }

  /// Fills t[i] for global sample first_sample + i of training step `step`, and weights[i] = 1.
  template <class Real>
  void sample(const CounterRng& rng, std::uint32_t step, std::uint32_t first_sample,
              std::span<int> t, std::span<Real> weights) const {
    detail::require(weights.size() == t.size(), "weights.size()", weights.size(),
                    [&] { return "the size of t (" + std::to_string(t.size()) + ")"; });
    for (std::size_t i = 0; i < t.size(); ++i) {
      t[i] = static_cast<int>(rng.uniform_int(stream::timesteps,
                                              first_sample + static_cast<std::uint32_t>(i), step,
                                              static_cast<std::uint64_t>(num_timesteps_)));
      weights[i] = Real(1);
    }
  }

  /// Uniform sampling learns nothing from losses.
  template <class Real>
  void update(std::span<const int>, std::span<const Real>) noexcept {}

  /// T, the number of timesteps drawn from.
  [[nodiscard]] int num_timesteps() const noexcept { return num_timesteps_; }

 private:
  int num_timesteps_;
};

/// Importance sampling of t by the second moment of its loss: once every t has `history` recorded
/// losses, p_t is proportional to sqrt(mean(L_t^2)), mixed with uniform (p = w (1 - u) + u / T,
/// u = uniform_fraction), and each draw is weighted by 1 / (T p_t) so the expected loss is
/// unchanged. Before that it samples uniformly with weight 1.
class LossSecondMomentSampler {
 public:
  /// Throws InvalidArgument unless num_timesteps >= 1, history >= 1 and uniform_fraction is in (0,
  /// 1].
  explicit LossSecondMomentSampler(int num_timesteps, int history = 10,
                                   double uniform_fraction = 0.001)
      : num_timesteps_(num_timesteps), history_(history), uniform_fraction_(uniform_fraction) {
    detail::require(num_timesteps >= 1, "num_timesteps", num_timesteps, "an integer >= 1");
    detail::require(history >= 1, "history", history, "an integer >= 1");
    detail::require(uniform_fraction > 0.0 && uniform_fraction <= 1.0, "uniform_fraction",
                    uniform_fraction, "a value in (0, 1]");
    losses_.assign(static_cast<std::size_t>(num_timesteps) * static_cast<std::size_t>(history),
                   0.0);
    counts_.assign(static_cast<std::size_t>(num_timesteps), 0);
    cdf_.assign(static_cast<std::size_t>(num_timesteps), 0.0);
    probabilities_.assign(static_cast<std::size_t>(num_timesteps), 1.0 / num_timesteps);
  }

  /// True once every timestep has `history` recorded losses.
  [[nodiscard]] bool warmed_up() const noexcept { return warm_count_ == num_timesteps_; }

  /// The current sampling probabilities p_t (uniform until warmed up).
  [[nodiscard]] const std::vector<double>& probabilities() const noexcept { return probabilities_; }

  /// Fills t[i] and weights[i] = 1 / (T p_t) for global sample first_sample + i of step `step`
  /// (uniform draws with weight 1 until warmed up).
  template <class Real>
  void sample(const CounterRng& rng, std::uint32_t step, std::uint32_t first_sample,
              std::span<int> t, std::span<Real> weights) const {
    if (!warmed_up()) {
      UniformTimestepSampler(num_timesteps_).sample(rng, step, first_sample, t, weights);
      return;
    }
    detail::require(weights.size() == t.size(), "weights.size()", weights.size(),
                    [&] { return "the size of t (" + std::to_string(t.size()) + ")"; });
    for (std::size_t i = 0; i < t.size(); ++i) {
      const std::uint32_t sample_index = first_sample + static_cast<std::uint32_t>(i);
      t[i] = detail::draw_from_cdf(cdf_, rng.uniform(stream::timesteps, sample_index, step));
      weights[i] = static_cast<Real>(
          1.0 / (num_timesteps_ * probabilities_[static_cast<std::size_t>(t[i])]));
    }
  }

  /// Records the (unweighted) bound losses of a batch and refreshes the probabilities.
  template <class Real>
  void update(std::span<const int> t, std::span<const Real> losses) {
    detail::require(losses.size() == t.size(), "losses.size()", losses.size(),
                    [&] { return "the size of t (" + std::to_string(t.size()) + ")"; });
    for (std::size_t i = 0; i < t.size(); ++i) {  // validate everything first: all or nothing
      detail::require(t[i] >= 0 && t[i] < num_timesteps_, "t", t[i],
                      [&] { return "0.." + std::to_string(num_timesteps_ - 1); });
      detail::require(std::isfinite(static_cast<double>(losses[i])), "losses", losses[i],
                      "finite loss values");
    }
    for (std::size_t i = 0; i < t.size(); ++i) record(t[i], static_cast<double>(losses[i]));
    refresh();
  }

  /// The recorded losses for checkpoints: T x history values, oldest first per t.
  [[nodiscard]] const std::vector<double>& loss_history() const noexcept { return losses_; }
  /// How many losses each t has recorded (at most history), for checkpoints.
  [[nodiscard]] const std::vector<int>& loss_counts() const noexcept { return counts_; }
  /// Restores loss_history() and loss_counts() as saved, validating every field first (they
  /// come from files): sizes, counts in 0..history, finite losses. Throws InvalidArgument and
  /// leaves the sampler unchanged on bad input.
  void restore(std::vector<double> history, std::vector<int> counts) {
    detail::require(history.size() == losses_.size(), "loss history size", history.size(),
                    [&] { return std::to_string(losses_.size()) + " (T x history length)"; });
    detail::require(counts.size() == counts_.size(), "loss counts size", counts.size(),
                    [&] { return std::to_string(counts_.size()) + " (T)"; });
    for (const int count : counts) {
      detail::require(count >= 0 && count <= history_, "loss count", count,
                      [&] { return "0.." + std::to_string(history_); });
    }
    for (const double loss : history) {
      detail::require(std::isfinite(loss), "loss history value", loss, "finite values");
    }
    losses_ = std::move(history);
    counts_ = std::move(counts);
    warm_count_ = static_cast<int>(
        std::count_if(counts_.begin(), counts_.end(), [&](int c) { return c >= history_; }));
    refresh();
  }

  /// T, the number of timesteps drawn from.
  [[nodiscard]] int num_timesteps() const noexcept { return num_timesteps_; }

 private:
  void record(int t, double loss) {
    const auto row = static_cast<std::size_t>(t) * static_cast<std::size_t>(history_);
    int& count = counts_[static_cast<std::size_t>(t)];
    if (count < history_) {
      losses_[row + static_cast<std::size_t>(count)] = loss;
      if (++count == history_) ++warm_count_;
    } else {  // drop the oldest
      std::rotate(losses_.begin() + static_cast<std::ptrdiff_t>(row),
                  losses_.begin() + static_cast<std::ptrdiff_t>(row) + 1,
                  losses_.begin() + static_cast<std::ptrdiff_t>(row) + history_);
      losses_[row + static_cast<std::size_t>(history_) - 1] = loss;
    }
  }

  void refresh() {
    if (!warmed_up()) return;
    double total = 0.0;
    for (int t = 0; t < num_timesteps_; ++t) {
      double second_moment = 0.0;
      for (int k = 0; k < history_; ++k) {
        const double l = losses_[static_cast<std::size_t>(t * history_ + k)];
        second_moment += l * l;
      }
      probabilities_[static_cast<std::size_t>(t)] = std::sqrt(second_moment / history_);
      total += probabilities_[static_cast<std::size_t>(t)];
    }
    double running = 0.0;
    for (int t = 0; t < num_timesteps_; ++t) {
      double& p = probabilities_[static_cast<std::size_t>(t)];
      const double normalized = total > 0.0 ? p / total : 1.0 / num_timesteps_;
      p = normalized * (1.0 - uniform_fraction_) + uniform_fraction_ / num_timesteps_;
      running += p;
      cdf_[static_cast<std::size_t>(t)] = running;
    }
  }

  int num_timesteps_;
  int history_;
  double uniform_fraction_;
  std::vector<double> losses_;
  std::vector<int> counts_;
  int warm_count_ = 0;
  std::vector<double> cdf_;
  std::vector<double> probabilities_;
};

}  // namespace ddpm
