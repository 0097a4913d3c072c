// SPDX-License-Identifier: MIT
// Row loops of the nn layers: parallel over rows for large batches, serial when the work is too
// small to pay for an OpenMP fork/join.
#pragma once

#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::nn::detail {

/// Below this many element operations a loop runs serially: a fork/join costs a few microseconds
/// on an idle machine, and a scheduler time slice on a loaded one.
inline constexpr Index kMinParallelWork = 16384;

/// body(r) for r in [0, rows), in parallel when rows * work_per_row >= kMinParallelWork. The body
/// must not throw.
template <class Body>
void parallel_rows(Index rows, Index work_per_row, Body&& body) {
  if (rows * work_per_row < kMinParallelWork) {
    for (Index r = 0; r < rows; ++r) body(r);
    return;
  }
  ddpm::detail::parallel_for(rows, body);
}

}  // namespace ddpm::nn::detail
