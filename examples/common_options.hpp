// SPDX-License-Identifier: MIT
// Options every example subcommand shares (--seed, --threads, --out) and applying --threads.
#pragma once

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <cstdint>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ddpm_examples {

struct CommonOptions {
  std::uint64_t seed = 0;
  int threads = 0;
  std::string out;  ///< output folder; each program sets its default
};

inline void add_common_options(CLI::App& app, CommonOptions& common) {
  app.add_option("--seed", common.seed, "random seed")->capture_default_str();
  app.add_option("--threads", common.threads, "threads (0: OpenMP's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--out", common.out, "output folder")->capture_default_str();
}

/// OpenMP's and Eigen's thread count; 0 leaves the defaults.
inline void set_threads(int threads) {
  if (threads <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

}  // namespace ddpm_examples
