// SPDX-License-Identifier: MIT
// The residual block of the DDPM UNet: two GroupNorm -> SiLU -> 3x3 conv stages with the timestep
// embedding added in between (or applied as a scale and shift of the second norm), plus a skip
// path.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/dropout.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/image.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// How a ResBlock injects the timestep embedding e (already passed through SiLU).
enum class EmbeddingInjection {
  add,          ///< h = conv1(...) + Linear(e), broadcast over pixels (Ho et al. 2020)
  scale_shift,  ///< GroupNorm2(h) * (1 + scale) + shift, [scale, shift] = Linear(e) (Nichol &
                ///< Dhariwal 2021, "use_scale_shift_norm")
};

}  // namespace ddpm::nn

namespace ddpm {
/// The names of the EmbeddingInjection values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<nn::EmbeddingInjection> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "injection";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<nn::EmbeddingInjection>, 2> names = {
      {{nn::EmbeddingInjection::add, "add"}, {nn::EmbeddingInjection::scale_shift, "scale-shift"}}};
};
}  // namespace ddpm

namespace ddpm::nn {

/// out = skip(x) + conv2(dropout(SiLU(N2(conv1(SiLU(N1(x))) [+ W e])))), with N2 optionally
/// modulated by e, skip the identity when in == out channels and a 1x1 convolution otherwise.
///
/// Parameters: "<name>.norm1.*", "<name>.conv1.*", "<name>.emb.*", "<name>.norm2.*",
/// "<name>.conv2.*" and "<name>.skip.*" (only when the channel count changes).
template <class Real>
class ResBlock {
 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;
  /// A writable row-major batch view.
  using Ref = Eigen::Ref<Batch<Real>>;

  /// Layer ids initialize() uses, starting at its `first_layer`.
  static constexpr std::uint32_t kLayerIds = 4;

  ResBlock() = default;

  /// Registers the norms, convolutions, the embedding projection and (when the channels change) the
  /// 1x1 skip convolution with `store` under `name`.
  ResBlock(ParameterStore<Real>& store, const std::string& name, Index in_channels,
           Index out_channels, Index embedding_dim, Index groups, double dropout,
           EmbeddingInjection injection = EmbeddingInjection::add)
      : in_(in_channels), out_(out_channels), injection_(injection), dropout_(dropout) {
    const bool scale_shift = injection == EmbeddingInjection::scale_shift;
    norm1_ = GroupNorm<Real>(store, name + ".norm1", groups, in_channels, Activation::silu);
    conv1_ = Conv2d<Real>(store, name + ".conv1", in_channels, out_channels, 3);
    embedding_ = Linear<Real>(store, name + ".emb", embedding_dim,
                              scale_shift ? 2 * out_channels : out_channels);
    // With scale-shift the activation follows the modulation, so the norm itself is affine only.
    norm2_ = GroupNorm<Real>(store, name + ".norm2", groups, out_channels,
                             scale_shift ? Activation::identity : Activation::silu);
    conv2_ = Conv2d<Real>(store, name + ".conv2", out_channels, out_channels, 3);
    if (in_channels != out_channels) {
      skip_ = Conv2d<Real>(store, name + ".skip", in_channels, out_channels, 1);
    }
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    norm1_.bind(store);
    conv1_.bind(store);
    embedding_.bind(store);
    norm2_.bind(store);
    conv2_.bind(store);
    if (skip_) skip_->bind(store);
  }

  /// Norms start at (1, 0), the rest at PyTorch's default; with `zero_output` conv2 starts at zero
  /// so the block is its skip path (improved-diffusion's choice).
  void initialize(const CounterRng& rng, std::uint32_t first_layer, bool zero_output) {
    norm1_.initialize();
    norm2_.initialize();
    conv1_.initialize(rng, first_layer);
    embedding_.initialize(rng, first_layer + 1);
    conv2_.initialize(rng, first_layer + 2, zero_output);
    if (skip_) skip_->initialize(rng, first_layer + 3);
  }

  /// Input channels.
  [[nodiscard]] Index in_channels() const noexcept { return in_; }
  /// Output channels.
  [[nodiscard]] Index out_channels() const noexcept { return out_; }

  /// y = block(x, e). x: s.pixels() x in_channels, e: s.batch x embedding_dim (SiLU already
  /// applied), y: s.pixels() x out_channels, not aliasing x. With `dropout_on` the dropout masks
  /// are draws (`layer`, `draw`) of `rng`.
  void forward(ConstRef x, const ImageShape& s, ConstRef e, Ref y, bool keep_for_backward,
               bool dropout_on, const CounterRng& rng, std::uint32_t layer, std::uint32_t draw) {
    const Index pixels = s.pixels();
    Eigen::Map<Batch<Real>> a1 = a1_.resize(pixels, in_);
    Eigen::Map<Batch<Real>> h1 = h1_.resize(pixels, out_);
    Eigen::Map<Batch<Real>> a2 = a2_.resize(pixels, out_);
    Eigen::Map<Batch<Real>> emb = emb_.resize(s.batch, embedding_.out_features());
    norm1_.forward(x, s, a1, keep_for_backward);
    conv1_.forward(a1, s.with_channels(in_), h1);
    embedding_.forward(e, emb, keep_for_backward);
    const ImageShape hs = s.with_channels(out_);
    if (injection_ == EmbeddingInjection::add) {
      add_per_image(emb, hs, h1);
      norm2_.forward(h1, hs, a2, keep_for_backward);
    } else {
      Eigen::Map<Batch<Real>> n2 = n2_.resize(pixels, out_);
      norm2_.forward(h1, hs, n2, keep_for_backward);
      modulate(n2, emb, hs, a2);
    }
    dropout_.forward(a2, a2, rng, layer, draw, dropout_on);
    if (skip_) {
      skip_->forward(x, s, y);
    } else {
      y = x;
    }
    conv2_.forward(a2, hs, y, /*accumulate=*/true);
  }

  /// Accumulates parameter gradients for the last forward (with keep_for_backward) of x, e; writes
  /// dx (or adds to it when `accumulate_dx`) and adds d loss / d e to de.
  void backward(ConstRef x, const ImageShape& s, ConstRef e, ConstRef dy, Ref dx, Ref de,
                bool accumulate_dx = false) {
    const Index pixels = s.pixels();
    const ImageShape hs = s.with_channels(out_);
    if (skip_) {
      skip_->backward(x, s, dy, dx, accumulate_dx);
    } else if (accumulate_dx) {
      dx += dy;
    } else {
      dx = dy;
    }
    Eigen::Map<Batch<Real>> g = grad_a_.resize(pixels, out_);
    conv2_.backward(a2_.view(), hs, dy, g);
    dropout_.backward(g, g);
    Eigen::Map<Batch<Real>> gh = grad_h_.resize(pixels, out_);
    Eigen::Map<Batch<Real>> gemb = grad_emb_.resize(s.batch, embedding_.out_features());
    if (injection_ == EmbeddingInjection::add) {
      norm2_.backward(h1_.view(), hs, g, gh);
      sum_per_image(gh, hs, gemb);
    } else {
      // g holds d loss / d a2 with a2 = SiLU(m), m = n2 (1 + scale) + shift; reuse a2_ for d m.
      Eigen::Map<Batch<Real>> gn = a2_.view();
      modulate_backward(n2_.view(), emb_.view(), hs, g, gn, gemb);
      norm2_.backward(h1_.view(), hs, gn, gh);
    }
    embedding_.backward(e, gemb, de, /*accumulate_dx=*/true);
    Eigen::Map<Batch<Real>> ga1 = grad_a1_.resize(pixels, in_);
    conv1_.backward(a1_.view(), s.with_channels(in_), gh, ga1);
    norm1_.backward(x, s, ga1, dx, /*accumulate_dx=*/true);
  }

 private:
  // h.row(pixel of image n) += emb.row(n)
  static void add_per_image(const Eigen::Map<Batch<Real>>& emb, const ImageShape& s,
                            Eigen::Map<Batch<Real>>& h) {
    const Index plane = s.plane();
    ddpm::detail::parallel_for(s.batch, plane * s.channels, [&](Index n) {
      h.middleRows(n * plane, plane).rowwise() += emb.row(n);
    });
  }

  // out.row(n) = sum of g's rows of image n
  static void sum_per_image(const Eigen::Map<Batch<Real>>& g, const ImageShape& s,
                            Eigen::Map<Batch<Real>>& out) {
    const Index plane = s.plane();
    ddpm::detail::parallel_for(s.batch, plane * s.channels, [&](Index n) {
      out.row(n) = g.middleRows(n * plane, plane).colwise().sum();
    });
  }

  // a = SiLU(m), m = n (1 + scale) + shift with [scale | shift] = emb.row(image).
  static void modulate(const Eigen::Map<Batch<Real>>& n2, const Eigen::Map<Batch<Real>>& emb,
                       const ImageShape& s, Eigen::Map<Batch<Real>>& a) {
    const Index plane = s.plane();
    const Index c = s.channels;
    ddpm::detail::parallel_for(s.batch, plane * c, [&](Index n) {
      const Real* scale = emb.row(n).data();
      const Real* shift = scale + c;
      for (Index p = n * plane; p < (n + 1) * plane; ++p) {
        const Real* in = n2.row(p).data();
        Real* out = a.row(p).data();
        for (Index j = 0; j < c; ++j) out[j] = in[j] * (Real(1) + scale[j]) + shift[j];
        detail::SiluKernel::forward(out, out, c);
      }
    });
  }

  // Given g = d loss / d a: gn = d loss / d n and gemb.row(image) = [sum gm * n | sum gm] over the
  // image's pixels, gm = d loss / d m. m is recomputed into gn's row, then overwritten.
  static void modulate_backward(const Eigen::Map<Batch<Real>>& n2,
                                const Eigen::Map<Batch<Real>>& emb, const ImageShape& s,
                                const Eigen::Map<Batch<Real>>& g, Eigen::Map<Batch<Real>>& gn,
                                Eigen::Map<Batch<Real>>& gemb) {
    const Index plane = s.plane();
    const Index c = s.channels;
    ddpm::detail::parallel_for(s.batch, plane * c, [&](Index n) {
      const Real* scale = emb.row(n).data();
      const Real* shift = scale + c;
      Real* d_scale = gemb.row(n).data();
      Real* d_shift = d_scale + c;
      std::fill(d_scale, d_scale + 2 * c, Real(0));
      for (Index p = n * plane; p < (n + 1) * plane; ++p) {
        const Real* in = n2.row(p).data();
        Real* out = gn.row(p).data();
        for (Index j = 0; j < c; ++j) out[j] = in[j] * (Real(1) + scale[j]) + shift[j];
        detail::SiluKernel::backward(out, g.row(p).data(), out, c);
        for (Index j = 0; j < c; ++j) {
          d_scale[j] += out[j] * in[j];
          d_shift[j] += out[j];
          out[j] *= Real(1) + scale[j];
        }
      }
    });
  }

  Index in_ = 0;
  Index out_ = 0;
  EmbeddingInjection injection_ = EmbeddingInjection::add;
  GroupNorm<Real> norm1_;
  Conv2d<Real> conv1_;
  Linear<Real> embedding_;
  GroupNorm<Real> norm2_;
  Dropout<Real> dropout_;
  Conv2d<Real> conv2_;
  std::optional<Conv2d<Real>> skip_;
  Workspace<Real> a1_;  // SiLU(N1(x))
  Workspace<Real> h1_;  // conv1(a1) (+ W e)
  Workspace<Real> n2_;  // N2(h1) before modulation (scale-shift only)
  Workspace<Real> a2_;  // dropout(SiLU(N2(h1) ...)), the input of conv2
  Workspace<Real> emb_;
  Workspace<Real> grad_a_;
  Workspace<Real> grad_h_;
  Workspace<Real> grad_a1_;
  Workspace<Real> grad_emb_;
};

}  // namespace ddpm::nn
