// SPDX-License-Identifier: MIT
// Isotropic Gaussian mixtures, and the 8gaussians toy mixture of BENCHMARKS.md (one definition for
// the exact denoiser, the demo and the toy data set).
#pragma once

#include <array>
#include <cstddef>
#include <numbers>
#include <utility>
#include <vector>

#include "ddpm/core/types.hpp"

namespace ddpm {

/// x_0 ~ sum_k weights[k] N(means.row(k), stds[k]^2 I).
struct GaussianMixture {
  Batch<double> means;          ///< K x D
  std::vector<double> stds;     ///< K standard deviations
  std::vector<double> weights;  ///< K weights (normalized by their users)

  /// The number of components K.
  [[nodiscard]] Index components() const noexcept { return means.rows(); }
  /// The data dimension D.
  [[nodiscard]] Index dim() const noexcept { return means.cols(); }
};

namespace detail {
inline constexpr double kEightGaussiansRadius = 4.0;
inline constexpr double kEightGaussiansStd = 0.5;
inline constexpr double kEightGaussiansDivisor = 1.414;
/// Unit directions of the 8gaussians centers, in FFJORD's order.
inline constexpr std::array<std::array<double, 2>, 8> kEightGaussiansDirections{{
    {1.0, 0.0},
    {-1.0, 0.0},
    {0.0, 1.0},
    {0.0, -1.0},
    {std::numbers::sqrt2 / 2, std::numbers::sqrt2 / 2},
    {std::numbers::sqrt2 / 2, -std::numbers::sqrt2 / 2},
    {-std::numbers::sqrt2 / 2, std::numbers::sqrt2 / 2},
    {-std::numbers::sqrt2 / 2, -std::numbers::sqrt2 / 2},
}};
}  // namespace detail

/// The 8gaussians mixture: 8 equal-weight components with means 4 (+-1, 0), (0, +-1),
/// (+-1/sqrt 2, +-1/sqrt 2) and std 0.5, all divided by 1.414.
inline GaussianMixture eight_gaussians_mixture() {
  GaussianMixture m;
  m.means.resize(8, 2);
  for (std::size_t k = 0; k < 8; ++k) {
    for (std::size_t j = 0; j < 2; ++j) {
      m.means(static_cast<Index>(k), static_cast<Index>(j)) =
          detail::kEightGaussiansRadius * detail::kEightGaussiansDirections[k][j] /
          detail::kEightGaussiansDivisor;
    }
  }
  m.stds.assign(8, detail::kEightGaussiansStd / detail::kEightGaussiansDivisor);
  m.weights.assign(8, 1.0 / 8.0);
  return m;
}

}  // namespace ddpm
