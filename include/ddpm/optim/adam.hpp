// SPDX-License-Identifier: MIT
// Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) with bias correction, on a model's
// flat parameter buffer or on a list of ParameterBlocks, with checkpointable state.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/optim/parameter_view.hpp"

namespace ddpm::optim {

/// Hyper-parameters of Adam / AdamW (PyTorch's names and defaults, except that AdamW's
/// weight_decay also defaults to 0 here: set it explicitly, PyTorch uses 0.01).
struct AdamOptions {
  double learning_rate = 1e-3;  ///< > 0
  double beta1 = 0.9;           ///< in [0, 1)
  double beta2 = 0.999;         ///< in [0, 1)
  double eps = 1e-8;            ///< > 0, added to sqrt(v_hat)
  double weight_decay = 0.0;    ///< >= 0; L2 (Adam) or decoupled (AdamW)
};

/// Weight-decay policy of Adam: the decay is added to the gradient, g += weight_decay * p, and so
/// passes through the moment estimates (PyTorch's torch.optim.Adam).
struct CoupledWeightDecay {
  static constexpr bool decoupled = false;  ///< decay on the gradient, through the moments
};
/// Weight-decay policy of AdamW: p *= 1 - lr * weight_decay before the Adam update, outside the
/// moments (PyTorch's torch.optim.AdamW).
struct DecoupledWeightDecay {
  static constexpr bool decoupled = true;  ///< decay on the weights, outside the moments
};

/// Adam with bias correction, in PyTorch's arithmetic: at step t (1-based)
///   m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
///   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
/// The state (m, v, t) is sized on the first step and can be read and restored for checkpoints.
/// \code
///   optim::Adam<float> adam({.learning_rate = 1e-3});
///   adam.step(model.parameter_values(), model.gradient_values());   // or
///   adam.step(model.parameters())
/// \endcode
template <class Real, class WeightDecay>
class AdamType {
 public:
  /// Throws InvalidArgument for an option out of range.
  explicit AdamType(const AdamOptions& options = {}) : options_(options) { validate(options); }

  /// One update of `values` from `grads` (same size; the size is fixed by the first step).
  void step(std::span<Real> values, std::span<const Real> grads) {
    ddpm::detail::require(grads.size() == values.size(), "grads.size()", grads.size(), [&] {
      return "values.size() = " + ddpm::detail::to_text(values.size());
    });
    prepare(static_cast<Index>(values.size()));
    ++step_;
    update(0, values, grads);
  }

  /// One update of every block (value -= ..., from grad); the blocks form one flat vector.
  void step(std::span<const ParameterBlock<Real>> blocks) {
    prepare(detail::checked_total_size(blocks));
    ++step_;
    detail::for_each_span(blocks, [&](Index offset, std::span<Real> values, std::span<Real> grads) {
      update(offset, values, grads);
    });
  }

  /// The options it was built with.
  [[nodiscard]] const AdamOptions& options() const noexcept { return options_; }
  /// The base learning rate (options().learning_rate).
  [[nodiscard]] double learning_rate() const noexcept { return options_.learning_rate; }
  /// Sets the rate used by the next steps (e.g. from an LrSchedule).
  void set_learning_rate(double learning_rate) {
    ddpm::detail::require(learning_rate > 0.0 && std::isfinite(learning_rate), "learning_rate",
                          learning_rate, "a finite value > 0");
    options_.learning_rate = learning_rate;
  }

  /// Updates done so far (t of the last update).
  [[nodiscard]] std::int64_t step_count() const noexcept { return step_; }
  /// First and second moment estimates, flat, in parameter order (empty before the first step).
  [[nodiscard]] std::span<const Real> first_moment() const noexcept { return m_; }
  /// \copydoc first_moment
  [[nodiscard]] std::span<const Real> second_moment() const noexcept { return v_; }

  /// Restores a state read from first_moment(), second_moment() and step_count().
  void set_state(std::int64_t step, std::span<const Real> m, std::span<const Real> v) {
    ddpm::detail::require(step >= 0, "step", step, ">= 0");
    ddpm::detail::require(v.size() == m.size(), "second_moment.size()", v.size(),
                          "first_moment.size() = " + ddpm::detail::to_text(m.size()));
    for (const Real x : v) {
      ddpm::detail::require(x >= Real(0), "second_moment element", x, ">= 0");
    }
    m_.assign(m.begin(), m.end());
    v_.assign(v.begin(), v.end());
    step_ = step;
  }

  /// Forgets the moments and the step count.
  void reset() noexcept {
    m_.clear();
    v_.clear();
    step_ = 0;
  }

 private:
  static void validate(const AdamOptions& o) {
    ddpm::detail::require(o.learning_rate > 0.0 && std::isfinite(o.learning_rate), "learning_rate",
                          o.learning_rate, "a finite value > 0");
    ddpm::detail::require(o.beta1 >= 0.0 && o.beta1 < 1.0, "beta1", o.beta1, "[0, 1)");
    ddpm::detail::require(o.beta2 >= 0.0 && o.beta2 < 1.0, "beta2", o.beta2, "[0, 1)");
    ddpm::detail::require(o.eps > 0.0 && std::isfinite(o.eps), "eps", o.eps, "a finite value > 0");
    ddpm::detail::require(o.weight_decay >= 0.0 && std::isfinite(o.weight_decay), "weight_decay",
                          o.weight_decay, "a finite value >= 0");
  }

  void prepare(Index size) {
    if (m_.empty() && v_.empty() && step_ == 0) {
      m_.assign(static_cast<std::size_t>(size), Real(0));
      v_.assign(static_cast<std::size_t>(size), Real(0));
    }
    ddpm::detail::require(static_cast<Index>(m_.size()) == size, "parameter count", size, [&] {
      return ddpm::detail::to_text(m_.size()) + ", the size of the optimizer state";
    });
  }

  // Updates values[0..n) whose state lives at m_[offset..offset + n).
  void update(Index offset, std::span<Real> values, std::span<const Real> grads) {
    using Array = Eigen::Array<Real, Eigen::Dynamic, 1>;
    const double t = static_cast<double>(step_);
    const double b1 = options_.beta1;
    const double b2 = options_.beta2;
    const double lr = options_.learning_rate;
    const double wd = options_.weight_decay;
    const Real beta1 = static_cast<Real>(b1);
    const Real beta2 = static_cast<Real>(b2);
    const Real one_minus_beta1 = static_cast<Real>(1.0 - b1);
    const Real one_minus_beta2 = static_cast<Real>(1.0 - b2);
    const Real step_size = static_cast<Real>(lr / (1.0 - std::pow(b1, t)));
    const Real inv_sqrt_bc2 = static_cast<Real>(1.0 / std::sqrt(1.0 - std::pow(b2, t)));
    const Real eps = static_cast<Real>(options_.eps);
    const Real decay = static_cast<Real>(wd);
    const Real shrink = static_cast<Real>(1.0 - lr * wd);
    Real* m_data = m_.data() + offset;
    Real* v_data = v_.data() + offset;
    detail::for_each_chunk(static_cast<Index>(values.size()), [&](Index begin, Index end) {
      const Index n = end - begin;
      Eigen::Map<Array> p(values.data() + begin, n);
      const Eigen::Map<const Array> g(grads.data() + begin, n);
      Eigen::Map<Array> m(m_data + begin, n);
      Eigen::Map<Array> v(v_data + begin, n);
      if (!WeightDecay::decoupled && wd != 0.0) {
        m = beta1 * m + one_minus_beta1 * (g + decay * p);
        v = beta2 * v + one_minus_beta2 * (g + decay * p).square();
      } else {
        m = beta1 * m + one_minus_beta1 * g;
        v = beta2 * v + one_minus_beta2 * g.square();
      }
      if (WeightDecay::decoupled && wd != 0.0) p *= shrink;
      p -= step_size * m / (v.sqrt() * inv_sqrt_bc2 + eps);
    });
  }

  AdamOptions options_;
  std::vector<Real> m_;
  std::vector<Real> v_;
  std::int64_t step_ = 0;
};

/// Adam; weight_decay, if any, is an L2 term added to the gradient (torch.optim.Adam).
template <class Real>
using Adam = AdamType<Real, CoupledWeightDecay>;
/// AdamW: decoupled weight decay p *= 1 - lr * weight_decay (torch.optim.AdamW).
template <class Real>
using AdamW = AdamType<Real, DecoupledWeightDecay>;

}  // namespace ddpm::optim
