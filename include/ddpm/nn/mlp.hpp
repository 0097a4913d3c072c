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
#include "ddpm/nn/check.hpp"
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/linear.hpp"
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
  Activation activation = Activation::silu;
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
/// A model object holds per-call state: use one object per thread (copies are independent).
/// \code
///   nn::Mlp<float> model(nn::toy_mlp_config(/*seed=*/1));
///   model.predict(x_t, t, eps_hat);       // eps_hat: batch x 2
///   model.zero_grad();
///   model.backward(d_loss_d_eps_hat);     // accumulates into gradient_values()
/// \endcode
template <class Real>
class Mlp {
 public:
  using ConstRef = Eigen::Ref<const Batch<Real>>;

  explicit Mlp(const MlpConfig& config)
      : config_(config), embedding_(config.embedding_dim, config.max_period) {
    validate(config);
    const Index concat_dim = config.input_dim + config.embedding_dim;
    hidden_.reserve(static_cast<std::size_t>(config.depth));
    for (Index k = 0; k < config.depth; ++k) {
      hidden_.emplace_back(store_, "layer" + std::to_string(k), k == 0 ? concat_dim : config.width,
                           config.width, config.activation);
    }
    output_ = Linear<Real>(store_, "layer" + std::to_string(config.depth), config.width,
                           config.output_dim, Activation::identity);
    if (config.num_classes > 0) {
      labels_table_ =
          LabelEmbedding<Real>(store_, "label_embedding", config.num_classes, config.embedding_dim);
    }
    store_.allocate();
    bind();
    initialize(config.seed);
    activations_.resize(static_cast<std::size_t>(config.depth));
  }

  // Copies get their own buffers; the layers are re-pointed at them.
  Mlp(const Mlp& other)
      : config_(other.config_),
        store_(other.store_),
        hidden_(other.hidden_),
        output_(other.output_),
        labels_table_(other.labels_table_),
        embedding_(other.embedding_),
        input_(other.input_),
        activations_(other.activations_),
        grad_hidden_(other.grad_hidden_),
        grad_input_(other.grad_input_),
        labels_(other.labels_),
        batch_(other.batch_),
        training_(other.training_) {
    bind();
  }
  Mlp& operator=(const Mlp& other) {
    if (this != &other) {
      Mlp copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  Mlp(Mlp&& other) noexcept = default;
  Mlp& operator=(Mlp&& other) noexcept = default;
  ~Mlp() = default;

  /// Re-draws every parameter from `seed` (the last layer is zero if config.zero_init_output).
  void initialize(std::uint64_t seed) {
    const CounterRng rng(seed);
    std::uint32_t layer = 0;
    for (Linear<Real>& linear : hidden_) linear.initialize(rng, layer++);
    output_.initialize(rng, layer++, config_.zero_init_output);
    if (config_.num_classes > 0) labels_table_.initialize(rng, layer++);
  }

  [[nodiscard]] const MlpConfig& config() const noexcept { return config_; }
  [[nodiscard]] Index input_dim() const noexcept { return config_.input_dim; }
  [[nodiscard]] Index output_dim() const noexcept { return config_.output_dim; }
  [[nodiscard]] int num_classes() const noexcept { return config_.num_classes; }

  /// out = model(x_t, t) with every label kNoLabel. out is resized to x_t.rows() x output_dim.
  void predict(ConstRef x_t, std::span<const int> t, Batch<Real>& out) {
    predict(x_t, t, std::span<const int>(), out);
  }

  /// out = model(x_t, t, labels); labels in [0, num_classes) or kNoLabel, one per row (an empty
  /// span means all kNoLabel). A model without classes accepts only kNoLabel.
  void predict(ConstRef x_t, std::span<const int> t, std::span<const int> labels,
               Batch<Real>& out) {
    const Index rows = x_t.rows();
    detail::check_shape(x_t.cols() == config_.input_dim, "x_t", rows, x_t.cols(), [&] {
      return "input_dim = " + ddpm::detail::to_text(config_.input_dim) + " columns";
    });
    detail::check(static_cast<Index>(t.size()) == rows, "t.size()", t.size(),
                  [&] { return "x_t.rows() = " + ddpm::detail::to_text(rows); });
    detail::check(labels.empty() || static_cast<Index>(labels.size()) == rows, "labels.size()",
                  labels.size(),
                  [&] { return "0 or x_t.rows() = " + ddpm::detail::to_text(rows); });
    if (config_.num_classes > 0) {
      labels_table_.check_labels(labels);
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
      labels_table_.add_to(labels_, input.rightCols(emb));
    }
    input.leftCols(in) = x_t;
    out.resize(rows, config_.output_dim);

    const Index width = config_.width;
    if (training_) {
      for (std::size_t k = 0; k < hidden_.size(); ++k) {
        Eigen::Map<Batch<Real>> h = activations_[k].resize(rows, width);
        if (k == 0) {
          hidden_[k].forward(input, h);
        } else if (config_.residual) {
          hidden_[k].forward(activations_[k - 1].view(), h, activations_[k - 1].view());
        } else {
          hidden_[k].forward(activations_[k - 1].view(), h);
        }
      }
      output_.forward(activations_.back().view(), out);
      batch_ = rows;
    } else {
      // Inference keeps nothing: two width-sized buffers used in turn, activations in place.
      const std::size_t last = forward_inference(input, rows);
      output_.forward(activations_[last].view(), out, false);
      batch_ = -1;
    }
  }

  /// Accumulates d loss / d parameters for the last predict() into gradient_values(), given
  /// grad_out = d loss / d out (x_t.rows() x output_dim).
  void backward(ConstRef grad_out) { backward_impl(grad_out, nullptr); }

  /// As backward(grad_out), and also writes grad_x = d loss / d x_t (resized to the batch x
  /// input_dim), e.g. for classifier guidance.
  void backward(ConstRef grad_out, Batch<Real>& grad_x) { backward_impl(grad_out, &grad_x); }

  /// Named views of every parameter tensor and its gradient.
  [[nodiscard]] std::span<ParameterBlock<Real>> parameters() noexcept { return store_.blocks(); }
  /// All parameters, all gradients, as flat vectors (one buffer each, blocks back to back).
  [[nodiscard]] std::span<Real> parameter_values() noexcept { return store_.values(); }
  [[nodiscard]] std::span<const Real> parameter_values() const noexcept { return store_.values(); }
  [[nodiscard]] std::span<Real> gradient_values() noexcept { return store_.grads(); }
  [[nodiscard]] std::span<const Real> gradient_values() const noexcept { return store_.grads(); }
  [[nodiscard]] Index parameter_count() const noexcept { return store_.size(); }
  void zero_grad() noexcept { store_.zero_grad(); }

  /// With training off, predict() keeps no activations (two batch x width buffers instead of
  /// 2 * depth) and backward() throws. On by default.
  void set_training(bool training) noexcept { training_ = training; }
  [[nodiscard]] bool training() const noexcept { return training_; }

  /// The hidden layers and the output layer, for inspection.
  [[nodiscard]] std::span<Linear<Real>> hidden_layers() noexcept { return hidden_; }
  [[nodiscard]] Linear<Real>& output_layer() noexcept { return output_; }

 private:
  static void validate(const MlpConfig& c) {
    ddpm::detail::require(c.input_dim >= 1, "input_dim", c.input_dim, ">= 1");
    ddpm::detail::require(c.output_dim >= 1, "output_dim", c.output_dim, ">= 1");
    ddpm::detail::require(c.width >= 1, "width", c.width, ">= 1");
    ddpm::detail::require(c.depth >= 1, "depth", c.depth, ">= 1");
    ddpm::detail::require(c.embedding_dim >= 1, "embedding_dim", c.embedding_dim, ">= 1");
    ddpm::detail::require(c.num_classes >= 0, "num_classes", c.num_classes, ">= 0");
  }

  void bind() noexcept {
    for (Linear<Real>& linear : hidden_) linear.bind(store_);
    output_.bind(store_);
    if (config_.num_classes > 0) labels_table_.bind(store_);
  }

  // Runs the hidden layers without keeping anything; returns the buffer holding the last one.
  std::size_t forward_inference(const Eigen::Map<Batch<Real>>& input, Index rows) {
    const Index width = config_.width;
    std::size_t current = 0;
    hidden_[0].forward(input, activations_[0].resize(rows, width), false);
    for (std::size_t k = 1; k < hidden_.size(); ++k) {
      const std::size_t next = 1 - current;
      Eigen::Map<Batch<Real>> h = activations_[next].resize(rows, width);
      if (config_.residual) {
        hidden_[k].forward(activations_[current].view(), h, activations_[current].view(), false);
      } else {
        hidden_[k].forward(activations_[current].view(), h, false);
      }
      current = next;
    }
    return current;
  }

  void backward_impl(const ConstRef& grad_out, Batch<Real>* grad_x) {
    if (batch_ < 0) {
      throw std::logic_error(
          "ddpm::nn::Mlp::backward needs a predict() in training mode (set_training(true))");
    }
    detail::check_shape(grad_out.rows() == batch_ && grad_out.cols() == config_.output_dim,
                        "grad_out", grad_out.rows(), grad_out.cols(), [&] {
                          return "the shape of the last predict() output, " +
                                 ddpm::detail::to_text(batch_) + "x" +
                                 ddpm::detail::to_text(config_.output_dim);
                        });
    const Index rows = batch_;
    Eigen::Map<Batch<Real>> dh = grad_hidden_.resize(rows, config_.width);
    output_.backward(activations_.back().view(), grad_out, dh);
    // dh is overwritten in place layer by layer: dz_k is computed from it before dx is written.
    for (std::size_t k = hidden_.size() - 1; k >= 1; --k) {
      hidden_[k].backward(activations_[k - 1].view(), dh, dh, config_.residual);
    }
    const bool has_labels = config_.num_classes > 0;
    const Eigen::Map<const Batch<Real>> input = std::as_const(input_).view();
    if (grad_x == nullptr && !has_labels) {
      hidden_[0].backward(input, dh);
      return;
    }
    const Index in = config_.input_dim;
    const Index emb = config_.embedding_dim;
    Eigen::Map<Batch<Real>> d_input = grad_input_.resize(rows, in + emb);
    hidden_[0].backward(input, dh, d_input);
    if (has_labels) labels_table_.backward(labels_, d_input.rightCols(emb));
    if (grad_x != nullptr) *grad_x = d_input.leftCols(in);
  }

  MlpConfig config_;
  ParameterStore<Real> store_;
  std::vector<Linear<Real>> hidden_;
  Linear<Real> output_;
  LabelEmbedding<Real> labels_table_;
  SinusoidalEmbedding<Real> embedding_;
  Workspace<Real> input_;                     // [x_t, emb]
  std::vector<Workspace<Real>> activations_;  // h_0 .. h_{depth-1}
  Workspace<Real> grad_hidden_;               // d loss / d h_k, reused for every k
  Workspace<Real> grad_input_;                // d loss / d [x_t, emb]
  std::vector<int> labels_;                   // labels of the last predict()
  Index batch_ = -1;                          // rows of the last training predict(), -1 if none
  bool training_ = true;
};

}  // namespace ddpm::nn
