// SPDX-License-Identifier: MIT
// The bundled MLP denoiser: concat(x_t, time embedding [+ label embedding]) through a stack of
// fused Linear + activation layers, optionally residual, with hand-written backprop.
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
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/model_core.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// Shape and options of an Mlp.
struct MlpConfig {
  Index input_dim = 2;       ///< features of x_t (2 for 2D points)
  Index output_dim = 2;      ///< input_dim for epsilon/x0/v; 2 * input_dim with learned variance
  Index width = 256;         ///< hidden units per layer
  Index depth = 3;           ///< hidden Linear + activation layers (>= 1)
  Index embedding_dim = 64;  ///< sinusoidal time-embedding size (and label-embedding size)
  bool residual = false;     ///< h_k = h_{k-1} + f(h_{k-1} W_k + b_k) for hidden layers k >= 1
  int num_classes = 0;       ///< > 0: learned label embedding added to the time embedding
  Activation activation = Activation::silu;  ///< of the hidden layers
  bool zero_init_output = false;  ///< start the last layer at zero (the model predicts 0)
  std::uint64_t seed = 0;         ///< parameter initialization seed
  double max_period = 10000.0;    ///< of the sinusoidal embedding
};

/// The ToyMLP reference network of BENCHMARKS.md: concat(x, emb64) (66) -> Linear(66,256) -> SiLU
/// -> Linear(256,256) -> SiLU -> Linear(256,256) -> SiLU -> Linear(256,2); no residuals, no labels.
inline MlpConfig toy_mlp_config(std::uint64_t seed = 0) {
  MlpConfig config;
  config.input_dim = 2;
  config.output_dim = 2;
  config.width = 256;
  config.depth = 3;
  config.embedding_dim = 64;
  config.residual = false;
  config.num_classes = 0;
  config.activation = Activation::silu;
  config.zero_init_output = false;
  config.seed = seed;
  return config;
}

namespace detail {

/// The layers of an Mlp; the label table is registered only when num_classes > 0.
template <class Real>
struct MlpLayers {
  std::vector<Linear<Real>> hidden;
  Linear<Real> output;
  LabelEmbedding<Real> labels;

  void bind(ParameterStore<Real>& store) noexcept {
    for (Linear<Real>& linear : hidden) linear.bind(store);
    output.bind(store);
    if (labels.num_classes() > 0) labels.bind(store);
  }
};

}  // namespace detail

/// An MLP denoiser: out = Linear_out(h_{depth-1}), h_0 = f(Linear_0([x_t, e(t, label)])),
/// h_k = f(Linear_k(h_{k-1})) (+ h_{k-1} if residual), e = sinusoidal(t) + label_table[label].
///
/// Satisfies Denoiser, ConditionalDenoiser (when num_classes > 0, or always with kNoLabel labels)
/// and TrainableDenoiser. All parameters live in one buffer (parameter_values()), gradients in
/// another of the same layout (gradient_values()); parameters() names them "layer0.weight",
/// "layer0.bias", ..., "layer<depth>.bias" and "label_embedding.weight".
///
/// Workspaces are sized on the first call for a batch size and only grow, so steady-state
/// predict()/backward() do not allocate (except `out`/`grad_x` when their shape changes). For
/// sampling call set_training(false): predict() then keeps no activations for backward.
/// A model object holds per-call state: use one object per thread. Copies and moves are whole,
/// independent models (ModelCore owns the parameters, the training flag and the kept batch).
/// \code
///   nn::Mlp<float> model(nn::toy_mlp_config(/*seed=*/1));
///   model.predict(x_t, t, eps_hat);       // eps_hat: batch x 2
///   model.zero_grad();
///   model.backward(d_loss_d_eps_hat);     // accumulates into gradient_values()
/// \endcode
template <class Real>
class Mlp : public ModelCore<Real, detail::MlpLayers<Real>> {
  using Core = ModelCore<Real, detail::MlpLayers<Real>>;

 public:
  /// Any row-major batch view, read without a copy.
  using ConstRef = Eigen::Ref<const Batch<Real>>;

  /// An MLP of `config`, initialized from config.seed; throws InvalidArgument for a bad config.
  explicit Mlp(const MlpConfig& config)
      : Core([&](ParameterStore<Real>& store) { return build(validated(config), store); }),
        config_(config),
        embedding_(config.embedding_dim, config.max_period) {
    initialize(config.seed);
    activations_.resize(static_cast<std::size_t>(config.depth));
  }

  /// Re-draws every parameter from `seed` (the last layer is zero if config.zero_init_output).
  void initialize(std::uint64_t seed) {
    const CounterRng rng(seed);
    std::uint32_t layer = 0;
    for (Linear<Real>& linear : layers().hidden) linear.initialize(rng, layer++);
    layers().output.initialize(rng, layer++, config_.zero_init_output);
    if (config_.num_classes > 0) layers().labels.initialize(rng, layer++);
  }

  /// The configuration it was built with.
  [[nodiscard]] const MlpConfig& config() const noexcept { return config_; }
  /// Features per row of x_t.
  [[nodiscard]] Index input_dim() const noexcept { return config_.input_dim; }
  /// Features per row of the output.
  [[nodiscard]] Index output_dim() const noexcept { return config_.output_dim; }
  /// The number of classes of the label embedding (0: unconditional).
  [[nodiscard]] int num_classes() const noexcept { return config_.num_classes; }

  /// out = model(x_t, t) with every label kNoLabel. out is resized to x_t.rows() x output_dim.
  void predict(ConstRef x_t, std::span<const int> t, Batch<Real>& out) {
    predict_impl(x_t, t, std::span<const int>(), out, this->training());
  }

  /// out = model(x_t, t, labels); labels in [0, num_classes) or kNoLabel, one per row (an empty
  /// span means all kNoLabel). A model without classes accepts only kNoLabel.
  void predict(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
               Batch<Real>& out) {
    predict_impl(x_t, t, labels, out, this->training());
  }

  /// Real-valued timesteps (ContinuousTimeDenoiser): the sinusoid of a fractional t is computed
  /// directly; at an integral t the output equals the int overload's bitwise.
  void predict(ConstRef x_t, std::span<const double> t, Batch<Real>& out) {
    predict_impl(x_t, t, std::span<const int>(), out, this->training());
  }
  /// \overload
  void predict(ConstRef x_t, std::span<const double> t, std::span<const int> labels,
               Batch<Real>& out) {
    predict_impl(x_t, t, labels, out, this->training());
  }

  /// out = model(x_t, t[, labels]) as predict() in inference (no dropout), but keeping what
  /// input_vjp() needs, whatever the training mode (InputVjpDenoiser, for the probability-flow
  /// likelihood). backward() also works after it.
  void linearize(ConstRef x_t, std::span<const double> t, Batch<Real>& out) {
    predict_impl(x_t, t, std::span<const int>(), out, true);
  }
  /// \overload
  void linearize(ConstRef x_t, std::span<const double> t, std::span<const int> labels,
                 Batch<Real>& out) {
    predict_impl(x_t, t, labels, out, true);
  }

  /// grad_x.row(i) = cotangent.row(i) d out.row(i) / d x_t.row(i), a vector-Jacobian product at
  /// the last linearize() (or training predict()); grad_x is resized to the batch x input_dim.
  /// Parameter gradients are left as they were. Any number of products per linearize().
  void input_vjp(ConstRef cotangent, Batch<Real>& grad_x) {
    this->preserving_gradients([&] { backward_impl(cotangent, &grad_x); });
  }

  /// Accumulates d loss / d parameters for the last predict() into gradient_values(), given
  /// grad_out = d loss / d out (x_t.rows() x output_dim).
  void backward(ConstRef grad_out) { backward_impl(grad_out, nullptr); }

  /// As backward(grad_out), and also writes grad_x = d loss / d x_t (resized to the batch x
  /// input_dim), e.g. for classifier guidance.
  void backward(ConstRef grad_out, Batch<Real>& grad_x) { backward_impl(grad_out, &grad_x); }

  // parameters(), parameter_values(), gradient_values(), parameter_count(), zero_grad(),
  // set_training() and training() come from ModelCore. With training off, predict() keeps no
  // activations (two batch x width buffers instead of 2 * depth) and backward() throws.

  /// The hidden layers and the output layer, for inspection.
  [[nodiscard]] std::span<Linear<Real>> hidden_layers() noexcept { return layers().hidden; }
  /// \copydoc hidden_layers()
  [[nodiscard]] Linear<Real>& output_layer() noexcept { return layers().output; }

 private:
  using Core::layers;

  template <class Time>
  void predict_impl(const ConstRef& x_t, std::span<const Time> t, std::span<const int> labels,
                    Batch<Real>& out, bool keep) {
    const Index rows = x_t.rows();
    ddpm::detail::require_shape(x_t.cols() == config_.input_dim, "x_t", rows, x_t.cols(), [&] {
      return "input_dim = " + ddpm::detail::to_text(config_.input_dim) + " columns";
    });
    ddpm::detail::require(static_cast<Index>(t.size()) == rows, "t.size()", t.size(),
                          [&] { return "x_t.rows() = " + ddpm::detail::to_text(rows); });
    ddpm::detail::require(labels.empty() || static_cast<Index>(labels.size()) == rows,
                          "labels.size()", labels.size(),
                          [&] { return "0 or x_t.rows() = " + ddpm::detail::to_text(rows); });
    if (config_.num_classes > 0) {
      layers().labels.check_labels(labels);
    } else {
      for (const int label : labels) {
        ddpm::detail::require(label == kNoLabel, "label", label,
                              "kNoLabel (-1) only: the model has num_classes = 0");
      }
    }
    const Index in = config_.input_dim;
    const Index emb = config_.embedding_dim;
    // Building the concatenated input validates t, so nothing below can throw.
    Eigen::Map<Batch<Real>> input = input_.resize(rows, in + emb);
    embedding_.forward(t, input.rightCols(emb));
    if (config_.num_classes > 0) {
      labels_.assign(labels.begin(), labels.end());
      if (labels.empty()) labels_.assign(static_cast<std::size_t>(rows), kNoLabel);
      layers().labels.add_to(labels_, input.rightCols(emb));
    }
    input.leftCols(in) = x_t;
    out.resize(rows, config_.output_dim);

    const Index width = config_.width;
    std::vector<Linear<Real>>& hidden = layers().hidden;
    if (keep) {
      for (std::size_t k = 0; k < hidden.size(); ++k) {
        Eigen::Map<Batch<Real>> h = activations_[k].resize(rows, width);
        if (k == 0) {
          hidden[k].forward(input, h);
        } else if (config_.residual) {
          hidden[k].forward(activations_[k - 1].view(), h, activations_[k - 1].view());
        } else {
          hidden[k].forward(activations_[k - 1].view(), h);
        }
      }
      layers().output.forward(activations_.back().view(), out);
      this->set_kept_batch(rows);
    } else {
      // Inference keeps nothing: two width-sized buffers used in turn, activations in place.
      const std::size_t last = forward_inference(input, rows);
      layers().output.forward(activations_[last].view(), out, false);
      this->set_kept_batch(-1);
    }
  }

  static const MlpConfig& validated(const MlpConfig& c) {
    ddpm::detail::require(c.input_dim >= 1, "input_dim", c.input_dim, ">= 1");
    ddpm::detail::require(c.output_dim >= 1, "output_dim", c.output_dim, ">= 1");
    ddpm::detail::require(c.width >= 1, "width", c.width, ">= 1");
    ddpm::detail::require(c.depth >= 1, "depth", c.depth, ">= 1");
    ddpm::detail::require(c.embedding_dim >= 1, "embedding_dim", c.embedding_dim, ">= 1");
    ddpm::detail::require(c.num_classes >= 0, "num_classes", c.num_classes, ">= 0");
    return c;
  }

  // Registers "layer0" .. "layer<depth>" and "label_embedding" with the store.
  static detail::MlpLayers<Real> build(const MlpConfig& c, ParameterStore<Real>& store) {
    detail::MlpLayers<Real> net;
    const Index concat_dim = c.input_dim + c.embedding_dim;
    net.hidden.reserve(static_cast<std::size_t>(c.depth));
    for (Index k = 0; k < c.depth; ++k) {
      net.hidden.emplace_back(store, "layer" + std::to_string(k), k == 0 ? concat_dim : c.width,
                              c.width, c.activation);
    }
    net.output = Linear<Real>(store, "layer" + std::to_string(c.depth), c.width, c.output_dim,
                              Activation::identity);
    if (c.num_classes > 0) {
      net.labels = LabelEmbedding<Real>(store, "label_embedding", c.num_classes, c.embedding_dim);
    }
    return net;
  }

  // Runs the hidden layers without keeping anything; returns the buffer holding the last one.
  std::size_t forward_inference(const Eigen::Map<Batch<Real>>& input, Index rows) {
    const Index width = config_.width;
    std::vector<Linear<Real>>& hidden = layers().hidden;
    std::size_t current = 0;
    hidden[0].forward(input, activations_[0].resize(rows, width), false);
    for (std::size_t k = 1; k < hidden.size(); ++k) {
      const std::size_t next = 1 - current;
      Eigen::Map<Batch<Real>> h = activations_[next].resize(rows, width);
      if (config_.residual) {
        hidden[k].forward(activations_[current].view(), h, activations_[current].view(), false);
      } else {
        hidden[k].forward(activations_[current].view(), h, false);
      }
      current = next;
    }
    return current;
  }

  void backward_impl(const ConstRef& grad_out, Batch<Real>* grad_x) {
    const Index rows = this->kept_batch("nn::Mlp", "predict()");
    ddpm::detail::require_shape(grad_out.rows() == rows && grad_out.cols() == config_.output_dim,
                                "grad_out", grad_out.rows(), grad_out.cols(), [&] {
                                  return "the shape of the last predict() output, " +
                                         ddpm::detail::to_text(rows) + "x" +
                                         ddpm::detail::to_text(config_.output_dim);
                                });
    std::vector<Linear<Real>>& hidden = layers().hidden;
    Eigen::Map<Batch<Real>> dh = grad_hidden_.resize(rows, config_.width);
    layers().output.backward(activations_.back().view(), grad_out, dh);
    // dh is overwritten in place layer by layer: dz_k is computed from it before dx is written.
    for (std::size_t k = hidden.size() - 1; k >= 1; --k) {
      hidden[k].backward(activations_[k - 1].view(), dh, dh, config_.residual);
    }
    const bool has_labels = config_.num_classes > 0;
    const Eigen::Map<const Batch<Real>> input = std::as_const(input_).view();
    if (grad_x == nullptr && !has_labels) {
      hidden[0].backward(input, dh);
      return;
    }
    const Index in = config_.input_dim;
    const Index emb = config_.embedding_dim;
    Eigen::Map<Batch<Real>> d_input = grad_input_.resize(rows, in + emb);
    hidden[0].backward(input, dh, d_input);
    if (has_labels) layers().labels.backward(labels_, d_input.rightCols(emb));
    if (grad_x != nullptr) *grad_x = d_input.leftCols(in);
  }

  MlpConfig config_;
  SinusoidalEmbedding<Real> embedding_;
  Workspace<Real> input_;                     // [x_t, emb]
  std::vector<Workspace<Real>> activations_;  // h_0 .. h_{depth-1}
  Workspace<Real> grad_hidden_;               // d loss / d h_k, reused for every k
  Workspace<Real> grad_input_;                // d loss / d [x_t, emb]
  std::vector<int> labels_;                   // labels of the last predict()
};

}  // namespace ddpm::nn
