// SPDX-License-Identifier: MIT
// NoiseSchedule: the variance schedule beta_t of the forward process, every array derived from it,
// and respacing to a subset of timesteps (Ho et al. 2020; Nichol & Dhariwal 2021, sec. 3.2 and 4).
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <numbers>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"

namespace ddpm {

/// Returns the kept timesteps for a spacing string over 0..T-1:
///   "evenly N" or "N": round(linspace(0, T-1, N)), both ends included (rounding half away from 0);
///   "ddimN": 0, s, 2s, ... < T for the smallest integer stride s giving exactly N steps.
/// Throws InvalidArgument("spacing", ...) for unknown strings or an N that cannot be met.
inline std::vector<int> space_timesteps(int num_timesteps, std::string_view spacing) {
  detail::require(num_timesteps >= 1, "num_timesteps", num_timesteps, "an integer >= 1");
  const auto parse_count = [&](std::string_view digits) {
    int count = 0;
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), count);
    const bool ok = error == std::errc() && end == digits.data() + digits.size() && count >= 1 &&
                    count <= num_timesteps;
    detail::require(
        ok, "spacing", std::string(spacing),
        "\"evenly N\", \"N\" or \"ddimN\" with 1 <= N <= " + std::to_string(num_timesteps));
    return count;
  };
  std::vector<int> kept;
  if (spacing.starts_with("ddim")) {
    const int count = parse_count(spacing.substr(4));
    for (int stride = 1; stride <= num_timesteps; ++stride) {
      if ((num_timesteps + stride - 1) / stride == count) {
        for (int t = 0; t < num_timesteps; t += stride) kept.push_back(t);
        return kept;
      }
    }
    throw InvalidArgument("spacing", std::string(spacing),
                          "a ddimN for which some integer stride gives exactly N steps over " +
                              std::to_string(num_timesteps));
  }
  std::string_view digits = spacing;
  if (digits.starts_with("evenly")) {
    digits.remove_prefix(6);
    while (!digits.empty() && digits.front() == ' ') digits.remove_prefix(1);
  }
  const int count = parse_count(digits);
  if (count == 1) return {0};
  const double stride = static_cast<double>(num_timesteps - 1) / (count - 1);
  for (int i = 0; i < count; ++i) kept.push_back(static_cast<int>(std::lround(i * stride)));
  // stride >= 1 whenever count <= T, so rounded values stay strictly increasing.
  return kept;
}

/// The forward-process variance schedule and every array derived from it, in double precision.
///
/// Indices i = 0..size()-1 run over the steps of this schedule. A schedule made by respaced() keeps
/// only some original steps k_0 < k_1 < ...; timestep(i) = k_i is the original index the model is
/// called with, and index_of(k_i) = i maps back. For a schedule that is not respaced both are the
/// identity. Arrays follow REFERENCE.md: alpha_bar_prev[0] = 1, posterior_variance[0] = 0 and the
/// clipped log posterior variance uses posterior_variance[1] at i = 0.
class NoiseSchedule {
 public:
  /// Ho et al. linear schedule: betas = linspace(scale * 1e-4, scale * 0.02, T), scale = 1000 / T,
  /// so any T adds the same total noise as T = 1000. T must be 1 or above 20 (betas < 1).
  static NoiseSchedule linear(int num_timesteps, double beta_start = 1e-4, double beta_end = 0.02) {
    detail::require(num_timesteps >= 1, "num_timesteps", num_timesteps, "an integer >= 1");
    const double scale = 1000.0 / num_timesteps;
    const double largest_beta = scale * (num_timesteps == 1 ? beta_start : beta_end);
    detail::require(largest_beta < 1.0, "num_timesteps", num_timesteps,
                    "T = 1 or T large enough that the scaled linear betas stay below 1 "
                    "(1000/T * beta_end < 1, i.e. T > 20 for beta_end = 0.02)");
    std::vector<double> betas(static_cast<std::size_t>(num_timesteps));
    for (int i = 0; i < num_timesteps; ++i) {
      const double fraction =
          num_timesteps == 1 ? 0.0 : static_cast<double>(i) / (num_timesteps - 1);
      betas[static_cast<std::size_t>(i)] =
          scale * beta_start + fraction * (scale * beta_end - scale * beta_start);
    }
    return NoiseSchedule(std::move(betas));
  }

  /// Nichol & Dhariwal cosine schedule: alpha_bar(u) = f(u)/f(0), f(u) = cos^2((u + s)/(1 + s)
  /// pi/2), beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), max_beta).
  static NoiseSchedule cosine(int num_timesteps, double s = 0.008, double max_beta = 0.999) {
    detail::require(num_timesteps >= 1, "num_timesteps", num_timesteps, "an integer >= 1");
    detail::require(s > 0.0, "s", s, "an offset > 0");
    detail::require(max_beta > 0.0 && max_beta < 1.0, "max_beta", max_beta, "a value in (0, 1)");
    const auto f = [s](double u) {
      const double c = std::cos((u + s) / (1.0 + s) * std::numbers::pi / 2.0);
      return c * c;
    };
    std::vector<double> betas(static_cast<std::size_t>(num_timesteps));
    for (int i = 0; i < num_timesteps; ++i) {
      const double ab_next = f(static_cast<double>(i + 1) / num_timesteps);
      const double ab_here = f(static_cast<double>(i) / num_timesteps);
      betas[static_cast<std::size_t>(i)] = std::min(1.0 - ab_next / ab_here, max_beta);
    }
    return NoiseSchedule(std::move(betas));
  }

  /// A schedule from explicit betas, each in (0, 1); the last of two or more may be exactly 1 (a
  /// schedule with zero terminal SNR, as zero_terminal_snr() makes).
  explicit NoiseSchedule(std::vector<double> betas) : NoiseSchedule(std::move(betas), {}, 0) {}

  /// Zero terminal SNR (Lin et al. 2023, Algorithm 1): q = sqrt(ab) shifted and scaled,
  /// q <- (q - q_last) q_first / (q_first - q_last), so that ab_0 is kept and ab_{T-1} = 0; the
  /// betas follow from the ratios (the last becomes 1). x_{T-1} is then pure noise, as sampling
  /// from N(0, I) assumes. An epsilon-predicting model cannot work here (x0^ = x_T / 0): train
  /// v (or x0). Rescale the full schedule, then respace: a respaced schedule is refused.
  [[nodiscard]] NoiseSchedule zero_terminal_snr() const {
    detail::require(!is_respaced(), "schedule", "a respaced schedule",
                    "the full schedule (rescale it, then respace the result)");
    detail::require(size() >= 2, "num_timesteps", size(),
                    "at least 2 steps (one step cannot keep ab_0 and reach ab = 0)");
    if (has_zero_terminal_snr()) return *this;  // already rescaled: the map is the identity
    const std::size_t n = betas_.size();
    const double q_first = sqrt_alphas_cumprod_.front(), q_last = sqrt_alphas_cumprod_.back();
    const double scale = q_first / (q_first - q_last);
    std::vector<double> betas(n);
    betas[0] = betas_[0];  // ab_0 = q_first^2 is kept
    double q_previous = q_first;
    for (std::size_t i = 1; i < n; ++i) {
      // beta = 1 - (q_i / q_{i-1})^2 = f (2 - f) with f = (q_{i-1} - q_i) / q_{i-1}, and the old
      // difference q_{i-1} (1 - sqrt(1 - beta_i)) written without cancellation, so that tiny
      // betas keep their digits.
      const double old_difference =
          sqrt_alphas_cumprod_[i - 1] * betas_[i] / (1.0 + std::sqrt(alphas_[i]));
      const double q = (sqrt_alphas_cumprod_[i] - q_last) * scale;
      const double f = old_difference * scale / q_previous;
      betas[i] = i + 1 == n ? 1.0 : f * (2.0 - f);
      q_previous = q;
    }
    return NoiseSchedule(std::move(betas));
  }

  /// True when the last step has ab = 0 (SNR = 0, level +inf), as after zero_terminal_snr().
  [[nodiscard]] bool has_zero_terminal_snr() const noexcept {
    return alphas_cumprod_.back() == 0.0;
  }

  /// The schedule restricted to the kept original timesteps (strictly increasing, each in
  /// 0..size()-1): beta'_j = 1 - alpha_bar[k_j] / alpha_bar[k_{j-1}], alpha_bar[k_{-1}] = 1, so
  /// alpha_bar is preserved at every kept step. Respacing a respaced schedule composes.
  [[nodiscard]] NoiseSchedule respaced(const std::vector<int>& kept) const {
    detail::require(!kept.empty(), "kept_timesteps", "an empty list", "at least one timestep");
    std::vector<double> betas;
    std::vector<int> original;
    betas.reserve(kept.size());
    // In log alpha-bar, so that a tiny beta survives: 1 - ab[k] / 1 rounds to 0 for beta = 1e-17.
    double previous_log_alpha_bar = 0.0;
    for (std::size_t j = 0; j < kept.size(); ++j) {
      const int k = kept[j];
      detail::require(k >= 0 && k < size(), "kept_timesteps", k,
                      "indices in 0.." + std::to_string(size() - 1));
      if (j > 0) {
        detail::require(k > kept[j - 1], "kept_timesteps",
                        std::to_string(kept[j - 1]) + " followed by " + std::to_string(k),
                        "a strictly increasing list");
      }
      const double log_alpha_bar = log_alphas_cumprod_[static_cast<std::size_t>(k)];
      betas.push_back(-std::expm1(log_alpha_bar - previous_log_alpha_bar));
      original.push_back(timestep(k));
      previous_log_alpha_bar = log_alpha_bar;
    }
    return NoiseSchedule(std::move(betas), std::move(original), original_size());
  }

  /// The schedule respaced by a spacing string ("evenly 50", "50", "ddim50"); see space_timesteps.
  [[nodiscard]] NoiseSchedule respaced(std::string_view spacing) const {
    return respaced(space_timesteps(size(), spacing));
  }

  /// Number of steps of this schedule (after respacing).
  [[nodiscard]] int size() const noexcept { return static_cast<int>(betas_.size()); }
  /// Number of steps of the schedule this one was respaced from (size() if not respaced).
  [[nodiscard]] int original_size() const noexcept { return original_size_; }
  /// True when built by respace(): step i then stands for original timestep timestep(i).
  [[nodiscard]] bool is_respaced() const noexcept { return !timesteps_.empty(); }

  /// Original timestep of step i (what the model is called with).
  [[nodiscard]] int timestep(int i) const noexcept {
    return timesteps_.empty() ? i : timesteps_[static_cast<std::size_t>(i)];
  }
  /// Step index of original timestep t; throws InvalidArgument if t is not one of the kept steps.
  [[nodiscard]] int index_of(int t) const {
    const bool in_range = t >= 0 && t < original_size_;
    const int i = !in_range ? -1 : timesteps_.empty() ? t : index_of_[static_cast<std::size_t>(t)];
    if (i < 0) {
      throw InvalidArgument("timestep", std::to_string(t),
                            is_respaced()
                                ? "one of the kept original timesteps of this respaced "
                                  "schedule (see NoiseSchedule::timestep)"
                                : "an integer in 0.." + std::to_string(original_size_ - 1));
    }
    return i;
  }
  /// The original timesteps of every step, in increasing order.
  [[nodiscard]] std::vector<int> timesteps() const {
    std::vector<int> all(betas_.size());
    for (int i = 0; i < size(); ++i) all[static_cast<std::size_t>(i)] = timestep(i);
    return all;
  }

  /// The EDM noise level of step i, s = sqrt((1 - ab) / ab): x / sqrt(ab) = x_0 + s eps; +inf at
  /// the last step of a zero-terminal-SNR schedule.
  [[nodiscard]] double level(int i) const {
    return sqrt_recipm1_alphas_cumprod_[static_cast<std::size_t>(i)];
  }

  /// The real-valued original timestep of noise level s > 0: the timestep linearly interpolated
  /// in log s between the two steps whose levels bracket s (k-diffusion's sigma_to_t), clamped to
  /// the first and last step. The one map from a continuous noise level to what a model is fed.
  /// With zero terminal SNR the last level is +inf: s = +inf is the last step, and a finite s
  /// above the last finite level clamps to that level's step (log s has no finite interpolation
  /// towards +inf).
  [[nodiscard]] double timestep_at_level(double s) const {
    detail::require(s > 0.0, "noise level", s, "a level s > 0 (s = sqrt((1 - ab) / ab))");
    const double log_s = std::log(s);
    const auto last = log_levels_.size() - 1;
    if (log_s <= log_levels_.front()) return timestep(0);
    if (log_s >= log_levels_[last]) return timestep(static_cast<int>(last));
    if (std::isinf(log_levels_[last]) && log_s >= log_levels_[last - 1]) {
      return timestep(static_cast<int>(last - 1));
    }
    const auto above = static_cast<std::size_t>(
        std::upper_bound(log_levels_.begin(), log_levels_.end(), log_s) - log_levels_.begin());
    const std::size_t below = above - 1;
    const double fraction =
        (log_s - log_levels_[below]) / (log_levels_[above] - log_levels_[below]);
    const double t0 = timestep(static_cast<int>(below)), t1 = timestep(static_cast<int>(above));
    return t0 + fraction * (t1 - t0);
  }

  /// The noise level at a real-valued original timestep t in [timestep(0), timestep(size() - 1)]:
  /// log s linearly interpolated in t, the inverse of timestep_at_level. With zero terminal SNR
  /// the level is +inf on the whole last interval (timestep(size() - 2), timestep(size() - 1)]:
  /// log s interpolated towards +inf.
  [[nodiscard]] double level_at_timestep(double t) const {
    const double first = timestep(0), last = timestep(size() - 1);
    detail::require(t >= first && t <= last, "t", t, [&] {
      return "a timestep in [" + std::to_string(timestep(0)) + ", " +
             std::to_string(timestep(size() - 1)) + "]";
    });
    // The step whose timestep is the largest <= t, found among the kept original timesteps.
    int below = 0, above = size() - 1;
    while (above - below > 1) {
      const int middle = (below + above) / 2;
      (timestep(middle) <= t ? below : above) = middle;
    }
    if (timestep(above) <= t) below = above;
    const auto b = static_cast<std::size_t>(below);
    if (below == size() - 1 || static_cast<double>(timestep(below)) == t) {
      return sqrt_recipm1_alphas_cumprod_[b];
    }
    if (std::isinf(log_levels_[b + 1])) return sqrt_recipm1_alphas_cumprod_[b + 1];  // +inf
    const double fraction = (t - timestep(below)) / (timestep(below + 1) - timestep(below));
    return std::exp(log_levels_[b] + fraction * (log_levels_[b + 1] - log_levels_[b]));
  }

  // Derived arrays, indexed by step i (REFERENCE.md names in comments).
  /// beta_t
  [[nodiscard]] const std::vector<double>& betas() const noexcept { return betas_; }
  /// a_t = 1 - beta_t
  [[nodiscard]] const std::vector<double>& alphas() const noexcept { return alphas_; }
  /// ab_t = prod_{s<=t} a_s
  [[nodiscard]] const std::vector<double>& alphas_cumprod() const noexcept {
    return alphas_cumprod_;
  }
  /// ab_{t-1}, with 1 at t = 0
  [[nodiscard]] const std::vector<double>& alphas_cumprod_prev() const noexcept {
    return alphas_cumprod_prev_;
  }
  /// ab_{t+1}, with 0 at the last step
  [[nodiscard]] const std::vector<double>& alphas_cumprod_next() const noexcept {
    return alphas_cumprod_next_;
  }
  /// sqrt(ab_t)
  [[nodiscard]] const std::vector<double>& sqrt_alphas_cumprod() const noexcept {
    return sqrt_alphas_cumprod_;
  }
  /// sqrt(1 - ab_t)
  [[nodiscard]] const std::vector<double>& sqrt_one_minus_alphas_cumprod() const noexcept {
    return sqrt_one_minus_alphas_cumprod_;
  }
  /// log(1 - ab_t), with 1 - ab_t from expm1 so it stays accurate where ab_t is near 1
  [[nodiscard]] const std::vector<double>& log_one_minus_alphas_cumprod() const noexcept {
    return log_one_minus_alphas_cumprod_;
  }
  /// sqrt(1 / ab_t)
  [[nodiscard]] const std::vector<double>& sqrt_recip_alphas_cumprod() const noexcept {
    return sqrt_recip_alphas_cumprod_;
  }
  /// sqrt(1 / ab_t - 1)
  [[nodiscard]] const std::vector<double>& sqrt_recipm1_alphas_cumprod() const noexcept {
    return sqrt_recipm1_alphas_cumprod_;
  }
  /// beta~_t = beta_t (1 - ab_{t-1}) / (1 - ab_t)
  [[nodiscard]] const std::vector<double>& posterior_variance() const noexcept {
    return posterior_variance_;
  }
  /// log([beta~_1, beta~_1, beta~_2, ...]); for a one-step schedule log(beta_0), as beta~ has no
  /// non-zero entry to borrow.
  [[nodiscard]] const std::vector<double>& posterior_log_variance_clipped() const noexcept {
    return posterior_log_variance_clipped_;
  }
  /// sqrt(ab_{t-1}) beta_t / (1 - ab_t): the coefficient of x_0 in the posterior mean
  [[nodiscard]] const std::vector<double>& posterior_mean_coef1() const noexcept {
    return posterior_mean_coef1_;
  }
  /// sqrt(a_t) (1 - ab_{t-1}) / (1 - ab_t): the coefficient of x_t in the posterior mean
  [[nodiscard]] const std::vector<double>& posterior_mean_coef2() const noexcept {
    return posterior_mean_coef2_;
  }
  /// log(beta_t) for t >= 1, log(beta~_1) at t = 0: the fixed-large log-variance
  [[nodiscard]] const std::vector<double>& fixed_large_log_variance() const noexcept {
    return fixed_large_log_variance_;
  }

 private:
  NoiseSchedule(std::vector<double> betas, std::vector<int> original, int original_size)
      : betas_(std::move(betas)), timesteps_(std::move(original)) {
    detail::require(!betas_.empty(), "betas", "an empty list", "at least one beta");
    for (std::size_t i = 0; i < betas_.size(); ++i) {
      // The one exception: a last beta of exactly 1 after at least one other (zero terminal SNR,
      // Lin et al. 2023; a lone beta of 1 would leave no step that sees the data).
      const bool terminal = i > 0 && i + 1 == betas_.size() && betas_[i] == 1.0;
      detail::require((betas_[i] > 0.0 && betas_[i] < 1.0) || terminal,
                      "betas[" + std::to_string(i) + "]", betas_[i],
                      "a value in the open interval (0, 1) (only the last of two or more may "
                      "be 1: zero terminal SNR)");
    }
    original_size_ = timesteps_.empty() ? size() : original_size;
    if (!timesteps_.empty()) {
      index_of_.assign(static_cast<std::size_t>(original_size_), -1);
      for (int i = 0; i < size(); ++i)
        index_of_[static_cast<std::size_t>(timesteps_[static_cast<std::size_t>(i)])] = i;
    }
    derive();
  }

  void derive() {
    const std::size_t n = betas_.size();
    for (std::vector<double>* array :
         {&alphas_, &alphas_cumprod_, &alphas_cumprod_prev_, &alphas_cumprod_next_,
          &sqrt_alphas_cumprod_, &sqrt_one_minus_alphas_cumprod_, &log_one_minus_alphas_cumprod_,
          &sqrt_recip_alphas_cumprod_, &sqrt_recipm1_alphas_cumprod_, &posterior_variance_,
          &posterior_log_variance_clipped_, &posterior_mean_coef1_, &posterior_mean_coef2_,
          &fixed_large_log_variance_, &log_alphas_cumprod_, &log_levels_}) {
      array->assign(n, 0.0);
    }
    // alpha-bar through sums of log1p, and 1 - alpha-bar through expm1, so that neither loses
    // digits to cancellation when betas are tiny (1 - ab would round to 0 for beta = 1e-17).
    // A last beta of 1 (zero terminal SNR) gives log ab = -inf there: ab = 0, 1 - ab = 1, the
    // level and sqrt(1/ab) +inf, and finite posterior arrays (coef2 = 0, beta~ = 1 - ab_prev).
    std::vector<double> one_minus_ab(n), one_minus_ab_prev(n);
    double log_alpha_bar = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      alphas_[i] = 1.0 - betas_[i];
      alphas_cumprod_prev_[i] = std::exp(log_alpha_bar);
      one_minus_ab_prev[i] = -std::expm1(log_alpha_bar);
      log_alpha_bar += std::log1p(-betas_[i]);
      log_alphas_cumprod_[i] = log_alpha_bar;
      alphas_cumprod_[i] = std::exp(log_alpha_bar);
      one_minus_ab[i] = -std::expm1(log_alpha_bar);
    }
    for (std::size_t i = 0; i < n; ++i) {
      const double ab = alphas_cumprod_[i], ab_prev = alphas_cumprod_prev_[i];
      alphas_cumprod_next_[i] = i + 1 < n ? alphas_cumprod_[i + 1] : 0.0;
      sqrt_alphas_cumprod_[i] = std::sqrt(ab);
      sqrt_one_minus_alphas_cumprod_[i] = std::sqrt(one_minus_ab[i]);
      log_one_minus_alphas_cumprod_[i] = std::log(one_minus_ab[i]);
      sqrt_recip_alphas_cumprod_[i] = std::sqrt(1.0 / ab);
      sqrt_recipm1_alphas_cumprod_[i] = std::sqrt(one_minus_ab[i] / ab);
      log_levels_[i] = 0.5 * (std::log(one_minus_ab[i]) - log_alphas_cumprod_[i]);
      posterior_variance_[i] = betas_[i] * one_minus_ab_prev[i] / one_minus_ab[i];
      posterior_mean_coef1_[i] = betas_[i] * std::sqrt(ab_prev) / one_minus_ab[i];
      posterior_mean_coef2_[i] = one_minus_ab_prev[i] * std::sqrt(alphas_[i]) / one_minus_ab[i];
    }
    const double first_log_variance =
        n > 1 ? std::log(posterior_variance_[1]) : std::log(betas_[0]);
    for (std::size_t i = 0; i < n; ++i) {
      posterior_log_variance_clipped_[i] =
          i == 0 ? first_log_variance : std::log(posterior_variance_[i]);
      fixed_large_log_variance_[i] = i == 0 ? first_log_variance : std::log(betas_[i]);
    }
  }

  std::vector<double> betas_;
  std::vector<int> timesteps_;  // original timestep of each step; empty when not respaced
  std::vector<int>
      index_of_;  // step of each original timestep, -1 if dropped; empty if not respaced
  int original_size_ = 0;
  std::vector<double> alphas_, alphas_cumprod_, alphas_cumprod_prev_, alphas_cumprod_next_,
      sqrt_alphas_cumprod_, sqrt_one_minus_alphas_cumprod_, log_one_minus_alphas_cumprod_,
      sqrt_recip_alphas_cumprod_, sqrt_recipm1_alphas_cumprod_, posterior_variance_,
      posterior_log_variance_clipped_, posterior_mean_coef1_, posterior_mean_coef2_,
      fixed_large_log_variance_, log_alphas_cumprod_,
      log_levels_;  // log of level(i), increasing in i
};

}  // namespace ddpm
