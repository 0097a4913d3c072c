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
#include "ddpm/nn/check.hpp"
#include "ddpm/nn/conv_graph.hpp"
#include "ddpm/nn/image.hpp"
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
  Index attention_heads = 1;
  Index groups = 8;      ///< GroupNorm groups everywhere
  double dropout = 0.0;  ///< in every ResBlock, before its second convolution
  int num_classes = 0;   ///< > 0: a learned label embedding is added to the time embedding
  EmbeddingInjection injection = EmbeddingInjection::add;
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

/// A UNet denoiser on images given as planar rows (one C x H x W image per row).
///
/// Down path: conv_in, then per level `res_blocks` ResBlocks (each followed by attention at the
/// attention resolutions; the output of each is a skip) and, except at the last level, a 3x3
/// stride-2 conv. Middle: ResBlock, attention, ResBlock. Up path, levels last to first: per skip of
/// the level (in reverse), concat [h, skip] -> ResBlock (+ attention), then, except at level 0,
/// nearest x2 upsampling and a 3x3 conv. Out: GroupNorm -> SiLU -> 3x3 conv. Every ResBlock reads
/// the TimeEmbedding (with the class embedding when num_classes > 0).
///
/// Satisfies Denoiser, ConditionalDenoiser and TrainableDenoiser, with the same interface as Mlp.
/// \code
///   nn::UNet<float> model(nn::unet_small_config(/*seed=*/1));
///   model.predict(x_t, t, eps_hat);       // x_t, eps_hat: batch x 784
///   model.zero_grad();
///   model.backward(d_loss_d_eps_hat);
/// \endcode
template <class Real>
class UNet {
 public:
  using ConstRef = Eigen::Ref<const Batch<Real>>;

  explicit UNet(const UNetConfig& config) : config_(config), dropout_rng_(config.seed) {
    validate(config);
    build();
    store_.allocate();
    bind();
    initialize(config.seed);
  }

  // Copies get their own buffers; the layers are re-pointed at them.
  UNet(const UNet& other)
      : config_(other.config_),
        store_(other.store_),
        time_(other.time_),
        graph_(other.graph_),
        grad_embedding_(other.grad_embedding_),
        dropout_rng_(other.dropout_rng_),
        dropout_draw_(other.dropout_draw_),
        batch_(other.batch_),
        training_(other.training_) {
    bind();
  }
  UNet& operator=(const UNet& other) {
    if (this != &other) {
      UNet copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  UNet(UNet&&) noexcept = default;
  UNet& operator=(UNet&&) noexcept = default;
  ~UNet() = default;

  /// Re-draws every parameter from `seed`.
  void initialize(std::uint64_t seed) {
    const CounterRng rng(seed);
    time_.initialize(rng, 0);
    std::uint32_t layer = TimeEmbedding<Real>::kLayerIds;
    graph_.initialize(rng, layer);
  }

  [[nodiscard]] const UNetConfig& config() const noexcept { return config_; }
  /// Features per row of x_t: image_channels * height * width.
  [[nodiscard]] Index input_dim() const noexcept {
    return config_.image_channels * config_.height * config_.width;
  }
  /// Features per row of the output: output_channels * height * width.
  [[nodiscard]] Index output_dim() const noexcept {
    return config_.output_channels * config_.height * config_.width;
  }
  [[nodiscard]] int num_classes() const noexcept { return config_.num_classes; }

  /// out = model(x_t, t), all labels kNoLabel.
  void predict(ConstRef x_t, std::span<const int> t, Batch<Real>& out) {
    predict(x_t, t, std::span<const int>(), out);
  }

  /// out = model(x_t, t, labels); labels in [0, num_classes) or kNoLabel (or empty: all kNoLabel).
  void predict(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
               Batch<Real>& out) {
    const Index rows = x_t.rows();
    detail::check_shape(x_t.cols() == input_dim(), "x_t", rows, x_t.cols(), [&] {
      return "image_channels * height * width = " + ddpm::detail::to_text(input_dim()) + " columns";
    });
    detail::check(static_cast<Index>(t.size()) == rows, "t.size()", t.size(),
                  [&] { return "x_t.rows() = " + ddpm::detail::to_text(rows); });
    time_.check_labels(labels, rows);
    const bool keep = training_;
    const Eigen::Map<const Batch<Real>> embedding = time_.forward(t, labels, keep);
    graph_.forward(x_t, embedding, keep, keep, dropout_rng_, dropout_draw_);
    if (keep) ++dropout_draw_;
    const std::size_t last = graph_.last();
    out.resize(rows, output_dim());
    to_planar<Real>(graph_.value(last), graph_.shape(last), out);
    batch_ = keep ? rows : -1;
  }

  /// Accumulates d loss / d parameters for the last predict() (in training mode), given
  /// grad_out = d loss / d out.
  void backward(ConstRef grad_out) { backward_impl(grad_out, nullptr); }

  /// As backward(grad_out), and also writes grad_x = d loss / d x_t (e.g. for classifier
  /// guidance).
  void backward(ConstRef grad_out, Batch<Real>& grad_x) { backward_impl(grad_out, &grad_x); }

  [[nodiscard]] std::span<ParameterBlock<Real>> parameters() noexcept { return store_.blocks(); }
  [[nodiscard]] std::span<Real> parameter_values() noexcept { return store_.values(); }
  [[nodiscard]] std::span<const Real> parameter_values() const noexcept { return store_.values(); }
  [[nodiscard]] std::span<Real> gradient_values() noexcept { return store_.grads(); }
  [[nodiscard]] std::span<const Real> gradient_values() const noexcept { return store_.grads(); }
  [[nodiscard]] Index parameter_count() const noexcept { return store_.size(); }
  void zero_grad() noexcept { store_.zero_grad(); }

  /// With training off, predict() keeps nothing for backward and dropout is off. On by default.
  void set_training(bool training) noexcept { training_ = training; }
  [[nodiscard]] bool training() const noexcept { return training_; }

  /// The dropout masks of the next training predict() are draw number `draw` of `rng` (each
  /// training predict() advances the draw). The Trainer sets them from its own seed and the step,
  /// both in its checkpoint, so a resumed run is exact. By default: the init seed, draw 0.
  void set_dropout_source(const CounterRng& rng, std::uint32_t draw) noexcept {
    dropout_rng_ = rng;
    dropout_draw_ = draw;
  }

 private:
  static void validate(const UNetConfig& c) {
    detail::validate_levels(c.image_channels, c.height, c.width, c.base_channels, c.channel_mult,
                            c.res_blocks, c.groups, c.dropout);
    ddpm::detail::require(c.output_channels >= 1, "output_channels", c.output_channels, ">= 1");
    ddpm::detail::require(c.attention_heads >= 1, "attention_heads", c.attention_heads, ">= 1");
    ddpm::detail::require(c.num_classes >= 0, "num_classes", c.num_classes, ">= 0");
  }

  [[nodiscard]] bool has_attention(Index side) const {
    for (const Index r : config_.attention_resolutions) {
      if (r == side) return true;
    }
    return false;
  }

  void build() {
    const UNetConfig& c = config_;
    const Index emb = 4 * c.base_channels;
    time_ = TimeEmbedding<Real>(store_, "time", c.base_channels, emb, c.num_classes, c.max_period);
    ConvGraph<Real>& g = graph_;
    const auto block = [&](const std::string& name, std::size_t in, Index channels) {
      std::size_t h =
          g.block(store_, name, in, channels, emb, c.groups, c.dropout, c.injection, c.zero_init);
      if (has_attention(g.shape(h).height)) {
        h = g.attention(store_, name + ".attention", h, c.attention_heads, c.groups, c.zero_init);
      }
      return h;
    };
    const auto levels = static_cast<Index>(c.channel_mult.size());
    std::size_t h = g.input(c.height, c.width, c.image_channels);
    h = g.conv(store_, "conv_in", h, c.base_channels, 3, 1);
    std::vector<std::vector<std::size_t>> skips(static_cast<std::size_t>(levels));
    for (Index l = 0; l < levels; ++l) {
      const Index channels = c.base_channels * c.channel_mult[static_cast<std::size_t>(l)];
      const std::string level = "down" + std::to_string(l);
      for (Index b = 0; b < c.res_blocks; ++b) {
        h = block(level + ".block" + std::to_string(b), h, channels);
        skips[static_cast<std::size_t>(l)].push_back(h);
      }
      if (l + 1 < levels) h = g.conv(store_, level + ".downsample", h, channels, 3, 2);
    }
    const Index deepest = g.shape(h).channels;
    h = g.block(store_, "middle.block0", h, deepest, emb, c.groups, c.dropout, c.injection,
                c.zero_init);
    h = g.attention(store_, "middle.attention", h, c.attention_heads, c.groups, c.zero_init);
    h = g.block(store_, "middle.block1", h, deepest, emb, c.groups, c.dropout, c.injection,
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
        h = g.conv(store_, level + ".upsample_conv", h, channels, 3, 1);
      }
    }
    h = g.norm(store_, "out.norm", h, c.groups, Activation::silu);
    g.conv(store_, "out.conv", h, c.output_channels, 3, 1, c.zero_init);
  }

  void bind() noexcept {
    time_.bind(store_);
    graph_.bind(store_);
  }

  void backward_impl(const ConstRef& grad_out, Batch<Real>* grad_x) {
    if (batch_ < 0) {
      throw std::logic_error(
          "ddpm::nn::UNet::backward needs a predict() in training mode (set_training(true))");
    }
    detail::check_shape(grad_out.rows() == batch_ && grad_out.cols() == output_dim(), "grad_out",
                        grad_out.rows(), grad_out.cols(), [&] {
                          return "the shape of the last predict() output, " +
                                 ddpm::detail::to_text(batch_) + "x" +
                                 ddpm::detail::to_text(output_dim());
                        });
    graph_.begin_backward();
    const std::size_t last = graph_.last();
    to_channels_last<Real>(grad_out, graph_.shape(last), graph_.grad(last));
    Eigen::Map<Batch<Real>> d_embedding = grad_embedding_.resize(batch_, time_.dim());
    d_embedding.setZero();
    graph_.backward(time_.output(), d_embedding, grad_x != nullptr);
    time_.backward(d_embedding);
    if (grad_x != nullptr) graph_.input_gradient_planar(*grad_x);
  }

  UNetConfig config_;
  ParameterStore<Real> store_;
  TimeEmbedding<Real> time_;
  ConvGraph<Real> graph_;
  Workspace<Real> grad_embedding_;
  CounterRng dropout_rng_;
  std::uint32_t dropout_draw_ = 0;
  Index batch_ = -1;  // rows of the last training predict(), -1 if none
  bool training_ = true;
};

}  // namespace ddpm::nn
