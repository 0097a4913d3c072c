// SPDX-License-Identifier: MIT
// One contiguous parameter buffer and one gradient buffer of the same layout, shared by all layers
// of a model, with the named ParameterBlock views that optimizers, EMA and checkpoints use.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::nn {

/// A row vector, the shape of a bias (added to every row of a row-major batch).
template <class Real>
using RowVector = Eigen::Matrix<Real, 1, Eigen::Dynamic>;

/// Owns every parameter of a model in one buffer, and the gradients in a second buffer with the
/// same layout, so an optimizer can treat the whole model as one flat vector.
///
/// Layer contract (Linear, LabelEmbedding, Conv2d, GroupNorm, SpatialAttention, ResBlock and
/// TimeEmbedding all follow it):
///  1. The layer's constructor registers its tensors with add() (name, rows, cols), before
///     allocate(); it keeps the returned Slot.
///  2. After allocate(), bind(store) makes the layer point into the buffers. A model keeps its
///     layers and their store together in a BoundLayers (model_core.hpp), whose copy re-binds the
///     copy's layers to the copy's buffers; nothing else re-points a layer.
///  3. initialize(rng, index) fills the parameters reproducibly from a CounterRng.
///  4. forward() keeps its own intermediates (pre-activations, statistics) in its own Workspaces;
///     backward() receives the forward input again, *accumulates* (+=) parameter gradients and
///     writes (or adds to) the input gradient.
///  5. After the first call at a given batch size nothing allocates.
///
/// Example:
/// \code
///   nn::ParameterStore<float> store;
///   nn::Linear<float> layer(store, "layer0", 66, 256, nn::Activation::silu);
///   store.allocate();
///   layer.bind(store);
///   layer.initialize(ddpm::CounterRng(42), 0);
/// \endcode
template <class Real>
class ParameterStore {
 public:
  /// Where one tensor lives: block index, element offset into the buffers, and its shape.
  struct Slot {
    std::size_t block = 0;  ///< index of its ParameterBlock in blocks()
    Index offset = 0;       ///< element offset into values() and grads()
    Index rows = 0;         ///< the tensor's rows
    Index cols = 0;         ///< the tensor's columns
  };

  /// The type of the parameter and gradient buffers.
  using Buffer = std::vector<Real, Eigen::aligned_allocator<Real>>;

  ParameterStore() = default;
  /// Copies values, gradients and names, and points the copy's blocks into its own buffers.
  ParameterStore(const ParameterStore& other)
      : values_(other.values_),
        grads_(other.grads_),
        names_(other.names_),
        slots_(other.slots_),
        size_(other.size_),
        allocated_(other.allocated_) {
    rebuild_blocks();
  }
  /// \copydoc ParameterStore(const ParameterStore&)
  ParameterStore& operator=(const ParameterStore& other) {
    if (this != &other) {
      values_ = other.values_;
      grads_ = other.grads_;
      names_ = other.names_;
      slots_ = other.slots_;
      size_ = other.size_;
      allocated_ = other.allocated_;
      rebuild_blocks();
    }
    return *this;
  }
  /// Moving a std::vector keeps its buffer, so the views of blocks() stay valid.
  ParameterStore(ParameterStore&&) noexcept = default;
  /// \copydoc ParameterStore(ParameterStore&&)
  ParameterStore& operator=(ParameterStore&&) noexcept = default;
  ~ParameterStore() = default;

  /// Registers a rows x cols tensor (row-major) called `name`. Only before allocate().
  Slot add(std::string name, Index rows, Index cols) {
    if (allocated_) throw std::logic_error("ddpm: nn::ParameterStore::add after allocate()");
    ddpm::detail::require(rows >= 0 && cols >= 0, "parameter shape",
                          ddpm::detail::to_text(rows) + "x" + ddpm::detail::to_text(cols),
                          "non-negative rows and columns");
    ddpm::detail::require(std::find(names_.begin(), names_.end(), name) == names_.end(),
                          "parameter name", name, "a name not registered before");
    const Slot slot{slots_.size(), size_, rows, cols};
    slots_.push_back(slot);
    names_.push_back(std::move(name));
    size_ += rows * cols;
    return slot;
  }

  /// Allocates both buffers (zero-filled) and the block views. Call once, after every add().
  void allocate() {
    if (allocated_) throw std::logic_error("ddpm: nn::ParameterStore::allocate called twice");
    values_.assign(static_cast<std::size_t>(size_), Real(0));
    grads_.assign(static_cast<std::size_t>(size_), Real(0));
    allocated_ = true;
    rebuild_blocks();
  }

  /// True after allocate().
  [[nodiscard]] bool allocated() const noexcept { return allocated_; }

  /// Total number of parameters.
  [[nodiscard]] Index size() const noexcept { return size_; }

  /// Start of the parameters (or gradients) of one slot; valid after allocate().
  [[nodiscard]] Real* value_data(const Slot& slot) noexcept { return values_.data() + slot.offset; }
  /// The start of a slot's gradients; valid after allocate().
  [[nodiscard]] Real* grad_data(const Slot& slot) noexcept { return grads_.data() + slot.offset; }

  /// The named views, in registration order; together they cover the buffers exactly.
  [[nodiscard]] std::span<ParameterBlock<Real>> blocks() noexcept { return blocks_; }
  /// \copydoc blocks()
  [[nodiscard]] std::span<const ParameterBlock<Real>> blocks() const noexcept { return blocks_; }
  /// The shapes of the blocks, same order as blocks().
  [[nodiscard]] std::span<const Slot> slots() const noexcept { return slots_; }

  /// All parameters (all gradients) as one flat vector.
  [[nodiscard]] std::span<Real> values() noexcept { return values_; }
  /// \copydoc values()
  [[nodiscard]] std::span<const Real> values() const noexcept { return values_; }
  /// \copydoc values()
  [[nodiscard]] std::span<Real> grads() noexcept { return grads_; }
  /// \copydoc values()
  [[nodiscard]] std::span<const Real> grads() const noexcept { return grads_; }

  /// Sets every gradient to zero.
  void zero_grad() noexcept { std::fill(grads_.begin(), grads_.end(), Real(0)); }

 private:
  void rebuild_blocks() {
    blocks_.clear();
    if (!allocated_) return;
    blocks_.reserve(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      const auto offset = static_cast<std::size_t>(slots_[i].offset);
      const auto count = static_cast<std::size_t>(slots_[i].rows * slots_[i].cols);
      blocks_.push_back(ParameterBlock<Real>{names_[i],
                                             std::span<Real>(values_.data() + offset, count),
                                             std::span<Real>(grads_.data() + offset, count)});
    }
  }

  // Aligned like Eigen's own buffers: vectorized reductions (bias gradients, norms) peel
  // differently at different alignments, and a resumed run in a new process must reproduce the
  // uninterrupted one bit for bit.
  Buffer values_;
  Buffer grads_;
  std::vector<std::string> names_;
  std::vector<Slot> slots_;
  std::vector<ParameterBlock<Real>> blocks_;
  Index size_ = 0;
  bool allocated_ = false;
};

}  // namespace ddpm::nn
