// SPDX-License-Identifier: MIT
// Luo & Hu's ConcatSquashLinear: a linear layer on every point whose output is gated and shifted by
// a per-group (per-shape) context, with the optional leaky ReLU fused in and a hand-written
// backward pass that also gives the context gradient.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

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

/// out = f((x W + b) * sigmoid(c W_g + b_g) + c W_h) for every row x of a group whose context row
/// is c (Luo & Hu 2021, "Diffusion probabilistic models for 3D point cloud generation",
/// models/common.py), f a leaky ReLU or the identity.
///
/// A batch holds S groups of `group_rows` consecutive rows (a shape's N points); the context has
/// one row per group. set_context() computes the gate sigmoid(c W_g + b_g) and the shift c W_h
/// once per group (S rows); forward() runs the S * N rows through the packed GEMM and applies
/// bias, gate, shift and activation to each finished tile (a broadcast of the group's rows).
/// Weights are stored in x out (the transpose of PyTorch's). Parameters: "<name>.weight"
/// (in x out), "<name>.bias" (1 x out), "<name>.gate.weight" (context x out), "<name>.gate.bias"
/// (1 x out), "<name>.hyper_bias.weight" (context x out; no bias, as in the reference).
///
/// \code
///   nn::ConcatSquashLinear<float> layer(store, "layer0", 3, 128, 131, true);
///   store.allocate();
///   layer.bind(store);
///   layer.initialize(ddpm::CounterRng(1), 0);
///   layer.set_context(c);                   // S x 131
///   layer.forward(x, 2048, y);              // x: S*2048 x 3, y: S*2048 x 128
///   layer.backward(x, c, dy, dx, dc);       // parameter grads +=, dx =, dc +=
/// \endcode
template <class Real>
class ConcatSquashLinear {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;

  /// Columns per work item of the backward reduction (items are group x column block, so the
  /// per-group sums are formed in one fixed order on any thread count).
  static constexpr Index kColumnBlock = 64;

  ConcatSquashLinear() = default;

  /// Registers the five tensors "<name>.*" with `store`. `leaky_relu` applies
  /// f(u) = max(u, negative_slope * u) after the gate and shift; otherwise f is the identity.
  ConcatSquashLinear(ParameterStore<Real>& store, const std::string& name, Index in, Index out,
                     Index context, bool leaky_relu, double negative_slope = 0.01)
      : in_(in),
        out_(out),
        context_(context),
        leaky_(leaky_relu),
        slope_(static_cast<Real>(negative_slope)) {
    ddpm::detail::require(in >= 1, name + ".in", in, ">= 1");
    ddpm::detail::require(out >= 1, name + ".out", out, ">= 1");
    ddpm::detail::require(context >= 1, name + ".context", context, ">= 1");
    ddpm::detail::require(negative_slope >= 0.0 && negative_slope < 1.0, name + ".negative_slope",
                          negative_slope, "[0, 1)");
    weight_slot_ = store.add(name + ".weight", in, out);
    bias_slot_ = store.add(name + ".bias", 1, out);
    gate_weight_slot_ = store.add(name + ".gate.weight", context, out);
    gate_bias_slot_ = store.add(name + ".gate.bias", 1, out);
    hyper_weight_slot_ = store.add(name + ".hyper_bias.weight", context, out);
  }

  /// Points the layer at `store`'s buffers, after store.allocate().
  void bind(ParameterStore<Real>& store) noexcept {
    weight_ = store.value_data(weight_slot_);
    bias_ = store.value_data(bias_slot_);
    gate_weight_ = store.value_data(gate_weight_slot_);
    gate_bias_ = store.value_data(gate_bias_slot_);
    hyper_weight_ = store.value_data(hyper_weight_slot_);
    weight_grad_ = store.grad_data(weight_slot_);
    bias_grad_ = store.grad_data(bias_slot_);
    gate_weight_grad_ = store.grad_data(gate_weight_slot_);
    gate_bias_grad_ = store.grad_data(gate_bias_slot_);
    hyper_weight_grad_ = store.grad_data(hyper_weight_slot_);
  }

  /// PyTorch's nn.Linear default, as in the reference: W, b ~ uniform(+-1/sqrt(in)); W_g, b_g,
  /// W_h ~ uniform(+-1/sqrt(context)); draws (stream::init, layer, tensor 0..4).
  void initialize(const CounterRng& rng, std::uint32_t layer) {
    const double bound_x = 1.0 / std::sqrt(static_cast<double>(in_));
    const double bound_c = 1.0 / std::sqrt(static_cast<double>(context_));
    fill_uniform(span(weight_, in_ * out_), bound_x, rng, layer, 0);
    fill_uniform(span(bias_, out_), bound_x, rng, layer, 1);
    fill_uniform(span(gate_weight_, context_ * out_), bound_c, rng, layer, 2);
    fill_uniform(span(gate_bias_, out_), bound_c, rng, layer, 3);
    fill_uniform(span(hyper_weight_, context_ * out_), bound_c, rng, layer, 4);
  }

  /// Input features per row.
  [[nodiscard]] Index in_features() const noexcept { return in_; }
  /// Output features per row.
  [[nodiscard]] Index out_features() const noexcept { return out_; }
  /// Context features (the time embedding's width).
  [[nodiscard]] Index context_features() const noexcept { return context_; }
  /// True when a leaky ReLU follows the layer.
  [[nodiscard]] bool leaky_relu() const noexcept { return leaky_; }

  /// gate = sigmoid(c W_g + b_g) and shift = c W_h for the S context rows, used by the following
  /// forward() calls. c: S x context.
  void set_context(ConstRef c) {
    ddpm::detail::require_shape(c.cols() == context_, "context", c.rows(), c.cols(), [&] {
      return "groups x context_features = " + ddpm::detail::to_text(context_) + " columns";
    });
    const Index groups = c.rows();
    Real* gate = gate_.resize(groups, out_).data();
    Real* shift = shift_.resize(groups, out_).data();
    const Real* bg = gate_bias_;
    namespace nd = ddpm::nn::detail;
    nd::gemm(groups, out_, context_, nd::strided(c), nd::StridedMatrix<Real>{gate_weight_, out_, 1},
             gate, out_, false, [&](Index i, Index j, Index rows, Index cols) {
               for (Index r = i; r < i + rows; ++r) {
                 nd::ArrayMap<Real> g(gate + r * out_ + j, cols);
                 g = (Real(1) + (-(g + nd::ConstArrayMap<Real>(bg + j, cols))).exp()).inverse();
               }
             });
    nd::gemm(groups, out_, context_, nd::strided(c),
             nd::StridedMatrix<Real>{hyper_weight_, out_, 1}, shift, out_, false);
  }

  /// The gate and shift rows of the last set_context() (S x out each).
  [[nodiscard]] Eigen::Map<const Batch<Real>> gate() const noexcept { return gate_.view(); }
  /// \copydoc gate()
  [[nodiscard]] Eigen::Map<const Batch<Real>> shift() const noexcept { return shift_.view(); }

  /// y = f((x W + b) * gate[s] + shift[s]) for row r of group s = r / group_rows. x must have
  /// S * group_rows rows for the S context rows of set_context(); y: x.rows() x out, not aliasing
  /// x. With `keep_for_backward` the linear part x W + b is kept for backward(); without it the
  /// pass runs in place in y (inference).
  void forward(ConstRef x, Index group_rows, Ref y, bool keep_for_backward = true) {
    forward_impl(x, group_rows, y, nullptr, keep_for_backward);
  }

  /// As forward(), plus a residual `skip` (x.rows() x out, may alias x but not y) added after f.
  void forward(ConstRef x, Index group_rows, Ref y, ConstRef skip, bool keep_for_backward = true) {
    ddpm::detail::require_shape(skip.rows() == x.rows() && skip.cols() == out_, "skip", skip.rows(),
                                skip.cols(), "batch x out_features, the shape of y");
    forward_impl(x, group_rows, y, &skip, keep_for_backward);
  }

  /// Backward of the last forward() (x and c again; dy = d loss / d y): accumulates every
  /// parameter gradient and adds d loss / d c to d_context (S x context). The per-group terms are
  /// reduced once per group: d gate[s] = sum over the group's rows of dy' * (x W + b), d shift[s]
  /// = sum of dy', dy' = dy * f'(u). Consumes the kept activations (they become dz in place), so
  /// each forward() allows one backward().
  void backward(ConstRef x, ConstRef c, ConstRef dy, Ref d_context) {
    backward_impl(x, c, dy, d_context, nullptr);
  }

  /// As backward(x, c, dy, d_context), and also writes dx = d loss / d x (x.rows() x in). dx may
  /// be the same memory as dy (it is written after dy is read).
  void backward(ConstRef x, ConstRef c, ConstRef dy, Ref d_context, Ref dx) {
    ddpm::detail::require_shape(dx.rows() == x.rows() && dx.cols() == in_, "dx", dx.rows(),
                                dx.cols(), "batch x in_features, the shape of x");
    backward_impl(x, c, dy, d_context, &dx);
  }

 private:
  static std::span<Real> span(Real* data, Index n) noexcept {
    return {data, static_cast<std::size_t>(n)};
  }

  // The number of groups, after checking x against the context of set_context().
  Index check_batch(const ConstRef& x, Index group_rows) const {
    ddpm::detail::require_shape(x.cols() == in_, "x", x.rows(), x.cols(), [&] {
      return "in_features = " + ddpm::detail::to_text(in_) + " columns";
    });
    ddpm::detail::require(group_rows >= 1, "group_rows", group_rows, ">= 1");
    const Index groups = gate_.rows();
    ddpm::detail::require(x.rows() == groups * group_rows, "x.rows()", x.rows(), [&] {
      return "groups * group_rows = " + ddpm::detail::to_text(groups) + " * " +
             ddpm::detail::to_text(group_rows) + " (one context row per group of set_context())";
    });
    return groups;
  }

  void forward_impl(const ConstRef& x, Index group_rows, Ref& y, const ConstRef* skip, bool keep) {
    check_batch(x, group_rows);
    const Index rows = x.rows();
    ddpm::detail::require_shape(y.rows() == rows && y.cols() == out_, "y", y.rows(), y.cols(),
                                "batch x out_features");
    namespace nd = ddpm::nn::detail;
    // The product writes x W either into the kept workspace (which then holds a = x W + b) or
    // straight into y; the rest runs on each finished tile while it is in cache.
    Real* a = keep ? linear_.resize(rows, out_).data() : y.data();
    const Index lda = keep ? out_ : y.outerStride();
    kept_rows_ = keep ? rows : -1;
    kept_group_rows_ = group_rows;
    const Real* b = bias_;
    const Real* gate = gate_.data();
    const Real* shift = shift_.data();
    const Index n = out_;
    const bool leaky = leaky_;
    const Real slope = slope_;
    nd::gemm(rows, out_, in_, nd::strided(x), nd::StridedMatrix<Real>{weight_, out_, 1}, a, lda,
             false, [&](Index i, Index j, Index tile_rows, Index cols) {
               for (Index r = i; r < i + tile_rows; ++r) {
                 const Index s = r / group_rows;
                 nd::ArrayMap<Real> ar(a + r * lda + j, cols);
                 nd::ArrayMap<Real> yr(y.data() + r * y.outerStride() + j, cols);
                 ar += nd::ConstArrayMap<Real>(b + j, cols);
                 yr = ar * nd::ConstArrayMap<Real>(gate + s * n + j, cols) +
                      nd::ConstArrayMap<Real>(shift + s * n + j, cols);
                 if (leaky) yr = yr.max(slope * yr);
                 if (skip != nullptr) {
                   yr += nd::ConstArrayMap<Real>(skip->data() + r * skip->outerStride() + j, cols);
                 }
               }
             });
  }

  void backward_impl(const ConstRef& x, const ConstRef& c, const ConstRef& dy, Ref& d_context,
                     Ref* dx) {
    const Index groups = check_batch(x, kept_group_rows_);
    const Index rows = x.rows();
    ddpm::detail::require_shape(dy.rows() == rows && dy.cols() == out_, "dy", dy.rows(), dy.cols(),
                                "batch x out_features, the shape of the forward output");
    ddpm::detail::require_shape(c.rows() == groups && c.cols() == context_, "c", c.rows(), c.cols(),
                                "the context of set_context()");
    ddpm::detail::require_shape(d_context.rows() == groups && d_context.cols() == context_,
                                "d_context", d_context.rows(), d_context.cols(),
                                "the shape of the context");
    if (kept_rows_ != rows) {
      throw std::logic_error(
          "ddpm: nn::ConcatSquashLinear::backward needs a forward() with keep_for_backward on the "
          "same batch (and allows one backward per forward)");
    }
    kept_rows_ = -1;
    namespace nd = ddpm::nn::detail;
    const Index n = out_;
    const Index group_rows = kept_group_rows_;
    Real* a = linear_.data();
    const Real* gate = gate_.data();
    const Real* shift = shift_.data();
    // Per group: d_shift[s] = sum du, d_gate_pre[s] = (sum du * a) * g (1 - g); dz = du * g is
    // written over a, which is no longer needed.
    Real* d_shift = d_shift_.resize(groups, n).data();
    Real* d_gate = d_gate_.resize(groups, n).data();
    const Index blocks = (n + kColumnBlock - 1) / kColumnBlock;
    const bool leaky = leaky_;
    const Real slope = slope_;
    ddpm::detail::parallel_for(groups * blocks, group_rows * kColumnBlock, [&](Index item) {
      const Index s = item / blocks;
      const Index j = item % blocks * kColumnBlock;
      const Index cols = std::min(kColumnBlock, n - j);
      const nd::ConstArrayMap<Real> g(gate + s * n + j, cols);
      const nd::ConstArrayMap<Real> h(shift + s * n + j, cols);
      nd::BlockArray<Real> sum_du = nd::BlockArray<Real>::Zero(cols);
      nd::BlockArray<Real> sum_du_a = nd::BlockArray<Real>::Zero(cols);
      nd::BlockArray<Real> du(cols);
      for (Index r = s * group_rows; r < (s + 1) * group_rows; ++r) {
        nd::ArrayMap<Real> ar(a + r * n + j, cols);
        const nd::ConstArrayMap<Real> dyr(dy.data() + r * dy.outerStride() + j, cols);
        if (leaky) {
          du = (ar * g + h > Real(0)).select(dyr, slope * dyr);
        } else {
          du = dyr;
        }
        sum_du += du;
        sum_du_a += du * ar;
        ar = du * g;
      }
      nd::ArrayMap<Real>(d_shift + s * n + j, cols) = sum_du;
      nd::ArrayMap<Real>(d_gate + s * n + j, cols) = sum_du_a * g * (Real(1) - g);
    });
    // b.grad += sum over rows of dz = sum over groups of g[s] * d_shift[s] (dz = du * g[s]).
    nd::ArrayMap<Real> bias_grad(bias_grad_, n);
    nd::ArrayMap<Real> gate_bias_grad(gate_bias_grad_, n);
    for (Index s = 0; s < groups; ++s) {
      bias_grad +=
          nd::ConstArrayMap<Real>(gate + s * n, n) * nd::ConstArrayMap<Real>(d_shift + s * n, n);
      gate_bias_grad += nd::ConstArrayMap<Real>(d_gate + s * n, n);
    }
    const nd::StridedMatrix<Real> d_gate_m{d_gate, n, 1};
    const nd::StridedMatrix<Real> d_shift_m{d_shift, n, 1};
    nd::gemm(context_, n, groups, nd::strided(c).transposed(), d_gate_m, gate_weight_grad_, n,
             true);
    nd::gemm(context_, n, groups, nd::strided(c).transposed(), d_shift_m, hyper_weight_grad_, n,
             true);
    nd::gemm(groups, context_, n, d_gate_m, nd::StridedMatrix<Real>{gate_weight_, 1, n},
             d_context.data(), d_context.outerStride(), true);
    nd::gemm(groups, context_, n, d_shift_m, nd::StridedMatrix<Real>{hyper_weight_, 1, n},
             d_context.data(), d_context.outerStride(), true);
    const nd::StridedMatrix<Real> dz{a, n, 1};
    if (n < nd::GemmShape<Real>::kNr / 2) {
      // A thin output (3 coordinates): x^T dz would go to Eigen's product, whose depth blocking
      // depends on how the rows are split over threads; dz^T x runs on the packed GEMM, whose
      // reduction order does not.
      Real* transposed = weight_grad_transposed_.resize(n, in_).data();
      nd::gemm(n, in_, rows, nd::StridedMatrix<Real>{a, 1, n}, nd::strided(x), transposed, in_,
               false);
      Eigen::Map<Batch<Real>>(weight_grad_, in_, n) +=
          Eigen::Map<const Batch<Real>>(transposed, n, in_).transpose();
    } else {
      nd::gemm(in_, n, rows, nd::strided(x).transposed(), dz, weight_grad_, n, true);
    }
    if (dx != nullptr) {
      nd::gemm(rows, in_, n, dz, nd::StridedMatrix<Real>{weight_, 1, n}, dx->data(),
               dx->outerStride(), false);
    }
  }

  Index in_ = 0;
  Index out_ = 0;
  Index context_ = 0;
  bool leaky_ = false;
  Real slope_ = Real(0.01);
  typename ParameterStore<Real>::Slot weight_slot_{}, bias_slot_{}, gate_weight_slot_{},
      gate_bias_slot_{}, hyper_weight_slot_{};
  // Raw pointers, as in Linear: a defaulted copy must not write into the source's buffers.
  Real* weight_ = nullptr;
  Real* bias_ = nullptr;
  Real* gate_weight_ = nullptr;
  Real* gate_bias_ = nullptr;
  Real* hyper_weight_ = nullptr;
  Real* weight_grad_ = nullptr;
  Real* bias_grad_ = nullptr;
  Real* gate_weight_grad_ = nullptr;
  Real* gate_bias_grad_ = nullptr;
  Real* hyper_weight_grad_ = nullptr;
  Workspace<Real> gate_;                    // sigmoid(c W_g + b_g), S x out
  Workspace<Real> shift_;                   // c W_h, S x out
  Workspace<Real> linear_;                  // a = x W + b (forward), then dz (backward)
  Workspace<Real> d_shift_;                 // per-group sums of du
  Workspace<Real> d_gate_;                  // per-group d loss / d (c W_g + b_g)
  Workspace<Real> weight_grad_transposed_;  // dz^T x for a thin output
  Index kept_rows_ = -1;                    // rows of the kept a, -1 if none
  Index kept_group_rows_ = 1;
};

}  // namespace ddpm::nn
