// SPDX-License-Identifier: MIT
// Options every example subcommand shares (--seed, --threads, --out), the bound on --threads, and
// choice options whose names come from the library's enum tables.
#pragma once

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <thread>

#include "ddpm/core/enum_names.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ddpm_examples {

/// The largest --threads accepted: 4 x the hardware threads, at most 1024 (more only adds
/// per-thread buffers and stacks; far more crashed the OpenMP runtime).
inline int max_threads() {
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  return static_cast<int>(std::min(1024u, 4 * hardware));
}

/// A CLI11 check of --threads: an integer in 1..max_threads(), with a message naming the option,
/// the value and the range.
inline CLI::Validator thread_count() {
  return CLI::Validator(
      [](const std::string& text) -> std::string {
        const std::string allowed =
            "1.." + std::to_string(max_threads()) + " (at most 4 x the " +
            std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
            " hardware threads, and at most 1024)";
        std::size_t end = 0;
        long long value = 0;
        try {
          value = std::stoll(text, &end);
        } catch (const std::exception&) {
          end = 0;
        }
        if (end == 0 || end != text.size() || value < 1 || value > max_threads()) {
          return "invalid --threads = " + text + "; allowed: " + allowed;
        }
        return {};
      },
      "1.." + std::to_string(max_threads()), "thread count");
}

/// A CLI11 check that the value is a finite number accepted by `ok`; refusals read "invalid value
/// <text>; allowed: <allowed>" (CLI11 puts the option's name in front). CLI11's own PositiveNumber
/// prints its range as "0.000000 to <a 309-digit number>" and its Range lets NaN through.
template <class Ok>
CLI::Validator number_check(Ok ok, const std::string& allowed, const std::string& name) {
  return CLI::Validator(
      [ok, allowed](const std::string& text) -> std::string {
        std::size_t end = 0;
        double value = 0.0;
        try {
          value = std::stod(text, &end);
        } catch (const std::exception&) {
          end = 0;
        }
        if (end == 0 || end != text.size() || !std::isfinite(value) || !ok(value)) {
          return "invalid value " + text + "; allowed: " + allowed;
        }
        return {};
      },
      name, name);
}

/// A finite number > 0.
inline CLI::Validator positive() {
  return number_check([](double v) { return v > 0.0; }, "a finite number > 0", "POSITIVE");
}

/// A finite number >= 0.
inline CLI::Validator non_negative() {
  return number_check([](double v) { return v >= 0.0; }, "a finite number >= 0", "NONNEGATIVE");
}

/// A finite number.
inline CLI::Validator finite() {
  return number_check([](double) { return true; }, "a finite number", "FINITE");
}

/// A finite number in [low, high].
inline CLI::Validator range(double low, double high) {
  std::ostringstream bounds;
  bounds << "[" << low << ", " << high << "]";
  return number_check([low, high](double v) { return v >= low && v <= high; },
                      "a number in " + bounds.str(), bounds.str());
}

struct CommonOptions {
  std::uint64_t seed = 0;
  int threads = 0;  ///< 0: not given (OpenMP's default)
  std::string out;  ///< output folder; each program sets its default
};

/// OpenMP's and Eigen's thread count; 0 leaves the defaults.
inline void set_threads(int threads) {
  if (threads <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

/// --seed, --threads and --out of the subcommand `app`; its --threads takes effect (set_threads)
/// once the command line is parsed with `app` chosen.
inline void add_common_options(CLI::App& app, CommonOptions& common) {
  app.add_option("--seed", common.seed, "random seed")->capture_default_str();
  app.add_option("--threads", common.threads, "threads (default: OpenMP's default)")
      ->check(thread_count());
  app.add_option("--out", common.out, "output folder")->capture_default_str();
  app.callback([&common] { set_threads(common.threads); });
}

/// An option that sets an enum by name; the choices come from the enum's table.
template <ddpm::NamedEnum E>
CLI::Option* add_choice(CLI::App& app, const std::string& name, E& value, const std::string& help) {
  return app
      .add_option_function<std::string>(
          name, [&value](const std::string& text) { value = ddpm::parse_enum<E>(text); },
          help + ": " + ddpm::enum_choices<E>())
      ->check(CLI::IsMember(ddpm::enum_names<E>()))
      ->default_str(std::string(ddpm::to_string(value)));
}

}  // namespace ddpm_examples
