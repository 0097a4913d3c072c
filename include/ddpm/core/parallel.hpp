// SPDX-License-Identifier: MIT
// One helper for the outermost batch loop: OpenMP-parallel when available, serial otherwise.
#pragma once

#include "ddpm/core/types.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ddpm::detail {

/// Runs body(i) for i in [0, n) with a static OpenMP schedule. Inside an already-parallel region it
/// runs serially, so nesting never oversubscribes. The body must not throw: validate before
/// calling.
template <class Body>
void parallel_for(Index n, Body&& body) {
#ifdef _OPENMP
  if (n > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  for (Index i = 0; i < n; ++i) body(i);
}

/// Runs body(i) for i in [0, n), handing the items to the threads one at a time as they finish
/// (OpenMP's dynamic schedule): for items of equal cost on cores of unequal speed, as on a shared
/// machine where another tenant slows one core, so the faster core is never left waiting at the
/// barrier. Serial inside a parallel region. The body must not throw.
template <class Body>
void parallel_for_dynamic(Index n, Body&& body) {
#ifdef _OPENMP
  if (n > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(dynamic, 1)
    for (Index i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  for (Index i = 0; i < n; ++i) body(i);
}

/// The calling thread's index in the current parallel region (0 outside one).
inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// Below this many elementary operations a loop runs serially: a fork/join costs a few
/// microseconds on an idle machine, and a whole scheduler time slice on a loaded one.
inline constexpr Index kMinParallelWork = 16384;

/// parallel_for for light loops: parallel only when rows * work_per_row (a rough count of
/// elementary operations per row) reaches kMinParallelWork.
template <class Body>
void parallel_for(Index n, Index work_per_row, Body&& body) {
  if (n * work_per_row < kMinParallelWork) {
    for (Index i = 0; i < n; ++i) body(i);
    return;
  }
  parallel_for(n, body);
}

/// Number of threads a parallel_for would use.
inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace ddpm::detail
