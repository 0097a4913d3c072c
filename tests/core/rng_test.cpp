// SPDX-License-Identifier: MIT
// Checks Philox4x32-10 against the Random123 known answers and the statistics, determinism and
// thread independence of CounterRng.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"

namespace rng_test {

namespace {

using ddpm::CounterRng;
using ddpm::Philox4x32;

__extension__ typedef unsigned __int128 U128;  // exact 64x64 -> 128 products for the reference

int differing_bits(const Philox4x32::Counter& a, const Philox4x32::Counter& b) {
  int n = 0;
  for (std::size_t i = 0; i < 4; ++i) n += std::popcount(a[i] ^ b[i]);
  return n;
}

// Pearson's chi-square statistic of observed counts against equal expected counts.
double chi_square_uniform(const std::vector<long>& counts, long total) {
  const double expected = static_cast<double>(total) / static_cast<double>(counts.size());
  double chi2 = 0.0;
  for (const long c : counts) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}

// Standard normal cdf from std::erfc.
double phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

}  // namespace

TEST_CASE("Philox4x32-10 reproduces the Random123 known-answer vectors") {
  // Random123 tests/kat_vectors, "philox4x32 10" lines: counter (4 words), key (2 words), output.
  SUBCASE("counter 0, key 0") {
    constexpr Philox4x32::Counter out = Philox4x32::generate({0, 0, 0, 0}, {0, 0});
    CHECK(out == Philox4x32::Counter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  }
  SUBCASE("all ones") {
    const Philox4x32::Counter out = Philox4x32::generate(
        {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
    CHECK(out == Philox4x32::Counter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  }
  SUBCASE("digits of pi") {
    const Philox4x32::Counter out = Philox4x32::generate(
        {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u});
    CHECK(out == Philox4x32::Counter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
  }
}

TEST_CASE("CounterRng bits are a pure function of (seed, stream, sample, step, block)") {
  const CounterRng rng(0x0123456789abcdefULL);
  SUBCASE("the 64-bit seed round-trips") {
    CHECK(rng.seed() == 0x0123456789abcdefULL);
    CHECK(CounterRng(std::numeric_limits<std::uint64_t>::max()).seed() ==
          std::numeric_limits<std::uint64_t>::max());
  }
  SUBCASE("same arguments, same bits, from any copy") {
    const CounterRng copy(0x0123456789abcdefULL);
    CHECK(rng.bits(3, 17, 250, 9) == copy.bits(3, 17, 250, 9));
    CHECK(rng.uniform(3, 17, 250, 5) == copy.uniform(3, 17, 250, 5));
    CHECK(rng.uniform_int(3, 17, 250, 1000, 4) == copy.uniform_int(3, 17, 250, 1000, 4));
  }
  SUBCASE("changing any one coordinate changes about half of the 128 bits") {
    // A good block cipher flips each output bit with probability 1/2: 64 +- 5.7 of 128. The
    // window [32, 96] is 5.6 standard deviations wide on each side.
    const Philox4x32::Counter base = rng.bits(3, 17, 250, 9);
    const std::array<Philox4x32::Counter, 7> changed = {
        rng.bits(4, 17, 250, 9),                                // stream
        rng.bits(3, 18, 250, 9),                                // sample
        rng.bits(3, 17, 251, 9),                                // step
        rng.bits(3, 17, 250, 8),                                // block
        CounterRng(0x0123456789abcdeeULL).bits(3, 17, 250, 9),  // low seed word
        CounterRng(0x1123456789abcdefULL).bits(3, 17, 250, 9),  // high seed word
        rng.bits(17, 3, 250, 9),                                // stream and sample swapped
    };
    for (const Philox4x32::Counter& other : changed) {
      const int n = differing_bits(base, other);
      CAPTURE(n);
      CHECK(n >= 32);
      CHECK(n <= 96);
    }
  }
  SUBCASE("different streams, samples and steps give different normals") {
    std::array<double, 4> a{}, b{}, c{}, d{};
    rng.normals(ddpm::stream::prior, 0, 0, a.data(), 4);
    rng.normals(ddpm::stream::sampler_noise, 0, 0, b.data(), 4);
    rng.normals(ddpm::stream::prior, 1, 0, c.data(), 4);
    rng.normals(ddpm::stream::prior, 0, 1, d.data(), 4);
    CHECK(a != b);
    CHECK(a != c);
    CHECK(a != d);
  }
}

TEST_CASE("uniform draws lie in the half-open unit interval, carry 53 bits and are uniform") {
  const CounterRng rng(7);
  constexpr int kDraws = 200000;
  constexpr int kBins = 64;
  // Two directions through the counter space: over sample indices (k = 0) and over k.
  for (const bool along_k : {false, true}) {
    CAPTURE(along_k);
    std::vector<long> counts(kBins, 0);
    double sum = 0.0, sum_sq = 0.0, lag_product = 0.0, previous = 0.5;
    bool in_range = true, integral = true;
    for (int i = 0; i < kDraws; ++i) {
      const auto index = static_cast<std::uint32_t>(i);
      const double u = along_k ? rng.uniform(11, 5, 2, index) : rng.uniform(11, index, 2);
      in_range = in_range && u >= 0.0 && u < 1.0;
      integral = integral && std::ldexp(u, 53) == std::floor(std::ldexp(u, 53));
      ++counts[static_cast<std::size_t>(u * kBins)];
      sum += u;
      sum_sq += (u - 0.5) * (u - 0.5);
      lag_product += (u - 0.5) * (previous - 0.5);
      previous = u;
    }
    CHECK(in_range);
    CHECK(integral);
    // Mean 1/2, standard error sqrt(1/12 / n) = 6.5e-4; 5 of them.
    CHECK(std::fabs(sum / kDraws - 0.5) <= 5.0 * std::sqrt(1.0 / 12.0 / kDraws));
    // Variance 1/12; Var((u - 1/2)^2) = 1/80 - 1/144 = 1/180, standard error 1.7e-4; 5 of them.
    CHECK(std::fabs(sum_sq / kDraws - 1.0 / 12.0) <= 5.0 * std::sqrt(1.0 / 180.0 / kDraws));
    // Lag-1 autocorrelation: standard error 1/sqrt(n) = 2.2e-3; 5 of them.
    CHECK(std::fabs(lag_product / kDraws * 12.0) <= 5.0 / std::sqrt(kDraws));
    // 64 equal bins: chi-square with 63 degrees of freedom, critical value 113.5 at p = 1e-4.
    const double chi2 = chi_square_uniform(counts, kDraws);
    CAPTURE(chi2);
    CHECK(chi2 < 113.505);
  }
}

TEST_CASE("uniform_int is floor(w * bound / 2^64) of a 64-bit word, bounded and uniform") {
  const CounterRng rng(99);
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  SUBCASE("the multiply-high reduction is exact for any bound") {
    // uniform_int(..., k) reduces the 64-bit word made of words (0, 1) (k even) or (2, 3) (k odd)
    // of bits(..., k / 2); the result must be floor(word * bound / 2^64), checked here with a
    // 128-bit product. (This pins that word layout, which the reproducibility of runs relies on.)
    const std::array<std::uint64_t, 10> bounds = {1,
                                                  2,
                                                  7,
                                                  1000,
                                                  0xffffffffULL,
                                                  0x100000001ULL,
                                                  0x8000000000000000ULL,
                                                  0xc000000000000000ULL,
                                                  0xfffffffffffffffeULL,
                                                  kMax};
    long mismatches = 0;
    for (std::uint32_t sample = 0; sample < 2000; ++sample) {
      for (std::uint32_t k = 0; k < 4; ++k) {
        const Philox4x32::Counter b = rng.bits(8, sample, 1, k / 2);
        const std::uint64_t word =
            k % 2 == 0 ? (std::uint64_t{b[0]} << 32) | b[1] : (std::uint64_t{b[2]} << 32) | b[3];
        for (const std::uint64_t bound : bounds) {
          const auto expected = static_cast<std::uint64_t>((U128{word} * bound) >> 64);
          mismatches += rng.uniform_int(8, sample, 1, bound, k) != expected ? 1 : 0;
        }
      }
    }
    CHECK(mismatches == 0);
    CHECK(rng.uniform_int(8, 0, 1, 1) == 0);
  }
  SUBCASE("large bounds: the low byte of the result is uniform") {
    // For bound >> 256 the low 8 bits of a uniform integer in [0, bound) are uniform; a
    // reduction that drops the low half of the 128-bit product fails this at once.
    // 51200 draws, chi-square with 255 dof, critical 347.654 at p = 1e-4.
    const std::array<std::uint64_t, 4> large = {0x8000000000000000ULL, 0xc000000000000000ULL,
                                                0x100000001ULL, kMax};
    for (const std::uint64_t bound : large) {
      CAPTURE(bound);
      std::vector<long> counts(256, 0);
      constexpr long kDraws = 51200;
      for (long i = 0; i < kDraws; ++i) {
        ++counts[rng.uniform_int(14, static_cast<std::uint32_t>(i), 0, bound) & 0xff];
      }
      const double chi2 = chi_square_uniform(counts, kDraws);
      CAPTURE(chi2);
      CHECK(chi2 < 347.654);
    }
  }
  SUBCASE("small bounds: in range and uniform by chi-square") {
    // bound 7, 70000 draws: chi-square 6 dof, critical 27.856 at p = 1e-4.
    // bound 256, 102400 draws: chi-square 255 dof, critical 347.654 at p = 1e-4.
    struct Case {
      std::uint64_t bound;
      long draws;
      double critical;
    };
    for (const Case c : {Case{7, 70000, 27.856}, Case{256, 102400, 347.654}}) {
      CAPTURE(c.bound);
      std::vector<long> counts(c.bound, 0);
      bool in_range = true;
      for (long i = 0; i < c.draws; ++i) {
        const std::uint64_t v = rng.uniform_int(12, static_cast<std::uint32_t>(i), 0, c.bound);
        in_range = in_range && v < c.bound;
        if (v < c.bound) ++counts[v];
      }
      CHECK(in_range);
      const double chi2 = chi_square_uniform(counts, c.draws);
      CAPTURE(chi2);
      CHECK(chi2 < c.critical);
    }
  }
  SUBCASE("a large bound 3 * 2^62: in range, and the top third has mass 1/3") {
    const std::uint64_t bound = 0xc000000000000000ULL;
    constexpr long kDraws = 60000;
    long top = 0;
    bool in_range = true;
    for (long i = 0; i < kDraws; ++i) {
      const std::uint64_t v = rng.uniform_int(13, static_cast<std::uint32_t>(i), 0, bound, 1);
      in_range = in_range && v < bound;
      top += v >= 0x8000000000000000ULL ? 1 : 0;
    }
    CHECK(in_range);
    // Binomial(60000, 1/3): standard error sqrt(2/9 / n) = 1.9e-3; 5 of them.
    CHECK(std::fabs(static_cast<double>(top) / kDraws - 1.0 / 3.0) <=
          5.0 * std::sqrt(2.0 / 9.0 / kDraws));
  }
}

TEST_CASE("normals are standard normal: moments, pair independence and Kolmogorov-Smirnov") {
  const CounterRng rng(2024);
  constexpr long kDraws = 200000;
  std::vector<double> x(static_cast<std::size_t>(kDraws));
  rng.normals(ddpm::stream::user, 3, 0, x.data(), kDraws);

  SUBCASE("mean, variance, skewness, kurtosis and pair correlation within 5 standard errors") {
    double s1 = 0, s2 = 0, s3 = 0, s4 = 0, pair = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      s1 += v;
      s2 += v * v;
      s3 += v * v * v;
      s4 += v * v * v * v;
      if (i % 2 == 1) pair += x[i - 1] * v;  // the two outputs of one Box-Muller draw
    }
    const double n = kDraws, mean = s1 / n, var = s2 / n - mean * mean;
    const double skew = s3 / n / std::pow(var, 1.5), kurt = s4 / n / (var * var);
    CAPTURE(mean);
    CAPTURE(var);
    CAPTURE(skew);
    CAPTURE(kurt);
    // Standard errors for a normal sample of n: mean 1/sqrt(n) = 2.2e-3, variance sqrt(2/n) =
    // 3.2e-3, skewness sqrt(6/n) = 5.5e-3, kurtosis sqrt(24/n) = 1.1e-2, and the correlation of
    // the n/2 Box-Muller pairs 1/sqrt(n/2) = 3.2e-3. Each check allows 5 standard errors.
    CHECK(std::fabs(mean) <= 5.0 / std::sqrt(n));
    CHECK(std::fabs(var - 1.0) <= 5.0 * std::sqrt(2.0 / n));
    CHECK(std::fabs(skew) <= 5.0 * std::sqrt(6.0 / n));
    CHECK(std::fabs(kurt - 3.0) <= 5.0 * std::sqrt(24.0 / n));
    CHECK(std::fabs(pair / (n / 2)) <= 5.0 / std::sqrt(n / 2));
  }
  SUBCASE("Kolmogorov-Smirnov distance to Phi below the p = 1e-4 critical value") {
    std::vector<double> sorted = x;
    std::sort(sorted.begin(), sorted.end());
    double d = 0.0;
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      const double f = phi(sorted[i]);
      d = std::max(
          {d, (static_cast<double>(i) + 1.0) / kDraws - f, f - static_cast<double>(i) / kDraws});
    }
    CAPTURE(d);
    // Asymptotic critical value sqrt(ln(2 / alpha) / 2) / sqrt(n) = 2.2253 / sqrt(n) = 4.98e-3.
    CHECK(d < 2.2253 / std::sqrt(static_cast<double>(kDraws)));
  }
  SUBCASE("every draw is finite and bounded by the largest Box-Muller radius") {
    // u1 in (0, 1] with 53 bits: radius <= sqrt(-2 log 2^-53) = 8.57.
    const double largest = std::sqrt(-2.0 * std::log(0x1.0p-53));
    CHECK(std::all_of(x.begin(), x.end(), [&](double v) { return std::fabs(v) <= largest; }));
  }
  SUBCASE("a shorter request returns a prefix of a longer one; float is double rounded") {
    std::array<double, 8> longer{};
    rng.normals(ddpm::stream::user, 3, 0, longer.data(), 8);
    for (const ddpm::Index n : {1, 2, 5, 7}) {
      std::array<double, 8> shorter{};
      rng.normals(ddpm::stream::user, 3, 0, shorter.data(), n);
      for (ddpm::Index j = 0; j < n; ++j)
        CHECK(shorter[static_cast<std::size_t>(j)] == longer[static_cast<std::size_t>(j)]);
    }
    std::array<float, 8> single{};
    rng.normals(ddpm::stream::user, 3, 0, single.data(), 8);
    for (std::size_t j = 0; j < 8; ++j) CHECK(single[j] == static_cast<float>(longer[j]));
    CHECK(longer[0] == x[0]);
  }
}

TEST_CASE("fill_normal rows are the normals of their sample index, whatever the split or threads") {
  const CounterRng rng(31337);
  SUBCASE("row i equals normals(stream, first_sample + i, step)") {
    for (const ddpm::Index cols : {1, 5, 6}) {
      CAPTURE(cols);
      ddpm::Batch<double> out(37, cols);
      rng.fill_normal(out, 9, 100, 3);
      std::vector<double> row(static_cast<std::size_t>(cols));
      for (ddpm::Index i = 0; i < out.rows(); ++i) {
        rng.normals(9, 100 + static_cast<std::uint32_t>(i), 3, row.data(), cols);
        for (ddpm::Index j = 0; j < cols; ++j) CHECK(out(i, j) == row[static_cast<std::size_t>(j)]);
      }
    }
  }
  SUBCASE("two sub-batches with the matching first_sample equal one batch") {
    ddpm::Batch<double> whole(37, 5), head(20, 5), tail(17, 5);
    rng.fill_normal(whole, 9, 100, 3);
    rng.fill_normal(head, 9, 100, 3);
    rng.fill_normal(tail, 9, 120, 3);
    CHECK(whole.topRows(20) == head);
    CHECK(whole.bottomRows(17) == tail);
    ddpm::Batch<float> single(37, 5);
    rng.fill_normal(single, 9, 100, 3);
    CHECK(single == whole.cast<float>());
  }
#ifdef _OPENMP
  SUBCASE("bitwise identical with one and with two OpenMP threads") {
    const int previous = omp_get_max_threads();
    ddpm::Batch<double> one(2000, 17), two(2000, 17);
    omp_set_num_threads(1);
    rng.fill_normal(one, 2, 0, 41);
    omp_set_num_threads(2);
    rng.fill_normal(two, 2, 0, 41);
    omp_set_num_threads(previous);
    CHECK(std::memcmp(one.data(), two.data(), sizeof(double) * 2000 * 17) == 0);
  }
#endif
}

}  // namespace rng_test
