// SPDX-License-Identifier: MIT
// The earth mover's distance between two 3D point clouds of equal size: an exact solver
// (shortest augmenting paths, Jonker & Volgenant 1987) and a certified approximation (the
// auction algorithm with ε-scaling, Bertsekas 1988) that stops once its own duality gap proves
// the requested relative accuracy.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/eval/chamfer.hpp"

namespace ddpm::eval {

/// How earth_movers_distance solves the assignment problem.
enum class EmdMethod {
  exact,    ///< shortest augmenting paths: the optimum up to rounding, O(N³) worst case
  auction,  ///< auction with ε-scaling: within relative_tolerance of the optimum, certified
};

/// Options of earth_movers_distance.
struct EmdOptions {
  EmdMethod method =
      EmdMethod::auction;  ///< exact or auction (the default: certified within relative_tolerance)
  /// Auction only: it stops when a matching's mean cost U and a dual lower bound L satisfy
  /// U − L <= relative_tolerance · L, so the returned U is within that fraction of the optimum.
  double relative_tolerance = 1e-3;
};

}  // namespace ddpm::eval

namespace ddpm {
/// The names of the EmdMethod values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<eval::EmdMethod> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "emd method";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<eval::EmdMethod>, 2> names{{
      {eval::EmdMethod::exact, "exact"},
      {eval::EmdMethod::auction, "auction"},
  }};
};
}  // namespace ddpm

namespace ddpm::eval {

/// What the auction returns: the mean cost of the matching it found (an upper bound on the EMD)
/// and a lower bound from its prices (weak duality), so lower_bound <= EMD <= value.
struct EmdBounds {
  double value = 0.0;        ///< mean cost of the matching found: an upper bound on the EMD
  double lower_bound = 0.0;  ///< dual lower bound from the auction's prices
};

namespace detail {

/// Buffers of one EMD computation, reused across pairs: a cost matrix (the only N² memory: 4 N²
/// bytes for the auction, 16 MiB at N = 2048; 8 N² for the exact solver) and O(N) state.
struct EmdWorkspace {
  std::vector<double> cost;  // exact solver
  std::vector<float> auction_cost, auction_prices;
  std::vector<double> v, d;
  std::vector<Index> col_of_row, row_of_col, pred, todo, ready, queue;
};

/// cost(i, j) = |a_i − b_j| (Euclidean, not squared) for i < a.size and every padded column j of
/// b, row-major with row stride b.padded. Padding columns cost about 1.7e100.
inline void euclidean_costs(const PackedCloud& a, const PackedCloud& b, std::vector<double>& cost) {
  using Eigen::internal::ploadu;
  using Eigen::internal::pmadd;
  using Eigen::internal::pmul;
  using Eigen::internal::pset1;
  using Eigen::internal::psqrt;
  using Eigen::internal::pstoreu;
  using Eigen::internal::psub;
  using Packet = CloudPacket;
  cost.resize(static_cast<std::size_t>(a.size * b.padded));
  for (Index i = 0; i < a.size; ++i) {
    const Packet px = pset1<Packet>(a.x()[i]);
    const Packet py = pset1<Packet>(a.y()[i]);
    const Packet pz = pset1<Packet>(a.z()[i]);
    double* row = cost.data() + i * b.padded;
    for (Index j = 0; j < b.padded; j += kCloudLanes) {
      const Packet dx = psub(px, ploadu<Packet>(b.x() + j));
      const Packet dy = psub(py, ploadu<Packet>(b.y() + j));
      const Packet dz = psub(pz, ploadu<Packet>(b.z() + j));
      pstoreu(row + j, psqrt(pmadd(dz, dz, pmadd(dy, dy, pmul(dx, dx)))));
    }
  }
}

/// Σ_i cost(i, π(i)) for the optimal bijection π of an n x n cost matrix (row stride ld):
/// column reduction with a greedy start, then one shortest augmenting path (Dijkstra on reduced
/// costs, lazily updated column potentials v) per row left free, as in Jonker & Volgenant 1987.
/// Exact up to the rounding of the reduced costs; O(n³) in the worst case, much less on
/// geometric costs where most paths are short.
inline double exact_assignment(const double* cost, Index ld, Index n, EmdWorkspace& w) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const auto un = static_cast<std::size_t>(n);
  w.v.assign(un, kInf);
  w.row_of_col.assign(un, -1);
  w.col_of_row.assign(un, -1);
  std::vector<Index>& argmin = w.pred;  // column reduction's argmin rows, reused as pred below
  argmin.assign(un, 0);
  // Column reduction v_j = min_i c_ij, row by row so the matrix streams; the first minimal row
  // keeps the column when it is still free (its reduced cost is 0, the minimum of its row).
  for (Index i = 0; i < n; ++i) {
    const double* row = cost + i * ld;
    for (Index j = 0; j < n; ++j) {
      if (row[j] < w.v[static_cast<std::size_t>(j)]) {
        w.v[static_cast<std::size_t>(j)] = row[j];
        argmin[static_cast<std::size_t>(j)] = i;
      }
    }
  }
  for (Index j = 0; j < n; ++j) {
    const Index i = argmin[static_cast<std::size_t>(j)];
    if (w.col_of_row[static_cast<std::size_t>(i)] < 0) {
      w.col_of_row[static_cast<std::size_t>(i)] = j;
      w.row_of_col[static_cast<std::size_t>(j)] = i;
    }
  }
  w.d.assign(un, 0.0);
  w.pred.assign(un, 0);
  w.todo.resize(un);
  w.ready.resize(un);
  for (Index free_row = 0; free_row < n; ++free_row) {
    if (w.col_of_row[static_cast<std::size_t>(free_row)] >= 0) continue;
    // Dijkstra from free_row over the columns: d[j] is the length of the shortest alternating
    // path to column j found so far (reduced costs c_ij − v_j − u_i, with u_i implicit).
    const double* frow = cost + free_row * ld;
    Index todo_count = n;
    Index best_pos = 0;
    double best = kInf;
    for (Index j = 0; j < n; ++j) {
      const double dj = frow[j] - w.v[static_cast<std::size_t>(j)];
      w.d[static_cast<std::size_t>(j)] = dj;
      w.pred[static_cast<std::size_t>(j)] = free_row;
      w.todo[static_cast<std::size_t>(j)] = j;
      if (dj < best) {
        best = dj;
        best_pos = j;
      }
    }
    Index ready_count = 0;
    Index end_col = -1;
    double mu = 0.0;
    for (;;) {
      mu = best;
      const Index j = w.todo[static_cast<std::size_t>(best_pos)];
      if (w.row_of_col[static_cast<std::size_t>(j)] < 0) {
        end_col = j;
        break;
      }
      // Column j is scanned: move it from todo to ready and relax through its row.
      w.todo[static_cast<std::size_t>(best_pos)] = w.todo[static_cast<std::size_t>(todo_count - 1)];
      --todo_count;
      w.ready[static_cast<std::size_t>(ready_count++)] = j;
      const Index i = w.row_of_col[static_cast<std::size_t>(j)];
      const double* row = cost + i * ld;
      const double h = row[j] - w.v[static_cast<std::size_t>(j)] - mu;
      best = kInf;
      best_pos = 0;
      for (Index k = 0; k < todo_count; ++k) {
        const Index col = w.todo[static_cast<std::size_t>(k)];
        double& dcol = w.d[static_cast<std::size_t>(col)];
        const double through = row[col] - w.v[static_cast<std::size_t>(col)] - h;
        if (through < dcol) {
          dcol = through;
          w.pred[static_cast<std::size_t>(col)] = i;
        }
        if (dcol < best) {
          best = dcol;
          best_pos = k;
        }
      }
    }
    // Potentials of the scanned columns move so that the path's edges become tight.
    for (Index r = 0; r < ready_count; ++r) {
      const auto col = static_cast<std::size_t>(w.ready[static_cast<std::size_t>(r)]);
      w.v[col] += w.d[col] - mu;
    }
    // Augment: flip the alternating path that ends at end_col.
    for (Index j = end_col;;) {
      const Index i = w.pred[static_cast<std::size_t>(j)];
      w.row_of_col[static_cast<std::size_t>(j)] = i;
      const Index previous = w.col_of_row[static_cast<std::size_t>(i)];
      w.col_of_row[static_cast<std::size_t>(i)] = j;
      if (i == free_row) break;
      j = previous;
    }
  }
  double total = 0.0;
  for (Index i = 0; i < n; ++i) total += cost[i * ld + w.col_of_row[static_cast<std::size_t>(i)]];
  return total;
}

/// The best and second-best of cost_row[j] + prices[j] over j < padded (a multiple of
/// kTwoBestBlock<Real>), and the first j that attains the best. kTwoBestChains independent sets
/// of per-lane minima hide the latency of the min chain; the merge keeps the first index, as a
/// scalar scan would. Indices travel as Real, exact below 2^24 for float.
struct TwoBest {
  double best;
  double second;
  Index index;
};

inline constexpr Index kTwoBestChains = 4;
template <class Real>
inline constexpr Index kTwoBestBlock = kTwoBestChains* Eigen::internal::packet_traits<Real>::size;

template <class Real>
TwoBest two_best(const Real* cost_row, const Real* prices, Index padded) {
  using Eigen::internal::padd;
  using Eigen::internal::pcmp_lt;
  using Eigen::internal::ploadu;
  using Eigen::internal::pmax;
  using Eigen::internal::pmin;
  using Eigen::internal::pselect;
  using Eigen::internal::pset1;
  using Eigen::internal::pstoreu;
  using Packet = typename Eigen::internal::packet_traits<Real>::type;
  constexpr Index kLanes = Eigen::internal::packet_traits<Real>::size;
  constexpr Index kWidth = kTwoBestBlock<Real>;
  constexpr Real kInf = std::numeric_limits<Real>::infinity();
  Packet m1[kTwoBestChains];
  Packet m2[kTwoBestChains];
  Packet where[kTwoBestChains];
  Packet at_j[kTwoBestChains];
  alignas(64) Real lane[kWidth];
  for (Index l = 0; l < kWidth; ++l) lane[l] = static_cast<Real>(l);
  for (Index c = 0; c < kTwoBestChains; ++c) {
    m1[c] = pset1<Packet>(kInf);
    m2[c] = m1[c];
    where[c] = pset1<Packet>(Real(0));
    at_j[c] = ploadu<Packet>(lane + c * kLanes);
  }
  const Packet step = pset1<Packet>(static_cast<Real>(kWidth));
  for (Index j = 0; j < padded; j += kWidth) {
    for (Index c = 0; c < kTwoBestChains; ++c) {
      const Index at = j + c * kLanes;
      const Packet value = padd(ploadu<Packet>(cost_row + at), ploadu<Packet>(prices + at));
      m2[c] = pmin(m2[c], pmax(m1[c], value));
      where[c] = pselect(pcmp_lt(value, m1[c]), at_j[c], where[c]);
      m1[c] = pmin(m1[c], value);
      at_j[c] = padd(at_j[c], step);
    }
  }
  // Fold the chains into chain 0 in SIMD: the smaller best wins, on a tie the smaller index.
  for (Index c = 1; c < kTwoBestChains; ++c) {
    using Eigen::internal::pand;
    using Eigen::internal::pcmp_eq;
    using Eigen::internal::por;
    const Packet take =
        por(pcmp_lt(m1[c], m1[0]), pand(pcmp_eq(m1[c], m1[0]), pcmp_lt(where[c], where[0])));
    m2[0] = pmin(pmin(m2[0], m2[c]), pmax(m1[0], m1[c]));
    where[0] = pselect(take, where[c], where[0]);
    m1[0] = pmin(m1[0], m1[c]);
  }
  alignas(64) Real b1[kLanes];
  alignas(64) Real b2[kLanes];
  alignas(64) Real at[kLanes];
  pstoreu(b1, m1[0]);
  pstoreu(b2, m2[0]);
  pstoreu(at, where[0]);
  TwoBest out{b1[0], b2[0], static_cast<Index>(at[0])};
  for (Index l = 1; l < kLanes; ++l) {
    const auto lane_at = static_cast<Index>(at[l]);
    if (b1[l] < out.best || (b1[l] == out.best && lane_at < out.index)) {
      out.second = std::min<double>(out.best, b2[l]);
      out.best = b1[l];
      out.index = lane_at;
    } else {
      out.second = std::min<double>(out.second, b1[l]);
    }
    out.second = std::min<double>(out.second, b2[l]);
  }
  return out;
}

/// Float costs |a_i − b_j| for the auction (each computed in double, then rounded: relative
/// error <= 2^-24), rows of stride ld = b.size rounded up to a multiple of kTwoBestBlock<float>,
/// padding +inf. Float halves the memory the bidding loop streams through and doubles its SIMD
/// width.
inline Index auction_costs(const PackedCloud& a, const PackedCloud& b, std::vector<float>& cost,
                           std::vector<double>& row) {
  constexpr Index kBlock = kTwoBestBlock<float>;
  const Index ld = (b.size + kBlock - 1) / kBlock * kBlock;
  cost.assign(static_cast<std::size_t>(a.size * ld), std::numeric_limits<float>::infinity());
  PackedCloud one;
  for (Index i = 0; i < a.size; ++i) {
    // One row at a time through the double kernel (a one-point cloud), then rounded.
    one.size = 1;
    one.padded = kCloudLanes;
    one.coords.assign(static_cast<std::size_t>(3 * kCloudLanes), 0.0);
    one.coords[0] = a.x()[i];
    one.coords[static_cast<std::size_t>(kCloudLanes)] = a.y()[i];
    one.coords[static_cast<std::size_t>(2 * kCloudLanes)] = a.z()[i];
    euclidean_costs(one, b, row);
    float* out = cost.data() + i * ld;
    for (Index j = 0; j < b.size; ++j)
      out[j] = static_cast<float>(row[static_cast<std::size_t>(j)]);
  }
  return ld;
}

// Each ε-scaling phase divides ε by this (Bertsekas recommends 4 to 10; 4, 5, 7 and 10 were
// within 20 % of each other in time at N = 1024).
inline constexpr double kAuctionEpsilonFactor = 5.0;

// The last ε tried, as a fraction of the largest cost: float prices near the largest cost have
// a resolution of 2^-24 of it, so ε stays far above that. Tolerances the auction has not proved
// by then are finished by the exact solver.
inline constexpr double kAuctionSmallestEpsilon = 1.0 / 65536.0;

/// The EMD totals (Σ over the matching, not the mean) of a and b by the forward auction
/// (Gauss-Seidel, one bidder at a time in FIFO order) with ε-scaling, on float costs and
/// prices. After each phase every person holds an object within ε of its best, so the matching
/// costs at most n ε more than the optimum; the phases go on until the matching's cost U and the
/// dual bound L = Σ_i min_j (c_ij + p_j) − Σ_j p_j (<= optimum for ANY prices p) satisfy
/// U − L <= relative_tolerance · L. U is summed in double from the coordinates; L is lowered by
/// a bound on the float rounding, so lower_bound <= optimum <= value holds exactly.
inline EmdBounds auction_totals(const PackedCloud& a, const PackedCloud& b,
                                double relative_tolerance, EmdWorkspace& w) {
  const Index n = a.size;
  const auto un = static_cast<std::size_t>(n);
  const Index ld = auction_costs(a, b, w.auction_cost, w.d);
  const float* cost = w.auction_cost.data();
  double largest = 0.0;
  for (Index i = 0; i < n * ld; ++i) {
    if (cost[i] != std::numeric_limits<float>::infinity()) {
      largest = std::max(largest, static_cast<double>(cost[i]));
    }
  }
  const auto true_cost = [&](Index i, Index j) {
    const double dx = a.x()[i] - b.x()[j];
    const double dy = a.y()[i] - b.y()[j];
    const double dz = a.z()[i] - b.z()[j];
    return std::sqrt(dx * dx + dy * dy + dz * dz);
  };
  if (n == 1) return {true_cost(0, 0), true_cost(0, 0)};
  if (largest == 0.0) return {0.0, 0.0};
  w.auction_prices.assign(static_cast<std::size_t>(ld), 0.0F);
  w.col_of_row.assign(un, -1);
  w.row_of_col.assign(static_cast<std::size_t>(ld), -1);
  w.queue.resize(un);
  float* prices = w.auction_prices.data();
  double epsilon = largest / 4.0;
  EmdBounds totals;
  for (;;) {
    std::fill(w.col_of_row.begin(), w.col_of_row.end(), -1);
    std::fill(w.row_of_col.begin(), w.row_of_col.end(), -1);
    // The queue is a ring of the persons without an object, at most n at a time.
    for (Index i = 0; i < n; ++i) w.queue[static_cast<std::size_t>(i)] = i;
    Index head = 0;
    Index waiting = n;
    while (waiting > 0) {
      const Index i = w.queue[static_cast<std::size_t>(head)];
      head = head + 1 == n ? 0 : head + 1;
      --waiting;
      const TwoBest bid = two_best(cost + i * ld, prices, ld);
      const auto j = static_cast<std::size_t>(bid.index);
      // Raise the price so that object j is now ε worse than the second best for i.
      prices[j] = static_cast<float>(bid.second + epsilon - cost[i * ld + bid.index]);
      const Index outbid = w.row_of_col[j];
      w.row_of_col[j] = i;
      w.col_of_row[static_cast<std::size_t>(i)] = bid.index;
      if (outbid >= 0) {
        w.col_of_row[static_cast<std::size_t>(outbid)] = -1;
        Index tail = head + waiting;
        if (tail >= n) tail -= n;
        w.queue[static_cast<std::size_t>(tail)] = outbid;
        ++waiting;
      }
    }
    double upper = 0.0;
    double lower = 0.0;
    double price_sum = 0.0;
    double largest_price = 0.0;
    for (Index i = 0; i < n; ++i) {
      upper += true_cost(i, w.col_of_row[static_cast<std::size_t>(i)]);
      lower += two_best(cost + i * ld, prices, ld).best;
    }
    for (Index j = 0; j < n; ++j) {
      price_sum += prices[j];
      largest_price = std::max(largest_price, std::abs(static_cast<double>(prices[j])));
    }
    // Each min_j (c_ij + p_j) came from a rounded cost plus a price in float: off by at most
    // 2^-23 (largest + largest_price) with margin.
    const double rounding = static_cast<double>(n) * 0x1p-22 * (largest + largest_price);
    totals = {upper, std::max(lower - price_sum - rounding, 0.0)};
    if (upper - totals.lower_bound <= relative_tolerance * totals.lower_bound) break;
    if (epsilon <= largest * kAuctionSmallestEpsilon) {
      // Not proved within float resolution: solve exactly instead.
      euclidean_costs(a, b, w.cost);
      const double exact = exact_assignment(w.cost.data(), b.padded, n, w);
      return {exact, exact};
    }
    epsilon /= kAuctionEpsilonFactor;
  }
  return totals;
}

/// Throws unless x and y are clouds with the same number of points.
template <class Real>
void require_equal_clouds(const Batch<Real>& x, const Batch<Real>& y) {
  require_cloud(x, "x");
  require_cloud(y, "y");
  ddpm::detail::require_shape(y.rows() == x.rows(), "y", y.rows(), y.cols(),
                              "as many points as x (" + ddpm::detail::to_text(x.rows()) +
                                  "): the EMD here matches points one to one");
}

inline void require_emd_options(const EmdOptions& options) {
  ddpm::detail::require(options.relative_tolerance > 0.0 && options.relative_tolerance < 1.0,
                        "relative_tolerance", options.relative_tolerance,
                        "a fraction in (0, 1), e.g. 1e-3");
}

/// The EMD of two packed clouds of equal size with the chosen method (mean cost per point).
inline EmdBounds emd_packed(const PackedCloud& a, const PackedCloud& b, const EmdOptions& options,
                            EmdWorkspace& w) {
  const double n = static_cast<double>(a.size);
  if (options.method == EmdMethod::exact) {
    euclidean_costs(a, b, w.cost);
    const double value = exact_assignment(w.cost.data(), b.padded, a.size, w) / n;
    return {value, value};
  }
  const EmdBounds totals = auction_totals(a, b, options.relative_tolerance, w);
  return {totals.value / n, totals.lower_bound / n};
}

}  // namespace detail

/// The exact earth mover's distance between two clouds of N points each:
///
///   EMD(X, Y) = min over bijections π of (1/N) Σ_i |x_i − y_π(i)|
///
/// with Euclidean (NOT squared) distances: the convention of PointFlow's evaluation (its
/// match_cost sums |x − y| over the matching and divides by N), which Luo & Hu 2021 cite for
/// their tables. Solved in double by shortest augmenting paths; O(N³) worst case and 8 N² bytes.
///
///   double emd = ddpm::eval::emd_exact(cloud_a, cloud_b);
template <class Real>
double emd_exact(const Batch<Real>& x, const Batch<Real>& y) {
  detail::require_equal_clouds(x, y);
  detail::PackedCloud a;
  detail::PackedCloud b;
  detail::pack_cloud(x.data(), x.rows(), {}, a);
  detail::pack_cloud(y.data(), y.rows(), {}, b);
  detail::EmdWorkspace w;
  return detail::emd_packed(a, b, {EmdMethod::exact, 0.5}, w).value;
}

/// The EMD (as emd_exact) bracketed by the auction algorithm: `value` is the mean cost of a real
/// matching, `lower_bound` a dual bound, and value − lower_bound <= relative_tolerance ·
/// lower_bound, so value overestimates the EMD by at most that fraction.
template <class Real>
EmdBounds emd_auction(const Batch<Real>& x, const Batch<Real>& y,
                      double relative_tolerance = EmdOptions{}.relative_tolerance) {
  detail::require_equal_clouds(x, y);
  const EmdOptions options{EmdMethod::auction, relative_tolerance};
  detail::require_emd_options(options);
  detail::PackedCloud a;
  detail::PackedCloud b;
  detail::pack_cloud(x.data(), x.rows(), {}, a);
  detail::pack_cloud(y.data(), y.rows(), {}, b);
  detail::EmdWorkspace w;
  return detail::emd_packed(a, b, options, w);
}

/// The EMD by the method of `options` (the auction's upper value, or the exact optimum).
template <class Real>
double earth_movers_distance(const Batch<Real>& x, const Batch<Real>& y,
                             const EmdOptions& options = {}) {
  detail::require_equal_clouds(x, y);
  detail::require_emd_options(options);
  detail::PackedCloud a;
  detail::PackedCloud b;
  detail::pack_cloud(x.data(), x.rows(), {}, a);
  detail::pack_cloud(y.data(), y.rows(), {}, b);
  detail::EmdWorkspace w;
  return detail::emd_packed(a, b, options, w).value;
}

}  // namespace ddpm::eval
