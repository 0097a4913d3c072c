// SPDX-License-Identifier: MIT
// Inverted dropout with masks drawn from the counter-based generator, so a training run is
// reproducible and independent of the thread count.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

/// y = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) per element while training; y = x otherwise
/// (Srivastava et al. 2014, in the "inverted" form that needs no rescaling at inference).
///
/// Element e = row * cols + col of a call keeps its value when 32-bit word e % 4 of
/// rng.bits(stream::dropout, draw, layer, e / 4) is at least round(p * 2^32): a pure function of
/// (seed, layer, draw, e), whatever the threads or the row stride. The caller advances `draw`
/// once per training step (or per forward call) so that every step gets a new mask.
///
/// \code
///   nn::Dropout<float> drop(0.1);
///   drop.forward(h, h, rng, /*layer=*/3, /*draw=*/step, /*training=*/true);  // in place
///   drop.backward(dh, dh);                                                   // same mask
/// \endcode
template <class Real>
class Dropout {
 public:
  Dropout() = default;

  /// Drops each element with probability p, 0 <= p < 1.
  explicit Dropout(double p) : p_(p) {
    ddpm::detail::require(p >= 0.0 && p < 1.0, "dropout", p, "a probability 0 <= p < 1");
  }

  /// The probability of zeroing an element while training.
  [[nodiscard]] double p() const noexcept { return p_; }

  /// y = x * mask / (1 - p) when training and p > 0, else y = x. y has x's shape and may be x.
  /// The mask is kept for backward().
  void forward(Eigen::Ref<const Batch<Real>> x, Eigen::Ref<Batch<Real>> y, const CounterRng& rng,
               std::uint32_t layer, std::uint32_t draw, bool training) {
    ddpm::detail::require_shape(y.rows() == x.rows() && y.cols() == x.cols(), "y", y.rows(),
                                y.cols(), "the shape of x");
    rows_ = x.rows();
    cols_ = x.cols();
    masked_ = training && p_ > 0.0;
    if (!masked_) {
      if (y.data() != x.data()) y = x;
      return;
    }
    // Keep when a uniform 32-bit word is >= p * 2^32: probability 1 - p to within 2^-32.
    const auto threshold =
        static_cast<std::uint32_t>(std::min(std::llround(p_ * 4294967296.0), 4294967295LL));
    const auto scale = static_cast<Real>(1.0 / (1.0 - p_));
    const Index cols = cols_;
    const Index total = rows_ * cols;
    Real* mask = mask_.resize(rows_, cols).data();
    // Chunks of the flattened matrix rather than rows: rows are often shorter than the batches of
    // Philox blocks that make the generation fast. A chunk's mask, then its part of y.
    const Index chunks = (total + kChunk - 1) / kChunk;
    const CounterRng generator = rng;  // a local copy, so the compiler knows nothing aliases it
    ddpm::detail::parallel_for(chunks, 16 * kChunk, [&, threshold, scale](Index chunk) {
      const Index begin = chunk * kChunk;
      const Index end = std::min(total, begin + kChunk);
      for (Index first = begin; first < end; first += 4 * kBlocks) {
        // Independent blocks in a fixed-length loop, which the compiler vectorizes.
        std::array<std::uint32_t, 4 * kBlocks> words;
        const auto first_block = static_cast<std::uint32_t>(first / 4);
        for (std::uint32_t b = 0; b < kBlocks; ++b) {
          const Philox4x32::Counter block =
              generator.bits(stream::dropout, draw, layer, first_block + b);
          for (std::uint32_t w = 0; w < 4; ++w) words[4 * b + w] = block[w];
        }
        // Branch-free: a branch on a random bit mispredicts a fraction p of the time.
        const Index count = std::min<Index>(end - first, 4 * kBlocks);
        for (Index i = 0; i < count; ++i) {
          mask[first + i] =
              scale * static_cast<Real>(words[static_cast<std::size_t>(i)] >= threshold);
        }
      }
      for (Index r = begin / cols; r * cols < end; ++r) {
        const Index lo = std::max(begin, r * cols);
        const Index n = std::min(end, (r + 1) * cols) - lo;
        detail::ArrayMap<Real>(y.data() + r * y.outerStride() + (lo - r * cols), n) =
            detail::ConstArrayMap<Real>(x.data() + r * x.outerStride() + (lo - r * cols), n) *
            detail::ConstArrayMap<Real>(mask + lo, n);
      }
    });
  }

  /// dx = dy * mask / (1 - p) with the mask of the last forward() (dx = dy if it dropped
  /// nothing). dx has dy's shape and may be dy.
  void backward(Eigen::Ref<const Batch<Real>> dy, Eigen::Ref<Batch<Real>> dx) {
    ddpm::detail::require_shape(dx.rows() == dy.rows() && dx.cols() == dy.cols(), "dx", dx.rows(),
                                dx.cols(), "the shape of dy");
    if (!masked_) {
      if (dx.data() != dy.data()) dx = dy;
      return;
    }
    ddpm::detail::require_shape(dy.rows() == rows_ && dy.cols() == cols_, "dy", dy.rows(),
                                dy.cols(), "the shape of the last forward's x");
    const Index cols = cols_;
    const Real* mask = mask_.data();
    ddpm::detail::parallel_for(rows_, cols, [&](Index r) {
      detail::ArrayMap<Real>(dx.data() + r * dx.outerStride(), cols) =
          detail::ConstArrayMap<Real>(dy.data() + r * dy.outerStride(), cols) *
          detail::ConstArrayMap<Real>(mask + r * cols, cols);
    });
  }

 private:
  static constexpr std::uint32_t kBlocks =
      16;                                // Philox blocks (4 elements each) generated together
  static constexpr Index kChunk = 4096;  // elements per parallel task, a multiple of 4 * kBlocks

  double p_ = 0.0;
  Workspace<Real> mask_;  // 0 or 1 / (1 - p) per element of the last masked forward
  Index rows_ = 0;
  Index cols_ = 0;
  bool masked_ = false;
};

}  // namespace ddpm::nn
