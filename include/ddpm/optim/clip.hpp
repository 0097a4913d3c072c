// SPDX-License-Identifier: MIT
// Global-norm gradient clipping (PyTorch's clip_grad_norm_) over a flat gradient buffer or a list
// of ParameterBlocks.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <concepts>
#include <span>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/optim/parameter_view.hpp"

namespace ddpm::optim {

/// The Euclidean norm of all gradients together, accumulated in double.
template <std::floating_point Real>
double global_norm(std::span<const Real> grads) {
  const Eigen::Map<const Eigen::Array<Real, Eigen::Dynamic, 1>> g(grads.data(),
                                                                  static_cast<Index>(grads.size()));
  return std::sqrt(g.template cast<double>().square().sum());
}

/// The global norm of the gradients of every block.
template <ParameterBlockRange Blocks>
double global_grad_norm(const Blocks& blocks) {
  using Real = BlockReal<Blocks>;
  double sum = 0.0;
  for (const auto& block : blocks) {
    const double norm = global_norm<Real>(std::span<const Real>(block.grad));
    sum += norm * norm;
  }
  return std::sqrt(sum);
}

namespace detail {

template <class Real>
void scale(std::span<Real> grads, double factor) {
  Eigen::Map<Eigen::Array<Real, Eigen::Dynamic, 1>>(
      grads.data(), static_cast<Index>(grads.size())) *= static_cast<Real>(factor);
}

/// PyTorch's factor max_norm / (norm + 1e-6); the 1e-6 keeps it finite for a zero gradient.
inline double clip_factor(double norm, double max_norm) { return max_norm / (norm + 1e-6); }

inline void check_max_norm(double max_norm) {
  ddpm::detail::require(max_norm >= 0.0 && !std::isnan(max_norm), "max_norm", max_norm,
                        ">= 0 (use infinity to only measure the norm)");
}

}  // namespace detail

/// Scales `grads` by max_norm / (norm + 1e-6) when that is below 1 (torch.nn.utils.
/// clip_grad_norm_); returns the norm before clipping. A non-finite norm is returned without
/// scaling, so the caller can detect it and skip the step.
/// \code
///   const double norm = optim::clip_grad_norm(model.gradient_values(), 1.0);
/// \endcode
template <std::floating_point Real>
double clip_grad_norm(std::span<Real> grads, double max_norm) {
  detail::check_max_norm(max_norm);
  const double norm = global_norm<Real>(grads);
  const double factor = detail::clip_factor(norm, max_norm);
  if (std::isfinite(norm) && factor < 1.0) detail::scale(grads, factor);
  return norm;
}

/// clip_grad_norm over the gradients of every block, with one global norm.
template <ParameterBlockRange Blocks>
double clip_grad_norm(const Blocks& blocks, double max_norm) {
  detail::check_max_norm(max_norm);
  const double norm = global_grad_norm(blocks);
  const double factor = detail::clip_factor(norm, max_norm);
  if (std::isfinite(norm) && factor < 1.0) {
    for (const auto& block : blocks) detail::scale(block.grad, factor);
  }
  return norm;
}

}  // namespace ddpm::optim
