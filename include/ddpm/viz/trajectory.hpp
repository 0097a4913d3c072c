// SPDX-License-Identifier: MIT
// The reverse process of the first few samples at evenly spaced points, recorded from a sampler's
// progress callback: a picture of noise turning into data (rows: samples, columns: time).
#pragma once

#include <algorithm>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/samplers/common.hpp"

namespace ddpm::viz {

/// A sampler progress callback that keeps the first `rows` samples (rows 0..rows-1 of the batch)
/// at `frames` evenly spaced points of the reverse process: frame k is the batch after step
/// max(1, (k + 1) * total / frames), so the last frame is the finished samples. Sample i at frame k
/// is row i * frames + k of frames(), the order io::tile_images with `columns = frames` draws as
/// one sample per line. Rows of a batch smaller than `rows` stay zero.
///
///   viz::TrajectoryRecorder<float> trajectory(8, dim, 10);
///   sampler.sample(model, n, dim, rng, 0, std::ref(trajectory));
///   io::write_png("trajectory.png", io::tile_images(trajectory.frames(), 1, 28, 28,
///                                                   {.columns = 10}));
template <class Real>
class TrajectoryRecorder {
 public:
  /// Records `rows` samples of `dim` features at `frames` points of the reverse process.
  TrajectoryRecorder(Index rows, Index dim, int frames = 10)
      : rows_(rows), frames_(frames), recorded_(Batch<Real>::Zero(rows * frames, dim)) {
    ddpm::detail::require(rows >= 1, "rows", rows, "a number of samples to record >= 1");
    ddpm::detail::require(dim >= 1, "dim", dim, "a data dimension >= 1");
    ddpm::detail::require(frames >= 1, "frames", frames, "a number of frames >= 1");
  }

  /// Records p.x when it reaches the next frame; pass by std::ref to a sampler.
  void operator()(const SamplerProgress<Real>& p) {
    ddpm::detail::require_shape(p.x.cols() == recorded_.cols(), "progress.x", p.x.rows(),
                                p.x.cols(), [&] {
                                  return "the recorder's dimension (" +
                                         ddpm::detail::to_text(recorded_.cols()) + " columns)";
                                });
    const Index rows = std::min(rows_, p.x.rows());
    for (int k = 0; k < frames_; ++k) {
      if (p.done != std::max(1, (k + 1) * p.total / frames_)) continue;
      for (Index i = 0; i < rows; ++i) recorded_.row(i * frames_ + k) = p.x.row(i);
    }
  }

  /// The recorded samples, (rows * frames) x dim: row i * frames + k is sample i at frame k.
  [[nodiscard]] const Batch<Real>& frames() const noexcept { return recorded_; }
  /// The number of frames per sample.
  [[nodiscard]] int frame_count() const noexcept { return frames_; }

 private:
  Index rows_;
  int frames_;
  Batch<Real> recorded_;
};

}  // namespace ddpm::viz
