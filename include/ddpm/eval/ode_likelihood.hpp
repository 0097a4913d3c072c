// SPDX-License-Identifier: MIT
// Exact log-likelihood by the probability-flow ODE (Song et al. 2021, appendix D): the data point
// carried up the deterministic sampler's ODE to the top noise level, the log-density change
// integrated from the divergence of the drift (exact, or Hutchinson's estimator for images), and
// bits/dim of dequantized 8-bit images.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numbers>
#include <numeric>
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
#include "ddpm/diffusion.hpp"
#include "ddpm/eval/dormand_prince.hpp"
#include "ddpm/gaussian_mixture.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

// ---- what a model needs for the divergence
// -------------------------------------------------------

/// A ContinuousTimeDenoiser whose input Jacobian can be applied from the left: the bundled
/// networks (nn::Mlp, nn::UNet) through their input gradients.
///
/// Requirements (besides ContinuousTimeDenoiser's):
///   1. `m.linearize(x_t, t, out)` (`std::span<const double> t`): out as predict() in inference
///      (dropout off), keeping what the products below need, whatever the training mode;
///   2. `m.input_vjp(cotangent, grad_x)`: grad_x.row(i) = cotangent.row(i) d out.row(i) /
///      d x_t.row(i) at the last linearize(), any number of times per linearize(); parameter
///      gradients are left as they were.
template <class M, class Real>
concept InputVjpDenoiser = ContinuousTimeDenoiser<M, Real> &&
    requires(M& m, const Batch<Real>& x_t, std::span<const double> t, Batch<Real>& out,
             const Batch<Real>& cotangent, Batch<Real>& grad_x) {
  m.linearize(x_t, t, out);
  m.input_vjp(cotangent, grad_x);
};

/// A denoiser that gives its whole input Jacobian in closed form (GaussianMixtureDenoiser).
///
/// Requirements: `m.predict_with_jacobian(x_t, t, out, jac)` (`std::span<const double> t`): out
/// as predict(), and jac.row(i) = d out.row(i) / d x_t.row(i), row-major (output_dim x dim).
template <class M, class Real>
concept InputJacobianDenoiser = requires(M& m, const Batch<Real>& x_t, std::span<const double> t,
                                         Batch<Real>& out, Batch<Real>& jac) {
  m.predict_with_jacobian(x_t, t, out, jac);
};

// ---- options and result
// --------------------------------------------------------------------------

/// How the divergence of the drift is computed.
enum class Divergence {
  automatic,   ///< exact up to kExactDivergenceMaxDim dimensions, Hutchinson above
  exact,       ///< the trace of the Jacobian: dim input-gradient passes (1 with a closed form)
  hutchinson,  ///< E[z^T J z], Rademacher z: `probes` passes, unbiased
};

/// The names of the Divergence values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<Divergence> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "divergence";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<Divergence>, 3> names = {
      {{Divergence::automatic, "auto"},
       {Divergence::exact, "exact"},
       {Divergence::hutchinson, "hutchinson"}}};
};

/// Divergence::automatic is exact up to this many dimensions: d passes cost little beside the
/// variance Hutchinson's estimator adds to a 2D or 3D point's NLL (and cost too much for images).
inline constexpr Index kExactDivergenceMaxDim = 16;

/// Options of ode_likelihood().
struct OdeLikelihoodOptions {
  double rtol = 1e-5;                             ///< Dormand-Prince relative tolerance, > 0
  double atol = 1e-5;                             ///< Dormand-Prince absolute tolerance, > 0
  Divergence divergence = Divergence::automatic;  ///< exact (d passes) or Hutchinson; automatic:
                                                  ///< exact up to kExactDivergenceMaxDim
  /// Hutchinson probes per evaluation (>= 1). Each row's probes are fixed along its whole path
  /// (draws of stream::probes keyed by the row's global sample index), so the ODE stays smooth.
  int probes = 1;
  int max_steps = 100000;  ///< per row, accepted and rejected steps together
  /// log density of the VP state x_T at the top level s_max. Empty: N(0, I), where the VP
  /// samplers start. mixture_prior() gives the exact one of a Gaussian mixture.
  std::function<double(std::span<const double> x_T)> log_prior;
};

/// ode_likelihood()'s answer, per row and its terms: log p(x) = change_of_variables + log_prior
/// + divergence.
struct OdeLikelihood {
  std::vector<double> nll;         ///< -log p(x), nats per point (not per dimension)
  std::vector<double> log_prior;   ///< log p_max(x_T)
  std::vector<double> divergence;  ///< the integral of div f along the path
  double change_of_variables = 0;  ///< d log alpha(s_min): the data point is x~ = x / alpha
  std::vector<int> evaluations;    ///< drift evaluations per row (NFE; each with its divergence)
  Batch<double> x_end;             ///< the VP state x_T at s_max of each row
  Index dim = 0;                   ///< data dimension d
  ///@{
  /// The noise levels integrated between.
  double s_min = 0, s_max = 0;
  ///@}

  /// Mean NLL in nats per dimension.
  [[nodiscard]] double mean_nll_per_dim() const {
    if (nll.empty()) return 0.0;
    return std::accumulate(nll.begin(), nll.end(), 0.0) /
           (static_cast<double>(nll.size()) * static_cast<double>(dim));
  }
  /// Mean drift evaluations per row.
  [[nodiscard]] double mean_evaluations() const {
    if (evaluations.empty()) return 0.0;
    return std::accumulate(evaluations.begin(), evaluations.end(), 0.0) /
           static_cast<double>(evaluations.size());
  }
};

// ---- the exact answers of a Gaussian mixture
// -------------------------------------------------------

/// log sum_k pi_k N(x; m_k, (s_k^2 + s^2) I): the exact log density of mixture data with noise of
/// level s added (x~ = x_0 + s eps), so s = s_min gives what ode_likelihood() estimates.
inline double mixture_log_density(const GaussianMixture& mixture, std::span<const double> x,
                                  double s) {
  const Index dim = mixture.dim(), k = mixture.components();
  detail::require(static_cast<Index>(x.size()) == dim, "x.size()", x.size(), "the mixture's dim");
  const double total_weight = std::accumulate(mixture.weights.begin(), mixture.weights.end(), 0.0);
  double max_log = -INFINITY;
  std::vector<double> terms(static_cast<std::size_t>(k));
  for (Index c = 0; c < k; ++c) {
    const auto ci = static_cast<std::size_t>(c);
    const double var = mixture.stds[ci] * mixture.stds[ci] + s * s;
    double sq = 0.0;
    for (Index j = 0; j < dim; ++j) {
      const double d = x[static_cast<std::size_t>(j)] - mixture.means(c, j);
      sq += d * d;
    }
    terms[ci] = std::log(mixture.weights[ci] / total_weight) -
                0.5 * static_cast<double>(dim) * std::log(2.0 * std::numbers::pi * var) -
                0.5 * sq / var;
    max_log = std::max(max_log, terms[ci]);
  }
  double sum = 0.0;
  for (const double term : terms) sum += std::exp(term - max_log);
  return max_log + std::log(sum);
}

/// The exact log density of the VP state x_T at level s of mixture data, sum_k pi_k N(x; alpha
/// m_k, (ab s_k^2 + 1 - ab) I) with ab = 1 / (1 + s^2): OdeLikelihoodOptions::log_prior for an
/// exact comparison (REFERENCE.md, "Probability-flow ODE likelihood").
inline std::function<double(std::span<const double>)> mixture_prior(GaussianMixture mixture,
                                                                    double s) {
  return [mixture = std::move(mixture), s](std::span<const double> x_T) {
    // x = alpha x~: log p(x) = log p(x~) - d log alpha.
    const double alpha = 1.0 / std::sqrt(1.0 + s * s);
    std::vector<double> scaled(x_T.begin(), x_T.end());
    for (double& v : scaled) v /= alpha;
    return mixture_log_density(mixture, scaled, s) -
           static_cast<double>(x_T.size()) * std::log(alpha);
  };
}

// ---- dequantization and bits/dim
// ------------------------------------------------------------------

/// Uniform dequantization of 8-bit data in [-1, 1] (bins 2/255 wide): x + (2/255)(u - 1/2), u ~
/// U[0, 1) drawn from (stream::dequantize, first_sample + row, 0, column).
template <class Real>
Batch<Real> dequantize(const Batch<Real>& images, const CounterRng& rng,
                       std::uint32_t first_sample = 0) {
  Batch<Real> out(images.rows(), images.cols());
  const Index cols = images.cols();
  detail::parallel_for(images.rows(), 8 * cols, [&](Index i) {
    for (Index j = 0; j < cols; ++j) {
      const double u = rng.uniform(stream::dequantize, first_sample + static_cast<std::uint32_t>(i),
                                   0, static_cast<std::uint32_t>(j));
      out(i, j) = static_cast<Real>(static_cast<double>(images(i, j)) + (2.0 / 255.0) * (u - 0.5));
    }
  });
  return out;
}

/// Bits per dimension of an 8-bit point from the NLL (nats) of its dequantized version:
/// -log P(x) <= -log p(x_deq) + d log(127.5) (bins 2/255 wide), divided by d ln 2.
inline double bits_per_dim(double nll_dequantized, Index dim) {
  const double d = static_cast<double>(dim);
  return (nll_dequantized + d * std::log(127.5)) / (d * std::numbers::ln2);
}

namespace detail {

/// The drift of the probability-flow ODE and its divergence, for dormand_prince(): the state of
/// a row is [x (VP, dim), log-density integral], the time u = log s. With alpha = 1 / sqrt(1 +
/// s^2), sigma = s alpha and eps^ the model's epsilon (converted from x0 or v):
///   dx/du = sigma (eps^(x, t(s)) - sigma x),   div_x = sigma (tr d eps^/dx - sigma d).
/// (EDM: dx~/ds = (x~ - D) / s = eps^ with x~ = x / alpha; x = alpha x~ and du = ds / s.)
template <class Real, class M>
class PfOdeDrift {
 public:
  PfOdeDrift(M& model, const NoiseSchedule& schedule, ModelOutput output, Index dim, bool exact,
             int probes, const CounterRng& rng, std::uint32_t first_sample)
      : model_(model),
        schedule_(schedule),
        output_(output),
        dim_(dim),
        exact_(exact),
        probes_(probes),
        rng_(rng),
        first_sample_(first_sample) {}

  void operator()(std::span<const Index> rows, std::span<const double> u, const Batch<double>& y,
                  Batch<double>& dy) {
    const auto n = static_cast<Index>(rows.size());
    const Index d = dim_;
    x_.resize(n, d);
    t_.resize(rows.size());
    alpha_.resize(rows.size());
    sigma_.resize(rows.size());
    for (Index r = 0; r < n; ++r) {
      const auto ri = static_cast<std::size_t>(r);
      const double s = std::exp(u[ri]);
      alpha_[ri] = 1.0 / std::sqrt(1.0 + s * s);
      sigma_[ri] = s * alpha_[ri];
      t_[ri] = schedule_.timestep_at_level(s);
    }
    for (Index r = 0; r < n; ++r) {
      for (Index j = 0; j < d; ++j) x_(r, j) = static_cast<Real>(y(r, j));
    }
    // quad[r]: sum over passes of z^T J z / passes, and zz[r]: of z^T z / passes, for
    // tr(J_eps) ~ c_I zz + c_J quad (exact: unit vectors, so zz = d and quad = tr J).
    quad_.assign(rows.size(), 0.0);
    zz_.assign(rows.size(), 0.0);
    const std::span<const double> t(t_);
    if constexpr (InputJacobianDenoiser<M, Real>) {
      model_.predict_with_jacobian(x_, t, out_, jac_);
      detail::parallel_for(n, 4 * d * d * probes_, [&](Index r) {
        const auto ri = static_cast<std::size_t>(r);
        if (exact_) {
          for (Index j = 0; j < d; ++j) quad_[ri] += static_cast<double>(jac_(r, j * d + j));
          zz_[ri] = static_cast<double>(d);
          return;
        }
        for (int p = 0; p < probes_; ++p) {
          double q = 0.0;
          for (Index a = 0; a < d; ++a) {
            double row_dot = 0.0;
            for (Index b = 0; b < d; ++b) {
              row_dot += static_cast<double>(jac_(r, a * d + b)) * probe(rows[ri], p, b);
            }
            q += probe(rows[ri], p, a) * row_dot;
          }
          quad_[ri] += q / probes_;
        }
        zz_[ri] = static_cast<double>(d);
      });
    } else {
      static_assert(InputVjpDenoiser<M, Real>,
                    "ode_likelihood needs the model's input Jacobian: members `linearize(x_t, "
                    "std::span<const double> t, out)` and `input_vjp(cotangent, grad_x)` "
                    "(InputVjpDenoiser, as nn::Mlp and nn::UNet have), or "
                    "`predict_with_jacobian(x_t, t, out, jac)` (InputJacobianDenoiser)");
      model_.linearize(x_, t, out_);
      const int passes = exact_ ? static_cast<int>(d) : probes_;
      cotangent_.setZero(n, out_.cols());
      for (int p = 0; p < passes; ++p) {
        detail::parallel_for(n, 4 * d, [&](Index r) {
          for (Index j = 0; j < d; ++j) {
            cotangent_(r, j) = static_cast<Real>(
                exact_ ? (j == p ? 1.0 : 0.0) : probe(rows[static_cast<std::size_t>(r)], p, j));
          }
        });
        model_.input_vjp(cotangent_, grad_x_);
        detail::parallel_for(n, 4 * d, [&](Index r) {
          const auto ri = static_cast<std::size_t>(r);
          if (exact_) {
            quad_[ri] += static_cast<double>(grad_x_(r, p));
            return;
          }
          double q = 0.0;
          for (Index j = 0; j < d; ++j) {
            q += static_cast<double>(grad_x_(r, j)) * static_cast<double>(cotangent_(r, j));
          }
          quad_[ri] += q / passes;
        });
      }
      for (double& v : zz_) v = static_cast<double>(d);  // Rademacher and unit vectors alike
    }
    dy.resize(n, d + 1);
    detail::parallel_for(n, 8 * d, [&](Index r) {
      const auto ri = static_cast<std::size_t>(r);
      const double alpha = alpha_[ri], sigma = sigma_[ri];
      // eps^ = out (eps), (x - alpha x0^) / sigma (x0), sigma x + alpha v^ (v), and its trace.
      const double c_identity = output_ == ModelOutput::epsilon ? 0.0
                                : output_ == ModelOutput::x0    ? 1.0 / sigma
                                                                : sigma;
      const double c_jacobian = output_ == ModelOutput::epsilon ? 1.0
                                : output_ == ModelOutput::x0    ? -alpha / sigma
                                                                : alpha;
      for (Index j = 0; j < d; ++j) {
        const double x = y(r, j), o = static_cast<double>(out_(r, j));
        const double eps = c_identity * x + c_jacobian * o;
        dy(r, j) = sigma * (eps - sigma * x);
      }
      const double trace = c_identity * zz_[ri] + c_jacobian * quad_[ri];
      dy(r, d) = sigma * (trace - sigma * static_cast<double>(d));
    });
  }

 private:
  // Rademacher component j of probe p of row `row`: fixed for the row's whole path.
  [[nodiscard]] double probe(Index row, int p, Index j) const {
    const double u = rng_.uniform(stream::probes, first_sample_ + static_cast<std::uint32_t>(row),
                                  static_cast<std::uint32_t>(p), static_cast<std::uint32_t>(j));
    return u < 0.5 ? -1.0 : 1.0;
  }

  M& model_;
  const NoiseSchedule& schedule_;
  ModelOutput output_;
  Index dim_;
  bool exact_;
  int probes_;
  CounterRng rng_;
  std::uint32_t first_sample_;
  Batch<Real> x_, out_, jac_, cotangent_, grad_x_;
  std::vector<double> t_, alpha_, sigma_, quad_, zz_;
};

inline void check_options(const OdeLikelihoodOptions& o) {
  require(o.probes >= 1, "probes", o.probes, ">= 1 Hutchinson probe per evaluation");
  DormandPrinceOptions dp;
  dp.rtol = o.rtol;
  dp.atol = o.atol;
  dp.max_steps = o.max_steps;
  check_options(dp);
}

}  // namespace detail

/// -log p(x) of each row of x under the probability-flow ODE of `model` (Song et al. 2021): in
/// the EDM variables of REFERENCE.md dx~/ds = (x~ - D(x~, s)) / s, integrated here in the
/// equivalent VP form x = alpha x~ over u = log s from s_min = level(0) to s_max = level(T-1)
/// (level(T-2) with zero terminal SNR, whose level(T-1) is inf)
/// with dormand_prince() (each row its own steps; row i's result depends only on row i and
/// first_sample + i, so it is the same bits in any batch and on any thread count).
///
/// The data point is taken as x~ at s_min (x_0 plus noise of level s_min, the smallest the model
/// knows): log p(x) = d log alpha(s_min) + log p_max(x_T) + integral of div f. The prior p_max is
/// N(0, I) on x_T unless options.log_prior says otherwise. The model must be a
/// ContinuousTimeDenoiser with an input Jacobian (InputVjpDenoiser or InputJacobianDenoiser); it
/// is switched to inference for the call. `rng` draws the Hutchinson probes.
/// \code
///   ddpm::OdeLikelihood nll = ddpm::ode_likelihood(model, diffusion, points, ddpm::CounterRng(1));
///   double nats_per_dim = nll.mean_nll_per_dim();
/// \endcode
template <class Real, class M>
OdeLikelihood ode_likelihood(M& model, const GaussianDiffusion<Real>& diffusion,
                             const Batch<Real>& x, const CounterRng& rng,
                             const OdeLikelihoodOptions& options = {},
                             std::uint32_t first_sample = 0) {
  detail::check_denoiser<M, Real>();
  detail::check_options(options);
  const NoiseSchedule& schedule = diffusion.schedule();
  const Index n = x.rows(), d = x.cols();
  detail::require(d >= 1, "x", d, "at least one column");
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < d; ++j) {
      detail::require(std::isfinite(static_cast<double>(x(i, j))), "x", x(i, j),
                      "finite data points");
    }
  }
  OdeLikelihood result;
  result.dim = d;
  result.s_min = schedule.level(0);
  // A zero-terminal-SNR schedule ends at s = inf: integrate to its last finite level, where
  // x_T is N(0, I) up to a data term of size alpha (6.5e-5 for the rescaled linear T = 1000).
  const int top = schedule.size() - (schedule.has_zero_terminal_snr() ? 2 : 1);
  result.s_max = top >= 0 ? schedule.level(top) : 0.0;
  detail::require(
      top >= 1 && std::isfinite(result.s_max) && result.s_max > result.s_min, "schedule top level",
      result.s_max,
      "a finite s_max above s_min (two finite levels at least; three with zero terminal SNR)");
  const bool exact = options.divergence == Divergence::exact ||
                     (options.divergence == Divergence::automatic && d <= kExactDivergenceMaxDim);
  detail::InferenceMode<M> inference(model);
  detail::PfOdeDrift<Real, M> drift(model, schedule, diffusion.options().output, d, exact,
                                    options.probes, rng, first_sample);

  const double alpha_min = 1.0 / std::sqrt(1.0 + result.s_min * result.s_min);
  Batch<double> state(n, d + 1);
  state.leftCols(d) = x.template cast<double>() * alpha_min;
  state.col(d).setZero();
  DormandPrinceOptions dp;
  dp.rtol = options.rtol;
  dp.atol = options.atol;
  dp.max_steps = options.max_steps;
  const DormandPrinceStats stats =
      dormand_prince(drift, state, std::log(result.s_min), std::log(result.s_max), dp);

  result.change_of_variables = static_cast<double>(d) * std::log(alpha_min);
  result.x_end = state.leftCols(d);
  result.evaluations = stats.evaluations;
  result.nll.resize(static_cast<std::size_t>(n));
  result.log_prior.resize(static_cast<std::size_t>(n));
  result.divergence.resize(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const auto ii = static_cast<std::size_t>(i);
    const std::span<const double> x_T(result.x_end.row(i).data(), static_cast<std::size_t>(d));
    double log_prior = 0.0;
    if (options.log_prior) {
      log_prior = options.log_prior(x_T);
    } else {
      double sq = 0.0;
      for (const double v : x_T) sq += v * v;
      log_prior = -0.5 * sq - 0.5 * static_cast<double>(d) * std::log(2.0 * std::numbers::pi);
    }
    result.log_prior[ii] = log_prior;
    result.divergence[ii] = state(i, d);
    result.nll[ii] = -(result.change_of_variables + log_prior + state(i, d));
  }
  return result;
}

/// ode_likelihood() of 8-bit images in [-1, 1], uniformly dequantized (dequantize(), keyed by
/// first_sample + row), with the NLL of each row turned into bits per dimension (bits_per_dim()).
/// Returns the likelihood of the dequantized images and writes bits/dim per row.
template <class Real, class M>
OdeLikelihood ode_bits_per_dim(M& model, const GaussianDiffusion<Real>& diffusion,
                               const Batch<Real>& images, const CounterRng& rng,
                               std::vector<double>& bits, const OdeLikelihoodOptions& options = {},
                               std::uint32_t first_sample = 0) {
  const Batch<Real> x = dequantize(images, rng, first_sample);
  OdeLikelihood result = ode_likelihood(model, diffusion, x, rng, options, first_sample);
  bits.resize(result.nll.size());
  for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = bits_per_dim(result.nll[i], result.dim);
  return result;
}

}  // namespace ddpm
