// SPDX-License-Identifier: MIT
// REFERENCE.md's formulas written out again in long double, independently of the library's code,
// so that tests compare the library with the math and not with its own helpers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numbers>
#include <vector>

#include "ddpm/diffusion.hpp"

namespace ddpm::test::ref {

using LD = long double;

inline constexpr LD kPi = 3.141592653589793238462643383279502884L;
inline constexpr LD kLn2 = 0.693147180559945309417232121458176568L;

/// The linear schedule's betas (REFERENCE.md, "Schedules"): linspace(scale 1e-4, scale 0.02, T)
/// with scale = 1000 / T.
inline std::vector<LD> linear_betas(int T) {
  const LD scale = 1000.0L / T;
  std::vector<LD> betas(static_cast<std::size_t>(T));
  for (int i = 0; i < T; ++i) {
    const LD fraction = T == 1 ? 0.0L : static_cast<LD>(i) / (T - 1);
    betas[static_cast<std::size_t>(i)] = scale * 1e-4L + fraction * (scale * 0.02L - scale * 1e-4L);
  }
  return betas;
}

/// The rounded linspace 0..T-1 with n entries (a respacing passed to both sides explicitly).
inline std::vector<int> evenly(int T, int n) {
  std::vector<int> kept(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    kept[static_cast<std::size_t>(i)] = static_cast<int>(std::lround(i * (T - 1.0) / (n - 1.0)));
  }
  return kept;
}

/// A schedule over kept original timesteps k_0 < ... < k_{n-1}, from alpha-bar products of the
/// original betas: beta'_j = 1 - ab_{k_j} / ab_{k_{j-1}}, and the posterior of "Forward process and
/// posterior" with ab_prev the alpha-bar of the previous kept step (1 before the first).
struct Schedule {
  std::vector<int> timesteps;  ///< original timestep k_j of each step j
  std::vector<LD> ab;          ///< ab_{k_j}

  [[nodiscard]] int size() const { return static_cast<int>(ab.size()); }
  [[nodiscard]] LD alpha_bar(int j) const { return ab[static_cast<std::size_t>(j)]; }
  [[nodiscard]] LD alpha_bar_prev(int j) const { return j == 0 ? 1.0L : alpha_bar(j - 1); }
  [[nodiscard]] LD beta(int j) const { return 1.0L - alpha_bar(j) / alpha_bar_prev(j); }
  [[nodiscard]] LD posterior_variance(int j) const {
    return beta(j) * (1.0L - alpha_bar_prev(j)) / (1.0L - alpha_bar(j));
  }
  /// log beta~ with beta~_1 at step 0.
  [[nodiscard]] LD log_var_small(int j) const {
    return std::log(posterior_variance(j == 0 ? 1 : j));
  }
  /// log beta with beta~_1 at step 0.
  [[nodiscard]] LD log_var_large(int j) const {
    return j == 0 ? log_var_small(0) : std::log(beta(j));
  }
  /// mu~ = coef_x0 x_0 + coef_xt x_t.
  [[nodiscard]] LD coef_x0(int j) const {
    return std::sqrt(alpha_bar_prev(j)) * beta(j) / (1.0L - alpha_bar(j));
  }
  [[nodiscard]] LD coef_xt(int j) const {
    return std::sqrt(1.0L - beta(j)) * (1.0L - alpha_bar_prev(j)) / (1.0L - alpha_bar(j));
  }
  /// The step j whose original timestep is t (the model's argument), -1 if t is not kept.
  [[nodiscard]] int step_of(int t) const {
    for (int j = 0; j < size(); ++j) {
      if (timesteps[static_cast<std::size_t>(j)] == t) return j;
    }
    return -1;
  }
};

/// The schedule of `betas` restricted to `kept` (all steps when empty).
inline Schedule make_schedule(const std::vector<LD>& betas, std::vector<int> kept = {}) {
  if (kept.empty()) {
    for (int i = 0; i < static_cast<int>(betas.size()); ++i) kept.push_back(i);
  }
  std::vector<LD> all(betas.size());
  LD product = 1.0L;
  for (std::size_t i = 0; i < betas.size(); ++i) all[i] = product *= 1.0L - betas[i];
  Schedule s;
  s.timesteps = kept;
  for (const int k : kept) s.ab.push_back(all[static_cast<std::size_t>(k)]);
  return s;
}

/// The linear schedule of T steps, restricted to `kept` (all when empty).
inline Schedule linear(int T, std::vector<int> kept = {}) {
  return make_schedule(linear_betas(T), std::move(kept));
}

/// The double betas the library's NoiseSchedule is built from (rounded from the long double ones).
inline std::vector<double> to_double(const std::vector<LD>& v) {
  return std::vector<double>(v.begin(), v.end());
}

/// x0^ from a raw model output ("Model output parameterizations").
inline LD x0_from_output(ModelOutput output, LD out, LD x_t, LD ab) {
  switch (output) {
    case ModelOutput::epsilon:
      return std::sqrt(1.0L / ab) * x_t - std::sqrt(1.0L / ab - 1.0L) * out;
    case ModelOutput::x0:
      return out;
    case ModelOutput::v:
      return std::sqrt(ab) * x_t - std::sqrt(1.0L - ab) * out;
  }
  return 0;
}

/// eps^ consistent with x0^ and x_t.
inline LD eps_from_x0(LD x0, LD x_t, LD ab) {
  return (x_t - std::sqrt(ab) * x0) / std::sqrt(1.0L - ab);
}

inline LD clip(LD x) { return x > 1.0L ? 1.0L : x < -1.0L ? -1.0L : x; }

/// log-variance of a learned-range output r: frac log(beta) + (1 - frac) log(beta~), frac =
/// (r+1)/2.
inline LD learned_range_log_var(const Schedule& s, int j, LD r) {
  const LD frac = (r + 1.0L) / 2.0L;
  return frac * std::log(s.beta(j)) + (1.0L - frac) * s.log_var_small(j);
}

/// log-variance of p(x_{t-1} | x_t) at step j for a variance kind; var_out is the model's
/// variance column (used by the learned kinds only).
inline LD log_var_of(const Schedule& s, int j, VarianceKind v, LD var_out) {
  switch (v) {
    case VarianceKind::fixed_small:
      return s.log_var_small(j);
    case VarianceKind::fixed_large:
      return s.log_var_large(j);
    case VarianceKind::learned:
      return var_out;
    case VarianceKind::learned_range:
      return learned_range_log_var(s, j, var_out);
  }
  return 0;
}

/// KL(N(m1, e^lv1) || N(m2, e^lv2)) in nats.
inline LD normal_kl(LD m1, LD lv1, LD m2, LD lv2) {
  return 0.5L * (-1.0L + lv2 - lv1 + std::exp(lv1 - lv2) + (m1 - m2) * (m1 - m2) * std::exp(-lv2));
}

/// -log N(x; mean, e^lv) in nats.
inline LD gaussian_nll(LD x, LD mean, LD lv) {
  return 0.5L * (std::log(2.0L * kPi) + lv + (x - mean) * (x - mean) * std::exp(-lv));
}

/// Standard normal cdf in long double.
inline LD normal_cdf(LD z) { return 0.5L * std::erfc(-z / std::sqrt(2.0L)); }

/// -log P(x) of the 8-bit discretized Gaussian ("Decoder likelihood L_0"): bin [x - 1/255,
/// x + 1/255], open to -inf at x = -1 and to +inf at x = +1, probability floored at 1e-12.
inline LD discretized_nll(LD x, LD mean, LD lv) {
  const LD inv_sd = std::exp(-0.5L * lv), inf = INFINITY;
  const LD lo = x < -1.0L + 1.0L / 255.0L ? -inf : (x - 1.0L / 255.0L - mean) * inv_sd;
  const LD hi = x > 1.0L - 1.0L / 255.0L ? inf : (x + 1.0L / 255.0L - mean) * inv_sd;
  // Phi(hi) - Phi(lo), from the upper tails when both edges are above the mean (no cancellation).
  const LD p = lo > 0 ? normal_cdf(-lo) - normal_cdf(-hi) : normal_cdf(hi) - normal_cdf(lo);
  return -std::log(std::max(p, 1e-12L));
}

/// E[x_0 | x_t] for data N(m, s^2) ("A denoiser that is exactly right", one component).
inline LD gaussian_posterior_x0(LD x_t, LD m, LD s, LD ab) {
  return m + std::sqrt(ab) * s * s * (x_t - std::sqrt(ab) * m) / (ab * s * s + 1.0L - ab);
}

/// The exact model output (eps*, E[x_0|x_t] or v*) for data N(m, s^2).
inline LD gaussian_exact_output(ModelOutput output, LD x_t, LD m, LD s, LD ab) {
  const LD x0 = gaussian_posterior_x0(x_t, m, s, ab);
  const LD eps = eps_from_x0(x0, x_t, ab);
  return output == ModelOutput::epsilon ? eps
         : output == ModelOutput::x0    ? x0
                                        : std::sqrt(ab) * eps - std::sqrt(1.0L - ab) * x0;
}

}  // namespace ddpm::test::ref
