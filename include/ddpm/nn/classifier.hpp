// SPDX-License-Identifier: MIT
// A classifier of noisy images p(y | x_t, t) (Dhariwal & Nichol 2021): the UNet's down path with
// the timestep embedding, global average pooling and a two-layer head. It supplies classifier
// guidance and, at t = 0, the penultimate features of a Frechet distance between image sets.
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
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/conv_graph.hpp"
#include "ddpm/nn/image.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/model_core.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/resblock.hpp"
#include "ddpm/nn/time_embedding.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// Shape and options of a Classifier.
struct ClassifierConfig {
  Index image_channels = 1;                     ///< 1 (gray) or 3 (RGB)
  Index height = 28;                            ///< divisible by 2^(levels - 1)
  Index width = 28;                             ///< divisible by 2^(levels - 1)
  Index base_channels = 32;                     ///< channels of level 0
  std::vector<Index> channel_mult = {1, 2, 2};  ///< level l has base_channels * channel_mult[l]
  Index res_blocks = 1;                         ///< ResBlocks per level
  Index groups = 8;                             ///< GroupNorm groups everywhere
  double dropout = 0.0;         ///< in every ResBlock, before its second convolution
  int num_classes = 10;         ///< the number of classes it tells apart
  Index feature_dim = 128;      ///< width of the penultimate layer (the Frechet-distance features)
  std::uint64_t seed = 0;       ///< parameter initialization (and dropout) seed
  double max_period = 10000.0;  ///< of the sinusoidal time embedding
};

namespace detail {

/// The layers of a Classifier: the time embedding, the encoder graph and the two-layer head.
template <class Real>
struct ClassifierLayers {
  TimeEmbedding<Real> time;
  ConvGraph<Real> graph;
  Linear<Real> hidden;
  Linear<Real> head;

  void bind(ParameterStore<Real>& store) noexcept {
    time.bind(store);
    graph.bind(store);
    hidden.bind(store);
    head.bind(store);
  }
};

}  // namespace detail

/// logits = W2 SiLU(W1 pool(SiLU(GroupNorm(encoder(x_t, t))))), encoder = conv_in and, per level,
/// ResBlocks reading the timestep embedding followed (except at the last level) by a 3x3 stride-2
/// conv. Images are planar rows, as for the UNet.
/// \code
///   nn::Classifier<float> classifier(config);
///   double loss = classifier.train_step_gradients(x_t, t, labels);   // mean cross-entropy
///   classifier.log_prob_gradient(x_t, t, labels, grad);               // for ClassifierGuidance
///   classifier.features(x0, zeros, features);                         // batch x feature_dim
/// \endcode
template <class Real>
class Classifier : public ModelCore<Real, detail::ClassifierLayers<Real>> {
  using Core = ModelCore<Real, detail::ClassifierLayers<Real>>;

 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;

  /// A classifier of `config`, initialized from config.seed; throws InvalidArgument for a bad
  /// config.
  explicit Classifier(const ClassifierConfig& config)
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
    layers().hidden.initialize(rng, layer++);
    layers().head.initialize(rng, layer++);
  }

  /// The configuration it was built with.
  [[nodiscard]] const ClassifierConfig& config() const noexcept { return config_; }
  /// Features per input row: image_channels * height * width.
  [[nodiscard]] Index input_dim() const noexcept {
    return config_.image_channels * config_.height * config_.width;
  }
  /// The number of classes.
  [[nodiscard]] int num_classes() const noexcept { return config_.num_classes; }

  /// logits (batch x num_classes) of x_t at timesteps t.
  void logits(ConstRef x_t, std::span<const int> t, Batch<Real>& out) {
    forward(x_t, t, false, false);
    out = logits_.view();
  }

  /// The penultimate features (batch x feature_dim) of x at timesteps t (t = 0 for clean images).
  void features(ConstRef x, std::span<const int> t, Batch<Real>& out) {
    forward(x, t, false, false);
    out = features_.view();
  }

  /// Mean cross-entropy of `labels` for x_t; with training on, also accumulates its gradient
  /// into gradient_values() (call zero_grad() first). Returns the loss and counts correct
  /// predictions in `correct` when given.
  double cross_entropy(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
                       Index* correct = nullptr) {
    check_labels(labels, x_t.rows());
    const bool training = this->training();
    forward(x_t, t, training, training);
    const Index n = x_t.rows();
    Eigen::Map<Batch<Real>> d_logits = grad_logits_.resize(n, config_.num_classes);
    double loss = 0.0;
    Index right = 0;
    for (Index i = 0; i < n; ++i) {
      const int y = labels[static_cast<std::size_t>(i)];
      const double log_z = log_softmax_row(i, d_logits);
      loss -= static_cast<double>(logits_.view()(i, y)) - log_z;
      Index argmax = 0;
      logits_.view().row(i).maxCoeff(&argmax);
      right += argmax == y ? 1 : 0;
      // d(-log p_y)/d logits = softmax - onehot, averaged over the batch.
      d_logits(i, y) -= Real(1);
    }
    if (correct != nullptr) *correct = right;
    if (training) {
      d_logits /= static_cast<Real>(n);
      backward(d_logits, nullptr);
    }
    return loss / static_cast<double>(n);
  }

  /// grad.row(i) = d log p(labels[i] | x_t.row(i), t[i]) / d x_t.row(i), for classifier guidance.
  /// Parameter gradients are accumulated as a side effect (the classifier is not being trained).
  void log_prob_gradient(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
                         Batch<Real>& grad) {
    check_labels(labels, x_t.rows());
    forward(x_t, t, /*keep=*/true, /*dropout_on=*/false);
    const Index n = x_t.rows();
    Eigen::Map<Batch<Real>> d_logits = grad_logits_.resize(n, config_.num_classes);
    for (Index i = 0; i < n; ++i) {
      log_softmax_row(i, d_logits);
      d_logits.row(i) = -d_logits.row(i);  // d log p_y / d logits = onehot - softmax
      d_logits(i, labels[static_cast<std::size_t>(i)]) += Real(1);
    }
    backward(d_logits, &grad);
  }

  // parameters(), parameter_values(), gradient_values(), parameter_count(), zero_grad(),
  // set_training() and training() come from ModelCore. Training on: cross_entropy() accumulates
  // gradients and applies dropout; logits() and features() never keep activations or apply
  // dropout.

  /// Dropout masks of the next training pass: draw `draw` of `rng` (as UNet::set_dropout_source).
  void set_dropout_source(const CounterRng& rng, std::uint32_t draw) noexcept {
    dropout_rng_ = rng;
    dropout_draw_ = draw;
  }

 private:
  using Core::layers;

  static const ClassifierConfig& validated(const ClassifierConfig& c) {
    detail::validate_levels(c.image_channels, c.height, c.width, c.base_channels, c.channel_mult,
                            c.res_blocks, c.groups, c.dropout);
    ddpm::detail::require(c.num_classes >= 2, "num_classes", c.num_classes, ">= 2");
    ddpm::detail::require(c.feature_dim >= 1, "feature_dim", c.feature_dim, ">= 1");
    return c;
  }

  void check_labels(std::span<const int> labels, Index rows) const {
    ddpm::detail::require(static_cast<Index>(labels.size()) == rows, "labels.size()", labels.size(),
                          [&] { return "x_t.rows() = " + std::to_string(rows); });
    for (const int y : labels) {
      ddpm::detail::require(y >= 0 && y < config_.num_classes, "label", y, [&] {
        return "a class in 0.." + std::to_string(config_.num_classes - 1);
      });
    }
  }

  static detail::ClassifierLayers<Real> build(const ClassifierConfig& c,
                                              ParameterStore<Real>& store) {
    detail::ClassifierLayers<Real> net;
    const Index emb = 4 * c.base_channels;
    net.time = TimeEmbedding<Real>(store, "time", c.base_channels, emb, 0, c.max_period);
    ConvGraph<Real>& g = net.graph;
    std::size_t h = g.input(c.height, c.width, c.image_channels);
    h = g.conv(store, "conv_in", h, c.base_channels, 3, 1);
    const auto levels = static_cast<Index>(c.channel_mult.size());
    for (Index l = 0; l < levels; ++l) {
      const Index channels = c.base_channels * c.channel_mult[static_cast<std::size_t>(l)];
      const std::string level = "down" + std::to_string(l);
      for (Index b = 0; b < c.res_blocks; ++b) {
        h = g.block(store, level + ".block" + std::to_string(b), h, channels, emb, c.groups,
                    c.dropout, EmbeddingInjection::add);
      }
      if (l + 1 < levels) h = g.conv(store, level + ".downsample", h, channels, 3, 2);
    }
    g.norm(store, "out.norm", h, c.groups, Activation::silu);
    const Index channels = g.shape(g.last()).channels;
    net.hidden = Linear<Real>(store, "head.0", channels, c.feature_dim, Activation::silu);
    net.head = Linear<Real>(store, "head.1", c.feature_dim, c.num_classes);
    return net;
  }

  // keep: activations for backward(); dropout_on: dropout masks (training only).
  void forward(const ConstRef& x, std::span<const int> t, bool keep, bool dropout_on) {
    const Index rows = x.rows();
    detail::ClassifierLayers<Real>& net = layers();
    ddpm::detail::require_shape(x.cols() == input_dim(), "x_t", rows, x.cols(), [&] {
      return "image_channels * height * width = " + ddpm::detail::to_text(input_dim()) + " columns";
    });
    ddpm::detail::require(static_cast<Index>(t.size()) == rows, "t.size()", t.size(),
                          [&] { return "x_t.rows() = " + ddpm::detail::to_text(rows); });
    const Eigen::Map<const Batch<Real>> embedding =
        net.time.forward(t, std::span<const int>(), keep);
    net.graph.forward(x, embedding, keep, dropout_on, dropout_rng_, dropout_draw_);
    if (dropout_on) ++dropout_draw_;
    const std::size_t last = net.graph.last();
    const ImageShape shape = net.graph.shape(last);
    const Eigen::Map<Batch<Real>> h = net.graph.value(last);
    Eigen::Map<Batch<Real>> pooled = pooled_.resize(rows, shape.channels);
    const Index plane = shape.plane();
    ddpm::detail::parallel_for(rows, plane * shape.channels, [&](Index n) {
      pooled.row(n) = h.middleRows(n * plane, plane).colwise().mean();
    });
    net.hidden.forward(pooled, features_.resize(rows, config_.feature_dim), keep);
    net.head.forward(features_.view(), logits_.resize(rows, config_.num_classes), keep);
    this->set_kept_batch(keep ? rows : -1);
  }

  // Writes softmax(logits.row(i)) into out.row(i); returns log sum exp(logits.row(i)).
  double log_softmax_row(Index i, Eigen::Map<Batch<Real>>& out) const {
    const Real* row = logits_.data() + i * logits_.cols();
    const Index k_count = logits_.cols();
    const double max = static_cast<double>(*std::max_element(row, row + k_count));
    double sum = 0.0;
    for (Index k = 0; k < k_count; ++k) sum += std::exp(static_cast<double>(row[k]) - max);
    const double log_z = max + std::log(sum);
    for (Index k = 0; k < k_count; ++k) {
      out(i, k) = static_cast<Real>(std::exp(static_cast<double>(row[k]) - log_z));
    }
    return log_z;
  }

  void backward(const Eigen::Map<Batch<Real>>& d_logits, Batch<Real>* grad_x) {
    const Index rows = this->kept_batch("nn::Classifier", "forward pass");
    detail::ClassifierLayers<Real>& net = layers();
    Eigen::Map<Batch<Real>> d_features = grad_features_.resize(rows, config_.feature_dim);
    net.head.backward(features_.view(), d_logits, d_features);
    Eigen::Map<Batch<Real>> d_pooled = grad_pooled_.resize(rows, pooled_.cols());
    net.hidden.backward(pooled_.view(), d_features, d_pooled);
    net.graph.begin_backward();
    const std::size_t last = net.graph.last();
    const ImageShape shape = net.graph.shape(last);
    Eigen::Map<Batch<Real>> d_h = net.graph.grad(last);
    const Index plane = shape.plane();
    const Real inverse_plane = Real(1) / static_cast<Real>(plane);
    ddpm::detail::parallel_for(rows, plane * shape.channels, [&](Index n) {
      d_h.middleRows(n * plane, plane).rowwise() = d_pooled.row(n) * inverse_plane;
    });
    Eigen::Map<Batch<Real>> d_embedding = grad_embedding_.resize(rows, net.time.dim());
    d_embedding.setZero();
    net.graph.backward(net.time.output(), d_embedding, grad_x != nullptr);
    net.time.backward(d_embedding);
    if (grad_x != nullptr) net.graph.input_gradient_planar(*grad_x);
  }

  ClassifierConfig config_;
  Workspace<Real> pooled_;
  Workspace<Real> features_;
  Workspace<Real> logits_;
  Workspace<Real> grad_logits_;
  Workspace<Real> grad_features_;
  Workspace<Real> grad_pooled_;
  Workspace<Real> grad_embedding_;
  CounterRng dropout_rng_;
  std::uint32_t dropout_draw_ = 0;  // advanced by every forward pass with dropout
};

}  // namespace ddpm::nn
