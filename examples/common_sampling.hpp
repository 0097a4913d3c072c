// SPDX-License-Identifier: MIT
// Sampling from a given x_T (--x-init FILE.npy): the option, the file read and checked against the
// data's shape, and the call that starts ddpm::sample_labeled_from at it instead of the prior, so
// that a deterministic sampler compares with another framework's point for point.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/guidance.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/samplers/sample.hpp"

namespace ddpm_examples {

/// sample_labeled_from when `x_init` is given (non-null), else ddpm::sample_labeled: the one call
/// the programs make.
template <class Real, class M, class C, class OnStep = ddpm::NoProgress>
ddpm::Batch<Real> sample_labeled_or_from(const ddpm::LabeledSampling& options,
                                         const ddpm::GaussianDiffusion<Real>& diffusion, M& model,
                                         C* classifier, std::span<const int> labels,
                                         ddpm::Index dim, const ddpm::Batch<Real>* x_init,
                                         const ddpm::CounterRng& rng, OnStep&& on_step = {}) {
  if (x_init == nullptr) {
    return ddpm::sample_labeled<Real>(options, diffusion, model, classifier, labels, dim, rng,
                                      std::forward<OnStep>(on_step));
  }
  ddpm::detail::require(x_init->cols() == dim, "x_init columns", x_init->cols(),
                        "the data dimension " + std::to_string(dim));
  return ddpm::sample_labeled_from<Real>(options, diffusion, model, classifier, labels, *x_init,
                                         rng, std::forward<OnStep>(on_step));
}

/// --x-init FILE.npy: the x_T every sample starts from (in the model's units: the prior's
/// N(0, I), before any data standardization is undone).
struct XInit {
  std::string path;           ///< empty: draw x_T from the prior (the usual)
  const CLI::Option* n = {};  ///< the command's --n, to tell a given --n from its default

  [[nodiscard]] bool given() const noexcept { return !path.empty(); }
};

/// Adds --x-init to a sample command whose --n option is `n_option` (added before).
inline void add_x_init_option(CLI::App& app, XInit& x_init, const CLI::Option* n_option,
                              const std::string& shapes) {
  x_init.n = n_option;
  app.add_option(
         "--x-init", x_init.path,
         "start the reverse process from this x_T instead of drawn noise: a .npy array of " +
             shapes +
             " (float32 or float64, the model's units); the number of samples is the "
             "file's (--n, if given, must equal it). With --sampler ddim (eta 0) the "
             "samples are a deterministic function of the file")
      ->check(CLI::ExistingFile);
}

/// The rows of --x-init `path` as a batch of n x dim: the array must be N x dim or N x
/// `sample_shape` (e.g. N x C x H x W for images of dim = C * H * W), float32 or float64, finite.
/// `expected` says what it should be in the error message.
template <class Real>
ddpm::Batch<Real> read_x_init(const std::string& path,
                              const std::vector<std::uint64_t>& sample_shape,
                              const std::string& expected) {
  const ddpm::io::NpyArray a = ddpm::io::read_npy(path);
  std::uint64_t dim = 1;
  for (const std::uint64_t d : sample_shape) dim *= d;
  const auto shape = std::span<const std::uint64_t>(a.shape);
  const std::string value = "'" + path + "' (shape " + ddpm::io::detail::shape_text(shape) +
                            ", dtype " + std::string(ddpm::io::npy_descr(a.dtype)) + ")";
  const bool flat = a.shape.size() == 2 && a.shape[1] == dim;
  const bool full = a.shape.size() == sample_shape.size() + 1 &&
                    std::equal(sample_shape.begin(), sample_shape.end(), a.shape.begin() + 1);
  ddpm::detail::require(
      a.dtype != ddpm::io::NpyDtype::u8 && !a.shape.empty() && a.shape[0] >= 1 && (flat || full),
      "--x-init", value, expected + ", float32 or float64, at least one sample");
  const std::vector<Real> values = a.values<Real>();
  const auto n = static_cast<ddpm::Index>(a.shape[0]);
  ddpm::Batch<Real> x(n, static_cast<ddpm::Index>(dim));
  std::copy(values.begin(), values.end(), x.data());  // both row-major, one sample per row
  ddpm::detail::require(x.allFinite(), "--x-init", value, "finite values");
  return x;
}

/// The number of samples with --x-init: the file's; a --n given on the command line must agree.
inline int samples_of(const XInit& x_init, int n, ddpm::Index file_n) {
  const bool n_given = x_init.n != nullptr && x_init.n->count() > 0;
  ddpm::detail::require(!n_given || n == file_n, "--n", n, [&] {
    return std::to_string(file_n) + ", the samples of --x-init '" + x_init.path +
           "' (or leave --n out: the file sets it)";
  });
  return static_cast<int>(file_n);
}

}  // namespace ddpm_examples
