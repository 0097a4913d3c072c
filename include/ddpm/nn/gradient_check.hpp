// SPDX-License-Identifier: MIT
// Central finite differences for checking hand-written backward passes (layers, models, losses).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>

namespace ddpm::nn {

/// numeric[i] = (loss(x + h e_i) - loss(x - h e_i)) / (2 h) for every element of x, which is
/// perturbed in place and restored. `loss` is any callable returning a scalar and reading x.
/// Use double precision: with h = 1e-6 the error is O(h^2 f''') + O(eps / h), about 1e-9.
/// \code
///   nn::numeric_gradient([&] { return loss_of(model); }, model.parameter_values(), numeric);
/// \endcode
template <class Real, class Loss>
void numeric_gradient(Loss&& loss, std::span<Real> x, std::span<Real> numeric, double h = 1e-6) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const Real saved = x[i];
    x[i] = static_cast<Real>(saved + h);
    const double plus = static_cast<double>(loss());
    x[i] = static_cast<Real>(saved - h);
    const double minus = static_cast<double>(loss());
    x[i] = saved;
    numeric[i] = static_cast<Real>((plus - minus) / (2.0 * h));
  }
}

/// The largest |a - n| / max(|a|, |n|, floor) over the elements: a relative error that turns into
/// an absolute one (scaled by 1 / floor) for gradients near zero.
template <class Real>
double max_gradient_error(std::span<const Real> analytic, std::span<const Real> numeric,
                          double floor = 1e-3) {
  double worst = 0.0;
  for (std::size_t i = 0; i < analytic.size() && i < numeric.size(); ++i) {
    const double a = static_cast<double>(analytic[i]);
    const double n = static_cast<double>(numeric[i]);
    const double scale = std::max({std::abs(a), std::abs(n), floor});
    worst = std::max(worst, std::abs(a - n) / scale);
  }
  return analytic.size() == numeric.size() ? worst : HUGE_VAL;
}

}  // namespace ddpm::nn
