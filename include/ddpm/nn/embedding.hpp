// SPDX-License-Identifier: MIT
// Timestep and class-label embeddings: the sinusoidal embedding of improved diffusion (cached per
// integral timestep, computed directly for a real one) and a learned label table with a "no label"
// row for classifier-free guidance.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/parameter_store.hpp"

namespace ddpm::nn {

/// The sinusoidal timestep embedding of improved diffusion (Nichol & Dhariwal 2021,
/// `timestep_embedding`): half = dim / 2, freq_i = exp(-ln(max_period) i / half),
/// emb(t) = [cos(t freq_0..half-1), sin(t freq_0..half-1)], and a final zero when dim is odd.
/// Values are computed in double and rounded to Real.
///
/// Timesteps are integers, so rows are computed once per timestep into a table that grows to the
/// largest t seen (up to kMaxCachedTimestep); forward() then only copies rows, which matters
/// because a batch of 4096 would otherwise cost 262k sin/cos evaluations per step.
/// \code
///   nn::SinusoidalEmbedding<float> emb(64);
///   emb.forward(t, out);   // out: t.size() x 64
/// \endcode
template <class Real>
class SinusoidalEmbedding {
 public:
  /// Timesteps up to this value are cached (4 MB of floats at dim 64); larger ones are computed.
  static constexpr int kMaxCachedTimestep = 16383;

  /// Embeddings of `dim` features (>= 1) with periods up to `max_period` (> 0).
  explicit SinusoidalEmbedding(Index dim = 64, double max_period = 10000.0)
      : dim_(dim), max_period_(max_period) {
    ddpm::detail::require(dim >= 1, "embedding_dim", dim, ">= 1");
    ddpm::detail::require(max_period > 0.0 && std::isfinite(max_period), "max_period", max_period,
                          "a finite value > 0");
  }

  /// The embedding width.
  [[nodiscard]] Index dim() const noexcept { return dim_; }
  /// The longest period of the sinusoids.
  [[nodiscard]] double max_period() const noexcept { return max_period_; }

  /// Component j of the embedding of timestep t (double precision, no cache).
  [[nodiscard]] static double value(double t, Index j, Index dim, double max_period) {
    const Index half = dim / 2;
    if (j >= 2 * half) return 0.0;  // odd dim: zero padding
    const Index i = j < half ? j : j - half;
    const double freq =
        std::exp(-std::log(max_period) * static_cast<double>(i) / static_cast<double>(half));
    return j < half ? std::cos(t * freq) : std::sin(t * freq);
  }

  /// Writes emb(t[i]) for real-valued timesteps (noise levels between the schedule's steps),
  /// computed directly: no cache. At an integral t it equals the int overload bitwise (both go
  /// through value()). Timesteps must be finite and >= 0.
  void forward(std::span<const double> t, Eigen::Ref<Batch<Real>> out) const {
    ddpm::detail::require_shape(out.rows() == static_cast<Index>(t.size()) && out.cols() == dim_,
                                "embedding output", out.rows(), out.cols(),
                                "t.size() x embedding_dim");
    for (const double ti : t) {
      ddpm::detail::require(std::isfinite(ti) && ti >= 0.0, "t", ti, "a finite timestep >= 0");
    }
    // Samplers pass one t for the whole batch: compute each run of equal timesteps once (the
    // exp and sin/cos of every element dominated sampling on continuous grids), then copy it.
    std::vector<Index> first_of_run(t.size());
    std::vector<Index> runs;
    for (std::size_t r = 0; r < t.size(); ++r) {
      const bool repeats = r > 0 && t[r] == t[r - 1];
      first_of_run[r] = repeats ? first_of_run[r - 1] : static_cast<Index>(r);
      if (!repeats) runs.push_back(static_cast<Index>(r));
    }
    ddpm::detail::parallel_for(static_cast<Index>(runs.size()), 32 * dim_, [&](Index k) {
      const Index r = runs[static_cast<std::size_t>(k)];
      Real* row = out.data() + r * out.outerStride();
      const double ti = t[static_cast<std::size_t>(r)];
      for (Index j = 0; j < dim_; ++j) row[j] = static_cast<Real>(value(ti, j, dim_, max_period_));
    });
    ddpm::detail::parallel_for(out.rows(), dim_, [&](Index r) {
      const Index source = first_of_run[static_cast<std::size_t>(r)];
      if (source != r) out.row(r) = out.row(source);
    });
  }

  /// Writes emb(t[i]) into out.row(i). out must be t.size() x dim() (it may be a column block of a
  /// wider matrix). Timesteps must be >= 0. Allocates only when a larger t than before appears.
  void forward(std::span<const int> t, Eigen::Ref<Batch<Real>> out) {
    ddpm::detail::require_shape(out.rows() == static_cast<Index>(t.size()) && out.cols() == dim_,
                                "embedding output", out.rows(), out.cols(),
                                "t.size() x embedding_dim");
    int max_t = -1;
    for (const int ti : t) {
      ddpm::detail::require(ti >= 0, "t", ti, ">= 0");
      max_t = std::max(max_t, ti);
    }
    grow_table(std::min(max_t, kMaxCachedTimestep));
    const Index cached = table_.rows();
    ddpm::detail::parallel_for(out.rows(), dim_, [&](Index r) {
      const int ti = t[static_cast<std::size_t>(r)];
      Real* row = out.data() + r * out.outerStride();
      if (ti < cached) {
        std::copy_n(table_.data() + ti * dim_, dim_, row);
      } else {
        fill_row(ti, row);
      }
    });
  }

 private:
  void fill_row(int t, Real* row) const {
    for (Index j = 0; j < dim_; ++j) {
      row[j] = static_cast<Real>(value(static_cast<double>(t), j, dim_, max_period_));
    }
  }

  void grow_table(int max_t) {
    if (max_t < table_.rows()) return;
    // Round up so a training run's first few batches settle the size in one or two steps.
    const Index rows =
        std::min<Index>(kMaxCachedTimestep + 1, std::max<Index>(1024, 2 * (Index{max_t} + 1)));
    const Index old_rows = table_.rows();
    table_.conservativeResize(rows, dim_);
    ddpm::detail::parallel_for(rows - old_rows, 32 * dim_, [&](Index r) {
      fill_row(static_cast<int>(old_rows + r), table_.data() + (old_rows + r) * dim_);
    });
  }

  Index dim_;
  double max_period_;
  Batch<Real> table_;  // row t = emb(t)
};

/// A learned class-label embedding: a (num_classes + 1) x dim table whose last row is the learned
/// "no label" embedding used for kNoLabel (classifier-free guidance). Parameter "<name>.weight".
template <class Real>
class LabelEmbedding {
 public:
  LabelEmbedding() = default;

  /// Registers "<name>.weight" ((num_classes + 1) x dim) with `store`.
  LabelEmbedding(ParameterStore<Real>& store, const std::string& name, int num_classes, Index dim)
      : num_classes_(num_classes), dim_(dim) {
    ddpm::detail::require(num_classes >= 1, "num_classes", num_classes, ">= 1");
    ddpm::detail::require(dim >= 1, "embedding_dim", dim, ">= 1");
    slot_ = store.add(name + ".weight", Index{num_classes} + 1, dim);
  }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    table_ = store.value_data(slot_);
    grad_ = store.grad_data(slot_);
  }

  /// PyTorch's nn.Embedding default, N(0, 1), as draws of (stream::init, layer, 0).
  void initialize(const CounterRng& rng, std::uint32_t layer) {
    fill_normal(std::span<Real>(table_, static_cast<std::size_t>((num_classes_ + 1) * dim_)), 1.0,
                rng, layer, 0);
  }

  /// The number of classes (the table has one more row, for kNoLabel).
  [[nodiscard]] int num_classes() const noexcept { return num_classes_; }
  /// The embedding width.
  [[nodiscard]] Index dim() const noexcept { return dim_; }
  /// The table ((num_classes + 1) x dim); row num_classes is kNoLabel's.
  [[nodiscard]] Eigen::Map<Batch<Real>> weight() noexcept {
    return Eigen::Map<Batch<Real>>(table_, num_classes_ + 1, dim_);
  }
  /// The gradient of the table, accumulated by backward().
  [[nodiscard]] Eigen::Map<Batch<Real>> weight_grad() noexcept {
    return Eigen::Map<Batch<Real>>(grad_, num_classes_ + 1, dim_);
  }

  /// Throws unless every label is in [0, num_classes) or kNoLabel.
  void check_labels(std::span<const int> labels) const {
    for (const int label : labels) {
      ddpm::detail::require(
          label == kNoLabel || (label >= 0 && label < num_classes_), "label", label,
          [&] { return "0.." + ddpm::detail::to_text(num_classes_ - 1) + " or kNoLabel (-1)"; });
    }
  }

  /// out.row(i) += table.row(row_of(labels[i])). Labels must have passed check_labels().
  void add_to(std::span<const int> labels, Eigen::Ref<Batch<Real>> out) const {
    ddpm::detail::require_shape(
        out.rows() == static_cast<Index>(labels.size()) && out.cols() == dim_,
        "label embedding output", out.rows(), out.cols(), "labels.size() x embedding_dim");
    ddpm::detail::parallel_for(out.rows(), dim_, [&](Index r) {
      const Real* src = table_ + row_of(labels[static_cast<std::size_t>(r)]) * dim_;
      Real* dst = out.data() + r * out.outerStride();
      for (Index j = 0; j < dim_; ++j) dst[j] += src[j];
    });
  }

  /// table.grad.row(row_of(labels[i])) += d_out.row(i). Serial: rows with equal labels collide.
  void backward(std::span<const int> labels, Eigen::Ref<const Batch<Real>> d_out) {
    ddpm::detail::require_shape(
        d_out.rows() == static_cast<Index>(labels.size()) && d_out.cols() == dim_,
        "label embedding gradient", d_out.rows(), d_out.cols(), "labels.size() x embedding_dim");
    for (Index r = 0; r < d_out.rows(); ++r) {
      Real* dst = grad_ + row_of(labels[static_cast<std::size_t>(r)]) * dim_;
      const Real* src = d_out.data() + r * d_out.outerStride();
      for (Index j = 0; j < dim_; ++j) dst[j] += src[j];
    }
  }

 private:
  [[nodiscard]] Index row_of(int label) const noexcept {
    return label == kNoLabel ? Index{num_classes_} : Index{label};
  }

  int num_classes_ = 0;
  Index dim_ = 0;
  typename ParameterStore<Real>::Slot slot_{};
  Real* table_ = nullptr;
  Real* grad_ = nullptr;
};

}  // namespace ddpm::nn
