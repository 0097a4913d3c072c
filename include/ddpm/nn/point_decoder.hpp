// SPDX-License-Identifier: MIT
// Luo & Hu's PointwiseNet: the noise predictor eps_theta(x_t, beta_t, z) of a point-cloud
// diffusion model, every point through ConcatSquashLinear layers conditioned on its shape's
// context [beta, sin beta, cos beta, z].
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/concat_squash.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// eps_theta(x_t, beta, z) of Luo & Hu 2021 (models/diffusion.py, PointwiseNet): with the context
/// c = [beta, sin beta, cos beta, z] of each shape, h_0 = x_t, h_k = leaky_relu(CSL_k(h_{k-1}, c))
/// (negative slope 0.01) for the hidden layers, out = CSL_L(h_{L-1}, c) (+ x_t when residual).
/// The widths 3 -> 128 -> 256 -> 512 -> 256 -> 128 -> 3 are the reference's.
///
/// A component of a model (see PointCloudModel): it registers "<name>.layer<k>.*" with the
/// model's store. A batch is S shapes x N points, rows [s N, (s + 1) N) for shape s; beta and z
/// have one entry (row) per shape. Workspaces only grow; forward() keeps what backward() needs
/// (the hidden activations and each layer's linear part), and one backward() consumes it.
template <class Real>
class PointDecoder {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;

  /// Columns of the time part [beta, sin beta, cos beta] of the context.
  static constexpr Index kTimeFeatures = 3;

  PointDecoder() = default;

  /// point_dim -> widths... -> point_dim, conditioned on a latent_dim code.
  PointDecoder(ParameterStore<Real>& store, const std::string& name, Index point_dim,
               const std::vector<Index>& widths, Index latent_dim, bool residual,
               double negative_slope = 0.01)
      : point_dim_(point_dim), latent_dim_(latent_dim), residual_(residual) {
    ddpm::detail::require(point_dim >= 1, name + ".point_dim", point_dim, ">= 1");
    ddpm::detail::require(!widths.empty(), name + ".widths", "{}", "at least one hidden width");
    ddpm::detail::require(latent_dim >= 0, name + ".latent_dim", latent_dim, ">= 0");
    const Index context = kTimeFeatures + latent_dim;
    Index in = point_dim;
    for (std::size_t k = 0; k <= widths.size(); ++k) {
      const bool last = k == widths.size();
      const Index out = last ? point_dim : widths[k];
      ddpm::detail::require(out >= 1, name + ".widths[" + std::to_string(k) + "]", out, ">= 1");
      layers_.emplace_back(store, name + ".layer" + std::to_string(k), in, out, context, !last,
                           negative_slope);
      in = out;
    }
    hidden_.resize(widths.size());
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    for (ConcatSquashLinear<Real>& layer : layers_) layer.bind(store);
  }

  /// Initializes layer k from draws (stream::init, first_layer + k, ...). Returns the next free
  /// layer index.
  std::uint32_t initialize(const CounterRng& rng, std::uint32_t first_layer) {
    for (ConcatSquashLinear<Real>& layer : layers_) layer.initialize(rng, first_layer++);
    return first_layer;
  }

  /// Features per point.
  [[nodiscard]] Index point_dim() const noexcept { return point_dim_; }
  /// The width of the latent code it is conditioned on.
  [[nodiscard]] Index latent_dim() const noexcept { return latent_dim_; }
  /// The context width: the time features plus the latent code.
  [[nodiscard]] Index context_dim() const noexcept { return kTimeFeatures + latent_dim_; }
  /// True when the output adds x_t: out = CSL_L(h_{L-1}, c) + x_t.
  [[nodiscard]] bool residual() const noexcept { return residual_; }
  /// The ConcatSquash layers, first to last.
  [[nodiscard]] std::span<ConcatSquashLinear<Real>> layers() noexcept { return layers_; }

  /// The context of the last forward(), S x (3 + latent_dim): [beta, sin beta, cos beta, z].
  [[nodiscard]] Eigen::Map<const Batch<Real>> context() const noexcept { return context_.view(); }

  /// out = eps_theta(x_t, beta, z): x_t is S * points_per_shape x point_dim, beta has S entries,
  /// z is S x latent_dim; out is resized to x_t's shape. `keep_for_backward` as in Linear.
  void forward(ConstRef x_t, std::span<const Real> beta, ConstRef z, Index points_per_shape,
               Batch<Real>& out, bool keep_for_backward = true) {
    const Index shapes = static_cast<Index>(beta.size());
    ddpm::detail::require(points_per_shape >= 1, "points_per_shape", points_per_shape, ">= 1");
    ddpm::detail::require_shape(x_t.rows() == shapes * points_per_shape && x_t.cols() == point_dim_,
                                "x_t", x_t.rows(), x_t.cols(), [&] {
                                  return ddpm::detail::to_text(shapes) + " shapes x " +
                                         ddpm::detail::to_text(points_per_shape) + " points = " +
                                         ddpm::detail::to_text(shapes * points_per_shape) +
                                         " rows, " + ddpm::detail::to_text(point_dim_) + " columns";
                                });
    ddpm::detail::require_shape(z.rows() == shapes && z.cols() == latent_dim_, "z", z.rows(),
                                z.cols(), [&] {
                                  return "one row per shape (" + ddpm::detail::to_text(shapes) +
                                         ") x latent_dim = " + ddpm::detail::to_text(latent_dim_);
                                });
    const Index rows = x_t.rows();
    Eigen::Map<Batch<Real>> c = context_.resize(shapes, context_dim());
    for (Index s = 0; s < shapes; ++s) {
      const Real b = beta[static_cast<std::size_t>(s)];
      c(s, 0) = b;
      c(s, 1) = std::sin(b);
      c(s, 2) = std::cos(b);
    }
    c.rightCols(latent_dim_) = z;
    for (ConcatSquashLinear<Real>& layer : layers_) layer.set_context(c);
    out.resize(rows, point_dim_);
    const std::size_t last = layers_.size() - 1;
    if (keep_for_backward) {
      input_.resize(rows, point_dim_) = x_t;
      for (std::size_t k = 0; k < last; ++k) {
        Eigen::Map<Batch<Real>> h = hidden_[k].resize(rows, layers_[k].out_features());
        if (k == 0) {
          layers_[k].forward(input_.view(), points_per_shape, h);
        } else {
          layers_[k].forward(hidden_[k - 1].view(), points_per_shape, h);
        }
      }
      run_last(last == 0 ? input_.view() : hidden_[last - 1].view(), x_t, points_per_shape, out,
               true);
      kept_rows_ = rows;
    } else {
      // Inference keeps nothing: two buffers used in turn.
      std::size_t current = 0;
      for (std::size_t k = 0; k < last; ++k) {
        const std::size_t next = k == 0 ? 0 : 1 - current;
        Eigen::Map<Batch<Real>> h = spare_[next].resize(rows, layers_[k].out_features());
        if (k == 0) {
          layers_[k].forward(x_t, points_per_shape, h, false);
        } else {
          layers_[k].forward(spare_[current].view(), points_per_shape, h, false);
        }
        current = next;
      }
      run_last(last == 0 ? ConstRef(x_t) : ConstRef(spare_[current].view()), x_t, points_per_shape,
               out, false);
      kept_rows_ = -1;
    }
  }

  /// Backward of the last forward() (with keep_for_backward): accumulates the parameter
  /// gradients, writes d loss / d z to d_z (S x latent_dim) and, if grad_x is given, d loss /
  /// d x_t to *grad_x (resized to x_t's shape; includes the residual path).
  void backward(ConstRef grad_out, Ref d_z, Batch<Real>* grad_x = nullptr) {
    if (kept_rows_ < 0) {
      throw std::logic_error(
          "ddpm: nn::PointDecoder::backward needs a forward() with keep_for_backward (one "
          "backward per forward)");
    }
    const Index rows = kept_rows_;
    ddpm::detail::require_shape(grad_out.rows() == rows && grad_out.cols() == point_dim_,
                                "grad_out", grad_out.rows(), grad_out.cols(),
                                "the shape of the last forward() output");
    const Index shapes = context_.rows();
    ddpm::detail::require_shape(d_z.rows() == shapes && d_z.cols() == latent_dim_, "d_z",
                                d_z.rows(), d_z.cols(), "shapes x latent_dim");
    kept_rows_ = -1;
    const Eigen::Map<const Batch<Real>> c = std::as_const(context_).view();
    Eigen::Map<Batch<Real>> d_c = grad_context_.resize(shapes, context_dim());
    d_c.setZero();
    Index max_width = point_dim_;
    for (const ConcatSquashLinear<Real>& layer : layers_) {
      max_width = std::max(max_width, layer.out_features());
    }
    // One buffer for d loss / d h_k, overwritten in place layer by layer (each layer reads dy
    // before it writes dx).
    Real* dh = grad_hidden_.resize(rows, max_width).data();
    const std::size_t last = layers_.size() - 1;
    for (std::size_t k = last + 1; k-- > 0;) {
      ConcatSquashLinear<Real>& layer = layers_[k];
      const Eigen::Map<const Batch<Real>> x =
          k == 0 ? std::as_const(input_).view() : std::as_const(hidden_[k - 1]).view();
      const auto step = [&](const ConstRef& dy) {
        if (k > 0) {
          layer.backward(x, c, dy, d_c, Eigen::Map<Batch<Real>>(dh, rows, layer.in_features()));
        } else if (grad_x != nullptr) {
          grad_x->resize(rows, point_dim_);
          layer.backward(x, c, dy, d_c, *grad_x);
          if (residual_) *grad_x += grad_out;
        } else {
          layer.backward(x, c, dy, d_c);
        }
      };
      if (k == last) {
        step(grad_out);
      } else {
        step(Eigen::Map<const Batch<Real>>(dh, rows, layer.out_features()));
      }
    }
    d_z = d_c.rightCols(latent_dim_);
  }

 private:
  void run_last(ConstRef h, ConstRef x_t, Index points_per_shape, Batch<Real>& out, bool keep) {
    ConcatSquashLinear<Real>& layer = layers_.back();
    if (residual_) {
      layer.forward(h, points_per_shape, out, x_t, keep);
    } else {
      layer.forward(h, points_per_shape, out, keep);
    }
  }

  Index point_dim_ = 0;
  Index latent_dim_ = 0;
  bool residual_ = true;
  std::vector<ConcatSquashLinear<Real>> layers_;
  Workspace<Real> context_;              // [beta, sin beta, cos beta, z], S rows
  Workspace<Real> input_;                // x_t, kept for the first layer's weight gradient
  std::vector<Workspace<Real>> hidden_;  // h_0 .. h_{L-1} (training)
  Workspace<Real> spare_[2];             // inference ping-pong
  Workspace<Real> grad_hidden_;          // d loss / d h_k
  Workspace<Real> grad_context_;         // d loss / d c
  Index kept_rows_ = -1;
};

}  // namespace ddpm::nn
