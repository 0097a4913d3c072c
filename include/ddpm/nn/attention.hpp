// SPDX-License-Identifier: MIT
// Multi-head self-attention over the pixels of each image, the residual attention block of the
// DDPM / improved-diffusion UNet, with a hand-written backward pass.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/image.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// y = x + proj(attention(GroupNorm(x))): each pixel of an image attends to every pixel of the
/// same image (Ho et al. 2020, appendix B; Nichol & Dhariwal 2021's AttentionBlock).
///
/// With h = GroupNorm(x) and [q | k | v] = h W_qkv + b_qkv (a 1x1 convolution C -> 3C, which on
/// channels-last rows is a Linear), head j of `heads` (d = C / heads channels each) computes, per
/// image, A = softmax_rows(q_j k_j^T / sqrt(d)) (HW x HW) and o_j = A v_j; the heads are
/// concatenated and projected back by a 1x1 convolution C -> C. Within each of q, k and v the heads
/// are consecutive blocks of d channels. Parameters: "<name>.norm.weight/bias" (1 x C),
/// "<name>.qkv.weight" (C x 3C), "<name>.qkv.bias" (1 x 3C), "<name>.proj.weight" (C x C),
/// "<name>.proj.bias" (1 x C).
///
/// \code
///   nn::ParameterStore<float> store;
///   nn::SpatialAttention<float> attn(store, "mid.attn", 64, /*heads=*/1, /*groups=*/8);
///   store.allocate();
///   attn.bind(store);
///   attn.initialize(ddpm::CounterRng(1), 40, /*zero_proj=*/true);
///   attn.forward(x, shape, y);          // x, y: shape.pixels() x 64
///   attn.backward(x, shape, dy, dx);
/// \endcode
template <class Real>
class SpatialAttention {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;

  SpatialAttention() = default;

  /// Registers the norm, qkv and proj parameters under `name`. `heads` and `groups` must divide
  /// `channels`.
  SpatialAttention(ParameterStore<Real>& store, const std::string& name, Index channels,
                   Index heads = 1, Index groups = 8)
      : channels_(channels),
        heads_(checked_heads(name, channels, heads, groups)),
        norm_(store, name + ".norm", groups, channels),
        qkv_(store, name + ".qkv", channels, 3 * channels),
        proj_(store, name + ".proj", channels, channels) {}

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    norm_.bind(store);
    qkv_.bind(store);
    proj_.bind(store);
  }

  /// norm: gamma = 1, beta = 0; qkv and proj: Linear's PyTorch default drawn as layers
  /// `first_layer` and `first_layer + 1`. `zero_proj` zeroes proj instead, so the block starts as
  /// the identity (as improved-diffusion does).
  void initialize(const CounterRng& rng, std::uint32_t first_layer, bool zero_proj = false) {
    norm_.initialize();
    qkv_.initialize(rng, first_layer);
    proj_.initialize(rng, first_layer + 1, zero_proj);
  }

  /// The number of channels.
  [[nodiscard]] Index channels() const noexcept { return channels_; }
  /// The number of attention heads.
  [[nodiscard]] Index heads() const noexcept { return heads_; }
  /// The GroupNorm before the projections.
  [[nodiscard]] GroupNorm<Real>& norm() noexcept { return norm_; }
  /// \copydoc norm()
  [[nodiscard]] const GroupNorm<Real>& norm() const noexcept { return norm_; }
  /// The joint query, key and value projection (channels x 3 channels).
  [[nodiscard]] Linear<Real>& qkv() noexcept { return qkv_; }
  /// \copydoc qkv()
  [[nodiscard]] const Linear<Real>& qkv() const noexcept { return qkv_; }
  /// The output projection (channels x channels).
  [[nodiscard]] Linear<Real>& proj() noexcept { return proj_; }
  /// \copydoc proj()
  [[nodiscard]] const Linear<Real>& proj() const noexcept { return proj_; }

  /// y = x + proj(attention(GroupNorm(x))) for x: s.pixels() x channels; y has x's shape and must
  /// not be x. With `keep_for_backward` the attention matrices (N * heads of HW x HW) are kept for
  /// backward(); without it only one per thread is held at a time.
  void forward(ConstRef x, const ImageShape& s, Ref y, bool keep_for_backward = true) {
    detail::require_image<Real>(x, s, channels_, "x");
    ddpm::detail::require_shape(y.rows() == x.rows() && y.cols() == channels_, "y", y.rows(),
                                y.cols(), "the shape of x, pixels x channels");
    if (x.size() > 0 && y.data() == x.data()) {
      throw InvalidArgument("y", "the matrix x", "a matrix other than x (x is the residual)");
    }
    const Index images = s.batch;
    const Index plane = s.plane();
    const Index c = channels_;
    kept_ = false;
    Eigen::Map<Batch<Real>> h = normed_.resize(s.pixels(), c);
    norm_.forward(x, s, h, keep_for_backward);
    Eigen::Map<Batch<Real>> qkv = qkv_out_.resize(s.pixels(), 3 * c);
    qkv_.forward(h, qkv, keep_for_backward);
    Eigen::Map<Batch<Real>> o = attn_out_.resize(s.pixels(), c);
    // Kept: one HW x HW matrix per (image, head). Otherwise one per chunk of images, each chunk
    // run by one thread, reused across its images and heads.
    const Index chunks =
        keep_for_backward ? images : std::min<Index>(images, ddpm::detail::max_threads());
    const Index slot_size = padded_slot_size(plane);
    Real* weights =
        attention_.resize((keep_for_backward ? images * heads_ : chunks) * slot_size, 1).data();
    // Work per image: the multiply-adds of q k^T and A v, and ~10 per softmax element for exp().
    for_each_head(images, chunks, plane * plane * (2 * c + 10 * heads_),
                  [&](Index n, Index j, Index chunk) {
                    const Index slot = keep_for_backward ? n * heads_ + j : chunk;
                    attend(qkv, o, plane, n, j, weights + slot * slot_size);
                  });
    proj_.forward(o, y, x, keep_for_backward);
    kept_ = keep_for_backward;
    kept_shape_ = s;
  }

  /// Accumulates the gradients of all six parameter tensors and writes dx (or adds it when
  /// `accumulate_dx`), for the x of the last forward(), which must have kept its intermediates.
  /// dx may be the matrix dy unless `accumulate_dx`.
  void backward(ConstRef x, const ImageShape& s, ConstRef dy, Ref dx, bool accumulate_dx = false) {
    detail::require_image<Real>(x, s, channels_, "x");
    ddpm::detail::require_shape(dy.rows() == x.rows() && dy.cols() == channels_, "dy", dy.rows(),
                                dy.cols(), "the shape of the forward output, pixels x channels");
    ddpm::detail::require_shape(dx.rows() == x.rows() && dx.cols() == channels_, "dx", dx.rows(),
                                dx.cols(), "the shape of x, pixels x channels");
    if (!kept_ || kept_shape_ != s) {
      throw std::logic_error(
          "ddpm: nn::SpatialAttention::backward needs a forward() with keep_for_backward on the "
          "same batch");
    }
    const Index images = s.batch;
    const Index plane = s.plane();
    const Index c = channels_;
    // d(attention output), then d(qkv) per (image, head), then dh through the qkv projection.
    Eigen::Map<Batch<Real>> d_o = grad_channels_.resize(s.pixels(), c);
    proj_.backward(attn_out_.view(), dy, d_o);
    Eigen::Map<Batch<Real>> d_qkv = grad_qkv_.resize(s.pixels(), 3 * c);
    const Index chunks = std::min<Index>(images, ddpm::detail::max_threads());
    const Index slot_size = padded_slot_size(plane);
    Real* scratch = grad_attention_.resize(chunks * slot_size, 1).data();
    for_each_head(images, chunks, plane * plane * (4 * c + 10 * heads_),
                  [&](Index n, Index j, Index chunk) {
                    attend_backward(d_o, d_qkv, plane, n, j, scratch + chunk * slot_size);
                  });
    // d_o is spent; its buffer takes dh = d(qkv) W_qkv^T.
    Eigen::Map<Batch<Real>> dh = grad_channels_.view();
    qkv_.backward(normed_.view(), d_qkv, dh);
    // The residual path first, so that dx may be dy; then the normalization adds its part.
    if (accumulate_dx) {
      dx += dy;
    } else if (dx.data() != dy.data()) {
      dx = dy;
    }
    norm_.backward(x, s, dh, dx, /*accumulate_dx=*/true);
  }

 private:
  static Index checked_heads(const std::string& name, Index channels, Index heads, Index groups) {
    ddpm::detail::require(channels >= 1, name + ".channels", channels, ">= 1");
    ddpm::detail::require(heads >= 1 && channels % heads == 0, name + ".heads", heads, [&] {
      return "a positive divisor of channels = " + ddpm::detail::to_text(channels);
    });
    ddpm::detail::require(groups >= 1 && channels % groups == 0, name + ".groups", groups, [&] {
      return "a positive divisor of channels = " + ddpm::detail::to_text(channels);
    });
    return heads;
  }

  /// Runs body(n, j, chunk) for every (image n, head j): images are dealt round-robin to
  /// `chunks` chunks that run in parallel, and each chunk owns one scratch slot. An image's
  /// arithmetic is the same whichever chunk runs it.
  template <class Body>
  void for_each_head(Index images, Index chunks, Index work_per_image, Body&& body) const {
    const Index images_per_chunk = chunks > 0 ? (images + chunks - 1) / chunks : 0;
    ddpm::detail::parallel_for(chunks, work_per_image * images_per_chunk, [&](Index chunk) {
      for (Index n = chunk; n < images; n += chunks) {
        for (Index j = 0; j < heads_; ++j) body(n, j, chunk);
      }
    });
  }

  /// Elements between consecutive HW x HW matrices in a workspace: a multiple of 16, so every
  /// matrix starts at the same alignment. Vectorized sums and exp() round differently at different
  /// alignments, and which slot an image uses depends on the thread count when nothing is kept.
  static Index padded_slot_size(Index plane) noexcept { return (plane * plane + 15) / 16 * 16; }

  /// Head j of image n: q, k, v and the output o as strided column blocks of the image's rows.
  ConstStridedMap<Real> head_block(const Real* base, Index stride, Index plane, Index n, Index j,
                                   Index part) const {
    const Index d = channels_ / heads_;
    return ConstStridedMap<Real>(base + n * plane * stride + part * channels_ + j * d, plane, d,
                                 Eigen::OuterStride<>(stride));
  }
  StridedMap<Real> head_block(Real* base, Index stride, Index plane, Index n, Index j,
                              Index part) const {
    const Index d = channels_ / heads_;
    return StridedMap<Real>(base + n * plane * stride + part * channels_ + j * d, plane, d,
                            Eigen::OuterStride<>(stride));
  }

  /// A = softmax(q k^T / sqrt(d)) into `a` (plane x plane), o_j = A v.
  void attend(const Eigen::Map<Batch<Real>>& qkv, Eigen::Map<Batch<Real>>& o, Index plane, Index n,
              Index j, Real* a) const {
    const Index s3 = 3 * channels_;
    const ConstStridedMap<Real> q = head_block(qkv.data(), s3, plane, n, j, 0);
    const ConstStridedMap<Real> k = head_block(qkv.data(), s3, plane, n, j, 1);
    const ConstStridedMap<Real> v = head_block(qkv.data(), s3, plane, n, j, 2);
    Eigen::Map<Batch<Real>> weights(a, plane, plane);
    weights.noalias() = q * k.transpose();
    const Real scale = inverse_sqrt_head_dim();
    for (Index i = 0; i < plane; ++i) {
      detail::ArrayMap<Real> row(a + i * plane, plane);
      // Subtracting the row maximum keeps exp() from overflowing; softmax is unchanged by it.
      const Real top = row.maxCoeff();
      row = ((row - top) * scale).exp();
      row *= Real(1) / row.sum();
    }
    StridedMap<Real> out = head_block(o.data(), channels_, plane, n, j, 0);
    out.noalias() = weights * v;
  }

  /// dv = A^T do; dA = do v^T; dS = A * (dA - rowsum(dA * A)) / sqrt(d); dq = dS k; dk = dS^T q.
  void attend_backward(const Eigen::Map<Batch<Real>>& d_o, Eigen::Map<Batch<Real>>& d_qkv,
                       Index plane, Index n, Index j, Real* scratch) const {
    const Index s3 = 3 * channels_;
    const Real* qkv = qkv_out_.data();
    const ConstStridedMap<Real> q = head_block(qkv, s3, plane, n, j, 0);
    const ConstStridedMap<Real> k = head_block(qkv, s3, plane, n, j, 1);
    const ConstStridedMap<Real> v = head_block(qkv, s3, plane, n, j, 2);
    const ConstStridedMap<Real> grad_out = head_block(d_o.data(), channels_, plane, n, j, 0);
    const Eigen::Map<const Batch<Real>> weights(
        attention_.data() + (n * heads_ + j) * padded_slot_size(plane), plane, plane);
    StridedMap<Real> dq = head_block(d_qkv.data(), s3, plane, n, j, 0);
    StridedMap<Real> dk = head_block(d_qkv.data(), s3, plane, n, j, 1);
    StridedMap<Real> dv = head_block(d_qkv.data(), s3, plane, n, j, 2);
    dv.noalias() = weights.transpose() * grad_out;
    Eigen::Map<Batch<Real>> grad_scores(scratch, plane, plane);
    grad_scores.noalias() = grad_out * v.transpose();
    const Real scale = inverse_sqrt_head_dim();
    for (Index i = 0; i < plane; ++i) {
      detail::ArrayMap<Real> g(scratch + i * plane, plane);
      const detail::ConstArrayMap<Real> a(weights.data() + i * plane, plane);
      const Real dot = (g * a).sum();
      g = a * (g - dot) * scale;
    }
    dq.noalias() = grad_scores * k;
    dk.noalias() = grad_scores.transpose() * q;
  }

  [[nodiscard]] Real inverse_sqrt_head_dim() const noexcept {
    return static_cast<Real>(1.0 / std::sqrt(static_cast<double>(channels_ / heads_)));
  }

  Index channels_ = 0;
  Index heads_ = 1;
  GroupNorm<Real> norm_;
  Linear<Real> qkv_;
  Linear<Real> proj_;
  Workspace<Real> normed_;          // h = GroupNorm(x), the qkv input
  Workspace<Real> qkv_out_;         // [q | k | v], pixels x 3C
  Workspace<Real> attn_out_;        // concatenated head outputs, the proj input
  Workspace<Real> attention_;       // softmax matrices, (images * heads or chunks) * HW x HW
  Workspace<Real> grad_channels_;   // d(attention output), then dh
  Workspace<Real> grad_qkv_;        // d[q | k | v]
  Workspace<Real> grad_attention_;  // dA then dS, one HW x HW per chunk
  ImageShape kept_shape_{};
  bool kept_ = false;
};

}  // namespace ddpm::nn
