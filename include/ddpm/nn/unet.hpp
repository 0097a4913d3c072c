// SPDX-License-Identifier: MIT
// The bundled image denoiser: a UNet configured like improved-diffusion's (levels of ResBlocks with
// a timestep embedding, optional attention and class embedding), with hand-written backprop.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/conv_graph.hpp"
#include "ddpm/nn/image.hpp"
#include "ddpm/nn/model_core.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/resblock.hpp"
#include "ddpm/nn/time_embedding.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// Shape and options of a UNet.
struct UNetConfig {
  Index image_channels = 1;   ///< channels of x_t
  Index height = 28;          ///< must be divisible by 2^(levels - 1)
  Index width = 28;           ///< must be divisible by 2^(levels - 1)
  Index output_channels = 1;  ///< image_channels, or 2 * image_channels for a learned variance
  Index base_channels = 32;   ///< channels of level 0; the sinusoidal embedding has this size
  std::vector<Index> channel_mult = {1, 2, 2};  ///< level l has base_channels * channel_mult[l]
  Index res_blocks = 1;                         ///< ResBlocks per level on the way down
  /// Image sides (e.g. 14, 7) at which every ResBlock is followed by self-attention. The middle
  /// block always has attention.
  std::vector<Index> attention_resolutions = {};
  Index attention_heads = 1;  ///< heads of every attention layer (channels divisible by it)
  Index groups = 8;           ///< GroupNorm groups everywhere
  double dropout = 0.0;       ///< in every ResBlock, before its second convolution
  int num_classes = 0;        ///< > 0: a learned label embedding is added to the time embedding
  EmbeddingInjection injection =
      EmbeddingInjection::add;  ///< how ResBlocks take the time embedding: added (Ho et al.) or
                                ///< scale-shift (Nichol & Dhariwal)
  /// Start every ResBlock's last conv, attention projection and the output conv at zero (each
  /// block starts as its skip path), as improved-diffusion does. Off in the UNetSmall reference.
  bool zero_init = false;
  std::uint64_t seed = 0;       ///< parameter initialization seed
  double max_period = 10000.0;  ///< of the sinusoidal embedding
};

/// UNetSmall of BENCHMARKS.md (1x28x28, 793,697 parameters): channels 32, 64, 64 at 28, 14, 7;
/// one ResBlock per level; attention only in the middle; time embedding 32 -> 128 -> 128.
inline UNetConfig unet_small_config(std::uint64_t seed = 0) {
  UNetConfig config;
  config.seed = seed;
  return config;
}

namespace detail {

/// The layers of a UNet: the time embedding and the graph of image layers.
template <class Real>
struct UNetLayers {
  TimeEmbedding<Real> time;
  ConvGraph<Real> graph;

  void bind(ParameterStore<Real>& store) noexcept {
    time.bind(store);
    graph.bind(store);
  }
};

}  // namespace detail

/// A UNet denoiser on images given as planar rows (one C x H x W image per row).
///
/// Down path: conv_in, then per level `res_blocks` ResBlocks (each followed by attention at the
/// attention resolutions; the output of each is a skip) and, except at the last level, a 3x3
/// stride-2 conv. Middle: ResBlock, attention, ResBlock. Up path, levels last to first: per skip of
/// the level (in reverse), concat [h, skip] -> ResBlock (+ attention), then, except at level 0,
/// nearest x2 upsampling and a 3x3 conv. Out: GroupNorm -> SiLU -> 3x3 conv. Every ResBlock reads
/// the TimeEmbedding (with the class embedding when num_classes > 0).
///
/// Satisfies Denoiser, ConditionalDenoiser and TrainableDenoiser, with the same interface as Mlp;
/// copies and moves are whole, independent models.
/// \code
///   nn::UNet<float> model(nn::unet_small_config(/*seed=*/1));
///   model.predict(x_t, t, eps_hat);       // x_t, eps_hat: batch x 784
///   model.zero_grad();
///   model.backward(d_loss_d_eps_hat);
/// \endcode
template <class Real>
class UNet : public ModelCore<Real, detail::UNetLayers<Real>> {
  using Core = ModelCore<Real, detail::UNetLayers<Real>>;

 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;

  /// A UNet of `config`, initialized from config.seed; throws InvalidArgument for a bad config.
  explicit UNet(const UNetConfig& config)
      : Core([&](ParameterStore<Real>& store) { return build(validated(config), store); }),
        config_(config),
        dropout_rng_(config.seed) {
    initialize(config.seed);
  }

  /// Re-draws every parameter from `seed`.
  void initialize(std::uint64_t seed) {
    const CounterRng rng(seed);
    layers().time.initialize(rng, 0);
    std::uint32_t layer = TimeEmbedding<Real>::kLayerIds;
    layers().graph.initialize(rng, layer);
  }

  /// The configuration it was built with.
  [[nodiscard]] const UNetConfig& config() const noexcept { return config_; }
  /// Features per row of x_t: image_channels * height * width.
  [[nodiscard]] Index input_dim() const noexcept {
    return config_.image_channels * config_.height * config_.width;
  }
  /// Features per row of the output: output_channels * height * width.
  [[nodiscard]] Index output_dim() const noexcept {
    return config_.output_channels * config_.height * config_.width;
  }
  /// The number of classes of the label embedding (0: unconditional).
  [[nodiscard]] int num_classes() const noexcept { return config_.num_classes; }

  /// out = model(x_t, t), all labels kNoLabel.
  void predict(ConstRef x_t, std::span<const int> t, Batch<Real>& out) {
    predict_impl(x_t, t, std::span<const int>(), out, this->training(), this->training());
  }

  /// out = model(x_t, t, labels); labels in [0, num_classes) or kNoLabel (or empty: all kNoLabel).
  void predict(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
               Batch<Real>& out) {
    predict_impl(x_t, t, labels, out, this->training(), this->training());
  }

  /// Real-valued timesteps (ContinuousTimeDenoiser): the sinusoid of a fractional t is computed
  /// directly; at an integral t the output equals the int overload's bitwise.
  void predict(ConstRef x_t, std::span<const double> t, Batch<Real>& out) {
    predict_impl(x_t, t, std::span<const int>(), out, this->training(), this->training());
  }
  /// \overload
  void predict(ConstRef x_t, std::span<const double> t, std::span<const int> labels,
               Batch<Real>& out) {
    predict_impl(x_t, t, labels, out, this->training(), this->training());
  }

  /// out = model(x_t, t[, labels]) with dropout off (the inference output), keeping what
  /// input_vjp() needs whatever the training mode (InputVjpDenoiser, for the probability-flow
  /// likelihood). Draws no dropout mask.
  void linearize(ConstRef x_t, std::span<const double> t, Batch<Real>& out) {
    predict_impl(x_t, t, std::span<const int>(), out, true, false);
  }
  /// \overload
  void linearize(ConstRef x_t, std::span<const double> t, std::span<const int> labels,
                 Batch<Real>& out) {
    predict_impl(x_t, t, labels, out, true, false);
  }

  /// grad_x.row(i) = cotangent.row(i) d out.row(i) / d x_t.row(i) at the last linearize() (or
  /// training predict()); parameter gradients are left as they were.
  void input_vjp(ConstRef cotangent, Batch<Real>& grad_x) {
    this->preserving_gradients([&] { backward_impl(cotangent, &grad_x); });
  }

  /// Accumulates d loss / d parameters for the last predict() (in training mode), given
  /// grad_out = d loss / d out.
  void backward(ConstRef grad_out) { backward_impl(grad_out, nullptr); }

  /// As backward(grad_out), and also writes grad_x = d loss / d x_t (e.g. for classifier
  /// guidance).
  void backward(ConstRef grad_out, Batch<Real>& grad_x) { backward_impl(grad_out, &grad_x); }

  // parameters(), parameter_values(), gradient_values(), parameter_count(), zero_grad(),
  // set_training() and training() come from ModelCore. With training off, predict() keeps nothing
  // for backward and dropout is off.

  /// The dropout masks of the next training predict() are draw number `draw` of `rng` (each
  /// training predict() advances the draw). The Trainer sets them from its own seed and the step,
  /// both in its checkpoint, so a resumed run is exact. By default: the init seed, draw 0.
  void set_dropout_source(const CounterRng& rng, std::uint32_t draw) noexcept {
    dropout_rng_ = rng;
    dropout_draw_ = draw;
  }

 private:
  using Core::layers;

  template <class Time>
  void predict_impl(const ConstRef& x_t, std::span<const Time> t, std::span<const int> labels,
                    Batch<Real>& out, bool keep, bool dropout_on) {
    const Index rows = x_t.rows();
    ddpm::detail::require_shape(x_t.cols() == input_dim(), "x_t", rows, x_t.cols(), [&] {
      return "image_channels * height * width = " + ddpm::detail::to_text(input_dim()) + " columns";
    });
    ddpm::detail::require(static_cast<Index>(t.size()) == rows, "t.size()", t.size(),
                          [&] { return "x_t.rows() = " + ddpm::detail::to_text(rows); });
    TimeEmbedding<Real>& time = layers().time;
    ConvGraph<Real>& graph = layers().graph;
    time.check_labels(labels, rows);
    const Eigen::Map<const Batch<Real>> embedding = time.forward(t, labels, keep);
    graph.forward(x_t, embedding, keep, dropout_on, dropout_rng_, dropout_draw_);
    if (dropout_on) ++dropout_draw_;
    const std::size_t last = graph.last();
    out.resize(rows, output_dim());
    to_planar<Real>(graph.value(last), graph.shape(last), out);
    this->set_kept_batch(keep ? rows : -1);
  }

  static const UNetConfig& validated(const UNetConfig& c) {
    detail::validate_levels(c.image_channels, c.height, c.width, c.base_channels, c.channel_mult,
                            c.res_blocks, c.groups, c.dropout);
    ddpm::detail::require(c.output_channels >= 1, "output_channels", c.output_channels, ">= 1");
    ddpm::detail::require(c.attention_heads >= 1, "attention_heads", c.attention_heads, ">= 1");
    ddpm::detail::require(c.num_classes >= 0, "num_classes", c.num_classes, ">= 0");
    return c;
  }

  static bool has_attention(const UNetConfig& c, Index side) {
    for (const Index r : c.attention_resolutions) {
      if (r == side) return true;
    }
    return false;
  }

  static detail::UNetLayers<Real> build(const UNetConfig& c, ParameterStore<Real>& store) {
    detail::UNetLayers<Real> net;
    const Index emb = 4 * c.base_channels;
    net.time =
        TimeEmbedding<Real>(store, "time", c.base_channels, emb, c.num_classes, c.max_period);
    ConvGraph<Real>& g = net.graph;
    const auto block = [&](const std::string& name, std::size_t in, Index channels) {
      std::size_t h =
          g.block(store, name, in, channels, emb, c.groups, c.dropout, c.injection, c.zero_init);
      if (has_attention(c, g.shape(h).height)) {
        h = g.attention(store, name + ".attention", h, c.attention_heads, c.groups, c.zero_init);
      }
      return h;
    };
    const auto levels = static_cast<Index>(c.channel_mult.size());
    std::size_t h = g.input(c.height, c.width, c.image_channels);
    h = g.conv(store, "conv_in", h, c.base_channels, 3, 1);
    std::vector<std::vector<std::size_t>> skips(static_cast<std::size_t>(levels));
    for (Index l = 0; l < levels; ++l) {
      const Index channels = c.base_channels * c.channel_mult[static_cast<std::size_t>(l)];
      const std::string level = "down" + std::to_string(l);
      for (Index b = 0; b < c.res_blocks; ++b) {
        h = block(level + ".block" + std::to_string(b), h, channels);
        skips[static_cast<std::size_t>(l)].push_back(h);
      }
      if (l + 1 < levels) h = g.conv(store, level + ".downsample", h, channels, 3, 2);
    }
    const Index deepest = g.shape(h).channels;
    h = g.block(store, "middle.block0", h, deepest, emb, c.groups, c.dropout, c.injection,
                c.zero_init);
    h = g.attention(store, "middle.attention", h, c.attention_heads, c.groups, c.zero_init);
    h = g.block(store, "middle.block1", h, deepest, emb, c.groups, c.dropout, c.injection,
                c.zero_init);
    for (Index l = levels - 1; l >= 0; --l) {
      const Index channels = c.base_channels * c.channel_mult[static_cast<std::size_t>(l)];
      const std::string level = "up" + std::to_string(l);
      const std::vector<std::size_t>& level_skips = skips[static_cast<std::size_t>(l)];
      for (Index b = 0; b < c.res_blocks; ++b) {
        h = g.concat(h, level_skips[level_skips.size() - 1 - static_cast<std::size_t>(b)]);
        h = block(level + ".block" + std::to_string(b), h, channels);
      }
      if (l > 0) {
        h = g.upsample(h);
        h = g.conv(store, level + ".upsample_conv", h, channels, 3, 1);
      }
    }
    h = g.norm(store, "out.norm", h, c.groups, Activation::silu);
    g.conv(store, "out.conv", h, c.output_channels, 3, 1, c.zero_init);
    return net;
  }

  void backward_impl(const ConstRef& grad_out, Batch<Real>* grad_x) {
    const Index rows = this->kept_batch("nn::UNet", "predict()");
    ddpm::detail::require_shape(grad_out.rows() == rows && grad_out.cols() == output_dim(),
                                "grad_out", grad_out.rows(), grad_out.cols(), [&] {
                                  return "the shape of the last predict() output, " +
                                         ddpm::detail::to_text(rows) + "x" +
                                         ddpm::detail::to_text(output_dim());
                                });
    TimeEmbedding<Real>& time = layers().time;
    ConvGraph<Real>& graph = layers().graph;
    graph.begin_backward();
    const std::size_t last = graph.last();
    to_channels_last<Real>(grad_out, graph.shape(last), graph.grad(last));
    Eigen::Map<Batch<Real>> d_embedding = grad_embedding_.resize(rows, time.dim());
    d_embedding.setZero();
    graph.backward(time.output(), d_embedding, grad_x != nullptr);
    time.backward(d_embedding);
    if (grad_x != nullptr) graph.input_gradient_planar(*grad_x);
  }

  UNetConfig config_;
  Workspace<Real> grad_embedding_;
  CounterRng dropout_rng_;
  std::uint32_t dropout_draw_ = 0;  // advanced by every training predict()
};

}  // namespace ddpm::nn
