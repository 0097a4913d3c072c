// SPDX-License-Identifier: MIT
// Chooses the thread count of a loop of similar steps (training) from their measured durations.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"

namespace ddpm {

/// A model whose results do not depend on the OpenMP thread count, declared by
/// `static constexpr bool thread_count_invariant = true;` (every bundled network has it). Only
/// such a model's training lets a ThreadTuner change the count; a user's model whose numerics
/// depend on it (a parallel reduction in another order, another library's threads) keeps the count
/// it is given, and so stays reproducible.
template <class Model>
concept ThreadCountInvariant = requires {
  requires Model::thread_count_invariant;
};

/// Picks how many OpenMP threads the next step of a loop uses, from how long the steps took.
///
/// Why: on a machine shared with other processes, a core kept busy by someone else makes every
/// barrier of a multi-threaded step wait for a thread that is not running. A ToyMLP training step
/// (many short parallel regions) took 13x its quiet time with 2 threads, libgomp's default wait
/// policy and one of two cores busy, where 1 thread took 1.6x; OpenMP reads its wait policy before
/// main, so a program cannot fix it there. ddpm's kernels give bitwise the same results for any
/// thread count, so the count can change between steps and only the speed changes.
///
/// How: the candidates are max_threads, max_threads - 1 and its halvings down to 1. Each is tried
/// for `probe_steps` steps and the one with the smallest median step time is kept. The probe is
/// repeated when the median of the last `probe_steps` steps drifts above `drift` times the chosen
/// count's median (another process started), and otherwise after `reprobe_seconds` or 50 times
/// the probe's own duration, whichever is longer (so that probing costs little on long steps:
/// a probe of a UNet step at 1 and 2 threads takes about 4 s, so it repeats every few minutes).
///
///   ThreadTuner tuner(detail::max_threads());
///   while (...) { tuner.begin_step(); const auto t0 = now(); step(); tuner.end_step(now() - t0); }
class ThreadTuner {
 public:
  /// How often and how long the tuner probes.
  struct Options {
    int probe_steps = 5;            ///< steps timed per candidate
    double reprobe_seconds = 20.0;  ///< at least this long between probes, unless drifting
    double drift = 1.5;             ///< reprobe when recent steps are this much slower
  };

  /// Tunes between 1 and `max_threads` threads with the default options.
  explicit ThreadTuner(int max_threads) : ThreadTuner(max_threads, Options{}) {}

  /// Tunes between 1 and `max_threads` threads; the first probe starts with the next step.
  ThreadTuner(int max_threads, Options options)
      : options_(options), saved_threads_(detail::max_threads()) {
    detail::require(max_threads >= 1, "max_threads", max_threads, "an integer >= 1");
    detail::require(options.probe_steps >= 1, "probe_steps", options.probe_steps,
                    "an integer >= 1");
    detail::require(options.reprobe_seconds >= 0.0, "reprobe_seconds", options.reprobe_seconds,
                    "a number >= 0");
    detail::require(options.drift > 1.0, "drift", options.drift, "a number > 1");
    candidates_.push_back(max_threads);
    if (max_threads > 2) candidates_.push_back(max_threads - 1);
    for (int n = max_threads / 2; n >= 1; n /= 2) candidates_.push_back(n);
    candidates_.erase(std::unique(candidates_.begin(), candidates_.end()), candidates_.end());
    chosen_ = candidates_.front();
    start_probe();
  }

  ThreadTuner(const ThreadTuner&) = delete;
  ThreadTuner& operator=(const ThreadTuner&) = delete;
  /// Puts back OpenMP's default thread count as it was at construction.
  ~ThreadTuner() {
#ifdef _OPENMP
    omp_set_num_threads(saved_threads_);
#endif
  }

  /// The thread count for the next step; also set as OpenMP's default (omp_set_num_threads).
  int begin_step() {
    const int n = probing_ ? candidates_[probe_index_] : chosen_;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    return n;
  }

  /// Records how long the step begun last took, in seconds.
  void end_step(double seconds) {
    if (probing_) {
      probe_seconds_ += seconds;
      window_.push_back(seconds);
      if (static_cast<int>(window_.size()) < options_.probe_steps) return;
      medians_[probe_index_] = median(window_);
      window_.clear();
      if (++probe_index_ < candidates_.size()) return;
      const std::size_t best = static_cast<std::size_t>(
          std::min_element(medians_.begin(), medians_.end()) - medians_.begin());
      chosen_ = candidates_[best];
      chosen_median_ = medians_[best];
      probing_ = false;
      last_probe_seconds_ = probe_seconds_;
      since_probe_ = 0.0;
      ++probes_;
      return;
    }
    since_probe_ += seconds;
    window_.push_back(seconds);
    if (static_cast<int>(window_.size()) > options_.probe_steps) window_.erase(window_.begin());
    const bool drifted = static_cast<int>(window_.size()) == options_.probe_steps &&
                         median(window_) > options_.drift * chosen_median_;
    if (drifted || since_probe_ >= std::max(options_.reprobe_seconds, 50.0 * last_probe_seconds_)) {
      start_probe();
    }
  }

  /// The count the last probe chose (max_threads before the first probe ends).
  int threads() const { return chosen_; }
  /// The counts tried, largest first.
  const std::vector<int>& candidates() const { return candidates_; }
  /// Probes completed.
  int probes() const { return probes_; }

 private:
  void start_probe() {
    probing_ = true;
    probe_index_ = 0;
    probe_seconds_ = 0.0;
    medians_.assign(candidates_.size(), 0.0);
    window_.clear();
  }

  static double median(std::vector<double> values) {
    const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
    std::nth_element(values.begin(), middle, values.end());
    return *middle;
  }

  Options options_;
  int saved_threads_;
  std::vector<int> candidates_;
  std::vector<double> medians_;
  std::vector<double> window_;
  std::size_t probe_index_ = 0;
  bool probing_ = false;
  int chosen_ = 1;
  double chosen_median_ = 0.0;
  double since_probe_ = 0.0;
  double probe_seconds_ = 0.0;
  double last_probe_seconds_ = 0.0;
  int probes_ = 0;
};

}  // namespace ddpm
