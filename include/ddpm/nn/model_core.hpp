// SPDX-License-Identifier: MIT
// What every bundled model owns besides its configuration and scratch: its layers bound to one
// ParameterStore, the training flag and the batch kept for backward, in one place, so that the
// models' compiler-generated copies and moves are correct.
#pragma once

#include <algorithm>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/parameter_store.hpp"

namespace ddpm::nn {

/// A set of layers that can point themselves into a ParameterStore (step 2 of the layer contract
/// in parameter_store.hpp): a struct of layers with `bind(store)` binding each of them.
template <class Layers, class Real>
concept BindableLayers = requires(Layers& layers, ParameterStore<Real>& store) {
  layers.bind(store);
};

/// A ParameterStore and the layers whose raw pointers address its buffers, kept together: a copy
/// copies both and re-binds the copy's layers to the copy's store. This is the one place a model
/// copy re-points anything, so no model writes a copy constructor.
/// \code
///   struct Layers {
///     nn::Linear<float> fc;
///     void bind(nn::ParameterStore<float>& store) { fc.bind(store); }
///   };
///   nn::BoundLayers<float, Layers> net([](nn::ParameterStore<float>& store) {
///     return Layers{nn::Linear<float>(store, "fc", 4, 2)};
///   });
///   nn::BoundLayers<float, Layers> copy = net;   // copy.layers().fc reads copy.store()
/// \endcode
template <class Real, BindableLayers<Real> Layers>
class BoundLayers {
 public:
  /// `build(store)` registers the layers with the store and returns them; the store is then
  /// allocated (zero-filled) and the layers bound to it.
  template <class Build>
  explicit BoundLayers(Build&& build) : layers_(std::forward<Build>(build)(store_)) {
    store_.allocate();
    layers_.bind(store_);
  }

  /// Copies the store and rebinds the copied layers to the copy's parameters.
  BoundLayers(const BoundLayers& other) : store_(other.store_), layers_(other.layers_) {
    layers_.bind(store_);
  }
  /// \copydoc BoundLayers(const BoundLayers&)
  BoundLayers& operator=(const BoundLayers& other) {
    if (this != &other) {
      BoundLayers copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  // Moving a std::vector keeps its buffer when its allocator propagates on move assignment, as
  // the aligned_allocator of ParameterStore's buffers does, so moved layers still point into the
  // moved store.
  static_assert(std::allocator_traits<typename ParameterStore<Real>::Buffer::allocator_type>::
                    propagate_on_container_move_assignment::value,
                "BoundLayers' defaulted moves need the store's buffers to move with the store");
  /// Moves keep the buffers, so the moved layers stay bound.
  BoundLayers(BoundLayers&&) noexcept = default;
  /// \copydoc BoundLayers(BoundLayers&&)
  BoundLayers& operator=(BoundLayers&&) noexcept = default;
  ~BoundLayers() = default;

  /// The layers, bound to store().
  [[nodiscard]] Layers& layers() noexcept { return layers_; }
  /// \copydoc layers()
  [[nodiscard]] const Layers& layers() const noexcept { return layers_; }
  /// The parameters and gradients the layers use.
  [[nodiscard]] ParameterStore<Real>& store() noexcept { return store_; }
  /// \copydoc store()
  [[nodiscard]] const ParameterStore<Real>& store() const noexcept { return store_; }

 private:
  ParameterStore<Real> store_;  // declared first: constructed before build() registers with it
  Layers layers_;
};

/// The state every bundled model (Mlp, UNet, Classifier) shares, and the parameter and training
/// interface built on it: the layers bound to their ParameterStore, the training flag, and the
/// rows of the last forward pass that kept its activations for backward. A model derives from it
/// and keeps only plain members of its own, so its compiler-generated copies and moves are whole
/// and independent (a copy taken after a forward pass can run that pass's backward).
template <class Real, BindableLayers<Real> Layers>
class ModelCore {
 public:
  /// Forward and backward give bitwise the same results for any OpenMP thread count (each layer's
  /// test checks it), so training and sampling may let a ThreadTuner change the count.
  static constexpr bool thread_count_invariant = true;

  /// Named views of every parameter tensor and its gradient.
  [[nodiscard]] std::span<ParameterBlock<Real>> parameters() noexcept {
    return bound_.store().blocks();
  }
  /// All parameters, all gradients, as flat vectors (one buffer each, blocks back to back).
  [[nodiscard]] std::span<Real> parameter_values() noexcept { return bound_.store().values(); }
  /// \copydoc parameter_values()
  [[nodiscard]] std::span<const Real> parameter_values() const noexcept {
    return bound_.store().values();
  }
  /// \copydoc parameter_values()
  [[nodiscard]] std::span<Real> gradient_values() noexcept { return bound_.store().grads(); }
  /// \copydoc parameter_values()
  [[nodiscard]] std::span<const Real> gradient_values() const noexcept {
    return bound_.store().grads();
  }
  /// The number of parameters.
  [[nodiscard]] Index parameter_count() const noexcept { return bound_.store().size(); }
  /// Sets every gradient to zero.
  void zero_grad() noexcept { bound_.store().zero_grad(); }

  /// With training off, forward passes keep nothing for backward (and apply no dropout), and
  /// backward throws. On by default.
  void set_training(bool training) noexcept { training_ = training; }
  /// True when training (see set_training).
  [[nodiscard]] bool training() const noexcept { return training_; }

 protected:
  /// Builds the layers with `build`, which registers their parameters in a store.
  template <class Build>
  explicit ModelCore(Build&& build) : bound_(std::forward<Build>(build)) {}

  /// The layers of the derived model.
  [[nodiscard]] Layers& layers() noexcept { return bound_.layers(); }
  /// \copydoc layers()
  [[nodiscard]] const Layers& layers() const noexcept { return bound_.layers(); }

  /// Records the rows of a forward pass that kept its activations, or -1 after one that did not.
  void set_kept_batch(Index rows) noexcept { kept_batch_ = rows; }

  /// Runs body() (a backward pass run for its input gradient) and puts every parameter gradient
  /// back as it was, so vector-Jacobian products leave the optimizer's gradients alone. The copy
  /// costs O(parameters), small beside a backward pass over a batch.
  template <class Body>
  void preserving_gradients(Body&& body) {
    const std::span<const Real> grads = std::as_const(bound_.store()).grads();
    saved_gradients_.assign(grads.begin(), grads.end());
    const auto restore = [&] {
      std::copy(saved_gradients_.begin(), saved_gradients_.end(), bound_.store().grads().begin());
    };
    try {
      body();
    } catch (...) {
      restore();
      throw;
    }
    restore();
  }

  /// The rows of the last forward pass, which must have kept its activations; otherwise throws
  /// std::logic_error "ddpm: <model>::backward needs a <forward> in training mode".
  [[nodiscard]] Index kept_batch(std::string_view model, std::string_view forward) const {
    if (kept_batch_ < 0) {
      throw std::logic_error("ddpm: " + std::string(model) + "::backward needs a " +
                             std::string(forward) + " in training mode (set_training(true))");
    }
    return kept_batch_;
  }

 private:
  BoundLayers<Real, Layers> bound_;
  bool training_ = true;
  Index kept_batch_ = -1;  // rows of the last forward pass that kept its activations, -1 if none
  std::vector<Real> saved_gradients_;  // scratch of preserving_gradients()
};

}  // namespace ddpm::nn
