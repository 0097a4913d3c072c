// SPDX-License-Identifier: MIT
// Helpers shared by the test suites: random batches and the check of ddpm's bad-input exceptions.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/gaussian_mixture.hpp"

namespace ddpm::test {

/// A fresh directory under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir() {
    const auto unique = std::chrono::steady_clock::now().time_since_epoch().count();
    path = std::filesystem::temp_directory_path() /
           ("ddpm_test_" + std::to_string(::getpid()) + "_" + std::to_string(unique) + "_" +
            std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// Writes `content` to a file `name` in the directory; returns its path.
  std::filesystem::path write(const std::string& name, const std::string& content) const {
    const std::filesystem::path file = path / name;
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }

  std::filesystem::path path;
};

/// A rows x cols batch of standard normals, reproducible from `seed`.
template <class Real = double>
Batch<Real> random_batch(Index rows, Index cols, std::uint64_t seed) {
  Batch<Real> m(rows, cols);
  CounterRng(seed).fill_normal(m, stream::user, 0, 0);
  return m;
}

/// The one-component mixture N(mean, sd^2 I), whose exact reverse process is known in closed form.
inline GaussianMixture one_gaussian(const std::vector<double>& mean, double sd) {
  GaussianMixture mixture;
  mixture.means = Batch<double>(1, static_cast<Index>(mean.size()));
  for (std::size_t j = 0; j < mean.size(); ++j) mixture.means(0, static_cast<Index>(j)) = mean[j];
  mixture.stds = {sd};
  mixture.weights = {1.0};
  return mixture;
}

/// Three well-separated 2D components with unequal weights and widths.
inline GaussianMixture three_components() {
  GaussianMixture m;
  m.means.resize(3, 2);
  m.means << -2.0, 0.0,  //
      1.5, 1.5,          //
      1.0, -2.0;
  m.stds = {0.3, 0.5, 0.2};
  m.weights = {0.5, 0.3, 0.2};
  return m;
}

/// A Denoiser that predicts zeros and counts its calls, in and out of training mode: checks that
/// an entry point switches a model to inference for the call and restores it.
struct SwitchableZeroModel {
  bool training_ = true;
  int calls_in_training = 0, calls = 0;
  bool training() const { return training_; }
  void set_training(bool on) { training_ = on; }
  void predict(const Batch<double>& x, std::span<const int>, Batch<double>& out) {
    ++calls;
    calls_in_training += training_ ? 1 : 0;
    out.setZero(x.rows(), x.cols());
  }
};

/// The elements of a batch as one span.
template <class Real>
std::span<Real> flat(Batch<Real>& m) {
  return {m.data(), static_cast<std::size_t>(m.size())};
}

/// Checks that f() throws ddpm::InvalidArgument, also catchable as std::invalid_argument, whose
/// parameter() is `parameter` and whose message has the documented "ddpm: invalid <param> = " form.
template <class F>
void check_invalid(int line, const std::string& parameter, F&& f) {
  INFO("call on line ", line, " should reject parameter ", parameter);
  CHECK_THROWS_AS(f(), ddpm::InvalidArgument);
  CHECK_THROWS_AS(f(), std::invalid_argument);
  std::string what, named;
  try {
    f();
  } catch (const ddpm::InvalidArgument& e) {
    what = e.what();
    named = e.parameter();
  }
  CAPTURE(what);
  CHECK(named == parameter);
  CHECK(what.find("ddpm: invalid " + parameter + " = ") != std::string::npos);
}

}  // namespace ddpm::test

#define DDPM_CHECK_INVALID(parameter, ...) \
  ::ddpm::test::check_invalid(__LINE__, parameter, [&] { (void)(__VA_ARGS__); })
