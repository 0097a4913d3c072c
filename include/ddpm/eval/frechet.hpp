// SPDX-License-Identifier: MIT
// The Fréchet distance between Gaussians fitted to two feature sets (the formula behind "FID").
#pragma once

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::eval {

/// Mean and unbiased covariance of a feature set, with the number of samples they came from.
struct GaussianStats {
  Eigen::VectorXd mean;        ///< feature means
  Eigen::MatrixXd covariance;  ///< unbiased (n - 1) covariance
  Index count = 0;             ///< number of samples
};

namespace detail {

/// Validates a feature set: at least 2 rows, at least 1 column, all finite.
template <class Real>
void require_features(const Batch<Real>& x, const char* parameter) {
  ddpm::detail::require_shape(x.rows() >= 2 && x.cols() >= 1, parameter, x.rows(), x.cols(),
                              "at least 2 samples (rows) of dimension >= 1");
  if (x.allFinite()) [[likely]]
    return;
  for (Index i = 0; i < x.rows(); ++i) {
    for (Index j = 0; j < x.cols(); ++j) {
      if (!std::isfinite(x(i, j))) {
        throw InvalidArgument(parameter,
                              ddpm::detail::to_text(x(i, j)) + " at row " +
                                  ddpm::detail::to_text(i) + ", column " + ddpm::detail::to_text(j),
                              "finite values only");
      }
    }
  }
}

/// Validates one side of frechet_distance: a d-vector mean, a d x d covariance, d >= 1, finite.
inline void require_stats(const GaussianStats& s, const char* mean_name,
                          const char* covariance_name) {
  const Index d = s.mean.size();
  ddpm::detail::require_shape(d >= 1, mean_name, d, 1, "a vector of dimension >= 1");
  ddpm::detail::require_shape(
      s.covariance.rows() == d && s.covariance.cols() == d, covariance_name, s.covariance.rows(),
      s.covariance.cols(),
      "a square matrix of the mean's dimension (" + ddpm::detail::to_text(d) + ")");
  ddpm::detail::require(s.mean.allFinite(), mean_name, "a vector with non-finite entries",
                        "finite values only");
  ddpm::detail::require(s.covariance.allFinite(), covariance_name,
                        "a matrix with non-finite entries", "finite values only");
}

/// The symmetric square root of the PSD part of `covariance` (its lower triangle is read), and
/// the trace of that PSD part. Eigenvalues below 0, which round-off gives a singular covariance,
/// count as 0.
struct PsdRoot {
  Eigen::MatrixXd root;
  double trace;
};

inline PsdRoot psd_root(const Eigen::MatrixXd& covariance) {
  const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(covariance);
  const Eigen::VectorXd eigenvalues = solver.eigenvalues().cwiseMax(0.0);
  const Eigen::VectorXd roots = eigenvalues.cwiseSqrt();
  const Eigen::MatrixXd& v = solver.eigenvectors();
  const Eigen::MatrixXd root = v * roots.asDiagonal() * v.transpose();
  return {root, eigenvalues.sum()};
}

// Rows per block of the covariance accumulation: 4096 x d doubles, 8 MB at d = 256.
inline constexpr Index kStatisticsBlock = 4096;

/// feature_statistics without the input checks.
template <class Real>
GaussianStats statistics(const Batch<Real>& features) {
  const Index n = features.rows();
  const Index d = features.cols();
  GaussianStats stats;
  stats.count = n;
  stats.mean =
      features.template cast<double>().colwise().sum().transpose() / static_cast<double>(n);
  // Centred first (two passes): the one-pass Σ x xᵀ − n μ μᵀ cancels badly when |μ| >> σ. Rows
  // are centred a block at a time so a large feature set is not copied whole into double.
  Eigen::MatrixXd lower = Eigen::MatrixXd::Zero(d, d);
  Eigen::MatrixXd centred;
  for (Index first = 0; first < n; first += kStatisticsBlock) {
    const Index rows = std::min(kStatisticsBlock, n - first);
    centred =
        features.middleRows(first, rows).template cast<double>().rowwise() - stats.mean.transpose();
    lower.selfadjointView<Eigen::Lower>().rankUpdate(centred.transpose(),
                                                     1.0 / static_cast<double>(n - 1));
  }
  stats.covariance = lower.selfadjointView<Eigen::Lower>();  // exactly symmetric
  return stats;
}

}  // namespace detail

/// Mean and unbiased covariance (divided by n − 1) of the rows of `features` (n x d, n >= 2),
/// computed in double whatever `Real` is.
///
///   const ddpm::eval::GaussianStats data_stats = ddpm::eval::feature_statistics(data_features);
template <class Real>
GaussianStats feature_statistics(const Batch<Real>& features) {
  detail::require_features(features, "features");
  return detail::statistics(features);
}

/// The squared Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Dowson & Landau
/// 1982), the quantity Heusel et al. (2017) call FID when the features come from Inception-v3:
///   d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}.
/// Here it is applied to whatever features the caller supplies; ddpm uses the penultimate features
/// of its own small classifier, so its values are NOT comparable with Inception-FID values in
/// papers.
///
/// Computation: Σ₁^{1/2} and Σ₂^{1/2} are symmetric square roots from SelfAdjointEigenSolver (only
/// the lower triangles are read; eigenvalues below 0 count as 0), and the last trace is the sum of
/// the singular values of Σ₁^{1/2} Σ₂^{1/2}, since (Σ₁^{1/2} Σ₂^{1/2})(Σ₁^{1/2} Σ₂^{1/2})ᵀ =
/// Σ₁^{1/2} Σ₂ Σ₁^{1/2}. Unlike scipy's sqrtm of the non-symmetric Σ₁ Σ₂ this stays real and
/// stable; unlike the eigenvalues of Σ₁^{1/2} Σ₂ Σ₁^{1/2} followed by square roots, it does not
/// turn round-off eigenvalues of ~1e-16 into ~1e-8 terms when the covariances are singular (fewer
/// samples than features). The traces are taken of the same PSD parts, so a covariance that
/// round-off left slightly indefinite counts as its nearest PSD matrix, and the result is clamped
/// at 0. O(d³) in double.
/// Throws InvalidArgument on mismatched dimensions or non-finite entries.
///
///   double fd = ddpm::eval::frechet_distance(data_stats, ddpm::eval::feature_statistics(f));
inline double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  detail::require_stats(a, "a.mean", "a.covariance");
  detail::require_stats(b, "b.mean", "b.covariance");
  ddpm::detail::require(b.mean.size() == a.mean.size(), "b.mean", b.mean.size(), [&] {
    return "the dimension of a.mean (" + ddpm::detail::to_text(a.mean.size()) + ")";
  });
  const detail::PsdRoot root_a = detail::psd_root(a.covariance);
  const detail::PsdRoot root_b = detail::psd_root(b.covariance);
  const Eigen::MatrixXd product = root_a.root * root_b.root;
  const double cross = Eigen::BDCSVD<Eigen::MatrixXd>(product).singularValues().sum();
  const double d2 = (a.mean - b.mean).squaredNorm() + root_a.trace + root_b.trace - 2.0 * cross;
  return std::max(d2, 0.0);
}

/// frechet_distance(feature_statistics(a), feature_statistics(b)); a and b have the same number
/// of columns (any numbers of rows >= 2).
template <class Real>
double frechet_distance(const Batch<Real>& a, const Batch<Real>& b) {
  detail::require_features(a, "a");
  detail::require_features(b, "b");
  ddpm::detail::require_shape(b.cols() == a.cols(), "b", b.rows(), b.cols(),
                              "as many columns as a (" + ddpm::detail::to_text(a.cols()) + ")");
  return frechet_distance(detail::statistics(a), detail::statistics(b));
}

}  // namespace ddpm::eval
