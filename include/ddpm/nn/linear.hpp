// SPDX-License-Identifier: MIT
// Fully connected layer y = f(x W + b) [+ skip] on row-major batches, with the activation and the
// optional residual add fused into the bias pass, and a hand-written backward pass.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/detail/gemm.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// y = f(x W + b) (+ skip), x: batch x in, W: in x out (row-major), b: 1 x out.
///
/// W is stored in x out -- the transpose of PyTorch's `nn.Linear.weight`. All three products
/// (x W, x^T dz, dz W^T) run on ddpm's packed GEMM (nn/detail/gemm.hpp), which reads the transposed
/// operands through strides, and bias + activation (+ skip) run on each block of the result as it
/// finishes. Parameters: "<name>.weight", "<name>.bias".
///
/// \code
///   nn::ParameterStore<float> store;
///   nn::Linear<float> fc(store, "layer0", 66, 256, nn::Activation::silu);
///   store.allocate();
///   fc.bind(store);
///   fc.initialize(ddpm::CounterRng(1), 0);
///   fc.forward(x, y);          // keeps the pre-activation for backward
///   fc.backward(x, dy, dx);    // W.grad += x^T dz, b.grad += sum dz, dx = dz W^T
/// \endcode
template <class Real>
class Linear {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;
  /// The weight matrix (in x out), viewed in place in the parameter store.
  using WeightMap = Eigen::Map<Batch<Real>>;
  /// \copydoc WeightMap
  using ConstWeightMap = Eigen::Map<const Batch<Real>>;
  /// The bias row (out), viewed in place in the parameter store.
  using BiasMap = Eigen::Map<RowVector<Real>>;
  /// \copydoc BiasMap
  using ConstBiasMap = Eigen::Map<const RowVector<Real>>;

  /// Rows per chunk of the parallel backward pass; bias gradients are summed per chunk in a fixed
  /// order, so results do not depend on the number of threads.
  static constexpr Index kRowsPerChunk = 64;

  Linear() = default;

  /// Registers "<name>.weight" (in x out) and "<name>.bias" (1 x out) with `store`.
  Linear(ParameterStore<Real>& store, const std::string& name, Index in, Index out,
         Activation activation = Activation::identity)
      : in_(in), out_(out), activation_(activation) {
    ddpm::detail::require(in >= 1, name + ".in", in, ">= 1");
    ddpm::detail::require(out >= 1, name + ".out", out, ">= 1");
    weight_slot_ = store.add(name + ".weight", in, out);
    bias_slot_ = store.add(name + ".bias", 1, out);
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    weight_ = store.value_data(weight_slot_);
    bias_ = store.value_data(bias_slot_);
    weight_grad_ = store.grad_data(weight_slot_);
    bias_grad_ = store.grad_data(bias_slot_);
  }

  /// PyTorch's default: W and b ~ uniform(-1/sqrt(in), 1/sqrt(in)), drawn from `rng` as draws of
  /// (stream::init, layer, 0) and (stream::init, layer, 1). `zero` sets both to zero instead.
  void initialize(const CounterRng& rng, std::uint32_t layer, bool zero = false) {
    const std::span<Real> w(weight_, static_cast<std::size_t>(in_ * out_));
    const std::span<Real> b(bias_, static_cast<std::size_t>(out_));
    if (zero) {
      std::fill(w.begin(), w.end(), Real(0));
      std::fill(b.begin(), b.end(), Real(0));
      return;
    }
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    fill_uniform(w, bound, rng, layer, 0);
    fill_uniform(b, bound, rng, layer, 1);
  }

  /// Input features per row.
  [[nodiscard]] Index in_features() const noexcept { return in_; }
  /// Output features per row.
  [[nodiscard]] Index out_features() const noexcept { return out_; }
  /// The activation applied after the affine map.
  [[nodiscard]] Activation activation() const noexcept { return activation_; }

  /// The weights W (in x out): y = x W + b.
  [[nodiscard]] WeightMap weight() noexcept { return WeightMap(weight_, in_, out_); }
  /// \copydoc weight()
  [[nodiscard]] ConstWeightMap weight() const noexcept {
    return ConstWeightMap(weight_, in_, out_);
  }
  /// The bias b (1 x out).
  [[nodiscard]] BiasMap bias() noexcept { return BiasMap(bias_, out_); }
  /// \copydoc bias()
  [[nodiscard]] ConstBiasMap bias() const noexcept { return ConstBiasMap(bias_, out_); }
  /// The gradient of the weights, accumulated by backward().
  [[nodiscard]] WeightMap weight_grad() noexcept { return WeightMap(weight_grad_, in_, out_); }
  /// The gradient of the bias, accumulated by backward().
  [[nodiscard]] BiasMap bias_grad() noexcept { return BiasMap(bias_grad_, out_); }

  /// y = f(x W + b). y must be x.rows() x out and must not alias x. With `keep_for_backward`
  /// (and a non-identity f) the pre-activation is kept for backward(); without it the pass runs
  /// in place in y and keeps nothing (inference).
  void forward(ConstRef x, Ref y, bool keep_for_backward = true) {
    forward_impl(x, y, nullptr, keep_for_backward);
  }

  /// y = f(x W + b) + skip (a residual connection); skip has y's shape and may alias x, not y.
  void forward(ConstRef x, Ref y, ConstRef skip, bool keep_for_backward = true) {
    ddpm::detail::require_shape(skip.rows() == x.rows() && skip.cols() == out_, "skip", skip.rows(),
                                skip.cols(), "batch x out_features, the shape of y");
    forward_impl(x, y, &skip, keep_for_backward);
  }

  /// Accumulates W.grad += x^T dz and b.grad += sum_rows dz, dz = dy * f'(z), for the forward
  /// input x of the last forward() call.
  void backward(ConstRef x, ConstRef dy) { backward_impl(x, dy, nullptr, false); }

  /// As backward(x, dy), and also writes dx = dz W^T (or adds it when `accumulate_dx`, which is
  /// how a residual branch joins its skip path). dx may be the same matrix as dy.
  void backward(ConstRef x, ConstRef dy, Ref dx, bool accumulate_dx = false) {
    ddpm::detail::require_shape(dx.rows() == x.rows() && dx.cols() == in_, "dx", dx.rows(),
                                dx.cols(), "batch x in_features, the shape of x");
    backward_impl(x, dy, &dx, accumulate_dx);
  }

 private:
  void check_input(const ConstRef& x, std::string_view name) const {
    ddpm::detail::require_shape(x.cols() == in_, name, x.rows(), x.cols(), [&] {
      return "in_features = " + ddpm::detail::to_text(in_) + " columns";
    });
  }

  void forward_impl(const ConstRef& x, Ref& y, const ConstRef* skip, bool keep) {
    check_input(x, "x");
    const Index rows = x.rows();
    ddpm::detail::require_shape(y.rows() == rows && y.cols() == out_, "y", y.rows(), y.cols(),
                                "batch x out_features");
    const bool store_z = keep && activation_ != Activation::identity;
    // The product writes the pre-activation z either into the layer's own workspace (kept for
    // backward) or straight into y; bias, activation and skip then run on each finished tile while
    // it is still in L1.
    Real* z = store_z ? pre_activation_.resize(rows, out_).data() : y.data();
    const Index ldz = store_z ? out_ : y.outerStride();
    kept_rows_ = store_z ? rows : -1;
    const Real* b = bias_;
    detail::with_activation(activation_, [&](auto kernel) {
      using Kernel = decltype(kernel);
      ddpm::nn::detail::gemm(rows, out_, in_, ddpm::nn::detail::strided(x),
                             ddpm::nn::detail::StridedMatrix<Real>{weight_, out_, 1}, z, ldz, false,
                             [&](Index i, Index j, Index tile_rows, Index cols) {
                               for (Index r = i; r < i + tile_rows; ++r) {
                                 Real* zr = z + r * ldz + j;
                                 Real* yr = y.data() + r * y.outerStride() + j;
                                 detail::ArrayMap<Real>(zr, cols) +=
                                     detail::ConstArrayMap<Real>(b + j, cols);
                                 Kernel::forward(zr, yr, cols);
                                 if (skip != nullptr) {
                                   detail::ArrayMap<Real>(yr, cols) += detail::ConstArrayMap<Real>(
                                       skip->data() + r * skip->outerStride() + j, cols);
                                 }
                               }
                             });
    });
  }

  void backward_impl(const ConstRef& x, const ConstRef& dy, Ref* dx, bool accumulate) {
    check_input(x, "x");
    const Index rows = x.rows();
    ddpm::detail::require_shape(dy.rows() == rows && dy.cols() == out_, "dy", dy.rows(), dy.cols(),
                                "batch x out_features, the shape of the forward output");
    if (activation_ != Activation::identity && kept_rows_ != rows) {
      throw std::logic_error(
          "ddpm: nn::Linear::backward needs a forward() with keep_for_backward on the same batch");
    }
    if (rows == 0) {
      if (dx != nullptr && !accumulate) dx->setZero();
      return;
    }
    const Index n = out_;
    const Index chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
    Eigen::Map<Batch<Real>> partial = partial_sums_.resize(chunks, n);
    // dz = dy * f'(z) goes to the layer's workspace; for the identity dz is dy itself, copied only
    // when dx overwrites dy.
    const bool dz_is_dy =
        activation_ == Activation::identity && (dx == nullptr || dx->data() != dy.data());
    Real* dz_data = dz_is_dy ? nullptr : grad_pre_activation_.resize(rows, n).data();
    const Real* z_data = pre_activation_.data();
    detail::with_activation(activation_, [&](auto kernel) {
      using Kernel = decltype(kernel);
      ddpm::detail::parallel_for(chunks, kRowsPerChunk * n, [&](Index c) {
        const Index begin = c * kRowsPerChunk;
        const Index end = std::min(rows, begin + kRowsPerChunk);
        detail::ArrayMap<Real> sum(partial.data() + c * n, n);
        sum.setZero();
        for (Index r = begin; r < end; ++r) {
          const Real* dyr = dy.data() + r * dy.outerStride();
          if (dz_is_dy) {
            sum += detail::ConstArrayMap<Real>(dyr, n);
          } else {
            Real* dzr = dz_data + r * n;
            Kernel::backward(z_data + r * n, dyr, dzr, n);
            sum += detail::ConstArrayMap<Real>(dzr, n);
          }
        }
      });
    });
    BiasMap bias_grad_map = bias_grad();
    for (Index c = 0; c < chunks; ++c) bias_grad_map += partial.row(c);

    const ddpm::nn::detail::StridedMatrix<Real> dz{dz_is_dy ? dy.data() : dz_data,
                                                   dz_is_dy ? dy.outerStride() : n, 1};
    ddpm::nn::detail::gemm(in_, n, rows, ddpm::nn::detail::strided(x).transposed(), dz,
                           weight_grad_, n, true);
    if (dx != nullptr) {
      ddpm::nn::detail::gemm(rows, in_, n, dz, ddpm::nn::detail::StridedMatrix<Real>{weight_, 1, n},
                             dx->data(), dx->outerStride(), accumulate);
    }
  }

  Index in_ = 0;
  Index out_ = 0;
  Activation activation_ = Activation::identity;
  typename ParameterStore<Real>::Slot weight_slot_{};
  typename ParameterStore<Real>::Slot bias_slot_{};
  // Raw pointers rather than Eigen::Map members: a Map's operator= copies values, which would make
  // the defaulted copy of a layer write into the source model's buffer.
  Real* weight_ = nullptr;
  Real* bias_ = nullptr;
  Real* weight_grad_ = nullptr;
  Real* bias_grad_ = nullptr;
  Workspace<Real> pre_activation_;       // z = x W + b, kept for backward
  Workspace<Real> grad_pre_activation_;  // dz
  Workspace<Real> partial_sums_;         // per-chunk bias-gradient sums
  Index kept_rows_ = -1;                 // rows of the kept z, -1 if none
};

}  // namespace ddpm::nn
