// SPDX-License-Identifier: MIT
// Reproducible parameter initialization: every value is a pure function of (seed, layer, tensor,
// element), drawn from ddpm's counter-based generator.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::nn {

/// Fills `out` with uniform(-bound, bound) draws number 0..n-1 of (stream::init, layer, tensor).
template <class Real>
void fill_uniform(std::span<Real> out, double bound, const CounterRng& rng, std::uint32_t layer,
                  std::uint32_t tensor) {
  assert(out.size() <= std::numeric_limits<std::uint32_t>::max());
  for (std::size_t k = 0; k < out.size(); ++k) {
    const double u = rng.uniform(stream::init, layer, tensor, static_cast<std::uint32_t>(k));
    out[k] = static_cast<Real>((2.0 * u - 1.0) * bound);
  }
}

/// Fills `out` with N(0, stddev^2) draws number 0..n-1 of (stream::init, layer, tensor).
template <class Real>
void fill_normal(std::span<Real> out, double stddev, const CounterRng& rng, std::uint32_t layer,
                 std::uint32_t tensor) {
  rng.normals(stream::init, layer, tensor, out.data(), static_cast<Index>(out.size()));
  for (Real& value : out) value = static_cast<Real>(value * stddev);
}

}  // namespace ddpm::nn
