// SPDX-License-Identifier: MIT
// Sums of floating-point vectors that are bitwise the same in any order of their terms: each term
// is rounded once to a 64-bit fixed-point number on a scale shared by all terms, and integer
// addition is associative. This is what makes data-parallel training independent of the number
// of processes: the MPI standard fixes no reduction order for floating point, so the gradient is
// reduced as integers (Communicator::all_reduce_sum) and converted back once.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "ddpm/core/error.hpp"

namespace ddpm {

/// The scale of an exact sum of up to `terms` values whose magnitudes are at most `max_abs`:
/// value v becomes round(v 2^shift), and shift is the largest for which `terms` such integers
/// cannot overflow (each is below 2^(62 - ceil(log2 terms)), so their sum is below 2^62).
/// Relative to max_abs the rounding error of a term is below 2^-(62 - ceil(log2 terms)), about
/// 2^-58 for 16 terms: a float term within 2^-34 of the largest keeps all of its bits.
struct FixedPointScale {
  int shift = 0;  ///< v -> round(v * 2^shift)

  /// The scale for `terms` terms of magnitude <= max_abs (finite, >= 0); terms >= 1.
  static FixedPointScale for_terms(double max_abs, std::int64_t terms) {
    detail::require(std::isfinite(max_abs) && max_abs >= 0.0, "max_abs", max_abs,
                    "a finite magnitude >= 0");
    detail::require(terms >= 1, "terms", terms, ">= 1");
    if (max_abs == 0.0) return {0};
    int exponent = 0;  // max_abs = m 2^exponent with m in [0.5, 1): max_abs < 2^exponent
    std::frexp(max_abs, &exponent);
    const int headroom = std::bit_width(static_cast<std::uint64_t>(terms - 1));  // ceil(log2)
    return {62 - headroom - exponent};
  }

  /// round(value 2^shift), ties away from zero (exact in double: a float or double times a power
  /// of two, then one rounding that does not depend on the floating-point environment).
  [[nodiscard]] std::int64_t to_fixed(double value) const {
    return std::llround(std::ldexp(value, shift));
  }
  /// The value of a fixed-point sum, rounded once to double.
  [[nodiscard]] double from_fixed(std::int64_t sum) const {
    return std::ldexp(static_cast<double>(sum), -shift);
  }
};

/// The largest |v| of `values`, or +infinity when one is not finite (so that a maximum over
/// processes carries the news).
template <class Real>
double max_magnitude(std::span<const Real> values) {
  double largest = 0.0;
  for (const Real v : values) {
    const double a = std::abs(static_cast<double>(v));
    if (!(a <= std::numeric_limits<double>::max())) return std::numeric_limits<double>::infinity();
    largest = std::max(largest, a);
  }
  return largest;
}

/// accumulator[i] += scale.to_fixed(values[i]).
template <class Real>
void add_fixed(FixedPointScale scale, std::span<const Real> values,
               std::span<std::int64_t> accumulator) {
  detail::require(accumulator.size() == values.size(), "accumulator.size()", accumulator.size(),
                  [&] { return std::to_string(values.size()) + " (one per value)"; });
  for (std::size_t i = 0; i < values.size(); ++i) {
    accumulator[i] += scale.to_fixed(static_cast<double>(values[i]));
  }
}

}  // namespace ddpm
