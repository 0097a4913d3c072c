// SPDX-License-Identifier: MIT
// A blocked, packed matrix product C (+)= A B for the network layers, written on Eigen's SIMD
// packets: a register-blocked micro-kernel, per-thread packing buffers that grow to the largest
// block seen (so steady-state products do not allocate), no zero-fill of C, an epilogue hook that
// runs on each finished block while it is still in L2, and a fixed reduction order, so results do
// not depend on the thread count.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <vector>

#include "ddpm/core/parallel.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::nn::detail {

/// A read-only strided matrix: element (i, j) is data[i * row_stride + j * col_stride], so one
/// type describes a row-major matrix, a column-major one, and the transpose of either.
template <class Real>
struct StridedMatrix {
  const Real* data;
  Index row_stride;
  Index col_stride;

  [[nodiscard]] const Real& operator()(Index i, Index j) const noexcept {
    return data[i * row_stride + j * col_stride];
  }
  [[nodiscard]] StridedMatrix transposed() const noexcept { return {data, col_stride, row_stride}; }
  /// The same matrix viewed from element (i, j) on.
  [[nodiscard]] StridedMatrix from(Index i, Index j) const noexcept {
    return {&(*this)(i, j), row_stride, col_stride};
  }
};

/// The strided view of a dense Eigen matrix, map or block (anything with direct access).
template <class Matrix>
[[nodiscard]] StridedMatrix<typename Matrix::Scalar> strided(const Matrix& m) noexcept {
  return {m.data(), m.rowStride(), m.colStride()};
}

/// An epilogue that does nothing.
struct NoEpilogue {
  void operator()(Index, Index, Index, Index) const noexcept {}
};

/// `epilogue` for a sub-product whose result starts at (row, col) of the whole result.
template <class Epilogue>
auto shifted(Epilogue& epilogue, Index row, Index col) {
  return [&epilogue, row, col](Index i, Index j, Index rows, Index cols) {
    epilogue(row + i, col + j, rows, cols);
  };
}

/// Block sizes of the product. kMr x kNr is the register tile (accumulators fill most of the SIMD
/// registers: 12 x 2 packets with 32 registers, 6 x 2 with 16), kKc the depth of one packed panel,
/// kMc the rows of A packed per block (kMc x kKc stays in L2), kNc the columns of B per block.
template <class Real>
struct GemmShape {
  using Packet = typename Eigen::internal::packet_traits<Real>::type;
  static constexpr int kPacket = Eigen::internal::unpacket_traits<Packet>::size;
#ifdef EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS
  static constexpr int kRegisters = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS;
#else
  static constexpr int kRegisters = 16;
#endif
  static constexpr int kNrPackets = 2;
  static constexpr Index kNr = kNrPackets * kPacket;
  static constexpr Index kMr = kRegisters >= 32 ? 12 : 6;
  static constexpr Index kKc = 256;
  static constexpr Index kMc = 8 * kMr;
  static constexpr Index kNc = 2048 / static_cast<Index>(sizeof(Real)) * 4 / kNr * kNr;

  /// Rows and columns rounded up to whole panels, as the packed blocks lay them out.
  static constexpr Index padded_rows(Index rows) noexcept { return (rows + kMr - 1) / kMr * kMr; }
  static constexpr Index padded_cols(Index cols) noexcept { return (cols + kNr - 1) / kNr * kNr; }
};

/// C[0:Mr, 0:Nr] (+)= A_panel B_panel over depth kc. B is packed k-major (Nr values per k); A is
/// either packed k-major (Mr values per k) or, with kRowMajorA, read in place from rows lda apart.
/// `rows` x `cols` of the tile are valid; a partial tile goes through a local buffer.
template <class Real, bool kRowMajorA>
void gemm_micro_kernel(Index kc, const Real* a, Index lda, const Real* b, Real* c, Index ldc,
                       Index rows, Index cols, bool overwrite) {
  using Shape = GemmShape<Real>;
  using Packet = typename Shape::Packet;
  using Eigen::internal::pload;
  using Eigen::internal::ploadu;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  using Eigen::internal::pstoreu;
  constexpr int kMr = static_cast<int>(Shape::kMr);
  constexpr int kNp = Shape::kNrPackets;
  constexpr int kP = Shape::kPacket;

  Packet acc[kMr][kNp];
  for (int r = 0; r < kMr; ++r) {
    for (int q = 0; q < kNp; ++q) acc[r][q] = pset1<Packet>(Real(0));
  }
  // One depth step: acc[r] += A(r, p) * B(p, :), with A(r, p) from a_at(r).
  const auto step = [&](auto&& a_at) {
    Packet bp[kNp];
    for (int q = 0; q < kNp; ++q) bp[q] = pload<Packet>(b + q * kP);
    for (int r = 0; r < kMr; ++r) {
      const Packet ar = pset1<Packet>(a_at(r));
      for (int q = 0; q < kNp; ++q) acc[r][q] = pmadd(ar, bp[q], acc[r][q]);
    }
    b += kNp * kP;
  };
  if constexpr (kRowMajorA) {
    // Rows past the valid ones repeat the last valid row: their results are discarded.
    const Real* row[kMr];
    for (int r = 0; r < kMr; ++r) row[r] = a + std::min<Index>(r, rows - 1) * lda;
    for (Index p = 0; p < kc; ++p) step([&](int r) { return row[r][p]; });
  } else {
    for (Index p = 0; p < kc; ++p, a += kMr) step([&](int r) { return a[r]; });
  }

  if (rows == kMr && cols == Shape::kNr) {
    for (int r = 0; r < kMr; ++r) {
      Real* cr = c + r * ldc;
      for (int q = 0; q < kNp; ++q) {
        const Packet sum =
            overwrite ? acc[r][q] : Eigen::internal::padd(acc[r][q], ploadu<Packet>(cr + q * kP));
        pstoreu(cr + q * kP, sum);
      }
    }
    return;
  }
  alignas(64) Real tile[kMr * kNp * kP];
  for (int r = 0; r < kMr; ++r) {
    for (int q = 0; q < kNp; ++q) pstoreu(tile + r * Shape::kNr + q * kP, acc[r][q]);
  }
  for (Index r = 0; r < rows; ++r) {
    Real* cr = c + r * ldc;
    const Real* tr = tile + r * Shape::kNr;
    for (Index j = 0; j < cols; ++j) cr[j] = overwrite ? tr[j] : cr[j] + tr[j];
  }
}

/// Packs rows [0, mc) x depth [0, kc) of `a` into Mr-row panels, k-major, zero-padding the last
/// panel. (A row-major `a` is never packed: the micro-kernel reads it in place.)
template <class Real>
void pack_lhs(StridedMatrix<Real> a, Index mc, Index kc, Real* out) {
  constexpr Index kMr = GemmShape<Real>::kMr;
  for (Index i0 = 0; i0 < mc; i0 += kMr) {
    const Index rows = std::min(kMr, mc - i0);
    if (a.row_stride == 1 && rows == kMr) {
      // Column-major source (x^T in a weight gradient): each depth step is one contiguous run.
      for (Index p = 0; p < kc; ++p) {
        const Real* src = a.data + i0 + p * a.col_stride;
        for (Index r = 0; r < kMr; ++r) out[p * kMr + r] = src[r];
      }
    } else {
      for (Index p = 0; p < kc; ++p) {
        for (Index r = 0; r < rows; ++r) out[p * kMr + r] = a(i0 + r, p);
      }
    }
    if (rows < kMr) {
      for (Index p = 0; p < kc; ++p) {
        for (Index r = rows; r < kMr; ++r) out[p * kMr + r] = Real(0);
      }
    }
    out += kMr * kc;
  }
}

/// Packs depth [0, kc) x columns [0, nc) of `b` into Nr-column panels, k-major, zero-padding the
/// last panel.
template <class Real>
void pack_rhs(StridedMatrix<Real> b, Index kc, Index nc, Real* out) {
  constexpr Index kNr = GemmShape<Real>::kNr;
  for (Index j0 = 0; j0 < nc; j0 += kNr) {
    const Index cols = std::min(kNr, nc - j0);
    for (Index p = 0; p < kc; ++p) {
      Real* dst = out + p * kNr;
      if (b.col_stride == 1) {
        const Real* src = b.data + p * b.row_stride + j0;
        for (Index j = 0; j < cols; ++j) dst[j] = src[j];
      } else {
        for (Index j = 0; j < cols; ++j) dst[j] = b(p, j0 + j);
      }
      for (Index j = cols; j < kNr; ++j) dst[j] = Real(0);
    }
    out += kNr * kc;
  }
}

template <class Real>
using AlignedBuffer = std::vector<Real, Eigen::aligned_allocator<Real>>;

/// Grows `buffer` to at least `size` elements; it never shrinks, so steady-state products do not
/// allocate. Returns its data.
template <class Real>
Real* grow(AlignedBuffer<Real>& buffer, Index size) {
  if (buffer.size() < static_cast<std::size_t>(size)) buffer.resize(static_cast<std::size_t>(size));
  return buffer.data();
}

/// This thread's packing buffers (grown to the largest block seen) and the partial results of
/// gemm()'s depth slices.
template <class Real>
struct GemmBuffers {
  AlignedBuffer<Real> lhs, rhs, partials;

  static GemmBuffers& local() {
    thread_local GemmBuffers buffers;
    return buffers;
  }
};

/// A right-hand side packed once for many products (a layer's weights, shared by the threads and
/// the tiles of a batch): the panels gemm_serial would otherwise pack for every call. Storage
/// only grows. A matrix too narrow for the register tile is not packed; its products go to
/// thin_product through the view kept here.
template <class Real>
class PackedRhs {
 public:
  /// Packs b (depth x cols).
  void pack(StridedMatrix<Real> b, Index depth, Index cols) {
    using Shape = GemmShape<Real>;
    view_ = b;
    depth_ = depth;
    cols_ = cols;
    if (cols < Shape::kNr / 2 || depth <= 0) return;
    grow(data_, depth * Shape::padded_cols(cols));
    for (Index jc = 0; jc < cols; jc += Shape::kNc) {
      const Index nc = std::min(Shape::kNc, cols - jc);
      for (Index pc = 0; pc < depth; pc += Shape::kKc) {
        const Index kc = std::min(Shape::kKc, depth - pc);
        pack_rhs(b.from(pc, jc), kc, nc, data_.data() + offset(jc, pc, nc));
      }
    }
  }

  [[nodiscard]] StridedMatrix<Real> view() const noexcept { return view_; }
  [[nodiscard]] Index depth() const noexcept { return depth_; }
  [[nodiscard]] Index cols() const noexcept { return cols_; }

  /// The packed block of columns [jc, jc + nc) and depth [pc, pc + kc).
  [[nodiscard]] const Real* block(Index jc, Index pc, Index nc) const noexcept {
    return data_.data() + offset(jc, pc, nc);
  }

 private:
  // Column blocks hold the full depth back to back; within one, depth block pc starts at pc rows
  // of its padded width.
  [[nodiscard]] Index offset(Index jc, Index pc, Index nc) const noexcept {
    return jc * depth_ + pc * GemmShape<Real>::padded_cols(nc);
  }

  AlignedBuffer<Real> data_;
  StridedMatrix<Real> view_{nullptr, 0, 0};
  Index depth_ = 0;
  Index cols_ = 0;
};

namespace gemm_internal {

/// Runs the epilogue over an m x n result computed whole, in the blocks the blocked loops use.
template <class Real, class Epilogue>
void epilogue_by_blocks(Index m, Index n, Epilogue& epilogue) {
  using Shape = GemmShape<Real>;
  for (Index i = 0; i < m; i += Shape::kMc) {
    for (Index j = 0; j < n; j += Shape::kNc) {
      epilogue(i, j, std::min(Shape::kMc, m - i), std::min(Shape::kNc, n - j));
    }
  }
}

/// C (+)= A B for a B too narrow for the register tile (fewer than kNr / 2 columns: an output
/// layer of 2 or 3 units). Every element is reduced over the depth in an order fixed by its own
/// operands, never by m, so gemm() may split the rows over any number of threads and get the same
/// bits. (Eigen's product, used here before, chose its depth blocking from the whole shape and
/// threaded itself, so 1 and 2 threads differed in the last bits.)
template <class Real, class Epilogue>
void thin_product(Index m, Index n, Index k, StridedMatrix<Real> a, StridedMatrix<Real> b, Real* c,
                  Index ldc, bool accumulate, Epilogue& epilogue) {
  using Vector = Eigen::Matrix<Real, Eigen::Dynamic, 1>;
  GemmBuffers<Real>& buffers = GemmBuffers<Real>::local();
  const auto write = [&](Index i, Index j, Real value) {
    Real& out = c[i * ldc + j];
    out = accumulate ? out + value : value;
  };
  if (k <= 0) {
    for (Index i = 0; i < m; ++i) {
      for (Index j = 0; j < n; ++j) write(i, j, Real(0));
    }
    epilogue_by_blocks<Real>(m, n, epilogue);
    return;
  }
  Real* columns = grow(buffers.rhs, n * k);  // B's columns, each contiguous
  for (Index j = 0; j < n; ++j) {
    for (Index p = 0; p < k; ++p) columns[j * k + p] = b(p, j);
  }
  if (a.col_stride == 1) {
    // Row-major A (a forward pass): one vectorized dot product per element.
    for (Index i = 0; i < m; ++i) {
      const Eigen::Map<const Vector> row(&a(i, 0), k);
      for (Index j = 0; j < n; ++j)
        write(i, j, row.dot(Eigen::Map<const Vector>(columns + j * k, k)));
    }
  } else {
    // Column-major A (a weight gradient x^T dz): each column of C adds up A's columns in depth
    // order, vectorized along C's column.
    Real* sums = grow(buffers.lhs, n * m);
    std::fill(sums, sums + n * m, Real(0));
    for (Index p = 0; p < k; ++p) {
      const Real* column = &a(0, p);
      for (Index j = 0; j < n; ++j) {
        const Real coefficient = columns[j * k + p];
        Real* sum = sums + j * m;
        if (a.row_stride == 1) {
          for (Index i = 0; i < m; ++i) sum[i] += column[i] * coefficient;
        } else {
          for (Index i = 0; i < m; ++i) sum[i] += column[i * a.row_stride] * coefficient;
        }
      }
    }
    for (Index i = 0; i < m; ++i) {
      for (Index j = 0; j < n; ++j) write(i, j, sums[j * m + i]);
    }
  }
  epilogue_by_blocks<Real>(m, n, epilogue);
}

/// The blocked loops; rhs_block(jc, pc, kc, nc) returns the packed B block to use.
template <class Real, class Epilogue, class RhsBlock>
void blocked_product(Index m, Index n, Index k, StridedMatrix<Real> a, Real* c, Index ldc,
                     bool accumulate, Epilogue& epilogue, RhsBlock&& rhs_block) {
  using Shape = GemmShape<Real>;
  // A row-major A is read in place (its rows are already contiguous along the depth); any other
  // layout is packed into Mr-row panels.
  const bool row_major_a = a.col_stride == 1;
  Real* packed_a =
      row_major_a ? nullptr
                  : grow(GemmBuffers<Real>::local().lhs,
                         std::min(Shape::kMc, Shape::padded_rows(m)) * std::min(Shape::kKc, k));
  for (Index jc = 0; jc < n; jc += Shape::kNc) {
    const Index nc = std::min(Shape::kNc, n - jc);
    for (Index pc = 0; pc < k; pc += Shape::kKc) {
      const Index kc = std::min(Shape::kKc, k - pc);
      const bool overwrite = pc == 0 && !accumulate;
      const bool last = pc + kc == k;
      const Real* packed_b = rhs_block(jc, pc, kc, nc);
      for (Index ic = 0; ic < m; ic += Shape::kMc) {
        const Index mc = std::min(Shape::kMc, m - ic);
        if (!row_major_a) {
          pack_lhs(a.from(ic, pc), mc, kc, packed_a);
        }
        for (Index jr = 0; jr < nc; jr += Shape::kNr) {
          const Index cols = std::min(Shape::kNr, nc - jr);
          const Real* b_panel = packed_b + jr * kc;
          for (Index ir = 0; ir < mc; ir += Shape::kMr) {
            const Index rows = std::min(Shape::kMr, mc - ir);
            Real* c_tile = c + (ic + ir) * ldc + jc + jr;
            if (row_major_a) {
              gemm_micro_kernel<Real, true>(kc, &a(ic + ir, pc), a.row_stride, b_panel, c_tile, ldc,
                                            rows, cols, overwrite);
            } else {
              gemm_micro_kernel<Real, false>(kc, packed_a + ir * kc, 0, b_panel, c_tile, ldc, rows,
                                             cols, overwrite);
            }
          }
        }
        // Once per finished row block: long contiguous rows keep the vectorized epilogue
        // efficient (per register tile, 32-element rows spent as long on loop set-up as on math).
        if (last) epilogue(ic, jc, mc, nc);
      }
    }
  }
}

}  // namespace gemm_internal

/// Single-threaded C (+)= A B for A m x k, B k x n, C row-major with row stride ldc. With
/// `accumulate` false C is overwritten (it need not be initialized). epilogue(i, j, rows, cols)
/// runs once on every finished block of C (at most kMc x kNc), after its last depth block.
template <class Real, class Epilogue = NoEpilogue>
void gemm_serial(Index m, Index n, Index k, StridedMatrix<Real> a, StridedMatrix<Real> b, Real* c,
                 Index ldc, bool accumulate, Epilogue&& epilogue = {}) {
  using Shape = GemmShape<Real>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || n < Shape::kNr / 2) {
    // Too narrow for the register tile (an output layer with 2 columns would waste most of every
    // tile): thin_product.
    gemm_internal::thin_product(m, n, k, a, b, c, ldc, accumulate, epilogue);
    return;
  }
  Real* packed_b = grow(GemmBuffers<Real>::local().rhs,
                        std::min(Shape::kKc, k) * Shape::padded_cols(std::min(Shape::kNc, n)));
  gemm_internal::blocked_product(m, n, k, a, c, ldc, accumulate, epilogue,
                                 [&](Index jc, Index pc, Index kc, Index nc) {
                                   pack_rhs(b.from(pc, jc), kc, nc, packed_b);
                                   return static_cast<const Real*>(packed_b);
                                 });
}

/// gemm_serial with a right-hand side packed beforehand (b.depth() x b.cols()).
template <class Real, class Epilogue = NoEpilogue>
void gemm_serial(Index m, StridedMatrix<Real> a, const PackedRhs<Real>& b, Real* c, Index ldc,
                 bool accumulate, Epilogue&& epilogue = {}) {
  using Shape = GemmShape<Real>;
  const Index n = b.cols();
  const Index k = b.depth();
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || n < Shape::kNr / 2) {
    gemm_internal::thin_product(m, n, k, a, b.view(), c, ldc, accumulate, epilogue);
    return;
  }
  gemm_internal::blocked_product(
      m, n, k, a, c, ldc, accumulate, epilogue,
      [&](Index jc, Index pc, Index, Index nc) { return b.block(jc, pc, nc); });
}

/// Rows of C per task gemm() hands to a thread (two row blocks).
template <class Real>
inline constexpr Index kRowsPerTask = 2 * GemmShape<Real>::kMc;

namespace gemm_internal {

/// Depth of one slice of a deep product (a multiple of kKc).
inline constexpr Index kDepthSlice = 1024;

/// The calling thread's buffer for a right-hand side that gemm() packs for all threads.
template <class Real>
PackedRhs<Real>& shared_rhs() {
  thread_local PackedRhs<Real> packed;
  return packed;
}

/// Whether gemm() cuts the depth into slices: a deep product with a small result, like a weight
/// gradient x^T dz over a large batch. Splitting its rows or columns instead would make every
/// thread pack all of the operand it does not split. Depends on the shape only, never on the
/// thread count, so the summation order is the same on any number of threads.
template <class Real>
bool slices_depth(Index m, Index n, Index k) {
  return k >= 2 * kDepthSlice && k >= 4 * std::max(m, n) && n >= GemmShape<Real>::kNr / 2;
}

/// C (+)= sum over depth slices s of A_s B_s: each slice into a partial result (in parallel), then
/// the partials added to C in slice order.
template <class Real, class Epilogue>
void sliced_product(Index m, Index n, Index k, StridedMatrix<Real> a, StridedMatrix<Real> b,
                    Real* c, Index ldc, bool accumulate, Epilogue& epilogue) {
  const Index slices = (k + kDepthSlice - 1) / kDepthSlice;
  Real* partial = grow(GemmBuffers<Real>::local().partials, slices * m * n);
  ddpm::detail::parallel_for(slices, [&](Index slice) {
    const Index begin = slice * kDepthSlice;
    gemm_serial(m, n, std::min(kDepthSlice, k - begin), a.from(0, begin), b.from(begin, 0),
                partial + slice * m * n, n, false);
  });
  using Row = Eigen::Map<Eigen::Array<Real, 1, Eigen::Dynamic>>;
  using ConstRow = Eigen::Map<const Eigen::Array<Real, 1, Eigen::Dynamic>>;
  ddpm::detail::parallel_for(m, n * slices, [&](Index i) {
    Row row(c + i * ldc, n);
    if (!accumulate) row = ConstRow(partial + i * n, n);
    for (Index slice = accumulate ? 0 : 1; slice < slices; ++slice) {
      row += ConstRow(partial + (slice * m + i) * n, n);
    }
  });
  epilogue_by_blocks<Real>(m, n, epilogue);
}

}  // namespace gemm_internal

/// C (+)= A B as gemm_serial, split over the OpenMP threads when called outside a parallel region
/// and the product is large enough: by blocks of rows of C when it is tall, else by blocks of
/// columns; a deep product with a small result by fixed slices of the depth. Every element is
/// reduced in the same order on any thread count.
template <class Real, class Epilogue = NoEpilogue>
void gemm(Index m, Index n, Index k, StridedMatrix<Real> a, StridedMatrix<Real> b, Real* c,
          Index ldc, bool accumulate, Epilogue&& epilogue = {}) {
  using Shape = GemmShape<Real>;
  if (m <= 0 || n <= 0) return;
  if (gemm_internal::slices_depth<Real>(m, n, k)) {
    gemm_internal::sliced_product(m, n, k, a, b, c, ldc, accumulate, epilogue);
    return;
  }
  const int threads = ddpm::detail::max_threads();
  const bool worth_splitting = threads > 1 && m * n * std::max<Index>(k, 1) >= 64 * 64 * 64;
  if (!worth_splitting) {
    gemm_serial(m, n, k, a, b, c, ldc, accumulate, epilogue);
    return;
  }
  const bool by_rows = m >= n || n < 2 * Shape::kNr;
  const Index chunk = kRowsPerTask<Real>;
  if (by_rows && n >= Shape::kNr / 2 && k > 0 && m >= 4 * chunk * threads) {
    // B is packed once and shared; the rows go out in chunks on demand, so a core slowed by
    // another tenant takes fewer chunks instead of keeping the other waiting at the barrier.
    // (Fewer rows than four chunks per thread are split evenly below: there, packing B once
    // in the caller would be serial time the product does not repay.)
    // A reference, not the thread_local itself: a lambda does not capture a thread_local, and
    // the workers must read the caller's buffer, not their own.
    PackedRhs<Real>& packed = gemm_internal::shared_rhs<Real>();
    packed.pack(b, k, n);
    ddpm::detail::parallel_for_dynamic((m + chunk - 1) / chunk, [&](Index q) {
      const Index begin = q * chunk;
      gemm_serial(std::min(chunk, m - begin), a.from(begin, 0), packed, c + begin * ldc, ldc,
                  accumulate, shifted(epilogue, begin, 0));
    });
    return;
  }
  const Index unit = by_rows ? Shape::kMr : Shape::kNr;
  const Index extent = by_rows ? m : n;
  const Index units = (extent + unit - 1) / unit;
  const Index parts = std::min<Index>(threads, units);
  ddpm::detail::parallel_for(parts, [&](Index part) {
    const Index begin = units * part / parts * unit;
    const Index end = std::min(extent, units * (part + 1) / parts * unit);
    if (begin >= end) return;
    if (by_rows) {
      gemm_serial(end - begin, n, k, a.from(begin, 0), b, c + begin * ldc, ldc, accumulate,
                  shifted(epilogue, begin, 0));
    } else {
      gemm_serial(m, end - begin, k, a, b.from(0, begin), c + begin, ldc, accumulate,
                  shifted(epilogue, 0, begin));
    }
  });
}

}  // namespace ddpm::nn::detail
