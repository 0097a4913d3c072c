// SPDX-License-Identifier: MIT
// The processes of a data-parallel run, as the Trainer and the samplers need them: a rank, a
// count, and two reductions whose results do not depend on the order the ranks' parts are
// combined in (integer sums and maxima). Everything that must be bitwise the same for any number
// of processes is built on these two: gradients as exact fixed-point sums (core/exact_sum.hpp),
// rows as bit patterns that exactly one rank contributes and the others leave at zero.
// ddpm/dist/mpi.hpp implements it over MPI; the core needs nothing but the standard library.
#pragma once

#include <bit>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm {

/// The group of processes a data-parallel run spans. Every rank must make the same sequence of
/// calls (they are collective).
class Communicator {
 public:
  virtual ~Communicator() = default;
  /// This process's index, 0 .. size() - 1; rank 0 writes the run's files.
  [[nodiscard]] virtual int rank() const = 0;
  /// The number of processes.
  [[nodiscard]] virtual int size() const = 0;
  /// values[i] = the sum over the ranks of their values[i] (two's complement, so exact and
  /// independent of the order of the ranks).
  virtual void all_reduce_sum(std::span<std::int64_t> values) = 0;
  /// values[i] = the maximum over the ranks of their values[i] (NaN must not be passed).
  virtual void all_reduce_max(std::span<double> values) = 0;
};

/// One process: the reductions leave the values as they are.
class SingleProcess final : public Communicator {
 public:
  /// 0.
  [[nodiscard]] int rank() const override { return 0; }
  /// 1.
  [[nodiscard]] int size() const override { return 1; }
  /// Nothing to add.
  void all_reduce_sum(std::span<std::int64_t>) override {}
  /// Nothing to compare.
  void all_reduce_max(std::span<double>) override {}
};

/// The communicator of a run that is not distributed.
inline Communicator& single_process() {
  static SingleProcess instance;
  return instance;
}

/// A half-open range of items [begin, end).
struct ItemRange {
  Index begin = 0;  ///< the first item
  Index end = 0;    ///< one past the last item
  /// end - begin.
  [[nodiscard]] Index size() const noexcept { return end - begin; }
};

/// Part `part` of `parts` near-equal contiguous parts of `items` items (the first parts are the
/// shorter ones when they cannot all be equal): how shards split a batch and ranks split shards
/// or samples.
inline ItemRange split_evenly(Index items, Index parts, Index part) {
  detail::require(parts >= 1, "parts", parts, ">= 1");
  detail::require(part >= 0 && part < parts, "part", part,
                  [&] { return "0 .. " + std::to_string(parts - 1); });
  return {items * part / parts, items * (part + 1) / parts};
}

/// The rows of `items` that this rank computes when the work is split evenly over the ranks.
inline ItemRange rank_share(const Communicator& comm, Index items) {
  return split_evenly(items, comm.size(), comm.rank());
}

namespace detail {

/// The bits of a float or double as a 64-bit integer (zero-extended), and back: the carrier of
/// values that one rank sets and the others leave at 0, so that a sum gathers them exactly.
template <class Real>
std::int64_t to_bits(Real value) noexcept {
  static_assert(std::is_same_v<Real, float> || std::is_same_v<Real, double>);
  if constexpr (std::is_same_v<Real, float>) {
    return static_cast<std::int64_t>(std::bit_cast<std::uint32_t>(value));
  } else {
    return std::bit_cast<std::int64_t>(value);
  }
}

/// The value whose bits to_bits returned.
template <class Real>
Real from_bits(std::int64_t bits) noexcept {
  if constexpr (std::is_same_v<Real, float>) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits));
  } else {
    return std::bit_cast<double>(bits);
  }
}

}  // namespace detail

/// Gathers the rows of a batch computed in parts: on entry each rank holds its own rows `mine` of
/// `batch` (its other rows are ignored); on return every rank holds all rows, bitwise as their
/// ranks computed them. The ranks' `mine` must tile 0 .. batch.rows() without overlap.
template <class Real>
void gather_rows(Communicator& comm, Batch<Real>& batch, ItemRange mine) {
  if (comm.size() == 1) return;
  const Index cols = batch.cols();
  std::vector<std::int64_t> bits(static_cast<std::size_t>(batch.rows() * cols), 0);
  for (Index i = mine.begin; i < mine.end; ++i) {
    for (Index j = 0; j < cols; ++j) {
      bits[static_cast<std::size_t>(i * cols + j)] = detail::to_bits(batch(i, j));
    }
  }
  comm.all_reduce_sum(bits);
  for (Index i = 0; i < batch.rows(); ++i) {
    for (Index j = 0; j < cols; ++j) {
      batch(i, j) = detail::from_bits<Real>(bits[static_cast<std::size_t>(i * cols + j)]);
    }
  }
}

}  // namespace ddpm
