// SPDX-License-Identifier: MIT
// The timestep (and class) embedding of the DDPM UNet: SiLU(Linear(SiLU(Linear(sinusoidal(t)))) +
// label_table[y]), the vector every ResBlock reads.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// e = SiLU(Linear_1(SiLU(Linear_0(sinusoidal(t)))) + label_table[y]) (Ho et al. 2020's timestep
/// embedding with improved-diffusion's class embedding). Parameters "<name>.0.*", "<name>.1.*" and
/// "label_embedding.weight" when num_classes > 0 (its last row is the learned "no label").
template <class Real>
class TimeEmbedding {
 public:
  /// Layer ids initialize() uses from its `first_layer`.
  static constexpr std::uint32_t kLayerIds = 3;

  TimeEmbedding() = default;
  /// Registers the two Linear layers ("<name>.0", "<name>.1") and, when num_classes > 0, the label
  /// table ("label_embedding") with `store`.
  TimeEmbedding(ParameterStore<Real>& store, const std::string& name, Index sinusoidal_dim,
                Index dim, int num_classes, double max_period)
      : sinusoidal_(sinusoidal_dim, max_period), dim_(dim), num_classes_(num_classes) {
    first_ = Linear<Real>(store, name + ".0", sinusoidal_dim, dim, Activation::silu);
    second_ = Linear<Real>(store, name + ".1", dim, dim);
    if (num_classes > 0)
      labels_table_ = LabelEmbedding<Real>(store, "label_embedding", num_classes, dim);
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    first_.bind(store);
    second_.bind(store);
    if (num_classes_ > 0) labels_table_.bind(store);
  }

  /// Initializes its layers with layer ids first_layer .. first_layer + kLayerIds - 1.
  void initialize(const CounterRng& rng, std::uint32_t first_layer) {
    first_.initialize(rng, first_layer);
    second_.initialize(rng, first_layer + 1);
    if (num_classes_ > 0) labels_table_.initialize(rng, first_layer + 2);
  }

  /// The width of the embedding it outputs.
  [[nodiscard]] Index dim() const noexcept { return dim_; }
  /// The number of classes of the label table (0: none).
  [[nodiscard]] int num_classes() const noexcept { return num_classes_; }

  /// Throws InvalidArgument unless labels is empty or has `rows` entries, each valid for the model
  /// (kNoLabel only when num_classes = 0).
  void check_labels(std::span<const int> labels, Index rows) const {
    ddpm::detail::require(labels.empty() || static_cast<Index>(labels.size()) == rows,
                          "labels.size()", labels.size(),
                          [&] { return "0 or x_t.rows() = " + ddpm::detail::to_text(rows); });
    if (num_classes_ > 0) {
      labels_table_.check_labels(labels);
      return;
    }
    for (const int label : labels) {
      ddpm::detail::require(label == kNoLabel, "label", label,
                            "kNoLabel (-1) only: the model has num_classes = 0");
    }
  }

  /// The embedding of every row (t.size() x dim); labels empty means all kNoLabel. Validate t and
  /// labels first (check_labels; t >= 0 is checked here). t: int timesteps or real ones (the
  /// sinusoid of a real t is computed directly).
  template <class Time>
  Eigen::Map<const Batch<Real>> forward(std::span<const Time> t, std::span<const int> labels,
                                        bool keep_for_backward) {
    const auto rows = static_cast<Index>(t.size());
    Eigen::Map<Batch<Real>> sinusoid = sinusoid_.resize(rows, sinusoidal_.dim());
    sinusoidal_.forward(t, sinusoid);
    Eigen::Map<Batch<Real>> hidden = hidden_.resize(rows, dim_);
    first_.forward(sinusoid, hidden, keep_for_backward);
    Eigen::Map<Batch<Real>> pre = pre_activation_.resize(rows, dim_);
    second_.forward(hidden, pre, keep_for_backward);
    if (num_classes_ > 0) {
      labels_.assign(labels.begin(), labels.end());
      if (labels.empty()) labels_.assign(static_cast<std::size_t>(rows), kNoLabel);
      labels_table_.add_to(labels_, pre);
    }
    Eigen::Map<Batch<Real>> out = output_.resize(rows, dim_);
    silu_.forward(pre, out);
    return std::as_const(output_).view();
  }

  /// The last forward()'s output.
  [[nodiscard]] Eigen::Map<const Batch<Real>> output() const noexcept { return output_.view(); }

  /// Accumulates parameter gradients given d loss / d output (overwritten as scratch).
  void backward(Eigen::Map<Batch<Real>> d_output) {
    silu_.backward(pre_activation_.view(), d_output, d_output);
    if (num_classes_ > 0) labels_table_.backward(labels_, d_output);
    Eigen::Map<Batch<Real>> d_hidden = grad_hidden_.resize(d_output.rows(), dim_);
    second_.backward(hidden_.view(), d_output, d_hidden);
    first_.backward(sinusoid_.view(), d_hidden);
  }

 private:
  SinusoidalEmbedding<Real> sinusoidal_{1};
  Linear<Real> first_;
  Linear<Real> second_;
  LabelEmbedding<Real> labels_table_;
  SiLU<Real> silu_;
  Index dim_ = 0;
  int num_classes_ = 0;
  Workspace<Real> sinusoid_;
  Workspace<Real> hidden_;
  Workspace<Real> pre_activation_;
  Workspace<Real> output_;
  Workspace<Real> grad_hidden_;
  std::vector<int> labels_;
};

}  // namespace ddpm::nn
