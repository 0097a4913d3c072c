// SPDX-License-Identifier: MIT
// Two-dimensional toy distributions (swissroll, moons, 8gaussians, ...) drawn reproducibly.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/gaussian_mixture.hpp"

namespace ddpm::data {

/// The 2D toy distributions. Each one's exact definition is documented at its `*_point` function in
/// `ddpm::data::detail` below; the first four are those of BENCHMARKS.md ("Toy data definitions"),
/// the last three follow the FFJORD toy data (Grathwohl et al. 2019).
enum class ToyDataset {
  swissroll,        ///< "swissroll"
  moons,            ///< "moons"
  eight_gaussians,  ///< "8gaussians"
  checkerboard,     ///< "checkerboard"
  circles,          ///< "circles"
  pinwheel,         ///< "pinwheel"
  two_spirals,      ///< "2spirals"
};

}  // namespace ddpm::data

namespace ddpm {
/// The dataset names of command lines and checkpoints, e.g. "8gaussians" for eight_gaussians.
template <>
struct EnumTable<data::ToyDataset> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "dataset";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<data::ToyDataset>, 7> names = {
      {{data::ToyDataset::swissroll, "swissroll"},
       {data::ToyDataset::moons, "moons"},
       {data::ToyDataset::eight_gaussians, "8gaussians"},
       {data::ToyDataset::checkerboard, "checkerboard"},
       {data::ToyDataset::circles, "circles"},
       {data::ToyDataset::pinwheel, "pinwheel"},
       {data::ToyDataset::two_spirals, "2spirals"}}};
};
}  // namespace ddpm

namespace ddpm::data {

namespace detail {

// Uniforms of a point come from step 0 (index k), its normals from step 1, so the two never
// share Philox blocks.
inline constexpr std::uint32_t kUniformStep = 0;
inline constexpr std::uint32_t kNormalStep = 1;

// The counter RNG addresses samples with 32 bits.
inline constexpr Index kMaxToySamples = Index{1} << 32;

/// The two standard normals of a point (step kNormalStep).
inline std::array<double, 2> toy_normals(const CounterRng& rng, std::uint32_t sample) noexcept {
  std::array<double, 2> z{};
  rng.normals(stream::data, sample, kNormalStep, z.data(), 2);
  return z;
}

/// swissroll: t = 1.5π(1 + 2u), u ~ U[0,1); point = ((t cos t, t sin t) + N(0, I)) / 5. The
/// noise-free radius t/5 lies in [0.3π, 0.9π] ≈ [0.94, 2.83]; mean (2, 2/(3π)) / 5 and
/// E|p|² = (9.75π² + 2) / 25 ≈ 3.93.
inline std::array<double, 2> swissroll_point(const CounterRng& rng, std::uint32_t sample) noexcept {
  const double u = rng.uniform(stream::data, sample, kUniformStep, 0);
  const double t = 1.5 * std::numbers::pi * (1.0 + 2.0 * u);
  const std::array<double, 2> z = toy_normals(rng, sample);
  return {(t * std::cos(t) + z[0]) / 5.0, (t * std::sin(t) + z[1]) / 5.0};
}

// Exact population moments of the unstandardized moons (noise included), for standardization:
// Var x = 3/4 + 0.05², Var y = 9/16 - 1/π + 0.05².
inline constexpr double kMoonsMeanX = 0.5;
inline constexpr double kMoonsMeanY = 0.25;
inline constexpr double kMoonsNoise = 0.05;

/// moons: moon ~ Bernoulli(½), θ ~ U[0, π); outer (cos θ, sin θ), inner (1 − cos θ, 0.5 − sin θ);
/// + N(0, 0.05² I); then standardized per axis by the exact population mean (0.5, 0.25) and
/// standard deviations (√0.7525 ≈ 0.8675, √(0.565 − 1/π) ≈ 0.4967), so mean 0 and variance 1.
/// The moon of a moons point: true for the outer (upper) one, class 0.
inline bool moons_outer(const CounterRng& rng, std::uint32_t sample) noexcept {
  return rng.uniform(stream::data, sample, kUniformStep, 0) < 0.5;
}

inline std::array<double, 2> moons_point(const CounterRng& rng, std::uint32_t sample) noexcept {
  const bool outer = moons_outer(rng, sample);
  const double theta = std::numbers::pi * rng.uniform(stream::data, sample, kUniformStep, 1);
  const std::array<double, 2> z = toy_normals(rng, sample);
  const double noise_var = kMoonsNoise * kMoonsNoise;
  const double std_x = std::sqrt(0.75 + noise_var);
  const double std_y = std::sqrt(0.5625 - std::numbers::inv_pi + noise_var);
  const double x = (outer ? std::cos(theta) : 1.0 - std::cos(theta)) + kMoonsNoise * z[0];
  const double y = (outer ? std::sin(theta) : 0.5 - std::sin(theta)) + kMoonsNoise * z[1];
  return {(x - kMoonsMeanX) / std_x, (y - kMoonsMeanY) / std_y};
}

// 8gaussians constants (FFJORD): the divisor is the literal 1.414, not √2.
/// 8gaussians: center c uniform over 4·{(±1, 0), (0, ±1), (±1/√2, ±1/√2)}; point = (c + N(0, 0.5²
/// I)) / 1.414. Mean 0, per-axis variance (16·0.5 + 0.25) / 1.414² ≈ 4.126.
/// The component (0..7, the order of kEightGaussiansDirections) of an 8gaussians point.
inline std::uint64_t eight_gaussians_component(const CounterRng& rng,
                                               std::uint32_t sample) noexcept {
  return rng.uniform_int(stream::data, sample, kUniformStep, 8, 0);
}

inline std::array<double, 2> eight_gaussians_point(const CounterRng& rng,
                                                   std::uint32_t sample) noexcept {
  const std::uint64_t k = eight_gaussians_component(rng, sample);
  const std::array<double, 2>& dir = ddpm::detail::kEightGaussiansDirections[k];
  const std::array<double, 2> z = toy_normals(rng, sample);
  using ddpm::detail::kEightGaussiansDivisor, ddpm::detail::kEightGaussiansRadius,
      ddpm::detail::kEightGaussiansStd;
  return {(kEightGaussiansRadius * dir[0] + kEightGaussiansStd * z[0]) / kEightGaussiansDivisor,
          (kEightGaussiansRadius * dir[1] + kEightGaussiansStd * z[1]) / kEightGaussiansDivisor};
}

/// checkerboard: x1 = 4u1 − 2; x2 = u2 − 2·Bernoulli(½) + (floor(x1) mod 2); both multiplied by 2.
/// Uniform on the 8 squares of side 2 in [-4, 4)² where floor(x/2) + floor(y/2) is even; mean 0,
/// per-axis variance 16/3.
inline std::array<double, 2> checkerboard_point(const CounterRng& rng,
                                                std::uint32_t sample) noexcept {
  const double x1 = 4.0 * rng.uniform(stream::data, sample, kUniformStep, 0) - 2.0;
  const double u2 = rng.uniform(stream::data, sample, kUniformStep, 1);
  const double down = rng.uniform(stream::data, sample, kUniformStep, 2) < 0.5 ? 0.0 : 2.0;
  const double cell = std::floor(x1);
  const double parity = cell - 2.0 * std::floor(cell / 2.0);  // Python's floor(x1) % 2: 0 or 1
  return {2.0 * x1, 2.0 * (u2 - down + parity)};
}

/// circles (sklearn make_circles(factor=0.5, noise=0.08) × 3, as in FFJORD, with a random rather
/// than evenly spaced angle): circle ~ Bernoulli(½) with radius 3 or 1.5, θ ~ U[0, 2π);
/// point = r (cos θ, sin θ) + N(0, 0.24² I). Mean 0, E|p|² = 5.625 + 2·0.24² = 5.7402.
/// The circle of a circles point: true for the outer one (radius 3), class 0.
inline bool circles_outer(const CounterRng& rng, std::uint32_t sample) noexcept {
  return rng.uniform(stream::data, sample, kUniformStep, 0) < 0.5;
}

inline std::array<double, 2> circles_point(const CounterRng& rng, std::uint32_t sample) noexcept {
  const double radius = circles_outer(rng, sample) ? 3.0 : 1.5;
  const double theta = 2.0 * std::numbers::pi * rng.uniform(stream::data, sample, kUniformStep, 1);
  const std::array<double, 2> z = toy_normals(rng, sample);
  return {radius * std::cos(theta) + 0.24 * z[0], radius * std::sin(theta) + 0.24 * z[1]};
}

/// pinwheel (FFJORD): arm k uniform in {0..4}; f = (1 + 0.3 z0, 0.1 z1) with z ~ N(0, I);
/// a = 2πk/5 + 0.25 exp(f0); point = 2 (f0 cos a + f1 sin a, −f0 sin a + f1 cos a) (f rotated by
/// −a, as FFJORD's einsum does). Mean 0, isotropic covariance 2.2 I (5-fold symmetry), E|p|² = 4.4.
inline std::array<double, 2> pinwheel_point(const CounterRng& rng, std::uint32_t sample) noexcept {
  const std::uint64_t arm = rng.uniform_int(stream::data, sample, kUniformStep, 5, 0);
  const std::array<double, 2> z = toy_normals(rng, sample);
  const double f0 = 1.0 + 0.3 * z[0];
  const double f1 = 0.1 * z[1];
  const double a = 2.0 * std::numbers::pi * static_cast<double>(arm) / 5.0 + 0.25 * std::exp(f0);
  const double c = std::cos(a);
  const double s = std::sin(a);
  return {2.0 * (f0 * c + f1 * s), 2.0 * (-f0 * s + f1 * c)};
}

/// 2spirals (FFJORD): s = 3π √u0 (540°); d = (−s cos s + 0.5 u1, s sin s + 0.5 u2); sign ~ ±1 with
/// probability ½ each; point = sign·d/3 + N(0, 0.1² I). Mean 0; within [-3.4, 3.4]² up to the
/// noise.
inline std::array<double, 2> two_spirals_point(const CounterRng& rng,
                                               std::uint32_t sample) noexcept {
  const double s =
      3.0 * std::numbers::pi * std::sqrt(rng.uniform(stream::data, sample, kUniformStep, 0));
  const double u1 = rng.uniform(stream::data, sample, kUniformStep, 1);
  const double u2 = rng.uniform(stream::data, sample, kUniformStep, 2);
  const double sign = rng.uniform(stream::data, sample, kUniformStep, 3) < 0.5 ? 1.0 : -1.0;
  const std::array<double, 2> z = toy_normals(rng, sample);
  return {sign * (-s * std::cos(s) + 0.5 * u1) / 3.0 + 0.1 * z[0],
          sign * (s * std::sin(s) + 0.5 * u2) / 3.0 + 0.1 * z[1]};
}

/// One point of `which` for counter-RNG sample index `sample`. `which` must be valid.
inline std::array<double, 2> toy_point(ToyDataset which, const CounterRng& rng,
                                       std::uint32_t sample) noexcept {
  switch (which) {
    case ToyDataset::swissroll:
      return swissroll_point(rng, sample);
    case ToyDataset::moons:
      return moons_point(rng, sample);
    case ToyDataset::eight_gaussians:
      return eight_gaussians_point(rng, sample);
    case ToyDataset::checkerboard:
      return checkerboard_point(rng, sample);
    case ToyDataset::circles:
      return circles_point(rng, sample);
    case ToyDataset::pinwheel:
      return pinwheel_point(rng, sample);
    case ToyDataset::two_spirals:
      return two_spirals_point(rng, sample);
  }
  return {0.0, 0.0};  // unreachable: callers validate `which`
}

/// The class of a point of a labeled data set (toy_classes(which) > 0), from the same draws as its
/// point: the 8gaussians component, the moon (0 outer, 1 inner) or the circle (0 outer, 1 inner).
inline int toy_label(ToyDataset which, const CounterRng& rng, std::uint32_t sample) noexcept {
  switch (which) {
    case ToyDataset::eight_gaussians:
      return static_cast<int>(eight_gaussians_component(rng, sample));
    case ToyDataset::moons:
      return moons_outer(rng, sample) ? 0 : 1;
    case ToyDataset::circles:
      return circles_outer(rng, sample) ? 0 : 1;
    default:
      return kNoLabel;  // unreachable: callers check toy_classes(which) > 0
  }
}

inline void require_valid(ToyDataset which) {
  const auto value = static_cast<int>(which);
  ddpm::detail::require(value >= 0 && value < static_cast<int>(EnumTable<ToyDataset>::names.size()),
                        "dataset", value, "a ToyDataset enumerator");
}

inline void require_range(Index n, Index first_index) {
  ddpm::detail::require(n >= 0, "n", n, "n >= 0");
  ddpm::detail::require(first_index >= 0, "first_index", first_index, "first_index >= 0");
  ddpm::detail::require(first_index <= detail::kMaxToySamples - n, "first_index + n",
                        first_index + n, "at most 2^32 (the counter RNG's sample index range)");
}

}  // namespace detail

/// Draws n points of `which` (an n x 2 batch). Row i uses only the counter-RNG draws of sample
/// index first_index + i (stream::data), so splitting a batch into pieces with matching first_index
/// gives identical points, for any thread count. Points are computed in double and rounded to Real,
/// so float and double batches agree. Requires n >= 0, first_index >= 0, first_index + n <= 2^32.
///
///   Batch<float> x = ddpm::data::sample_toy2d<float>(ToyDataset::moons, 1024, /*seed=*/42);
template <class Real = double>
Batch<Real> sample_toy2d(ToyDataset which, Index n, std::uint64_t seed, Index first_index = 0) {
  detail::require_valid(which);
  detail::require_range(n, first_index);
  Batch<Real> out(n, 2);
  const CounterRng rng(seed);
  ddpm::detail::parallel_for(n, [&](Index i) {
    const std::array<double, 2> p =
        detail::toy_point(which, rng, static_cast<std::uint32_t>(first_index + i));
    out(i, 0) = static_cast<Real>(p[0]);
    out(i, 1) = static_cast<Real>(p[1]);
  });
  return out;
}

/// The exact Gaussian-mixture form of `which` when it has one, else nullopt. Only 8gaussians has
/// one: means 4·c / 1.414 for the 8 unit directions c in the sampler's order ((±1, 0), (0, ±1),
/// (±1/√2, ±1/√2), as in FFJORD), standard deviations 0.5 / 1.414, weights 1/8. Built from the
/// sampler's own constants, so it is the distribution sample_toy2d draws from; pass it to
/// GaussianMixtureDenoiser for the Bayes-optimal denoiser.
inline std::optional<GaussianMixture> toy_mixture(ToyDataset which) {
  detail::require_valid(which);
  if (which != ToyDataset::eight_gaussians) return std::nullopt;
  return eight_gaussians_mixture();
}

/// Classes of a labeled data set: 8 for 8gaussians (its components), 2 for moons (the moons) and
/// circles (the circles), 0 for the others (they have no natural classes).
[[nodiscard]] inline int toy_classes(ToyDataset which) noexcept {
  switch (which) {
    case ToyDataset::eight_gaussians:
      return 8;
    case ToyDataset::moons:
    case ToyDataset::circles:
      return 2;
    default:
      return 0;
  }
}

/// Throws InvalidArgument naming `parameter` unless `which` has classes (toy_classes > 0).
inline void require_labeled(ToyDataset which, std::string_view parameter = "dataset") {
  detail::require_valid(which);
  ddpm::detail::require(
      toy_classes(which) > 0, std::string(parameter), to_string(which),
      "8gaussians (classes 0..7: the mixture component), moons (0 outer, 1 inner moon) or "
      "circles (0 outer, 1 inner circle): the data sets with classes");
}

/// sample_toy2d's points (the same rows, bitwise) with each point's class in `labels`: the label
/// is a by-product of the draws that made the point (toy_label), not a new draw. `which` must have
/// classes (require_labeled).
///
///   std::vector<int> y;
///   Batch<float> x = sample_toy2d_labeled<float>(ToyDataset::eight_gaussians, 512, 42, y);
template <class Real = double>
Batch<Real> sample_toy2d_labeled(ToyDataset which, Index n, std::uint64_t seed,
                                 std::vector<int>& labels, Index first_index = 0) {
  require_labeled(which);
  Batch<Real> out = sample_toy2d<Real>(which, n, seed, first_index);
  labels.resize(static_cast<std::size_t>(n));
  const CounterRng rng(seed);
  ddpm::detail::parallel_for(n, [&](Index i) {
    labels[static_cast<std::size_t>(i)] =
        detail::toy_label(which, rng, static_cast<std::uint32_t>(first_index + i));
  });
  return out;
}

/// The first n points of class `label` among sample_toy2d_labeled(which, ..., seed)'s rows 0, 1,
/// 2, ...: draws of the class-conditional distribution (the reference of a conditional model).
template <class Real = double>
Batch<Real> sample_toy2d_class(ToyDataset which, int label, Index n, std::uint64_t seed) {
  require_labeled(which);
  ddpm::detail::require(label >= 0 && label < toy_classes(which), "label", label, [&] {
    return "a class of " + std::string(to_string(which)) + ", 0.." +
           std::to_string(toy_classes(which) - 1);
  });
  ddpm::detail::require(n >= 0, "n", n, "n >= 0");
  const CounterRng rng(seed);
  std::vector<std::uint32_t> rows;
  rows.reserve(static_cast<std::size_t>(n));
  for (Index sample = 0; static_cast<Index>(rows.size()) < n; ++sample) {
    ddpm::detail::require(sample < detail::kMaxToySamples, "n", n,
                          "a number of points the counter RNG's 2^32 samples hold");
    const auto index = static_cast<std::uint32_t>(sample);
    if (detail::toy_label(which, rng, index) == label) rows.push_back(index);
  }
  Batch<Real> out(n, 2);
  ddpm::detail::parallel_for(n, [&](Index i) {
    const std::array<double, 2> p =
        detail::toy_point(which, rng, rows[static_cast<std::size_t>(i)]);
    out(i, 0) = static_cast<Real>(p[0]);
    out(i, 1) = static_cast<Real>(p[1]);
  });
  return out;
}

/// The posterior p(component k | x) of an isotropic mixture for each row of x (n x K, rows sum
/// to 1): w_k N(x; m_k, s_k^2 I) normalized, in log space. With toy_mixture(8gaussians) it is the
/// exact chance that a point came from component k.
[[nodiscard]] inline Batch<double> mixture_posterior(const GaussianMixture& mixture,
                                                     const Batch<double>& x) {
  const Index k = mixture.components(), dim = mixture.dim();
  ddpm::detail::require_shape(x.cols() == dim, "x", x.rows(), x.cols(),
                              "the mixture's dim columns");
  Batch<double> out(x.rows(), k);
  ddpm::detail::parallel_for(x.rows(), [&](Index i) {
    for (Index c = 0; c < k; ++c) {
      const double s2 =
          mixture.stds[static_cast<std::size_t>(c)] * mixture.stds[static_cast<std::size_t>(c)];
      const double sq = (x.row(i) - mixture.means.row(c)).squaredNorm();
      out(i, c) = std::log(mixture.weights[static_cast<std::size_t>(c)]) -
                  0.5 * static_cast<double>(dim) * std::log(s2) - 0.5 * sq / s2;
    }
    const double max = out.row(i).maxCoeff();
    out.row(i) = (out.row(i).array() - max).exp().matrix();
    out.row(i) /= out.row(i).sum();
  });
  return out;
}

}  // namespace ddpm::data
