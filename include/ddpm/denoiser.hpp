// SPDX-License-Identifier: MIT
// Every concept a user type can model, documented together: denoisers (plain, conditional,
// trainable, classifier-guided, self-encoding), the guidance classifier and the trainer's data
// sources; the compile-time checks that name a missing member; and the adaptors between the
// concepts.
#pragma once

#include <concepts>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm {

// ---- the concepts ------------------------------------------------------------------------------
// Each one: a brief, numbered requirements, a minimal model. examples/custom_denoiser builds a
// complete trainable network from scratch against them.

/// A network (or any function) that predicts the diffusion model's output for a batch.
///
/// Requirements:
///   1. `m.predict(x_t, t, out)` with `const Batch<Real>& x_t` (one noisy sample per row),
///      `std::span<const int> t` (one original timestep in 0..T-1 per row) and `Batch<Real>& out`,
///      which the model resizes to x_t.rows() rows and the output width (data dim, or 2x for a
///      learned variance). What the output means (epsilon, x0 or v) is set in GaussianDiffusion.
///   2. Rows are independent: row i of out depends only on row i of x_t and t[i].
///   3. Optional: `m.training()` and `m.set_training(bool)`. Every library entry point that
///      evaluates a model (samplers, DDIM inversion, the variational bound) switches such a model
///      to inference for the call and restores its mode afterwards (dropout off, no activations).
///
/// Minimal model:
/// \code
///   struct Zero {
///     void predict(const ddpm::Batch<float>& x, std::span<const int>, ddpm::Batch<float>& out) {
///       out.setZero(x.rows(), x.cols());
///     }
///   };
/// \endcode
template <class M, class Real>
concept Denoiser = requires(M& m, const Batch<Real>& x_t, std::span<const int> t,
                            Batch<Real>& out) {
  m.predict(x_t, t, out);
};

/// A Denoiser that also takes a real-valued timestep, for noise levels between the schedule's
/// steps (Karras and exponential grids, the probability-flow ODE).
///
/// Requirements (besides Denoiser's):
///   1. `m.predict(x_t, t, out)` with `std::span<const double> t`: t in [0, T-1], where a
///      fractional t is the noise level s with log s linear in t between the two neighbouring
///      steps (NoiseSchedule::level_at_timestep). At an integral t it equals the int overload.
///
/// A model without it is fed the nearest integer timestep of a continuous level (as diffusers'
/// Karras schedules do). The bundled networks embed a real t directly.
template <class M, class Real>
concept ContinuousTimeDenoiser = Denoiser<M, Real> &&
    requires(M& m, const Batch<Real>& x_t, std::span<const double> t, Batch<Real>& out) {
  m.predict(x_t, t, out);
};

/// A denoiser that also takes one class label per row.
///
/// Requirements:
///   1. `m.predict(x_t, t, labels, out)` with `std::span<const int> labels`, one per row of x_t;
///      kNoLabel (-1) asks for the unconditional prediction (classifier-free guidance).
///   2. As for Denoiser, rows are independent.
///
/// Minimal model:
/// \code
///   struct ShiftByLabel {
///     void predict(const ddpm::Batch<float>& x, std::span<const int>, std::span<const int> y,
///                  ddpm::Batch<float>& out) {
///       out = x;
///       for (ddpm::Index i = 0; i < x.rows(); ++i) out.row(i).array() += y[i] < 0 ? 0.f : 1.f;
///     }
///   };
/// \endcode
/// Bind labels with WithLabels to use one where a Denoiser is expected.
template <class M, class Real>
concept ConditionalDenoiser = requires(M& m, const Batch<Real>& x_t, std::span<const int> t,
                                       std::span<const int> labels, Batch<Real>& out) {
  m.predict(x_t, t, labels, out);
};

/// A Denoiser that can be trained by gradient descent.
///
/// Requirements (besides Denoiser's):
///   1. `m.backward(grad_out)`: given d loss / d out of the last predict(), ADDS the gradients of
///      the parameters to their gradient buffers;
///   2. `m.zero_grad()`: sets every gradient buffer to zero;
///   3. `m.parameters()`: a range of ParameterBlock<Real> viewing every parameter and its
///      gradient (the optimizer, clipping, EMA and checkpoints go through it);
///   4. optional: `m.set_dropout_source(rng, step)` to draw dropout masks from the run's seed, so
///      a resumed run is exact.
///
/// Minimal model: a linear map, see examples/custom_denoiser/main.cpp.
template <class M, class Real>
concept TrainableDenoiser = Denoiser<M, Real> && requires(M& m, const Batch<Real>& grad_out) {
  m.backward(grad_out);
  m.zero_grad();
  { m.parameters() } -> std::ranges::range;
  requires(std::convertible_to<std::ranges::range_reference_t<decltype(m.parameters())>,
                               const ParameterBlock<Real>&>);
};

/// A classifier of noisy samples, for classifier guidance (Dhariwal & Nichol 2021).
///
/// Requirements:
///   1. `c.log_prob_gradient(x_t, t, labels, grad)` resizes grad to x_t's shape and writes
///      grad.row(i) = d log p(labels[i] | x_t.row(i), t[i]) / d x_t.row(i);
///   2. optional: training()/set_training(bool), as for Denoiser.
///
/// Minimal model (a Gaussian class-conditional density with unit variance around +-1):
/// \code
///   struct TwoMeans {
///     void log_prob_gradient(const ddpm::Batch<double>& x, std::span<const int>,
///                            std::span<const int> y, ddpm::Batch<double>& grad) {
///       grad.resize(x.rows(), x.cols());
///       for (ddpm::Index i = 0; i < x.rows(); ++i)
///         grad.row(i) = (y[i] == 0 ? -1.0 : 1.0) - x.row(i).array();  // not normalized over y
///     }
///   };
/// \endcode
template <class C, class Real>
concept GuidanceClassifier = requires(C& c, const Batch<Real>& x_t, std::span<const int> t,
                                      std::span<const int> labels, Batch<Real>& grad) {
  c.log_prob_gradient(x_t, t, labels, grad);
};

/// A Denoiser that carries a guidance gradient the samplers apply in their own form
/// (ClassifierGuidance is the model): the ancestral sampler moves its mean by Sigma g, DDIM
/// moves epsilon by -sqrt(1 - ab_t) g (REFERENCE.md, "Guidance").
///
/// Requirements (besides Denoiser's):
///   1. `m.guidance_gradient(x_t, t, grad)` resizes grad to x_t's shape and writes
///      g = s grad_x log p(y | x_t), the guidance scale s included.
template <class M, class Real>
concept GuidedDenoiser = Denoiser<M, Real> &&
    requires(M& m, const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& grad) {
  m.guidance_gradient(x_t, t, grad);
};

/// A TrainableDenoiser that encodes each clean training batch itself: Luo & Hu's point-cloud
/// model draws a shape code z ~ q(z | x_0) from an encoder before denoising with it.
///
/// Requirements (besides TrainableDenoiser's):
///   1. `m.encode_clean(x_0, rng, step)`: called by the Trainer with the clean batch before
///      predict(); any randomness comes from `rng` at `step` (stream::latent), so a resumed run
///      is exact;
///   2. `m.auxiliary_loss()`: a loss term of the model's own for the last encode_clean (e.g. the
///      KL of its code posterior), whose gradient its backward() adds; the Trainer reports it
///      with the step's loss.
template <class M, class Real>
concept EncodingDenoiser = requires(M& m, const Batch<Real>& x_0, const CounterRng& rng,
                                    std::uint32_t step) {
  m.encode_clean(x_0, rng, step);
  { m.auxiliary_loss() } -> std::convertible_to<double>;
};

/// The Trainer's data source: `data(step, n, out)` fills `out` with n rows (one sample each) for
/// training step `step`. It must be a pure function of its arguments for runs to resume exactly.
///
/// Minimal model:
/// \code
///   auto data = [](std::int64_t step, ddpm::Index n, ddpm::Batch<float>& out) {
///     out = ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::moons, n, 7, step * n);
///   };
/// \endcode
template <class D, class Real>
concept DataSource = requires(D& d, std::int64_t step, Index n, Batch<Real>& out) {
  d(step, n, out);
};

/// A labeled data source: `data(step, n, out, labels)` also fills `labels` (a std::vector<int>)
/// with one class label per row; the model must then be a ConditionalDenoiser.
template <class D, class Real>
concept LabeledDataSource = requires(D& d, std::int64_t step, Index n, Batch<Real>& out,
                                     std::vector<int>& labels) {
  d(step, n, out, labels);
};

namespace detail {

// Compile-time checks with plain messages at the entry points, one per requirement, so a bad
// type reports the one member it lacks instead of a wall of template errors.

template <class M, class Real>
constexpr void check_denoiser() {
  static_assert(Denoiser<M, Real>,
                "the model type does not satisfy ddpm::Denoiser: it needs a member "
                "`void predict(const ddpm::Batch<Real>& x_t, std::span<const int> t, "
                "ddpm::Batch<Real>& out)` (see the Denoiser docs in ddpm/denoiser.hpp and "
                "examples/custom_denoiser)");
}

template <class M, class Real>
constexpr void check_trainable_denoiser() {
  check_denoiser<M, Real>();
  constexpr bool has_backward = requires(M & m, const Batch<Real>& g) { m.backward(g); };
  constexpr bool has_zero_grad = requires(M & m) { m.zero_grad(); };
  constexpr bool has_parameters = requires(M & m) {
    { m.parameters() } -> std::ranges::range;
  };
  static_assert(has_backward,
                "the model type does not satisfy ddpm::TrainableDenoiser: it needs a member "
                "`void backward(const ddpm::Batch<Real>& grad_out)` that adds the parameter "
                "gradients of the last predict() (see ddpm/denoiser.hpp)");
  static_assert(has_zero_grad,
                "the model type does not satisfy ddpm::TrainableDenoiser: it needs a member "
                "`void zero_grad()` that zeroes every gradient buffer (see ddpm/denoiser.hpp)");
  static_assert(has_parameters,
                "the model type does not satisfy ddpm::TrainableDenoiser: it needs a member "
                "`parameters()` returning a range of ddpm::ParameterBlock<Real> (see "
                "ddpm/denoiser.hpp)");
  static_assert(!(has_backward && has_zero_grad && has_parameters) || TrainableDenoiser<M, Real>,
                "the model type does not satisfy ddpm::TrainableDenoiser: parameters() must yield "
                "elements convertible to const ddpm::ParameterBlock<Real>&");
}

/// Whether a model has the optional training switch of Denoiser requirement 3.
template <class M>
concept HasTrainingSwitch = requires(M& m) {
  { m.training() } -> std::convertible_to<bool>;
  m.set_training(false);
};

/// Switches a model that has training()/set_training() to inference for a scope, then back.
/// Every entry point that evaluates a model holds one.
template <class M>
class InferenceMode {
 public:
  explicit InferenceMode(M& model) : model_(model) {
    if constexpr (HasTrainingSwitch<M>) {
      was_training_ = model_.training();
      model_.set_training(false);
    }
  }
  ~InferenceMode() {
    if constexpr (HasTrainingSwitch<M>) model_.set_training(was_training_);
  }
  InferenceMode(const InferenceMode&) = delete;
  InferenceMode& operator=(const InferenceMode&) = delete;

 private:
  M& model_;
  bool was_training_ = false;
};

/// The mode of an adaptor's wrapped object: training if it has a switch and is training.
template <class M>
bool training_of(const M& model) {
  if constexpr (requires { model.training(); }) {
    return model.training();
  } else {
    return false;
  }
}
/// Forwards an adaptor's set_training to a wrapped object that has the switch.
template <class M>
void set_training_of(M& model, bool on) {
  if constexpr (HasTrainingSwitch<M>) model.set_training(on);
}

}  // namespace detail

// ---- adaptors ----------------------------------------------------------------------------------

/// Adaptor: a ConditionalDenoiser with its labels bound, usable wherever a Denoiser is expected.
/// The labels span must have one entry per row of every batch passed to predict() and must
/// outlive the adaptor. It forwards the training switch, so the library's inference guards
/// reach the wrapped model.
template <class Real, ConditionalDenoiser<Real> M>
class WithLabels {
 public:
  /// Binds `labels` (not copied: it must outlive the adaptor) to `model`.
  WithLabels(M& model, std::span<const int> labels) : model_(&model), labels_(labels) {}

  /// The model's prediction with the bound labels.
  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) {
    predict_at(x_t, t, out);
  }
  /// Real-valued timesteps, when the model takes them (ContinuousTimeDenoiser).
  void predict(const Batch<Real>& x_t, std::span<const double> t, Batch<Real>& out) requires
      requires(M& m, std::span<const double> tt, Batch<Real>& o) {
    m.predict(x_t, tt, std::span<const int>(), o);
  }
  { predict_at(x_t, t, out); }

  /// The wrapped model's training mode (false when it has no switch).
  [[nodiscard]] bool training() const { return detail::training_of(*model_); }
  /// Sets the wrapped model's training mode, if it has the switch.
  void set_training(bool on) { detail::set_training_of(*model_, on); }

 private:
  template <class Time>
  void predict_at(const Batch<Real>& x_t, std::span<const Time> t, Batch<Real>& out) {
    detail::require(
        static_cast<Index>(labels_.size()) == x_t.rows(), "labels.size()", labels_.size(),
        [&] { return "one label per row of x_t (" + std::to_string(x_t.rows()) + ")"; });
    model_->predict(x_t, t, labels_, out);
  }

  M* model_;
  std::span<const int> labels_;
};

}  // namespace ddpm
