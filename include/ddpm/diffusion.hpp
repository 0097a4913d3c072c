// SPDX-License-Identifier: MIT
// GaussianDiffusion: forward process, posterior, reverse-process parameterization, training losses
// with their gradients with respect to the model output, and the variational bound.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/gaussian.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// What the network predicts (REFERENCE.md, "Model output parameterizations").
enum class ModelOutput {
  epsilon,  ///< the noise eps of x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps (Ho et al. 2020)
  x0,       ///< the clean data x_0
  v         ///< v = sqrt(ab) eps - sqrt(1 - ab) x_0 (Salimans & Ho 2022)
};
/// The variance of p(x_{t-1} | x_t).
enum class VarianceKind {
  fixed_small,   ///< beta-tilde_t, the posterior variance (Ho et al.'s sigma_t^2 lower bound)
  fixed_large,   ///< beta_t (the upper bound)
  learned,       ///< the model outputs log sigma_t^2 directly
  learned_range  ///< the model outputs f in [-1, 1]: log variance between log beta-tilde and log
                 ///< beta
};
/// The training loss. kl is L_t in bits per dim; rescaled_kl multiplies it by T; hybrid is
/// mse + lambda L_t with the mean's gradient stopped in the bound term (Nichol & Dhariwal 2021).
enum class LossKind {
  simple,       ///< the MSE of the predicted quantity (Ho et al. 2020, eq. 14)
  kl,           ///< the bound term L_t
  rescaled_kl,  ///< L_t multiplied by T
  hybrid        ///< simple + lambda L_t, the mean stopped in L_t (needs a learned variance)
};
/// The decoder p(x_0 | x_1): a Gaussian density for continuous data (nats/dim), or the 8-bit
/// discretized Gaussian for images in [-1, 1] (bits/dim).
enum class Decoder {
  continuous,  ///< a Gaussian density, nats/dim
  discretized  ///< the discretized Gaussian over 256 bins of [-1, 1], bits/dim
};

/// A weight on the simple loss per timestep (Hang et al. 2023): min-SNR-gamma weights the MSE of
/// the predicted quantity so that every parameterization weights the x_0 error by min(SNR, g);
/// soft-min-SNR uses SNR g / (SNR + g) instead (see snr_loss_weight).
enum class SnrWeighting {
  none,         ///< every timestep weighted 1
  min_snr,      ///< min(SNR, gamma) on the x_0 error
  soft_min_snr  ///< SNR gamma / (SNR + gamma) on the x_0 error
};

/// Options of a GaussianDiffusion; the defaults are those of Ho et al. 2020 on continuous data.
struct DiffusionOptions {
  ModelOutput output =
      ModelOutput::epsilon;  ///< what the network predicts: epsilon (Ho et al.), x0 or v
  VarianceKind variance =
      VarianceKind::fixed_small;  ///< fixed (beta_t or beta-tilde_t) or learned (Nichol & Dhariwal)
  LossKind loss = LossKind::simple;       ///< the training loss; simple is Ho et al.'s MSE
  Decoder decoder = Decoder::continuous;  ///< the decoder p(x_0 | x_1) of the bound: continuous
                                          ///< data or 8-bit images
  /// Clip x0^ to [-1, 1] (images) in the reverse process the samplers run and the bound
  /// evaluates. Training losses never clip: a clipped x0^ has no gradient.
  bool clip_x0 = false;
  bool rescale_hybrid = true;  ///< hybrid bound weight T/1000 (rescaled) instead of 1
  /// Weighting of the simple loss (the MSE part of hybrid) per timestep; none: Ho et al.
  SnrWeighting snr_weighting = SnrWeighting::none;
  double snr_gamma = 5.0;  ///< g of min-SNR-g (Hang et al. use 5); > 0
};

/// The names of the ModelOutput values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<ModelOutput> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "output";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<ModelOutput>, 3> names = {
      {{ModelOutput::epsilon, "eps"}, {ModelOutput::x0, "x0"}, {ModelOutput::v, "v"}}};
  /// Other names parse_enum accepts.
  static constexpr std::array<EnumName<ModelOutput>, 1> aliases = {
      {{ModelOutput::epsilon, "epsilon"}}};
};
/// The names of the VarianceKind values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<VarianceKind> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "variance";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<VarianceKind>, 4> names = {
      {{VarianceKind::fixed_small, "fixed-small"},
       {VarianceKind::fixed_large, "fixed-large"},
       {VarianceKind::learned, "learned"},
       {VarianceKind::learned_range, "learned-range"}}};
};
/// The names of the LossKind values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<LossKind> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "loss";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<LossKind>, 4> names = {
      {{LossKind::simple, "simple"},
       {LossKind::kl, "kl"},
       {LossKind::rescaled_kl, "rescaled-kl"},
       {LossKind::hybrid, "hybrid"}}};
  /// Other names parse_enum accepts.
  static constexpr std::array<EnumName<LossKind>, 1> aliases = {{{LossKind::simple, "mse"}}};
};
/// The names of the SnrWeighting values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<SnrWeighting> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "snr-weighting";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<SnrWeighting>, 3> names = {
      {{SnrWeighting::none, "none"},
       {SnrWeighting::min_snr, "min-snr"},
       {SnrWeighting::soft_min_snr, "soft-min-snr"}}};
};
/// The names of the Decoder values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<Decoder> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "decoder";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<Decoder>, 2> names = {
      {{Decoder::continuous, "continuous"}, {Decoder::discretized, "discretized"}}};
};

/// The coefficients of the x_0, epsilon and v conversions at one step of a schedule.
template <class Real>
struct NoiseLevel {
  Real sqrt_ab;            ///< sqrt(ab_t)
  Real sqrt_one_minus_ab;  ///< sqrt(1 - ab_t)
  Real sqrt_recip_ab;      ///< sqrt(1 / ab_t)
  Real sqrt_recipm1_ab;    ///< sqrt(1 / ab_t - 1)
};

// Each equation of REFERENCE.md's "Model output parameterizations" in one named place.

/// x0^ = sqrt(1/ab_t) x_t - sqrt(1/ab_t - 1) eps^.
template <class Real>
constexpr Real x0_from_eps(const NoiseLevel<Real>& a, Real x_t, Real eps) noexcept {
  return a.sqrt_recip_ab * x_t - a.sqrt_recipm1_ab * eps;
}
/// eps^ = (sqrt(1/ab_t) x_t - x0^) / sqrt(1/ab_t - 1), the inverse of x0_from_eps. Where the
/// noise level rounds to zero in Real the noise is unidentifiable and 0 is returned (not 0/0);
/// at SNR = 0 (ab_t = 0, zero terminal SNR) x_t is the noise itself (not inf/inf).
template <class Real>
constexpr Real eps_from_x0(const NoiseLevel<Real>& a, Real x_t, Real x0) noexcept {
  if (a.sqrt_recip_ab > std::numeric_limits<Real>::max()) return x_t;
  return a.sqrt_recipm1_ab > Real(0) ? (a.sqrt_recip_ab * x_t - x0) / a.sqrt_recipm1_ab : Real(0);
}
/// x0^ = sqrt(ab_t) x_t - sqrt(1 - ab_t) v^ (Salimans & Ho 2022).
template <class Real>
constexpr Real x0_from_v(const NoiseLevel<Real>& a, Real x_t, Real v) noexcept {
  return a.sqrt_ab * x_t - a.sqrt_one_minus_ab * v;
}
/// The v target of a training pair: v = sqrt(ab_t) eps - sqrt(1 - ab_t) x_0.
template <class Real>
constexpr Real v_from_x0_eps(const NoiseLevel<Real>& a, Real x0, Real eps) noexcept {
  return a.sqrt_ab * eps - a.sqrt_one_minus_ab * x0;
}
/// The min-SNR weight on the per-sample MSE of the predicted quantity at a timestep with
/// alpha-bar `ab` (REFERENCE.md, "Training options"; Hang et al. 2023), with m = min(SNR, g)
/// (soft: SNR g / (SNR + g)) and SNR = ab / (1 - ab): eps m / SNR, x0 m, v m / (SNR + 1), so that
/// each weights the x_0 error by m. Written in ab and 1 - ab (both passed, 1 - ab accurate) so
/// that SNR = 0 and SNR = inf are finite: eps 1 and 0, x0 0 and g, v 0 and 0. 1 for none.
inline double snr_loss_weight(SnrWeighting weighting, ModelOutput output, double ab,
                              double one_minus_ab, double gamma) noexcept {
  const double g_noise = gamma * one_minus_ab;  // SNR <= g  <=>  ab <= g (1 - ab)
  switch (weighting) {
    case SnrWeighting::none:
      return 1.0;
    case SnrWeighting::min_snr: {
      const bool below = ab <= g_noise;
      switch (output) {
        case ModelOutput::epsilon:
          return below ? 1.0 : g_noise / ab;
        case ModelOutput::x0:
          return below ? ab / one_minus_ab : gamma;
        case ModelOutput::v:
          return below ? ab : g_noise;
      }
      break;
    }
    case SnrWeighting::soft_min_snr: {
      const double denominator = ab + g_noise;  // (SNR + g)(1 - ab) > 0
      switch (output) {
        case ModelOutput::epsilon:
          return g_noise / denominator;
        case ModelOutput::x0:
          return gamma * ab / denominator;
        case ModelOutput::v:
          return gamma * ab * one_minus_ab / denominator;
      }
      break;
    }
  }
  return 1.0;
}

/// The learned-range log-variance (Nichol & Dhariwal 2021, eq. 15): with frac = (r + 1) / 2,
/// frac log(beta_t) + (1 - frac) log(beta~_t) (beta~ with its clipped log).
template <class Real>
constexpr Real learned_range_log_variance(Real r, Real log_beta,
                                          Real log_posterior_variance) noexcept {
  const Real fraction = (r + Real(1)) / Real(2);
  return fraction * log_beta + (Real(1) - fraction) * log_posterior_variance;
}

/// Mean and log-variance of p(x_{t-1} | x_t) for a batch, with the x_0 and epsilon they imply.
template <class Real>
struct ReverseStep {
  Batch<Real> mean;          ///< mu_theta(x_t, t)
  Batch<Real> log_variance;  ///< per element (constant along a row unless the variance is learned)
  Batch<Real> pred_x0;       ///< x0^ after optional clipping
  Batch<Real> pred_eps;      ///< eps^ consistent with pred_x0
};

/// Per-sample training losses, all in the loss's own units (bits/dim for the bound term).
template <class Real>
struct TrainingLoss {
  Vector<Real> loss;  ///< the loss of each sample (min-SNR weighted, not importance weighted)
  Vector<Real> mse;   ///< the simple loss of each sample, unweighted (0 for kl losses)
  Vector<Real> vlb;   ///< L_t of each sample in bits per dim (for importance sampling, logging)
  Real mean = 0;      ///< (1/B) sum_i w_i loss_i: the value whose gradient is returned
};

/// The variational bound per sample, -log p(x_0) <= L_T + sum_{t>0} L_t + L_0, per dimension.
template <class Real>
struct VariationalBound {
  Batch<Real>
      terms;  ///< terms(i, s): L_s of sample i for each step s of the schedule; s = 0 is L_0
  Vector<Real> prior;  ///< L_T = KL(q(x_T | x_0) || N(0, I))
  Vector<Real> total;  ///< prior + sum over s of terms
  std::string unit;    ///< "bits/dim" (discretized decoder) or "nats/dim" (continuous decoder)
};

/// The Gaussian diffusion model of Ho et al. 2020 with the options of Nichol & Dhariwal 2021.
///
/// Timesteps passed in are ORIGINAL timesteps (schedule().timestep(i)); on a respaced schedule
/// only the kept ones are valid. Batches hold one sample per row.
template <class Real>
class GaussianDiffusion {
 public:
  /// Throws InvalidArgument for a loss that does not fit the variance (simple with a learned one,
  /// hybrid with a fixed one).
  explicit GaussianDiffusion(NoiseSchedule schedule, DiffusionOptions options = {})
      : schedule_(std::move(schedule)), options_(options) {
    const bool learned = learns_variance();
    if (options_.loss == LossKind::simple && learned) {
      throw InvalidArgument("loss", "simple",
                            "hybrid, kl or rescaled-kl when the variance is learned (the simple "
                            "loss gives the variance output no gradient)");
    }
    if (options_.loss == LossKind::hybrid && !learned) {
      throw InvalidArgument("loss", "hybrid",
                            "simple, kl or rescaled-kl with a fixed variance (hybrid only adds a "
                            "bound term for a learned variance)");
    }
    if (options_.output == ModelOutput::epsilon && schedule_.has_zero_terminal_snr()) {
      throw InvalidArgument("output", "eps",
                            "v (or x0) on a zero-terminal-SNR schedule (at SNR = 0 an epsilon "
                            "prediction gives x0^ = x_T / sqrt(ab) = x_T / 0)");
    }
    if (options_.snr_weighting != SnrWeighting::none) {
      detail::require(std::isfinite(options_.snr_gamma) && options_.snr_gamma > 0.0, "snr_gamma",
                      options_.snr_gamma, "a finite value > 0 (Hang et al. use 5)");
      detail::require(options_.loss == LossKind::simple || options_.loss == LossKind::hybrid,
                      "snr_weighting", to_string(options_.snr_weighting),
                      "none with the kl losses (it weights the simple loss: use simple or hybrid)");
      snr_weights_.resize(static_cast<std::size_t>(schedule_.size()));
      for (std::size_t s = 0; s < snr_weights_.size(); ++s) {
        const double one_minus_ab = schedule_.sqrt_one_minus_alphas_cumprod()[s] *
                                    schedule_.sqrt_one_minus_alphas_cumprod()[s];
        snr_weights_[s] =
            snr_loss_weight(options_.snr_weighting, options_.output, schedule_.alphas_cumprod()[s],
                            one_minus_ab, options_.snr_gamma);
      }
    }
  }

  /// The (possibly respaced) noise schedule.
  [[nodiscard]] const NoiseSchedule& schedule() const noexcept { return schedule_; }
  /// The options it was built with.
  [[nodiscard]] const DiffusionOptions& options() const noexcept { return options_; }
  /// The number of (kept) timesteps of the schedule.
  [[nodiscard]] int num_timesteps() const noexcept { return schedule_.size(); }
  /// True when the model also outputs the variance (learned or learned_range): 2x columns.
  [[nodiscard]] bool learns_variance() const noexcept {
    return options_.variance == VarianceKind::learned ||
           options_.variance == VarianceKind::learned_range;
  }
  /// Width of the model output for data of `data_dim` features.
  [[nodiscard]] Index model_output_dim(Index data_dim) const noexcept {
    return learns_variance() ? 2 * data_dim : data_dim;
  }
  /// The min-SNR weight of step index `s` on the simple loss (1 without weighting).
  [[nodiscard]] double snr_weight(std::size_t s) const noexcept {
    return snr_weights_.empty() ? 1.0 : snr_weights_[s];
  }
  /// The weight of the bound term in the hybrid loss: T/1000 rescaled, else 1.
  [[nodiscard]] Real hybrid_weight() const noexcept {
    return options_.rescale_hybrid ? static_cast<Real>(num_timesteps() / 1000.0) : Real(1);
  }

  // ---- forward process ----------------------------------------------------------------------

  /// x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise (Ho et al. 2020, eq. 4).
  void q_sample(const Batch<Real>& x0, std::span<const int> t, const Batch<Real>& noise,
                Batch<Real>& x_t) const {
    check_rows(x0, t, "x0");
    check_same_shape(noise, x0, "noise");
    x_t.resize(x0.rows(), x0.cols());
    detail::parallel_for(x0.rows(), 16 * x0.cols(), [&](Index i) {
      const std::size_t s = step_of(t[static_cast<std::size_t>(i)]);
      const Real a = static_cast<Real>(schedule_.sqrt_alphas_cumprod()[s]);
      const Real b = static_cast<Real>(schedule_.sqrt_one_minus_alphas_cumprod()[s]);
      x_t.row(i) = a * x0.row(i) + b * noise.row(i);
    });
  }

  /// Mean and (per-row) variance and log-variance of q(x_t | x_0).
  void q_mean_variance(const Batch<Real>& x0, std::span<const int> t, Batch<Real>& mean,
                       Vector<Real>& variance, Vector<Real>& log_variance) const {
    check_rows(x0, t, "x0");
    mean.resize(x0.rows(), x0.cols());
    variance.resize(x0.rows());
    log_variance.resize(x0.rows());
    detail::parallel_for(x0.rows(), 16 * x0.cols(), [&](Index i) {
      const std::size_t s = step_of(t[static_cast<std::size_t>(i)]);
      mean.row(i) = static_cast<Real>(schedule_.sqrt_alphas_cumprod()[s]) * x0.row(i);
      variance(i) = static_cast<Real>(1.0 - schedule_.alphas_cumprod()[s]);
      log_variance(i) = static_cast<Real>(schedule_.log_one_minus_alphas_cumprod()[s]);
    });
  }

  /// Mean and (per-row) variance and clipped log-variance of q(x_{t-1} | x_t, x_0)
  /// (Ho et al. 2020, eq. 6-7).
  void q_posterior_mean_variance(const Batch<Real>& x0, const Batch<Real>& x_t,
                                 std::span<const int> t, Batch<Real>& mean, Vector<Real>& variance,
                                 Vector<Real>& log_variance) const {
    check_rows(x0, t, "x0");
    check_same_shape(x_t, x0, "x_t");
    mean.resize(x0.rows(), x0.cols());
    variance.resize(x0.rows());
    log_variance.resize(x0.rows());
    detail::parallel_for(x0.rows(), 16 * x0.cols(), [&](Index i) {
      const std::size_t s = step_of(t[static_cast<std::size_t>(i)]);
      mean.row(i) = static_cast<Real>(schedule_.posterior_mean_coef1()[s]) * x0.row(i) +
                    static_cast<Real>(schedule_.posterior_mean_coef2()[s]) * x_t.row(i);
      variance(i) = static_cast<Real>(schedule_.posterior_variance()[s]);
      log_variance(i) = static_cast<Real>(schedule_.posterior_log_variance_clipped()[s]);
    });
  }

  // ---- reverse process ----------------------------------------------------------------------

  /// p(x_{t-1} | x_t) from a raw model output (x_t.rows() x model_output_dim(x_t.cols())).
  void p_mean_variance(const Batch<Real>& model_out, const Batch<Real>& x_t, std::span<const int> t,
                       ReverseStep<Real>& out) const {
    check_rows(x_t, t, "x_t");
    check_model_output(model_out, x_t);
    const Index dim = x_t.cols();
    for (Batch<Real>* m : {&out.mean, &out.log_variance, &out.pred_x0, &out.pred_eps}) {
      m->resize(x_t.rows(), dim);
    }
    detail::parallel_for(x_t.rows(), 16 * x_t.cols(), [&](Index i) {
      const std::size_t s = step_of(t[static_cast<std::size_t>(i)]);
      for (Index j = 0; j < dim; ++j) {
        const Element e = element(model_out, x_t, i, j, s, options_.clip_x0);
        out.pred_x0(i, j) = e.x0;
        out.pred_eps(i, j) = e.eps;
        out.mean(i, j) = e.mean;
        out.log_variance(i, j) = e.log_variance;
      }
    });
  }

  // ---- training ------------------------------------------------------------------------------

  /// The training loss of a batch and d(mean loss)/d(model_out) in `grad_out`.
  ///
  /// x_t must be q_sample(x0, t, noise). The mean is (1/B) sum_i w_i loss_i with w_i = weights[i]
  /// (importance sampling; all 1 when `weights` is empty), and grad_out is its gradient with
  /// respect to each element of model_out. With min-SNR weighting the MSE term of loss_i is
  /// snr_weight(t_i) mse_i (the gradient includes it). Allocates nothing when called again with
  /// the same shapes.
  void training_loss(const Batch<Real>& model_out, const Batch<Real>& x0, const Batch<Real>& x_t,
                     const Batch<Real>& noise, std::span<const int> t, TrainingLoss<Real>& result,
                     Batch<Real>& grad_out, std::span<const Real> weights = {}) const {
    check_rows(x0, t, "x0");
    check_same_shape(x_t, x0, "x_t");
    check_same_shape(noise, x0, "noise");
    check_model_output(model_out, x0);
    detail::require(weights.empty() || static_cast<Index>(weights.size()) == x0.rows(),
                    "weights.size()", weights.size(), [&] {
                      return "0 or one weight per row of x0 (" + std::to_string(x0.rows()) + ")";
                    });
    const Index n = x0.rows(), dim = x0.cols();
    result.loss.resize(n);
    result.mse.resize(n);
    result.vlb.resize(n);
    grad_out.resize(model_out.rows(), model_out.cols());
    const Real bound_scale = Real(1) / (static_cast<Real>(dim) * std::numbers::ln2_v<Real>);
    const LossKind kind = options_.loss;
    const Real bound_weight = kind == LossKind::hybrid        ? hybrid_weight()
                              : kind == LossKind::rescaled_kl ? static_cast<Real>(num_timesteps())
                                                              : Real(1);
    detail::parallel_for(n, 32 * dim, [&](Index i) {
      const std::size_t s = step_of(t[static_cast<std::size_t>(i)]);
      const Real w =
          (weights.empty() ? Real(1) : weights[static_cast<std::size_t>(i)]) / static_cast<Real>(n);
      const NoiseLevel<Real> level = noise_level(s);
      const Real snr_w = static_cast<Real>(snr_weight(s));  // exactly 1 without weighting
      Real mse = 0, vlb = 0;
      for (Index j = 0; j < dim; ++j) {
        const Element e = element(model_out, x_t, i, j, s, /*clip=*/false);
        const BoundTerm b = bound_term(e, x0(i, j), x_t(i, j), s);
        vlb += b.value;
        Real d_mean_out = 0, d_var_out = 0;
        if (kind == LossKind::simple || kind == LossKind::hybrid) {
          const Real target = options_.output == ModelOutput::epsilon ? noise(i, j)
                              : options_.output == ModelOutput::x0
                                  ? x0(i, j)
                                  : v_from_x0_eps(level, x0(i, j), noise(i, j));
          const Real diff = model_out(i, j) - target;
          mse += diff * diff;
          d_mean_out = snr_w * (Real(2) * diff / static_cast<Real>(dim));
        }
        if (kind != LossKind::simple) {
          const Real scale = bound_weight * bound_scale;
          if (kind != LossKind::hybrid) d_mean_out += scale * b.d_mean * e.d_mean_d_out;
          d_var_out = scale * b.d_log_variance * e.d_log_variance_d_out;
        }
        grad_out(i, j) = w * d_mean_out;
        if (learns_variance()) grad_out(i, dim + j) = w * d_var_out;
      }
      result.mse(i) = mse / static_cast<Real>(dim);
      result.vlb(i) = vlb * bound_scale;
      const Real weighted_mse = snr_w * result.mse(i);
      result.loss(i) = kind == LossKind::simple   ? weighted_mse
                       : kind == LossKind::hybrid ? weighted_mse + bound_weight * result.vlb(i)
                                                  : bound_weight * result.vlb(i);
      if (kind == LossKind::kl || kind == LossKind::rescaled_kl) result.mse(i) = 0;
    });
    Real total = 0;
    for (Index i = 0; i < n; ++i) {
      total += (weights.empty() ? Real(1) : weights[static_cast<std::size_t>(i)]) * result.loss(i);
    }
    result.mean = total / static_cast<Real>(n);
  }

  /// L_t of each row in the bound's unit per dim, given a model output at (x_t, t): the KL of
  /// the posterior to p for t > 0, the decoder NLL for the first step.
  void bound_terms(const Batch<Real>& model_out, const Batch<Real>& x0, const Batch<Real>& x_t,
                   std::span<const int> t, Vector<Real>& terms) const {
    check_rows(x0, t, "x0");
    check_same_shape(x_t, x0, "x_t");
    check_model_output(model_out, x0);
    terms.resize(x0.rows());
    const Real unit = unit_scale(x0.cols());
    detail::parallel_for(x0.rows(), 16 * x0.cols(), [&](Index i) {
      const std::size_t s = step_of(t[static_cast<std::size_t>(i)]);
      Real sum = 0;
      for (Index j = 0; j < x0.cols(); ++j) {
        sum +=
            bound_term(element(model_out, x_t, i, j, s, options_.clip_x0), x0(i, j), x_t(i, j), s)
                .value;
      }
      terms(i) = sum * unit;
    });
  }

  /// L_T = KL(q(x_T | x_0) || N(0, I)) per row, in the bound's unit per dim. A large value means
  /// the schedule does not reach noise and sampling starts from the wrong distribution.
  void prior_term(const Batch<Real>& x0, Vector<Real>& prior) const {
    const std::size_t last = static_cast<std::size_t>(num_timesteps() - 1);
    const Real sqrt_ab = static_cast<Real>(schedule_.sqrt_alphas_cumprod()[last]);
    const Real log_var = static_cast<Real>(schedule_.log_one_minus_alphas_cumprod()[last]);
    const Real unit = unit_scale(x0.cols());
    prior.resize(x0.rows());
    detail::parallel_for(x0.rows(), 16 * x0.cols(), [&](Index i) {
      Real sum = 0;
      for (Index j = 0; j < x0.cols(); ++j) {
        sum += normal_kl(sqrt_ab * x0(i, j), log_var, Real(0), Real(0));
      }
      prior(i) = sum * unit;
    });
  }

  /// The full variational bound of each row of x0 under `model`: one forward-noise draw per step
  /// (stream forward_noise, sample first_sample + i, step = original timestep, so any split of the
  /// batch gives the same numbers). Costs one model evaluation per step. `on_step(done, total)`
  /// is called after each step (pass a no-op for none).
  template <class M, class OnStep>
  VariationalBound<Real> variational_bound(M& model, const Batch<Real>& x0, const CounterRng& rng,
                                           std::uint32_t first_sample, OnStep&& on_step) const {
    detail::check_denoiser<M, Real>();
    detail::InferenceMode<M> inference(model);
    VariationalBound<Real> bound;
    bound.unit = options_.decoder == Decoder::discretized ? "bits/dim" : "nats/dim";
    const Index n = x0.rows();
    bound.terms.resize(n, num_timesteps());
    std::vector<int> t(static_cast<std::size_t>(n));
    Batch<Real> noise(n, x0.cols()), x_t, model_out;
    Vector<Real> column;
    for (int s = num_timesteps() - 1; s >= 0; --s) {
      const int timestep = schedule_.timestep(s);
      std::fill(t.begin(), t.end(), timestep);
      rng.fill_normal(noise, stream::forward_noise, first_sample,
                      static_cast<std::uint32_t>(timestep));
      q_sample(x0, t, noise, x_t);
      model.predict(x_t, std::span<const int>(t), model_out);
      bound_terms(model_out, x0, x_t, t, column);
      bound.terms.col(s) = column;
      on_step(num_timesteps() - s, num_timesteps());
    }
    prior_term(x0, bound.prior);
    bound.total = bound.prior + bound.terms.rowwise().sum();
    return bound;
  }

  /// The variational bound without a progress callback.
  template <class M>
  VariationalBound<Real> variational_bound(M& model, const Batch<Real>& x0, const CounterRng& rng,
                                           std::uint32_t first_sample = 0) const {
    return variational_bound(model, x0, rng, first_sample, [](int, int) {});
  }

  /// The x_0 / epsilon / v conversion coefficients of step index `s` of the schedule (not an
  /// original timestep: see NoiseSchedule::index_of).
  [[nodiscard]] NoiseLevel<Real> noise_level(std::size_t s) const noexcept {
    return {static_cast<Real>(schedule_.sqrt_alphas_cumprod()[s]),
            static_cast<Real>(schedule_.sqrt_one_minus_alphas_cumprod()[s]),
            static_cast<Real>(schedule_.sqrt_recip_alphas_cumprod()[s]),
            static_cast<Real>(schedule_.sqrt_recipm1_alphas_cumprod()[s])};
  }

 private:
  // Argument checks of the public functions.
  /// Throws unless t has one entry per row of `batch` and every entry is a valid timestep.
  void check_rows(const Batch<Real>& batch, std::span<const int> t, std::string_view name) const {
    detail::require(static_cast<Index>(t.size()) == batch.rows(), "t.size()", t.size(), [&] {
      return "one timestep per row of " + std::string(name) + " (" + std::to_string(batch.rows()) +
             ")";
    });
    for (const int timestep : t) (void)schedule_.index_of(timestep);
  }
  void check_model_output(const Batch<Real>& model_out, const Batch<Real>& x) const {
    if (model_out.rows() != x.rows() || model_out.cols() != model_output_dim(x.cols())) {
      detail::require_shape(
          false, "model_out", model_out.rows(), model_out.cols(),
          std::to_string(x.rows()) + "x" + std::to_string(model_output_dim(x.cols())) +
              " (rows of x_t; " +
              (learns_variance() ? "2x the data dim for a learned variance)" : "the data dim)"));
    }
  }
  static void check_same_shape(const Batch<Real>& a, const Batch<Real>& reference,
                               std::string_view name) {
    if (a.rows() != reference.rows() || a.cols() != reference.cols()) {
      detail::require_shape(false, name, a.rows(), a.cols(),
                            std::to_string(reference.rows()) + "x" +
                                std::to_string(reference.cols()) + " (the shape of x0)");
    }
  }

  /// Step index of an original timestep already validated by check_rows.
  [[nodiscard]] std::size_t step_of(int timestep) const noexcept {
    return static_cast<std::size_t>(schedule_.is_respaced() ? schedule_.index_of(timestep)
                                                            : timestep);
  }

  /// Everything p(x_{t-1}|x_t) needs at one element, and the derivatives of the mean and
  /// log-variance with respect to the raw outputs they come from.
  struct Element {
    Real x0, eps, mean, log_variance, d_mean_d_out, d_log_variance_d_out;
  };

  /// p(x_{t-1} | x_t) at element (i, j) of step s, composed from the named conversions; `clip`
  /// clips x0^ to [-1, 1] (the reverse process the samplers run; training losses never clip).
  Element element(const Batch<Real>& model_out, const Batch<Real>& x_t, Index i, Index j,
                  std::size_t s, bool clip) const {
    const Index dim = x_t.cols();
    const Real out = model_out(i, j), x = x_t(i, j);
    const NoiseLevel<Real> level = noise_level(s);
    Element e{};
    Real d_x0_d_out = 1;
    switch (options_.output) {
      case ModelOutput::epsilon:
        e.x0 = x0_from_eps(level, x, out);
        d_x0_d_out = -level.sqrt_recipm1_ab;
        break;
      case ModelOutput::x0:
        e.x0 = out;
        break;
      case ModelOutput::v:
        e.x0 = x0_from_v(level, x, out);
        d_x0_d_out = -level.sqrt_one_minus_ab;
        break;
    }
    const bool clipped = clip && (e.x0 > Real(1) || e.x0 < Real(-1));
    if (clipped) {
      e.x0 = e.x0 > Real(1) ? Real(1) : Real(-1);
      d_x0_d_out = 0;
    }
    e.eps = options_.output == ModelOutput::epsilon && !clipped ? out : eps_from_x0(level, x, e.x0);
    const Real coef1 = static_cast<Real>(schedule_.posterior_mean_coef1()[s]);
    e.mean = coef1 * e.x0 + static_cast<Real>(schedule_.posterior_mean_coef2()[s]) * x;
    e.d_mean_d_out = coef1 * d_x0_d_out;
    const Real small = static_cast<Real>(schedule_.posterior_log_variance_clipped()[s]);
    switch (options_.variance) {
      case VarianceKind::fixed_small:
        e.log_variance = small;
        break;
      case VarianceKind::fixed_large:
        e.log_variance = static_cast<Real>(schedule_.fixed_large_log_variance()[s]);
        break;
      case VarianceKind::learned:
        e.log_variance = model_out(i, dim + j);
        e.d_log_variance_d_out = 1;
        break;
      case VarianceKind::learned_range: {
        const Real large = static_cast<Real>(std::log(schedule_.betas()[s]));
        e.log_variance = learned_range_log_variance(model_out(i, dim + j), large, small);
        e.d_log_variance_d_out = (large - small) / Real(2);
        break;
      }
    }
    return e;
  }

  struct BoundTerm {
    Real value, d_mean, d_log_variance;  // nats, for one element
  };

  /// KL(q(x_{t-1}|x_t,x_0) || p) for s > 0, decoder NLL -log p(x_0|x_1) for s = 0, in nats.
  BoundTerm bound_term(const Element& e, Real x0, Real x_t, std::size_t s) const {
    if (s == 0) {
      const NllWithGrad<Real> nll =
          options_.decoder == Decoder::discretized
              ? discretized_gaussian_nll_with_grad(x0, e.mean, e.log_variance)
              : gaussian_nll_with_grad(x0, e.mean, e.log_variance);
      return {nll.value, nll.d_mean, nll.d_log_var};
    }
    const Real true_mean = static_cast<Real>(schedule_.posterior_mean_coef1()[s]) * x0 +
                           static_cast<Real>(schedule_.posterior_mean_coef2()[s]) * x_t;
    const Real true_log_var = static_cast<Real>(schedule_.posterior_log_variance_clipped()[s]);
    const KlWithGrad<Real> kl =
        normal_kl_with_grad(true_mean, true_log_var, e.mean, e.log_variance);
    return {kl.value, kl.d_mean2, kl.d_log_var2};
  }

  /// Converts a sum over dims of nats into the bound's unit per dim.
  Real unit_scale(Index dim) const {
    const Real per_dim = Real(1) / static_cast<Real>(dim);
    return options_.decoder == Decoder::discretized ? per_dim / std::numbers::ln2_v<Real> : per_dim;
  }

  NoiseSchedule schedule_;
  DiffusionOptions options_;
  std::vector<double> snr_weights_;  // per step index; empty without min-SNR weighting
};

}  // namespace ddpm
