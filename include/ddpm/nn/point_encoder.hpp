// SPDX-License-Identifier: MIT
// A PointNet encoder (Qi et al. 2017, as Luo & Hu 2021 use it): a shared per-point MLP, a max-pool
// over each shape's points and a head MLP giving the mean and log-variance of the shape's code.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// (mu, log sigma^2) = head(max over the shape's points of point_mlp(x)) for every shape of a
/// batch of S shapes x N points (rows [s N, (s + 1) N) for shape s).
///
/// point_mlp: Linear layers point_dim -> point_widths..., ReLU after all but the last (Luo & Hu's
/// models/encoders/pointnet.py: the last per-point layer is not rectified before the pool).
/// head: Linear layers -> head_widths... (ReLU) -> 2 * latent_dim, split into mu and log sigma^2.
/// Luo & Hu's batch norm is dropped: with it a shape's code would depend on the other shapes of
/// the batch (and on running statistics); without it the encoder is a pure function of one shape,
/// which keeps shapes independent and a resumed run exact. (The reference also has two heads, one
/// for mu and one for log sigma^2; here one head gives both.)
///
/// The max-pool's backward routes each channel's gradient to the point that attained the maximum
/// (ties: the lowest row). Only those points (at most one per channel) get a gradient, so in
/// training the forward pass keeps only the pooled indices, and backward() reruns the per-point
/// MLP on just those points (bitwise the same values: each row of a product is computed alone)
/// and backpropagates through them: the backward costs about as much as a forward on the
/// critical points instead of twice a forward on all of them.
///
/// Parameters: "<name>.point<k>.weight|bias", "<name>.head<k>.weight|bias".
template <class Real>
class PointEncoder {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;

  /// Rows per chunk of the bias-gradient sums (a fixed order on any thread count).
  static constexpr Index kRowsPerChunk = 64;

  PointEncoder() = default;

  /// Registers the per-point layers (`point_widths`) and the head (`head_widths`, then a last
  /// layer giving the mean and log-variance, `latent_dim` each) with `store` under `name`.
  PointEncoder(ParameterStore<Real>& store, const std::string& name, Index point_dim,
               const std::vector<Index>& point_widths, const std::vector<Index>& head_widths,
               Index latent_dim)
      : point_dim_(point_dim), latent_dim_(latent_dim) {
    ddpm::detail::require(point_dim >= 1, name + ".point_dim", point_dim, ">= 1");
    ddpm::detail::require(!point_widths.empty(), name + ".point_widths", "{}",
                          "at least one per-point width");
    ddpm::detail::require(latent_dim >= 1, name + ".latent_dim", latent_dim, ">= 1");
    Index in = point_dim;
    for (std::size_t k = 0; k < point_widths.size(); ++k) {
      const Index out = point_widths[k];
      ddpm::detail::require(out >= 1, name + ".point_widths[" + std::to_string(k) + "]", out,
                            ">= 1");
      const bool last = k + 1 == point_widths.size();
      point_.emplace_back(store, name + ".point" + std::to_string(k), in, out,
                          last ? Activation::identity : Activation::relu);
      in = out;
    }
    for (std::size_t k = 0; k <= head_widths.size(); ++k) {
      const bool last = k == head_widths.size();
      const Index out = last ? 2 * latent_dim : head_widths[k];
      ddpm::detail::require(out >= 1, name + ".head_widths[" + std::to_string(k) + "]", out,
                            ">= 1");
      head_.emplace_back(store, name + ".head" + std::to_string(k), in, out,
                         last ? Activation::identity : Activation::relu);
      in = out;
    }
    point_out_.resize(point_.size());
    head_out_.resize(head_.size());
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    for (Linear<Real>& layer : point_) layer.bind(store);
    for (Linear<Real>& layer : head_) layer.bind(store);
  }

  /// Initializes the layers from draws (stream::init, first_layer + k, ...) (PyTorch's default);
  /// returns the next free layer index.
  std::uint32_t initialize(const CounterRng& rng, std::uint32_t first_layer) {
    for (Linear<Real>& layer : point_) layer.initialize(rng, first_layer++);
    for (Linear<Real>& layer : head_) layer.initialize(rng, first_layer++);
    return first_layer;
  }

  /// Features per point.
  [[nodiscard]] Index point_dim() const noexcept { return point_dim_; }
  /// The width of the latent code.
  [[nodiscard]] Index latent_dim() const noexcept { return latent_dim_; }
  /// Channels of the pooled feature (the last per-point width).
  [[nodiscard]] Index channels() const noexcept { return point_.back().out_features(); }

  /// mean and log_var (resized to S x latent_dim) of the S = x.rows() / points_per_shape shapes
  /// of x. With `keep_for_backward` it keeps what backward() needs.
  void forward(ConstRef x, Index points_per_shape, Batch<Real>& mean, Batch<Real>& log_var,
               bool keep_for_backward = true) {
    ddpm::detail::require(points_per_shape >= 1, "points_per_shape", points_per_shape, ">= 1");
    ddpm::detail::require_shape(
        x.cols() == point_dim_ && x.rows() % points_per_shape == 0 && x.rows() > 0, "x", x.rows(),
        x.cols(), [&] {
          return "a positive multiple of points_per_shape = " +
                 ddpm::detail::to_text(points_per_shape) + " rows, " +
                 ddpm::detail::to_text(point_dim_) + " columns";
        });
    const Index rows = x.rows();
    const Index shapes = rows / points_per_shape;
    // The per-point MLP never keeps its activations (see the class comment): two buffers in turn.
    std::size_t current = 0;
    for (std::size_t k = 0; k < point_.size(); ++k) {
      const std::size_t next = k == 0 ? 0 : 1 - current;
      Eigen::Map<Batch<Real>> h = spare_[next].resize(rows, point_[k].out_features());
      if (k == 0) {
        point_[k].forward(x, h, false);
      } else {
        point_[k].forward(spare_[current].view(), h, false);
      }
      current = next;
    }
    const Index c = channels();
    const Eigen::Map<const Batch<Real>> features = std::as_const(spare_[current]).view();
    if (!keep_for_backward) {
      // Inference has its own pooled and head buffers, and runs the head without the Linear
      // layers' forward (which would drop what they keep), so what a training forward kept for
      // backward() survives an encode in between.
      Eigen::Map<Batch<Real>> pooled = inference_pooled_.resize(shapes, c);
      max_pool(features, points_per_shape, pooled, false);
      infer_head(shapes, mean, log_var);
      return;
    }
    Eigen::Map<Batch<Real>> pooled = pooled_.resize(shapes, c);
    argmax_.resize(static_cast<std::size_t>(shapes * c));
    max_pool(features, points_per_shape, pooled, true);
    for (std::size_t k = 0; k < head_.size(); ++k) {
      Eigen::Map<Batch<Real>> h = head_out_[k].resize(shapes, head_[k].out_features());
      if (k == 0) {
        head_[k].forward(pooled, h);
      } else {
        head_[k].forward(head_out_[k - 1].view(), h);
      }
    }
    split_head(std::as_const(head_out_.back()).view(), mean, log_var);
    input_.resize(rows, point_dim_) = x;
    kept_shapes_ = shapes;
    kept_points_ = points_per_shape;
  }

  /// Backward of the last forward() (with keep_for_backward), given d loss / d mean and d loss /
  /// d log_var (S x latent_dim each): accumulates the parameter gradients and, if grad_x is
  /// given, writes d loss / d x to it (resized to x's shape; zero at the points no channel
  /// pooled). One backward per forward.
  void backward(ConstRef d_mean, ConstRef d_log_var, Batch<Real>* grad_x = nullptr) {
    if (kept_shapes_ < 0) {
      throw std::logic_error(
          "ddpm: nn::PointEncoder::backward needs a forward() with keep_for_backward (one "
          "backward per forward)");
    }
    const Index shapes = kept_shapes_;
    const Index n = kept_points_;
    const Index rows = shapes * n;
    ddpm::detail::require_shape(d_mean.rows() == shapes && d_mean.cols() == latent_dim_, "d_mean",
                                d_mean.rows(), d_mean.cols(), "shapes x latent_dim");
    ddpm::detail::require_shape(d_log_var.rows() == shapes && d_log_var.cols() == latent_dim_,
                                "d_log_var", d_log_var.rows(), d_log_var.cols(),
                                "shapes x latent_dim");
    kept_shapes_ = -1;
    // Head.
    Eigen::Map<Batch<Real>> d_head = grad_head_[0].resize(shapes, 2 * latent_dim_);
    d_head.leftCols(latent_dim_) = d_mean;
    d_head.rightCols(latent_dim_) = d_log_var;
    std::size_t current = 0;
    for (std::size_t k = head_.size(); k-- > 0;) {
      const std::size_t next = 1 - current;
      const Eigen::Map<const Batch<Real>> in =
          k == 0 ? std::as_const(pooled_).view() : std::as_const(head_out_[k - 1]).view();
      Eigen::Map<Batch<Real>> dx = grad_head_[next].resize(shapes, head_[k].in_features());
      head_[k].backward(in, std::as_const(grad_head_[current]).view(), dx);
      current = next;
    }
    const Eigen::Map<const Batch<Real>> d_pooled = std::as_const(grad_head_[current]).view();

    // The critical points: every row that is some channel's maximum, in row order. Every
    // buffer below is sized for the most there can be (one per channel and shape), so a step
    // with more critical points than the last does not allocate.
    const Index c = channels();
    const Index most = std::min(rows, shapes * c);
    compact_.assign(static_cast<std::size_t>(rows), -1);
    for (const Index r : argmax_) compact_[static_cast<std::size_t>(r)] = 0;
    critical_.reserve(static_cast<std::size_t>(most));
    critical_.clear();
    for (Index r = 0; r < rows; ++r) {
      if (compact_[static_cast<std::size_t>(r)] >= 0) {
        compact_[static_cast<std::size_t>(r)] = static_cast<Index>(critical_.size());
        critical_.push_back(r);
      }
    }
    const Index m = static_cast<Index>(critical_.size());
    Index width = point_dim_;
    for (const Linear<Real>& layer : point_) width = std::max(width, layer.out_features());
    const std::size_t last = point_.size() - 1;
    critical_input_.resize(most, point_dim_);
    for (std::size_t k = 0; k < last; ++k) point_out_[k].resize(most, point_[k].out_features());
    grad_points_.resize(most, 2 * width);
    partial_sums_.resize((most + kRowsPerChunk - 1) / kRowsPerChunk, width);

    Eigen::Map<Batch<Real>> xc = critical_input_.resize(m, point_dim_);
    const Eigen::Map<const Batch<Real>> input = std::as_const(input_).view();
    for (Index i = 0; i < m; ++i) xc.row(i) = input.row(critical_[static_cast<std::size_t>(i)]);
    // Rerun the rectified per-point layers on them, keeping their outputs (ReLU's derivative is
    // read from its output). The last layer's output is not needed: its gradient is the pooled
    // gradient placed at the pooled points.
    namespace nd = ddpm::nn::detail;
    for (std::size_t k = 0; k < last; ++k) {
      const Index out = point_[k].out_features();
      Real* h = point_out_[k].resize(m, out).data();
      const Real* b = point_[k].bias().data();
      const nd::StridedMatrix<Real> in =
          k == 0
              ? nd::StridedMatrix<Real>{xc.data(), point_dim_, 1}
              : nd::StridedMatrix<Real>{point_out_[k - 1].data(), point_[k - 1].out_features(), 1};
      nd::gemm(m, out, point_[k].in_features(), in,
               nd::StridedMatrix<Real>{point_[k].weight().data(), out, 1}, h, out, false,
               [&](Index i, Index j, Index tile_rows, Index cols) {
                 for (Index r = i; r < i + tile_rows; ++r) {
                   nd::ArrayMap<Real> hr(h + r * out + j, cols);
                   hr = (hr + nd::ConstArrayMap<Real>(b + j, cols)).max(Real(0));
                 }
               });
    }
    // d loss / d (last per-point output) at the critical points; its bias gradient is the sum of
    // the pooled gradients over the shapes.
    Real* dz = grad_points_.data();
    Real* dh = grad_points_.data() + most * width;
    Eigen::Map<Batch<Real>> d_last(dz, m, c);
    d_last.setZero();
    for (Index s = 0; s < shapes; ++s) {
      for (Index j = 0; j < c; ++j) {
        const Index r = argmax_[static_cast<std::size_t>(s * c + j)];
        d_last(compact_[static_cast<std::size_t>(r)], j) = d_pooled(s, j);
      }
    }
    point_[last].bias_grad() += d_pooled.colwise().sum();
    for (std::size_t k = last + 1; k-- > 0;) {
      Linear<Real>& layer = point_[k];
      const Index in = layer.in_features();
      const Index out = layer.out_features();
      if (k < last) {
        // dz = dh * relu'(h_k), and the bias gradient from per-chunk sums added in chunk order.
        const Real* h = point_out_[k].data();
        const Index chunks = (m + kRowsPerChunk - 1) / kRowsPerChunk;
        Real* partial = partial_sums_.data();
        ddpm::detail::parallel_for(chunks, kRowsPerChunk * out, [&](Index q) {
          nd::ArrayMap<Real> sum(partial + q * out, out);
          sum.setZero();
          for (Index r = q * kRowsPerChunk; r < std::min(m, (q + 1) * kRowsPerChunk); ++r) {
            nd::ArrayMap<Real> dzr(dz + r * out, out);
            dzr = (nd::ConstArrayMap<Real>(h + r * out, out) > Real(0))
                      .select(nd::ConstArrayMap<Real>(dh + r * out, out), Real(0));
            sum += dzr;
          }
        });
        nd::ArrayMap<Real> bias_grad(layer.bias_grad().data(), out);
        for (Index q = 0; q < chunks; ++q)
          bias_grad += nd::ConstArrayMap<Real>(partial + q * out, out);
      }
      const nd::StridedMatrix<Real> x =
          k == 0 ? nd::StridedMatrix<Real>{xc.data(), point_dim_, 1}
                 : nd::StridedMatrix<Real>{point_out_[k - 1].data(), in, 1};
      const nd::StridedMatrix<Real> dz_m{dz, out, 1};
      nd::gemm(in, out, m, x.transposed(), dz_m, layer.weight_grad().data(), out, true);
      if (k > 0 || grad_x != nullptr) {
        // dh = dz W^T (into the other half of the buffer), then it becomes the next dz's input.
        nd::gemm(m, in, out, dz_m, nd::StridedMatrix<Real>{layer.weight().data(), 1, out}, dh, in,
                 false);
      }
    }
    if (grad_x == nullptr) return;
    grad_x->setZero(rows, point_dim_);
    for (Index i = 0; i < m; ++i) {
      grad_x->row(critical_[static_cast<std::size_t>(i)]) =
          Eigen::Map<const Batch<Real>>(dh, m, point_dim_).row(i);
    }
  }

  /// The pooled features of the last forward() (S x channels).
  [[nodiscard]] Eigen::Map<const Batch<Real>> pooled() const noexcept { return pooled_.view(); }
  /// Row of the point attaining the maximum of channel j of shape s in the last training forward.
  [[nodiscard]] Index argmax(Index s, Index j) const {
    return argmax_[static_cast<std::size_t>(s * channels() + j)];
  }

 private:
  // pooled(s, j) = max over the shape's rows of h(r, j); argmax_ the first row attaining it.
  void max_pool(const Eigen::Map<const Batch<Real>>& h, Index n, Eigen::Map<Batch<Real>> pooled,
                bool keep) {
    const Index shapes = pooled.rows();
    const Index c = pooled.cols();
    constexpr Index kBlock = 64;
    const Index blocks = (c + kBlock - 1) / kBlock;
    ddpm::detail::parallel_for(shapes * blocks, n * kBlock, [&](Index item) {
      const Index s = item / blocks;
      const Index j0 = item % blocks * kBlock;
      const Index cols = std::min(kBlock, c - j0);
      Real* best = pooled.data() + s * c + j0;
      std::int32_t index[kBlock];
      const Real* first = h.data() + s * n * c + j0;
      for (Index j = 0; j < cols; ++j) {
        best[j] = first[j];
        index[j] = 0;
      }
      for (Index i = 1; i < n; ++i) {
        const Real* row = h.data() + (s * n + i) * c + j0;
        for (Index j = 0; j < cols; ++j) {
          const bool greater = row[j] > best[j];  // strict: ties keep the lowest row
          best[j] = greater ? row[j] : best[j];
          index[j] = greater ? static_cast<std::int32_t>(i) : index[j];
        }
      }
      if (keep) {
        for (Index j = 0; j < cols; ++j) {
          argmax_[static_cast<std::size_t>(s * c + j0 + j)] = s * n + index[j];
        }
      }
    });
  }

  // The head on inference_pooled_, layer by layer in two buffers (S rows: Eigen's products).
  void infer_head(Index shapes, Batch<Real>& mean, Batch<Real>& log_var) {
    std::size_t current = 0;
    for (std::size_t k = 0; k < head_.size(); ++k) {
      const std::size_t next = 1 - current;
      const Linear<Real>& layer = head_[k];
      Eigen::Map<Batch<Real>> h = inference_head_[next].resize(shapes, layer.out_features());
      const Real* in = k == 0 ? inference_pooled_.data() : inference_head_[current].data();
      namespace nd = ddpm::nn::detail;
      nd::gemm(shapes, layer.out_features(), layer.in_features(),
               nd::StridedMatrix<Real>{in, layer.in_features(), 1},
               nd::StridedMatrix<Real>{layer.weight().data(), layer.out_features(), 1}, h.data(),
               layer.out_features(), false);
      h.rowwise() += layer.bias();
      if (layer.activation() == Activation::relu) h = h.cwiseMax(Real(0));
      current = next;
    }
    split_head(std::as_const(inference_head_[current]).view(), mean, log_var);
  }

  void split_head(const Eigen::Map<const Batch<Real>>& out, Batch<Real>& mean,
                  Batch<Real>& log_var) const {
    mean = out.leftCols(latent_dim_);
    log_var = out.rightCols(latent_dim_);
  }

  Index point_dim_ = 0;
  Index latent_dim_ = 0;
  std::vector<Linear<Real>> point_;
  std::vector<Linear<Real>> head_;
  Workspace<Real> spare_[2];                // per-point activations, in turn (forward)
  Workspace<Real> pooled_;                  // S x channels
  std::vector<Index> argmax_;               // S x channels rows of the maxima
  std::vector<Workspace<Real>> head_out_;   // head activations
  Workspace<Real> input_;                   // x, kept for backward
  std::vector<Index> compact_;              // row -> index among the critical points, or -1
  std::vector<Index> critical_;             // the critical rows, ascending
  Workspace<Real> critical_input_;          // their x rows
  std::vector<Workspace<Real>> point_out_;  // per-point activations at the critical points
  Workspace<Real> grad_points_;             // dz and dh of the per-point layers, side by side
  Workspace<Real> partial_sums_;            // per-chunk bias-gradient sums
  Workspace<Real> grad_head_[2];            // d loss / d head activations, in turn
  Workspace<Real> inference_pooled_;        // forward() without keep_for_backward
  Workspace<Real> inference_head_[2];
  Index kept_shapes_ = -1;
  Index kept_points_ = 0;
};

}  // namespace ddpm::nn
