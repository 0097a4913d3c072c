// SPDX-License-Identifier: MIT
// Ranks as threads of one process: a Communicator whose reductions meet at a barrier, so that the
// data-parallel code paths are tested without MPI (and against MPI's own runs in tests/dist).
#pragma once

#include <barrier>
#include <cstdint>
#include <functional>
#include <span>
#include <thread>
#include <vector>

#include "ddpm/core/communicator.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ddpm::test {

/// What the ranks of one group share.
class ThreadGroup {
 public:
  explicit ThreadGroup(int size)
      : size_(size), barrier_(size), sum_parts_(size), max_parts_(size) {}

  /// The communicator of rank `rank` of the group.
  class Rank final : public Communicator {
   public:
    Rank(ThreadGroup& group, int rank) : group_(group), rank_(rank) {}
    [[nodiscard]] int rank() const override { return rank_; }
    [[nodiscard]] int size() const override { return group_.size_; }
    void all_reduce_sum(std::span<std::int64_t> values) override {
      group_.reduce(rank_, values, group_.sum_parts_, [](std::int64_t a, std::int64_t b) {
        // Wrapping addition, as MPI_SUM on two's complement integers.
        return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) +
                                         static_cast<std::uint64_t>(b));
      });
    }
    void all_reduce_max(std::span<double> values) override {
      group_.reduce(rank_, values, group_.max_parts_,
                    [](double a, double b) { return a < b ? b : a; });
    }

   private:
    ThreadGroup& group_;
    int rank_;
  };

  /// Runs body(communicator) on `size` threads, one rank each, with one OpenMP thread per rank.
  static void run(int size, const std::function<void(Communicator&)>& body) {
    ThreadGroup group(size);
    std::vector<std::thread> threads;
    for (int r = 0; r < size; ++r) {
      threads.emplace_back([&group, &body, r] {
#ifdef _OPENMP
        omp_set_num_threads(1);
#endif
        Rank rank(group, r);
        body(rank);
      });
    }
    for (std::thread& t : threads) t.join();
  }

 private:
  // Every rank publishes its span, then each combines all of them in rank order into a copy, and
  // only after all have read does each overwrite its own.
  template <class T, class Combine>
  void reduce(int rank, std::span<T> values, std::vector<std::span<T>>& parts, Combine combine) {
    parts[static_cast<std::size_t>(rank)] = values;
    barrier_.arrive_and_wait();
    std::vector<T> result(parts[0].begin(), parts[0].end());
    for (int r = 1; r < size_; ++r) {
      const std::span<T> part = parts[static_cast<std::size_t>(r)];
      for (std::size_t i = 0; i < result.size(); ++i) result[i] = combine(result[i], part[i]);
    }
    barrier_.arrive_and_wait();
    std::copy(result.begin(), result.end(), values.begin());
  }

  int size_;
  std::barrier<> barrier_;
  std::vector<std::span<std::int64_t>> sum_parts_;
  std::vector<std::span<double>> max_parts_;
};

}  // namespace ddpm::test
