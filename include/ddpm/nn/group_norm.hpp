// SPDX-License-Identifier: MIT
// Group normalization (Wu & He 2018) of channels-last image batches, with the activation that
// follows it in a UNet fused into the normalize pass, and a hand-written backward pass.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/image.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// y = f(gamma * (x - mean) / sqrt(var + eps) + beta), mean and (biased) var taken per image and
/// per group of channels / groups consecutive channels, over all H*W pixels -- torch.nn.GroupNorm
/// followed by the activation f.
///
/// Statistics are accumulated in double with two passes (mean, then squared deviations), so float
/// batches with a large common offset normalize as accurately as the float output allows.
/// Parameters: "<name>.weight" (gamma, 1 x C) and "<name>.bias" (beta, 1 x C).
///
/// \code
///   nn::ParameterStore<float> store;
///   nn::GroupNorm<float> norm(store, "down0.norm", 8, 32, nn::Activation::silu);
///   store.allocate();
///   norm.bind(store);
///   norm.initialize();                 // gamma = 1, beta = 0
///   norm.forward(x, shape, y);         // x, y: shape.pixels() x 32
///   norm.backward(x, shape, dy, dx);   // gamma.grad += ..., beta.grad += ..., dx = ...
/// \endcode
template <class Real>
class GroupNorm {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;
  /// A per-channel parameter row, viewed in place in the parameter store.
  using ParameterMap = Eigen::Map<RowVector<Real>>;
  /// \copydoc ParameterMap
  using ConstParameterMap = Eigen::Map<const RowVector<Real>>;

  GroupNorm() = default;

  /// Registers "<name>.weight" and "<name>.bias" (1 x channels each) with `store`. `groups` must
  /// divide `channels`; eps is added to the variance inside the square root.
  GroupNorm(ParameterStore<Real>& store, const std::string& name, Index groups, Index channels,
            Activation activation = Activation::identity, double eps = 1e-5)
      : groups_(groups), channels_(channels), activation_(activation), eps_(eps) {
    ddpm::detail::require(channels >= 1, name + ".channels", channels, ">= 1");
    ddpm::detail::require(groups >= 1 && channels % groups == 0, name + ".groups", groups, [&] {
      return "a positive divisor of channels = " + ddpm::detail::to_text(channels);
    });
    ddpm::detail::require(eps >= 0.0 && std::isfinite(eps), name + ".eps", eps,
                          "a finite value >= 0");
    gamma_slot_ = store.add(name + ".weight", 1, channels);
    beta_slot_ = store.add(name + ".bias", 1, channels);
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    gamma_ = store.value_data(gamma_slot_);
    beta_ = store.value_data(beta_slot_);
    gamma_grad_ = store.grad_data(gamma_slot_);
    beta_grad_ = store.grad_data(beta_slot_);
  }

  /// gamma = 1, beta = 0: the layer starts as a plain normalization.
  void initialize() {
    weight().setOnes();
    bias().setZero();
  }

  /// The number of groups the channels are split into.
  [[nodiscard]] Index groups() const noexcept { return groups_; }
  /// The number of channels.
  [[nodiscard]] Index channels() const noexcept { return channels_; }
  /// The activation applied after the affine map.
  [[nodiscard]] Activation activation() const noexcept { return activation_; }
  /// The epsilon added to each group's variance.
  [[nodiscard]] double eps() const noexcept { return eps_; }

  /// The per-channel scale gamma.
  [[nodiscard]] ParameterMap weight() noexcept { return ParameterMap(gamma_, channels_); }
  /// \copydoc weight()
  [[nodiscard]] ConstParameterMap weight() const noexcept {
    return ConstParameterMap(gamma_, channels_);
  }
  /// The per-channel shift beta.
  [[nodiscard]] ParameterMap bias() noexcept { return ParameterMap(beta_, channels_); }
  /// \copydoc bias()
  [[nodiscard]] ConstParameterMap bias() const noexcept {
    return ConstParameterMap(beta_, channels_);
  }
  /// The gradient of gamma, accumulated by backward().
  [[nodiscard]] ParameterMap weight_grad() noexcept { return ParameterMap(gamma_grad_, channels_); }
  /// The gradient of beta, accumulated by backward().
  [[nodiscard]] ParameterMap bias_grad() noexcept { return ParameterMap(beta_grad_, channels_); }

  /// y = f(GroupNorm(x)) for x: s.pixels() x channels (any row stride); y has x's shape. With
  /// `keep_for_backward` the statistics (and the pre-activation, for a non-identity f) are kept
  /// for backward() and y must not be x; without it nothing is kept and y may be x (inference).
  void forward(ConstRef x, const ImageShape& s, Ref y, bool keep_for_backward = true) {
    detail::require_image<Real>(x, s, channels_, "x");
    ddpm::detail::require_shape(y.rows() == x.rows() && y.cols() == channels_, "y", y.rows(),
                                y.cols(), "the shape of x, pixels x channels");
    if (keep_for_backward && x.size() > 0 && y.data() == x.data()) {
      throw InvalidArgument("y", "the matrix x",
                            "a matrix other than x when keep_for_backward (backward needs x)");
    }
    const Index images = s.batch;
    const Index plane = s.plane();
    const Index c = channels_;
    const Index per_group = c / groups_;
    const double count = static_cast<double>(plane * per_group);
    const bool store_z = keep_for_backward && activation_ != Activation::identity;
    kept_ = false;
    rstd_.resize(images, groups_);
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> stats =
        channel_stats_.resize(images, 2 * c);
    coefficients_.resize(images, 3 * c);
    Real* z_data = store_z ? pre_activation_.resize(s.pixels(), c).data() : nullptr;
    const Real* beta = beta_;
    detail::with_activation(activation_, [&](auto kernel) {
      using Kernel = decltype(kernel);
      ddpm::detail::parallel_for(images, 8 * plane * c, [&](Index n) {
        const Index first = n * plane;
        // Pass 1: per-channel sums, then group means, spread back to one mean per channel.
        Eigen::Map<Eigen::ArrayXd> center(stats.data() + n * 2 * c, c);
        Eigen::Map<Eigen::ArrayXd> squares(stats.data() + n * 2 * c + c, c);
        center.setZero();
        for (Index r = first; r < first + plane; ++r) {
          center += detail::ConstArrayMap<Real>(x.data() + r * x.outerStride(), c)
                        .template cast<double>();
        }
        for (Index g = 0; g < groups_; ++g) {
          const double mean = center.segment(g * per_group, per_group).sum() / count;
          center.segment(g * per_group, per_group).setConstant(mean);
        }
        // Pass 2: squared deviations from the group mean (no cancellation, unlike E[x^2] - m^2).
        squares.setZero();
        for (Index r = first; r < first + plane; ++r) {
          squares += (detail::ConstArrayMap<Real>(x.data() + r * x.outerStride(), c)
                          .template cast<double>() -
                      center)
                         .square();
        }
        double* rstd = rstd_.data() + n * groups_;
        for (Index g = 0; g < groups_; ++g) {
          rstd[g] = 1.0 / std::sqrt(squares.segment(g * per_group, per_group).sum() / count + eps_);
        }
        // Per channel: shift (the group mean), rstd, and scale = rstd * gamma, in Real.
        Real* shift = coefficients_.data() + n * 3 * c;
        Real* channel_rstd = shift + c;
        Real* scale = shift + 2 * c;
        for (Index k = 0; k < c; ++k) {
          const Index g = k / per_group;
          shift[k] = static_cast<Real>(center[k]);
          channel_rstd[k] = static_cast<Real>(rstd[g]);
          scale[k] = static_cast<Real>(rstd[g] * static_cast<double>(gamma_[k]));
        }
        // Pass 3: z = (x - shift) * scale + beta, then y = f(z). x - shift is exact in floating
        // point when x is near the mean, which keeps float accurate under a large offset.
        const detail::ConstArrayMap<Real> shift_v(shift, c);
        const detail::ConstArrayMap<Real> scale_v(scale, c);
        const detail::ConstArrayMap<Real> beta_v(beta, c);
        for (Index r = first; r < first + plane; ++r) {
          Real* yr = y.data() + r * y.outerStride();
          Real* zr = store_z ? z_data + r * c : yr;
          detail::ArrayMap<Real>(zr, c) =
              (detail::ConstArrayMap<Real>(x.data() + r * x.outerStride(), c) - shift_v) * scale_v +
              beta_v;
          Kernel::forward(zr, yr, c);
        }
      });
    });
    kept_ = keep_for_backward;
    kept_shape_ = s;
  }

  /// Accumulates gamma.grad += sum dz * xhat and beta.grad += sum dz (dz = dy * f'(z),
  /// xhat = (x - mean) * rstd) and writes dx, or adds it when `accumulate_dx`. x is the input of
  /// the last forward(), which must have kept its statistics. dx may be the matrix dy.
  void backward(ConstRef x, const ImageShape& s, ConstRef dy, Ref dx, bool accumulate_dx = false) {
    detail::require_image<Real>(x, s, channels_, "x");
    ddpm::detail::require_shape(dy.rows() == x.rows() && dy.cols() == channels_, "dy", dy.rows(),
                                dy.cols(), "the shape of the forward output, pixels x channels");
    ddpm::detail::require_shape(dx.rows() == x.rows() && dx.cols() == channels_, "dx", dx.rows(),
                                dx.cols(), "the shape of x, pixels x channels");
    if (!kept_ || kept_shape_ != s) {
      throw std::logic_error(
          "ddpm: nn::GroupNorm::backward needs a forward() with keep_for_backward on the same "
          "batch");
    }
    const Index images = s.batch;
    const Index plane = s.plane();
    const Index c = channels_;
    const Index per_group = c / groups_;
    const double count = static_cast<double>(plane * per_group);
    const bool has_dz = activation_ != Activation::identity;
    Real* dz_data = has_dz ? grad_pre_activation_.resize(s.pixels(), c).data() : nullptr;
    const Real* z_data = pre_activation_.data();
    // Per image: the sums of dz (beta) and dz * xhat (gamma) per channel, in double.
    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> partial =
        partial_sums_.resize(images, 2 * c);
    Real* dx_coefficients = grad_coefficients_.resize(images, 3 * c).data();
    detail::with_activation(activation_, [&](auto kernel) {
      using Kernel = decltype(kernel);
      ddpm::detail::parallel_for(images, 10 * plane * c, [&](Index n) {
        const Index first = n * plane;
        const Real* shift = coefficients_.data() + n * 3 * c;
        const detail::ConstArrayMap<Real> shift_v(shift, c);
        const detail::ConstArrayMap<Real> rstd_v(shift + c, c);
        Eigen::Map<Eigen::ArrayXd> dz_sum(partial.data() + n * 2 * c, c);
        Eigen::Map<Eigen::ArrayXd> dz_xhat_sum(partial.data() + n * 2 * c + c, c);
        dz_sum.setZero();
        dz_xhat_sum.setZero();
        for (Index r = first; r < first + plane; ++r) {
          const Real* dyr = dy.data() + r * dy.outerStride();
          const Real* dzr = dyr;
          if (has_dz) {
            Kernel::backward(z_data + r * c, dyr, dz_data + r * c, c);
            dzr = dz_data + r * c;
          }
          const detail::ConstArrayMap<Real> dz(dzr, c);
          dz_sum += dz.template cast<double>();
          dz_xhat_sum +=
              (dz * (detail::ConstArrayMap<Real>(x.data() + r * x.outerStride(), c) - shift_v) *
               rstd_v)
                  .template cast<double>();
        }
        // dx = rstd (gamma dz - mean_g(gamma dz) - xhat mean_g(gamma dz xhat))
        //    = a dz - b (x - shift) + offset, per channel.
        Real* a = dx_coefficients + n * 3 * c;
        Real* b = a + c;
        Real* offset = a + 2 * c;
        const double* rstd = rstd_.data() + n * groups_;
        for (Index g = 0; g < groups_; ++g) {
          double mean_dxhat = 0.0;
          double mean_dxhat_xhat = 0.0;
          for (Index k = g * per_group; k < (g + 1) * per_group; ++k) {
            mean_dxhat += static_cast<double>(gamma_[k]) * dz_sum[k];
            mean_dxhat_xhat += static_cast<double>(gamma_[k]) * dz_xhat_sum[k];
          }
          mean_dxhat /= count;
          mean_dxhat_xhat /= count;
          for (Index k = g * per_group; k < (g + 1) * per_group; ++k) {
            a[k] = static_cast<Real>(static_cast<double>(gamma_[k]) * rstd[g]);
            b[k] = static_cast<Real>(rstd[g] * rstd[g] * mean_dxhat_xhat);
            offset[k] = static_cast<Real>(-rstd[g] * mean_dxhat);
          }
        }
        const detail::ConstArrayMap<Real> a_v(a, c);
        const detail::ConstArrayMap<Real> b_v(b, c);
        const detail::ConstArrayMap<Real> offset_v(offset, c);
        for (Index r = first; r < first + plane; ++r) {
          const detail::ConstArrayMap<Real> dz(
              has_dz ? dz_data + r * c : dy.data() + r * dy.outerStride(), c);
          const detail::ConstArrayMap<Real> xr(x.data() + r * x.outerStride(), c);
          detail::ArrayMap<Real> dxr(dx.data() + r * dx.outerStride(), c);
          if (accumulate_dx) {
            dxr += a_v * dz - b_v * (xr - shift_v) + offset_v;
          } else {
            dxr = a_v * dz - b_v * (xr - shift_v) + offset_v;
          }
        }
      });
    });
    // Parameter gradients: image partials summed in image order, so the thread count is moot.
    for (Index n = 1; n < images; ++n) partial.row(0) += partial.row(n);
    if (images > 0) {
      bias_grad() += partial.row(0).leftCols(c).template cast<Real>();
      weight_grad() += partial.row(0).rightCols(c).template cast<Real>();
    }
  }

 private:
  using DoubleWorkspace = Workspace<double>;

  Index groups_ = 1;
  Index channels_ = 0;
  Activation activation_ = Activation::identity;
  double eps_ = 1e-5;
  typename ParameterStore<Real>::Slot gamma_slot_{};
  typename ParameterStore<Real>::Slot beta_slot_{};
  // Raw pointers, as in Linear: a defaulted copy must not write into the source model's buffers.
  Real* gamma_ = nullptr;
  Real* beta_ = nullptr;
  Real* gamma_grad_ = nullptr;
  Real* beta_grad_ = nullptr;
  DoubleWorkspace rstd_;                 // images x groups, 1 / sqrt(var + eps)
  DoubleWorkspace channel_stats_;        // images x 2C: per-channel group mean | squared deviations
  DoubleWorkspace partial_sums_;         // images x 2C: per-image sums of dz | dz * xhat
  Workspace<Real> coefficients_;         // images x 3C: shift | rstd | rstd * gamma per channel
  Workspace<Real> grad_coefficients_;    // images x 3C: the per-channel factors of dx
  Workspace<Real> pre_activation_;       // z, kept for backward when f is not the identity
  Workspace<Real> grad_pre_activation_;  // dz
  ImageShape kept_shape_{};
  bool kept_ = false;
};

}  // namespace ddpm::nn
