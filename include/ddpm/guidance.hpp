// SPDX-License-Identifier: MIT
// Guidance as denoiser adaptors: classifier-free guidance (a conditional model mixed with its own
// unconditional branch) and classifier guidance (a noisy-image classifier's gradient, which the
// samplers apply in their own form).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"

namespace ddpm {

/// Classifier-free guidance (Ho & Salimans 2022, eq. 6) for a model trained with label dropout:
///   out = (1 + w) eps(x, y) - w eps(x, no label),
/// the same as the other common convention eps_u + s (eps_c - eps_u) with s = 1 + w. Any finite
/// w is allowed: w = 0 is the conditional model, w = -1 the unconditional one, w > 0 guides.
/// Both branches run as one batch of 2n rows. Only the x_t.cols() prediction columns are mixed;
/// a learned variance's columns are the conditional branch's (mixing them could push the
/// learned-range fraction outside [0, 1]).
///
/// `rescale` phi (Lin et al. 2023, sec. 3.4) pulls the guided output g back towards the
/// conditional output's scale: g_r = g std(eps_c) / std(g), std per sample over all prediction
/// columns, out = phi g_r + (1 - phi) g (0: off; Lin et al. use 0.7). A row whose g is constant
/// (std 0) is left as g.
///
/// \code
///   ddpm::ClassifierFreeGuidance<float, Model> guided(model, labels, /*weight=*/3.0);
///   sampler.sample(guided, n, 784, rng);
/// \endcode
template <class Real, class M>
  requires ConditionalDenoiser<M, Real>
class ClassifierFreeGuidance {
 public:
  /// `labels` (one per sampled row, kNoLabel allowed) must outlive the adaptor.
  ClassifierFreeGuidance(M& model, std::span<const int> labels, double weight, double rescale = 0.0)
      : model_(&model), labels_(labels), weight_(weight), rescale_(rescale) {
    detail::require(std::isfinite(weight), "guidance weight", weight,
                    "a finite value (0: the conditional model, -1: the unconditional one)");
    detail::require(rescale >= 0.0 && rescale <= 1.0, "guidance rescale", rescale,
                    "a value in [0, 1] (0: off; Lin et al. 2023 use 0.7)");
  }

  /// The guided prediction: (1 + w) eps(x, y) - w eps(x, no label), rescaled when phi > 0.
  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) {
    predict_at(x_t, t, out);
  }
  /// Real-valued timesteps, when the model takes them (ContinuousTimeDenoiser).
  void predict(const Batch<Real>& x_t, std::span<const double> t, Batch<Real>& out) requires
      requires(M& m, std::span<const double> tt, Batch<Real>& o) {
    m.predict(x_t, tt, std::span<const int>(), o);
  }
  { predict_at(x_t, t, out); }

  /// The guidance weight w.
  [[nodiscard]] double weight() const noexcept { return weight_; }
  /// The rescale fraction phi (0: off).
  [[nodiscard]] double rescale() const noexcept { return rescale_; }
  /// The wrapped model's training mode (false when it has no switch).
  [[nodiscard]] bool training() const { return detail::training_of(*model_); }
  /// Sets the wrapped model's training mode, if it has the switch.
  void set_training(bool on) { detail::set_training_of(*model_, on); }

 private:
  template <class Time>
  void predict_at(const Batch<Real>& x_t, std::span<const Time> t, Batch<Real>& out) {
    const Index n = x_t.rows(), dim = x_t.cols();
    detail::require(static_cast<Index>(labels_.size()) == n, "labels.size()", labels_.size(),
                    [&] { return "one label per row of x_t (" + std::to_string(n) + ")"; });
    stacked_.resize(2 * n, dim);
    stacked_.topRows(n) = x_t;
    stacked_.bottomRows(n) = x_t;
    std::vector<Time>& t2 = doubled_timesteps<Time>();
    t2.assign(t.begin(), t.end());
    t2.insert(t2.end(), t.begin(), t.end());
    labels2_.assign(labels_.begin(), labels_.end());
    labels2_.insert(labels2_.end(), static_cast<std::size_t>(n), kNoLabel);
    model_->predict(stacked_, std::span<const Time>(t2), std::span<const int>(labels2_), both_);
    detail::require_shape(both_.rows() == 2 * n && both_.cols() >= dim, "model output",
                          both_.rows(), both_.cols(),
                          "2n rows and at least x_t.cols() prediction columns");
    out = both_.topRows(n);
    const Real w = static_cast<Real>(weight_);
    out.leftCols(dim) =
        (Real(1) + w) * both_.topRows(n).leftCols(dim) - w * both_.bottomRows(n).leftCols(dim);
    if (rescale_ > 0.0) rescale_rows(out, dim);
  }

  /// out = phi g std(eps_c) / std(g) + (1 - phi) g per row, over the first `dim` columns (both
  /// stds with the same divisor, which cancels; accumulated in double).
  void rescale_rows(Batch<Real>& out, Index dim) const {
    const auto std_of = [dim](const auto& row) {
      double sum = 0.0, sum_sq = 0.0;
      for (Index j = 0; j < dim; ++j) sum += static_cast<double>(row(j));
      const double mean = sum / static_cast<double>(dim);
      for (Index j = 0; j < dim; ++j) {
        const double d = static_cast<double>(row(j)) - mean;
        sum_sq += d * d;
      }
      return std::sqrt(sum_sq / static_cast<double>(dim));
    };
    for (Index i = 0; i < out.rows(); ++i) {
      const double guided = std_of(out.row(i));
      if (!(guided > 0.0)) continue;
      const double conditional = std_of(both_.row(i));
      const double factor = rescale_ * conditional / guided + (1.0 - rescale_);
      out.row(i).leftCols(dim) *= static_cast<Real>(factor);
    }
  }

  template <class Time>
  std::vector<Time>& doubled_timesteps() noexcept {
    if constexpr (std::is_same_v<Time, int>) {
      return t2_;
    } else {
      return real_t2_;
    }
  }

  M* model_;
  std::span<const int> labels_;
  double weight_;
  double rescale_;
  Batch<Real> stacked_, both_;
  std::vector<int> t2_, labels2_;
  std::vector<double> real_t2_;
};

/// Classifier guidance (Dhariwal & Nichol 2021): a GuidedDenoiser whose predict() is the model's
/// own output and whose guidance_gradient() is g = s grad_x log p(y | x_t). The samplers apply g
/// in the form REFERENCE.md gives for each: ancestral sampling moves the mean by Sigma g
/// (Algorithm 1), DDIM moves epsilon by -sqrt(1 - ab_t) g (Algorithm 2). In a loop of your own,
/// pass guidance_gradient's result to the sampler's step().
///
/// \code
///   ddpm::ClassifierGuidance<float, Model, Classifier> guided(model, classifier, labels, 2.0);
///   ddpm::AncestralSampler<float>(diffusion).sample(guided, n, dim, rng);
/// \endcode
template <class Real, class M, class C>
  requires Denoiser<M, Real> && GuidanceClassifier<C, Real>
class ClassifierGuidance {
 public:
  /// `labels` (one per sampled row) must outlive the adaptor; `scale` is any finite s (0: none).
  ClassifierGuidance(M& model, C& classifier, std::span<const int> labels, double scale)
      : model_(&model), classifier_(&classifier), labels_(labels), scale_(scale) {
    detail::require(std::isfinite(scale), "guidance scale", scale, "a finite value (0: none)");
  }

  /// The model's own prediction (the guidance enters through guidance_gradient()).
  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) {
    model_->predict(x_t, t, out);
  }
  /// Real-valued timesteps, when the model takes them (ContinuousTimeDenoiser).
  void predict(const Batch<Real>& x_t, std::span<const double> t,
               Batch<Real>& out) requires ContinuousTimeDenoiser<M, Real> {
    model_->predict(x_t, t, out);
  }

  /// grad.row(i) = s d log p(labels[i] | x_t.row(i), t[i]) / d x_t.row(i).
  void guidance_gradient(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& grad) {
    const Index n = x_t.rows();
    detail::require(static_cast<Index>(labels_.size()) == n, "labels.size()", labels_.size(),
                    [&] { return "one label per row of x_t (" + std::to_string(n) + ")"; });
    classifier_->log_prob_gradient(x_t, t, labels_, grad);
    detail::require_shape(grad.rows() == n && grad.cols() == x_t.cols(), "classifier gradient",
                          grad.rows(), grad.cols(), "the shape of x_t");
    grad *= static_cast<Real>(scale_);
  }

  /// The guidance scale s.
  [[nodiscard]] double scale() const noexcept { return scale_; }
  /// Forwards the training switch to the model and the classifier (both go to inference while
  /// sampling).
  [[nodiscard]] bool training() const { return detail::training_of(*model_); }
  /// Sets the training mode of the model and of the classifier.
  void set_training(bool on) {
    detail::set_training_of(*model_, on);
    detail::set_training_of(*classifier_, on);
  }

 private:
  M* model_;
  C* classifier_;
  std::span<const int> labels_;
  double scale_;
};

}  // namespace ddpm
