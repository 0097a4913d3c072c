// SPDX-License-Identifier: MIT
// Guidance as denoiser adaptors: classifier-free guidance (a conditional model mixed with its own
// unconditional branch) and classifier guidance (a noisy-image classifier's gradient).
#pragma once

#include <cmath>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/schedule.hpp"

namespace ddpm {

/// Classifier-free guidance (Ho & Salimans 2022): out = (1 + w) eps(x, y) - w eps(x, no label), for
/// a model trained with label dropout. Both branches run as one batch of 2n rows. With a learned
/// variance only the first `guided_columns` columns (the epsilon part) are mixed; the variance
/// columns are the conditional branch's.
///
/// \code
///   ddpm::ClassifierFreeGuidance<float, Model> guided(model, labels, /*scale=*/3.0, 784);
///   sampler.sample(guided, n, 784, rng);
/// \endcode
template <class Real, class M>
requires ConditionalDenoiser<M, Real>
class ClassifierFreeGuidance {
 public:
  /// `labels` (one per sampled row, kNoLabel allowed) must outlive the adaptor. `guided_columns`
  /// -1 means every output column.
  ClassifierFreeGuidance(M& model, std::span<const int> labels, double scale,
                         Index guided_columns = -1)
      : model_(&model), labels_(labels), scale_(scale), guided_columns_(guided_columns) {
    detail::require(std::isfinite(scale) && scale >= 0.0, "guidance scale", scale,
                    "a finite value >= 0 (0: the conditional model alone)");
    detail::require(guided_columns >= -1, "guided_columns", guided_columns,
                    "-1 (all) or a column count >= 0");
  }

  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) {
    const Index n = x_t.rows();
    detail::require(static_cast<Index>(labels_.size()) == n, "labels.size()", labels_.size(),
                    [&] { return "one label per row of x_t (" + std::to_string(n) + ")"; });
    stacked_.resize(2 * n, x_t.cols());
    stacked_.topRows(n) = x_t;
    stacked_.bottomRows(n) = x_t;
    t2_.assign(t.begin(), t.end());
    t2_.insert(t2_.end(), t.begin(), t.end());
    labels2_.assign(labels_.begin(), labels_.end());
    labels2_.insert(labels2_.end(), static_cast<std::size_t>(n), kNoLabel);
    model_->predict(stacked_, std::span<const int>(t2_), std::span<const int>(labels2_), both_);
    const Index guided =
        guided_columns_ < 0 ? both_.cols() : std::min(guided_columns_, both_.cols());
    out = both_.topRows(n);
    const Real w = static_cast<Real>(scale_);
    out.leftCols(guided) = (Real(1) + w) * both_.topRows(n).leftCols(guided) -
                           w * both_.bottomRows(n).leftCols(guided);
  }

 private:
  M* model_;
  std::span<const int> labels_;
  double scale_;
  Index guided_columns_;
  Batch<Real> stacked_, both_;
  std::vector<int> t2_, labels2_;
};

/// A classifier of noisy samples usable for guidance:
///   `c.log_prob_gradient(x_t, t, labels, grad)` writes grad.row(i) = d log p(labels[i] |
///   x_t.row(i), t[i]) / d x_t.row(i), with grad resized to x_t's shape.
template <class C, class Real>
concept GuidanceClassifier = requires(C& c, const Batch<Real>& x_t, std::span<const int> t,
                                      std::span<const int> labels, Batch<Real>& grad) {
  c.log_prob_gradient(x_t, t, labels, grad);
};

/// Classifier guidance (Dhariwal & Nichol 2021) for an epsilon-predicting model, in the form that
/// serves every sampler: eps~ = eps(x_t) - s sqrt(1 - abar_t) grad log p(y | x_t) (their
/// Algorithm 2). Through the reverse mean mu = (x_t - beta_t / sqrt(1 - abar_t) eps) /
/// sqrt(alpha_t) this moves the ancestral mean by exactly s (beta_t / sqrt(alpha_t)) grad log p(y |
/// x_t), which is their Algorithm 1's shift s Sigma grad up to sqrt(alpha_t) ~ 1 and Sigma ~
/// beta_t. Only the first `guided_columns` columns (epsilon) change when the model also outputs a
/// variance.
template <class Real, class M, class C>
requires Denoiser<M, Real> && GuidanceClassifier<C, Real>
class ClassifierGuidance {
 public:
  /// `diffusion` supplies abar_t (its schedule is copied; it may be respaced from the model's, as
  /// the timesteps passed to predict() are original ones) and must predict epsilon. `labels` must
  /// outlive the adaptor.
  ClassifierGuidance(M& model, C& classifier, const GaussianDiffusion<Real>& diffusion,
                     std::span<const int> labels, double scale, Index guided_columns = -1)
      : model_(&model),
        classifier_(&classifier),
        schedule_(diffusion.schedule()),
        labels_(labels),
        scale_(scale),
        guided_columns_(guided_columns) {
    detail::require(diffusion.options().output == ModelOutput::epsilon, "diffusion output",
                    to_string(diffusion.options().output),
                    "eps: classifier guidance adjusts the predicted noise");
    detail::require(std::isfinite(scale) && scale >= 0.0, "guidance scale", scale,
                    "a finite value >= 0");
    detail::require(guided_columns >= -1, "guided_columns", guided_columns,
                    "-1 (all) or a column count >= 0");
  }

  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) {
    const Index n = x_t.rows();
    detail::require(static_cast<Index>(labels_.size()) == n, "labels.size()", labels_.size(),
                    [&] { return "one label per row of x_t (" + std::to_string(n) + ")"; });
    model_->predict(x_t, t, out);
    classifier_->log_prob_gradient(x_t, t, labels_, grad_);
    const Index guided = guided_columns_ < 0 ? out.cols() : std::min(guided_columns_, out.cols());
    detail::require_shape(grad_.rows() == n && grad_.cols() >= guided, "classifier gradient",
                          grad_.rows(), grad_.cols(), "the shape of x_t");
    const std::vector<double>& sqrt_one_minus = schedule_.sqrt_one_minus_alphas_cumprod();
    for (Index i = 0; i < n; ++i) {
      const double sigma = sqrt_one_minus[static_cast<std::size_t>(
          schedule_.index_of(t[static_cast<std::size_t>(i)]))];
      out.row(i).head(guided) -= static_cast<Real>(scale_ * sigma) * grad_.row(i).head(guided);
    }
  }

 private:
  M* model_;
  C* classifier_;
  NoiseSchedule schedule_;
  std::span<const int> labels_;
  double scale_;
  Index guided_columns_;
  Batch<Real> grad_;
};

}  // namespace ddpm
