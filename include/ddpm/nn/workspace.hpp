// SPDX-License-Identifier: MIT
// Reusable scratch matrices for layers: sized on first use, grown only when a larger batch arrives.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <vector>

#include "ddpm/core/types.hpp"

namespace ddpm::nn {

/// A view of a row-major matrix with unit inner stride and any row stride (a Batch, a Map, or a
/// column block of either). Internal kernels use it so one code path serves all three.
template <class Real>
using StridedMap = Eigen::Map<Batch<Real>, Eigen::Unaligned, Eigen::OuterStride<>>;
/// The read-only StridedMap.
template <class Real>
using ConstStridedMap = Eigen::Map<const Batch<Real>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// A rows x cols scratch matrix whose storage only ever grows, so alternating batch sizes (a
/// training batch and a smaller last batch, say) do not reallocate. Contents are unspecified after
/// a resize that grows the storage.
template <class Real>
class Workspace {
 public:
  /// Views the workspace as rows x cols, allocating only if the storage is too small.
  Eigen::Map<Batch<Real>> resize(Index rows, Index cols) {
    const auto needed = static_cast<std::size_t>(rows * cols);
    if (needed > buffer_.size()) buffer_.resize(needed);
    rows_ = rows;
    cols_ = cols;
    return view();
  }

  /// The current rows x cols view.
  [[nodiscard]] Eigen::Map<Batch<Real>> view() noexcept {
    return Eigen::Map<Batch<Real>>(buffer_.data(), rows_, cols_);
  }
  /// \copydoc view()
  [[nodiscard]] Eigen::Map<const Batch<Real>> view() const noexcept {
    return Eigen::Map<const Batch<Real>>(buffer_.data(), rows_, cols_);
  }

  /// Rows of the current shape.
  [[nodiscard]] Index rows() const noexcept { return rows_; }
  /// Columns of the current shape.
  [[nodiscard]] Index cols() const noexcept { return cols_; }
  /// The first element (row-major).
  [[nodiscard]] Real* data() noexcept { return buffer_.data(); }
  /// \copydoc data()
  [[nodiscard]] const Real* data() const noexcept { return buffer_.data(); }
  /// Elements the storage holds without reallocating.
  [[nodiscard]] std::size_t capacity() const noexcept { return buffer_.size(); }

 private:
  // Eigen's allocator aligns to the widest SIMD register, so row 0 starts on a vector boundary.
  std::vector<Real, Eigen::aligned_allocator<Real>> buffer_;
  Index rows_ = 0;
  Index cols_ = 0;
};

}  // namespace ddpm::nn
