// SPDX-License-Identifier: MIT
// Gaussian algebra of the variational bound: KL divergences, continuous and discretized
// log-likelihoods, each with its derivatives (all per element, log-variances not variances).
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>

namespace ddpm {

/// KL(N(mean1, exp(log_var1)) || N(mean2, exp(log_var2))) in nats, for one dimension.
template <class Real>
Real normal_kl(Real mean1, Real log_var1, Real mean2, Real log_var2) {
  const Real diff = mean1 - mean2;
  return Real(0.5) * (Real(-1) + log_var2 - log_var1 + std::exp(log_var1 - log_var2) +
                      diff * diff * std::exp(-log_var2));
}

/// normal_kl and its derivatives with respect to the second Gaussian's mean and log-variance.
template <class Real>
struct KlWithGrad {
  Real value;       ///< KL(N1 || N2), in nats
  Real d_mean2;     ///< d KL / d mean2
  Real d_log_var2;  ///< d KL / d log_var2
};

/// normal_kl and its derivatives with respect to mean2 and log_var2, in one pass.
template <class Real>
KlWithGrad<Real> normal_kl_with_grad(Real mean1, Real log_var1, Real mean2, Real log_var2) {
  const Real diff = mean1 - mean2;
  const Real ratio = std::exp(log_var1 - log_var2);
  const Real scaled_sq = diff * diff * std::exp(-log_var2);
  return {Real(0.5) * (Real(-1) + log_var2 - log_var1 + ratio + scaled_sq),
          -diff * std::exp(-log_var2), Real(0.5) * (Real(1) - ratio - scaled_sq)};
}

/// log N(x; mean, exp(log_var)) in nats, for one dimension.
template <class Real>
Real gaussian_log_density(Real x, Real mean, Real log_var) {
  const Real diff = x - mean;
  return Real(-0.5) * (static_cast<Real>(std::log(2.0 * std::numbers::pi)) + log_var +
                       diff * diff * std::exp(-log_var));
}

/// A negative log-likelihood and its derivatives with respect to the mean and log-variance.
template <class Real>
struct NllWithGrad {
  Real value;      ///< the negative log-likelihood, in nats
  Real d_mean;     ///< d NLL / d mean
  Real d_log_var;  ///< d NLL / d log_var
};

/// -log N(x; mean, exp(log_var)) and its derivatives.
template <class Real>
NllWithGrad<Real> gaussian_nll_with_grad(Real x, Real mean, Real log_var) {
  const Real diff = x - mean;
  const Real inv_var = std::exp(-log_var);
  return {-gaussian_log_density(x, mean, log_var), -diff * inv_var,
          Real(0.5) * (Real(1) - diff * diff * inv_var)};
}

namespace detail {

/// Standard normal cdf and density, exact (erfc), not the tanh approximation some references use.
inline double std_normal_cdf(double z) { return 0.5 * std::erfc(-z / std::numbers::sqrt2); }
inline double std_normal_pdf(double z) {
  return std::exp(-0.5 * z * z) / std::sqrt(2.0 * std::numbers::pi);
}

}  // namespace detail

/// Probability floor applied before the log in the discretized likelihood (REFERENCE.md).
inline constexpr double kDiscretizedProbabilityFloor = 1e-12;

/// -log P(x) under N(mean, exp(log_var)) discretized to 256 bins of width 2/255 centred on
/// x in {-1, -1 + 2/255, ..., 1} (8-bit data scaled to [-1, 1]); the lowest bin extends to -inf and
/// the highest to +inf, so the 256 probabilities sum to 1. Probabilities are floored at 1e-12 (the
/// floor has zero derivative). Computed in double for any Real.
template <class Real>
NllWithGrad<Real> discretized_gaussian_nll_with_grad(Real x_in, Real mean_in, Real log_var_in) {
  const double x = x_in, mean = mean_in, log_var = log_var_in;
  const double inv_std = std::exp(-0.5 * log_var);
  const double half_bin = 1.0 / 255.0;
  const bool lowest = x < -0.999;
  const bool highest = x > 0.999;
  // Standardized bin edges; +-inf at the open ends.
  const double lo = lowest ? -INFINITY : (x - half_bin - mean) * inv_std;
  const double hi = highest ? INFINITY : (x + half_bin - mean) * inv_std;
  // P = Phi(hi) - Phi(lo), computed on the side of the tail that avoids cancellation.
  const double probability = lo > 0.0 ? detail::std_normal_cdf(-lo) - detail::std_normal_cdf(-hi)
                                      : detail::std_normal_cdf(hi) - detail::std_normal_cdf(lo);
  if (!(probability > kDiscretizedProbabilityFloor)) {
    return {static_cast<Real>(-std::log(kDiscretizedProbabilityFloor)), Real(0), Real(0)};
  }
  const double pdf_lo = std::isinf(lo) ? 0.0 : detail::std_normal_pdf(lo);
  const double pdf_hi = std::isinf(hi) ? 0.0 : detail::std_normal_pdf(hi);
  const double lo_pdf_lo = std::isinf(lo) ? 0.0 : lo * pdf_lo;
  const double hi_pdf_hi = std::isinf(hi) ? 0.0 : hi * pdf_hi;
  // dP/dmean = (pdf(lo) - pdf(hi)) / std; dP/dlog_var = -0.5 (hi pdf(hi) - lo pdf(lo)).
  const double d_mean = -(pdf_lo - pdf_hi) * inv_std / probability;
  const double d_log_var = 0.5 * (hi_pdf_hi - lo_pdf_lo) / probability;
  return {static_cast<Real>(-std::log(probability)), static_cast<Real>(d_mean),
          static_cast<Real>(d_log_var)};
}

/// log P(x) of the discretized Gaussian above, in nats.
template <class Real>
Real discretized_gaussian_log_likelihood(Real x, Real mean, Real log_var) {
  return -discretized_gaussian_nll_with_grad(x, mean, log_var).value;
}

}  // namespace ddpm
