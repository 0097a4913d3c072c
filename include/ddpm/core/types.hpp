// SPDX-License-Identifier: MIT
// Basic types shared by every part of ddpm: batches of samples stored one row per sample.
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace ddpm {

/// Row and size index type, Eigen's signed index.
using Index = Eigen::Index;

/// A batch of samples, one row per sample, features flattened (2 for a 2D point, C*H*W for an
/// image). Row-major so that each sample is contiguous and per-sample loops touch one cache line
/// run.
template <class Real>
using Batch = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A column vector, used for per-sample scalars (losses, weights) and schedule arrays.
template <class Real>
using Vector = Eigen::Matrix<Real, Eigen::Dynamic, 1>;

/// Class label meaning "no label": the unconditional branch of classifier-free guidance.
inline constexpr int kNoLabel = -1;

}  // namespace ddpm
