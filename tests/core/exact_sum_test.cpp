// SPDX-License-Identifier: MIT
// Tests of the exact fixed-point sums behind data-parallel training: the same bits in every order
// and grouping of the terms, an error within the stated bound of a long-double reference, no
// overflow at the largest magnitudes, and the row gathering and even splits the ranks use.
#include "ddpm/core/exact_sum.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "ddpm/core/communicator.hpp"

namespace exact_sum_test {

namespace {

// The sum of `terms` (each a vector) under one scale, adding them in `order`, in groups of
// `group` whose partial sums are then added (as ranks holding several shards would).
std::vector<double> fixed_sum(const std::vector<std::vector<float>>& terms,
                              const std::vector<std::size_t>& order, std::size_t group) {
  double largest = 0.0;
  for (const auto& t : terms)
    largest = std::max(largest, ddpm::max_magnitude(std::span<const float>(t)));
  const auto scale =
      ddpm::FixedPointScale::for_terms(largest, static_cast<std::int64_t>(terms.size()));
  const std::size_t n = terms[0].size();
  std::vector<std::int64_t> total(n, 0);
  for (std::size_t start = 0; start < order.size(); start += group) {
    std::vector<std::int64_t> part(n, 0);
    for (std::size_t k = start; k < std::min(order.size(), start + group); ++k) {
      ddpm::add_fixed(scale, std::span<const float>(terms[order[k]]),
                      std::span<std::int64_t>(part));
    }
    for (std::size_t i = 0; i < n; ++i) total[i] += part[i];
  }
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = scale.from_fixed(total[i]);
  return out;
}

}  // namespace

TEST_CASE("a fixed-point sum is bitwise the same in every order and grouping of its terms") {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int> exponent(-30, 10);
  std::vector<std::vector<float>> terms(7, std::vector<float>(200));
  for (auto& t : terms) {
    for (float& v : t) v = std::ldexp(normal(gen), exponent(gen));  // magnitudes over 40 octaves
  }
  std::vector<std::size_t> order(terms.size());
  std::iota(order.begin(), order.end(), 0);
  const std::vector<double> reference = fixed_sum(terms, order, 1);
  // The float sum in a different order differs (so the test could fail), the fixed one does not.
  bool float_sums_differ = false;
  for (int trial = 0; trial < 20; ++trial) {
    std::shuffle(order.begin(), order.end(), gen);
    for (const std::size_t group :
         {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}}) {
      CHECK(fixed_sum(terms, order, group) == reference);
    }
    for (std::size_t i = 0; i < 200 && !float_sums_differ; ++i) {
      float forward = 0, shuffled = 0;
      for (std::size_t k = 0; k < terms.size(); ++k) forward += terms[k][i];
      for (const std::size_t k : order) shuffled += terms[k][i];
      float_sums_differ = forward != shuffled;
    }
  }
  CHECK(float_sums_differ);
}

TEST_CASE("a fixed-point sum is within its stated bound of a long-double sum") {
  std::mt19937 gen(3);
  std::normal_distribution<double> normal;
  for (const std::int64_t count : {1, 2, 5, 16, 100}) {
    std::vector<std::vector<float>> terms(static_cast<std::size_t>(count), std::vector<float>(50));
    double largest = 0.0;
    for (auto& t : terms) {
      for (float& v : t) {
        v = static_cast<float>(normal(gen) * 1e-3);
        largest = std::max(largest, std::abs(static_cast<double>(v)));
      }
    }
    const auto scale = ddpm::FixedPointScale::for_terms(largest, count);
    std::vector<std::int64_t> sum(50, 0);
    for (const auto& t : terms)
      ddpm::add_fixed(scale, std::span<const float>(t), std::span<std::int64_t>(sum));
    // Each term is truncated by less than a unit of 2^-shift; the final conversion to double
    // adds half an ulp of the result.
    const double unit = std::ldexp(1.0, -scale.shift);
    CHECK(scale.unit == unit);
    CHECK(scale.factor == std::ldexp(1.0, scale.shift));
    for (std::size_t i = 0; i < 50; ++i) {
      long double exact = 0;
      for (const auto& t : terms) exact += t[i];
      const double got = scale.from_fixed(sum[i]);
      CAPTURE(count);
      CHECK(std::abs(static_cast<long double>(got) - exact) <=
            static_cast<long double>(unit) * count + std::abs(exact) * 0x1p-53L);
      // The header's promise: a term's error (under one unit) is below
      // largest * 2^-(61 - ceil(log2 count)).
      const int headroom = std::bit_width(static_cast<std::uint64_t>(count - 1));
      CHECK(unit <= largest * std::ldexp(1.0, headroom - 61));
    }
  }
}

TEST_CASE("a fixed-point sum of the largest magnitudes does not overflow") {
  for (const double largest :
       {1.0, 0.75, static_cast<double>(std::numeric_limits<float>::max()), 0x1p-149, 3e-20}) {
    for (const std::int64_t count : {1, 2, 3, 4, 5, 64, 1000}) {
      const auto scale = ddpm::FixedPointScale::for_terms(largest, count);
      std::int64_t sum = 0;
      for (std::int64_t k = 0; k < count; ++k) {
        const std::int64_t term = scale.to_fixed(-largest);
        REQUIRE(sum >= std::numeric_limits<std::int64_t>::min() - term);  // no overflow
        sum += term;
      }
      CHECK(scale.from_fixed(sum) ==
            doctest::Approx(-largest * static_cast<double>(count)).epsilon(1e-15));
    }
  }
  CHECK(ddpm::FixedPointScale::for_terms(0.0, 4).to_fixed(0.0) == 0);
}

TEST_CASE("the fixed-point helpers refuse bad input and flag non-finite values") {
  CHECK_THROWS_WITH_AS(ddpm::FixedPointScale::for_terms(-1.0, 2), doctest::Contains("max_abs = -1"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::FixedPointScale::for_terms(1.0, 0), doctest::Contains("terms = 0"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::FixedPointScale::for_terms(1.0, (std::int64_t{1} << 30) + 1),
                       doctest::Contains("allowed: 1 .. 2^30"), ddpm::InvalidArgument);
  // The extremes of double stay representable: both powers normal, a subnormal term converts.
  const auto tiny = ddpm::FixedPointScale::for_terms(std::numeric_limits<double>::denorm_min(), 2);
  CHECK(tiny.shift == 1000);
  CHECK(tiny.to_fixed(std::numeric_limits<double>::denorm_min()) == 0);  // below 2^-1000: coarsened
  const auto huge = ddpm::FixedPointScale::for_terms(std::numeric_limits<double>::max(), 2);
  CHECK(huge.to_fixed(std::numeric_limits<double>::max()) <= std::int64_t{1} << 61);
  CHECK(huge.from_fixed(huge.to_fixed(-std::numeric_limits<double>::max())) ==
        doctest::Approx(-std::numeric_limits<double>::max()));
  CHECK_THROWS_AS(ddpm::FixedPointScale::for_terms(std::numeric_limits<double>::infinity(), 2),
                  ddpm::InvalidArgument);
  const std::vector<float> values = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
  CHECK(std::isinf(ddpm::max_magnitude(std::span<const float>(values))));
  const std::vector<float> finite = {1.0f, -3.0f, 2.0f};
  CHECK(ddpm::max_magnitude(std::span<const float>(finite)) == 3.0);
  std::vector<std::int64_t> short_accumulator(2);
  CHECK_THROWS_WITH_AS(ddpm::add_fixed(ddpm::FixedPointScale{}, std::span<const float>(finite),
                                       std::span<std::int64_t>(short_accumulator)),
                       doctest::Contains("accumulator.size()"), ddpm::InvalidArgument);
}

TEST_CASE("split_evenly tiles the items with parts differing by at most one") {
  for (const ddpm::Index items : {0, 1, 5, 64, 1000}) {
    for (const ddpm::Index parts : {1, 2, 3, 7}) {
      ddpm::Index next = 0, smallest = items, largest = 0;
      for (ddpm::Index p = 0; p < parts; ++p) {
        const ddpm::ItemRange r = ddpm::split_evenly(items, parts, p);
        CHECK(r.begin == next);
        next = r.end;
        smallest = std::min(smallest, r.size());
        largest = std::max(largest, r.size());
      }
      CHECK(next == items);
      CHECK(largest - smallest <= 1);
    }
  }
  CHECK_THROWS_WITH_AS(ddpm::split_evenly(10, 0, 0), doctest::Contains("parts = 0"),
                       ddpm::InvalidArgument);
  CHECK_THROWS_WITH_AS(ddpm::split_evenly(10, 3, 3), doctest::Contains("part = 3"),
                       ddpm::InvalidArgument);
}

TEST_CASE("bit patterns survive the round trip through 64-bit integers") {
  for (const float v : {0.0f, -0.0f, 1.5f, -3e-40f, std::numeric_limits<float>::max()}) {
    CHECK(std::bit_cast<std::uint32_t>(ddpm::detail::from_bits<float>(ddpm::detail::to_bits(v))) ==
          std::bit_cast<std::uint32_t>(v));
    CHECK(ddpm::detail::to_bits(v) >= 0);  // zero-extended: a sum with zeros is the value itself
  }
  for (const double v : {0.0, -0.0, 1.5, -1e-310, std::numeric_limits<double>::lowest()}) {
    CHECK(std::bit_cast<std::uint64_t>(ddpm::detail::from_bits<double>(ddpm::detail::to_bits(v))) ==
          std::bit_cast<std::uint64_t>(v));
  }
}

}  // namespace exact_sum_test
