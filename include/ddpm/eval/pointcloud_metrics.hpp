// SPDX-License-Identifier: MIT
// Point-cloud generation and reconstruction metrics (Achlioptas et al. 2018; PointFlow, Yang et
// al. 2019): pairwise Chamfer/EMD matrices between sets of clouds, MMD, COV and 1-NNA.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/eval/chamfer.hpp"
#include "ddpm/eval/emd.hpp"

namespace ddpm::eval {

/// Called as progress(done, total) between blocks of cloud pairs, on the calling thread (never
/// inside a parallel region, so it may print, or throw to cancel).
using PairProgress = std::function<void(Index done, Index total)>;

/// Options of the set metrics. A "set" of S clouds of N points is an (S·N) x 3 Batch: cloud s is
/// rows [s·N, (s+1)·N).
struct PointCloudEvalOptions {
  /// How each EMD is solved (auction within 0.1 % by default; see emd.hpp).
  EmdOptions emd;
  /// Points per cloud used for the EMD: 0 for all N, else this many, rows ⌊k·N/emd_points⌋ for
  /// k = 0..emd_points-1 (an evenly spread subset, which the EMD's O(N²)-and-more cost may need;
  /// the Chamfer distance always uses every point).
  Index emd_points = 0;
  /// false skips the EMD (its matrices stay empty and its metrics are NaN).
  bool compute_emd = true;
  /// Optional progress report, see PairProgress.
  PairProgress progress;
};

/// Distance matrices between the clouds of two sets: entry (i, j) is CD or EMD(a_i, b_j).
struct CloudDistances {
  Eigen::MatrixXd chamfer;  ///< Chamfer distances
  Eigen::MatrixXd emd;      ///< empty when the EMD was skipped
};

/// The six generation metrics (PointFlow's definitions), each for CD and EMD. Lower MMD is
/// better, higher COV is better (1 at most), 1-NNA is best at 0.5.
struct GenerationMetrics {
  double mmd_cd = 0.0;   ///< minimum matching distance (Chamfer)
  double cov_cd = 0.0;   ///< coverage (Chamfer)
  double nna_cd = 0.0;   ///< 1-nearest-neighbour accuracy (Chamfer)
  double mmd_emd = 0.0;  ///< minimum matching distance (EMD)
  double cov_emd = 0.0;  ///< coverage (EMD)
  double nna_emd = 0.0;  ///< 1-nearest-neighbour accuracy (EMD)
};

/// A generated set's metrics with the floor: the same metrics of a second, independent
/// reference set against the reference (what a perfect generator would score at this size).
struct GenerationReport {
  GenerationMetrics generated;  ///< the generated set against the reference set
  GenerationMetrics
      floor;  ///< a second reference set against the first: what a perfect generator scores
};

/// Mean CD and mean EMD between paired clouds (input i vs its reconstruction i).
struct ReconstructionMetrics {
  double cd = 0.0;   ///< mean Chamfer distance
  double emd = 0.0;  ///< mean earth mover's distance
};

/// MMD ("minimum matching distance", Achlioptas et al. 2018): the mean over reference clouds j
/// (columns) of min_i D(i, j) over generated clouds i (rows).
inline double minimum_matching_distance(const Eigen::MatrixXd& gen_ref) {
  ddpm::detail::require_shape(gen_ref.rows() >= 1 && gen_ref.cols() >= 1, "gen_ref", gen_ref.rows(),
                              gen_ref.cols(), "at least 1 x 1");
  double sum = 0.0;
  for (Index j = 0; j < gen_ref.cols(); ++j) sum += gen_ref.col(j).minCoeff();
  return sum / static_cast<double>(gen_ref.cols());
}

/// COV (coverage): the fraction of reference clouds (columns) that are the nearest reference of
/// at least one generated cloud (row). Ties go to the lowest column.
inline double coverage(const Eigen::MatrixXd& gen_ref) {
  ddpm::detail::require_shape(gen_ref.rows() >= 1 && gen_ref.cols() >= 1, "gen_ref", gen_ref.rows(),
                              gen_ref.cols(), "at least 1 x 1");
  std::vector<char> covered(static_cast<std::size_t>(gen_ref.cols()), 0);
  for (Index i = 0; i < gen_ref.rows(); ++i) {
    Index nearest = 0;
    gen_ref.row(i).minCoeff(&nearest);
    covered[static_cast<std::size_t>(nearest)] = 1;
  }
  Index count = 0;
  for (char c : covered) count += c;
  return static_cast<double>(count) / static_cast<double>(gen_ref.cols());
}

/// 1-NNA: the leave-one-out accuracy of the 1-nearest-neighbour classifier over generated ∪
/// reference (each cloud is classified by the set of its nearest other cloud). 0.5 is ideal;
/// 1 means the sets are told apart perfectly. Ties go to the first candidate in the order
/// reference clouds, then generated ones (PointFlow's concatenation order).
inline double one_nn_accuracy(const Eigen::MatrixXd& gen_gen, const Eigen::MatrixXd& gen_ref,
                              const Eigen::MatrixXd& ref_ref) {
  const Index g = gen_ref.rows();
  const Index r = gen_ref.cols();
  ddpm::detail::require_shape(g >= 1 && r >= 1, "gen_ref", g, r, "at least 1 x 1");
  ddpm::detail::require_shape(gen_gen.rows() == g && gen_gen.cols() == g, "gen_gen", gen_gen.rows(),
                              gen_gen.cols(), "square, gen_ref.rows() wide");
  ddpm::detail::require_shape(ref_ref.rows() == r && ref_ref.cols() == r, "ref_ref", ref_ref.rows(),
                              ref_ref.cols(), "square, gen_ref.cols() wide");
  constexpr double kInf = std::numeric_limits<double>::infinity();
  Index correct = 0;
  // A reference cloud j: candidates are the other references, then every generated cloud.
  for (Index j = 0; j < r; ++j) {
    double best = kInf;
    bool same = false;
    for (Index k = 0; k < r; ++k) {
      if (k != j && ref_ref(j, k) < best) {
        best = ref_ref(j, k);
        same = true;
      }
    }
    for (Index i = 0; i < g; ++i) {
      if (gen_ref(i, j) < best) {
        best = gen_ref(i, j);
        same = false;
      }
    }
    correct += same ? 1 : 0;
  }
  // A generated cloud i: candidates are every reference, then the other generated clouds.
  for (Index i = 0; i < g; ++i) {
    double best = kInf;
    bool same = false;
    for (Index k = 0; k < r; ++k) {
      if (gen_ref(i, k) < best) {
        best = gen_ref(i, k);
        same = false;
      }
    }
    for (Index k = 0; k < g; ++k) {
      if (k != i && gen_gen(i, k) < best) {
        best = gen_gen(i, k);
        same = true;
      }
    }
    correct += same ? 1 : 0;
  }
  return static_cast<double>(correct) / static_cast<double>(g + r);
}

namespace detail {

/// Validates a set of clouds and returns its number of clouds.
template <class Real>
Index require_cloud_set(const Batch<Real>& set, Index points_per_cloud, const char* parameter) {
  ddpm::detail::require(points_per_cloud >= 1, "points_per_cloud", points_per_cloud,
                        "at least 1 point per cloud");
  ddpm::detail::require_shape(
      set.cols() == 3 && set.rows() >= points_per_cloud && set.rows() % points_per_cloud == 0,
      parameter, set.rows(), set.cols(), [&] {
        return "S·N rows x 3 columns: S >= 1 clouds of N = points_per_cloud = " +
               ddpm::detail::to_text(points_per_cloud) + " points each";
      });
  require_cloud(set, parameter);
  return set.rows() / points_per_cloud;
}

inline void require_eval_options(const PointCloudEvalOptions& options, Index points_per_cloud) {
  ddpm::detail::require(options.emd_points >= 0 && options.emd_points <= points_per_cloud,
                        "emd_points", options.emd_points, [&] {
                          return "0 (all points) to points_per_cloud (" +
                                 ddpm::detail::to_text(points_per_cloud) + ")";
                        });
  if (options.compute_emd) require_emd_options(options.emd);
}

/// A set packed once: every cloud whole (for CD) and, when the EMD uses a subset, subsampled.
struct PackedSet {
  std::vector<PackedCloud> whole;
  std::vector<PackedCloud> for_emd;  // empty when the EMD uses the whole clouds or is skipped

  [[nodiscard]] const PackedCloud& emd_cloud(Index s) const {
    return for_emd.empty() ? whole[static_cast<std::size_t>(s)]
                           : for_emd[static_cast<std::size_t>(s)];
  }
};

template <class Real>
PackedSet pack_set(const Batch<Real>& set, Index points_per_cloud,
                   const PointCloudEvalOptions& options) {
  const Index clouds = set.rows() / points_per_cloud;
  PackedSet packed;
  packed.whole.resize(static_cast<std::size_t>(clouds));
  const Index subset = options.emd_points;
  const bool subsample = options.compute_emd && subset > 0 && subset < points_per_cloud;
  std::vector<Index> rows;
  if (subsample) {
    packed.for_emd.resize(static_cast<std::size_t>(clouds));
    for (Index k = 0; k < subset; ++k) rows.push_back(k * points_per_cloud / subset);
  }
  for (Index s = 0; s < clouds; ++s) {
    const Real* cloud = set.data() + s * points_per_cloud * 3;
    pack_cloud(cloud, points_per_cloud, {}, packed.whole[static_cast<std::size_t>(s)]);
    if (subsample) pack_cloud(cloud, subset, rows, packed.for_emd[static_cast<std::size_t>(s)]);
  }
  return packed;
}

/// Per-thread scratch of the pair loops.
struct PairScratch {
  std::vector<double> col_min;
  EmdWorkspace emd;
};

/// Counts pairs done across the several pair loops of one call, and reports them.
struct ProgressCounter {
  const PairProgress* progress;
  Index done;
  Index total;
};

// Pairs per parallel block between progress reports: large enough that the threads' last pairs
// overlap little, small enough that the bar moves.
inline constexpr Index kPairsPerBlock = 64;

/// Runs compute(pair) for pair in [0, count) on the threads, dynamically scheduled (EMD pairs
/// cost unequal time), in blocks with a progress report after each. Each pair is computed by
/// one thread alone, in a fixed order, so results do not depend on the thread count.
template <class Compute>
void run_pairs(Index count, ProgressCounter& counter, Compute&& compute) {
  for (Index begin = 0; begin < count; begin += kPairsPerBlock) {
    const Index end = std::min(count, begin + kPairsPerBlock);
    ddpm::detail::parallel_for_dynamic(end - begin, [&](Index k) { compute(begin + k); });
    counter.done += end - begin;
    if (counter.progress != nullptr && *counter.progress) {
      (*counter.progress)(counter.done, counter.total);
    }
  }
}

inline std::vector<PairScratch> make_scratch() {
  return std::vector<PairScratch>(static_cast<std::size_t>(ddpm::detail::max_threads()));
}

inline void pair_distances(const PackedSet& a, Index i, const PackedSet& b, Index j,
                           const PointCloudEvalOptions& options, PairScratch& scratch, double& cd,
                           double& emd) {
  cd = chamfer_packed(a.whole[static_cast<std::size_t>(i)], b.whole[static_cast<std::size_t>(j)],
                      scratch.col_min);
  if (options.compute_emd) {
    emd = emd_packed(a.emd_cloud(i), b.emd_cloud(j), options.emd, scratch.emd).value;
  }
}

/// D(i, j) between every cloud of a and every cloud of b.
inline CloudDistances cross_distances(const PackedSet& a, const PackedSet& b,
                                      const PointCloudEvalOptions& options,
                                      ProgressCounter& counter) {
  const auto sa = static_cast<Index>(a.whole.size());
  const auto sb = static_cast<Index>(b.whole.size());
  CloudDistances out;
  out.chamfer.resize(sa, sb);
  if (options.compute_emd) out.emd.resize(sa, sb);
  std::vector<PairScratch> scratch = make_scratch();
  run_pairs(sa * sb, counter, [&](Index pair) {
    const Index i = pair / sb;
    const Index j = pair % sb;
    double cd = 0.0;
    double emd = 0.0;
    pair_distances(a, i, b, j, options,
                   scratch[static_cast<std::size_t>(ddpm::detail::thread_index())], cd, emd);
    out.chamfer(i, j) = cd;
    if (options.compute_emd) out.emd(i, j) = emd;
  });
  return out;
}

/// D(i, j) within one set: computed for i < j and mirrored, zero diagonal.
inline CloudDistances within_distances(const PackedSet& a, const PointCloudEvalOptions& options,
                                       ProgressCounter& counter) {
  const auto s = static_cast<Index>(a.whole.size());
  CloudDistances out;
  out.chamfer = Eigen::MatrixXd::Zero(s, s);
  if (options.compute_emd) out.emd = Eigen::MatrixXd::Zero(s, s);
  // The pair list i < j in row order, so pair k maps to (i, j) without a search.
  std::vector<std::pair<Index, Index>> pairs;
  pairs.reserve(static_cast<std::size_t>(s * (s - 1) / 2));
  for (Index i = 0; i < s; ++i) {
    for (Index j = i + 1; j < s; ++j) pairs.emplace_back(i, j);
  }
  std::vector<PairScratch> scratch = make_scratch();
  run_pairs(static_cast<Index>(pairs.size()), counter, [&](Index k) {
    const auto [i, j] = pairs[static_cast<std::size_t>(k)];
    double cd = 0.0;
    double emd = 0.0;
    pair_distances(a, i, a, j, options,
                   scratch[static_cast<std::size_t>(ddpm::detail::thread_index())], cd, emd);
    out.chamfer(i, j) = cd;
    out.chamfer(j, i) = cd;
    if (options.compute_emd) {
      out.emd(i, j) = emd;
      out.emd(j, i) = emd;
    }
  });
  return out;
}

inline Index within_pairs(Index clouds) { return clouds * (clouds - 1) / 2; }

}  // namespace detail

/// D(i, j) = CD and EMD(a_i, b_j) for every cloud a_i of `a` and b_j of `b` (sets of clouds of
/// points_per_cloud points; the sets may hold different numbers of clouds). OpenMP over the
/// pairs; each entry is computed by one thread alone, so the result is bitwise the same for
/// any thread count.
template <class Real>
CloudDistances pairwise_cloud_distances(const Batch<Real>& a, const Batch<Real>& b,
                                        Index points_per_cloud,
                                        const PointCloudEvalOptions& options = {}) {
  const Index sa = detail::require_cloud_set(a, points_per_cloud, "a");
  const Index sb = detail::require_cloud_set(b, points_per_cloud, "b");
  detail::require_eval_options(options, points_per_cloud);
  const detail::PackedSet pa = detail::pack_set(a, points_per_cloud, options);
  const detail::PackedSet pb = detail::pack_set(b, points_per_cloud, options);
  detail::ProgressCounter counter{&options.progress, 0, sa * sb};
  return detail::cross_distances(pa, pb, options, counter);
}

/// D(i, j) within one set (symmetric, zero diagonal; each pair computed once).
template <class Real>
CloudDistances pairwise_cloud_distances(const Batch<Real>& a, Index points_per_cloud,
                                        const PointCloudEvalOptions& options = {}) {
  const Index sa = detail::require_cloud_set(a, points_per_cloud, "a");
  detail::require_eval_options(options, points_per_cloud);
  const detail::PackedSet pa = detail::pack_set(a, points_per_cloud, options);
  detail::ProgressCounter counter{&options.progress, 0, detail::within_pairs(sa)};
  return detail::within_distances(pa, options, counter);
}

/// The six metrics from precomputed matrices (rows generated, columns reference, as returned by
/// pairwise_cloud_distances(generated, reference, ...)). EMD metrics are NaN when the EMD
/// matrices are empty.
inline GenerationMetrics generation_metrics_from(const CloudDistances& gen_gen,
                                                 const CloudDistances& gen_ref,
                                                 const CloudDistances& ref_ref) {
  GenerationMetrics m;
  m.mmd_cd = minimum_matching_distance(gen_ref.chamfer);
  m.cov_cd = coverage(gen_ref.chamfer);
  m.nna_cd = one_nn_accuracy(gen_gen.chamfer, gen_ref.chamfer, ref_ref.chamfer);
  if (gen_ref.emd.size() == 0) {
    m.mmd_emd = m.cov_emd = m.nna_emd = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  m.mmd_emd = minimum_matching_distance(gen_ref.emd);
  m.cov_emd = coverage(gen_ref.emd);
  m.nna_emd = one_nn_accuracy(gen_gen.emd, gen_ref.emd, ref_ref.emd);
  return m;
}

/// MMD, COV and 1-NNA for CD and EMD of a generated set against a reference set (each S·N x 3,
/// N = points_per_cloud; the numbers of clouds may differ). Computes the gen-ref, gen-gen and
/// ref-ref matrices (S_g·S_r + S_g(S_g−1)/2 + S_r(S_r−1)/2 pairs); progress counts all of them.
///
///   auto m = ddpm::eval::generation_metrics(samples, test_shapes, 2048);
template <class Real>
GenerationMetrics generation_metrics(const Batch<Real>& generated, const Batch<Real>& reference,
                                     Index points_per_cloud,
                                     const PointCloudEvalOptions& options = {}) {
  const Index sg = detail::require_cloud_set(generated, points_per_cloud, "generated");
  const Index sr = detail::require_cloud_set(reference, points_per_cloud, "reference");
  detail::require_eval_options(options, points_per_cloud);
  const detail::PackedSet pg = detail::pack_set(generated, points_per_cloud, options);
  const detail::PackedSet pr = detail::pack_set(reference, points_per_cloud, options);
  detail::ProgressCounter counter{&options.progress, 0,
                                  sg * sr + detail::within_pairs(sg) + detail::within_pairs(sr)};
  const CloudDistances gen_ref = detail::cross_distances(pg, pr, options, counter);
  const CloudDistances gen_gen = detail::within_distances(pg, options, counter);
  const CloudDistances ref_ref = detail::within_distances(pr, options, counter);
  return generation_metrics_from(gen_gen, gen_ref, ref_ref);
}

/// The floor: the metrics of `reference_b`, a second reference set drawn independently of
/// `reference` and of the same size, scored as if it were generated. What a generator that
/// samples the data distribution exactly would get at this set size (1-NNA near, not at, 0.5;
/// MMD above 0).
template <class Real>
GenerationMetrics generation_metrics_floor(const Batch<Real>& reference,
                                           const Batch<Real>& reference_b, Index points_per_cloud,
                                           const PointCloudEvalOptions& options = {}) {
  ddpm::detail::require_shape(reference_b.rows() == reference.rows(), "reference_b",
                              reference_b.rows(), reference_b.cols(), [&] {
                                return "as many clouds as reference (" +
                                       ddpm::detail::to_text(reference.rows()) + " rows)";
                              });
  return generation_metrics(reference_b, reference, points_per_cloud, options);
}

/// generation_metrics and generation_metrics_floor in one call that computes the ref-ref matrix
/// once (it is a seventh of the pairs at equal set sizes); one progress count over everything.
template <class Real>
GenerationReport generation_metrics_with_floor(const Batch<Real>& generated,
                                               const Batch<Real>& reference,
                                               const Batch<Real>& reference_b,
                                               Index points_per_cloud,
                                               const PointCloudEvalOptions& options = {}) {
  const Index sg = detail::require_cloud_set(generated, points_per_cloud, "generated");
  const Index sr = detail::require_cloud_set(reference, points_per_cloud, "reference");
  const Index sb = detail::require_cloud_set(reference_b, points_per_cloud, "reference_b");
  ddpm::detail::require(sb == sr, "reference_b clouds", sb,
                        "as many clouds as reference (" + ddpm::detail::to_text(sr) + ")");
  detail::require_eval_options(options, points_per_cloud);
  const detail::PackedSet pg = detail::pack_set(generated, points_per_cloud, options);
  const detail::PackedSet pr = detail::pack_set(reference, points_per_cloud, options);
  const detail::PackedSet pb = detail::pack_set(reference_b, points_per_cloud, options);
  detail::ProgressCounter counter{&options.progress, 0,
                                  sg * sr + detail::within_pairs(sg) + detail::within_pairs(sr) +
                                      sb * sr + detail::within_pairs(sb)};
  const CloudDistances gen_ref = detail::cross_distances(pg, pr, options, counter);
  const CloudDistances gen_gen = detail::within_distances(pg, options, counter);
  const CloudDistances ref_ref = detail::within_distances(pr, options, counter);
  const CloudDistances b_ref = detail::cross_distances(pb, pr, options, counter);
  const CloudDistances b_b = detail::within_distances(pb, options, counter);
  return {generation_metrics_from(gen_gen, gen_ref, ref_ref),
          generation_metrics_from(b_b, b_ref, ref_ref)};
}

/// Mean CD and mean EMD over pairs (inputs_i, reconstructions_i): the autoencoding metrics of
/// Luo & Hu 2021, Table 2 (their numbers are after normalizing each pair; the caller does that).
template <class Real>
ReconstructionMetrics reconstruction_metrics(const Batch<Real>& inputs,
                                             const Batch<Real>& reconstructions,
                                             Index points_per_cloud,
                                             const PointCloudEvalOptions& options = {}) {
  const Index s = detail::require_cloud_set(inputs, points_per_cloud, "inputs");
  detail::require_cloud_set(reconstructions, points_per_cloud, "reconstructions");
  ddpm::detail::require_shape(reconstructions.rows() == inputs.rows(), "reconstructions",
                              reconstructions.rows(), reconstructions.cols(),
                              "as many rows as inputs (one reconstruction per input cloud)");
  detail::require_eval_options(options, points_per_cloud);
  const detail::PackedSet pa = detail::pack_set(inputs, points_per_cloud, options);
  const detail::PackedSet pb = detail::pack_set(reconstructions, points_per_cloud, options);
  std::vector<double> cd(static_cast<std::size_t>(s), 0.0);
  std::vector<double> emd(static_cast<std::size_t>(s), 0.0);
  std::vector<detail::PairScratch> scratch = detail::make_scratch();
  detail::ProgressCounter counter{&options.progress, 0, s};
  detail::run_pairs(s, counter, [&](Index i) {
    detail::pair_distances(pa, i, pb, i, options,
                           scratch[static_cast<std::size_t>(ddpm::detail::thread_index())],
                           cd[static_cast<std::size_t>(i)], emd[static_cast<std::size_t>(i)]);
  });
  ReconstructionMetrics out;
  for (Index i = 0; i < s; ++i) {
    out.cd += cd[static_cast<std::size_t>(i)];
    out.emd += emd[static_cast<std::size_t>(i)];
  }
  out.cd /= static_cast<double>(s);
  out.emd = options.compute_emd ? out.emd / static_cast<double>(s)
                                : std::numeric_limits<double>::quiet_NaN();
  return out;
}

}  // namespace ddpm::eval
