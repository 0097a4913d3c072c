// SPDX-License-Identifier: MIT
// The exact denoiser for data from an isotropic Gaussian mixture: the reference model for tests
// and demos, since sampling with it must reproduce the mixture whatever the sampler.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/gaussian_mixture.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// The Bayes-optimal model output for mixture data (REFERENCE.md, last section):
/// x_t | k ~ N(sqrt(ab_t) m_k, (ab_t s_k^2 + 1 - ab_t) I), responsibilities r_k(x_t) by Bayes'
/// rule, E[x_0 | x_t] = sum_k r_k (m_k + sqrt(ab_t) s_k^2 (x_t - sqrt(ab_t) m_k) / (ab_t s_k^2 + 1
/// - ab_t)), eps* = (x_t - sqrt(ab_t) E[x_0 | x_t]) / sqrt(1 - ab_t). Outputs eps*, E[x_0|x_t] or
/// the matching v. As a ConditionalDenoiser, label k restricts the mixture to component k
/// (kNoLabel: all). Computed in double whatever Real is.
template <class Real>
class GaussianMixtureDenoiser {
 public:
  /// The denoiser of `mixture` under `schedule`, predicting `output` (epsilon, x0 or v).
  GaussianMixtureDenoiser(GaussianMixture mixture, const NoiseSchedule& schedule,
                          ModelOutput output = ModelOutput::epsilon)
      : mixture_(std::move(mixture)), schedule_(schedule), output_(output) {
    const Index k = mixture_.components();
    detail::require(k >= 1 && mixture_.dim() >= 1, "mixture.means",
                    std::to_string(k) + "x" + std::to_string(mixture_.dim()),
                    "at least one component of dimension >= 1");
    detail::require(static_cast<Index>(mixture_.stds.size()) == k, "mixture.stds.size()",
                    mixture_.stds.size(), "one standard deviation per component");
    detail::require(static_cast<Index>(mixture_.weights.size()) == k, "mixture.weights.size()",
                    mixture_.weights.size(), "one weight per component");
    double total = 0.0;
    for (Index c = 0; c < k; ++c) {
      const auto ci = static_cast<std::size_t>(c);
      detail::require(mixture_.stds[ci] >= 0.0, "mixture.stds[" + std::to_string(c) + "]",
                      mixture_.stds[ci], "a standard deviation >= 0");
      detail::require(mixture_.weights[ci] > 0.0, "mixture.weights[" + std::to_string(c) + "]",
                      mixture_.weights[ci], "a weight > 0");
      total += mixture_.weights[ci];
    }
    for (double& w : mixture_.weights) w /= total;
    // alpha-bar of every ORIGINAL timestep the schedule keeps (the model is called with those).
    alphas_cumprod_.assign(static_cast<std::size_t>(schedule.original_size()), -1.0);
    one_minus_alphas_cumprod_.assign(alphas_cumprod_.size(), -1.0);
    for (int i = 0; i < schedule.size(); ++i) {
      const auto original = static_cast<std::size_t>(schedule.timestep(i));
      alphas_cumprod_[original] = schedule.alphas_cumprod()[static_cast<std::size_t>(i)];
      // The schedule's accurate 1 - ab (it rounds to 0 as 1.0 - ab for beta_0 = 1e-17).
      const double sqrt_one_minus =
          schedule.sqrt_one_minus_alphas_cumprod()[static_cast<std::size_t>(i)];
      one_minus_alphas_cumprod_[original] = sqrt_one_minus * sqrt_one_minus;
    }
  }

  /// The mixture it is exact for.
  [[nodiscard]] const GaussianMixture& mixture() const noexcept { return mixture_; }

  /// t: the schedule's original timesteps, or real ones (ContinuousTimeDenoiser): a fractional
  /// t is the noise level NoiseSchedule::level_at_timestep(t), and the output is exact there too.
  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) const {
    predict_impl(x_t, levels_of(x_t, t), {}, out);
  }
  /// \overload
  void predict(const Batch<Real>& x_t, std::span<const double> t, Batch<Real>& out) const {
    predict_impl(x_t, levels_of(x_t, t), {}, out);
  }
  /// The conditional prediction: label k restricts the mixture to component k (kNoLabel: all).
  void predict(const Batch<Real>& x_t, std::span<const int> t, std::span<const int> labels,
               Batch<Real>& out) const {
    predict_labeled(x_t, t, labels, out);
  }
  /// \overload
  void predict(const Batch<Real>& x_t, std::span<const double> t, std::span<const int> labels,
               Batch<Real>& out) const {
    predict_labeled(x_t, t, labels, out);
  }

  /// As predict(), and jac.row(i) = the Jacobian d out.row(i) / d x_t.row(i) in closed form,
  /// row-major (entry (a, b) at column a * dim + b). With r_k the responsibilities, mu_k =
  /// E[x_0 | x_t, k], q_k = -(x_t - sqrt(ab) m_k) / v_k (v_k = ab s_k^2 + 1 - ab):
  /// dE[x_0|x_t]/dx_t = sum_k r_k (sqrt(ab) s_k^2 / v_k) I + sum_k r_k mu_k (q_k - sum_j r_j
  /// q_j)^T, the second term the derivative of the responsibilities; eps and v follow linearly.
  void predict_with_jacobian(const Batch<Real>& x_t, std::span<const double> t, Batch<Real>& out,
                             Batch<Real>& jac) const {
    predict_impl(x_t, levels_of(x_t, t), {}, out, &jac);
  }
  /// \overload
  void predict_with_jacobian(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out,
                             Batch<Real>& jac) const {
    predict_impl(x_t, levels_of(x_t, t), {}, out, &jac);
  }

 private:
  template <class Time>
  void predict_labeled(const Batch<Real>& x_t, std::span<const Time> t, std::span<const int> labels,
                       Batch<Real>& out) const {
    detail::require(static_cast<Index>(labels.size()) == x_t.rows(), "labels.size()", labels.size(),
                    "one label per row of x_t");
    for (const int label : labels) {
      detail::require(
          label == kNoLabel || (label >= 0 && label < mixture_.components()), "label", label, [&] {
            return "-1 (none) or a component index 0.." + std::to_string(mixture_.components() - 1);
          });
    }
    predict_impl(x_t, levels_of(x_t, t), labels, out);
  }

  /// (ab, 1 - ab) of each row's timestep, checked.
  template <class Time>
  std::vector<std::pair<double, double>> levels_of(const Batch<Real>& x_t,
                                                   std::span<const Time> t) const {
    const Index dim = mixture_.dim();
    if (x_t.cols() != dim)
      detail::require_shape(false, "x_t", x_t.rows(), x_t.cols(),
                            std::to_string(dim) + " columns (the mixture's dim)");
    detail::require(static_cast<Index>(t.size()) == x_t.rows(), "t.size()", t.size(),
                    "one timestep per row of x_t");
    std::vector<std::pair<double, double>> levels(t.size());
    for (std::size_t i = 0; i < t.size(); ++i) {
      if constexpr (std::is_same_v<Time, int>) {
        const int timestep = t[i];
        const bool ok = timestep >= 0 && timestep < static_cast<int>(alphas_cumprod_.size()) &&
                        alphas_cumprod_[static_cast<std::size_t>(timestep)] >= 0.0;
        detail::require(ok, "t", timestep,
                        "a timestep of the schedule the denoiser was built with");
        levels[i] = {alphas_cumprod_[static_cast<std::size_t>(timestep)],
                     one_minus_alphas_cumprod_[static_cast<std::size_t>(timestep)]};
      } else {
        // ab = 1 / (1 + s^2) and 1 - ab = s^2 / (1 + s^2), both accurate for tiny s.
        const double s = schedule_.level_at_timestep(t[i]);
        // s = +inf (zero terminal SNR): ab = 0, not inf / inf.
        levels[i] = std::isinf(s) ? std::pair{0.0, 1.0}
                                  : std::pair{1.0 / (1.0 + s * s), s * s / (1.0 + s * s)};
      }
    }
    return levels;
  }

  void predict_impl(const Batch<Real>& x_t, const std::vector<std::pair<double, double>>& levels,
                    std::span<const int> labels, Batch<Real>& out,
                    Batch<Real>* jac = nullptr) const {
    const Index dim = mixture_.dim(), k = mixture_.components();
    out.resize(x_t.rows(), dim);
    if (jac != nullptr) jac->resize(x_t.rows(), dim * dim);
    detail::parallel_for(x_t.rows(), [&](Index i) {
      const auto [ab, one_minus_ab] = levels[static_cast<std::size_t>(i)];
      const double sqrt_ab = std::sqrt(ab);
      const int only = labels.empty() ? kNoLabel : labels[static_cast<std::size_t>(i)];
      // log responsibilities, then E[x_0 | x_t] as their weighted sum of component posteriors.
      double max_log = -INFINITY;
      double log_r[64];
      std::vector<double> heap_log_r;
      double* log_resp = log_r;
      if (k > 64) {
        heap_log_r.resize(static_cast<std::size_t>(k));
        log_resp = heap_log_r.data();
      }
      for (Index c = 0; c < k; ++c) {
        const auto ci = static_cast<std::size_t>(c);
        if (only != kNoLabel && c != only) {
          log_resp[c] = -INFINITY;
          continue;
        }
        const double var = ab * mixture_.stds[ci] * mixture_.stds[ci] + one_minus_ab;
        double sq = 0.0;
        for (Index j = 0; j < dim; ++j) {
          const double d = static_cast<double>(x_t(i, j)) - sqrt_ab * mixture_.means(c, j);
          sq += d * d;
        }
        log_resp[c] = std::log(mixture_.weights[ci]) - 0.5 * dim * std::log(var) - 0.5 * sq / var;
        max_log = std::max(max_log, log_resp[c]);
      }
      double norm = 0.0;
      for (Index c = 0; c < k; ++c) norm += std::exp(log_resp[c] - max_log);
      for (Index j = 0; j < dim; ++j) {
        const double x = x_t(i, j);
        double x0 = 0.0;
        for (Index c = 0; c < k; ++c) {
          const auto ci = static_cast<std::size_t>(c);
          if (log_resp[c] == -INFINITY) continue;
          const double r = std::exp(log_resp[c] - max_log) / norm;
          const double s2 = mixture_.stds[ci] * mixture_.stds[ci];
          const double var = ab * s2 + one_minus_ab;
          x0 += r *
                (mixture_.means(c, j) + sqrt_ab * s2 * (x - sqrt_ab * mixture_.means(c, j)) / var);
        }
        const double eps = (x - sqrt_ab * x0) / std::sqrt(one_minus_ab);
        const double value = output_ == ModelOutput::epsilon ? eps
                             : output_ == ModelOutput::x0
                                 ? x0
                                 : sqrt_ab * eps - std::sqrt(one_minus_ab) * x0;
        out(i, j) = static_cast<Real>(value);
      }
      if (jac != nullptr) jacobian_row(x_t, i, ab, one_minus_ab, log_resp, max_log, norm, *jac);
    });
  }

  // Row i of predict_with_jacobian's jac, from the log responsibilities predict_impl computed.
  void jacobian_row(const Batch<Real>& x_t, Index i, double ab, double one_minus_ab,
                    const double* log_resp, double max_log, double norm, Batch<Real>& jac) const {
    const Index dim = mixture_.dim(), k = mixture_.components();
    const double sqrt_ab = std::sqrt(ab), sigma = std::sqrt(one_minus_ab);
    std::vector<double> r(static_cast<std::size_t>(k)), mu(static_cast<std::size_t>(k * dim)),
        q(static_cast<std::size_t>(k * dim)), q_bar(static_cast<std::size_t>(dim), 0.0),
        d_x0(static_cast<std::size_t>(dim * dim), 0.0);
    double diagonal = 0.0;
    for (Index c = 0; c < k; ++c) {
      const auto ci = static_cast<std::size_t>(c);
      r[ci] = log_resp[c] == -INFINITY ? 0.0 : std::exp(log_resp[c] - max_log) / norm;
      const double s2 = mixture_.stds[ci] * mixture_.stds[ci];
      const double var = ab * s2 + one_minus_ab;
      diagonal += r[ci] * sqrt_ab * s2 / var;
      for (Index j = 0; j < dim; ++j) {
        const double x = x_t(i, j), m = mixture_.means(c, j);
        mu[ci * dim + j] = m + sqrt_ab * s2 * (x - sqrt_ab * m) / var;
        q[ci * dim + j] = -(x - sqrt_ab * m) / var;
        q_bar[j] += r[ci] * q[ci * dim + j];
      }
    }
    for (Index c = 0; c < k; ++c) {
      const auto ci = static_cast<std::size_t>(c);
      if (r[ci] == 0.0) continue;
      for (Index a = 0; a < dim; ++a) {
        for (Index b = 0; b < dim; ++b) {
          d_x0[a * dim + b] += r[ci] * mu[ci * dim + a] * (q[ci * dim + b] - q_bar[b]);
        }
      }
    }
    for (Index a = 0; a < dim; ++a) d_x0[a * dim + a] += diagonal;
    for (Index a = 0; a < dim; ++a) {
      for (Index b = 0; b < dim; ++b) {
        const double identity = a == b ? 1.0 : 0.0;
        const double x0 = d_x0[a * dim + b];
        const double eps = (identity - sqrt_ab * x0) / sigma;
        const double value = output_ == ModelOutput::epsilon ? eps
                             : output_ == ModelOutput::x0    ? x0
                                                             : sqrt_ab * eps - sigma * x0;
        jac(i, a * dim + b) = static_cast<Real>(value);
      }
    }
  }

  GaussianMixture mixture_;
  NoiseSchedule schedule_;
  ModelOutput output_;
  // By original timestep; -1 where the schedule has no step.
  std::vector<double> alphas_cumprod_, one_minus_alphas_cumprod_;
};

}  // namespace ddpm
