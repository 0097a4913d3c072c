// SPDX-License-Identifier: MIT
// Counter-based random numbers (Philox4x32-10): every draw is a pure function of
// (seed, stream, sample index, step), so results do not depend on threads or on how a batch is
// split.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm {

/// The Philox4x32-10 block function of Salmon et al. 2011 ("Parallel random numbers: as easy as
/// 1, 2, 3"): 128 random bits from a 128-bit counter and a 64-bit key.
struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;  ///< the 128-bit counter, four 32-bit words
  using Key = std::array<std::uint32_t, 2>;      ///< the 64-bit key, two 32-bit words

  /// Ten Philox rounds of `ctr` under `key`: four uniformly distributed 32-bit words.
  static constexpr Counter generate(Counter ctr, Key key) {
    for (int round = 0; round < 10; ++round) {
      ctr = single_round(ctr, key);
      key[0] += 0x9E3779B9u;
      key[1] += 0xBB67AE85u;
    }
    return ctr;
  }

 private:
  static constexpr Counter single_round(const Counter& c, const Key& k) {
    const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * c[0];
    const std::uint64_t p1 = std::uint64_t{0xCD9E8D57u} * c[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    return {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
};

/// Stream identifiers used by the library, so that different kinds of draws never share numbers.
/// Users drawing their own numbers should pick values from `stream::user` upwards.
namespace stream {
inline constexpr std::uint32_t prior = 1;          ///< x_T ~ N(0, I) at the start of sampling
inline constexpr std::uint32_t sampler_noise = 2;  ///< z in x_{t-1} = mu + sigma z
inline constexpr std::uint32_t forward_noise = 3;  ///< eps in q_sample during training / bounds
inline constexpr std::uint32_t timesteps = 4;      ///< training timestep draws
inline constexpr std::uint32_t labels = 5;         ///< label dropout for classifier-free guidance
inline constexpr std::uint32_t data = 6;           ///< synthetic data sets
inline constexpr std::uint32_t projections = 7;    ///< random directions of sliced metrics
inline constexpr std::uint32_t init = 8;           ///< network parameter initialization
inline constexpr std::uint32_t dropout = 9;        ///< dropout masks while training
inline constexpr std::uint32_t augment = 10;       ///< data augmentation (random flips)
inline constexpr std::uint32_t latent = 11;        ///< z = mu + sigma eps of a variational encoder
inline constexpr std::uint32_t inpaint = 12;       ///< noising the known part (RePaint)
inline constexpr std::uint32_t offset_noise = 13;  ///< per-channel offset of the training noise
inline constexpr std::uint32_t probes = 14;        ///< Hutchinson divergence probes
inline constexpr std::uint32_t dequantize = 15;    ///< uniform dequantization of 8-bit data
inline constexpr std::uint32_t user = 1000;        ///< first stream free for users
}  // namespace stream

/// Random numbers addressed by (stream, sample, step, k) under a 64-bit seed. Cheap to copy; holds
/// no state besides the seed, so it is safe to use from many threads at once.
class CounterRng {
 public:
  /// A generator whose every draw is a function of `seed` and the draw's address.
  explicit constexpr CounterRng(std::uint64_t seed = 0) noexcept
      : key_{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)} {}

  /// The seed given at construction.
  [[nodiscard]] constexpr std::uint64_t seed() const noexcept {
    return (std::uint64_t{key_[1]} << 32) | key_[0];
  }

  /// 128 random bits for block `block` of (stream, sample, step).
  [[nodiscard]] constexpr Philox4x32::Counter bits(std::uint32_t stream_id, std::uint32_t sample,
                                                   std::uint32_t step,
                                                   std::uint32_t block) const noexcept {
    return Philox4x32::generate({block, sample, step, stream_id}, key_);
  }

  /// A uniform double in [0, 1) with 53 random bits; index k selects one of an unbounded sequence.
  [[nodiscard]] double uniform(std::uint32_t stream_id, std::uint32_t sample, std::uint32_t step,
                               std::uint32_t k = 0) const noexcept {
    const Philox4x32::Counter b = bits(stream_id, sample, step, k / 2);
    return k % 2 == 0 ? to_unit(b[0], b[1]) : to_unit(b[2], b[3]);
  }

  /// A uniform integer in [0, bound) from 64 random bits (bias below bound / 2^64). bound > 0.
  [[nodiscard]] std::uint64_t uniform_int(std::uint32_t stream_id, std::uint32_t sample,
                                          std::uint32_t step, std::uint64_t bound,
                                          std::uint32_t k = 0) const noexcept {
    const Philox4x32::Counter b = bits(stream_id, sample, step, k / 2);
    const std::uint64_t word =
        k % 2 == 0 ? (std::uint64_t{b[0]} << 32) | b[1] : (std::uint64_t{b[2]} << 32) | b[3];
    return multiply_high(word, bound);
  }

  /// Fills out[0..n) with standard normals number 0..n-1 of (stream, sample, step), computed in
  /// double (Box-Muller on 53-bit uniforms) and rounded to Real, so float and double agree.
  template <class Real>
  void normals(std::uint32_t stream_id, std::uint32_t sample, std::uint32_t step, Real* out,
               Index n) const noexcept {
    for (Index j = 0; j < n; j += 2) {
      const Philox4x32::Counter b =
          bits(stream_id, sample, step, static_cast<std::uint32_t>(j / 2));
      const double u1 = 1.0 - to_unit(b[0], b[1]);  // in (0, 1], so the log is finite
      const double u2 = to_unit(b[2], b[3]);
      const double radius = std::sqrt(-2.0 * std::log(u1));
      const double angle = 2.0 * std::numbers::pi * u2;
      out[j] = static_cast<Real>(radius * std::cos(angle));
      if (j + 1 < n) out[j + 1] = static_cast<Real>(radius * std::sin(angle));
    }
  }

  /// Fills every row i of `out` with the normals of (stream, first_sample + i, step), in parallel.
  template <class Real>
  void fill_normal(Batch<Real>& out, std::uint32_t stream_id, std::uint32_t first_sample,
                   std::uint32_t step) const {
    const Index cols = out.cols();
    detail::parallel_for(out.rows(), 32 * cols, [&](Index i) {
      normals(stream_id, first_sample + static_cast<std::uint32_t>(i), step, out.row(i).data(),
              cols);
    });
  }

 private:
  // High 64 bits of a 64x64-bit product (Lemire's multiply-shift range reduction), portably.
  static constexpr std::uint64_t multiply_high(std::uint64_t a, std::uint64_t b) noexcept {
    const std::uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32, b_lo = b & 0xFFFFFFFFu,
                        b_hi = b >> 32;
    const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi;
    const std::uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;
    return a_hi * b_hi + (hi_lo >> 32) + (cross >> 32);
  }

  static constexpr double to_unit(std::uint32_t hi, std::uint32_t lo) noexcept {
    const std::uint64_t mantissa = (std::uint64_t{hi >> 5} << 26) | (lo >> 6);
    return static_cast<double>(mantissa) * 0x1.0p-53;
  }

  Philox4x32::Key key_;
};

}  // namespace ddpm
