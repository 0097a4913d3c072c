// SPDX-License-Identifier: MIT
// A user's own 2-D points (a CSV or .npy file): loading with every problem named, per-axis
// standardization, and reproducible row draws for training batches and evaluation.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/npy.hpp"

namespace ddpm::data {

/// The 2-D points of `path`, in their own units: a CSV file with a header (columns x and y, or
/// exactly two columns) or, for a name ending in .npy, an N x 2 NumPy array. Throws FormatError
/// naming the file and the problem (shape, non-finite rows, fewer than 4 or more than 2^31
/// points).
inline Batch<double> load_points(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const std::string what = "ddpm: --data file '" + path.string() + "': ";
  Batch<double> points;
  if (extension == ".npy") {
    points = io::read_npy_matrix(path);
    if (points.cols() != 2) {
      throw FormatError(what + "shape (" + std::to_string(points.rows()) + ", " +
                        std::to_string(points.cols()) +
                        "); expected (N, 2), one 2-D point per row");
    }
    for (Index i = 0; i < points.rows(); ++i) {
      if (!points.row(i).allFinite()) {
        throw FormatError(what + "row " + std::to_string(i) + " is not finite (NaN/inf)");
      }
    }
  } else {
    const io::CsvTable table = io::read_csv(path);
    const auto& names = table.columns;
    const bool has_xy = std::find(names.begin(), names.end(), "x") != names.end() &&
                        std::find(names.begin(), names.end(), "y") != names.end();
    if (!has_xy && names.size() != 2) {
      std::string found;
      for (const std::string& name : names) found += " " + name;
      throw FormatError(what + "expected columns named x and y, or exactly two columns; found" +
                        found);
    }
    const Index cx = has_xy ? table.column_index("x") : 0;
    const Index cy = has_xy ? table.column_index("y") : 1;
    points.resize(table.values.rows(), 2);
    // A table without rows has no storage: taking its columns would offset a null pointer.
    if (points.rows() > 0) {
      points.col(0) = table.values.col(cx);
      points.col(1) = table.values.col(cy);
    }
  }
  if (points.rows() < 4 || points.rows() > (Index{1} << 31)) {
    throw FormatError(what + "has " + std::to_string(points.rows()) +
                      " points; between 4 and 2^31 are needed");
  }
  return points;
}

/// Per-column standardization: the model sees (x - mean) / scale, scale the standard deviation.
struct Standardization {
  std::vector<double> mean{};   ///< the column means (empty: identity)
  std::vector<double> scale{};  ///< the standard deviations

  /// The columns' means and population standard deviations; throws FormatError (naming `source`)
  /// if a column is constant or overflows.
  static Standardization fit(const Batch<double>& points, const std::string& source) {
    Standardization s;
    for (Index j = 0; j < points.cols(); ++j) {
      const Eigen::ArrayXd column = points.col(j).array();
      const double mean = column.mean();
      const double sd = std::sqrt((column - mean).square().mean());
      if (!(sd > 0.0) || !std::isfinite(sd)) {
        const std::string name = points.cols() == 2 ? (j == 0 ? "x" : "y") : std::to_string(j);
        throw FormatError("ddpm: --data file '" + source + "': " + name +
                          " has the same value in every row (or overflows); it cannot be "
                          "standardized");
      }
      s.mean.push_back(mean);
      s.scale.push_back(sd);
    }
    return s;
  }
  /// True for the identity (no columns fitted): the model sees the data as they are.
  [[nodiscard]] bool identity() const noexcept { return mean.empty(); }

  /// Points in the model's units: (x - mean) / std per column.
  template <class T, class Derived>
  [[nodiscard]] Batch<T> to_model(const Eigen::MatrixBase<Derived>& x) const {
    Batch<T> out(x.rows(), x.cols());
    for (Index i = 0; i < x.rows(); ++i) {
      for (Index j = 0; j < x.cols(); ++j) {
        const double v = static_cast<double>(x(i, j));
        out(i, j) = static_cast<T>(identity() ? v : (v - mean[j]) / scale[j]);
      }
    }
    return out;
  }
  /// Model outputs in the data's units: x * std + mean per column.
  template <class T>
  [[nodiscard]] Batch<T> to_data(const Batch<T>& x) const {
    if (identity()) return x;
    Batch<T> out(x.rows(), x.cols());
    for (Index i = 0; i < x.rows(); ++i) {
      for (Index j = 0; j < x.cols(); ++j) {
        out(i, j) = static_cast<T>(static_cast<double>(x(i, j)) * scale[j] + mean[j]);
      }
    }
    return out;
  }
};

/// The rows 0..n-1 in an order fixed by `seed` (Fisher-Yates on the counter RNG).
inline std::vector<Index> shuffled_rows(Index n, std::uint64_t seed) {
  std::vector<Index> rows(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = i;
  const CounterRng rng(seed);
  for (Index i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::size_t>(rng.uniform_int(
        stream::data, static_cast<std::uint32_t>(i), 0, static_cast<std::uint64_t>(i + 1)));
    std::swap(rows[static_cast<std::size_t>(i)], rows[j]);
  }
  return rows;
}

/// `count` rows of `points` starting at `first` in `order`.
inline Batch<double> pick_rows(const Batch<double>& points, const std::vector<Index>& order,
                               Index first, Index count) {
  Batch<double> out(count, points.cols());
  for (Index i = 0; i < count; ++i) {
    out.row(i) = points.row(order[static_cast<std::size_t>(first + i)]);
  }
  return out;
}

/// A Trainer data source over fixed rows: row i of batch `step` is row uniform_int(N) of
/// (seed, stream data, i, step), drawn with replacement, so a resumed run draws the same batches.
template <class Real>
struct ResampledRows {
  const Batch<Real>* rows;  ///< the data rows (not owned: must outlive the source)
  std::uint64_t seed;       ///< the seed of the CounterRng whose draws pick the rows
  /// Fills out with batch `step` of n rows.
  void operator()(std::int64_t step, Index n, Batch<Real>& out) const {
    out.resize(n, rows->cols());
    const CounterRng rng(seed);
    const auto count = static_cast<std::uint64_t>(rows->rows());
    for (Index i = 0; i < n; ++i) {
      const std::uint64_t r = rng.uniform_int(stream::data, static_cast<std::uint32_t>(i),
                                              static_cast<std::uint32_t>(step), count);
      out.row(i) = rows->row(static_cast<Index>(r));
    }
  }
};

}  // namespace ddpm::data
