// SPDX-License-Identifier: MIT
// The adaptive Dormand-Prince 5(4) solver the probability-flow likelihood integrates with, every
// row of a batch on its own step size, so a row's path never depends on the rows beside it.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm {

/// Options of dormand_prince().
struct DormandPrinceOptions {
  double rtol = 1e-5;         ///< relative tolerance, > 0
  double atol = 1e-5;         ///< absolute tolerance, > 0
  double initial_step = 0.0;  ///< first step; 0: Hairer's heuristic (one extra evaluation)
  /// > 0: steps of exactly this size (the last one shortened), no error control: order checks.
  double fixed_step = 0.0;
  int max_steps = 100000;  ///< per row, accepted and rejected together, >= 1
};

/// What dormand_prince() did, per row.
struct DormandPrinceStats {
  std::vector<int> evaluations;  ///< calls of f that included the row
  std::vector<int> accepted;     ///< accepted steps
  std::vector<int> rejected;     ///< rejected steps
};

namespace detail {

/// The Dormand-Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Norsett & Wanner, Solving
/// ODEs I, table 5.2): a[i] the stage coefficients, b the 5th-order weights (= a[6], FSAL), e =
/// b - b* the difference to the embedded 4th-order weights.
struct DormandPrinceTableau {
  static constexpr std::array<double, 7> c = {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
  static constexpr std::array<std::array<double, 6>, 7> a = {{
      {0, 0, 0, 0, 0, 0},
      {1.0 / 5, 0, 0, 0, 0, 0},
      {3.0 / 40, 9.0 / 40, 0, 0, 0, 0},
      {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0},
      {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0},
      {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0},
      {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84},
  }};
  static constexpr std::array<double, 7> e = {
      71.0 / 57600, 0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40};
};

/// sqrt(mean_j (v_j / (atol + rtol max(|y_j|, |z_j|)))^2), Hairer's error norm.
inline double scaled_rms(const double* v, const double* y, const double* z, Index n, double rtol,
                         double atol) {
  double sum = 0.0;
  for (Index j = 0; j < n; ++j) {
    const double scale = atol + rtol * std::max(std::abs(y[j]), std::abs(z[j]));
    const double q = v[j] / scale;
    sum += q * q;
  }
  return std::sqrt(sum / static_cast<double>(n));
}

inline void check_options(const DormandPrinceOptions& o) {
  require(o.rtol > 0.0 && std::isfinite(o.rtol), "rtol", o.rtol, "a finite tolerance > 0");
  require(o.atol > 0.0 && std::isfinite(o.atol), "atol", o.atol, "a finite tolerance > 0");
  require(o.initial_step >= 0.0 && std::isfinite(o.initial_step), "initial_step", o.initial_step,
          "0 (automatic) or a finite step > 0");
  require(o.fixed_step >= 0.0 && std::isfinite(o.fixed_step), "fixed_step", o.fixed_step,
          "0 (adaptive) or a finite step > 0");
  require(o.max_steps >= 1, "max_steps", o.max_steps, ">= 1");
}

}  // namespace detail

/// Integrates dy/du = f(u, y) from u0 to u1 > u0 for every row of y (in place) with the
/// Dormand-Prince 5(4) pair: 5th-order solution (local extrapolation), FSAL (6 evaluations per
/// step), Hairer's DOPRI5 step control (PI controller, beta = 0.04, safety 0.9, step ratio in
/// [0.2, 10], no growth right after a rejection) and his starting-step heuristic.
///
/// Each row has its own step size, error estimate and counters: a row's result is a function of
/// its own row and index only, so it is the same bits whatever rows share its batch, provided f
/// is row-independent. f is called as `f(rows, u, y_rows, dy_rows)`: `std::span<const Index>
/// rows` the indices (into y) of the rows evaluated, `std::span<const double> u` their times,
/// `const Batch<double>& y_rows` their states (one row each, in that order) and `Batch<double>&
/// dy_rows` (resized by f or already y_rows' shape) the derivatives. Throws std::runtime_error
/// when a row needs more than max_steps steps (the others are then unfinished).
/// \code
///   ddpm::Batch<double> y = ddpm::Batch<double>::Ones(3, 1);
///   auto f = [](std::span<const ddpm::Index>, std::span<const double>,
///               const ddpm::Batch<double>& y, ddpm::Batch<double>& dy) { dy = -y; };
///   ddpm::dormand_prince(f, y, 0.0, 1.0);   // y = exp(-1) in every row
/// \endcode
template <class F>
DormandPrinceStats dormand_prince(F&& f, Batch<double>& y, double u0, double u1,
                                  const DormandPrinceOptions& options = {}) {
  using Tableau = detail::DormandPrinceTableau;
  detail::check_options(options);
  detail::require(std::isfinite(u0) && std::isfinite(u1) && u1 > u0, "u1", u1,
                  "a finite end after the start u0");
  const Index n = y.rows(), width = y.cols();
  DormandPrinceStats stats;
  stats.evaluations.assign(static_cast<std::size_t>(n), 0);
  stats.accepted.assign(static_cast<std::size_t>(n), 0);
  stats.rejected.assign(static_cast<std::size_t>(n), 0);
  if (n == 0 || width == 0) return stats;
  const double rtol = options.rtol, atol = options.atol, span = u1 - u0;
  const bool adaptive = options.fixed_step == 0.0;
  // Hairer's DOPRI5 defaults.
  constexpr double kSafety = 0.9, kBeta = 0.04, kMinRatio = 0.2, kMaxRatio = 10.0;
  constexpr double kExponent = 0.2 - kBeta * 0.75;

  // The unfinished rows, compacted: ids[r] is the row of y that compact row r holds.
  std::vector<Index> ids(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = i;
  std::vector<double> u(static_cast<std::size_t>(n), u0), h(static_cast<std::size_t>(n), 0.0),
      fac_old(static_cast<std::size_t>(n), 1e-4), stage_u(static_cast<std::size_t>(n));
  std::vector<char> rejected_last(static_cast<std::size_t>(n), 0);
  Batch<double> state = y, trial(n, width), next(n, width);
  std::array<Batch<double>, 7> k;
  for (Batch<double>& stage : k) stage.resize(n, width);
  const auto count = [&](Index rows) {
    for (Index r = 0; r < rows; ++r) ++stats.evaluations[static_cast<std::size_t>(ids[r])];
  };
  const auto call = [&](Index rows, const Batch<double>& at, Batch<double>& out) {
    out.resize(rows, width);
    f(std::span<const Index>(ids.data(), static_cast<std::size_t>(rows)),
      std::span<const double>(stage_u.data(), static_cast<std::size_t>(rows)), at, out);
    detail::require_shape(out.rows() == rows && out.cols() == width, "dy", out.rows(), out.cols(),
                          "the shape of y's rows passed to f");
    count(rows);
  };

  std::copy(u.begin(), u.end(), stage_u.begin());
  call(n, state, k[0]);
  if (!adaptive) {
    std::fill(h.begin(), h.end(), options.fixed_step);
  } else if (options.initial_step > 0.0) {
    std::fill(h.begin(), h.end(), options.initial_step);
  } else {
    // Hairer's starting step (Solving ODEs I, II.4): a guess from |y| / |f|, one Euler step to
    // estimate the second derivative, then the step that a 5th-order error of 0.01 allows.
    std::vector<double> d1(static_cast<std::size_t>(n));
    detail::parallel_for(n, 8 * width, [&](Index r) {
      const auto ri = static_cast<std::size_t>(r);
      const double* yr = state.row(r).data();
      const double d0 = detail::scaled_rms(yr, yr, yr, width, rtol, atol);
      Eigen::Map<const Eigen::RowVectorXd> fr(k[0].row(r).data(), width);
      d1[ri] = detail::scaled_rms(fr.data(), yr, yr, width, rtol, atol);
      h[ri] = d0 < 1e-5 || d1[ri] < 1e-5 ? 1e-6 : 0.01 * d0 / d1[ri];
      h[ri] = std::min(h[ri], span);
      trial.row(r) = state.row(r) + h[ri] * k[0].row(r);
      stage_u[ri] = u0 + h[ri];
    });
    call(n, trial, k[1]);
    detail::parallel_for(n, 8 * width, [&](Index r) {
      const auto ri = static_cast<std::size_t>(r);
      const Eigen::RowVectorXd change = k[1].row(r) - k[0].row(r);
      const double* yr = state.row(r).data();
      const double d2 = detail::scaled_rms(change.data(), yr, yr, width, rtol, atol) / h[ri];
      const double largest = std::max(d1[ri], d2);
      const double h1 =
          largest <= 1e-15 ? std::max(1e-6, h[ri] * 1e-3) : std::pow(0.01 / largest, 1.0 / 5.0);
      h[ri] = std::min({100.0 * h[ri], h1, span});
    });
  }

  Index active = n;
  bool exhausted = false;
  while (active > 0 && !exhausted) {
    // This round's step of each row, shortened to land exactly on u1.
    std::vector<double> step(static_cast<std::size_t>(active));
    std::vector<char> last(static_cast<std::size_t>(active));
    for (Index r = 0; r < active; ++r) {
      const auto ri = static_cast<std::size_t>(r);
      last[ri] = h[ri] >= u1 - u[ri];
      step[ri] = last[ri] ? u1 - u[ri] : h[ri];
    }
    trial.resize(active, width);
    for (std::size_t s = 1; s < 7; ++s) {
      detail::parallel_for(active, 8 * width * static_cast<Index>(s), [&](Index r) {
        const auto ri = static_cast<std::size_t>(r);
        Eigen::RowVectorXd sum = Tableau::a[s][0] * k[0].row(r);
        for (std::size_t j = 1; j < s; ++j) sum += Tableau::a[s][j] * k[j].row(r);
        trial.row(r) = state.row(r) + step[ri] * sum;
        stage_u[ri] = last[ri] && Tableau::c[s] == 1.0 ? u1 : u[ri] + Tableau::c[s] * step[ri];
      });
      if (s == 6) next = trial;  // the 5th-order solution: stage 7 is evaluated at it (FSAL)
      call(active, trial, k[s]);
    }
    std::vector<char> done(static_cast<std::size_t>(active), 0);
    detail::parallel_for(active, 16 * width, [&](Index r) {
      const auto ri = static_cast<std::size_t>(r);
      const auto row = static_cast<std::size_t>(ids[ri]);
      bool accept = true;
      double err = 0.0;
      if (adaptive) {
        Eigen::RowVectorXd estimate = Tableau::e[0] * k[0].row(r);
        for (std::size_t j = 1; j < 7; ++j) estimate += Tableau::e[j] * k[j].row(r);
        estimate *= step[ri];
        err = detail::scaled_rms(estimate.data(), state.row(r).data(), next.row(r).data(), width,
                                 rtol, atol);
        if (!std::isfinite(err)) err = 1e10;  // a blown-up stage: reject and shrink hard
        accept = err <= 1.0;
      }
      if (accept) {
        ++stats.accepted[row];
        state.row(r) = next.row(r);
        k[0].row(r) = k[6].row(r);
        u[ri] = last[ri] ? u1 : u[ri] + step[ri];
        done[ri] = last[ri];
        if (adaptive) {
          const double fac11 = std::pow(err, kExponent);
          double fac = fac11 / std::pow(fac_old[ri], kBeta);
          fac = std::max(1.0 / kMaxRatio, std::min(1.0 / kMinRatio, fac / kSafety));
          double h_new = step[ri] / fac;
          if (rejected_last[ri]) h_new = std::min(h_new, step[ri]);
          fac_old[ri] = std::max(err, 1e-4);
          rejected_last[ri] = 0;
          h[ri] = h_new;
        }
      } else {
        ++stats.rejected[row];
        const double fac11 = std::pow(err, kExponent);
        h[ri] = step[ri] / std::min(1.0 / kMinRatio, fac11 / kSafety);
        rejected_last[ri] = 1;
      }
    });
    // Finished rows go back to y; the others are compacted to the front, in order.
    Index kept = 0;
    for (Index r = 0; r < active; ++r) {
      const auto ri = static_cast<std::size_t>(r);
      const auto row = static_cast<std::size_t>(ids[ri]);
      if (done[ri]) {
        y.row(ids[ri]) = state.row(r);
        continue;
      }
      if (stats.accepted[row] + stats.rejected[row] >= options.max_steps) exhausted = true;
      if (kept != r) {
        const auto ki = static_cast<std::size_t>(kept);
        ids[ki] = ids[ri];
        u[ki] = u[ri];
        h[ki] = h[ri];
        fac_old[ki] = fac_old[ri];
        rejected_last[ki] = rejected_last[ri];
        state.row(kept) = state.row(r);
        k[0].row(kept) = k[0].row(r);
      }
      ++kept;
    }
    active = kept;
  }
  if (exhausted) {
    throw std::runtime_error("ddpm: dormand_prince: a row took more than max_steps = " +
                             std::to_string(options.max_steps) +
                             " steps (loosen rtol/atol or raise max_steps)");
  }
  return stats;
}

}  // namespace ddpm
