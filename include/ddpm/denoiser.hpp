// SPDX-License-Identifier: MIT
// The denoiser concepts every sampler and loss is written against, and adaptors between them.
#pragma once

#include <concepts>
#include <ranges>
#include <span>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm {

/// A network (or any function) that predicts the diffusion model's output for a batch.
///
/// Requirements:
///   1. `m.predict(x_t, t, out)` with `const Batch<Real>& x_t` (one noisy sample per row),
///      `std::span<const int> t` (one original timestep in 0..T-1 per row) and `Batch<Real>& out`,
///      which the model resizes to x_t.rows() rows and the output width (data dim, or 2x for a
///      learned variance). What the output means (epsilon, x0 or v) is set in GaussianDiffusion.
///   2. Rows are independent: row i of out depends only on row i of x_t and t[i].
///
/// Minimal model:
/// \code
///   struct Zero {
///     void predict(const ddpm::Batch<float>& x, std::span<const int>, ddpm::Batch<float>& out) {
///       out.setZero(x.rows(), x.cols());
///     }
///   };
/// \endcode
/// See examples/custom_denoiser for a trainable network of one's own.
template <class M, class Real>
concept Denoiser = requires(M& m, const Batch<Real>& x_t, std::span<const int> t,
                            Batch<Real>& out) {
  m.predict(x_t, t, out);
};

/// A denoiser that also takes one class label per row (kNoLabel = -1 means unconditional):
///   `m.predict(x_t, t, labels, out)` with `std::span<const int> labels`.
template <class M, class Real>
concept ConditionalDenoiser = requires(M& m, const Batch<Real>& x_t, std::span<const int> t,
                                       std::span<const int> labels, Batch<Real>& out) {
  m.predict(x_t, t, labels, out);
};

/// A Denoiser that can be trained by gradient descent:
///   1. `m.backward(grad_out)`: given d loss / d out of the last predict(), ADDS the gradients of
///      the parameters to their gradient buffers;
///   2. `m.parameters()`: a range of ParameterBlock<Real> viewing every parameter and its gradient;
///   3. `m.zero_grad()`: sets every gradient buffer to zero.
template <class M, class Real>
concept TrainableDenoiser = Denoiser<M, Real> && requires(M& m, const Batch<Real>& grad_out) {
  m.backward(grad_out);
  m.zero_grad();
  { m.parameters() } -> std::ranges::range;
  requires std::convertible_to < std::ranges::range_reference_t<decltype(m.parameters())>,
  const ParameterBlock<Real>& > ;
};

namespace detail {

/// Compile-time check with a plain message at the entry points taking a denoiser, so a bad type
/// reports what is missing instead of a wall of template errors.
template <class M, class Real>
constexpr void check_denoiser() {
  static_assert(Denoiser<M, Real>,
                "the model type does not satisfy ddpm::Denoiser: it needs a member "
                "`void predict(const ddpm::Batch<Real>& x_t, std::span<const int> t, "
                "ddpm::Batch<Real>& out)` (see the Denoiser docs in ddpm/denoiser.hpp and "
                "examples/custom_denoiser)");
}

}  // namespace detail

/// Adaptor: a ConditionalDenoiser with its labels bound, usable wherever a Denoiser is expected.
/// The labels span must have one entry per row of every batch passed to predict() and must
/// outlive the adaptor.
template <class Real, ConditionalDenoiser<Real> M>
class WithLabels {
 public:
  WithLabels(M& model, std::span<const int> labels) : model_(&model), labels_(labels) {}

  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) {
    detail::require(
        static_cast<Index>(labels_.size()) == x_t.rows(), "labels.size()", labels_.size(),
        [&] { return "one label per row of x_t (" + std::to_string(x_t.rows()) + ")"; });
    model_->predict(x_t, t, labels_, out);
  }

 private:
  M* model_;
  std::span<const int> labels_;
};

}  // namespace ddpm
