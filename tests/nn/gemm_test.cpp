// SPDX-License-Identifier: MIT
// Tests of the packed GEMM against a brute-force product in long double: every operand layout,
// shapes around the register tile and block edges, overwrite vs accumulate, the epilogue, strided
// destinations, the thin-matrix path, and bitwise independence of the thread count.
#include "ddpm/nn/detail/gemm.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ddpm/core/rng.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace gemm_test {

namespace {

using ddpm::Index;
using ddpm::nn::detail::StridedMatrix;

template <class Real>
std::vector<Real> normals(Index count, std::uint32_t stream) {
  std::vector<Real> v(static_cast<std::size_t>(count));
  ddpm::CounterRng(5).normals(stream, 0, 0, v.data(), count);
  return v;
}

// An operand stored row-major (element (i, j) at i * cols + j) or column-major, viewed through
// StridedMatrix either way.
template <class Real>
struct Operand {
  std::vector<Real> storage;
  StridedMatrix<Real> view;
  Index rows, cols;

  Operand(Index r, Index c, bool column_major, std::uint32_t stream)
      : storage(normals<Real>(r * c, stream)), rows(r), cols(c) {
    view = column_major ? StridedMatrix<Real>{storage.data(), 1, r}
                        : StridedMatrix<Real>{storage.data(), c, 1};
  }
};

template <class Real>
long double exact(const StridedMatrix<Real>& a, const StridedMatrix<Real>& b, Index k, Index i,
                  Index j) {
  long double sum = 0;
  for (Index p = 0; p < k; ++p) {
    sum += static_cast<long double>(a(i, p)) * static_cast<long double>(b(p, j));
  }
  return sum;
}

// |error| <= k * eps * sum |a||b| bounds any summation order (Higham, 3.5), with a factor 2 slack.
template <class Real>
double bound(const StridedMatrix<Real>& a, const StridedMatrix<Real>& b, Index k, Index i,
             Index j) {
  double abs_sum = 0;
  for (Index p = 0; p < k; ++p) abs_sum += std::abs(double(a(i, p)) * double(b(p, j)));
  return 2.0 * double(k + 2) * double(std::numeric_limits<Real>::epsilon()) * abs_sum + 1e-300;
}

template <class Real>
void check_product(Index m, Index n, Index k, bool a_col_major, bool b_col_major, bool accumulate) {
  CAPTURE(m);
  CAPTURE(n);
  CAPTURE(k);
  CAPTURE(a_col_major);
  CAPTURE(b_col_major);
  CAPTURE(accumulate);
  const Operand<Real> a(m, k, a_col_major, 1), b(k, n, b_col_major, 2);
  const Index ldc = n + 3;  // a strided destination: the gap columns must stay untouched
  const std::vector<Real> initial = normals<Real>(m * ldc, 3);
  std::vector<Real> c = initial;
  if (!accumulate) {
    // Overwrite must not read C: NaNs in the destination must not leak into the result.
    for (Index i = 0; i < m; ++i) {
      for (Index j = 0; j < n; ++j) c[i * ldc + j] = std::numeric_limits<Real>::quiet_NaN();
    }
  }
  ddpm::nn::detail::gemm(m, n, k, a.view, b.view, c.data(), ldc, accumulate);
  Index failures = 0;
  for (Index i = 0; i < m; ++i) {
    for (Index j = 0; j < ldc; ++j) {
      const Real got = c[i * ldc + j];
      if (j >= n) {
        failures += got != initial[i * ldc + j];
        continue;
      }
      const long double want =
          exact(a.view, b.view, k, i, j) + (accumulate ? initial[i * ldc + j] : 0.0L);
      // Accumulating adds one more rounding of the sum with C's old value.
      const double add_rounding =
          accumulate ? 2.0 * double(std::numeric_limits<Real>::epsilon()) *
                           (std::abs(double(initial[i * ldc + j])) + std::abs(double(want)))
                     : 0.0;
      failures += !(std::abs(static_cast<long double>(got) - want) <=
                    bound(a.view, b.view, k, i, j) + add_rounding);
    }
  }
  CHECK(failures == 0);
}

TEST_CASE_TEMPLATE("gemm matches a brute-force product for every layout and edge shape", Real,
                   float, double) {
  using Shape = ddpm::nn::detail::GemmShape<Real>;
  const Index mr = Shape::kMr, nr = Shape::kNr, kc = Shape::kKc, mc = Shape::kMc;
  // Sizes straddling the register tile, the packed row block and the depth block.
  const std::vector<Index> ms{1, mr - 1, mr, mr + 1, mc + mr + 5};
  const std::vector<Index> ns{1, nr / 2, nr, nr + 1, 3 * nr + 7};
  const std::vector<Index> ks{1, 7, kc, kc + 9};
  for (const Index m : ms) {
    for (const Index n : ns) {
      for (const Index k : ks) {
        for (const bool a_col : {false, true}) {
          for (const bool b_col : {false, true}) {
            check_product<Real>(m, n, k, a_col, b_col, (m + n + k) % 2 == 0);
          }
        }
      }
    }
  }
  // Both write modes on one shape that is edgy in every dimension.
  check_product<Real>(mr + 1, nr + 3, kc + 1, false, true, true);
  check_product<Real>(mr + 1, nr + 3, kc + 1, false, true, false);
  // Deep enough to be cut into depth slices (a weight gradient over a large batch).
  const Index deep = 2 * ddpm::nn::detail::gemm_internal::kDepthSlice + 50;
  REQUIRE(ddpm::nn::detail::gemm_internal::slices_depth<Real>(mr + 1, nr + 3, deep));
  check_product<Real>(mr + 1, nr + 3, deep, true, false, true);
  check_product<Real>(mr + 1, nr + 3, deep, true, false, false);
}

TEST_CASE("gemm with depth 0 writes zeros or leaves C, and still runs the epilogue") {
  const std::vector<double> none;
  std::vector<double> c(6 * 40, 7.0);
  std::vector<int> seen(c.size(), 0);
  ddpm::nn::detail::gemm(6, 40, 0, StridedMatrix<double>{none.data(), 0, 1},
                         StridedMatrix<double>{none.data(), 40, 1}, c.data(), 40, false,
                         [&](Index i, Index j, Index rows, Index cols) {
                           for (Index r = i; r < i + rows; ++r) {
                             for (Index s = j; s < j + cols; ++s) ++seen[r * 40 + s];
                           }
                         });
  for (std::size_t e = 0; e < c.size(); ++e) {
    CHECK(c[e] == 0.0);
    CHECK(seen[e] == 1);
  }
}

TEST_CASE("the gemm epilogue sees every element once, after its final value") {
  // Depth over two blocks: the epilogue must not run after the first.
  const Index m = 50, n = 70, k = ddpm::nn::detail::GemmShape<float>::kKc + 30;
  const Operand<float> a(m, k, false, 4), b(k, n, false, 5);
  std::vector<float> c(static_cast<std::size_t>(m * n));
  std::vector<float> copied(c.size(), 0.0f);
  std::vector<int> seen(c.size(), 0);
  ddpm::nn::detail::gemm(m, n, k, a.view, b.view, c.data(), n, false,
                         [&](Index i, Index j, Index rows, Index cols) {
                           for (Index r = i; r < i + rows; ++r) {
                             for (Index s = j; s < j + cols; ++s) {
                               ++seen[r * n + s];
                               copied[r * n + s] = c[r * n + s];
                             }
                           }
                         });
  for (std::size_t e = 0; e < c.size(); ++e) {
    CHECK(seen[e] == 1);
    CHECK(copied[e] == c[e]);
  }
}

TEST_CASE_TEMPLATE("gemm with a pre-packed right-hand side equals gemm packing per call", Real,
                   float, double) {
  using Shape = ddpm::nn::detail::GemmShape<Real>;
  struct Case {
    Index m, n, k;
    bool b_col;
  };
  // Several depth blocks, several column blocks (n > kNc), a thin one that goes to Eigen, and a
  // transposed B.
  for (const Case shape :
       {Case{30, 70, Shape::kKc + 40, false}, Case{5, Shape::kNc + 40, 20, false},
        Case{17, 3, 50, false}, Case{40, 64, 100, true}}) {
    CAPTURE(shape.n);
    const Operand<Real> a(shape.m, shape.k, false, 8), b(shape.k, shape.n, shape.b_col, 9);
    ddpm::nn::detail::PackedRhs<Real> packed;
    packed.pack(b.view, shape.k, shape.n);
    for (const bool accumulate : {false, true}) {
      std::vector<Real> once = normals<Real>(shape.m * shape.n, 10), each = once;
      ddpm::nn::detail::gemm_serial(shape.m, a.view, packed, once.data(), shape.n, accumulate);
      ddpm::nn::detail::gemm_serial(shape.m, shape.n, shape.k, a.view, b.view, each.data(), shape.n,
                                    accumulate);
      CHECK(once == each);
    }
  }
}

#ifdef _OPENMP
TEST_CASE("gemm results do not depend on the number of threads") {
  const int saved = omp_get_max_threads();
  // Tall (rows handed out in chunks on demand), wide (split by columns), a deep reduction
  // (dW = x^T dz), one deep enough to be cut into depth slices, and the thin products of a
  // 2-output layer (forward, and its weight gradient over a batch of 4096).
  struct Case {
    Index m, n, k;
    bool a_col;
  };
  for (const Case shape :
       {Case{2500, 256, 66, false}, Case{40, 700, 256, false}, Case{256, 256, 1000, true},
        Case{64, 40, 4100, true}, Case{4096, 2, 256, false}, Case{256, 2, 4096, true}}) {
    CAPTURE(shape.m);
    const Operand<float> a(shape.m, shape.k, shape.a_col, 6), b(shape.k, shape.n, false, 7);
    std::vector<float> one(static_cast<std::size_t>(shape.m * shape.n));
    for (const int threads : {1, 2, 3}) {
      CAPTURE(threads);
      omp_set_num_threads(threads);
      std::vector<float> c(one.size());
      ddpm::nn::detail::gemm(shape.m, shape.n, shape.k, a.view, b.view, c.data(), shape.n, false);
      if (threads == 1) {
        one = c;
      } else {
        CHECK(c == one);
      }
    }
  }
  omp_set_num_threads(saved);
}
#endif

}  // namespace

}  // namespace gemm_test
