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
/// value v becomes the integer v 2^shift truncated toward zero, and shift is the largest for which
/// `terms` such integers cannot overflow (each is below 2^(62 - ceil(log2 terms)), so their sum
/// is below 2^62). Relative to max_abs the error of a term is below 2^-(61 - ceil(log2 terms)),
/// about 2^-57 for 16 terms: a float term within 2^-33 of the largest keeps all of its bits.
/// Truncation, a multiplication by a power of two and a conversion, is deterministic in any
/// floating-point environment and vectorizes.
struct FixedPointScale {
  int shift = 0;        ///< v -> trunc(v * 2^shift)
  double factor = 1.0;  ///< 2^shift
  double unit = 1.0;    ///< 2^-shift: the value of one integer step

  /// The scale 2^shift (shift clamped to +-1000, so both powers are normal doubles).
  static FixedPointScale of_shift(int shift) {
    shift = std::clamp(shift, -1000, 1000);
    return {shift, std::ldexp(1.0, shift), std::ldexp(1.0, -shift)};
  }

  /// The scale for `terms` terms of magnitude <= max_abs (finite, >= 0); terms in 1 .. 2^30.
  static FixedPointScale for_terms(double max_abs, std::int64_t terms) {
    detail::require(std::isfinite(max_abs) && max_abs >= 0.0, "max_abs", max_abs,
                    "a finite magnitude >= 0");
    detail::require(terms >= 1 && terms <= (std::int64_t{1} << 30), "terms", terms, "1 .. 2^30");
    if (max_abs == 0.0) return {};
    int exponent = 0;  // max_abs = m 2^exponent with m in [0.5, 1): max_abs < 2^exponent
    std::frexp(max_abs, &exponent);
    const int headroom = std::bit_width(static_cast<std::uint64_t>(terms - 1));  // ceil(log2)
    // At most 62 - 0 + 1074 (the smallest subnormal); the clamp at 1000 only coarsens values
    // below 2^-938, and the lower clamp is never reached (exponent <= 1024, headroom <= 30).
    return of_shift(62 - headroom - exponent);
  }

  /// trunc(value 2^shift).
  [[nodiscard]] std::int64_t to_fixed(double value) const {
    return static_cast<std::int64_t>(value * factor);
  }
  /// The value of a fixed-point sum, rounded once to double.
  [[nodiscard]] double from_fixed(std::int64_t sum) const {
    return static_cast<double>(sum) * unit;
  }
};

/// The largest |v| of `values`, or +infinity when one is not finite (so that a maximum over
/// processes carries the news).
template <class Real>
double max_magnitude(std::span<const Real> values) {
  double largest = 0.0;
  bool finite = true;
  for (const Real v : values) {
    const double a = std::abs(static_cast<double>(v));
    largest = a > largest ? a : largest;
    finite &= a <= std::numeric_limits<double>::max();  // false for NaN and infinity
  }
  return finite ? largest : std::numeric_limits<double>::infinity();
}

/// accumulator[i] += scale.to_fixed(values[i]).
template <class Real>
void add_fixed(const FixedPointScale& scale, std::span<const Real> values,
               std::span<std::int64_t> accumulator) {
  detail::require(accumulator.size() == values.size(), "accumulator.size()", accumulator.size(),
                  [&] { return std::to_string(values.size()) + " (one per value)"; });
  const double factor = scale.factor;
  for (std::size_t i = 0; i < values.size(); ++i) {
    accumulator[i] += static_cast<std::int64_t>(static_cast<double>(values[i]) * factor);
  }
}

}  // namespace ddpm
